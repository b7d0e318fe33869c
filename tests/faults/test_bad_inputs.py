"""Bad input: one clear message naming the file or field and the fix, exit status 2, no traceback,
nothing written outside the run directory. Odd but usable input (other bit depths, rates, channel
counts) works."""

import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from onss_tui.cli import main
from tests.helpers import small_recipe, write_notes

NOTES = ["a", "b", "c", "d"]


def setup(tmp: Path, **recipe) -> Path:
    write_notes(tmp / "audio", NOTES, [60, 64])
    return small_recipe(tmp, **recipe)


def edit_recipe(path: Path, fn) -> Path:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))
    return path


def note(tmp: Path, name: str = "a_60.wav") -> Path:
    return tmp / "audio" / name


def tone(n: int, channels: int = 1, rate: int = 16000) -> np.ndarray:
    t = np.arange(n) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t)
    return np.repeat(x[:, None], channels, 1) if channels > 1 else x


def set_rate(path: Path, rate: int) -> None:
    """Patch a PCM WAV header's sample rate (bytes 24..27) and byte rate (28..31), as a damaged file has."""
    data = bytearray(path.read_bytes())
    block_align = struct.unpack_from("<H", data, 32)[0]
    struct.pack_into("<II", data, 24, rate, (rate * block_align) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def cut(path: Path, seconds: float) -> None:
    """Cut a 16 kHz 16-bit mono WAV short after ``seconds`` of samples; its header still claims them all."""
    path.write_bytes(path.read_bytes()[:44 + int(seconds * 16000) * 2])


def case_empty(t):
    note(t).write_bytes(b"")
    return "a_60.wav: the file is empty"


def case_not_audio(t):
    note(t).write_text("this is not a sound")
    return "a_60.wav: not a readable audio file"


def case_too_short(t):
    sf.write(note(t), tone(800), 16000)
    return "a_60.wav: only 0.05 s long"


def case_silence(t):
    sf.write(note(t), np.zeros(16000), 16000)
    return "a_60.wav: silent"


def case_nan(t):
    x = tone(16000)
    x[100] = np.nan
    sf.write(note(t), x.astype(np.float32), 16000, subtype="FLOAT")
    return "a_60.wav: contains NaN or infinite samples"


def case_inf(t):
    x = tone(16000)
    x[5] = np.inf
    sf.write(note(t), x.astype(np.float32), 16000, subtype="FLOAT")
    return "a_60.wav: contains NaN or infinite samples"


def case_underscore_file(t):
    sf.write(note(t, "x_y_60.wav"), tone(16000), 16000)
    return "x_y_60.wav: more than one '_'"


def case_mixed_case(t):
    os.rename(note(t), note(t, "A_60.wav"))
    return "A_60.wav: names are case-sensitive"


def case_missing_pitch(t):
    note(t, "b_64.wav").unlink()
    return "b_64.wav: missing: b at MIDI pitch 64"


def case_duplicate_note(t):
    sf.write(note(t, "a_60.flac"), tone(16000), 16000)
    return "a at pitch 60 has 2 files"


def case_directory_named_like_a_note(t):
    note(t).unlink()
    note(t).mkdir()
    return "a_60.wav: is a folder"


def case_dangling_link(t):
    note(t).unlink()
    note(t).symlink_to(t / "nowhere.wav")
    return "a_60.wav: a broken or looping symbolic link"


def case_symlink_loop(t):
    note(t).unlink()
    note(t).symlink_to(note(t, "loop.wav"))
    note(t, "loop.wav").symlink_to(note(t))
    return "a_60.wav: a broken or looping symbolic link"


def case_socket(t):
    note(t).unlink()
    here = os.getcwd()
    os.chdir(note(t).parent)  # a relative name: AF_UNIX paths are limited to about 100 bytes
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind("a_60.wav")
    finally:
        os.chdir(here)
    return "a_60.wav: not a regular file (a socket); notes must be plain audio files. Remove it"


def case_dev_zero(t):
    note(t).unlink()
    note(t).symlink_to("/dev/zero")
    return "a_60.wav: not a regular file (a character device, through a symbolic link to /dev/zero)"


def case_rate_1hz(t):
    set_rate(note(t), 1)  # resampling 16,000 frames "at 1 Hz" to 16 kHz would make 256 million samples
    return "a_60.wav: the header says a sample rate of 1 Hz, outside 4,000-768,000 Hz"


def case_rate_10mhz(t):
    set_rate(note(t), 10_000_000)
    return "a_60.wav: the header says a sample rate of 10,000,000 Hz, outside 4,000-768,000 Hz"


def case_truncated_to_nothing(t):
    cut(note(t), 0.03)
    return "a_60.wav: truncated: the header says 1.00 s, the file holds 0.03 s"


def case_out_of_phase(t):
    x = tone(16000)
    sf.write(note(t), np.stack([x, -x], 1), 16000)  # loud in each channel, silent once mixed to mono
    return "a_60.wav: the channels cancel when mixed to mono"


def case_m4a(t):
    note(t).unlink()
    note(t, "a_60.m4a").write_bytes(b"\0\0\0\x20ftypM4A ")
    return "a_60.m4a: .m4a files are not read"


def case_huge(t):
    sf.write(note(t), np.zeros(16000 * 60 * 11, dtype=np.int16), 16000, subtype="PCM_16")
    return "a_60.wav: 11 minutes long"


def case_inputs_missing(t):
    edit_recipe(t / "small.yaml", lambda d: d.update(inputs="no-such-folder"))
    return "no-such-folder: no such folder"


def case_output_inside_inputs(t):
    edit_recipe(t / "small.yaml", lambda d: d.update(output="audio/run"))
    return "the output folder is inside the inputs folder"


def case_output_is_a_file(t):
    (t / "taken").write_text("x")
    edit_recipe(t / "small.yaml", lambda d: d.update(output="taken"))
    return "taken: exists and is not a folder"


def case_output_unwritable(t):
    edit_recipe(t / "small.yaml", lambda d: d.update(output="/proc/onss-run"))
    return "/proc/onss-run: cannot write the run folder"


def recipe_case(change, needle):
    def case(t):
        edit_recipe(t / "small.yaml", change)
        return needle
    return case


def case_recipe_type_error(t):
    (t / "small.yaml").write_text((t / "small.yaml").read_text().replace("resolution: 3", "resolution: three"))
    return "resolution: Input should be a valid integer"


def case_not_yaml(t):
    (t / "small.yaml").write_text("name: [unclosed\n")
    return "not valid YAML"


def case_recipe_missing(t):
    (t / "small.yaml").unlink()
    return "small.yaml: cannot read the recipe"


def case_wrong_checkpoint(t):
    edit_recipe(t / "small.yaml", lambda d: d.update(engine="nsynth", checkpoint="nowhere/model.ckpt-1"))
    return "no such checkpoint index"


BAD = {
    "empty file": case_empty,
    "not audio": case_not_audio,
    "0.05 s note": case_too_short,
    "silence": case_silence,
    "NaN samples": case_nan,
    "inf samples": case_inf,
    "name with _": case_underscore_file,
    "mixed case": case_mixed_case,
    "missing pitch": case_missing_pitch,
    "two files for one note": case_duplicate_note,
    "a folder named like a note": case_directory_named_like_a_note,
    "unreadable (dangling link)": case_dangling_link,
    "symlink loop": case_symlink_loop,
    "huge file": case_huge,
    "a socket named like a note": case_socket,
    "a link to /dev/zero": case_dev_zero,
    "1 Hz sample rate": case_rate_1hz,
    "10 MHz sample rate": case_rate_10mhz,
    "truncated to 0.03 s": case_truncated_to_nothing,
    "out-of-phase stereo": case_out_of_phase,
    "an .m4a note": case_m4a,
    "inputs folder missing": case_inputs_missing,
    "output inside inputs": case_output_inside_inputs,
    "output is a file": case_output_is_a_file,
    "read-only output": case_output_unwritable,
    "recipe type error": case_recipe_type_error,
    "recipe not YAML": case_not_yaml,
    "recipe missing": case_recipe_missing,
    "unknown key": recipe_case(lambda d: d.update(colour="red"), "colour: unknown key"),
    "pitch above 127": recipe_case(lambda d: d.update(pitches=[60, 128]), "MIDI notes are 0-127"),
    "negative pitch": recipe_case(lambda d: d.update(pitches=[-1, 60]), "MIDI notes are 0-127"),
    "resolution 0": recipe_case(lambda d: d.update(resolution=0), "resolution: must be from 2 to 33 (it is 0)"),
    "resolution 1": recipe_case(lambda d: d.update(resolution=1), "resolution: must be from 2 to 33 (it is 1)"),
    "MIDI channel 17": recipe_case(lambda d: d.update(device={"midi_channel": 17}),
                                   "device.midi_channel: must be from 1 to 16 (it is 17)"),
    "loop_start >= loop_end": recipe_case(lambda d: d.update(device={"loop_start": 0.5, "loop_end": 0.5}),
                                          "loop_start (0.5) must be below loop_end"),
    "three corners": recipe_case(lambda d: d["corners"].pop("bottom_right"), "corners.bottom_right: required"),
    "empty corner": recipe_case(lambda d: d["corners"].update(top_right=[]), "corners.top_right: needs at least one"),
    "same instrument in two corners": recipe_case(lambda d: d["corners"].update(bottom_right=["a"]),
                                                  "'a' appears in top_left and bottom_right"),
    "instrument name with _": recipe_case(lambda d: d["corners"].update(top_left=["a_b"]), "no '_'"),
    "display too long": recipe_case(lambda d: d["corners"].update(top_left=[{"name": "a", "display": "123456789"}]),
                                    "1 to 8 characters"),
    "midi channel 0": recipe_case(lambda d: d.update(device={"midi_channel": 0}), "device.midi_channel"),
    "sample_length not a multiple of 512": recipe_case(lambda d: d.update(generation={"sample_length": 1000}),
                                                       "multiple of 512"),
    "unknown engine": recipe_case(lambda d: d.update(engine="wavenet"),
                                  "engine: Input should be 'nsynth' or 'preview'"),
    "wrong checkpoint": case_wrong_checkpoint,
}


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if "run" not in p.relative_to(folder).parts[:1]}


@pytest.mark.parametrize("label", list(BAD))
def test_bad_input_is_refused_clearly(tmp_path, capsys, label):
    recipe = setup(tmp_path)
    needle = BAD[label](tmp_path)
    before = snapshot(tmp_path)
    code = main(["run", str(recipe)])
    captured = capsys.readouterr()
    assert code == 2, (label, captured.err)
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert needle in captured.err, (label, captured.err)
    assert snapshot(tmp_path) == before  # nothing written outside the run directory
    assert not (tmp_path / "run" / "pads").exists()


ODD = {
    "8-bit": lambda t: sf.write(note(t), tone(16000), 16000, subtype="PCM_U8"),
    "24-bit": lambda t: sf.write(note(t), tone(16000), 16000, subtype="PCM_24"),
    "32-bit float": lambda t: sf.write(note(t), tone(16000).astype(np.float32), 16000, subtype="FLOAT"),
    "96 kHz stereo": lambda t: sf.write(note(t), tone(96000, 2, 96000), 96000, subtype="PCM_24"),
    "aiff": lambda t: (note(t).unlink(), sf.write(note(t, "a_60.aiff"), tone(16000), 16000, format="AIFF")),
    "DC offset (warned)": lambda t: sf.write(note(t), tone(16000) + 0.2, 16000),
    "clipping (warned)": lambda t: sf.write(note(t), np.clip(tone(16000) * 10, -1, 1), 16000),
    "truncated (warned)": lambda t: cut(note(t), 0.62),
}
WARNED = {  # what the warning says, where the label alone does not
    "truncated (warned)": "a_60.wav: truncated: the header says 1.00 s, the file holds 0.62 s (6,080 frames missing)",
}


@pytest.mark.parametrize("label", list(ODD))
def test_odd_but_usable_input_works(tmp_path, capsys, label):
    recipe = setup(tmp_path)
    ODD[label](tmp_path)
    assert main(["run", str(recipe)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().err  # (warnings are progress: stderr)
    if "warned" in label:
        assert "warning: " in out and "a_60.wav" in out
        assert WARNED.get(label, "") in out, out
    assert len(list((tmp_path / "run" / "pads").glob("*.bin"))) == 1


def run_cli(recipe: Path) -> subprocess.CompletedProcess:
    """``onss run`` in a child process, so that a regression that blocks fails instead of hanging the suite."""
    try:
        return subprocess.run([sys.executable, "-m", "onss_tui", "run", str(recipe), "--device", "cpu"],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("onss run did not end within 60 s (blocked reading an input?)")


def test_fifo_named_like_a_note_is_refused_without_opening_it(tmp_path):
    recipe = setup(tmp_path)
    note(tmp_path).unlink()
    os.mkfifo(note(tmp_path))  # opening it for reading blocks until something writes to it
    done = run_cli(recipe)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "a_60.wav: not a regular file (a FIFO); notes must be plain audio files. Remove it" in done.stderr
    assert not (tmp_path / "run" / "pads").exists()


def test_a_thousand_unrelated_files_are_ignored_in_one_warning(tmp_path):
    recipe = setup(tmp_path)
    audio = tmp_path / "audio"
    for i in range(400):
        (audio / f"other{i}_60.wav").write_bytes(b"")  # instruments the recipe does not use: never read
    for i in range(300):
        (audio / f"take {i}.wav").write_bytes(b"")  # audio, not named <instrument>_<pitch>
    for i in range(249):
        (audio / f"notes{i}.txt").write_text("x")
    for i in range(50):
        (audio / f"folder{i}").mkdir()
    os.mkfifo(audio / "pipe_60.wav")  # a FIFO of an unused instrument: not opened either
    done = run_cli(recipe)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "warning: " in line]
    assert len(warnings) == 1, warnings[:5]
    assert "ignored 1,000 files the recipe does not use" in warnings[0]
    assert "300 audio files not named <instrument>_<midi pitch> (take 0.wav, take 1.wav, take 10.wav, ...)" \
        in warnings[0]
    assert len(list((tmp_path / "run" / "pads").glob("*.bin"))) == 1
