"""`onss deploy` onto a mounted card (a folder laid out like the card's root file system), and --detach."""

import json
import shutil
import subprocess
import sys
import time
from collections import namedtuple

import pytest

from onss_tui.cli import main
from onss_tui.device import deploy as deploy_mod
from onss_tui.device.deploy import APP_DATA, DeployError, deploy
from onss_tui.pipeline.demo import make_demo
from onss_tui.pipeline.runner import Runner


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    Runner.from_file(make_demo(out), device="cpu").execute()
    return out / "run"


@pytest.fixture
def card(tmp_path):
    data = tmp_path / "card" / APP_DATA
    data.mkdir(parents=True)
    (data / "settings.json").write_text('{"old": true}')
    (data / "localSettings.json").write_text('{"local": true}')
    return tmp_path / "card"


def test_deploy_copies_verifies_and_backs_up(finished_run, card, capsys):
    assert main(["deploy", str(finished_run), "--to", str(card)]) == 0
    pads = card / "home/pi/demo"
    (src,) = (finished_run / "pads").glob("*.bin")
    assert (pads / src.name).read_bytes() == src.read_bytes()
    app = card / APP_DATA
    assert json.loads((app / "settings.json").read_text()) == json.loads((finished_run / "settings.json").read_text())
    backups = sorted(p.name for p in app.glob("*.bak-*"))
    assert len(backups) == 2 and not (app / "localSettings.json").exists()  # it would override ours
    assert not list(pads.glob(".*"))
    assert "1 copied" in capsys.readouterr().out
    # again: the card has it all, so nothing is written (no copy, no new backup)
    assert main(["deploy", str(finished_run), "--to", str(card)]) == 0
    assert "the card already has this pack: nothing written" in capsys.readouterr().out.lower()
    assert sorted(p.name for p in app.glob("*.bak-*")) == backups


def test_deploy_checks_space_first(finished_run, card, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(deploy_mod.shutil, "disk_usage", lambda p: usage(10, 10, 1000))
    with pytest.raises(DeployError, match="needs .* MB free|needs .* bytes free"):
        deploy(finished_run, card)
    assert not list((card / "home/pi/demo").glob("*"))
    assert json.loads((card / APP_DATA / "settings.json").read_text()) == {"old": True}  # untouched


def test_deploy_refuses_unvalidated_runs_and_wrong_cards(finished_run, card, tmp_path, capsys):
    assert main(["deploy", str(finished_run), "--to", str(tmp_path / "nocard")]) == 2
    assert "Mount the SD card" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["deploy", str(finished_run), "--to", str(empty)]) == 2
    assert "no Open NSynth Super app" in capsys.readouterr().err
    half = tmp_path / "half"
    shutil.copytree(finished_run, half)
    state = json.loads((half / "state.json").read_text())
    state["stages"]["validate"]["status"] = "failed"
    (half / "state.json").write_text(json.dumps(state))
    assert main(["deploy", str(half), "--to", str(card)]) == 2
    assert "has not passed validation" in capsys.readouterr().err


def test_detached_run_survives_and_reports(tmp_path):
    recipe = make_demo(tmp_path)
    r = subprocess.run([sys.executable, "-m", "onss_tui", "run", str(recipe), "--detach"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "Started in the background" in r.stdout
    run = tmp_path / "run"
    for _ in range(240):
        state = json.loads((run / "state.json").read_text()) if (run / "state.json").is_file() else {}
        if state.get("status") in ("done", "failed"):
            break
        time.sleep(0.5)
    assert state.get("status") == "done"
    log = (run / "logs" / "supervisor.log").read_text()
    assert '"event": "run_done"' in log
    status = subprocess.run([sys.executable, "-m", "onss_tui", "status", str(run)], capture_output=True, text=True)
    assert "validate     done" in status.stdout
