"""Installing the published checkpoint: download (resumable), safe unpack, size checks, info.

The tar ``wavenet-ckpt.tar`` unpacks to ``wavenet-ckpt/model.ckpt-200000.{index,data-00000-of-00001,meta}``.
It is installed under the user data folder (``platformdirs``), or any ``--dir``. Progress is
reported through a callback so that the CLI can draw it; nothing here prints.
"""

from __future__ import annotations

import math
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from onss_tui.atomic import fsync_dir, umask_mode
from onss_tui.model.checkpoint import BundleReader, CheckpointError

CHECKPOINT_URL = "http://download.magenta.tensorflow.org/models/nsynth/wavenet-ckpt.tar"
CHECKPOINT_DIRNAME = "wavenet-ckpt"
CHECKPOINT_PREFIX = "model.ckpt-200000"
# Published sizes (spec §3.1); the .meta graph is not needed and not required.
EXPECTED_SIZES: dict[str, int] = {
    f"{CHECKPOINT_PREFIX}.data-00000-of-00001": 986_763_532,
    f"{CHECKPOINT_PREFIX}.index": 63_671,
}
META_SIZE = 7_060_787  # model.ckpt-200000.meta, in the tar too (spec §3.1)
# What unpacking may write in all: the published files with room to spare. An archive that would
# expand further is not the checkpoint (a decompression bomb); it is refused before it fills the disk.
MAX_UNPACK_BYTES = (sum(EXPECTED_SIZES.values()) + META_SIZE) * 3 // 2
MAX_MEMBERS = 100  # the published tar holds a folder and 3 files

Progress = Callable[[int, int | None], None]  # (bytes done, bytes total or None)

__all__ = [
    "CHECKPOINT_URL",
    "EXPECTED_SIZES",
    "InstallError",
    "default_models_dir",
    "default_checkpoint",
    "download",
    "install_from_tar",
    "checkpoint_info",
    "download_and_install",
]


class InstallError(Exception):
    """Installing the checkpoint failed; the message says why and what to do."""


def default_models_dir() -> Path:
    from onss_tui.paths import data_dir

    return data_dir() / "models"


def default_checkpoint(models_dir: Path | None = None) -> Path:
    """The prefix of the installed checkpoint (it may not exist yet)."""
    return (models_dir or default_models_dir()) / CHECKPOINT_DIRNAME / CHECKPOINT_PREFIX


# --------------------------------------------------------------------------------------------
# Download


def download(url: str, dest: Path, progress: Progress | None = None, chunk: int = 1 << 20, timeout: float = 60) -> Path:
    """Fetch ``url`` to ``dest``, resuming from ``dest.part`` if an earlier attempt was cut off."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "onss"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part file is already complete
            total = _content_range_total(exc.headers.get("Content-Range"))
            if total == have:
                os.replace(part, dest)
                return dest
        raise InstallError(f"{url}: the server answered {exc.code} {exc.reason}. Try again later, "
                           "or download the tar by other means and run: onss model download --from-file TAR") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InstallError(f"{url}: cannot connect ({reason}). Check the network, or download the tar "
                           "elsewhere and run: onss model download --from-file TAR") from exc
    with response:
        status = getattr(response, "status", 200)
        if have and status == 206:
            total = _content_range_total(response.headers.get("Content-Range"))
            mode = "ab"
        else:  # the server ignored the range: start over
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            have, mode = 0, "wb"
        try:
            with open(part, mode) as f:
                if progress:
                    progress(have, total)
                done = _copy_with_progress(response, f, have, total, progress, chunk)
        except OSError as exc:
            raise InstallError(f"{part}: download interrupted ({exc}). Run the same command again to resume.") from exc
    if total is not None and done != total:
        raise InstallError(f"{part}: the download stopped at {done:,} of {total:,} bytes. "
                           "Run the same command again to resume.")
    os.replace(part, dest)
    fsync_dir(dest.parent)
    return dest


def _copy_with_progress(src, out, done: int, total: int | None, progress: Progress | None, chunk: int = 1 << 20) -> int:
    """Copy a stream into an open file and fsync it, reporting (bytes done, total); return bytes done."""
    while block := src.read(chunk):
        out.write(block)
        done += len(block)
        if progress:
            progress(done, total)
    out.flush()
    os.fsync(out.fileno())
    return done


def _content_range_total(value: str | None) -> int | None:
    if value and "/" in value:
        tail = value.rsplit("/", 1)[1]
        if tail.isdigit():
            return int(tail)
    return None


# --------------------------------------------------------------------------------------------
# Unpack and install


def _too_big(tar_path: Path, what: str) -> InstallError:
    return InstallError(f"{tar_path}: {what}, more than the {MAX_UNPACK_BYTES:,} bytes allowed (the NSynth checkpoint "
                        f"is {sum(EXPECTED_SIZES.values()) + META_SIZE:,}). The archive is not the NSynth checkpoint "
                        "(it may be a decompression bomb); nothing was installed and what was unpacked is removed. "
                        "Download it again (onss model download).")


def _safe_members(tar: tarfile.TarFile, tar_path: Path, sizes: Mapping[str, int]) -> list[tarfile.TarInfo]:
    """Check every header as it is read, before any data is: names, kinds, declared sizes and their sum."""
    members = []
    total = 0
    for count, m in enumerate(tar, 1):  # header by header (a bomb is refused before its data is expanded)
        name = m.name
        if count > MAX_MEMBERS:
            raise InstallError(f"{tar_path}: holds more than {MAX_MEMBERS} entries; the NSynth checkpoint is 3 files. "
                               "The archive is not the NSynth checkpoint; download it again (onss model download).")
        parts = Path(name).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise InstallError(f"{tar_path}: refusing to unpack {name!r}: it points outside the target folder. "
                               "The tar is not the published checkpoint.")
        if m.issym() or m.islnk() or m.isdev():
            raise InstallError(f"{tar_path}: refusing to unpack link or device {name!r}. "
                               "The tar is not the published checkpoint.")
        if m.isfile():
            base = Path(name).name
            if base in sizes and m.size != sizes[base]:
                raise InstallError(f"{tar_path}: {name} is {m.size:,} bytes in the archive, the published file is "
                                   f"{sizes[base]:,}. The archive is damaged or not the NSynth checkpoint; "
                                   "download it again (onss model download).")
            total += m.size
            if total > MAX_UNPACK_BYTES:
                raise _too_big(tar_path, f"its files would unpack to {total:,} bytes or more (at {name})")
        if m.isfile() or m.isdir():
            members.append(m)
    return members


def install_from_tar(
    tar_path: Path,
    models_dir: Path | None = None,
    expected_sizes: Mapping[str, int] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Unpack ``wavenet-ckpt.tar`` safely, check it, and install it; return the checkpoint prefix.

    Files are unpacked into a temporary folder beside the target, checked (sizes, then the index
    and every model tensor's CRC through the reader), and only then moved into place, so a failed
    install never leaves a half-installed checkpoint. ``expected_sizes`` defaults to the published
    sizes; pass ``{}`` to skip that check (for checkpoints of one's own).
    """
    tar_path = Path(tar_path)
    models_dir = Path(models_dir or default_models_dir())
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / CHECKPOINT_DIRNAME
    if not tar_path.is_file():
        raise InstallError(f"{tar_path}: no such file. Pass the downloaded wavenet-ckpt.tar.")
    sizes = EXPECTED_SIZES if expected_sizes is None else expected_sizes
    limit = MAX_UNPACK_BYTES

    def counted(done: int, total: int | None) -> None:  # the bytes really written, whatever a header says
        if done > limit:
            raise _too_big(tar_path, f"unpacking it wrote {done:,} bytes")
        if progress:
            progress(done, total)

    staging = Path(tempfile.mkdtemp(prefix=".wavenet-ckpt.", dir=models_dir))
    try:
        os.chmod(staging, umask_mode(0o777))  # mkdtemp makes it 0700, and it may become the installed folder
        try:
            with tarfile.open(tar_path) as tar:
                members = _safe_members(tar, tar_path, sizes)
                total = sum(m.size for m in members)
                done = 0
                for m in members:
                    dest = staging.joinpath(*Path(m.name).parts)
                    if m.isdir():
                        dest.mkdir(parents=True, exist_ok=True)
                        continue
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(m)
                    assert src is not None
                    with src, open(dest, "wb") as out:
                        done = _copy_with_progress(src, out, done, total, counted)
        except (tarfile.TarError, EOFError) as exc:
            raise InstallError(f"{tar_path}: not a complete tar archive ({exc}). "
                               "Download it again (onss model download).") from exc
        # the checkpoint files may sit in wavenet-ckpt/ or at the top of the tar
        indexes = sorted(staging.rglob("*.index"))
        if not indexes:
            raise InstallError(f"{tar_path}: holds no checkpoint (.index file). Is it wavenet-ckpt.tar?")
        found = indexes[0].parent
        if sizes:
            for name, size in sizes.items():
                f = found / name
                if not f.is_file():
                    raise InstallError(f"{tar_path}: {name} is missing from the archive. Download it again.")
                if f.stat().st_size != size:
                    raise InstallError(
                        f"{tar_path}: {name} is {f.stat().st_size:,} bytes, the published file is {size:,}. "
                        "The download is damaged or not the NSynth checkpoint; download it again."
                    )
        check_checkpoint(found)
        old = None
        if target.exists():
            old = models_dir / f".old-{CHECKPOINT_DIRNAME}-{os.getpid()}"
            os.replace(target, old)
        os.replace(found, target)
        fsync_dir(models_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return resolve_installed(target)


def resolve_installed(folder: Path) -> Path:
    from onss_tui.model.checkpoint import resolve_prefix

    return resolve_prefix(folder)


def check_checkpoint(path: Path) -> BundleReader:
    """Open the checkpoint and verify every model variable (presence, shape, CRC)."""
    from onss_tui.model.nsynth import NSynth

    try:
        reader = BundleReader(path)
        shapes = NSynth.variable_shapes()
        missing = [n for n in shapes if n not in reader]
        if missing:
            raise InstallError(f"{reader.index_path}: not the NSynth wavenet-ckpt: {len(missing)} model variables "
                               f"missing (first: {missing[0]}).")
        wrong = [n for n, s in shapes.items() if reader.entries[n].shape != s]
        if wrong:
            raise InstallError(f"{reader.index_path}: not the NSynth wavenet-ckpt: {wrong[0]} has shape "
                               f"{list(reader.entries[wrong[0]].shape)}, expected {list(shapes[wrong[0]])}.")
        for name in shapes:  # one tensor at a time keeps memory flat
            reader.read(name)
    except CheckpointError as exc:
        raise InstallError(str(exc)) from exc
    return reader


# --------------------------------------------------------------------------------------------
# What is installed


@dataclass
class CheckpointInfo:
    prefix: Path
    installed: bool
    valid: bool = False
    problem: str | None = None
    files: dict[str, int] = field(default_factory=dict)
    tensors: int = 0
    model_parameters: int = 0
    has_ema: bool = False
    warnings: list[str] = field(default_factory=list)


def checkpoint_info(path: Path | None = None, verify: bool = True) -> CheckpointInfo:
    """Describe the checkpoint at ``path`` (default: the installed one), validating it if asked."""
    from onss_tui.model.checkpoint import resolve_prefix

    prefix = Path(path) if path else default_checkpoint()
    try:
        prefix = resolve_prefix(prefix)
    except CheckpointError as exc:
        return CheckpointInfo(prefix, installed=False, problem=str(exc))
    info = CheckpointInfo(prefix, installed=True)
    for f in sorted(prefix.parent.glob(prefix.name + ".*")):
        info.files[f.name] = f.stat().st_size
    try:
        reader = check_checkpoint(prefix) if verify else BundleReader(prefix)
    except (InstallError, CheckpointError) as exc:
        info.problem = str(exc)
        return info
    from onss_tui.model.nsynth import NSynth

    shapes = NSynth.variable_shapes()
    info.tensors = len(reader.entries)
    info.model_parameters = sum(math.prod(s) for s in shapes.values())
    info.has_ema = all(n + "/ExponentialMovingAverage" in reader for n in shapes)
    info.valid = verify
    for name, size in EXPECTED_SIZES.items():
        if name in info.files and info.files[name] != size:
            info.warnings.append(f"{name} is {info.files[name]:,} bytes; the published file is {size:,} "
                                 "(not the published checkpoint)")
    return info


def download_and_install(url: str = CHECKPOINT_URL, models_dir: Path | None = None,
                         progress: Callable[[str, int, int | None], None] | None = None) -> Path:
    """Download (resumably), check and install the checkpoint; the tar is removed afterwards.
    ``progress(phase, done, total)`` with phase "download", then "unpack". Returns the prefix."""
    models_dir = models_dir or default_models_dir()
    tar = models_dir / "wavenet-ckpt.tar"

    def phase(name: str) -> Progress | None:
        return (lambda done, total: progress(name, done, total)) if progress else None

    download(url, tar, phase("download"))
    prefix = install_from_tar(tar, models_dir, progress=phase("unpack"))
    tar.unlink(missing_ok=True)
    return prefix
