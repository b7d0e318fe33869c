"""The runs this user has started, wherever they are: one small file a run in the user's state
folder (``$ONSS_STATE_DIR``, else ``~/.local/state/onss/runs/`` on Linux).

After an SSH reconnect a user lands in ``$HOME``: ``onss ls`` lists the runs from here, and
``status``, ``attach`` and ``stop`` take a recipe's name as well as a run folder. Each entry is
written atomically, one file a run (two runs starting at once never write the same file); an entry
whose run folder has gone is left out of the list (and removed: onss wrote it).

    register(run_dir, name, recipe_file)
    for entry in runs(): print(entry.name, entry.run)
    find("birds")  # -> the newest run of the recipe named birds, or a run folder given as a path
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from onss_tui.atomic import atomic_write_text

__all__ = ["RunEntry", "state_dir", "register", "runs", "find"]


class RunEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str  # the recipe's name
    run: str  # the run folder (absolute)
    recipe: str | None = None  # the recipe file it was started from (absolute), where known
    started: float  # first registered (Unix time)
    updated: float  # last started or resumed
    slurm: bool = False  # last submitted to Slurm


def state_dir() -> Path:
    env = os.environ.get("ONSS_STATE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_state_dir("onss"))


def _entry_path(run: Path) -> Path:
    return state_dir() / "runs" / (hashlib.sha1(str(run).encode()).hexdigest()[:16] + ".json")


def register(run: Path, name: str, recipe: Path | None = None, slurm: bool = False) -> None:
    """Note that ``run`` was started (or resumed) now. A registry that cannot be written (a
    read-only home) never stops a run."""
    run = Path(run).resolve()
    path = _entry_path(run)
    now = time.time()
    try:
        started = RunEntry.model_validate_json(path.read_bytes()).started
    except (OSError, ValueError):
        started = now
    entry = RunEntry(name=name, run=str(run), recipe=str(Path(recipe).resolve()) if recipe else None,
                     started=started, updated=now, slurm=slurm)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, entry.model_dump_json())
    except OSError:
        pass


def runs() -> list[RunEntry]:
    """Every registered run whose folder still exists, the most recently started first."""
    folder = state_dir() / "runs"
    out = []
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            entry = RunEntry.model_validate_json(f.read_bytes())
        except (OSError, ValueError):
            continue
        if (Path(entry.run) / "state.json").is_file() or (Path(entry.run) / "recipe.yaml").is_file():
            out.append(entry)
        else:
            f.unlink(missing_ok=True)  # (the run folder was deleted: the entry is onss's own)
    return sorted(out, key=lambda e: e.updated, reverse=True)


def find(what: str) -> RunEntry | None:
    """The newest run of the recipe named ``what``, or the run whose folder ``what`` is."""
    target = Path(what).expanduser()
    folder = str(target.resolve()) if target.exists() else None
    for entry in runs():
        if entry.run == folder or entry.name == what:
            return entry
    return None
