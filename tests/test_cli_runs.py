"""Finding runs from anywhere (onss ls; names for status, attach, stop, audition) and onss audition,
through the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import small_recipe, write_notes


def onss(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onss_tui", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env=dict(os.environ))


def test_after_a_reconnect_runs_are_found_by_name_from_home(tmp_path):
    work, home = tmp_path / "work", tmp_path / "home"
    home.mkdir()
    write_notes(work / "audio", "abcd", [60, 64])
    small_recipe(work, name="birds.yaml")
    r = onss("run", "birds.yaml", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "Hear it:   onss audition" in r.stdout
    ls = onss("ls", cwd=home)  # (an SSH reconnect lands in $HOME)
    assert ls.returncode == 0 and "small" in ls.stdout and "done" in ls.stdout and str(work / "run") in ls.stdout
    rows = json.loads(onss("ls", "--json", cwd=home).stdout)
    assert [(r["name"], r["status"], r["run"]) for r in rows] == [("small", "done", str(work / "run"))]
    status = onss("status", "small", cwd=home)
    assert status.returncode == 0 and "]  done" in status.stdout, status.stderr
    stop = onss("stop", "small", cwd=home)
    assert stop.returncode == 0 and "no run is active" in stop.stdout
    missing = onss("status", "nosuch", cwd=home)
    assert missing.returncode == 2 and "no run of a recipe named so" in missing.stderr and "small" in missing.stderr
    aud = onss("audition", "small", "-o", str(tmp_path / "hear"), cwd=home)
    assert aud.returncode == 0, aud.stderr
    assert (tmp_path / "hear" / "index.html").is_file() and len(list((tmp_path / "hear").glob("*.wav"))) > 4
    assert "scp -r" in aud.stdout


def test_ls_without_runs_says_how_to_start_one(tmp_path):
    r = onss("ls", cwd=tmp_path)
    assert r.returncode == 0 and "No runs yet" in r.stdout
    unfinished = tmp_path / "run"
    unfinished.mkdir()
    (unfinished / "state.json").write_text('{"status": "running"}')
    r = onss("audition", str(unfinished), cwd=tmp_path)
    assert r.returncode == 2 and "has not finished" in r.stderr


def test_a_run_folder_with_its_audition_in_it_still_resumes(tmp_path):
    write_notes(tmp_path / "audio", "abcd", [60, 64])
    small_recipe(tmp_path)
    assert onss("run", "small.yaml", cwd=tmp_path).returncode == 0
    assert onss("audition", "run", cwd=tmp_path).returncode == 0  # (the default: <run>/audition)
    again = onss("run", "small.yaml", cwd=tmp_path)
    assert again.returncode == 0 and "did not write" not in again.stderr, again.stderr
