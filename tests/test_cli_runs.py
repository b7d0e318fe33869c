"""Finding runs from anywhere (onss ls; names for status, attach, stop, audition) and onss audition,
through the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import small_recipe, write_notes


def onss(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onss_tui", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env=dict(os.environ))


def test_after_a_reconnect_runs_are_found_by_name_from_home(tmp_path):
    work, home = tmp_path / "work", tmp_path / "home"
    home.mkdir()
    write_notes(work / "audio", "abcd", [60, 64])
    small_recipe(work, name="birds.yaml")
    r = onss("run", "birds.yaml", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "Hear it:   onss audition" in r.stdout
    ls = onss("ls", cwd=home)  # (an SSH reconnect lands in $HOME)
    assert ls.returncode == 0 and "small" in ls.stdout and "done" in ls.stdout and str(work / "run") in ls.stdout
    assert " 100%  " in ls.stdout  # the whole run's progress, as onss status has it
    rows = json.loads(onss("ls", "--json", cwd=home).stdout)
    assert [(r["name"], r["status"], r["percent"], r["run"]) for r in rows] == [("small", "done", 100.0,
                                                                                   str(work / "run"))]
    status = onss("status", "small", cwd=home)
    assert status.returncode == 0 and "]  done" in status.stdout, status.stderr
    assert "100% of the run" in status.stdout and ", took 0:" in status.stdout  # how long the finished run took
    stop = onss("stop", "small", cwd=home)
    assert stop.returncode == 0 and "no run is active" in stop.stdout
    missing = onss("status", "nosuch", cwd=home)
    assert missing.returncode == 2 and "no run of a recipe named so" in missing.stderr and "small" in missing.stderr
    aud = onss("audition", "small", "-o", str(tmp_path / "hear"), cwd=home)
    assert aud.returncode == 0, aud.stderr
    assert (tmp_path / "hear" / "index.html").is_file() and len(list((tmp_path / "hear").glob("*.wav"))) > 4
    assert "scp -r" in aud.stdout


def test_ls_without_runs_says_how_to_start_one(tmp_path):
    r = onss("ls", cwd=tmp_path)
    assert r.returncode == 0 and "No runs yet" in r.stdout
    unfinished = tmp_path / "run"
    unfinished.mkdir()
    (unfinished / "state.json").write_text('{"status": "running"}')
    r = onss("audition", str(unfinished), cwd=tmp_path)
    assert r.returncode == 2 and "has not finished" in r.stderr


def test_a_run_folder_with_its_audition_in_it_still_resumes(tmp_path):
    write_notes(tmp_path / "audio", "abcd", [60, 64])
    small_recipe(tmp_path)
    assert onss("run", "small.yaml", cwd=tmp_path).returncode == 0
    assert onss("audition", "run", cwd=tmp_path).returncode == 0  # (the default: <run>/audition)
    again = onss("run", "small.yaml", cwd=tmp_path)
    assert again.returncode == 0 and "did not write" not in again.stderr, again.stderr


def test_status_shows_the_whole_run_and_a_stopped_run_says_stopped(tmp_path):
    import time

    write_notes(tmp_path / "audio", "abcd", [60, 64])
    small_recipe(tmp_path, generation={"sample_length": 8192, "batch_size": 2})
    env = dict(os.environ, ONSS_FAULT_SHARD_SECONDS="3")
    p = subprocess.Popen([sys.executable, "-m", "onss_tui", "run", "small.yaml", "--detach"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, text=True)
    p.communicate(timeout=60)
    run = tmp_path / "run"
    deadline = time.monotonic() + 60
    while not (run / "events" / "generate-w0.jsonl").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    live = onss("status", "run", cwd=tmp_path)
    assert "% of the run (" in live.stdout and "shards generated), elapsed " in live.stdout, live.stdout
    doc = json.loads(onss("status", "run", "--json", cwd=tmp_path).stdout)
    assert doc["progress"]["shards"] >= 2 and doc["progress"]["elapsed_s"] > 0
    stop = onss("stop", "run", cwd=tmp_path)
    assert stop.returncode == 0 and "Stopped pid" in stop.stdout
    after = onss("status", "run", cwd=tmp_path)
    assert "]  stopped" in after.stdout, after.stdout
    assert json.loads(onss("ls", "--json", cwd=tmp_path).stdout)[0]["status"] == "stopped"
    done = onss("run", "small.yaml", cwd=tmp_path)  # resumed to the end
    assert done.returncode == 0, done.stderr
    final = onss("status", "run", "--watch", cwd=tmp_path)  # (a finished run: --watch returns at once)
    assert final.returncode == 0 and "100% of the run" in final.stdout and "]  done" in final.stdout


def test_stop_run_marks_a_detached_run_stopped_without_waiting_for_it(tmp_path, monkeypatch):
    """The one stop both `onss stop` and the dashboard use (pipeline.runner.stop_run): the stop
    request is written before the signal, so with no wait at all (a stop longer than any wait) the
    supervisor itself ends the run "stopped", and `onss status` and `onss ls` say so."""
    import time

    from onss_tui.pipeline.rundir import RunDir
    from onss_tui.pipeline.runner import start_detached, stop_run

    write_notes(tmp_path / "audio", "abcd", [60, 64])
    recipe = small_recipe(tmp_path, generation={"sample_length": 8192, "batch_size": 2})
    monkeypatch.setenv("ONSS_FAULT_SHARD_SECONDS", "3")
    run_dir, pid = start_detached(recipe)
    run = RunDir(run_dir)
    deadline = time.monotonic() + 60
    while not (run_dir / "events" / "generate-w0.jsonl").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run.locked_by() == pid and run.status_now() == "running"
    assert stop_run(run_dir, wait=0) == pid  # returns at once: marks nothing itself
    assert run.stop_requested()
    while run.locked_by() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert run.locked_by() is None
    assert run.state().status == "stopped"  # recorded by the supervisor, from the request
    events = [e["event"] for e in run.events(streams=("supervisor",))]
    assert events[-1] == "run_stopped" and "run_interrupted" not in events, events
    after = onss("status", "run", cwd=tmp_path)
    assert "]  stopped" in after.stdout, after.stdout
    assert json.loads(onss("ls", "--json", cwd=tmp_path).stdout)[0]["status"] == "stopped"
    assert stop_run(run_dir) is None  # nothing runs there now
    done = onss("run", "small.yaml", cwd=tmp_path)  # resumed to the end; the request is over
    assert done.returncode == 0, done.stderr
    assert not run.stop_requested() and run.status_now() == "done"


def test_a_supervisor_killed_after_a_stop_request_still_says_stopped(tmp_path):
    """A supervisor that dies before it can record its end (SIGKILL after the stop request): the
    readers take the request, so it says stopped, not interrupted."""
    import signal
    import time

    from onss_tui.pipeline.rundir import RunDir

    write_notes(tmp_path / "audio", "abcd", [60, 64])
    small_recipe(tmp_path, generation={"sample_length": 8192, "batch_size": 2})
    env = dict(os.environ, ONSS_FAULT_SHARD_SECONDS="3")
    p = subprocess.Popen([sys.executable, "-m", "onss_tui", "run", "small.yaml"], cwd=tmp_path, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    run = RunDir(tmp_path / "run")
    deadline = time.monotonic() + 60
    while not (run.path / "events" / "generate-w0.jsonl").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    run.request_stop(p.pid)  # (what stop_run writes first)
    os.killpg(p.pid, signal.SIGKILL)  # the whole group: the supervisor and its workers, at once
    p.wait(30)
    while run.locked_by() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert run.state().status == "running" and run.status_now() == "stopped"
    assert "]  stopped" in onss("status", "run", cwd=tmp_path).stdout
