"""The run directory: the only contract between the supervisor, the workers and any viewer.

    <run>/recipe.yaml            the recipe as run (paths resolved)
    <run>/state.json             atomic: per-stage status, the supervisor's pid, timestamps (RunState)
    <run>/plan.json              atomic: every setting of the run, decided once (RunPlan)
    <run>/events/<stream>.jsonl  append-only progress events, one JSON object a line, one writer a file
    <run>/lock                   flock'ed by the one runner working here
    <run>/stop                   a stop was asked for (onss stop, the dashboard): the run ends
                                 "stopped", not "interrupted"; a new start removes it
    <run>/logs/                  supervisor and worker logs
    <run>/<stage>/...            each stage's outputs; a shard is finished only when its
                                 ``.done`` marker exists (written after the output, atomically)
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onss_tui.atomic import atomic_write_text
from onss_tui.pipeline.files import PAD_ROWS, SOUNDS, DoneMarker, Event, EventReader, RunState, Sound

if TYPE_CHECKING:
    from onss_tui.pipeline.plan import RunPlan

# in order: the plan comes right after prepare, so every later stage (the encoder included) runs
# with the settings it decided
STAGES = ("prepare", "plan", "embed", "interpolate", "generate", "clean", "pack", "settings", "validate")

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

    @property
    def plan_path(self) -> Path:
        return self.path / "plan.json"

    @property
    def stop_path(self) -> Path:
        return self.path / "stop"

    # -- state -----------------------------------------------------------------------------
    def state(self) -> RunState:
        """state.json, or an empty state where there is none (or it cannot be read)."""
        try:
            return RunState.model_validate_json(self.state_path.read_bytes())
        except (OSError, ValueError):
            return RunState()

    def state_damaged(self) -> bool:
        """True when state.json exists but cannot be read as a RunState (a rerun rebuilds it from
        the files: every output's done marker still certifies it)."""
        try:
            RunState.model_validate_json(self.state_path.read_bytes())
        except FileNotFoundError:
            return False
        except (OSError, ValueError):
            return True
        return False

    def update_state(self, stages: dict[str, dict[str, Any]] | None = None, **changes: Any) -> RunState:
        state = self.state()
        data = state.model_dump(exclude_none=True)
        data.update(changes)
        for name, info in (stages or {}).items():
            data.setdefault("stages", {}).setdefault(name, {}).update(info)
        data["updated"] = time.time()
        state = RunState.model_validate(data)
        atomic_write_text(self.state_path, state.model_dump_json(indent=2, exclude_none=True))
        return state

    def set_stage(self, stage: str, status: str, **info: Any) -> None:
        self.update_state(stages={stage: {"status": status, "at": time.time(), **info}})

    def stage_status(self, stage: str) -> str:
        return self.state().stage(stage).status

    # -- the plan and the grid ---------------------------------------------------------------
    def plan(self) -> RunPlan:
        """plan.json, as the plan stage wrote it (FileNotFoundError before that)."""
        from onss_tui.pipeline.plan import RunPlan

        return RunPlan.model_validate_json(self.plan_path.read_bytes())

    def has_plan(self) -> bool:
        return self.plan_path.is_file()

    def sounds(self) -> list[Sound]:
        return SOUNDS.validate_json((self.path / "interpolate" / "sounds.json").read_bytes())

    def pad_rows(self) -> dict[str, list[int]]:
        return PAD_ROWS.validate_json((self.path / "interpolate" / "pads.json").read_bytes())

    # -- events ----------------------------------------------------------------------------
    def emit(self, stream: str, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event line (a single write of one line: readers never see half a line)."""
        record = {"t": round(time.time(), 3), "stream": stream, "event": event, **fields}
        Event.model_validate(record)
        d = self.path / "events"
        d.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record) + "\n").encode()
        fd = os.open(d / f"{stream}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return record

    def events(self, streams: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """Every event so far (for a one-off look; a viewer that polls keeps an :meth:`event_reader`)."""
        return EventReader(self.path, streams).read()

    def event_reader(self, streams: tuple[str, ...] | None = None) -> EventReader:
        return EventReader(self.path, streams)

    # -- done markers --------------------------------------------------------------------------
    # ``<output>.done`` (or ``marker``) is written after its output, atomically, and records the
    # output's size and SHA-256: it certifies that output only while the output still matches.
    @staticmethod
    def marker_path(output: Path, marker: Path | None = None) -> Path:
        return marker if marker is not None else output.with_name(output.name + ".done")

    @staticmethod
    def done_marker(output: Path, marker: Path | None = None) -> DoneMarker | None:
        """The marker of ``output``, or None (absent, unreadable, or of an older onss: no checksum)."""
        try:
            return DoneMarker.model_validate_json(RunDir.marker_path(output, marker).read_bytes())
        except (OSError, ValueError):
            return None

    @staticmethod
    def is_done(output: Path, marker: Path | None = None) -> bool:
        """True when ``output`` is finished: its marker exists and the file matches it (size, then checksum)."""
        return RunDir.damage(output, marker) is None

    @staticmethod
    def damage(output: Path, marker: Path | None = None) -> str | None:
        """None when ``output`` is certified by its marker; otherwise what is wrong, in words."""
        from onss_tui.pipeline.integrity import digest_file

        record = RunDir.done_marker(output, marker)
        if record is None:
            return "not finished (no done marker)"
        try:
            size = output.stat().st_size
            if size != record.size:
                return f"damaged: {size:,} bytes, {record.size:,} when it was finished"
            if digest_file(output).sha256 != record.sha256:
                return "damaged: its content changed after it was finished"
        except OSError as exc:
            return f"missing or unreadable ({exc.strerror})"
        return None

    @staticmethod
    def checked(output: Path, marker: Path | None = None) -> Path:
        """``output``, for a later stage to read, once its marker certifies it; otherwise its marker
        is removed (so the stage that makes it makes it again) and a RunError says so."""
        why = RunDir.damage(output, marker)
        if why is not None:
            from onss_tui.pipeline.context import RunError

            RunDir.marker_path(output, marker).unlink(missing_ok=True)
            raise RunError(f"{output}: {why}. It will be made again: run again to resume.")
        return output

    @staticmethod
    def mark_done(output: Path, marker: Path | None = None, **info: Any) -> None:
        from onss_tui.pipeline.integrity import digest_file

        digest = digest_file(output)
        record = DoneMarker(t=time.time(), size=digest.size, sha256=digest.sha256, **info)
        atomic_write_text(RunDir.marker_path(output, marker), record.model_dump_json())

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

    # -- a stop asked for --------------------------------------------------------------------
    def request_stop(self, pid: int) -> None:
        """Record that the supervisor ``pid`` is asked to stop (before it is signalled): however
        and whenever it ends, the run then says stopped, not interrupted."""
        atomic_write_text(self.stop_path, json.dumps({"pid": pid, "t": time.time()}) + "\n")

    def stop_requested(self) -> bool:
        return self.stop_path.is_file()

    def clear_stop(self) -> None:
        """A supervisor starting (again): an earlier stop request is over."""
        self.stop_path.unlink(missing_ok=True)

    def status_now(self, slurm: bool = False) -> str:
        """The run's status as a reader should see it: ``not started`` without a state, ``interrupted``
        where the state says running but no runner holds the lock (a Slurm run's jobs hold it
        elsewhere: ``slurm`` trusts the state), ``stopped`` there when a stop was asked for."""
        status = (self.state().status if self.state_path.is_file() else None) or "not started"
        if status in ("running", "interrupted") and not slurm and not self.locked_by():
            return "stopped" if self.stop_requested() else "interrupted"
        return status

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
