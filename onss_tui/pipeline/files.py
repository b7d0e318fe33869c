"""The typed files of a run folder: one schema each (docs/run-folder.md describes them all).

Every process that shares a run (the supervisor, generate workers, the CLI, the dashboard) reads
and writes these through :class:`~onss_tui.pipeline.rundir.RunDir`; none reads them by string keys.

    state.json              RunState: the run's status and each stage's
    plan.json               RunPlan (pipeline/plan.py): every setting, decided once
    interpolate/sounds.json SoundList: the unique sounds of the grid, in generation order
    interpolate/pads.json   PadRows: each pad's rows, as sound indices
    events/<stream>.jsonl   Event lines, one writer a file; read with EventReader
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from onss_tui.vocab import Engine, RunStatus, StageStatus

__all__ = ["FileDigest", "DoneMarker", "StageState", "RunState", "Sound", "SOUNDS", "PAD_ROWS", "Event",
           "EventReader"]


class FileDigest(BaseModel):
    """What a file held when onss wrote (or read) it: its size and content hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int
    sha256: str


class DoneMarker(BaseModel):
    """``<output>.done``: certifies that its output was written completely, and what it held. A
    marker whose output is missing or differs (size, then checksum) certifies nothing."""

    model_config = ConfigDict(extra="allow")

    t: float  # when the output was finished (Unix time)
    size: int
    sha256: str


class StageState(BaseModel):
    """One stage in state.json. A stage's own counts (sounds, pads, warnings ...) ride along as
    extra fields: they are for people and viewers, never read back as settings."""

    model_config = ConfigDict(extra="allow")

    status: StageStatus = "pending"
    at: float | None = None  # when the status last changed (Unix time)
    seconds: float | None = None  # how long the stage took, once done
    error: str | None = None  # why it failed, in words
    # what it consumed: one digest of the recipe, the earlier stages' outputs and (prepare) the
    # input notes; recorded when the stage starts, so a rerun knows its partial work is stale
    consumed: str | None = None
    sources: dict[str, FileDigest] | None = None  # prepare: each input note file read (absolute path)
    produced: dict[str, FileDigest] | None = None  # once done: each output (path in the run folder)

    def info(self) -> dict[str, Any]:
        """The stage's own counts (the extra fields)."""
        return dict(self.model_extra or {})


class RunState(BaseModel):
    """state.json: written atomically by the supervisor only."""

    model_config = ConfigDict(extra="forbid")

    status: RunStatus | None = None  # None: never started
    name: str | None = None
    engine: Engine | None = None
    pid: int | None = None  # the supervisor that last worked here
    updated: float | None = None
    stages: dict[str, StageState] = Field(default_factory=dict)

    def stage(self, name: str) -> StageState:
        return self.stages.get(name, StageState())


class Sound(BaseModel):
    """One unique sound of the grid (spec §3.2): its mix of corner instruments at one pitch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    name: str
    pitch: int
    mix: list[tuple[str, float]]  # (instrument, weight), weights sum to 1


SOUNDS = TypeAdapter(list[Sound])  # interpolate/sounds.json
PAD_ROWS = TypeAdapter(dict[str, list[int]])  # interpolate/pads.json: pad name -> sound index of each row


class Event(BaseModel):
    """One line of ``events/<stream>.jsonl``. ``event`` names what happened (run_start, stage_start,
    stage_done, stage_skip, stage_failed, progress, warning, precision, kernels, start, shard_done,
    out_of_memory, run_done); the fields that go with each ride along as extra keys."""

    model_config = ConfigDict(extra="allow")

    t: float  # Unix time, ms resolution
    stream: str  # the writer: supervisor, a stage's name, or generate-w<N> for worker N
    event: str


class EventReader:
    """The one reader of a run's events: each call returns only the complete lines appended to any
    events file since the last call, in time order, as dicts checked against :class:`Event`. A line
    still being written waits for the next call; a line that is not an event is skipped."""

    def __init__(self, run_path: str | os.PathLike, streams: tuple[str, ...] | None = None):
        self.folder = Path(run_path) / "events"
        self.streams = streams  # only these streams' files (by prefix), or all
        self.offsets: dict[Path, int] = {}

    def _files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        files = sorted(self.folder.glob("*.jsonl"))
        if self.streams is not None:
            files = [f for f in files if f.stem.startswith(self.streams)]
        return files

    def read(self) -> list[dict[str, Any]]:
        out = []
        for f in self._files():
            start = self.offsets.get(f, 0)
            try:
                with open(f, "rb") as fh:
                    fh.seek(start)
                    data = fh.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1
            self.offsets[f] = start + end
            for line in data[:end].splitlines():
                try:
                    record = json.loads(line)
                    Event.model_validate(record)
                except (ValueError, ValidationError):  # not JSON, not UTF-8, not an event: not ours to trust
                    continue
                out.append(record)
        return sorted(out, key=lambda e: e["t"])
