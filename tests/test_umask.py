"""Files a user keeps follow the umask (issue 17): onss writes every file atomically through a
``mkstemp`` temp file (0600), so without ``atomic.fchmod(umask_mode())`` the run files, the pads,
settings.json and saved recipes all came out 0600. Each check runs the real command line in a child
process started under the umask (``bash -c 'umask 077; exec python -m onss_tui ...'``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not shutil.which("bash"), reason="needs bash to set the child's umask")


def under_umask(umask: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f'umask {umask} && exec "$@"', "bash", sys.executable, "-m", "onss_tui",
                           *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=dict(os.environ))


def modes(top: Path) -> dict[str, int]:
    """Every entry under ``top`` (``top`` itself included: ``.``) and its permission bits."""
    return {str(p.relative_to(top)): os.lstat(p).st_mode & 0o7777 for p in [top, *sorted(top.rglob("*"))]}


@pytest.mark.parametrize(("umask", "file", "folder"), [("022", 0o644, 0o755), ("077", 0o600, 0o700)])
def test_run_files_pads_settings_and_recipes_follow_the_umask(tmp_path, umask, file, folder):
    out = tmp_path / "demo"
    p = under_umask(umask, "demo", "--out", str(out), cwd=tmp_path)  # the demo's notes, recipe and whole run
    assert p.returncode == 0, p.stderr[-3000:]
    run = out / "run"
    got = modes(run)
    pads = [name for name in got if name.startswith("pads/") and name.endswith(".bin")]
    assert pads and "settings.json" in got and "state.json" in got and "recipe.yaml" in got, sorted(got)
    assert any(name.startswith("events/") for name in got) and any(name.startswith("generate/") for name in got)
    for name in [*pads, "settings.json", "state.json", "recipe.yaml", "plan.json", "validate/report.json"]:
        assert got[name] == file, f"{run / name}: mode {got[name]:04o}, want {file:04o} under umask {umask}"
    wrong = {name: f"{mode:04o}" for name, mode in modes(out).items()
             if mode != (folder if (out / name).is_dir() else file)}
    assert not wrong, f"under umask {umask} every file should be {file:04o} and every folder {folder:04o}: {wrong}"

    recipe = tmp_path / "mine" / "birds.yaml"
    r = under_umask(umask, "recipe", "new", "birds", "-o", str(recipe), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert os.stat(recipe).st_mode & 0o7777 == file
    assert os.stat(recipe.parent).st_mode & 0o7777 == folder
