"""Hearing a pack from a headless box: WAVs cut from its pads' rows and one self-contained page.

    report = make_audition(run_dir, out_dir)   # out_dir/index.html, out_dir/*.wav
    # scp -r box:out_dir . && open out_dir/index.html

What is written (16 kHz, 16-bit mono, as the device plays a row):

- ``corner-<instrument>-<pitch>.wav``: each corner instrument at each pitch, the row of its corner
  (the same bytes in every pad that has it in a corner);
- ``sweep-<pad>-<edge>-<pitch>.wav``: a walk across one pad at its middle pitch, a second of each
  grid point in turn (a short fade between them), along the top, bottom, left and right edges and
  the diagonal from top left to bottom right;
- ``index.html``: no network needed: the pad drawn with its corner labels, each WAV with an
  ``<audio>`` player linking the file and its waveform drawn inline (SVG).

onss writes only these names in ``out_dir`` (atomically) and removes nothing there.
"""

from __future__ import annotations

import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onss_tui.atomic import atomic_write, atomic_write_text
from onss_tui.device.pads import open_pad, row_index
from onss_tui.vocab import SAMPLE_RATE

__all__ = ["Audition", "make_audition", "SWEEP_SECONDS"]

SWEEP_SECONDS = 1.0  # of each grid point in a sweep
FADE = 160  # samples (10 ms) faded in and out at each step of a sweep
WAVE_POINTS = 240  # columns of a drawn waveform

# where each corner sits on the grid (xi, yi as fractions of R - 1), in the device's corner order
CORNERS = {"top_left": (0, 0), "top_right": (1, 0), "bottom_left": (0, 1), "bottom_right": (1, 1)}
EDGES = {  # name -> (from corner, to corner)
    "top": ("top_left", "top_right"), "bottom": ("bottom_left", "bottom_right"),
    "left": ("top_left", "bottom_left"), "right": ("top_right", "bottom_right"),
    "diagonal": ("top_left", "bottom_right"),
}


@dataclass
class Clip:
    file: str
    title: str
    kind: str  # "corner" | "sweep"
    pad: str | None = None


@dataclass
class Audition:
    folder: Path
    index: Path
    clips: list[Clip] = field(default_factory=list)


def _wav_bytes(samples: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(samples, dtype=np.int16), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def _write_wav(path: Path, samples: np.ndarray) -> None:
    with atomic_write(path, "wb") as f:
        f.write(_wav_bytes(samples))


def _sweep(rows: list[np.ndarray]) -> np.ndarray:
    n = int(SWEEP_SECONDS * SAMPLE_RATE)
    ramp = np.ones(n)
    ramp[:FADE] = np.linspace(0, 1, FADE)
    ramp[-FADE:] = np.linspace(1, 0, FADE)
    return np.concatenate([np.round(np.asarray(r[:n], np.float64) * ramp[: len(r[:n])]).astype(np.int16)
                           for r in rows])


def _points(a: tuple[int, int], b: tuple[int, int], resolution: int) -> list[tuple[int, int]]:
    """The grid points from corner ``a`` to corner ``b`` (both included), one a step."""
    last = resolution - 1
    (ax, ay), (bx, by) = (a[0] * last, a[1] * last), (b[0] * last, b[1] * last)
    return [(ax + round((bx - ax) * k / last), ay + round((by - ay) * k / last)) for k in range(resolution)]


def _svg(samples: np.ndarray) -> str:
    """The waveform as an inline SVG: the min and max of each of WAVE_POINTS columns."""
    x = np.asarray(samples, np.float64) / 32768.0
    cols = np.array_split(x, WAVE_POINTS) if len(x) >= WAVE_POINTS else [x]
    path = []
    for i, c in enumerate(cols):
        lo, hi = (float(c.min()), float(c.max())) if len(c) else (0.0, 0.0)
        path.append(f"M{i} {20 - hi * 20:.1f}V{20 - lo * 20:.1f}")
    return (f'<svg class="wave" viewBox="0 0 {len(cols)} 40" preserveAspectRatio="none" width="480" height="40">'
            f'<path d="{"".join(path)}" stroke="#2a7" stroke-width="1" fill="none"/></svg>')


def _pad_picture(names: list[str]) -> str:
    tl, tr, bl, br = (html.escape(n) for n in names)
    return (f'<table class="pad"><tr><td>{tl}</td><td>{tr}</td></tr>'
            f'<tr><td>{bl}</td><td>{br}</td></tr></table>')


def make_audition(run_dir: Path, out_dir: Path | None = None) -> Audition:
    """Write the audition of a finished run into ``out_dir`` (default ``<run>/audition``)."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "audition"
    settings = json.loads((run_dir / "settings.json").read_text())
    resolution, pitches = int(settings["nsynth"]["resolution"]), list(settings["nsynth"]["pitches"])
    length = int(settings["nsynth"].get("length", 60000))
    pads = sorted((run_dir / "pads").glob("*.bin"))
    if not pads:
        raise FileNotFoundError(f"{run_dir / 'pads'}: no pad files; run the recipe to the end first")
    out.mkdir(parents=True, exist_ok=True)
    report = Audition(out, out / "index.html")
    sections: list[str] = []
    corner_clips: dict[tuple[str, int], str] = {}
    waves: dict[str, str] = {}
    last = resolution - 1
    for pad in pads:
        names = pad.stem.split("_")
        data = open_pad(pad, resolution, len(pitches), length)
        for corner, name in zip(CORNERS, names, strict=True):
            cx, cy = CORNERS[corner]
            for pi, pitch in enumerate(pitches):
                if (name, pitch) in corner_clips:
                    continue
                row = np.array(data[row_index(cx * last, cy * last, pi, resolution, len(pitches))])
                file = f"corner-{name}-{pitch}.wav"
                _write_wav(out / file, row)
                corner_clips[(name, pitch)] = file
                waves[file] = _svg(row)
                report.clips.append(Clip(file, f"{name} at pitch {pitch} ({corner.replace('_', ' ')})", "corner"))
        mid = len(pitches) // 2
        items = []
        for edge, (a, b) in EDGES.items():
            rows = [np.array(data[row_index(x, y, mid, resolution, len(pitches))])
                    for x, y in _points(CORNERS[a], CORNERS[b], resolution)]
            audio = _sweep(rows)
            file = f"sweep-{pad.stem}-{edge}-{pitches[mid]}.wav"
            _write_wav(out / file, audio)
            waves[file] = _svg(audio)
            title = f"{edge}: {names[list(CORNERS).index(a)]} to {names[list(CORNERS).index(b)]}"
            report.clips.append(Clip(file, title, "sweep", pad.name))
            items.append(_item(file, title, waves[file]))
        del data
        sections.append(f"<section><h2>{html.escape(pad.name)}</h2>{_pad_picture(names)}"
                        f"<p>Sweeps at pitch {pitches[mid]}, {SWEEP_SECONDS:g} s a grid point:</p>"
                        + "".join(items) + "</section>")
    corners = "".join(_item(f, c.title, waves[f]) for c in report.clips if c.kind == "corner" for f in [c.file])
    page = _PAGE.format(title=html.escape(run_dir.name), pads=len(pads), resolution=resolution,
                        pitches=", ".join(map(str, pitches)), corners=corners, sections="".join(sections))
    atomic_write_text(report.index, page)
    return report


def _item(file: str, title: str, wave: str) -> str:
    f = html.escape(file, quote=True)
    return (f'<div class="clip"><div class="title">{html.escape(title)}</div>{wave}'
            f'<audio controls preload="none" src="{f}"></audio> <a href="{f}">{html.escape(file)}</a></div>')


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>onss audition: {title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 60em; }}
.clip {{ margin: 0.6em 0; }} .title {{ font-weight: bold; }}
.wave {{ display: block; background: #f4f4f4; margin: 0.2em 0; }}
table.pad {{ border-collapse: collapse; margin: 0.5em 0; }}
table.pad td {{ border: 1px solid #888; padding: 0.8em 1.6em; text-align: center; }}
</style></head><body>
<h1>Audition of {title}</h1>
<p>{pads} pad(s), {resolution} x {resolution} grid points, pitches {pitches}. The files play as the
device plays a row (16 kHz, 16-bit). Nothing on this page needs the network.</p>
<h2>The corner instruments</h2>
{corners}
{sections}
</body></html>
"""
