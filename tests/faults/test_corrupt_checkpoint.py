"""A damaged checkpoint gives one clear message naming the file, the tensor and the fix (exit 2)."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from onss_tui.cli import main

DATA = "model.ckpt-200000.data-00000-of-00001"
INDEX = "model.ckpt-200000.index"


@pytest.fixture(scope="module")
def raw_checkpoint(tmp_path_factory, golden_variables):
    from onss_tui.model import write_bundle

    return write_bundle(tmp_path_factory.mktemp("raw") / "model.ckpt-200000", golden_variables)


def damaged(raw: Path, tmp: Path, how: str) -> Path:
    folder = tmp / "ckpt"
    folder.mkdir()
    os.link(raw.with_name(INDEX), folder / INDEX)
    data = folder / DATA
    if how == "truncated":
        with open(raw.with_name(DATA), "rb") as src, open(data, "wb") as out:
            out.write(src.read(raw.with_name(DATA).stat().st_size // 2))
    elif how == "flipped":
        shutil.copy(raw.with_name(DATA), data)
        with open(data, "r+b") as f:
            f.seek(5_000_000)
            byte = f.read(1)
            f.seek(5_000_000)
            f.write(bytes([byte[0] ^ 0x10]))
    elif how == "other model":
        (folder / INDEX).unlink()
        golden = Path(__file__).resolve().parents[2].parent / "shared" / "golden" / "tf_bundle"
        shutil.copy(golden / INDEX, folder / INDEX)
        shutil.copy(golden / DATA, data)
    elif how == "missing shard":
        pass
    return folder / "model.ckpt-200000"


@pytest.mark.parametrize("how,needles", [
    ("truncated", ["truncated", "ownload the checkpoint again"]),
    ("flipped", ["checksum (crc32c) mismatch in tensor", "ownload the checkpoint again"]),
    ("other model", ["missing variables", "this is not the NSynth wavenet-ckpt"]),
    ("missing shard", ["data shard missing", DATA]),
])
def test_damaged_checkpoint(raw_checkpoint, tmp_path, capsys, how, needles):
    prefix = damaged(raw_checkpoint, tmp_path, how)
    wav = tmp_path / "x_60.wav"
    sf.write(wav, (0.3 * np.sin(np.arange(8192) / 5)).astype(np.float32), 16000)
    code = main(["encode", str(wav), "-o", str(tmp_path / "out"), "--checkpoint", str(prefix), "--length", "8192",
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    assert str(prefix.parent) in err
    assert not (tmp_path / "out").exists()
    assert main(["model", "info", "--checkpoint", str(prefix)]) == 2
