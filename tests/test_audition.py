"""onss audition's core (onss_tui/audition.py) on a real finished run of the demo."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from onss_tui.audition import SWEEP_SECONDS, make_audition
from onss_tui.device.pads import open_pad, row_index
from onss_tui.pipeline.demo import make_demo
from onss_tui.pipeline.runner import Runner


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    Runner.from_file(make_demo(out), device="cpu").execute()
    return out / "run"


def test_corner_wavs_are_the_pad_rows_the_device_plays(finished, tmp_path):
    import json

    report = make_audition(finished, tmp_path / "aud")
    settings = json.loads((finished / "settings.json").read_text())
    r, pitches = settings["nsynth"]["resolution"], settings["nsynth"]["pitches"]
    (pad,) = (finished / "pads").glob("*.bin")
    names = pad.stem.split("_")
    rows = open_pad(pad, r, len(pitches))
    corners = [c for c in report.clips if c.kind == "corner"]
    assert len(corners) == 4 * len(pitches)
    for (x, y), name in zip([(0, 0), (r - 1, 0), (0, r - 1), (r - 1, r - 1)], names, strict=True):
        for pi, pitch in enumerate(pitches):
            audio, rate = sf.read(tmp_path / "aud" / f"corner-{name}-{pitch}.wav", dtype="int16")
            assert rate == 16000 and np.array_equal(audio, rows[row_index(x, y, pi, r, len(pitches))])
    sweeps = [c for c in report.clips if c.kind == "sweep"]
    assert {c.file.split("-")[-2] for c in sweeps} == {"top", "bottom", "left", "right", "diagonal"}
    audio, _ = sf.read(tmp_path / "aud" / sweeps[0].file, dtype="int16")
    assert len(audio) == r * int(SWEEP_SECONDS * 16000)


def test_the_page_is_self_contained_and_plays_every_wav(finished, tmp_path):
    report = make_audition(finished, tmp_path / "aud")
    page = report.index.read_text()
    wavs = sorted(p.name for p in (tmp_path / "aud").glob("*.wav"))
    assert sorted(set(re.findall(r'<audio controls preload="none" src="([^"]+)"', page))) == wavs
    assert page.count("<svg") == len(wavs)
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page  # no network
    assert "<table class=\"pad\">" in page


def test_it_writes_only_its_own_files_and_keeps_the_rest(finished, tmp_path):
    folder = tmp_path / "aud"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    make_audition(finished, folder)
    assert (folder / "notes.txt").read_text() == "mine"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp file left
