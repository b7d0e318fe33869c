"""The run directory: the only contract between the supervisor, the workers and any viewer.

    <run>/recipe.yaml            the recipe as run (paths resolved)
    <run>/state.json             atomic: per-stage status, the supervisor's pid, timestamps
    <run>/events/<stream>.jsonl  append-only progress events, one JSON object a line
    <run>/lock                   flock'ed by the one runner working here
    <run>/logs/                  supervisor and worker logs
    <run>/<stage>/...            each stage's outputs; a shard is finished only when its
                                 ``.done`` marker exists (written after the output, atomically)
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from onss_tui.atomic import atomic_write_text

STAGES = ("prepare", "embed", "interpolate", "plan", "generate", "clean", "pack", "settings", "validate")

__all__ = ["STAGES", "RunDir", "RunLocked"]


class RunLocked(Exception):
    """Another runner holds this run directory."""


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- layout ----------------------------------------------------------------------------
    def stage_dir(self, stage: str) -> Path:
        d = self.path / stage
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def state_path(self) -> Path:
        return self.path / "state.json"

    @property
    def recipe_path(self) -> Path:
        return self.path / "recipe.yaml"

    @property
    def pads_dir(self) -> Path:
        return self.path / "pads"

    @property
    def settings_path(self) -> Path:
        return self.path / "settings.json"

    # -- state -----------------------------------------------------------------------------
    def read_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {"stages": {}}

    def update_state(self, **changes: Any) -> dict[str, Any]:
        state = self.read_state()
        stages = changes.pop("stages", None)
        state.update(changes)
        if stages:
            for name, info in stages.items():
                state.setdefault("stages", {}).setdefault(name, {}).update(info)
        state["updated"] = time.time()
        atomic_write_text(self.state_path, json.dumps(state, indent=2, sort_keys=True))
        return state

    def set_stage(self, stage: str, status: str, **info: Any) -> None:
        self.update_state(stages={stage: {"status": status, "at": time.time(), **info}})

    def stage_status(self, stage: str) -> str:
        return self.read_state().get("stages", {}).get(stage, {}).get("status", "pending")

    # -- events ----------------------------------------------------------------------------
    def emit(self, stream: str, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event line (a single write of one line: readers never see half a line)."""
        record = {"t": round(time.time(), 3), "stream": stream, "event": event, **fields}
        d = self.path / "events"
        d.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record) + "\n").encode()
        fd = os.open(d / f"{stream}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return record

    def events(self, stream: str | None = None) -> list[dict[str, Any]]:
        d = self.path / "events"
        files = [d / f"{stream}.jsonl"] if stream else sorted(d.glob("*.jsonl"))
        out = []
        for f in files:
            if not f.is_file():
                continue
            for line in f.read_text().splitlines():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a line being written right now
        return sorted(out, key=lambda e: e.get("t", 0))

    # -- done markers --------------------------------------------------------------------------
    @staticmethod
    def is_done(output: Path) -> bool:
        return output.with_name(output.name + ".done").is_file() and output.exists()

    @staticmethod
    def mark_done(output: Path, **info: Any) -> None:
        atomic_write_text(output.with_name(output.name + ".done"), json.dumps({"t": time.time(), **info}))

    # -- the lock ------------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise RunLocked(f"{self.path}: another onss run (pid {pid}) is working on this folder. "
                                f"Watch it with: onss status {self.path}   or stop it: onss stop {self.path}") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the flock, also when the process dies

    def locked_by(self) -> int | None:
        """The pid holding the lock, or None when no runner is active."""
        path = self.path / "lock"
        if not path.is_file():
            return None
        fd = os.open(path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)
