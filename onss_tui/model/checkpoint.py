"""TensorFlow V2 checkpoints ("tensor bundles") without TensorFlow.

A bundle is ``<prefix>.index``, a LevelDB-style sorted table mapping tensor names to
``BundleEntryProto`` records, plus ``<prefix>.data-NNNNN-of-NNNNN`` shards holding the raw
little-endian bytes of each tensor. This module reads them (every tensor's masked CRC32C is
verified) and writes them (so tests and tools can make checkpoints in the very format the
published ``wavenet-ckpt`` uses). The layout is described in ``shared/spec/nsynth_model.md`` §5.

Every failure is a :class:`CheckpointError` whose message names the file and the fix.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np

from onss_tui.atomic import atomic_write

__all__ = [
    "CheckpointError",
    "TensorEntry",
    "BundleReader",
    "resolve_prefix",
    "write_bundle",
    "masked_crc32c",
]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5
CRC_MASK_DELTA = 0xA282EAD8

# TensorFlow DataType enum values (types.proto) and their little-endian numpy dtypes.
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8",
               7: "string", 9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16",
               19: "float16", 22: "uint32", 23: "uint64"}
NUMPY_TO_DT = {v: k for k, v in DTYPES.items()}


class CheckpointError(Exception):
    """A checkpoint could not be read; the message names the file and what to do."""


# --------------------------------------------------------------------------------------------
# CRC32C with LevelDB/TensorFlow masking


def masked_crc32c(data: bytes | memoryview) -> int:
    crc = google_crc32c.value(data if isinstance(data, bytes) else bytes(data))
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + CRC_MASK_DELTA) & 0xFFFFFFFF


# --------------------------------------------------------------------------------------------
# Varints and a minimal protobuf wire-format decoder/encoder


def _read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _varint(value: int) -> bytes:
    if value < 0:
        value &= 0xFFFFFFFFFFFFFFFF  # protobuf encodes negative int64 as 10-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) for each field of a serialized message."""
    pos = 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            value = bytes(buf[pos : pos + length])
            if len(value) != length:
                raise ValueError("truncated length-delimited field")
            pos += length
        elif wire == 5:
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield field, wire, value


def _signed64(v: int | bytes) -> int:
    v = _int(v)
    return v - (1 << 64) if v >= 1 << 63 else v


def _int(v: int | bytes) -> int:
    """A varint or fixed-width field's value (a length-delimited one here is a damaged message)."""
    if not isinstance(v, int):
        raise ValueError("a number field holds bytes")
    return v


def _bytes(v: int | bytes) -> bytes:
    """A length-delimited field's value (a number here is a damaged message)."""
    if not isinstance(v, bytes):
        raise ValueError("a message field holds a number")
    return v


@dataclass(frozen=True)
class TensorEntry:
    """One tensor's record in the index (a decoded ``BundleEntryProto``)."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None
    sliced: bool = False

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES.get(self.dtype, f"dtype#{self.dtype}")


def _parse_entry(name: str, value: bytes) -> TensorEntry:
    dtype, shape, shard, offset, size, sliced = 0, [], 0, 0, 0, False
    crc: int | None = None
    for field, _wire, v in _proto_fields(value):
        if field == 1:
            dtype = _int(v)
        elif field == 2:
            for f2, _w2, dim in _proto_fields(_bytes(v)):
                if f2 == 2:
                    size_of_dim = 0
                    for f3, _w3, dv in _proto_fields(_bytes(dim)):
                        if f3 == 1:
                            size_of_dim = _signed64(dv)
                    shape.append(size_of_dim)
                elif f2 == 3 and v:
                    raise ValueError("tensor of unknown rank")
        elif field == 3:
            shard = _int(v)
        elif field == 4:
            offset = _signed64(v)
        elif field == 5:
            size = _signed64(v)
        elif field == 6:
            crc = _int(v)
        elif field == 7:
            sliced = True
    return TensorEntry(name, dtype, tuple(shape), shard, offset, size, crc, sliced)


def _encode_entry(dtype: int, shape: tuple[int, ...], shard: int, offset: int, size: int, crc: int) -> bytes:
    def field(num: int, wire: int) -> bytes:
        return _varint((num << 3) | wire)

    out = bytearray()
    out += field(1, 0) + _varint(dtype)
    dims = bytearray()
    for d in shape:
        dim = (field(1, 0) + _varint(d)) if d else b""
        dims += field(2, 2) + _varint(len(dim)) + dim
    out += field(2, 2) + _varint(len(dims)) + dims
    if shard:
        out += field(3, 0) + _varint(shard)
    if offset:
        out += field(4, 0) + _varint(offset)
    if size:
        out += field(5, 0) + _varint(size)
    out += field(6, 5) + struct.pack("<I", crc)
    return bytes(out)


# --------------------------------------------------------------------------------------------
# The sorted table (.index)


def _read_block(raw: bytes, offset: int, size: int, path: Path, what: str) -> bytes:
    end = offset + size + BLOCK_TRAILER_SIZE
    if offset < 0 or end > len(raw):
        raise CheckpointError(
            f"{path}: the {what} block lies past the end of the file; the index is truncated. "
            "Download the checkpoint again (onss model download)."
        )
    contents = raw[offset : offset + size]
    block_type = raw[offset + size]
    (stored,) = struct.unpack_from("<I", raw, offset + size + 1)
    if masked_crc32c(contents + bytes([block_type])) != stored:
        raise CheckpointError(
            f"{path}: checksum mismatch in the {what} block; the index file is corrupt. "
            "Download the checkpoint again (onss model download)."
        )
    if block_type == 0:
        return contents
    if block_type == 1:
        try:
            import cramjam  # optional: only very old TensorFlow wrote Snappy-compressed tables
        except ImportError as exc:
            raise CheckpointError(
                f"{path}: the index is Snappy-compressed; install the 'cramjam' package to read it "
                "(pip install cramjam)."
            ) from exc
        return bytes(cramjam.snappy.decompress_raw(contents))
    raise CheckpointError(f"{path}: unknown block compression type {block_type} in the {what} block.")


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise ValueError("block too small")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 * (num_restarts + 1)
    if limit < 0:
        raise ValueError("bad restart count")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _read_varint(block, pos)
        non_shared, pos = _read_varint(block, pos)
        value_len, pos = _read_varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        value = block[pos : pos + value_len]
        pos += value_len
        if pos > limit:
            raise ValueError("entry runs past the block")
        yield key, value


def _read_table(path: Path) -> Iterator[tuple[bytes, bytes]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the index file ({exc.strerror}).") from exc
    if len(raw) < FOOTER_SIZE:
        raise CheckpointError(
            f"{path}: the index file is only {len(raw)} bytes; it is truncated or not a TensorFlow "
            "checkpoint index. Download the checkpoint again (onss model download)."
        )
    footer = raw[-FOOTER_SIZE:]
    magic_lo, magic_hi = struct.unpack_from("<II", footer, 40)
    if (magic_hi << 32) | magic_lo != TABLE_MAGIC:
        raise CheckpointError(
            f"{path}: not a TensorFlow V2 checkpoint index (bad table magic). Pass the checkpoint "
            "prefix, e.g. .../wavenet-ckpt/model.ckpt-200000, or its folder."
        )
    try:
        _meta_off, pos = _read_varint(footer, 0)
        _meta_size, pos = _read_varint(footer, pos)
        index_off, pos = _read_varint(footer, pos)
        index_size, pos = _read_varint(footer, pos)
    except ValueError as exc:
        raise CheckpointError(f"{path}: the index footer is corrupt ({exc}).") from exc
    index_block = _read_block(raw, index_off, index_size, path, "top-level index")
    try:
        for _separator, handle in _block_entries(index_block):
            data_off, p = _read_varint(handle, 0)
            data_size, _ = _read_varint(handle, p)
            block = _read_block(raw, data_off, data_size, path, "data")
            yield from _block_entries(block)
    except ValueError as exc:
        raise CheckpointError(f"{path}: the index table is corrupt ({exc}).") from exc


# --------------------------------------------------------------------------------------------
# Locating a checkpoint


def resolve_prefix(path: str | os.PathLike) -> Path:
    """Turn a prefix, an ``.index``/``.data-*`` path or a folder into the checkpoint prefix."""
    p = Path(path).expanduser()
    name = p.name
    if name.endswith(".index"):
        p = p.with_name(name[: -len(".index")])
    elif ".data-" in name:
        p = p.with_name(name[: name.index(".data-")])
    elif name.endswith(".meta"):
        p = p.with_name(name[: -len(".meta")])
    elif p.is_dir():
        indexes = sorted(p.glob("*.index"))
        if not indexes:  # e.g. the models folder that holds wavenet-ckpt/
            indexes = sorted(p.glob("*/*.index"))
        if not indexes:
            raise CheckpointError(
                f"{p}: no checkpoint here (no *.index file). Pass the folder that holds "
                "model.ckpt-200000.index, or install the model with: onss model download"
            )
        if len(indexes) > 1:
            # Several checkpoints: the highest step wins, as TensorFlow's "latest" would.
            def step(ix: Path) -> int:
                tail = ix.name[: -len(".index")].rsplit("-", 1)[-1]
                return int(tail) if tail.isdigit() else -1

            indexes.sort(key=step)
        p = indexes[-1].with_name(indexes[-1].name[: -len(".index")])
    index = p.with_name(p.name + ".index")
    if not index.is_file():
        hint = ""
        if p.parent.is_dir():
            near = sorted(x.name for x in p.parent.glob("*.index"))[:3]
            if near:
                hint = f" Checkpoints in that folder: {', '.join(n[:-6] for n in near)}."
        raise CheckpointError(
            f"{index}: no such checkpoint index. Pass the checkpoint prefix "
            f"(e.g. .../wavenet-ckpt/model.ckpt-200000), its .index file or its folder.{hint}"
        )
    return p


def _shard_path(prefix: Path, shard: int, num_shards: int) -> Path:
    return prefix.with_name(f"{prefix.name}.data-{shard:05d}-of-{num_shards:05d}")


# --------------------------------------------------------------------------------------------
# Reading


class BundleReader:
    """Reads tensors from a TensorFlow V2 checkpoint.

    >>> r = BundleReader(".../model.ckpt-200000")
    >>> r.names()[:2]; r.read("ae_startconv/W").shape
    """

    def __init__(self, path: str | os.PathLike):
        self.prefix = resolve_prefix(path)
        self.index_path = self.prefix.with_name(self.prefix.name + ".index")
        self.num_shards = 1
        self.entries: dict[str, TensorEntry] = {}
        big_endian = False
        for key, value in _read_table(self.index_path):
            try:
                if key == b"":
                    for field, _w, v in _proto_fields(value):
                        if field == 1:
                            self.num_shards = _int(v)
                        elif field == 2:
                            big_endian = v == 1
                    continue
                name = key.decode("utf-8")
                self.entries[name] = _parse_entry(name, value)
            except (ValueError, UnicodeDecodeError) as exc:
                raise CheckpointError(f"{self.index_path}: a corrupt entry ({exc}).") from exc
        if big_endian:
            raise CheckpointError(f"{self.index_path}: big-endian checkpoints are not supported.")
        missing = [
            _shard_path(self.prefix, i, self.num_shards)
            for i in range(self.num_shards)
            if not _shard_path(self.prefix, i, self.num_shards).is_file()
        ]
        if missing:
            raise CheckpointError(
                f"{missing[0]}: data shard missing ({len(missing)} of {self.num_shards} shards absent). "
                "The .index and every .data-NNNNN-of-NNNNN file must sit side by side; "
                "unpack or download the checkpoint again (onss model download)."
            )
        self._shard_sizes = [
            _shard_path(self.prefix, i, self.num_shards).stat().st_size for i in range(self.num_shards)
        ]

    def names(self) -> list[str]:
        return sorted(self.entries)

    def data_files(self) -> list[Path]:
        return [_shard_path(self.prefix, i, self.num_shards) for i in range(self.num_shards)]

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def read(self, name: str, verify: bool = True) -> np.ndarray:
        """Return one tensor as a numpy array (its own dtype and shape), CRC-verified."""
        entry = self.entries.get(name)
        if entry is None:
            raise CheckpointError(
                f"{self.index_path}: the checkpoint holds no tensor named {name!r}; is this the "
                "NSynth wavenet-ckpt? Install it with: onss model download"
            )
        return self._read_entries([entry], verify)[name]

    def read_many(self, names: Iterable[str], verify: bool = True) -> dict[str, np.ndarray]:
        entries = []
        for name in names:
            if name not in self.entries:
                self.read(name)  # raises the named error
            entries.append(self.entries[name])
        return self._read_entries(entries, verify)

    def _read_entries(self, entries: list[TensorEntry], verify: bool) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        by_shard: dict[int, list[TensorEntry]] = {}
        for e in entries:
            if e.sliced:
                raise CheckpointError(f"{self.index_path}: tensor {e.name!r} is partitioned; not supported.")
            if e.dtype not in DTYPES:
                raise CheckpointError(
                    f"{self.index_path}: tensor {e.name!r} has dtype {e.dtype_name}, which onss does not read."
                )
            if not 0 <= e.shard_id < self.num_shards:
                raise CheckpointError(f"{self.index_path}: tensor {e.name!r} names shard {e.shard_id}, "
                                      f"but the header says {self.num_shards} shards; the index is corrupt.")
            by_shard.setdefault(e.shard_id, []).append(e)
        for shard, group in by_shard.items():
            path = _shard_path(self.prefix, shard, self.num_shards)
            with open(path, "rb") as f:
                for e in sorted(group, key=lambda e: e.offset):
                    dtype = DTYPES[e.dtype]
                    count = int(np.prod(e.shape, dtype=np.int64))
                    if count * dtype.itemsize != e.size:
                        raise CheckpointError(
                            f"{self.index_path}: tensor {e.name!r} claims {e.size} bytes but its shape "
                            f"{list(e.shape)} of {e.dtype_name} needs {count * dtype.itemsize}; the index is corrupt."
                        )
                    if e.offset + e.size > self._shard_sizes[shard]:
                        raise CheckpointError(
                            f"{path}: truncated: tensor {e.name!r} needs bytes up to {e.offset + e.size:,} "
                            f"but the file has {self._shard_sizes[shard]:,}. The download was cut short; "
                            "download the checkpoint again (onss model download)."
                        )
                    f.seek(e.offset)
                    raw = f.read(e.size)
                    if len(raw) != e.size:
                        raise CheckpointError(f"{path}: short read for tensor {e.name!r}; the file is truncated.")
                    if verify and e.crc32c is not None and masked_crc32c(raw) != e.crc32c:
                        raise CheckpointError(
                            f"{path}: checksum (crc32c) mismatch in tensor {e.name!r}: the data file is "
                            "corrupt. Download the checkpoint again (onss model download)."
                        )
                    out[e.name] = np.frombuffer(raw, dtype=dtype).reshape(e.shape).astype(dtype.newbyteorder("="))
        return out


# --------------------------------------------------------------------------------------------
# Writing (what TensorFlow's BundleWriter + TableBuilder produce)


def _table_bytes(items: list[tuple[bytes, bytes]], block_size: int = 262144, restart_interval: int = 16) -> bytes:
    """Serialise sorted (key, value) pairs as an uncompressed LevelDB table."""
    out = bytearray()
    index_entries: list[tuple[bytes, bytes]] = []

    def flush(entries: list[tuple[bytes, bytes]], restart: int) -> tuple[int, int]:
        body = bytearray()
        restarts: list[int] = []
        prev = b""
        for i, (k, v) in enumerate(entries):
            if i % restart == 0:
                restarts.append(len(body))
                shared = 0
            else:
                shared = 0
                while shared < min(len(prev), len(k)) and prev[shared] == k[shared]:
                    shared += 1
            body += _varint(shared) + _varint(len(k) - shared) + _varint(len(v)) + k[shared:] + v
            prev = k
        if not restarts:
            restarts = [0]
        for r in restarts:
            body += struct.pack("<I", r)
        body += struct.pack("<I", len(restarts))
        offset = len(out)
        out.extend(body)
        out.extend(b"\x00" + struct.pack("<I", masked_crc32c(bytes(body) + b"\x00")))
        return offset, len(body)

    def handle(off: int, size: int) -> bytes:
        return _varint(off) + _varint(size)

    pending: list[tuple[bytes, bytes]] = []
    pending_size = 0
    for k, v in items:
        pending.append((k, v))
        pending_size += len(k) + len(v) + 3
        if pending_size >= block_size:
            off, size = flush(pending, restart_interval)
            index_entries.append((k, handle(off, size)))
            pending, pending_size = [], 0
    if pending:
        off, size = flush(pending, restart_interval)
        # The last separator is the successor of the last key, as LevelDB's FindShortSuccessor makes it.
        last = pending[-1][0]
        succ = last
        for i, ch in enumerate(last):
            if ch != 0xFF:
                succ = last[:i] + bytes([ch + 1])
                break
        index_entries.append((succ, handle(off, size)))
    meta_off, meta_size = flush([], restart_interval)
    index_off, index_size = flush(index_entries, 1)
    footer = handle(meta_off, meta_size) + handle(index_off, index_size)
    footer += b"\x00" * (40 - len(footer)) + struct.pack("<II", TABLE_MAGIC & 0xFFFFFFFF, TABLE_MAGIC >> 32)
    out.extend(footer)
    return bytes(out)


def write_bundle(prefix: str | os.PathLike, tensors: Mapping[str, np.ndarray], block_size: int = 262144) -> Path:
    """Write ``tensors`` as a single-shard TF V2 checkpoint at ``prefix``; return the prefix.

    Tensors are stored in sorted-name order, as TensorFlow's ``BundleWriter`` stores them.
    Both files are written atomically.
    """
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray()
    items: list[tuple[bytes, bytes]] = [(b"", b"\x08\x01\x1a\x02\x08\x01")]  # num_shards 1, producer 1
    for name in sorted(tensors, key=lambda n: n.encode()):
        arr = np.asarray(tensors[name])
        le = arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
        if le not in NUMPY_TO_DT:
            raise ValueError(f"cannot write tensor {name!r} of dtype {arr.dtype}")
        raw = np.ascontiguousarray(arr, dtype=le).tobytes()
        entry = _encode_entry(NUMPY_TO_DT[le], tuple(arr.shape), 0, len(data), len(raw), masked_crc32c(raw))
        items.append((name.encode(), entry))
        data += raw
    with atomic_write(_shard_path(prefix, 0, 1)) as f:
        f.write(data)
    with atomic_write(prefix.with_name(prefix.name + ".index")) as f:
        f.write(_table_bytes(items, block_size=block_size))
    return prefix
