"""Deploying a pack to the device's SD card, mounted on this machine.

The app reads ``/home/pi/opt/of/apps/open-nsynth/open-nsynth/bin/data/settings.json`` (or
``localSettings.json`` there, which wins when present) and the pads from its ``dataDirectory``.

Nothing on the card is trusted to the run's state: at copy time the pack is checked against its
settings (every pad exactly the size the grid and pitches give: the app maps pads without a size
check and dies of SIGBUS on a short one), every path on the card must stay on the card (no ``..``
out of the mount, no symbolic link leading off it), the card must be writable and have the space
the copy really needs. Then every file is written to a temp name beside its target, fsynced, read
back from the card and compared with the bytes read from the source, and only then renamed into
place: the old file stays until the rename, and a failed copy leaves no partial file. settings.json
(and a backup) takes the owner and mode of the file it replaces (a new one: the owner of its folder,
the mode of the umask); a pad, new or replacing one, takes the owner and group of its folder and the
mode of the umask, never one its owner cannot read (an older onss run as root left root-owned 0600
pads the app, user pi, cannot read); a folder deploy creates takes the owner of the folder above it.

A file the card already holds byte for byte is not written again; a pad kept so whose owner is not
its folder's, or whose owner cannot read it, only gets the owner and mode a new pad would have (no
content rewritten). When the card holds the whole pack as it should be (every pad and settings.json,
no localSettings.json over it, every pad's owner and mode right) nothing at all is written. The
settings replaced by other bytes (and a localSettings.json, which is removed: it would override
ours) are first backed up under a name no other backup has (``settings.json.bak-<UTC time to the
microsecond>``, created with O_EXCL, a counter added on a clash), so no backup is ever overwritten.

Pads in the pack's data folder that the new settings do not use (an earlier pack's) are listed in
the report; with ``prune`` they are removed once the new pack is in place: only regular ``*.bin``
files directly in that folder, named by no combination of the new corners. Every failure is a
:class:`DeployError` naming the file and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import itertools
import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from onss_tui.atomic import fsync_dir, umask_mode
from onss_tui.device.pads import ROW_LENGTH, pad_filename, pad_size
from onss_tui.device.settings import validate_pack
from onss_tui.sizes import size_text

APP_DATA = Path("home/pi/opt/of/apps/open-nsynth/open-nsynth/bin/data")
CHUNK = 1 << 22
DEFAULT_RESOLUTION = 9  # what the app reads when nsynth.resolution / nsynth.pitches are missing
DEFAULT_PITCHES = list(range(36, 85, 4))
SPACE_FIX = "Free space on the card (old pads, or the settings.json.bak-* backups in {app}) or use a bigger card."
BACKUP = "{name}.bak-{stamp}"  # stamp: UTC, to the microsecond; "-<n>" added when that name is taken

__all__ = ["DeployError", "DeployReport", "checked_pad", "deploy", "kept_pad", "pad_mode", "refuse_errors",
           "require_validated"]


class DeployError(Exception):
    """Deployment cannot go on; the message says why and what to do."""


@dataclass
class DeployReport:
    settings: Path
    pads_dir: Path
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # pads the card already held, byte for byte
    backups: list[Path] = field(default_factory=list)
    settings_written: bool = False  # False: the card's settings.json already held these bytes
    fixed: list[str] = field(default_factory=list)  # pads kept whose owner or mode alone was set right
    pad_owner: tuple[int, int, int] | None = None  # (uid, gid, mode) pads take on the card (None: unknown)
    unchanged: bool = False  # the card already had this pack: nothing at all was written
    unused: list[tuple[str, int]] = field(default_factory=list)  # (name, size) of pads the settings do not use
    removed: list[str] = field(default_factory=list)  # of those, the ones prune removed
    host: str = ""  # an ssh deploy: the [user@]host the paths are on (empty: the local card)
    restarted: bool = False  # an ssh deploy with restart: the app was restarted

    @property
    def unused_bytes(self) -> int:
        return sum(size for _, size in self.unused)


@dataclass
class _Copy:
    src: Path
    dest: Path
    size: int
    digest: str
    old_size: int  # of the file it replaces on the card (0: none)


def _digest(path: Path, from_device: bool = False) -> str:
    """sha256 of a file; ``from_device``: drop its cached pages first, so what is read back is
    what the card holds (after an fsync the pages are clean, and dropping them is allowed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if from_device and hasattr(os, "posix_fadvise"):
            with contextlib.suppress(OSError):
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _on_card(mount: Path, device_path: str) -> Path:
    """Where a path of the device is under ``mount`` (not yet checked to stay there)."""
    p = Path(device_path)
    if not p.is_absolute():  # relative dataDirectory: relative to the app's bin/data
        return mount / APP_DATA / p
    return mount / p.relative_to(p.anchor)


def _first_link(root: Path, path: Path) -> Path | None:
    """The first symbolic link on the way from ``root`` down to ``path`` (None: none)."""
    cur = root
    for part in path.relative_to(root).parts:
        cur = cur / part
        if cur.is_symlink():
            return cur
        if not cur.exists():
            return None
    return None


def _card_path(root: Path, path: Path, what: str) -> Path:
    """``path`` (under the card's resolved ``root``) with every link resolved, refused if it
    leaves the card: by ``..`` or through a symbolic link (the host would follow an absolute link
    to the host's own folder, not the card's)."""
    real = Path(os.path.realpath(path))
    if _within(real, root):
        return real
    lexical = Path(os.path.normpath(path))
    if not _within(lexical, root):
        raise DeployError(f"{what} is {lexical}, outside the card mounted at {root}: nothing was copied. "
                          "Use a folder on the device, such as /home/pi/pads.")
    link = _first_link(root, lexical)
    where = f"{link} is a symbolic link on the card to {os.readlink(link)}" if link else f"{path} leads to {real}"
    raise DeployError(f"{where}, outside the card mounted at {root}; deploy does not write through it and "
                      f"nothing was copied. Replace the link with a folder on the card, or point {what} elsewhere.")


def _read_settings(settings_file: Path, pads: Path) -> tuple[bytes, dict[str, Any]]:
    try:
        data = settings_file.read_bytes()
    except OSError as exc:
        raise DeployError(f"{settings_file}: cannot read it ({exc.strerror}); the run is incomplete. "
                          "Run its recipe again (onss run) to write it.") from None
    try:
        settings = json.loads(data)
    except ValueError as exc:
        raise DeployError(f"{settings_file}: not valid JSON ({exc}); the app would not start. "
                          f"Run the recipe again to rewrite it, and check it with: onss validate {pads}") from None
    if not isinstance(settings, dict):
        raise DeployError(f"{settings_file}: the top level must be a JSON object; "
                          f"check it with: onss validate {pads}")
    return data, settings


def _layout(settings: dict[str, Any]) -> tuple[int, int, int]:
    """(R, P, L) as the app reads them (after the validator found no error in them)."""
    n = settings.get("nsynth") or {}
    resolution = n.get("resolution")
    pitches = n.get("pitches")
    length = n.get("length")
    return (DEFAULT_RESOLUTION if resolution is None else resolution,
            len(DEFAULT_PITCHES if pitches is None else pitches),
            ROW_LENGTH if length is None else length)


def _existing(path: Path) -> Path:
    """``path`` or its nearest folder above that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable(mount: Path, folders: list[Path]) -> None:
    """Refuse, before anything is written, a card mounted read-only or a folder this user cannot write."""
    try:
        read_only = bool(os.statvfs(_existing(folders[0])).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise DeployError(f"{mount}: the card is mounted read-only; nothing was changed. Check the card's lock "
                          f"switch, remount it writable (sudo mount -o remount,rw {mount}) and deploy again.")
    for folder in folders:
        existing = _existing(folder)
        if not os.access(existing, os.W_OK | os.X_OK):
            raise DeployError(f"{existing}: this user cannot write this folder on the card (permission denied); "
                              "nothing was changed. Deploy as a user who may write it (e.g. with sudo) or change "
                              "the folder's owner or permissions.")


def _space(dest: Path) -> int:
    try:
        return shutil.disk_usage(_existing(dest)).free
    except OSError:
        return 0


def _block(path: Path) -> int:
    try:
        return os.statvfs(_existing(path)).f_frsize or 4096
    except OSError:
        return 4096


def _explain(exc: OSError, path: Path, mount: Path, kept: str, size: int | None = None) -> DeployError:
    """A clean message for an OSError while changing ``path`` on the card (``size``: its size)."""
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        needs = f"writing it needs {size_text(size)}, " if size is not None else ""
        return DeployError(f"{path}: the card is full ({needs}{size_text(_space(path))} free now); {kept} "
                           + SPACE_FIX.format(app=mount / APP_DATA) + " Then deploy again.")
    if code == errno.EFBIG:
        return DeployError(f"{path}: the file size limit (ulimit -f) was reached while writing it; {kept} "
                           "Raise the limit (ulimit -f unlimited) and deploy again.")
    if code == errno.EROFS:
        return DeployError(f"{path}: the card is mounted read-only; {kept} Check the card's lock switch, "
                           f"remount it writable (sudo mount -o remount,rw {mount}) and deploy again.")
    if code in (errno.EACCES, errno.EPERM):
        return DeployError(f"{path}: permission denied; {kept} Deploy as a user who may write the card "
                           "(e.g. with sudo) or change the folder's owner or permissions.")
    return DeployError(f"{path}: {exc.strerror or exc}; {kept} Check that the card is still mounted and "
                       "sound (it may be failing), then deploy again.")


def pad_mode(umask: int | None = None) -> int:
    """The mode a pad gets: the umask's (0644 under umask 022; default: this process's umask, an SSH
    deploy passes the device's), never one its owner cannot read (the app reads its pads as the
    folder's owner)."""
    return (umask_mode(0o666) if umask is None else 0o666 & ~umask) | stat.S_IRUSR


def _pad_owner(folder: Path) -> tuple[int, int, int] | None:
    """(uid, gid, mode) every pad in ``folder`` should have; None: the folder cannot be read."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_uid, st.st_gid, pad_mode()


def kept_pad(uid: int, gid: int, mode: int, owner: tuple[int, int] | None, user: int) -> str:
    """What a pad already held byte for byte (owned ``uid``:``gid``, ``mode``) needs, for ``user``
    deploying it into a folder owned ``owner`` (card and SSH deploys alike): ``ok``; ``fix``: only its
    owner and mode set as a new pad's (it is not owned so, or its owner cannot read it); ``replace``:
    it needs that but ``user`` may not chown or chmod it, while a copy of its own would be right
    (``user`` owns the folder). Root fixes everything; another user only what it may (no group is
    changed)."""
    if owner is None:
        return "ok"
    readable = bool(mode & stat.S_IRUSR)
    if user == 0:
        return "ok" if (uid, gid) == owner and readable else "fix"
    if uid == owner[0]:
        return "ok" if readable or uid != user else "fix"
    return "replace" if owner[0] == user else "ok"


def _take_over(fd: int, like: os.stat_result | None, folder: Path, pad: bool = False) -> None:
    """Give a new file the owner and mode of the one it replaces; none, or ``pad``: the owner and
    group of ``folder`` (where it is written: root deploying to a card of uid 1000 leaves pads that
    user owns) and the mode of the umask (a pad: never unreadable by its owner)."""
    if like is None or pad:
        with contextlib.suppress(OSError):  # only root may give a file away: then it stays ours
            st = os.stat(folder)
            os.fchown(fd, st.st_uid, st.st_gid)
        with contextlib.suppress(OSError):  # a FAT card has no modes
            os.fchmod(fd, pad_mode() if pad else umask_mode())
        return
    with contextlib.suppress(OSError):  # only root may give a file away: then it stays ours
        os.fchown(fd, like.st_uid, like.st_gid)
    with contextlib.suppress(PermissionError):  # a FAT card has no modes
        os.fchmod(fd, stat.S_IMODE(like.st_mode))


def _make_folders(folder: Path) -> None:
    """``folder`` and the folders above it that are missing, each owned like the one above it."""
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            st = os.stat(d.parent)
            os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)


def _pad_names(settings: dict[str, Any]) -> set[str]:
    """Every pad file the settings' corners name (the settings have passed the validator)."""
    names = [[inst["name"] for inst in corner["instruments"]] for corner in settings["corners"]]
    return {pad_filename(c) for c in itertools.product(*names)}


def _unused(folder: Path, keep: set[str]) -> list[tuple[str, int]]:
    """(name, size) of the regular ``*.bin`` files directly in ``folder`` whose name is not in
    ``keep`` (compared without case: on a FAT card ``A.bin`` is ``a.bin``). Hidden files, links,
    folders and every other name are never listed."""
    kept = {n.casefold() for n in keep}
    found = []
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                if not e.name.endswith(".bin") or e.name.startswith(".") or e.name.casefold() in kept:
                    continue
                with contextlib.suppress(OSError):
                    st = e.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        found.append((e.name, st.st_size))
    except OSError:  # no folder yet (or not one this user can list): nothing to report
        return []
    return sorted(found)


def _backup(prev: Path, data: bytes, like: os.stat_result | None, mount: Path) -> Path:
    """Write ``data`` (what ``prev`` holds) to a new backup beside it, never over an existing file
    (O_EXCL; a counter when another deploy took the same microsecond), owner and mode of ``like``,
    fsynced and read back. On a failure nothing partial is left."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    digest = hashlib.sha256(data).hexdigest()
    kept = f"{prev.name} is unchanged and no partial backup was left."
    for n in range(1000):
        backup = prev.with_name(BACKUP.format(name=prev.name, stamp=stamp) + (f"-{n}" if n else ""))
        try:
            out = open(backup, "xb")  # noqa: SIM115 - x: O_CREAT|O_EXCL, never over a file or through a link
        except FileExistsError:
            continue
        except OSError as exc:
            raise _explain(exc, backup, mount, kept, len(data)) from None
        try:
            with out:
                _take_over(out.fileno(), like, backup.parent)
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            if _digest(backup, from_device=True) != digest:
                raise DeployError(f"{backup}: the backup read back from the card differs from {prev}; the card "
                                  f"may be failing. {kept[0].upper()}{kept[1:]} Try again or use another card.")
        except BaseException as exc:
            with contextlib.suppress(OSError):
                backup.unlink()
            if isinstance(exc, OSError):
                raise _explain(exc, backup, mount, kept, len(data)) from None
            raise
        return backup
    raise DeployError(f"{prev}: 1000 backups named {BACKUP.format(name=prev.name, stamp=stamp)}-* exist already; "
                      f"{kept} Remove old backups from {prev.parent} and deploy again.")


def _old(dest: Path) -> os.stat_result | None:
    try:
        st = os.stat(dest)
    except OSError:  # none, or none this user can see: it is written as a new file
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _install(source: IO[bytes], src_name: str, dest: Path, size: int, digest: str, mount: Path,
             like: os.stat_result | None = None, pad: bool = False) -> None:
    """Copy ``source`` (``size`` bytes, sha256 ``digest``) to ``dest`` on the card: a temp file
    beside it, owner and mode of ``like`` (default: the file it replaces; ``pad``: those of a pad
    in its folder, whatever it replaces), fsync, read back and compared, rename. On any failure the
    temp file is removed and ``dest`` is as it was."""
    tmp = dest.with_name(f".{dest.name}.part")
    there = _old(dest)
    like = there if like is None else like
    kept = f"the old {dest.name} there is unchanged and nothing partial was left." if there else \
        "nothing partial was left."
    try:
        tmp.unlink(missing_ok=True)  # a stale one of ours; never written through (it may be a link)
        h, n = hashlib.sha256(), 0
        with open(tmp, "xb") as out:  # x: O_EXCL, so never through a link
            _take_over(out.fileno(), like, dest.parent, pad)
            while True:
                try:
                    block = source.read(CHUNK)
                except OSError as exc:
                    raise DeployError(f"{src_name}: cannot read it ({exc.strerror}); {kept} "
                                      "Check the run's disk and deploy again.") from None
                if not block:
                    break
                h.update(block)
                n += len(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if n != size or h.hexdigest() != digest:
            raise DeployError(f"{src_name}: changed while it was being copied ({n:,} bytes read, {size:,} "
                              f"checked); {kept} Wait until nothing writes the run, then deploy again.")
        if _digest(tmp, from_device=True) != digest:
            raise DeployError(f"{dest}: the copy read back from the card differs from {src_name}; the card may "
                              f"be failing. {kept[0].upper()}{kept[1:]} Try again or use another card.")
        os.replace(tmp, dest)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise _explain(exc, dest, mount, kept, size) from None
        raise


def require_validated(run_dir: Path) -> None:
    """Refuse a run that has not passed its validate stage."""
    from onss_tui.pipeline.rundir import RunDir  # the run's typed state (an unreadable one: nothing done)

    if RunDir(run_dir).state().stage("validate").status != "done":
        raise DeployError(f"{run_dir}: the run has not passed validation; finish it first (onss run), "
                          f"or check it with: onss validate {run_dir / 'pads'}")


def refuse_errors(run_dir: Path, settings: dict[str, Any]) -> int:
    """Refuse a pack the validator finds an error in; else the size every pad must have."""
    pads = run_dir / "pads"
    errors = [f for f in validate_pack(settings, pads, content=False) if f.level == "error"]
    if errors:
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise DeployError(f"{run_dir}: the pack would break the device, nothing was copied: "
                          + "; ".join(f"{e.where}: {e.message}" for e in errors[:3]) + more
                          + f". Run its recipe again (onss run) to remake it, or check it with: onss validate {pads}")
    return pad_size(*_layout(settings))


def checked_pad(f: Path, want: int, settings: dict[str, Any], run_dir: Path) -> tuple[int, str]:
    """(size, sha256) of a pad of the run, refused unless exactly ``want`` bytes."""
    pads, settings_file = run_dir / "pads", run_dir / "settings.json"
    try:
        size = f.stat().st_size
    except OSError as exc:
        raise DeployError(f"{f}: cannot read it ({exc.strerror}); nothing was copied.") from None
    if size != want:
        R, P, L = _layout(settings)
        raise DeployError(f"{f}: {size:,} bytes, needs exactly {want:,} (resolution {R}, {P} pitches, {L} "
                          f"samples a row in {settings_file}); the device would crash (SIGBUS) or mis-play. "
                          f"Nothing was copied. Run its recipe again (onss run) to remake it, or check it with: "
                          f"onss validate {pads}")
    try:
        return size, _digest(f)
    except OSError as exc:
        raise DeployError(f"{f}: cannot read it ({exc.strerror}); nothing was copied.") from None


def deploy(run_dir: Path, mount: Path, progress: Callable[[str, int, int], None] | None = None,
           prune: bool = False) -> DeployReport:
    """Copy a validated run's pack onto the card mounted at ``mount``; ``prune``: then remove the
    pads in the pack's data folder that the new settings do not use (the report lists them either way)."""
    run_dir, mount = Path(run_dir), Path(mount)
    settings_file, pads = run_dir / "settings.json", run_dir / "pads"
    require_validated(run_dir)
    if not mount.is_dir():
        raise DeployError(f"{mount}: no such folder. Mount the SD card's root file system and pass its mount point.")
    root = Path(os.path.realpath(mount))
    if not (mount / APP_DATA).is_dir():
        raise DeployError(f"{mount}: no Open NSynth Super app at {mount / APP_DATA}. "
                          "Is this the card's root partition?")
    app_data = _card_path(root, root / APP_DATA, "the app's folder")

    # -- what is copied: checked now, not trusted to the run's state ----------------------------
    settings_bytes, settings = _read_settings(settings_file, pads)
    data_dir = settings["nsynth"].get("dataDirectory") if isinstance(settings.get("nsynth"), dict) else None
    if isinstance(data_dir, str):  # first: whatever else is wrong, nothing is written off the card
        _card_path(root, _on_card(root, data_dir), f"nsynth.dataDirectory {data_dir!r} in {settings_file}")
    want = refuse_errors(run_dir, settings)
    data_dir = (settings.get("nsynth") or {}).get("dataDirectory") or ""
    target = _card_path(root, _on_card(root, data_dir), f"nsynth.dataDirectory {data_dir!r} in {settings_file}")
    for name in ("settings.json", "localSettings.json"):
        _card_path(root, app_data / name, f"the app's {name}")

    files = sorted(f for f in pads.glob("*.bin") if f.is_file())
    plan: list[_Copy] = []
    skipped: list[str] = []
    to_fix: list[Path] = []  # pads the card holds byte for byte, owned or moded wrong: only chown/chmod
    owner = _pad_owner(_existing(target))  # (the folder above a pads folder deploy creates: its owner's)
    for f in files:
        size, digest = checked_pad(f, want, settings, run_dir)
        dest = _card_path(root, target / f.name, f"{target / f.name}")
        old = _old(dest)
        with contextlib.suppress(OSError):  # an unreadable old pad is replaced
            if old is not None and old.st_size == size and _digest(dest) == digest:
                action = kept_pad(old.st_uid, old.st_gid, old.st_mode, owner[:2] if owner else None,
                                  os.geteuid())
                if action != "replace":  # (replace: not ours to chown, so a copy of ours takes its place)
                    skipped.append(f.name)
                    if action == "fix":
                        to_fix.append(dest)
                    continue
        plan.append(_Copy(f, dest, size, digest, old.st_size if old else 0))

    olds: list[tuple[Path, bytes, os.stat_result | None]] = []  # settings on the card replaced or removed: backed up
    write_settings = True
    for prev in (app_data / "settings.json", app_data / "localSettings.json"):
        if prev.is_file():
            try:
                data = prev.read_bytes()
            except OSError as exc:
                raise DeployError(f"{prev}: cannot read it to back it up ({exc.strerror}); nothing was changed. "
                                  "Deploy as a user who may read it (e.g. with sudo) or fix its permissions.") from None
            if prev.name == "settings.json" and data == settings_bytes:
                write_settings = False  # the card has these settings already: neither rewritten nor backed up
                continue
            olds.append((prev, data, _old(prev)))
    ours = {f.name for f in files}  # never listed as unused, even if no corner names it
    unused = _unused(target, _pad_names(settings) | ours)
    report = DeployReport(app_data / "settings.json", target, skipped=skipped, unused=unused, pad_owner=owner)
    if not plan and not olds and not write_settings and not to_fix:
        report.unchanged = True
        if not (prune and unused):
            return report  # the card already has this pack: nothing written, not even a backup

    # -- the card: writable, and the space the copy really needs --------------------------------
    _check_writable(mount, [target, app_data] if not report.unchanged else [target])
    try:
        for c in plan:  # ours, from a deploy that was cut off: they hold space
            c.dest.with_name(f".{c.dest.name}.part").unlink(missing_ok=True)
    except OSError as exc:
        raise _explain(exc, Path(exc.filename or target), mount, "nothing was changed.") from None
    block = _block(target)
    up = lambda n: -(-n // block) * block  # noqa: E731 - what a file takes on the card
    need = used = 0  # each copy is written in full beside the file it replaces, which goes only at the rename
    for c in plan:
        need = max(need, used + up(c.size))
        used += up(c.size) - up(c.old_size)
    used += sum(up(len(data)) for _, data, _ in olds)  # the backups
    if write_settings:
        need = max(need, used + up(len(settings_bytes)))
    free = _space(target)
    if need > free:
        replaced = [c.size for c in plan if c.old_size]
        why = (f" (each pad, up to {size_text(max(replaced))}, is written in full beside the one it replaces, which is "
               "removed only when the new copy is checked)") if replaced else ""
        some = ", ".join(n for n, _ in unused[:3]) + (", …" if len(unused) > 3 else "")
        stale = (f" {len(unused)} .bin files in {target} that these settings do not use take "
                 f"{size_text(report.unused_bytes)} ({some}); "
                 "--prune removes them only after a deploy that succeeds, so delete them yourself to make room "
                 "now.") if unused else ""
        raise DeployError(f"{target}: not enough space on the card: the copy needs {size_text(need)} free, the card "
                          f"has {size_text(free)}{why}. Nothing was changed.{stale} " + SPACE_FIX.format(app=app_data))

    # -- copy -----------------------------------------------------------------------------------
    try:
        _make_folders(target)
    except OSError as exc:
        raise _explain(exc, Path(exc.filename or target), mount, "nothing was changed.") from None
    for dest in to_fix:
        _fix_owner(dest, owner, mount)
        report.fixed.append(dest.name)
    for i, c in enumerate(plan):
        try:
            src = open(c.src, "rb")
        except OSError as exc:
            raise DeployError(f"{c.src}: cannot read it ({exc.strerror}); it was not copied.") from None
        with src:
            _install(src, str(c.src), c.dest, c.size, c.digest, mount, pad=True)
        report.copied.append(c.src.name)
        if progress:
            progress(c.src.name, i + 1, len(plan))
    if plan:
        fsync_dir(target)
    for prev, data, like in olds:
        report.backups.append(_backup(prev, data, like, mount))
    if write_settings:
        _install(io.BytesIO(settings_bytes), str(settings_file), report.settings, len(settings_bytes),
                 hashlib.sha256(settings_bytes).hexdigest(), mount)
        report.settings_written = True
        try:
            if json.loads(report.settings.read_bytes()) != settings:
                raise DeployError(f"{report.settings}: read back differs from what was written; check the card.")
        except (OSError, ValueError) as exc:
            raise DeployError(f"{report.settings}: cannot read it back ({exc}); check the card.") from None
    local = app_data / "localSettings.json"
    try:
        if any(prev == local for prev, _, _ in olds):  # it would override ours: kept only as the backup above
            local.unlink()
    except OSError as exc:
        raise _explain(exc, local, mount, "the new settings.json is in place but this file overrides it.") from None
    if olds or write_settings:
        fsync_dir(app_data)
    if prune:
        _prune(report, mount)
    return report


def _fix_owner(path: Path, owner: tuple[int, int, int] | None, mount: Path) -> None:
    """Give a pad the card already holds the owner, group and mode a new pad gets (its bytes stay)."""
    if owner is None:
        return
    uid, gid, mode = owner
    try:
        if os.geteuid() == 0:
            os.chown(path, uid, gid)
        os.chmod(path, mode)
    except OSError as exc:
        raise _explain(exc, path, mount, "its bytes are unchanged.") from None


def _prune(report: DeployReport, mount: Path) -> None:
    """Remove the unused pads the report lists (the new pack is in place by now), each checked
    again to be a regular file just before; what was removed goes into ``report.removed``."""
    for name, _ in report.unused:
        path = report.pads_dir / name
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            done = f"removed before it: {', '.join(report.removed)}" if report.removed else "none was removed"
            raise _explain(exc, path, mount, f"the new pack is in place; of the unused pads {done}.") from None
        report.removed.append(name)
    if report.removed:
        fsync_dir(report.pads_dir)
