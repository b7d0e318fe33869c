"""Faults in `onss deploy`: a pad damaged after validation, a dataDirectory or a link that leaves the
card, a nearly full card (a real tmpfs where mounting is allowed, and the same logic with the
free-space probe lying and with writes failing part way), a read-only or unwritable card. Each ends
in one message naming the file and the fix, exit status 2, no traceback, no partial file, and the
old pads and settings on the card intact. What deploy writes on the card takes the owner and mode
of the file it replaces; new files follow the umask."""

from __future__ import annotations

import builtins
import errno
import hashlib
import os
import re
import resource
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from onss_tui.cli import main
from onss_tui.device import deploy as deploy_mod
from onss_tui.device.deploy import APP_DATA, DeployError, deploy
from onss_tui.device.pads import pad_size
from onss_tui.pipeline.runner import Runner
from tests.helpers import small_recipe, write_notes

PAD = pad_size(3, 2)  # small_recipe: resolution 3, pitches [60, 64]: 2,160,000 bytes
PADS = ["a_b_c_d.bin", "e_b_c_d.bin"]  # two pads: 4.3 MB in all
OLD_SETTINGS = '{"old": true}'
Usage = namedtuple("Usage", "total used free")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("finished")
    write_notes(folder / "audio", ["a", "b", "c", "d", "e"], [60, 64])
    recipe = small_recipe(folder, corners={"top_left": ["a", "e"], "top_right": ["b"], "bottom_left": ["c"],
                                           "bottom_right": ["d"]})
    Runner.from_file(recipe, device="cpu").execute()
    run = folder / "run"
    assert sorted(p.name for p in (run / "pads").glob("*.bin")) == PADS
    return run


@pytest.fixture
def run(finished, tmp_path) -> Path:
    """A copy of the finished, validated run, free to damage."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def make_card(root: Path) -> Path:
    (root / APP_DATA).mkdir(parents=True)
    (root / APP_DATA / "settings.json").write_text(OLD_SETTINGS)
    return root


def old_pack(card: Path) -> Path:
    """The card holds an older pack: both pads, same size, other content."""
    pads = card / "home/pi/pads"
    pads.mkdir(parents=True, exist_ok=True)
    for name in PADS:
        (pads / name).write_bytes(b"\x01" * PAD)
    return pads


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


OLD_PAD = hashlib.sha256(b"\x01" * PAD).hexdigest()


def onss_deploy(run: Path, card: Path, limit_bytes: int | None = None) -> subprocess.CompletedProcess:
    def preexec():
        if limit_bytes:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "onss_tui", "deploy", str(run), "--to", str(card)],
                          capture_output=True, text=True, timeout=120, preexec_fn=preexec)


def refused(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    for needle in needles:
        assert needle in r.stderr, (needle, r.stderr)
    return r.stderr


def nothing_partial(card: Path) -> None:
    partial = [p for p in card.rglob("*") if p.name.endswith(".part")]
    assert not partial, partial


def tmpfs_card(mounts, folder: Path, size: str = "6m") -> Path:
    folder.mkdir(parents=True)
    mounts("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    return make_card(folder)


# -- 1. what is copied is checked at copy time ----------------------------------------------------


def test_pad_truncated_after_validation_is_refused(run, tmp_path):
    card = make_card(tmp_path / "card")
    pad = run / "pads" / PADS[1]
    os.truncate(pad, PAD - 2)  # the run's state still says "validated"
    err = refused(onss_deploy(run, card), str(pad), f"{PAD - 2:,} bytes", f"{PAD:,}", "SIGBUS", "onss validate")
    assert "nothing was copied" in err
    assert not (card / "home/pi/pads").exists() or not list((card / "home/pi/pads").iterdir())
    assert (card / APP_DATA / "settings.json").read_text() == OLD_SETTINGS


def test_run_settings_not_json_is_refused(run, tmp_path):
    card = make_card(tmp_path / "card")
    (run / "settings.json").write_text('{"nsynth": {')
    refused(onss_deploy(run, card), str(run / "settings.json"), "not valid JSON")
    assert (card / APP_DATA / "settings.json").read_text() == OLD_SETTINGS


def test_write_faults_keep_the_old_pad(run, tmp_path, monkeypatch, capsys):
    """The write fails part way (ENOSPC after 1 MB), then the copy is corrupted on its way to the
    card: a clean message each time, the old pad intact, no .part left."""
    card = make_card(tmp_path / "card")
    pads = old_pack(card)

    def full_after(limit: int | None, flip: bool = False):
        class Faulty:
            def __init__(self, f):
                self.f, self.left = f, limit

            def write(self, b):
                if flip:
                    b = bytes([b[0] ^ 0xFF]) + bytes(b[1:])
                if self.left is not None and len(b) > self.left:
                    self.f.write(b[: self.left])
                    self.left = 0
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.f.name)
                if self.left is not None:
                    self.left -= len(b)
                return self.f.write(b)

            def __getattr__(self, name):
                return getattr(self.f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

        def fake_open(path, mode="r", *args, **kwargs):
            f = builtins.open(path, mode, *args, **kwargs)
            if str(path).endswith(".part") and ("w" in mode or "x" in mode):
                return Faulty(f)
            return f

        return fake_open

    monkeypatch.setattr(deploy_mod, "open", full_after(1 << 20), raising=False)
    assert main(["deploy", str(run), "--to", str(card)]) == 2
    err = capsys.readouterr().err
    assert "card is full" in err and PADS[0] in err and "unchanged" in err and "bigger card" in err, err
    assert [sha(pads / n) for n in PADS] == [OLD_PAD, OLD_PAD]
    nothing_partial(card)
    assert (card / APP_DATA / "settings.json").read_text() == OLD_SETTINGS

    monkeypatch.setattr(deploy_mod, "open", full_after(None, flip=True), raising=False)
    with pytest.raises(DeployError, match="differs from .*card may be failing"):
        deploy(run, card)
    assert [sha(pads / n) for n in PADS] == [OLD_PAD, OLD_PAD]
    nothing_partial(card)

    monkeypatch.setattr(deploy_mod, "open", builtins.open, raising=False)
    report = deploy(run, card)
    assert report.copied == PADS
    assert [sha(pads / n) for n in PADS] == [sha(run / "pads" / n) for n in PADS]


def test_file_size_limit_part_way_keeps_the_old_pad(run, tmp_path):
    card = make_card(tmp_path / "card")
    pads = old_pack(card)
    refused(onss_deploy(run, card, limit_bytes=1 << 20), "ulimit -f", PADS[0], "unchanged")
    assert [sha(pads / n) for n in PADS] == [OLD_PAD, OLD_PAD]
    nothing_partial(card)
    assert (card / APP_DATA / "settings.json").read_text() == OLD_SETTINGS


# -- 2. nothing is written outside the card -------------------------------------------------------


@pytest.mark.parametrize("data_dir", ["/../../../../escaped", "../" * 10 + "escaped"])
def test_data_directory_leaving_the_card_is_refused(run, tmp_path, data_dir):
    card = make_card(tmp_path / "a/b/c/card")  # where escaped lands: tmp_path/escaped, tmp_path/a/b/c/escaped
    settings = (run / "settings.json").read_text().replace('"/home/pi/pads"', f'"{data_dir}"')
    assert data_dir in settings
    (run / "settings.json").write_text(settings)
    refused(onss_deploy(run, card), "dataDirectory", "outside the card", "nothing was copied")
    assert not list(tmp_path.rglob("escaped")) and not list(tmp_path.rglob("*.part"))
    assert (card / APP_DATA / "settings.json").read_text() == OLD_SETTINGS


def test_symlink_on_the_card_leading_out_is_refused(run, tmp_path):
    card = make_card(tmp_path / "card")
    outside = tmp_path / "host-folder"
    outside.mkdir()
    (card / "home/pi/pads").symlink_to(outside)  # absolute: on the host it is the host's folder
    refused(onss_deploy(run, card), str(card / "home/pi/pads"), "symbolic link", "outside the card")
    assert not list(outside.iterdir())
    assert (card / APP_DATA / "settings.json").read_text() == OLD_SETTINGS
    # a link that stays on the card is followed
    (card / "home/pi/pads").unlink()
    (card / "home/pi/real").mkdir()
    (card / "home/pi/pads").symlink_to("real")
    assert onss_deploy(run, card).returncode == 0
    assert sorted(p.name for p in (card / "home/pi/real").iterdir()) == PADS


# -- 3. space ---------------------------------------------------------------------------------


def test_nearly_full_card_redeploy_is_refused_cleanly(run, tmp_path, mounts):
    """A real 8 MB card holding the old pack (4.3 MB), filled to 1 MB free: replacing a 2.2 MB pad
    needs 2.2 MB free, because the new copy is written beside the old one."""
    card = tmp_path / "card"
    tmpfs_card(mounts, card, "8m")
    pads = old_pack(card)
    filler = card / "filler"
    filler.write_bytes(b"\0" * max(0, shutil.disk_usage(card).free - 1_000_000))
    err = refused(onss_deploy(run, card), "not enough space", "bigger card", "Nothing was changed")
    assert re.search(r"needs 2\.\d MB free, the card has 1\.0 MB", err), err
    assert [sha(pads / n) for n in PADS] == [OLD_PAD, OLD_PAD]
    nothing_partial(card)
    assert (card / APP_DATA / "settings.json").read_text() == OLD_SETTINGS
    # the fix the message names works: free 1.3 MB more and deploy again
    filler.unlink()
    filler.write_bytes(b"\0" * max(0, shutil.disk_usage(card).free - 2_300_000))
    r = onss_deploy(run, card)
    assert r.returncode == 0, r.stderr
    assert [sha(pads / n) for n in PADS] == [sha(run / "pads" / n) for n in PADS]
    nothing_partial(card)


def test_full_card_says_how_much_in_mb(run, tmp_path, mounts):
    card = tmp_path / "card"
    tmpfs_card(mounts, card)
    with open(card / "filler", "wb", buffering=0) as f:  # until the card is full
        try:
            while f.write(b"\0" * 4096):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    err = refused(onss_deploy(run, card), "not enough space", "bigger card")
    assert "0.00 GB" not in err and re.search(r"needs 4\.3 MB free, the card has (0\.0 MB|[\d,]+ bytes)", err), err
    nothing_partial(card)


def test_space_probe_counts_the_copy_beside_the_old_pad(run, tmp_path, monkeypatch):
    """The same logic without a mount: the free-space probe reports 1.5 MB; the old same-size pads
    are not 'already there', their replacements need room beside them. 2.3 MB (the largest pad at
    once, not the sum) is enough."""
    card = make_card(tmp_path / "card")
    pads = old_pack(card)
    monkeypatch.setattr(deploy_mod.shutil, "disk_usage", lambda p: Usage(8_000_000, 6_500_000, 1_500_000))
    with pytest.raises(DeployError, match=r"needs 2\.\d MB free, the card has 1\.5 MB.*bigger card"):
        deploy(run, card)
    assert [sha(pads / n) for n in PADS] == [OLD_PAD, OLD_PAD]
    nothing_partial(card)
    monkeypatch.setattr(deploy_mod.shutil, "disk_usage", lambda p: Usage(8_000_000, 5_700_000, 2_300_000))
    assert deploy(run, card).copied == PADS


# -- 4. read-only and unwritable cards ------------------------------------------------------------


@pytest.mark.parametrize("pads_there", [False, True], ids=["new-folder", "old-pack"])
def test_read_only_card(run, tmp_path, mounts, pads_there):
    src = make_card(tmp_path / "src")
    if pads_there:
        old_pack(src)
    card = tmp_path / "card"
    card.mkdir()
    mounts("--bind", str(src), str(card))
    r = subprocess.run(["mount", "-o", "remount,bind,ro", str(card)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount the bind mount read-only ({r.stderr.strip()})")
    refused(onss_deploy(run, card), "read-only", "remount", str(card))
    assert (card / APP_DATA / "settings.json").read_text() == OLD_SETTINGS
    if pads_there:
        assert [sha(card / "home/pi/pads" / n) for n in PADS] == [OLD_PAD, OLD_PAD]


def permissions_enforced(tmp: Path) -> bool:
    probe = tmp / "probe"
    probe.mkdir(mode=0o555)
    try:
        (probe / "x").touch()
        return False
    except PermissionError:
        return True
    finally:
        probe.chmod(0o755)


def test_card_folder_this_user_cannot_write(run, tmp_path):
    if not permissions_enforced(tmp_path):
        pytest.skip("this user (root) ignores folder permissions; test_read_only_card and "
                    "test_permission_denied_part_way cover it (or run without CAP_DAC_OVERRIDE)")
    card = make_card(tmp_path / "card")
    pads = old_pack(card)
    pads.chmod(0o555)
    try:
        refused(onss_deploy(run, card), str(pads), "permission")
        assert [sha(pads / n) for n in PADS] == [OLD_PAD, OLD_PAD]
    finally:
        pads.chmod(0o755)


def test_permission_denied_part_way(run, tmp_path, monkeypatch, capsys):
    """The card refuses the temp file (EACCES, as a FAT card mounted for another user does)."""
    card = make_card(tmp_path / "card")
    pads = old_pack(card)

    def fake_open(path, mode="r", *args, **kwargs):
        if str(path).endswith(".part") and ("w" in mode or "x" in mode):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(deploy_mod, "open", fake_open, raising=False)
    assert main(["deploy", str(run), "--to", str(card)]) == 2
    err = capsys.readouterr().err
    assert "permission denied" in err and PADS[0] in err and "unchanged" in err, err
    assert [sha(pads / n) for n in PADS] == [OLD_PAD, OLD_PAD]
    nothing_partial(card)


# -- 5. owner and mode ----------------------------------------------------------------------------


def test_settings_keep_the_replaced_owner_and_mode_and_pads_take_their_folders(run, tmp_path):
    """settings.json (and its backup) as the file it replaces; a pad, replacing one or new, its
    folder's owner and group and the umask's mode (not the replaced pad's: an older onss as root left
    root-owned 0600 pads the app could not read)."""
    card = make_card(tmp_path / "card")
    pads = card / "home/pi/pads"
    pads.mkdir(parents=True)
    old = pads / PADS[0]  # replaced; PADS[1] is new
    old.write_bytes(b"\x01" * PAD)
    old.chmod(0o604)
    settings = card / APP_DATA / "settings.json"
    settings.chmod(0o640)
    root = os.geteuid() == 0 and not permissions_enforced(tmp_path)  # may give files away and still read them
    if root:
        os.chown(old, 1234, 5678)
        os.chown(pads, 1000, 2000)
        os.chown(settings, 4321, 8765)
    mask = os.umask(0o077)
    try:
        deploy(run, card)
    finally:
        os.umask(mask)
    new_old, new_new, new_settings = os.stat(old), os.stat(pads / PADS[1]), os.stat(settings)
    assert sha(old) == sha(run / "pads" / PADS[0])
    assert oct(new_old.st_mode & 0o7777) == oct(0o600)  # the umask, not the replaced pad's 0604
    assert oct(new_new.st_mode & 0o7777) == oct(0o600)  # new: the umask
    assert oct(new_settings.st_mode & 0o7777) == oct(0o640)
    (backup,) = (card / APP_DATA).glob("settings.json.bak-*")
    assert oct(backup.stat().st_mode & 0o7777) == oct(0o640)
    if root:
        assert (new_old.st_uid, new_old.st_gid) == (1000, 2000)  # the folder's, not the replaced pad's
        assert (new_new.st_uid, new_new.st_gid) == (1000, 2000)
        assert (new_settings.st_uid, new_settings.st_gid) == (4321, 8765)
        assert (backup.stat().st_uid, backup.stat().st_gid) == (4321, 8765)
