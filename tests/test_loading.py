"""NSynth.load: raw or EMA weights, the converted-weights cache, and errors for wrong checkpoints."""

import os

import numpy as np
import pytest
import torch

from onss_tui.model import CheckpointError, NSynth, write_bundle


def test_load_raw_weights_by_default(golden_checkpoint, golden_variables):
    m = NSynth.load(golden_checkpoint)
    w = golden_variables["dilatedconv_7/W"]
    assert torch.equal(m.decoder.dilated[6].weight, torch.from_numpy(w[0]).permute(2, 1, 0))
    assert torch.equal(m.encoder.bottleneck.bias, torch.from_numpy(golden_variables["ae_bottleneck/biases"]))


def test_load_ema_weights(golden_checkpoint, golden_variables):
    m = NSynth.load(golden_checkpoint, ema=True)
    want = torch.from_numpy(golden_variables["logits/W"][0, 0].T * np.float32(0.5))
    assert torch.equal(m.decoder.logits.weight[:, :, 0], want)
    assert "(EMA)" in m.source


def test_cache_is_used_and_never_stale(tmp_path, golden_variables, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ONSS_CACHE_DIR", str(cache))
    prefix = write_bundle(tmp_path / "ck" / "model.ckpt-1", golden_variables)
    first = NSynth.load(prefix)
    cached = list(cache.glob("*.safetensors"))
    assert len(cached) == 1
    # a second load is served from the cache: prove it by damaging the data file behind its back
    # (same size and time stamp), which a real read would report as a CRC error
    data = prefix.with_name(prefix.name + ".data-00000-of-00001")
    st = data.stat()
    with open(data, "r+b") as f:
        f.seek(1000)
        f.write(b"\xff" * 16)
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert torch.equal(NSynth.load(prefix).decoder.logits.bias, first.decoder.logits.bias)
    with pytest.raises(CheckpointError, match="crc32c"):
        NSynth.load(prefix, cache=False)
    # change the checkpoint: the new weights must be loaded, not the cached ones
    changed = dict(golden_variables)
    changed["logits/biases"] = golden_variables["logits/biases"] + np.float32(1.0)
    write_bundle(prefix, changed)
    os.utime(data, ns=(data.stat().st_atime_ns, data.stat().st_mtime_ns + 10**9))
    again = NSynth.load(prefix)
    assert torch.equal(again.decoder.logits.bias, torch.from_numpy(changed["logits/biases"]))
    assert len(list(cache.glob("*.safetensors"))) == 1  # the stale entry was replaced


def test_damaged_cache_is_rebuilt(tmp_path, golden_variables, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ONSS_CACHE_DIR", str(cache))
    prefix = write_bundle(tmp_path / "ck" / "model.ckpt-1", golden_variables)
    NSynth.load(prefix)
    (entry,) = cache.glob("*.safetensors")
    entry.write_bytes(b"garbage")
    m = NSynth.load(prefix)
    assert torch.equal(m.decoder.logits.bias, torch.from_numpy(golden_variables["logits/biases"]))


def test_missing_and_misshapen_variables_are_named(tmp_path, golden_variables):
    partial = {k: v for k, v in golden_variables.items() if k != "cond_map_12/W"}
    p = write_bundle(tmp_path / "a" / "m", partial)
    with pytest.raises(CheckpointError, match="missing variable cond_map_12/W") as err:
        NSynth.load(p, cache=False)
    assert str(p) in str(err.value)
    wrong = dict(golden_variables)
    wrong["out1/W"] = np.zeros((1, 1, 128, 256), np.float32)
    p = write_bundle(tmp_path / "b" / "m", wrong)
    from onss_tui.model.checkpoint import BundleReader

    variables = BundleReader(p).read_many(golden_variables)
    with pytest.raises(CheckpointError, match=r"out1/W is \[1, 1, 128, 256\], expected \[1, 1, 256, 256\]"):
        NSynth.from_tf_variables(variables)


def test_ema_missing_is_a_clear_error(tmp_path, golden_variables):
    p = write_bundle(tmp_path / "raw" / "m", golden_variables)
    with pytest.raises(CheckpointError, match="missing EMA shadows"):
        NSynth.load(p, ema=True, cache=False)
