"""Finding and checking a recipe's notes (the prepare stage's rules; the wizard shows the same).

Input files are ``<instrument>_<midi pitch>.<wav|aif|aiff|flac|mp3|ogg>``. Every problem is
collected and reported at once, each naming the file (or the missing file) and the fix. The stage
that reads them into the run folder is :mod:`onss_tui.pipeline.stages.prepare`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onss_tui.audio.io import AUDIO_SUFFIXES, SILENT_PEAK, UNREAD_SUFFIXES, AudioError, fit_length, load, probe
from onss_tui.recipe import Recipe

FILE_RE = re.compile(r"^(?P<name>[^_]+)_(?P<pitch>\d{1,3})$")
SHORT_SECONDS = 0.5  # shorter notes get a warning
MIN_SECONDS = 0.1  # shorter ones are refused

__all__ = ["PrepareError", "Note", "Scan", "scan_inputs", "inspect_note", "read_notes"]


class PrepareError(Exception):
    """Inputs that cannot make this recipe; ``problems`` lists each with its fix."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class Note:
    instrument: str
    pitch: int
    path: Path


@dataclass
class Scan:
    notes: dict[tuple[str, int], Note] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# What the recipe does not use, in the order the summary warning lists it: (key, one, many).
_IGNORED = (("misnamed", "audio file not named <instrument>_<midi pitch>", "audio files not named "
             "<instrument>_<midi pitch>"),
            ("pitch", "note at a pitch the recipe does not use", "notes at pitches the recipe does not use"),
            ("instrument", "note of an instrument the recipe does not use",
             "notes of instruments the recipe does not use"),
            ("other", "other file", "other files"),
            ("folder", "folder", "folders"))


def _ignored_summary(inputs: Path, ignored: dict[str, list[str]]) -> str | None:
    """One warning for everything in the folder the recipe does not use (never one per file)."""
    total = sum(len(v) for v in ignored.values())
    if not total:
        return None
    parts = []
    for key, one, many in _IGNORED:
        names = ignored.get(key, [])
        if names:
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            parts.append(f"{len(names):,} {one if len(names) == 1 else many} ({shown})")
    hint = (" Name a note <instrument>_<midi pitch> (e.g. flute_60.wav) for it to be used."
            if "misnamed" in ignored else "")
    return (f"{inputs}: ignored {total:,} file{'' if total == 1 else 's'} the recipe does not use: "
            f"{'; '.join(parts)}.{hint}")


def scan_inputs(recipe: Recipe, inputs: Path) -> Scan:
    """Match the folder's files to the recipe's instruments and pitches (no audio is read, no file
    opened). What the recipe does not use is ignored and named once, in one summary warning."""
    scan = Scan()
    if not inputs.is_dir():
        scan.problems.append(f"{inputs}: no such folder. Set 'inputs' in the recipe to the folder of your notes.")
        return scan
    wanted = {n for corner in recipe.corners.names() for n in corner}
    lower = {n.lower(): n for n in wanted}
    pitches = set(recipe.pitches)
    found: dict[tuple[str, int], list[Path]] = {}
    unread: dict[tuple[str, int], list[Path]] = {}  # wanted notes in a format that is not read (.m4a, ...)
    ignored: dict[str, list[str]] = {}
    for f in sorted(inputs.iterdir()):
        if f.name.startswith("."):
            continue  # .DS_Store, ._a_60.wav, editors' files
        suffix = f.suffix.lower()
        m = FILE_RE.match(f.stem)
        if suffix not in AUDIO_SUFFIXES:
            if m and suffix in UNREAD_SUFFIXES and m["name"] in wanted and int(m["pitch"]) in pitches:
                unread.setdefault((m["name"], int(m["pitch"])), []).append(f)
            else:
                ignored.setdefault("folder" if f.is_dir() else "other", []).append(f.name)
            continue
        if not m:
            if f.stem.count("_") > 1:
                scan.problems.append(f"{f}: more than one '_' in the name; name notes <instrument>_<pitch> "
                                     "with no '_' inside the instrument name (e.g. bird-1_60.wav).")
            else:
                ignored.setdefault("misnamed", []).append(f.name)
            continue
        name, pitch = m["name"], int(m["pitch"])
        if name not in wanted:
            if name.lower() in lower:
                scan.problems.append(f"{f}: names are case-sensitive: the recipe says {lower[name.lower()]!r}. "
                                     f"Rename the file to {lower[name.lower()]}_{pitch}{f.suffix} or fix the recipe.")
            else:
                ignored.setdefault("instrument", []).append(f.name)
            continue
        if pitch not in pitches:
            ignored.setdefault("pitch", []).append(f.name)
        found.setdefault((name, pitch), []).append(f)
    for key, files in unread.items():
        if key in found:  # the note is there in a format that is read: the other one is not used
            ignored.setdefault("other", []).extend(f.name for f in files)
    for (name, pitch), files in found.items():
        if len(files) > 1:
            scan.problems.append(f"{inputs}: {name} at pitch {pitch} has {len(files)} files "
                                 f"({', '.join(p.name for p in files)}); keep one.")
    for corner in recipe.corners.names():
        for name in corner:
            for pitch in recipe.pitches:
                files = found.get((name, pitch), [])
                if not files and (name, pitch) in unread:
                    for f in unread[(name, pitch)]:
                        scan.problems.append(f"{f}: {f.suffix} files are not read (only {', '.join(AUDIO_SUFFIXES)})."
                                             f" Convert it, e.g. to .wav or .flac (ffmpeg -i {f.name} {f.stem}.wav).")
                elif not files:
                    have = sorted(p for (n, p) in found if n == name)
                    hint = f" (found pitches {have})" if have else " (no files of it at all)"
                    scan.problems.append(f"{inputs / f'{name}_{pitch}.wav'}: missing: {name} at MIDI pitch {pitch}"
                                         f"{hint}. Add the note, or remove pitch {pitch} from the recipe.")
                elif len(files) == 1:
                    scan.notes[(name, pitch)] = Note(name, pitch, files[0])
    summary = _ignored_summary(inputs, ignored)
    if summary:
        scan.warnings.append(summary)
    return scan


def suggest_name(stem: str) -> str:
    """The file name FILE_RE accepts for a note named ``stem`` (its suffix left out), or a pattern
    with ``<midi pitch>`` where no pitch is found in it: ``Piano 60`` -> ``piano_60``,
    ``French Horn`` -> ``french-horn_<midi pitch>``."""
    m = re.match(r"^(?P<name>.*?)[\s_-]*(?P<pitch>\d{1,3})$", stem.strip())
    words = re.split(r"[\s_-]+", (m["name"] if m else stem).strip().lower())
    name = "-".join(w for w in words if w) or "note"
    return f"{name}_{int(m['pitch'])}" if m and m["name"].strip(" _-") else f"{name}_<midi pitch>"


def inspect_note(path: Path) -> tuple[np.ndarray | None, list[str], list[str]]:
    """Read one note as the prepare stage does: (16 kHz mono audio, or None when it cannot be
    used; its problems, each with the fix; its warnings). The wizard shows the same findings."""
    problems: list[str] = []
    warnings: list[str] = []
    try:
        info = probe(path)
        if info.frames > 16000 * 60 * 10:
            return None, [f"{path}: {info.seconds / 60:.0f} minutes long; a note should be a few seconds. Trim it."], []
        if info.missing_frames:  # the header claims more than the file holds: cut short (a copy or export cut off)
            cut = (f"{path}: truncated: the header says {info.declared_seconds:.2f} s, the file "
                   f"holds {info.seconds:.2f} s ({info.missing_frames:,} frames missing)")
            if info.seconds < MIN_SECONDS:
                return None, [f"{cut}; a note needs at least {MIN_SECONDS} s. Export it again."], []
            warnings.append(f"{cut}; the rest is used as it is. Export it again for the whole note.")
        audio = load(path)
    except AudioError as exc:
        return None, [str(exc)], warnings
    _check_audio(path, audio, warnings, problems)
    return (None if problems else audio), problems, warnings


def _check_audio(path: Path, audio: np.ndarray, warnings: list[str], problems: list[str]) -> None:
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak < SILENT_PEAK:  # below -80 dBFS
        problems.append(f"{path}: silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS). "
                        "Replace it with the real note, or check its export level.")
        return
    if len(audio) < MIN_SECONDS * 16000:
        problems.append(f"{path}: only {len(audio) / 16000:.2f} s long; a note needs at least {MIN_SECONDS} s "
                        "(about 4 s works best). Export the whole note.")
        return
    if peak >= 0.999:
        warnings.append(f"{path}: clipped (peak at full scale); lower its level and export it again.")
    if len(audio) < SHORT_SECONDS * 16000:
        warnings.append(f"{path}: only {len(audio) / 16000:.2f} s long; it is padded with silence to the "
                        "sample length. Notes of about 4 s work best.")
    dc = float(np.mean(audio)) if audio.size else 0.0
    if abs(dc) > 0.05:
        warnings.append(f"{path}: DC offset {dc:+.2f}; remove it (high-pass) for a cleaner result.")


def read_notes(recipe: Recipe, inputs: Path) -> tuple[list[tuple[str, int]], dict[tuple[str, int], np.ndarray],
                                                    Scan, list[str]]:
    """Read and check every note the recipe needs, writing nothing: (the notes in row order, their
    audio fitted to the sample length, the scan, the warnings). Raises PrepareError with every
    problem at once."""
    scan = scan_inputs(recipe, inputs)
    problems, warnings = list(scan.problems), list(scan.warnings)
    keys = [(n, p) for corner in recipe.corners.names() for n in corner for p in recipe.pitches]
    audio: dict[tuple[str, int], np.ndarray] = {}
    for key in keys:
        note = scan.notes.get(key)
        if note is None:
            continue
        x, found, warned = inspect_note(note.path)
        problems += found
        warnings += warned
        if x is not None:
            audio[key] = fit_length(x, recipe.generation.sample_length)
    if problems:
        raise PrepareError(problems)
    return keys, audio, scan, warnings
