"""What a run consumed and produced, so a rerun trusts files, not state.json.

Every stage records, in its :class:`~onss_tui.pipeline.files.StageState`:

    consumed   one digest of what it read: the recipe, every earlier stage's outputs (their
               recorded digests) and, for prepare, the input notes themselves (``sources``)
    produced   each output file (path in the run folder) with its size and SHA-256

A rerun checks each finished stage before it skips it: are its outputs all there and unchanged,
and is what it would consume now what it consumed then? If an output is missing or damaged the
stage runs again and remakes only that (its per-file ``.done`` markers certify the rest); if an
input changed, the stage's outputs are stale: they are removed and the stage runs again, and since
its outputs change, so does what every later stage consumes. The runner says which and why.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from onss_tui.pipeline.files import FileDigest, StageState
from onss_tui.pipeline.rundir import RunDir
from onss_tui.recipe import Recipe

__all__ = ["digest_file", "note_sources", "consumed_digest", "stage_outputs", "produced", "Stale", "check_stage",
           "clear_stage"]

_CHUNK = 1 << 20


def digest_file(path: Path) -> FileDigest:
    """Size and SHA-256 of a file, read in 1 MB pieces (OSError if it cannot be read)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return FileDigest(size=size, sha256=h.hexdigest())


def note_sources(recipe: Recipe) -> dict[str, FileDigest]:
    """The input note files the recipe uses now (absolute path -> digest); notes that are missing
    or cannot be read are left out (the prepare stage explains them)."""
    from onss_tui.pipeline.prepare import scan_inputs

    scan = scan_inputs(recipe, Path(recipe.inputs))
    out: dict[str, FileDigest] = {}
    for note in scan.notes.values():
        try:
            if note.path.is_file():
                out[str(note.path)] = digest_file(note.path)
        except OSError:
            continue
    return dict(sorted(out.items()))


def consumed_digest(recipe_sha256: str, earlier: dict[str, dict[str, FileDigest]],
                    sources: dict[str, FileDigest] | None = None) -> str:
    """One digest of a stage's inputs: the recipe, each earlier stage's recorded outputs, the notes."""
    doc = {
        "recipe": recipe_sha256,
        "stages": {s: {p: d.model_dump() for p, d in files.items()} for s, files in earlier.items()},
        "sources": {p: d.model_dump() for p, d in (sources or {}).items()},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def stage_outputs(run: RunDir, stage: str) -> list[Path]:
    """The files a finished stage leaves: its folder's outputs (not the ``.done`` markers, the
    hidden temp files or pack's ``done/`` markers) and, for some stages, files of the run folder."""
    files: list[Path] = []
    folder = run.path / stage
    if folder.is_dir():
        for f in sorted(folder.rglob("*")):
            rel = f.relative_to(folder)
            if not f.is_file() or f.name.startswith(".") or f.name.endswith(".done") or rel.parts[0] == "done":
                continue
            files.append(f)
    if stage == "plan":
        files.append(run.plan_path)
    elif stage == "pack":
        try:
            names = sorted(run.pad_rows())
        except (OSError, ValueError):
            names = []
        files += [run.pads_dir / f"{name}.bin" for name in names]
    elif stage == "settings":
        files.append(run.settings_path)
    return files


def produced(run: RunDir, stage: str) -> dict[str, FileDigest]:
    """Every output of a stage that just finished, with its digest (paths relative to the run)."""
    return {str(f.relative_to(run.path)): digest_file(f) for f in stage_outputs(run, stage) if f.is_file()}


@dataclass(frozen=True)
class Stale:
    """Why a finished stage must run again. ``changed``: its inputs changed (its outputs are stale
    and are removed); otherwise an output is missing or damaged (only that is made again)."""

    reason: str
    changed: bool


def check_stage(run: RunDir, st: StageState, consumed: str) -> Stale | None:
    """None when a finished stage's record still holds: the same inputs, every output as it was."""
    if st.consumed is not None and st.consumed != consumed:
        return Stale("its inputs changed since it ran", changed=True)
    if st.produced is None:  # a run folder of an older onss: nothing recorded to trust
        return Stale("no record of its outputs", changed=False)
    for rel, want in st.produced.items():
        path = run.path / rel
        try:
            size = path.stat().st_size
        except OSError:
            return Stale(f"{rel} is missing", changed=False)
        if size != want.size:
            return Stale(f"{rel} is damaged ({size:,} bytes, {want.size:,} when it was made)", changed=False)
        try:
            if digest_file(path).sha256 != want.sha256:
                return Stale(f"{rel} is damaged (its content changed after it was made)", changed=False)
        except OSError as exc:
            return Stale(f"{rel} cannot be read ({exc.strerror})", changed=False)
    return None


def changed_sources(before: dict[str, FileDigest] | None, now: dict[str, FileDigest]) -> list[str]:
    """The input notes that differ from what prepare read (names, for the message)."""
    before = before or {}
    names = []
    for path in sorted(set(before) | set(now)):
        if before.get(path) != now.get(path):
            names.append(Path(path).name)
    return names


def clear_stage(run: RunDir, stage: str, st: StageState) -> int:
    """Remove a stage's stale outputs and markers, and only what onss wrote: the stage's own
    folder, the outputs it recorded, and (pack) the pads its markers certify. Returns how many
    files went."""
    targets: list[Path] = []
    folder = run.path / stage
    if folder.is_dir():
        targets += [f for f in folder.rglob("*") if f.is_file()]
    targets += [run.path / rel for rel in (st.produced or {})]
    if stage == "pack":  # pads of an unfinished pack: named by pack/done/<name>.bin.done
        targets += [run.pads_dir / f.name.removesuffix(".done") for f in (folder / "done").glob("*.bin.done")]
    elif stage in ("plan", "settings"):
        targets += stage_outputs(run, stage)
    removed = 0
    for f in dict.fromkeys(targets):
        try:
            os.unlink(f)
            removed += 1
        except FileNotFoundError:
            pass
    return removed
