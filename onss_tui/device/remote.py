"""Deploying a pack over SSH to a running synth: ``onss deploy RUN --to pi@host[:port]``.

The same checks as a card deploy (:mod:`onss_tui.device.deploy`), done on the device through the
system ``ssh`` (``BatchMode=yes``: never a password prompt; the user's ssh config and keys apply;
one shared connection for the whole deploy) and ``rsync`` (ssh and ``cat`` when either end has no rsync):

* the local pack is validated exactly as for a card (run validated, no validator error, every pad
  exactly the size its settings give);
* one probe reads what the device holds: the app's folder, the pads folder of ``dataDirectory``
  (each path resolved on the device, refused when it leaves the remote root), size and sha256 of
  every file deploy would replace, the free space (``df``) and which of them this ssh user may write;
* nothing is written when the device already holds exactly this pack;
* each pad is copied to a hidden ``.<name>.part`` beside its target, given the owner and group of
  its folder (as far as the ssh user may) and the mode of the device's umask (never one its owner
  cannot read), synced, its sha256 computed on the device (its cache dropped first) and compared
  with the local one, and only then renamed into place; settings.json takes the owner and mode of
  the file it replaces. A pad the device holds byte for byte is kept; if its owner is not its
  folder's, or its owner cannot read it, only its owner and mode are set (no content rewritten);
* the device's settings.json (and a localSettings.json, which would override ours and is removed)
  is first backed up on the device under a name no file has (``settings.json.bak-<UTC stamp>``,
  created with the shell's noclobber, i.e. O_EXCL, a counter on a clash);
* ``prune`` removes the regular ``*.bin`` files of the pads folder that no corner names;
* ``restart`` then runs ``sudo -n systemctl restart open-nsynth`` (the service ``linux/nsynth-setup.sh``
  installs), or the command given.

The device's root is ``/``; tests point it at a folder with ``ONSS_REMOTE_ROOT``. Extra ssh options
(``-F FILE``, ``-i KEY``, ``-o K=V``) come from ``ONSS_SSH_OPTIONS``. Every failure is a
:class:`DeployError` naming the host and the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from onss_tui.device.deploy import (
    APP_DATA,
    DeployError,
    DeployReport,
    _read_settings,
    checked_pad,
    kept_pad,
    pad_mode,
    refuse_errors,
    require_validated,
)
from onss_tui.device.pads import pad_filename
from onss_tui.sizes import size_text

DEFAULT_RESTART = "sudo -n systemctl restart open-nsynth"
CONNECT_TIMEOUT = 10  # seconds
COMMAND_TIMEOUT = 3600  # one remote command (a sha256 of a large pad on a slow card included)
_TARGET = re.compile(r"^(?:(?P<user>[^@\s/:]+)@)?(?P<host>[A-Za-z0-9._-]+)(?::(?P<port>\d*))?$")

__all__ = ["DEFAULT_RESTART", "Target", "deploy_remote", "parse_target"]


@dataclass(frozen=True)
class Target:
    user: str | None
    host: str
    port: int | None

    @property
    def dest(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        return self.dest + (f":{self.port}" if self.port else "")

    def ssh_hint(self) -> str:
        return shlex.join(["ssh", *(["-p", str(self.port)] if self.port else []), self.dest])


def parse_target(text: str) -> Target | None:
    """The ssh target ``[user@]host[:port]`` ``text`` names; None: a local folder (a card)."""
    if text.startswith(("/", ".", "~")) or os.path.exists(text) or ("@" not in text and ":" not in text):
        return None
    m = _TARGET.match(text)
    if not m:
        raise DeployError(f"{text}: not an ssh target or a folder here. Give the synth as pi@HOST or pi@HOST:PORT "
                          "(deploy writes to the app's own folders there), or the mount point of its SD card.")
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 0 < port < 65536:
        raise DeployError(f"{text}: port {port} is not a TCP port (1-65535).")
    return Target(m["user"], m["host"], port)


def _last(text: bytes | str) -> str:
    s = text.decode(errors="replace") if isinstance(text, bytes) else text
    lines = [ln.strip() for ln in s.splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


class _Ssh:
    """One shared ssh connection (a control master) to the target, and commands over it."""

    def __init__(self, target: Target, folder: str) -> None:
        self.target = target
        self.opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}", "-o", "ServerAliveInterval=15",
                     "-o", "ServerAliveCountMax=4", "-o", f"ControlPath={folder}/cm-%C",
                     *shlex.split(os.environ.get("ONSS_SSH_OPTIONS", ""))]
        self.ssh = ["ssh", *self.opts, *(["-p", str(target.port)] if target.port else [])]
        self.log = Path(folder) / "master.log"

    def connection_error(self, stderr: str) -> DeployError:
        t, text = self.target, stderr
        if "Permission denied" in text or "Too many authentication failures" in text:
            copy = shlex.join(["ssh-copy-id", *(["-p", str(t.port)] if t.port else []), t.dest])
            return DeployError(f"{t}: ssh refused the login: no key of yours is accepted (deploy never asks for a "
                               f"password). Install your key on the synth once: {copy}, then deploy again.")
        if "Host key verification failed" in text or "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
            return DeployError(f"{t}: the synth's host key is unknown or has changed, so ssh will not connect. "
                               f"Connect once by hand to check and accept it ({t.ssh_hint()}), then deploy again.")
        if "Could not resolve hostname" in text:
            return DeployError(f"{t}: cannot resolve the host name {t.host!r}. Check the name, or use the synth's "
                               "IP address (pi@192.168.x.y).")
        if "Connection refused" in text:
            return DeployError(f"{t}: connection refused on port {t.port or 22}: no ssh server listens there. Check "
                               "the host and port, and that the synth is on with ssh enabled.")
        if "timed out" in text or "No route to host" in text or "unreachable" in text:
            return DeployError(f"{t}: no answer within {CONNECT_TIMEOUT} s ({_last(text)}). Check that the synth is "
                               "on and on this network, and the host and port.")
        return DeployError(f"{t}: ssh failed ({_last(text)}). Check that {t.ssh_hint()} works, then deploy again.")

    def open(self) -> None:
        """Log in once (the master the later commands share); its stderr goes to a file, since the
        master outlives this call and would hold a pipe open."""
        with open(self.log, "wb") as err:
            try:
                rc = subprocess.run([*self.ssh, "-o", "ControlMaster=yes", "-o", "ControlPersist=300", "-f", "-N",
                                     self.target.dest], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, timeout=CONNECT_TIMEOUT * 3).returncode
            except FileNotFoundError:
                raise DeployError(f"{self.target}: no ssh client here; install OpenSSH (apt install "
                                  "openssh-client) and deploy again.") from None
            except subprocess.TimeoutExpired:
                raise DeployError(f"{self.target}: ssh did not log in within {CONNECT_TIMEOUT * 3} s. Check that "
                                  f"{self.target.ssh_hint()} works, then deploy again.") from None
        if rc != 0:
            raise self.connection_error(self.log.read_text(errors="replace"))

    def close(self) -> None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([*self.ssh, "-O", "exit", self.target.dest], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=CONNECT_TIMEOUT)

    def run(self, command: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        try:
            proc = subprocess.run([*self.ssh, "-o", "ControlMaster=no", self.target.dest, command],
                                  input=data if data is not None else b"", capture_output=True,
                                  timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise DeployError(f"{self.target}: a command on the synth ran over {COMMAND_TIMEOUT} s; the connection "
                              "may have dropped. Check it and deploy again.") from None
        if proc.returncode == 255:
            raise self.connection_error(proc.stderr.decode(errors="replace"))
        return proc

    def sh(self, script: str, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return self.run(shlex.join(["sh", "-c", script, "sh", *args]), data)


@contextlib.contextmanager
def _connected(target: Target) -> Iterator[_Ssh]:
    with tempfile.TemporaryDirectory(prefix="onss-ssh-") as folder:
        ssh = _Ssh(target, folder)
        ssh.open()
        try:
            yield ssh
        finally:
            ssh.close()


_PROBE = r"""
root=$1 app=$2 target=$3; shift 3
real() { realpath -m -- "$1" 2>/dev/null || readlink -f -- "$1" 2>/dev/null || printf '%s' "$1"; }
up() { e=$1; while [ ! -e "$e" ] && [ "$e" != / ]; do e=$(dirname -- "$e"); done; printf '%s' "$e"; }
printf 'id\t%s\t%s\n' "$(id -u)" "$(id -un)"
printf 'root\t%s\n' "$(real "$root")"
a=0; [ -d "$app" ] && a=1
printf 'app\t%s\t%s\n' "$a" "$(real "$app")"
printf 'target\t%s\n' "$(real "$target")"
for d in "$target" "$app"; do
  e=$(up "$d"); w=0; [ -w "$e" ] && [ -x "$e" ] && w=1; printf 'dir\t%s\t%s\t%s\n' "$d" "$e" "$w"
done
e=$(up "$target")
printf 'owner\t%s\t%s\n' "$(stat -c '%u %g' -- "$e")" "$(umask)"
printf 'df\t%s\t%s\n' "$(df -Pk -- "$e" | awk 'NR==2{print $4}')" "$(stat -f -c %S -- "$e" 2>/dev/null || echo 4096)"
printf 'tools\t%s\t%s\n' "$(command -v rsync || true)" "$(command -v sha256sum || true)"
while [ $# -gt 1 ]; do
  f=$1 want=$2; shift 2
  if [ -f "$f" ]; then
    st=$(stat -L -c '%s %u %g %a' -- "$f"); size=${st%% *}; sha=-; w=0
    if [ "$want" = "*" ] || [ "$want" = "$size" ]; then
      sha=$(sha256sum -- "$f" 2>/dev/null | cut -d' ' -f1); [ -n "$sha" ] || sha=-
    fi
    [ -w "$f" ] && w=1
    printf 'file\t%s\t%s\t%s\t%s\t%s\n' "$f" "$st" "$w" "$sha" "$(real "$f")"
  fi
done
for p in "$target"/*.bin; do
  if [ -f "$p" ] && [ ! -L "$p" ]; then printf 'bin\t%s\t%s\n' "${p##*/}" "$(stat -c %s -- "$p")"; fi
done
true
"""

# the mode of a pad: the umask's, and its owner may read it (sourced by the scripts below)
_PAD_MODE = r"""pad_mode=$(printf '%o' $(( (0666 & ~0$(umask)) | 0400 )))"""

# part dest sha256 how: owner and mode (how=like: of dest; how=pad: its folder's owner, the pad
# mode), sync, read back (cache dropped), compare, rename
_FINISH = _PAD_MODE + r"""
part=$1 dest=$2 want=$3 how=$4
if [ "$how" = pad ]; then
  chown --reference="$(dirname -- "$dest")" -- "$part" 2>/dev/null; chmod "$pad_mode" -- "$part" 2>/dev/null
elif [ -f "$dest" ]; then
  chown --reference="$dest" -- "$part" 2>/dev/null; chmod --reference="$dest" -- "$part" 2>/dev/null
fi
sync -- "$part" 2>/dev/null || sync
dd if="$part" iflag=nocache count=0 2>/dev/null
got=$(sha256sum -- "$part" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then rm -f -- "$part"; echo "the copy read back differs" >&2; exit 3; fi
mv -f -- "$part" "$dest" || { rm -f -- "$part"; exit 4; }
"""

# prev stamp sha256: a new backup of prev, never over a file (noclobber: O_EXCL), checked
_BACKUP = r"""
prev=$1 stamp=$2 want=$3 n=0
while :; do
  b="$prev.bak-$stamp"; [ "$n" -gt 0 ] && b="$b-$n"
  if (set -C; : > "$b") 2>/dev/null; then break; fi
  [ -e "$b" ] || { echo "cannot create $b" >&2; exit 4; }
  n=$((n + 1)); [ "$n" -lt 1000 ] || { echo "1000 backups named $prev.bak-$stamp-* exist" >&2; exit 5; }
done
chown --reference="$prev" -- "$b" 2>/dev/null; chmod --reference="$prev" -- "$b" 2>/dev/null
cat -- "$prev" > "$b" || { rm -f -- "$b"; exit 4; }
sync -- "$b" 2>/dev/null || sync
dd if="$b" iflag=nocache count=0 2>/dev/null
got=$(sha256sum -- "$b" | cut -d' ' -f1)
if [ "$want" != "-" ] && [ "$got" != "$want" ]; then rm -f -- "$b"; echo "the backup read back differs" >&2; exit 3; fi
printf '%s\n' "$b"
"""

# folder part...: the pads folder and those above it that are missing (as root: each owned like the
# one above it, so that its pads take the card user's owner), and no stale .part of ours in it
_MKDIR = r"""
mk() {
  [ -d "$1" ] && return 0
  mk "$(dirname -- "$1")" && mkdir -- "$1" || return 1
  if [ "$(id -u)" = 0 ]; then chown --reference="$(dirname -- "$1")" -- "$1"; fi
}
mk "$1" && shift && rm -f -- "$@"
"""

# folder pad...: pads kept byte for byte get the folder's owner (root only) and the pad mode
_FIX = _PAD_MODE + r"""
folder=$1; shift
for p in "$@"; do
  if [ "$(id -u)" = 0 ]; then chown --reference="$folder" -- "$p" || exit 4; fi
  chmod "$pad_mode" -- "$p" || exit 4
done
"""

_PRUNE = r"""
target=$1; shift
for name in "$@"; do
  p=$target/$name
  if [ -f "$p" ] && [ ! -L "$p" ]; then rm -f -- "$p" || exit 4; printf '%s\n' "$name"; fi
done
"""


@dataclass
class _File:
    size: int
    writable: bool
    sha: str
    real: str
    uid: int = -1
    gid: int = -1
    mode: int = 0o644


@dataclass
class _Probe:
    uid: int = -1
    user: str = ""
    root: str = "/"
    app_exists: bool = False
    app_real: str = ""
    target_real: str = ""
    dirs: list[tuple[str, str, bool]] | None = None
    free: int = 0
    block: int = 4096
    rsync: bool = False
    sha256sum: bool = False
    files: dict[str, _File] | None = None
    bins: list[tuple[str, int]] | None = None
    owner: tuple[int, int] | None = None  # of the pads folder (or the folder above it deploy creates it in)
    umask: int = 0o022


def _parse_probe(out: str) -> _Probe:
    p = _Probe(dirs=[], files={}, bins=[])
    assert p.dirs is not None and p.files is not None and p.bins is not None
    for line in out.splitlines():
        f = line.split("\t")
        with contextlib.suppress(ValueError, IndexError):
            if f[0] == "id":
                p.uid, p.user = int(f[1]), f[2]
            elif f[0] == "root":
                p.root = f[1]
            elif f[0] == "app":
                p.app_exists, p.app_real = f[1] == "1", f[2]
            elif f[0] == "target":
                p.target_real = f[1]
            elif f[0] == "dir":
                p.dirs.append((f[1], f[2], f[3] == "1"))
            elif f[0] == "df":
                p.free = int(f[1]) * 1024
                p.block = int(f[2]) or 4096
            elif f[0] == "tools":
                p.rsync, p.sha256sum = bool(f[1]), bool(f[2])
            elif f[0] == "owner":
                uid, gid = f[1].split()
                p.owner, p.umask = (int(uid), int(gid)), int(f[2], 8)
            elif f[0] == "file":
                size, uid, gid, mode = f[2].split()
                p.files[f[1]] = _File(int(size), f[3] == "1", f[4], f[5], int(uid), int(gid), int(mode, 8))
            elif f[0] == "bin":
                p.bins.append((f[1], int(f[2])))
    return p


def _within(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root.rstrip("/") + "/")


def _device_path(root: str, device_path: str) -> str:
    """Where a path of the device is on the remote (``root``: / but in tests), normalised."""
    app = posixpath.join(root, str(APP_DATA))
    p = device_path if device_path.startswith("/") else posixpath.join("/", str(APP_DATA), device_path)
    return posixpath.normpath(posixpath.join(root, p.lstrip("/"))) if device_path else app


@dataclass
class _Copy:
    src: Path
    dest: str
    size: int
    digest: str
    old_size: int


def deploy_remote(run_dir: Path, target: Target, progress: Callable[[str, int, int], None] | None = None,
                  prune: bool = False, restart: str | None = None) -> DeployReport:
    """Deploy a validated run's pack over ssh onto the synth at ``target``; ``prune``: then remove
    the unused pads; ``restart``: then run this command there (e.g. :data:`DEFAULT_RESTART`)."""
    run_dir = Path(run_dir)
    settings_file, pads = run_dir / "settings.json", run_dir / "pads"
    require_validated(run_dir)
    settings_bytes, settings = _read_settings(settings_file, pads)
    want = refuse_errors(run_dir, settings)
    local = [(f, *checked_pad(f, want, settings, run_dir)) for f in sorted(pads.glob("*.bin")) if f.is_file()]
    settings_digest = hashlib.sha256(settings_bytes).hexdigest()

    root = posixpath.normpath("/" + (os.environ.get("ONSS_REMOTE_ROOT") or "/").lstrip("/"))  # tests only
    app = posixpath.join(root, str(APP_DATA))
    data_dir = (settings.get("nsynth") or {}).get("dataDirectory") or ""
    target_dir = _device_path(root, data_dir)
    if not _within(target_dir, root):
        raise DeployError(f"{target}: nsynth.dataDirectory {data_dir!r} in {settings_file} leads to {target_dir}, "
                          "outside the device: nothing was copied. Use a folder on the device, such as /home/pi/pads.")
    settings_dest, local_dest = posixpath.join(app, "settings.json"), posixpath.join(app, "localSettings.json")
    part = lambda dest: posixpath.join(posixpath.dirname(dest), f".{posixpath.basename(dest)}.part")  # noqa: E731

    with _connected(target) as ssh:
        args = [settings_dest, "*", local_dest, "*"]
        for f, size, _ in local:
            dest = posixpath.join(target_dir, f.name)
            args += [dest, str(size), part(dest), "-1"]
        proc = ssh.sh(_PROBE, root, app, target_dir, *args)
        if proc.returncode != 0:
            raise DeployError(f"{target}: cannot inspect the synth ({_last(proc.stderr)}). Check that "
                              f"{target.ssh_hint()} works and its user can read {app}.")
        probe = _parse_probe(proc.stdout.decode(errors="replace"))
        assert probe.files is not None and probe.dirs is not None and probe.bins is not None
        if not probe.app_exists:
            raise DeployError(f"{target}: no Open NSynth Super app at {app}. Is this the synth (or its root "
                              "file system)? Nothing was copied.")
        if not probe.sha256sum:
            raise DeployError(f"{target}: no sha256sum on the synth, so copies cannot be verified; install "
                              "coreutils there and deploy again. Nothing was copied.")
        for what, real in (("the app's folder", probe.app_real), (f"nsynth.dataDirectory {data_dir!r}",
                                                                   probe.target_real)):
            if not _within(real, probe.root):
                raise DeployError(f"{target}: {what} leads to {real} on the synth, outside {probe.root}; deploy does "
                                  "not write through it and nothing was copied. Point it at a folder on the device.")

        plan: list[_Copy] = []
        skipped: list[str] = []
        to_fix: list[str] = []  # pads held byte for byte, owned or moded wrong: only chown/chmod
        stale = 0
        for f, size, digest in local:
            dest = posixpath.join(target_dir, f.name)
            old = probe.files.get(dest)
            if (p := probe.files.get(part(dest))) is not None:
                stale += p.size
            if old is not None and old.sha == digest:
                action = kept_pad(old.uid, old.gid, old.mode, probe.owner, probe.uid)
                if action != "replace":  # (replace: not the ssh user's to chown, so a copy of its own goes there)
                    skipped.append(f.name)
                    if action == "fix":
                        to_fix.append(dest)
                    continue
            plan.append(_Copy(f, dest, size, digest, old.size if old else 0))
        olds: list[tuple[str, _File]] = []
        old_settings = probe.files.get(settings_dest)
        write_settings = not (old_settings is not None and old_settings.sha == settings_digest)
        if old_settings is not None and write_settings:
            olds.append((settings_dest, old_settings))
        if (ls := probe.files.get(local_dest)) is not None:
            olds.append((local_dest, ls))

        corners = [[inst["name"] for inst in c["instruments"]] for c in settings["corners"]]
        keep = {n.casefold() for n in {pad_filename(c) for c in itertools.product(*corners)} | {f.name for f, *_ in
                                                                                                  local}}
        unused = sorted((n, s) for n, s in probe.bins if n.casefold() not in keep)
        report = DeployReport(PurePosixPath(settings_dest), PurePosixPath(target_dir), skipped=skipped,  # type: ignore[arg-type]
                              unused=unused, host=str(target),
                              pad_owner=(*probe.owner, pad_mode(probe.umask)) if probe.owner else None)
        if not plan and not olds and not write_settings and not to_fix:
            report.unchanged = True
        if not (report.unchanged and not (prune and unused)):
            _check_and_write(ssh, target, probe, report, plan, olds, write_settings, settings_bytes, settings_digest,
                             stale, part, progress)
        if to_fix:
            proc = ssh.sh(_FIX, target_dir, *to_fix)
            if proc.returncode != 0:
                raise DeployError(f"{target}: cannot set the owner and mode of pads in {target_dir} on the synth "
                                  f"({_last(proc.stderr)}); their bytes are unchanged. Fix them there (e.g. sudo "
                                  f"chown pi: {target_dir}/*.bin; chmod a+r {target_dir}/*.bin) or deploy as root.")
            report.fixed = [posixpath.basename(d) for d in to_fix]
        if prune and unused:
            proc = ssh.sh(_PRUNE, target_dir, *(n for n, _ in unused))
            report.removed = proc.stdout.decode(errors="replace").split()
            if proc.returncode != 0:
                raise DeployError(f"{target}: the new pack is in place, but removing unused pads in {target_dir} "
                                  f"failed ({_last(proc.stderr)}); removed: {', '.join(report.removed) or 'none'}. "
                                  "Check that user's permissions there and deploy again with --prune.")
        if restart:
            proc = ssh.run(restart)
            if proc.returncode != 0:
                raise DeployError(f"{target}: the pack is in place, but restarting the app failed "
                                  f"({_last(proc.stderr or proc.stdout)}) running: {restart}. Let the ssh user run "
                                  "it without a password (sudoers: pi ALL=(root) NOPASSWD: /bin/systemctl restart "
                                  "open-nsynth), pass --restart-command, or restart the synth by hand.")
            report.restarted = True
    return report


def _check_and_write(ssh: _Ssh, target: Target, probe: _Probe, report: DeployReport, plan: list[_Copy],
                     olds: list[tuple[str, _File]], write_settings: bool, settings_bytes: bytes, digest: str,
                     stale: int, part: Callable[[str], str], progress: Callable[[str, int, int], None] | None) -> None:
    assert probe.dirs is not None
    target_dir, settings_dest = str(report.pads_dir), str(report.settings)
    # -- writable, and the space the copy really needs ------------------------------------------
    for folder, existing, ok in probe.dirs:
        if not ok and (folder == target_dir or not report.unchanged):
            raise DeployError(f"{target}: user {probe.user} cannot write {existing} on the synth (permission "
                              f"denied); nothing was changed. Deploy as a user who may (e.g. pi@{target.host}), or "
                              "change that folder's owner or permissions there.")
    # (a pad is renamed over the old one, and takes its folder's owner: the folder being writable is enough)
    replaced = [settings_dest] if write_settings and olds and olds[0][0] == settings_dest else []
    files = probe.files or {}
    for dest in replaced:
        if not files[dest].writable:
            raise DeployError(f"{target}: {dest} on the synth is not writable by user {probe.user}, so deploy "
                              "cannot replace it keeping its owner and mode; nothing was changed. Deploy as its "
                              "owner, or fix its permissions there (e.g. sudo chown pi: FILE).")
    up = lambda n: -(-n // probe.block) * probe.block  # noqa: E731
    need = used = 0
    for c in plan:
        need = max(need, used + up(c.size))
        used += up(c.size) - up(c.old_size)
    used += sum(up(f.size) for _, f in olds)
    if write_settings:
        need = max(need, used + up(len(settings_bytes)))
    free = probe.free + up(stale)  # our .part files of a deploy cut off are removed first
    if need > free:
        big = [c.size for c in plan if c.old_size]
        why = (f" (each pad, up to {size_text(max(big))}, is written in full beside the one it replaces, which "
               "is removed only when the new copy is checked)") if big else ""
        unused = (f" {len(report.unused)} .bin files there that these settings do not use take "
                  f"{size_text(report.unused_bytes)}; delete them to make room (--prune removes them only after a "
                  "deploy that succeeds).") if report.unused else ""
        raise DeployError(f"{target}: not enough space on the synth for {target_dir}: the copy needs "
                          f"{size_text(need)}, it has {size_text(free)} free{why}. Nothing was changed.{unused} Free "
                          "space there (old pads, "
                          f"or the settings.json.bak-* backups in {posixpath.dirname(settings_dest)}).")
    if plan:
        proc = ssh.sh(_MKDIR, target_dir, *(part(c.dest) for c in plan))
        if proc.returncode != 0:
            raise DeployError(f"{target}: cannot create {target_dir} on the synth ({_last(proc.stderr)}); nothing "
                              "was changed. Check that user's permissions there.")
    # -- copy ------------------------------------------------------------------------------------
    for i, c in enumerate(plan):
        _send(ssh, target, probe, c.src, part(c.dest))
        _finish(ssh, target, part(c.dest), c.dest, c.digest, c.src.name, pad=True)
        report.copied.append(c.src.name)
        if progress:
            progress(c.src.name, i + 1, len(plan))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    for prev, f in olds:
        proc = ssh.sh(_BACKUP, prev, stamp, f.sha)
        if proc.returncode != 0:
            raise DeployError(f"{target}: cannot back up {prev} on the synth ({_last(proc.stderr)}); it is unchanged "
                              f"and no partial backup was left. Free space or fix permissions in "
                              f"{posixpath.dirname(prev)}, then deploy again.")
        report.backups.append(PurePosixPath(proc.stdout.decode(errors="replace").strip()))  # type: ignore[arg-type]
    if write_settings:
        proc = ssh.sh('cat > "$1"', part(settings_dest), data=settings_bytes)
        if proc.returncode != 0:
            ssh.sh('rm -f -- "$1"', part(settings_dest))
            raise DeployError(f"{target}: cannot write {settings_dest} on the synth ({_last(proc.stderr)}); the old "
                              "one is unchanged. Free space or fix permissions there, then deploy again.")
        _finish(ssh, target, part(settings_dest), settings_dest, digest, "settings.json")
        report.settings_written = True
    local = posixpath.join(posixpath.dirname(settings_dest), "localSettings.json")
    if any(prev == local for prev, _ in olds):
        proc = ssh.sh('rm -f -- "$1"', local)
        if proc.returncode != 0:
            raise DeployError(f"{target}: the new settings.json is in place, but {local} (backed up) overrides it "
                              f"and cannot be removed ({_last(proc.stderr)}). Remove it there by hand.")


def _send(ssh: _Ssh, target: Target, probe: _Probe, src: Path, dest: str) -> None:
    """Copy ``src`` to ``dest`` on the synth: rsync where both ends have it, else the bytes through
    ssh into ``cat``. Either way the remote path reaches no shell unquoted (a data folder with a
    space: rsync before 3.2.4 split it without --protect-args, and scp's old protocol always does)."""
    if probe.rsync and shutil.which("rsync"):
        cmd = ["rsync", "--whole-file", "--protect-args", "-e", shlex.join([*ssh.ssh, "-o", "ControlMaster=no"]),
               "--", str(src), f"{target.dest}:{dest}"]
    else:
        cmd = [*ssh.ssh, "-o", "ControlMaster=no", target.dest, shlex.join(["sh", "-c", 'cat > "$1"', "sh", dest])]
    try:
        with open(src, "rb") as data:
            proc = subprocess.run(cmd, stdin=data, capture_output=True, timeout=COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        ssh.sh('rm -f -- "$1"', dest)
        raise DeployError(f"{target}: copying {src.name} failed ({exc}); nothing partial was left. Check the "
                          "connection and deploy again.") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")
        with contextlib.suppress(DeployError):
            ssh.sh('rm -f -- "$1"', dest)
        if "No space left" in err or "Disk quota" in err:
            raise DeployError(f"{target}: the synth's disk filled up while copying {src.name}; the old one is "
                              "unchanged and nothing partial was left. Free space there and deploy again.")
        raise DeployError(f"{target}: copying {src.name} to {dest} failed ({_last(err)}); the old one is unchanged "
                          "and nothing partial was left. Check the connection and deploy again.")


def _finish(ssh: _Ssh, target: Target, part: str, dest: str, digest: str, name: str, pad: bool = False) -> None:
    proc = ssh.sh(_FINISH, part, dest, digest, "pad" if pad else "like")
    if proc.returncode == 3:
        raise DeployError(f"{target}: {dest}: the copy read back on the synth differs from {name}; its card may be "
                          "failing. The old file is unchanged and nothing partial was left. Try again or use "
                          "another card.")
    if proc.returncode != 0:
        raise DeployError(f"{target}: cannot put {dest} in place on the synth ({_last(proc.stderr)}); the old one "
                          "is unchanged. Check the permissions and free space there, then deploy again.")

