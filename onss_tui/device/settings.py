"""The device's ``settings.json``: writing it from the pipeline's values, and validating a pack.

The openFrameworks app aborts at start-up on a present value of the wrong type, maps pad files
without a size check (SIGBUS on a short file), needs every corner combination as a file, and
indexes rows by its own ``resolution``/``pitches``/``length``; the validator checks all of that
(spec §4.2-§4.5) and reports each finding with where it is and what to do.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onss_tui.atomic import atomic_write_text
from onss_tui.device.pads import ROW_LENGTH, SAMPLE_RATE, open_pad, pad_filename, pad_size

NAME_FORBIDDEN = re.compile(r"[_/\\\s]")

__all__ = ["Instrument", "DeviceOptions", "build_settings", "write_settings", "Finding", "validate_pack"]


@dataclass(frozen=True)
class Instrument:
    name: str
    display: str
    abbr: str

    @classmethod
    def from_name(cls, name: str) -> Instrument:
        return cls(name, name.upper()[:8], name.upper()[:2])


@dataclass(frozen=True)
class DeviceOptions:
    data_directory: str = "/home/pi/pads"
    looping: bool = True
    loop_start: float = 0.2
    loop_end: float = 0.41
    midi_channel: int = 1
    midi_device: str = "/dev/ttyAMA0"
    osc_port: int = 8000
    audio_sample_rate: int = 48000
    audio_buffer_size: int = 128


def build_settings(corners: Sequence[Sequence[Instrument]], pitches: Sequence[int], resolution: int,
                   options: DeviceOptions = DeviceOptions(), length: int = ROW_LENGTH) -> dict[str, Any]:
    """The device settings for a pack: corners in file-name order (TL, TR, BL, BR), explicit
    MIDI channel (the app's own default is 7), and ``osc.in.port`` (the key the app reads) next to
    the ``portNumber`` of the shipped example."""
    return {
        "nsynth": {
            "dataDirectory": options.data_directory,
            "resolution": int(resolution),
            "pitches": [int(p) for p in pitches],
            "length": int(length),
            "sampleRate": SAMPLE_RATE,
            "looping": bool(options.looping),
            "loopStart": float(options.loop_start),
            "loopEnd": float(options.loop_end),
        },
        "corners": [
            {"instruments": [{"name": i.name, "display": i.display, "abbr": i.abbr} for i in corner]}
            for corner in corners
        ],
        "audio": {"sampleRate": int(options.audio_sample_rate), "bufferSize": int(options.audio_buffer_size)},
        "midi": {"device": options.midi_device, "channel": int(options.midi_channel)},
        "osc": {"in": {"port": int(options.osc_port), "portNumber": int(options.osc_port)}},
    }


def write_settings(path: str | os.PathLike, settings: dict[str, Any]) -> Path:
    path = Path(path)
    atomic_write_text(path, json.dumps(settings, indent=2) + "\n")
    return path


# --------------------------------------------------------------------------------------------
# Validation


@dataclass(frozen=True)
class Finding:
    level: str  # "error": would crash, silence or mis-play the device; "warning": worth a look
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


@dataclass
class _Report:
    findings: list[Finding] = field(default_factory=list)

    def error(self, where: str, message: str) -> None:
        self.findings.append(Finding("error", where, message))

    def warn(self, where: str, message: str) -> None:
        self.findings.append(Finding("warning", where, message))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _get(d: Any, key: str) -> Any:
    return d.get(key) if isinstance(d, dict) else None


def validate_pack(
    settings: dict[str, Any] | str | os.PathLike,
    pads_dir: str | os.PathLike,
    resolution: int | None = None,
    pitches: Sequence[int] | None = None,
    content: bool = True,
) -> list[Finding]:
    """Check a settings.json against the pad files in ``pads_dir`` (and, if given, the pipeline's
    resolution and pitches). Returns every finding; any "error" would break the device."""
    r = _Report()
    where_settings = "settings.json"
    if not isinstance(settings, dict):
        where_settings = str(settings)
        try:
            settings = json.loads(Path(settings).read_text())
        except OSError as exc:
            r.error(where_settings, f"cannot read it ({exc.strerror})")
            return r.findings
        except json.JSONDecodeError as exc:
            r.error(f"{where_settings}:{exc.lineno}:{exc.colno}",
                    f"not valid JSON ({exc.msg}); the app would not start")
            return r.findings
    if not isinstance(settings, dict):
        r.error(where_settings, "the top level must be a JSON object")
        return r.findings
    at = lambda key: f"{where_settings}: {key}"  # noqa: E731

    # -- nsynth -------------------------------------------------------------------------------
    n = settings.get("nsynth")
    if n is not None and not isinstance(n, dict):
        r.error(at("nsynth"), "must be an object")
        n = {}
    n = n or {}
    R = n.get("resolution", 9)
    if not _is_int(R) or R < 1:
        r.error(at("nsynth.resolution"), f"must be an integer >= 1, not {R!r}")
        R = None
    elif resolution is not None and R != resolution:
        r.error(at("nsynth.resolution"), f"is {R}, but the pads were made with resolution {resolution}")
    P = n.get("pitches", list(range(36, 85, 4)))
    if "pitches" not in n:
        r.warn(at("nsynth.pitches"), "missing: the app then assumes 13 pitches 36..84; write them explicitly")
    if not isinstance(P, list) or not P or not all(_is_int(p) for p in P):
        r.error(at("nsynth.pitches"), "must be a non-empty list of integers")
        P = None
    else:
        bad = [p for p in P if not 0 <= p <= 127]
        if bad:
            r.error(at("nsynth.pitches"), f"MIDI notes must be 0-127, not {bad}")
        if len(set(P)) != len(P):
            r.warn(at("nsynth.pitches"), "repeats a pitch; the later copy is never played")
        if pitches is not None and list(P) != list(pitches):
            r.error(at("nsynth.pitches"),
                    f"{P} differs from the pads' pitches {list(pitches)} (same values, same order)")
    L = n.get("length", ROW_LENGTH)
    if not _is_int(L) or L <= 0:
        r.error(at("nsynth.length"), f"must be a positive integer, not {L!r}")
        L = None
    elif L != ROW_LENGTH:
        r.error(at("nsynth.length"), f"is {L}; pipeline pads have {ROW_LENGTH} samples a row")
    rate = n.get("sampleRate", SAMPLE_RATE)
    if not _is_int(rate) or rate != SAMPLE_RATE:
        r.error(at("nsynth.sampleRate"), f"must be {SAMPLE_RATE}, not {rate!r}")
    if "looping" in n and not isinstance(n["looping"], bool):
        r.error(at("nsynth.looping"), f"must be true or false, not {n['looping']!r}")
    start, end = n.get("loopStart", 0.2), n.get("loopEnd", 0.41)
    if not _is_number(start) or not _is_number(end):
        r.error(at("nsynth.loopStart/loopEnd"), "must be numbers (fractions of the row length, 0-1)")
    elif not 0 <= start < end <= 1:
        r.error(at("nsynth.loopStart/loopEnd"),
                f"need 0 <= loopStart < loopEnd <= 1 (fractions of the row, not seconds); got {start}, {end}")
    elif (end - start) * (L or ROW_LENGTH) < 8000:
        r.warn(at("nsynth.loopStart/loopEnd"), f"the loop is only {(end - start) * (L or ROW_LENGTH):.0f} samples; "
               "crossfades need about 8000")
    data_dir = n.get("dataDirectory", "")
    if not isinstance(data_dir, str):
        r.error(at("nsynth.dataDirectory"), "must be a string (the folder of the .bin files on the device)")
    elif not data_dir:
        r.warn(at("nsynth.dataDirectory"), "is empty: the app looks for pads in bin/data itself")

    # -- corners ------------------------------------------------------------------------------
    corners = settings.get("corners")
    names: list[list[str]] | None = []
    if not isinstance(corners, list) or len(corners) != 4:
        count = len(corners) if isinstance(corners, list) else "no"
        r.error(at("corners"),
                f"must list exactly 4 corners (top left, top right, bottom left, bottom right); found {count}")
        names = None
    else:
        for ci, corner in enumerate(corners):
            instruments = _get(corner, "instruments")
            if not isinstance(instruments, list) or not instruments:
                r.error(at(f"corners[{ci}].instruments"),
                        "needs at least one instrument; an empty corner crashes the app")
                names = None
                continue
            corner_names = []
            for ii, inst in enumerate(instruments):
                w = f"corners[{ci}].instruments[{ii}]"
                for key in ("name", "display", "abbr"):
                    if not isinstance(_get(inst, key), str):
                        r.error(at(f"{w}.{key}"), "is required and must be a string")
                name = _get(inst, "name")
                if isinstance(name, str):
                    if not name or NAME_FORBIDDEN.search(name):
                        r.error(at(f"{w}.name"), f"{name!r}: names must be non-empty, without '_', '/' or spaces")
                    corner_names.append(name)
                if isinstance(_get(inst, "display"), str) and len(inst["display"]) > 8:
                    r.warn(at(f"{w}.display"), f"{inst['display']!r} is longer than 8 characters; the screen cuts it")
                if isinstance(_get(inst, "abbr"), str) and len(inst["abbr"]) > 2:
                    r.warn(at(f"{w}.abbr"), f"{inst['abbr']!r} is longer than 2 characters")
            if len(set(corner_names)) != len(corner_names):
                r.error(at(f"corners[{ci}]"), "lists an instrument twice")
            if names is not None:
                names.append(corner_names)
        if names is not None:
            flat = [x for c in names for x in c]
            dup = sorted({x for x in flat if flat.count(x) > 1})
            if dup:
                r.warn(at("corners"), f"{', '.join(dup)} sits in more than one corner")

    # -- audio, midi, osc -----------------------------------------------------------------------
    audio = settings.get("audio")
    for key in ("sampleRate", "bufferSize"):
        if not _is_int(_get(audio, key)):
            r.error(at(f"audio.{key}"), "is required (an integer); without it the app does not start")
    channel = _get(settings.get("midi"), "channel")
    if channel is None:
        r.warn(at("midi.channel"), "missing: the app then listens on channel 7, not 1")
    elif not _is_int(channel) or not 1 <= channel <= 16:
        r.error(at("midi.channel"), f"must be an integer 1-16, not {channel!r}")
    osc_in = _get(_get(settings, "osc"), "in")
    if _get(osc_in, "portNumber") is not None and _get(osc_in, "port") is None:
        r.warn(at("osc.in"), "has portNumber but not port; the app reads only 'port' (so listens on 8000)")
    if _get(osc_in, "port") is not None and not _is_int(osc_in["port"]):
        r.error(at("osc.in.port"), "must be an integer")

    # -- the pad files ------------------------------------------------------------------------
    pads_dir = Path(pads_dir)
    if not pads_dir.is_dir():
        r.error(str(pads_dir), "no such folder of pad files")
        return r.findings
    if names is None or R is None or P is None or L is None:
        return r.findings  # the layout is unknown: file checks would only repeat the errors above
    want = pad_size(R, len(P), L)
    combos = list(itertools.product(*names))
    expected_files = {pad_filename(c) for c in combos}
    good: dict[tuple[str, ...], np.memmap] = {}
    for combo in combos:
        f = pads_dir / pad_filename(combo)
        if not f.is_file():
            r.error(str(f), "missing: selecting this combination on the device gives silence")
            continue
        size = f.stat().st_size
        if size < want:
            r.error(str(f), f"{size:,} bytes, needs {want:,}: the device crashes (SIGBUS) playing the missing rows")
        elif size > want:
            r.error(str(f), f"{size:,} bytes, expected {want:,}: made with another resolution, pitch list or length")
        else:
            good[combo] = open_pad(f, R, len(P), L)
    extra = sorted(p.name for p in pads_dir.glob("*.bin") if p.name not in expected_files)
    if extra:
        r.warn(str(pads_dir), f"{len(extra)} .bin files no corner combination uses (e.g. {extra[0]})")
    if content:
        _check_content(r, good, R, len(P))
    return r.findings


def _check_content(r: _Report, pads: dict[tuple[str, ...], np.memmap], R: int, P: int) -> None:
    for combo, rows in pads.items():
        name = pad_filename(combo)
        peaks = np.abs(rows.astype(np.int32)).max(axis=1)
        silent = np.nonzero(peaks == 0)[0]
        if silent.size:
            r.warn(name, f"{silent.size} silent rows (first: row {silent[0]})")
        if (rows[:, 0] != 0).any() or (rows[:, -1] != 0).any():
            r.warn(name, "rows do not start and end at 0 (the fades are missing): expect clicks")
        if peaks.max() >= 32767:
            r.warn(name, "clipped rows (peak at full scale)")
    # the pure corner rows of pads sharing an instrument come from one sound: they must be identical
    corner_cells = [(0, 0), (R - 1, 0), (0, R - 1), (R - 1, R - 1)]
    for ci, (xi, yi) in enumerate(corner_cells):
        by_inst: dict[str, tuple[str, np.ndarray]] = {}
        for combo, rows in pads.items():
            block = np.asarray(rows[(yi * R + xi) * P : (yi * R + xi + 1) * P])
            first = by_inst.setdefault(combo[ci], (pad_filename(combo), block))
            if not np.array_equal(first[1], block):
                r.warn(pad_filename(combo), f"its {combo[ci]} corner rows differ from those in {first[0]}: "
                       "files from different runs, or corners in the wrong order")
