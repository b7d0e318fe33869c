"""End to end in a real terminal: tmux runs `onss`, keys walk the wizard, capture-pane reads it."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from onss_tui.device.settings import validate_pack
from onss_tui.pipeline.demo import make_demo

pytestmark = [pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
              pytest.mark.xdist_group("tmux")]  # under pytest-xdist: on one worker, in turn
SOCKET = f"onss-test-{os.getpid()}"  # a server of this test process's own


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True).stdout


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", "onss")


def wait_for(text: str, timeout: float = 60) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        shown = screen()
        if text in shown:
            return shown
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared; the screen:\n{screen()}")


def keys(*k: str) -> None:
    tmux("send-keys", "-t", "onss", *k)
    time.sleep(0.4)


def test_wizard_in_tmux(tmp_path):
    make_demo(tmp_path)  # notes in tmp/audio; the wizard's default folder is ./audio
    onss = Path(sys.executable).with_name("onss")
    tmux("kill-server")
    tmux("new-session", "-d", "-s", "onss", "-x", "100", "-y", "40", "-c", str(tmp_path),
         f"TERM=xterm-256color {onss}")
    try:
        wait_for("no GPU")
        coloured = tmux("capture-pane", "-e", "-p", "-t", "onss")
        # TERM=xterm-256color without COLORTERM, as over most SSH sessions: 256-colour codes only
        assert "38;5;" in coloured and "38;2;" not in coloured and "48;2;" not in coloured
        keys("C-n")
        wait_for("instruments: bell (4), pluck (4), saw (4), sine (4)")
        keys("C-n")
        wait_for("Instruments found: bell, pluck, saw, sine")
        keys("C-n")
        wait_for("unique sounds, 1 pad file,")
        keys("C-n")
        wait_for("data folder")  # the settings step: /home/pi/my-pack
        keys("C-n")
        wait_for("name: my-pack")
        keys("C-r")  # saved, checked by the dry run, then started
        shown = wait_for("validate     done", timeout=120)
        assert "my-pack" in shown
        keys("f")
        shown = wait_for("ordering check: OK")
        assert "bell_pluck_saw_sine.bin" in shown
        keys("q")
    finally:
        tmux("kill-server")
    run = tmp_path / "runs" / "my-pack"
    assert (tmp_path / "recipes" / "my-pack.yaml").is_file()
    assert validate_pack(run / "settings.json", run / "pads") == []


@pytest.mark.parametrize("hangup", ["sighup", "ignored"])
def test_terminal_going_away_ends_the_wizard_but_not_the_run(tmp_path, hangup):
    """Closing the terminal (an SSH session dropping) ends the wizard within seconds, whether it
    gets SIGHUP or ignores it (nohup); the run it started is detached and finishes on its own."""
    import os

    make_demo(tmp_path)
    onss = Path(sys.executable).with_name("onss")
    tmux("kill-server")
    tmux("new-session", "-d", "-s", "onss", "-x", "100", "-y", "40", "-c", str(tmp_path),
         ("trap '' HUP; " if hangup == "ignored" else "") + f"exec env TERM=xterm-256color {onss}")
    try:
        wait_for("no GPU")
        pid = int(tmux("display-message", "-p", "-t", "onss", "#{pane_pid}").strip())
        keys("C-n")
        wait_for("instruments: bell (4)")
        keys("C-n")
        keys("C-n")
        wait_for("unique sounds")
        keys("C-n")
        wait_for("data folder")
        keys("C-n")
        wait_for("name: my-pack")
        keys("C-r")
        wait_for("my-pack  [preview]")
        tmux("kill-session", "-t", "onss")  # the terminal goes away
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the wizard outlived its terminal")
    finally:
        tmux("kill-server")
    from onss_tui.pipeline.rundir import RunDir

    run = RunDir(tmp_path / "runs" / "my-pack")
    end = time.monotonic() + 120
    while run.state().status not in ("done", "failed") and time.monotonic() < end:
        time.sleep(0.5)
    assert run.state().status == "done"
    assert validate_pack(run.path / "settings.json", run.path / "pads") == []
