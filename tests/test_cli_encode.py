"""`onss encode` end to end on a checkpoint in the published format."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from onss_tui.audio.io import fit_length, load
from onss_tui.cli import main
from onss_tui.model import NSynth

LENGTH = 8192


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t) * np.exp(-2 * t)
    return np.repeat(x[:, None], channels, 1).astype(np.float32)


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    # a name that Magenta's .strip(".wav") mangled into "ibes_24"; 44.1 kHz stereo
    sf.write(d / "vibes_24.wav", tone(1.0, 44100, 2), 44100, subtype="PCM_24")
    sf.write(d / "bass_40.aif", tone(0.3, 22050, 1, 110), 22050, subtype="PCM_16", format="AIFF")  # short: padded
    sf.write(d / "wave_60.flac", tone(1.0, 16000, 1, 440), 16000)
    return sorted(d.iterdir())


def test_encode_writes_stem_npy_matching_the_model(golden_checkpoint, inputs, tmp_path, capsys):
    out = tmp_path / "enc"
    code = main(["encode", "--checkpoint", str(golden_checkpoint), *map(str, inputs),
                 "-o", str(out), "--length", str(LENGTH), "--device", "cpu", "--batch-size", "2"])
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["bass_40.npy", "vibes_24.npy", "wave_60.npy"]
    model = NSynth.load(golden_checkpoint)
    audio = np.stack([fit_length(load(f), LENGTH) for f in inputs])
    want = model.encode(audio)
    for f, w in zip(inputs, want):
        got = np.load(out / f"{f.stem}.npy")
        assert got.dtype == np.float32 and got.shape == (LENGTH // 512, 16)
        np.testing.assert_allclose(got, w, rtol=0, atol=1e-4 * np.abs(w).max())
    assert "vibes_24.npy" in capsys.readouterr().out


def test_encode_resamples_and_mixes_down(golden_checkpoint, inputs):
    vibes = next(f for f in inputs if f.name == "vibes_24.wav")  # 44.1 kHz stereo, 1 s
    x = load(vibes)
    assert x.dtype == np.float32 and x.ndim == 1 and abs(len(x) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * 16000 / len(x) - 220) < 2  # still a 220 Hz tone at 16 kHz
    assert abs(np.abs(x).max() - 0.5) < 0.02  # mixed down by averaging, not summing


def test_encode_errors_exit_2_without_traceback(golden_checkpoint, tmp_path, capsys):
    good = tmp_path / "a_1.wav"
    sf.write(good, tone(0.5, 16000), 16000)
    empty = tmp_path / "empty_2.wav"
    empty.write_bytes(b"")
    cases = [
        (["encode", str(tmp_path / "nope.wav"), "-o", str(tmp_path / "o")], "nope.wav: no such file"),
        (["encode", str(empty), "-o", str(tmp_path / "o")], "empty_2.wav: the file is empty"),
        (["encode", str(good), "-o", str(tmp_path / "o"), "--length", "1000"], "multiple of 512"),
        (["encode", str(good), "-o", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "x" / "model.ckpt-1")],
         "no such checkpoint index"),
    ]
    for argv, message in cases:
        if "--checkpoint" not in argv:
            argv = argv + ["--checkpoint", str(golden_checkpoint)]
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing written on bad input


def test_console_entry_point_runs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "onss_tui", "encode", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--length" in r.stdout
