"""Redeploying onto a card (issue 17): backups are never overwritten, a card that already holds the
pack is left untouched, pads of an earlier pack are listed and removed only with --prune, and what
deploy writes as root onto a card owned by uid 1000 stays that user's.

Every test uses real files: a finished run of the small recipe (two pads) and a tmp folder laid out
like the card's root file system."""

from __future__ import annotations

import builtins
import json
import os
import shutil
import subprocess
from collections import namedtuple
from datetime import UTC, datetime
from pathlib import Path

import pytest

from onss_tui.cli import main
from onss_tui.device import deploy as deploy_mod
from onss_tui.device.deploy import APP_DATA, DeployError, deploy
from onss_tui.device.pads import pad_size
from onss_tui.pipeline.runner import Runner
from tests.helpers import small_recipe, write_notes

PAD = pad_size(3, 2)  # small_recipe: resolution 3, pitches [60, 64]
PADS = ["a_b_c_d.bin", "e_b_c_d.bin"]
OLD_SETTINGS = b'{"old": true}'
USER = (1000, 1000)  # the card's user (pi)
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
def card(tmp_path) -> Path:
    root = tmp_path / "card"
    (root / APP_DATA).mkdir(parents=True)
    (root / APP_DATA / "settings.json").write_bytes(OLD_SETTINGS)
    return root


def app(card: Path) -> Path:
    return card / APP_DATA


def backups(card: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(app(card).glob("*.bak-*"))}


def snapshot(card: Path) -> dict[str, tuple]:
    """Every entry on the card, folders included: what any write, rename or new file would change."""
    out = {}
    for p in [card, *sorted(card.rglob("*"))]:
        st = os.lstat(p)
        out[str(p.relative_to(card))] = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_mode,
                                         st.st_uid, st.st_gid)
    return out


def run_cli(capsys, *argv: str) -> str:
    assert main(["deploy", *argv]) == 0
    return capsys.readouterr().out


# -- 1. backups --------------------------------------------------------------------------------


def test_two_deploys_within_a_second_keep_both_backups(finished, card):
    """The old stamp had whole seconds: the second deploy's backup replaced the first, and the
    original settings.json was lost. Now each backup has a name of its own."""
    deploy(finished, card)
    (app(card) / "settings.json").write_bytes(b'{"edited": true}')  # edited on the device meanwhile
    deploy(finished, card)  # within the same second
    kept = backups(card)
    assert sorted(kept.values()) == sorted([OLD_SETTINGS, b'{"edited": true}']), kept
    assert all(n.startswith("settings.json.bak-") and n.endswith("Z") for n in kept), kept


def test_backup_names_never_clash_even_in_one_microsecond(finished, card, monkeypatch):
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)

    monkeypatch.setattr(deploy_mod, "datetime", Frozen)
    stamp = "settings.json.bak-20240501T120000.123456Z"
    taken = app(card) / stamp
    taken.write_bytes(b"someone's file")  # already there: never written over
    dangling = app(card) / f"{stamp}-1"
    dangling.symlink_to(card.parent / "outside")  # a link: never written through
    deploy(finished, card)
    (app(card) / "settings.json").write_bytes(b'{"second": true}')
    deploy(finished, card)
    assert taken.read_bytes() == b"someone's file"
    assert dangling.is_symlink() and not (card.parent / "outside").exists()
    assert (app(card) / f"{stamp}-2").read_bytes() == OLD_SETTINGS
    assert (app(card) / f"{stamp}-3").read_bytes() == b'{"second": true}'


def test_failed_backup_leaves_nothing_partial_and_the_settings_unchanged(finished, card, monkeypatch):
    real_open = builtins.open

    def failing(path, mode="r", *args, **kwargs):
        if ".bak-" in str(path) and "x" in mode:
            raise OSError(28, "No space left on device", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(deploy_mod, "open", failing, raising=False)
    with pytest.raises(DeployError, match="card is full.*settings.json is unchanged and no partial backup"):
        deploy(finished, card)
    assert (app(card) / "settings.json").read_bytes() == OLD_SETTINGS
    assert backups(card) == {}


# -- 2. nothing written when the card already has the pack ----------------------------------------


def test_redeploying_the_same_pack_writes_nothing(finished, card, capsys, monkeypatch):
    out = run_cli(capsys, str(finished), "--to", str(card))
    assert "2 copied" in out and "Settings written" in out
    before, kept = snapshot(card), backups(card)
    assert len(kept) == 1

    real_open = builtins.open

    def read_only(path, mode="r", *args, **kwargs):
        assert not set(mode) & set("wxa+"), f"opened {path} for writing ({mode})"
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(deploy_mod, "open", read_only, raising=False)
    out = run_cli(capsys, str(finished), "--to", str(card))
    assert "the card already has this pack: nothing written" in out.lower(), out
    assert "copied" not in out and "Backed up" not in out
    assert snapshot(card) == before  # no file, backup, mtime, owner or mode changed
    assert backups(card) == kept
    report = deploy(finished, card)
    assert report.unchanged and report.copied == [] and sorted(report.skipped) == PADS
    assert not report.settings_written and report.backups == []


def test_read_only_card_that_has_the_pack(finished, card, tmp_path):
    """Nothing to write, so a card mounted read-only is fine (a real read-only bind mount)."""
    deploy(finished, card)
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a bind mount needs root; test_redeploying_the_same_pack_writes_nothing covers the logic")
    r = subprocess.run(["mount", "--bind", str(card), str(ro)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"mount --bind is not allowed here ({r.stderr.strip()})")
    try:
        r = subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot remount the bind mount read-only ({r.stderr.strip()})")
        assert deploy(finished, ro).unchanged
        (card / "home/pi/pads" / PADS[0]).write_bytes(b"\x01" * PAD)  # now one differs: refused, cleanly
        with pytest.raises(DeployError, match="mounted read-only; nothing was changed"):
            deploy(finished, ro)
    finally:
        if subprocess.run(["umount", str(ro)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(ro)], capture_output=True)


def test_same_settings_new_pad_copies_only_the_pad(finished, card):
    deploy(finished, card)
    settings, kept = app(card) / "settings.json", backups(card)
    st = os.stat(settings)
    pad = card / "home/pi/pads" / PADS[1]
    pad.write_bytes(b"\x01" * PAD)  # same size, other bytes
    report = deploy(finished, card)
    assert report.copied == [PADS[1]] and report.skipped == [PADS[0]] and not report.unchanged
    assert pad.read_bytes() == (finished / "pads" / PADS[1]).read_bytes()
    assert not report.settings_written and report.backups == [] and backups(card) == kept
    assert (os.stat(settings).st_ino, os.stat(settings).st_mtime_ns) == (st.st_ino, st.st_mtime_ns)


def test_local_settings_over_the_same_settings_is_backed_up_and_removed(finished, card):
    deploy(finished, card)
    settings = app(card) / "settings.json"
    st = os.stat(settings)
    (app(card) / "localSettings.json").write_bytes(b'{"local": true}')
    report = deploy(finished, card)
    assert not report.unchanged and not report.settings_written
    assert not (app(card) / "localSettings.json").exists()  # it would override ours
    (backup,) = report.backups
    assert backup.name.startswith("localSettings.json.bak-") and backup.read_bytes() == b'{"local": true}'
    assert os.stat(settings).st_mtime_ns == st.st_mtime_ns


# -- 3. pads of an earlier pack -----------------------------------------------------------------


def earlier_pack(card: Path) -> dict[str, int]:
    """Pads of an earlier pack in the data folder, and neighbours that are not to be touched."""
    pads = card / "home/pi/pads"
    pads.mkdir(parents=True, exist_ok=True)
    old = {"x_b_c_d.bin": PAD, "y_z_c_d.bin": PAD // 2}
    for name, size in old.items():
        (pads / name).write_bytes(b"\x02" * size)
    (pads / "notes.txt").write_text("mine")
    (pads / ".hidden.bin").write_bytes(b"h")
    (pads / "folder.bin").mkdir()
    (pads / "sub").mkdir()
    (pads / "sub" / "deep.bin").write_bytes(b"d")
    (card / "home/pi/keep.bin").write_bytes(b"k")  # another folder of the card
    (pads / "link.bin").symlink_to(card / "home/pi/keep.bin")
    (pads / "A_B_C_D.bin").write_bytes(b"c")  # a used name on a FAT card: never removed
    return old


def untouched(card: Path) -> None:
    pads = card / "home/pi/pads"
    assert (pads / "notes.txt").read_text() == "mine"
    assert (pads / ".hidden.bin").is_file() and (pads / "folder.bin").is_dir() and (pads / "A_B_C_D.bin").is_file()
    assert (pads / "sub" / "deep.bin").is_file() and (card / "home/pi/keep.bin").read_bytes() == b"k"
    assert (pads / "link.bin").is_symlink()


def test_unused_pads_are_listed_with_the_fix_and_kept(finished, card, capsys):
    old = earlier_pack(card)
    out = run_cli(capsys, str(finished), "--to", str(card))
    assert f"2 .bin files in {card / 'home/pi/pads'} are not used by these settings (3.2 MB)" in out, out
    for name, size in old.items():
        assert f"  {name} ({size / 1e6:,.1f} MB)" in out
        assert (card / "home/pi/pads" / name).stat().st_size == size
    assert f"Remove them with: onss deploy {finished} --to {card} --prune" in out
    for name in ("notes.txt", ".hidden.bin", "folder.bin", "deep.bin", "link.bin", "A_B_C_D.bin", *PADS):
        assert name not in out.split("not used")[1].split("Remove")[0]
    untouched(card)
    report = deploy(finished, card)
    assert report.unused == sorted(old.items()) and report.unused_bytes == sum(old.values())
    assert report.removed == []


def test_prune_removes_only_the_unused_pads(finished, card, capsys):
    old = earlier_pack(card)
    out = run_cli(capsys, str(finished), "--to", str(card), "--prune")
    assert f"Removed 2 .bin files these settings do not use (3.2 MB) from {card / 'home/pi/pads'}:" in out, out
    assert all(f"  {name}" in out for name in old) and "Remove them with" not in out
    pads = card / "home/pi/pads"
    assert not any((pads / name).exists() for name in old)
    assert all((pads / n).read_bytes() == (finished / "pads" / n).read_bytes() for n in PADS)
    untouched(card)
    # again: nothing left to remove, nothing to write
    out = run_cli(capsys, str(finished), "--to", str(card), "--prune")
    assert "nothing written" in out and "Removed" not in out and "not used" not in out


def test_prune_when_the_card_already_has_the_pack(finished, card, capsys):
    deploy(finished, card)
    kept = backups(card)
    (card / "home/pi/pads" / "x_b_c_d.bin").write_bytes(b"\x02" * 10)
    out = run_cli(capsys, str(finished), "--to", str(card), "--prune")
    assert "nothing written" in out and "Removed 1 .bin files" in out and "x_b_c_d.bin" in out, out
    assert not (card / "home/pi/pads" / "x_b_c_d.bin").exists() and backups(card) == kept


def test_failed_deploy_prunes_nothing(finished, card, monkeypatch):
    old = earlier_pack(card)
    monkeypatch.setattr(deploy_mod.shutil, "disk_usage", lambda p: Usage(10_000_000, 9_000_000, 1_000_000))
    with pytest.raises(DeployError, match=r"not enough space.*2 \.bin files in .* that these settings do not use "
                                          r"take 3\.2 MB \(x_b_c_d\.bin, y_z_c_d\.bin\)"):
        deploy(finished, card, prune=True)
    assert all((card / "home/pi/pads" / name).stat().st_size == size for name, size in old.items())


def test_prune_uses_the_data_directory_of_the_new_settings(finished, tmp_path, card):
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    settings = json.loads((run / "settings.json").read_text())
    settings["nsynth"]["dataDirectory"] = "/home/pi/other"
    (run / "settings.json").write_text(json.dumps(settings, indent=2))
    earlier_pack(card)  # in /home/pi/pads: another folder than the new settings use
    (card / "home/pi/other").mkdir(parents=True)
    (card / "home/pi/other" / "old_b_c_d.bin").write_bytes(b"o")
    report = deploy(run, card, prune=True)
    assert report.pads_dir == card / "home/pi/other" and report.removed == ["old_b_c_d.bin"]
    assert (card / "home/pi/pads" / "x_b_c_d.bin").is_file()


# -- 4. owner and mode: onss as root, a card owned by uid 1000 ----------------------------------


@pytest.fixture
def as_root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: only root may give files to uid 1000 (the pads' owner is tested as root)")
    probe = tmp_path / "probe"
    probe.mkdir(mode=0o700)
    try:
        os.chown(probe, *USER)
        (probe / "x").touch()  # root writes a folder it does not own (CAP_DAC_OVERRIDE)
    except PermissionError as exc:
        pytest.skip(f"root here cannot chown to uid 1000 or write its folders ({exc})")
    mask = os.umask(0o022)
    yield
    os.umask(mask)


def owned(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid, stat_mode(st)


def stat_mode(st: os.stat_result) -> int:
    return st.st_mode & 0o7777


def chown_tree(top: Path, uid: int, gid: int) -> None:
    for p in [top, *top.rglob("*")]:
        os.chown(p, uid, gid, follow_symlinks=False)


def test_root_deploy_to_a_card_of_uid_1000(finished, card, as_root):
    pads = card / "home/pi/pads"
    pads.mkdir(parents=True)
    (pads / PADS[0]).write_bytes(b"\x01" * PAD)  # replaced; PADS[1] is new
    (app(card) / "localSettings.json").write_bytes(b'{"local": true}')
    chown_tree(card / "home", *USER)
    os.chown(pads, 1000, 2000)  # the folder's group too
    os.chown(pads / PADS[0], 1001, 1001)
    os.chmod(pads / PADS[0], 0o600)
    os.chmod(app(card) / "settings.json", 0o640)
    os.chmod(app(card) / "localSettings.json", 0o600)

    report = deploy(finished, card)
    assert report.copied == PADS
    # a pad, replacing one or new: its folder's owner and group, the umask's mode (not the 0600 of
    # the pad it replaces, which the app's user could not read)
    assert owned(pads / PADS[0]) == (1000, 2000, 0o644)
    assert owned(pads / PADS[1]) == (1000, 2000, 0o644)
    assert owned(app(card) / "settings.json") == (1000, 1000, 0o640)  # settings: as the file it replaces
    by_name = {b.name.split(".bak-")[0]: b for b in report.backups}
    assert owned(by_name["settings.json"]) == (1000, 1000, 0o640)
    assert owned(by_name["localSettings.json"]) == (1000, 1000, 0o600)
    assert not list(card.rglob("*.part"))


def read_as(uid: int, gid: int, path: Path) -> subprocess.CompletedProcess:
    """``cat`` of ``path`` by a real process of ``uid``:``gid`` with no other group (the app, user pi).
    It reaches the folder through an fd root opened (pytest's tmp folders above it are root's 0700),
    so only the folder's and the file's own permissions decide."""
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return subprocess.run(["cat", f"/proc/self/fd/{fd}/{path.name}"], pass_fds=[fd], user=uid, group=gid,
                              extra_groups=[], capture_output=True)
    finally:
        os.close(fd)


@pytest.mark.parametrize("same", [False, True], ids=["new-bytes", "same-bytes"])
def test_root_0600_pads_of_an_old_deploy_become_the_card_users(finished, card, as_root, capsys, same):
    """A card whose pads folder uid 1000 owns, holding root:root 0600 pads an older onss (run as root)
    left: after onss deploy every pad is 1000:<folder's group> 0644 and the app's user reads it,
    whether it was replaced (other bytes) or kept (the same bytes: only chown and chmod, the same inode)."""
    pads = card / "home/pi/pads"
    pads.mkdir(parents=True)
    chown_tree(card / "home", *USER)
    os.chown(pads, 1000, 2000)
    for name in PADS:
        (pads / name).write_bytes((finished / "pads" / name).read_bytes() if same else b"\x01" * PAD)
        os.chown(pads / name, 0, 0)
        os.chmod(pads / name, 0o600)
        assert read_as(1000, 2000, pads / name).returncode != 0  # the old deploy's pad: the app cannot read it
    inodes = {name: os.stat(pads / name).st_ino for name in PADS}

    out = run_cli(capsys, str(finished), "--to", str(card))
    for name in PADS:
        assert owned(pads / name) == (1000, 2000, 0o644), name
        got = read_as(1000, 2000, pads / name)
        assert got.returncode == 0 and got.stdout == (finished / "pads" / name).read_bytes(), got.stderr
    if same:
        assert "0 copied, 2 already there" in out, out
        assert "Gave 2 pads already there the owner of their folder and a mode it can read (1000:2000, 0644); " \
               "their bytes were not rewritten." in out, out
        assert {name: os.stat(pads / name).st_ino for name in PADS} == inodes  # not rewritten
    else:
        assert "2 copied, 0 already there" in out and "Gave" not in out, out
    before = snapshot(card)  # all right now: the next deploy changes nothing at all
    out = run_cli(capsys, str(finished), "--to", str(card))
    assert "already has this pack: nothing written" in out and snapshot(card) == before, out


def test_root_deploy_creates_folders_and_settings_owned_by_the_card_user(finished, card, as_root):
    """No pads folder and no settings.json yet: what deploy creates belongs to the owner of the
    folder it is created in, all the way down."""
    (app(card) / "settings.json").unlink()
    chown_tree(card / "home", *USER)
    deploy(finished, card)
    assert owned(card / "home/pi/pads")[:2] == USER
    assert all(owned(card / "home/pi/pads" / n) == (*USER, 0o644) for n in PADS)
    assert owned(app(card) / "settings.json") == (*USER, 0o644)
    assert backups(card) == {}
