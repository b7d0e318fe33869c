"""The pure-Python TF V2 checkpoint reader and writer, against a bundle TensorFlow wrote."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from onss_tui.model.checkpoint import BundleReader, CheckpointError, resolve_prefix, write_bundle

PREFIX_NAME = "model.ckpt-200000"
DATA = f"{PREFIX_NAME}.data-00000-of-00001"
INDEX = f"{PREFIX_NAME}.index"


@pytest.fixture(scope="module")
def tf_bundle(golden_dir) -> Path:
    return golden_dir / "tf_bundle"


@pytest.fixture(scope="module")
def expected(tf_bundle) -> dict[str, np.ndarray]:
    with np.load(tf_bundle / "expected.npz") as z:
        return {k.replace("|", "/"): z[k] for k in z.files}


@pytest.fixture
def bundle_copy(tf_bundle, tmp_path) -> Path:
    for name in (DATA, INDEX):
        shutil.copy(tf_bundle / name, tmp_path / name)
        (tmp_path / name).chmod(0o644)
    return tmp_path / PREFIX_NAME


def test_every_tensor_is_bit_exact(tf_bundle, expected):
    reader = BundleReader(tf_bundle / PREFIX_NAME)
    assert set(reader.names()) == set(expected)
    values = reader.read_many(reader.names())
    for name, want in expected.items():
        got = values[name]
        assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        assert got.tobytes() == want.tobytes(), name


def test_dtypes_and_edge_tensors(tf_bundle):
    r = BundleReader(tf_bundle / PREFIX_NAME)
    assert r.read("extra/half").dtype == np.float16
    assert r.read("extra/int32").dtype == np.int32
    assert r.read("extra/float64").dtype == np.float64
    assert r.read("global_step").dtype == np.int64 and r.read("global_step").shape == ()
    empty = r.read("extra/empty")
    assert empty.shape == (0, 4) and empty.dtype == np.float32


@pytest.mark.parametrize("form", ["prefix", "index", "data", "folder"])
def test_accepts_prefix_index_data_or_folder(tf_bundle, form):
    path = {
        "prefix": tf_bundle / PREFIX_NAME,
        "index": tf_bundle / INDEX,
        "data": tf_bundle / DATA,
        "folder": tf_bundle,
    }[form]
    assert resolve_prefix(path) == tf_bundle / PREFIX_NAME
    assert "ae_startconv/W" in BundleReader(path)


def test_writer_reproduces_tensorflow_bytes(tf_bundle, expected, tmp_path):
    """Our writer, fed the same tensors, writes the very bytes TensorFlow's Saver wrote."""
    write_bundle(tmp_path / PREFIX_NAME, expected)
    for name in (INDEX, DATA):
        assert (tmp_path / name).read_bytes() == (tf_bundle / name).read_bytes(), name


def test_index_with_many_data_blocks(expected, tmp_path):
    write_bundle(tmp_path / "small", expected, block_size=256)
    r = BundleReader(tmp_path / "small")
    got = r.read_many(r.names())
    assert all(got[k].tobytes() == v.tobytes() for k, v in expected.items())


def test_flipped_byte_gives_crc_error_naming_the_tensor(bundle_copy):
    r = BundleReader(bundle_copy)
    entry = r.entries["dilatedconv_1/W"]
    data = bundle_copy.with_name(DATA)
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 1000] ^= 0x01
    data.write_bytes(bytes(raw))
    r = BundleReader(bundle_copy)
    r.read("ae_startconv/W")  # other tensors still read
    with pytest.raises(CheckpointError, match=r"crc32c.*'dilatedconv_1/W'") as err:
        r.read("dilatedconv_1/W")
    assert str(data) in str(err.value)


def test_truncated_data_file(bundle_copy):
    data = bundle_copy.with_name(DATA)
    raw = data.read_bytes()
    data.write_bytes(raw[: len(raw) // 2])
    r = BundleReader(bundle_copy)
    last = max(r.entries.values(), key=lambda e: e.offset + e.size)
    with pytest.raises(CheckpointError, match="truncated") as err:
        r.read(last.name)
    assert last.name in str(err.value) and "download" in str(err.value)


def test_missing_shard(bundle_copy):
    bundle_copy.with_name(DATA).unlink()
    with pytest.raises(CheckpointError, match="data shard missing"):
        BundleReader(bundle_copy)


def test_wrong_path(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint index"):
        BundleReader(tmp_path / "nothing" / PREFIX_NAME)
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        BundleReader(tmp_path)


def test_not_an_index(tmp_path):
    (tmp_path / INDEX).write_bytes(b"hello world" * 10)
    (tmp_path / DATA).write_bytes(b"")
    with pytest.raises(CheckpointError, match="bad table magic"):
        BundleReader(tmp_path / PREFIX_NAME)


def test_corrupt_index_block(bundle_copy):
    index = bundle_copy.with_name(INDEX)
    raw = bytearray(index.read_bytes())
    raw[100] ^= 0xFF
    index.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum mismatch in the data block"):
        BundleReader(bundle_copy)


def test_missing_variable_is_named(tf_bundle):
    with pytest.raises(CheckpointError, match="no tensor named 'no/such'"):
        BundleReader(tf_bundle).read("no/such")
