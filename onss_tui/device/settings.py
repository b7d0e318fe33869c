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

__all__ = ["Instrument", "DeviceOptions", "build_settings", "write_settings", "Finding", "validate_settings",
           "validate_pack"]


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
    """Write ``settings`` as the device's settings.json; refuses (``ValueError``, nothing written)
    settings the validator refuses, so the writer never makes a file the app aborts on."""
    path = Path(path)
    errors = [f for f in validate_settings(settings, where=path.name) if f.level == "error"]
    if errors:
        raise ValueError(f"{path}: not written, the device would refuse these settings: "
                         + "; ".join(str(e) for e in errors))
    atomic_write_text(path, json.dumps(settings, indent=2, allow_nan=False) + "\n")
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


def _val(d: dict[str, Any], key: str, default: Any = None) -> Any:
    """What the app's ``getDefault`` reads: the default when the key is missing or JSON null."""
    v = d.get(key)
    return default if v is None else v


class _Constant:
    """A NaN, Infinity or -Infinity literal as read from the file (Python's json accepts them)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _non_json(value: Any, path: str = "") -> list[tuple[str, str]]:
    """(key path, literal) of every NaN/Infinity in ``value``: JSON has none, and the app's parser
    (nlohmann::json) refuses the whole file on one."""
    if isinstance(value, _Constant):
        return [(path, value.text)]
    if isinstance(value, float) and not np.isfinite(value):  # a dict's float: as json.dumps would write it
        return [(path, "NaN" if value != value else "Infinity" if value > 0 else "-Infinity")]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _non_json(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in _non_json(v, f"{path}[{i}]")]
    return []


def _object(r: _Report, where: str, value: Any, like: str) -> dict[str, Any] | None:
    """``value`` if it is an object; {} if missing or null (the app then reads every key's default);
    None, with an error, for anything else: the app aborts on indexing it."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        r.error(where, f"must be an object like {like}, not {value!r}; the app aborts on anything else")
        return None
    return value


def _check_settings(
    r: _Report, settings: Any, where_settings: str, resolution: int | None, pitches: Sequence[int] | None,
) -> tuple[list[list[str]] | None, int | None, list[int] | None, int | None] | None:
    """Check every key the app reads; returns the pad layout it implies (corner names, R, pitches,
    L; None where unusable), or None when the file as a whole would not load."""
    bad_literals = _non_json(settings)
    for key, text in bad_literals:
        r.error(f"{where_settings}: {key}" if key else where_settings,
                f"{text} is not JSON (no NaN or Infinity): the app's parser refuses the whole file and "
                "the app does not start; write a finite number")
    if bad_literals:
        return None
    if not isinstance(settings, dict):
        r.error(where_settings, "the top level must be a JSON object")
        return None
    at = lambda key: f"{where_settings}: {key}"  # noqa: E731

    # -- nsynth -------------------------------------------------------------------------------
    n = _object(r, at("nsynth"), settings.get("nsynth"),
                '{"dataDirectory": "/home/pi/pads", "resolution": 9, "pitches": [...], ...}') or {}
    R = _val(n, "resolution", 9)
    if not _is_int(R) or R < 1:
        r.error(at("nsynth.resolution"), f"must be an integer >= 1, not {R!r}")
        R = None
    elif resolution is not None and R != resolution:
        r.error(at("nsynth.resolution"), f"is {R}, but the pads were made with resolution {resolution}")
    P = _val(n, "pitches", list(range(36, 85, 4)))
    if n.get("pitches") is None:
        r.warn(at("nsynth.pitches"), "missing: the app then assumes 13 pitches 36..84; write them explicitly")
    if not isinstance(P, list) or not P or not all(_is_int(p) for p in P):
        r.error(at("nsynth.pitches"), f"must be a non-empty list of integers (MIDI notes 0-127), not {P!r}")
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
    L = _val(n, "length", ROW_LENGTH)
    if not _is_int(L) or L <= 0:
        r.error(at("nsynth.length"), f"must be a positive integer, not {L!r}")
        L = None
    elif L != ROW_LENGTH:
        r.error(at("nsynth.length"), f"is {L}; pipeline pads have {ROW_LENGTH} samples a row")
    rate = _val(n, "sampleRate", SAMPLE_RATE)
    if not _is_int(rate) or rate != SAMPLE_RATE:
        r.error(at("nsynth.sampleRate"), f"must be {SAMPLE_RATE}, not {rate!r}")
    looping = _val(n, "looping", True)
    if not isinstance(looping, bool):
        r.error(at("nsynth.looping"), f"must be true or false, not {looping!r}")
    start, end = _val(n, "loopStart", 0.2), _val(n, "loopEnd", 0.41)
    for key, v in (("loopStart", start), ("loopEnd", end)):
        if not _is_number(v):
            r.error(at(f"nsynth.{key}"), f"must be a number (a fraction of the row length, 0-1), not {v!r}")
    if not (_is_number(start) and _is_number(end)):
        pass  # reported above
    elif not 0 <= start < end <= 1:
        r.error(at("nsynth.loopStart/loopEnd"),
                f"need 0 <= loopStart < loopEnd <= 1 (fractions of the row, not seconds); got {start}, {end}")
    elif (end - start) * (L or ROW_LENGTH) < 8000:
        r.warn(at("nsynth.loopStart/loopEnd"), f"the loop is only {(end - start) * (L or ROW_LENGTH):.0f} samples; "
               "crossfades need about 8000")
    data_dir = _val(n, "dataDirectory", "")
    if not isinstance(data_dir, str):
        r.error(at("nsynth.dataDirectory"),
                f"must be a string (the folder of the .bin files on the device), not {data_dir!r}")
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
            if not isinstance(corner, dict):
                r.error(at(f"corners[{ci}]"), f'must be an object like {{"instruments": [...]}}, not {corner!r}')
                names = None
                continue
            instruments = corner.get("instruments")
            if not isinstance(instruments, list) or not instruments:
                r.error(at(f"corners[{ci}].instruments"),
                        f"needs at least one instrument; an empty corner crashes the app (found {instruments!r})")
                names = None
                continue
            corner_names = []
            for ii, inst in enumerate(instruments):
                w = f"corners[{ci}].instruments[{ii}]"
                if not isinstance(inst, dict):
                    r.error(at(w), f'must be an object like {{"name": "flute", "display": "FLUTE", "abbr": "FL"}}, '
                            f"not {inst!r}")
                    names = None
                    continue
                for key in ("name", "display", "abbr"):
                    if inst.get(key) is None:
                        r.error(at(f"{w}.{key}"), "is required and must be a string")
                    elif not isinstance(inst[key], str):
                        r.error(at(f"{w}.{key}"), f"is required and must be a string, not {inst[key]!r}")
                name = inst.get("name")
                if isinstance(name, str):
                    if not name or NAME_FORBIDDEN.search(name):
                        r.error(at(f"{w}.name"), f"{name!r}: names must be non-empty, without '_', '/' or spaces")
                    corner_names.append(name)
                if isinstance(inst.get("display"), str) and len(inst["display"]) > 8:
                    r.warn(at(f"{w}.display"), f"{inst['display']!r} is longer than 8 characters; the screen cuts it")
                if isinstance(inst.get("abbr"), str) and len(inst["abbr"]) > 2:
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

    # -- audio --------------------------------------------------------------------------------
    audio = settings.get("audio")
    if audio is not None and not isinstance(audio, dict):
        r.error(at("audio"), f'must be an object like {{"sampleRate": 48000, "bufferSize": 128}}, not {audio!r}; '
                "without it the app does not start")
    else:
        audio = audio or {}
        for key, what in (("sampleRate", "the output rate in Hz, e.g. 48000"),
                          ("bufferSize", "frames per audio buffer, e.g. 128")):
            v = audio.get(key)
            if v is None:
                r.error(at(f"audio.{key}"), f"is required (an integer, {what}); without it the app does not start")
            elif not _is_int(v) or v <= 0:
                r.error(at(f"audio.{key}"), f"must be a positive integer ({what}), not {v!r}")
        device_id = audio.get("deviceId")
        if device_id is not None and (not _is_int(device_id) or device_id < 0):
            r.error(at("audio.deviceId"), "must be an integer >= 0 (an index into the app's list of sound devices), "
                    f"not {device_id!r}; leave it out for the default device")

    # -- midi ---------------------------------------------------------------------------------
    midi = _object(r, at("midi"), settings.get("midi"), '{"device": "/dev/ttyAMA0", "channel": 1}')
    if midi is not None:
        device = midi.get("device")
        if device is not None and not isinstance(device, str):
            r.error(at("midi.device"),
                    f"must be a string (the serial MIDI device, e.g. '/dev/ttyAMA0'), not {device!r}")
        channel = midi.get("channel")
        if channel is None:
            r.warn(at("midi.channel"), "missing: the app then listens on channel 7, not 1")
        elif not _is_int(channel) or not 1 <= channel <= 16:
            r.error(at("midi.channel"), f"must be an integer 1-16, not {channel!r}")

    # -- osc ----------------------------------------------------------------------------------
    osc = _object(r, at("osc"), settings.get("osc"), '{"in": {"port": 8000}}')
    osc_in = _object(r, at("osc.in"), osc.get("in"), '{"port": 8000}') if osc is not None else None
    if osc_in is not None:
        port = osc_in.get("port")
        if osc_in.get("portNumber") is not None and port is None:
            r.warn(at("osc.in"), "has portNumber but not port; the app reads only 'port' (so listens on 8000)")
        if port is not None and (not _is_int(port) or not 1 <= port <= 65535):
            r.error(at("osc.in.port"), f"must be an integer 1-65535 (the OSC listen port, e.g. 8000), not {port!r}")

    # -- patchFile ----------------------------------------------------------------------------
    patch_file = settings.get("patchFile")
    if patch_file is not None and not isinstance(patch_file, str):
        r.error(at("patchFile"), "must be a string (the path of the patch store; leave it out for "
                f"'bin/data/patches.json'), not {patch_file!r}")
    return names, R, P, L


def validate_settings(
    settings: dict[str, Any],
    resolution: int | None = None,
    pitches: Sequence[int] | None = None,
    where: str = "settings.json",
) -> list[Finding]:
    """The settings checks of :func:`validate_pack` without the pad files: every key the app reads
    (spec §4.2), its type and range. Any "error" would abort or break the app."""
    r = _Report()
    _check_settings(r, settings, where, resolution, pitches)
    return r.findings


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
            settings = json.loads(Path(settings).read_text(), parse_constant=_Constant)
        except OSError as exc:
            r.error(where_settings, f"cannot read it ({exc.strerror})")
            return r.findings
        except json.JSONDecodeError as exc:
            r.error(f"{where_settings}:{exc.lineno}:{exc.colno}",
                    f"not valid JSON ({exc.msg}); the app would not start")
            return r.findings
    layout = _check_settings(r, settings, where_settings, resolution, pitches)
    if layout is None:
        return r.findings
    names, R, P, L = layout

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
