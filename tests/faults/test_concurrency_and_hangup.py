"""Two runners on one run folder; a detached run that loses its terminal."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from onss_tui.device.settings import validate_pack
from onss_tui.pipeline.demo import make_demo
from tests.helpers import digests

pytestmark = pytest.mark.slow


def test_a_second_concurrent_run_refuses_and_nothing_is_corrupted(tmp_path):
    recipe = make_demo(tmp_path)
    first = subprocess.Popen([sys.executable, "-m", "onss_tui", "run", str(recipe), "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in first.stdout:  # wait until the first one holds the folder
        if '"run_start"' in line:
            break
    second = subprocess.run([sys.executable, "-m", "onss_tui", "run", str(recipe)], capture_output=True, text=True)
    assert second.returncode == 2
    assert "another onss run (pid" in second.stderr and "is working on this folder" in second.stderr
    assert "Traceback" not in second.stderr
    first.stdout.read()
    assert first.wait(timeout=300) == 0
    run = tmp_path / "run"
    assert validate_pack(run / "settings.json", run / "pads") == []


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_detached_run_survives_the_terminal_hanging_up(tmp_path):
    recipe = make_demo(tmp_path)
    onss = Path(sys.executable).with_name("onss")
    sock = ["tmux", "-L", f"onss-hup-{os.getpid()}"]
    subprocess.run(sock + ["new-session", "-d", "-s", "hup", "-c", str(tmp_path),
                           f"{onss} run {recipe} --detach; sleep 60"], check=True)
    run = tmp_path / "run"
    for _ in range(200):  # the supervisor has started working
        if (run / "state.json").is_file():
            break
        time.sleep(0.05)
    subprocess.run(sock + ["kill-server"])  # the terminal goes away: SIGHUP to its processes
    state = {}
    for _ in range(1200):
        state = json.loads((run / "state.json").read_text())
        if state.get("status") in ("done", "failed"):
            break
        time.sleep(0.1)
    assert state.get("status") == "done"
    assert validate_pack(run / "settings.json", run / "pads") == []
    assert len(digests(run / "pads")) == 1
