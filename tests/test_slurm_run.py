"""A recipe on a real Slurm cluster (ci/slurm/start.sh: two nodes, two fake GPUs each), through the
command line as a user runs it: ``onss run RECIPE --slurm [--wait]``, ``onss status``, ``onss stop``.
Every run's pads and settings.json are compared byte for byte with a local run of the same recipe.
Skipped where Slurm cannot start (tests/slurm.py says why)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import digests, small_recipe, write_notes
from tests.slurm import wait_until

pytestmark = [pytest.mark.xdist_group("slurm"), pytest.mark.slow]

NAMES = ["a", "b", "c", "d", "e"]
CORNERS = {"top_left": ["a"], "top_right": ["b", "e"], "bottom_left": ["c"], "bottom_right": ["d"]}
WAIT_S = 420.0  # a requeued job waits about 2 minutes before it may start again


def make(folder: Path, output: str = "run", **slurm) -> Path:
    write_notes(folder / "audio", NAMES, [60, 64])
    section = {"partition": "debug", "time": "10", "max_tasks": 2, **slurm}
    return small_recipe(folder, name=f"{output}.yaml", corners=CORNERS, output=output, clean={"mode": "mp3"},
                        generation={"sample_length": 8192, "batch_size": 4}, slurm=section)


def onss(slurm, *args: str, env: dict | None = None, timeout: float = WAIT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onss_tui", *args], capture_output=True, text=True,
                          timeout=timeout, env={**slurm.env, **(env or {})})


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The same recipe run on this machine: the pads and settings every Slurm run must match."""
    folder = tmp_path_factory.mktemp("local")
    recipe = make(folder)
    r = subprocess.run([sys.executable, "-m", "onss_tui", "run", str(recipe), "--device", "cpu"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return digests(folder / "run" / "pads"), (folder / "run" / "settings.json").read_bytes()


def queued(slurm, run: Path) -> list[str]:
    """The run's jobs (and array tasks) squeue still lists."""
    record = json.loads((run / "slurm.json").read_text())
    ids = {j for s in record["submissions"] for j in s["jobs"].values()}
    out = slurm.run("squeue", "-h", "-r", "-o", "%F|%i|%T").stdout.split()
    return [line for line in out if line.split("|")[0] in ids]


def events(run: Path, stream: str) -> list[dict]:
    path = run / "events" / f"{stream}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def wait_for(what: str, check, timeout: float = WAIT_S):
    return wait_until(what, check, timeout, every=0.5)


@pytest.fixture(autouse=True)
def no_job_left(slurm):
    """Whatever a failed test left in the queue goes (the next test gets the whole cluster)."""
    yield
    for role in ("head", "generate", "finish"):  # (scancel takes one --name)
        slurm.run("scancel", f"--name=onss-small-{role}", check=False)


def assert_same_pack(run: Path, local) -> None:
    pads, settings = local
    assert digests(run / "pads") == pads
    assert (run / "settings.json").read_bytes() == settings


def test_a_slurm_run_makes_the_pads_of_a_local_run(slurm, tmp_path, local):
    """--slurm --wait: head, a generate array over two tasks, finish; the same bytes as a local run,
    the queue empty and the lease released after; its workers labelled by node; a second
    --slurm submits nothing (the run is done); a third, after a pad was deleted, only the finish job."""
    recipe = make(tmp_path)
    run = tmp_path / "run"
    r = onss(slurm, "run", str(recipe), "--slurm", "--wait")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Submitted to Slurm: head" in r.stdout and "[pack] done" in r.stderr and "Done:" in r.stdout
    assert_same_pack(run, local)
    assert not queued(slurm, run) and not (run / "lease").exists()
    plan = json.loads((run / "plan.json").read_text())
    assert [(e["kind"], e["task"]) for e in plan["executors"]] == [("slurm", 0), ("slurm", 1)]
    starts = [events(run, f"generate-w{w}")[0] for w in (0, 1)]
    assert all(e["node"] in ("n1", "n2") and e["label"].startswith(e["node"]) for e in starts)
    again = onss(slurm, "run", str(recipe), "--slurm")
    assert again.returncode == 0 and "already done; nothing was submitted" in again.stdout
    assert len(json.loads((run / "slurm.json").read_text())["submissions"]) == 1
    status = onss(slurm, "status", str(run))
    assert "]  done" in status.stdout and "no job of this run is queued" in status.stdout
    # a done run is verified as a local rerun would: a pad gone is made again (finish only), the rest kept
    gone = sorted((run / "pads").glob("*.bin"))[0]
    gone.unlink()
    shards = {p.name: p.stat().st_mtime_ns for p in (run / "generate").glob("*.npy")}
    again = onss(slurm, "run", str(recipe), "--slurm", "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"stage pack must be made again (pads/{gone.name} is missing)" in again.stderr
    assert "Submitted to Slurm: finish" in again.stdout and "head" not in again.stdout.split("Submitted")[1]
    assert_same_pack(run, local)
    assert {p.name: p.stat().st_mtime_ns for p in (run / "generate").glob("*.npy")} == shards


def test_stop_right_after_submitting_then_submit_again(slurm, tmp_path, local):
    """onss stop at once: every job cancelled, none left in the queue, the run says stopped; the next
    --slurm submits again and the pads are the same."""
    recipe = make(tmp_path)
    run = tmp_path / "run"
    r = onss(slurm, "run", str(recipe), "--slurm")
    assert r.returncode == 0 and "Submitted to Slurm" in r.stdout, r.stderr
    assert "onss stop" in r.stdout and "onss status" in r.stdout
    s = onss(slurm, "stop", str(run))
    assert s.returncode == 0 and "Cancelled the run's Slurm jobs" in s.stdout, s.stdout + s.stderr
    assert not queued(slurm, run)
    assert json.loads((run / "state.json").read_text())["status"] == "stopped"
    assert not (run / "lease").exists()
    r = onss(slurm, "run", str(recipe), "--slurm", "--wait")
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same_pack(run, local)
    assert not queued(slurm, run)


def test_a_cancelled_task_a_requeued_task_and_a_preempted_task(slurm, tmp_path, local):
    """In the middle of their shards: scancel of one generate task, scontrol requeue of another, and
    USR2 to the third (as Slurm sends it before the time limit: the task stops and requeues itself).
    The requeued tasks start again, the finish job resubmits the cancelled task's shards, and the run
    completes with the same pads. Submitting again while the jobs live submits nothing; onss status
    shows the jobs, the pending reason included."""
    recipe = make(tmp_path, max_tasks=3)
    run = tmp_path / "run"
    slow = {"ONSS_FAULT_SHARD_SECONDS": "12"}
    r = onss(slurm, "run", str(recipe), "--slurm", env=slow)
    assert r.returncode == 0, r.stderr
    array = json.loads((run / "slurm.json").read_text())["submissions"][0]["jobs"]["generate"]
    wait_for("three generate tasks in a shard",
             lambda: all(len(events(run, f"generate-w{w}")) >= 1 for w in (0, 1, 2)))
    again = onss(slurm, "run", str(recipe), "--slurm")
    assert again.returncode == 0 and "nothing new was submitted" in again.stderr, again.stderr
    assert len(json.loads((run / "slurm.json").read_text())["submissions"]) == 1
    slurm.run("scancel", f"{array}_0")
    slurm.run("scontrol", "requeue", f"{array}_1")
    slurm.run("scancel", "--batch", "--signal=USR2", f"{array}_2")

    def pending() -> str | None:
        out = onss(slurm, "status", str(run)).stdout
        return out if "pending (" in out else None

    status = wait_for("the requeued task pending in onss status", pending)
    assert "running on Slurm" in status and "generate" in status
    w = onss(slurm, "run", str(recipe), "--slurm", "--wait", env=slow)
    assert w.returncode == 0, w.stdout + w.stderr
    assert_same_pack(run, local)
    record = json.loads((run / "slurm.json").read_text())
    assert [s["by"] for s in record["submissions"]] == ["user", "finish"]
    assert record["submissions"][1]["tasks"] == [0]
    assert "requeueing job" in next((run / "logs").glob(f"slurm-*-generate-{array}_2.log")).read_text()
    assert len([e for e in events(run, "generate-w2") if e["event"] == "start"]) == 2  # it ran again
    assert not queued(slurm, run)


def _processes_of_node(node: str) -> list[int]:
    """The processes of onss jobs running on ``node`` (Slurm puts SLURMD_NODENAME in their environment)."""
    found = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            data = env.read_bytes()
            cmd = (env.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if f"SLURMD_NODENAME={node}".encode() in data.split(b"\0") and b"onss_tui" in cmd:
            found.append(int(env.parent.name))
    return found


def test_a_node_dies_in_the_middle_of_a_shard(slurm, tmp_path, local):
    """One node's slurmd and its job's processes are killed while a generate task runs there, and the
    node is marked down: Slurm requeues the task, it runs again on the other node, and the run
    completes with the same pads."""
    recipe = make(tmp_path, extra=["--exclusive"])  # one task a node: each node has one
    run = tmp_path / "run"
    slow = {"ONSS_FAULT_SHARD_SECONDS": "12"}
    r = onss(slurm, "run", str(recipe), "--slurm", env=slow)
    assert r.returncode == 0, r.stderr
    first = wait_for("a generate task started", lambda: (events(run, "generate-w0") or [None])[0])
    node = first["node"]
    pid_file = slurm.dir / "run" / f"slurmd-{node}.pid"
    try:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        for pid in _processes_of_node(node):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        slurm.run("scontrol", "update", f"nodename={node}", "state=down", "reason=onss-test-dead-node")
        w = onss(slurm, "run", str(recipe), "--slurm", "--wait", env=slow)
        assert w.returncode == 0, w.stdout + w.stderr
    finally:  # the node comes back for the tests after this one
        slurm.run("slurmd", "-N", node, check=False)
        slurm.run("scontrol", "update", f"nodename={node}", "state=resume", check=False)
        wait_for(f"{node} back", lambda: slurm.run("sinfo", "-h", "-n", node, "-o", "%T").stdout.strip()
                 in ("idle", "mixed", "allocated"), timeout=90)
    assert_same_pack(run, local)
    labels = {e["label"] for w in (0, 1) for e in events(run, f"generate-w{w}") if e["event"] == "start"}
    assert len(labels) >= 3, labels  # task 0 started again, on the other node
    assert not queued(slurm, run)


async def test_the_dashboard_of_a_slurm_run(slurm, tmp_path, monkeypatch):
    """The dashboard (Pilot, 80x24) of a live Slurm run: the jobs as squeue has them, one card per
    task titled by its node (one task a node), and s stops the run: no job is left in the queue."""
    from textual.widgets import Label

    from onss_tui.gpu import GpuProbe
    from onss_tui.tui.app import create_app

    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)
    recipe = make(tmp_path, extra=["--exclusive"])
    run = tmp_path / "run"
    r = onss(slurm, "run", str(recipe), "--slurm", env={"ONSS_FAULT_SHARD_SECONDS": "30"})
    assert r.returncode == 0, r.stderr
    wait_for("both generate tasks started",
             lambda: all(events(run, f"generate-w{w}") for w in (0, 1)))
    app = create_app(run_dir=run, probe_fn=lambda: GpuProbe(problem="no NVIDIA driver"),
                     torch_status=lambda: "torch: no CUDA", checkpoint_status=lambda: "checkpoint: not needed")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        for _ in range(100):
            await pilot.pause(0.1)
            if screen.slurm is not None and len(screen.cards) == 2:
                break
        jobs = str(screen.query_one("#slurm-jobs", Label).render())
        assert "generate" in jobs and "running on n" in jobs, jobs
        assert "running on Slurm" in str(screen.query_one("#run-title", Label).render())
        titles = {str(c.query_one(".card-title", Label).render()) for c in screen.cards.values()}
        assert {t.split()[0] for t in titles} == {"n1", "n2"}, titles  # two nodes' cards, apart
        places = {str(c.query_one("#gpu", Label).render()) for c in screen.cards.values()}
        assert all(p.startswith("on n") and "job" in p for p in places), places
        await pilot.press("s")
        await pilot.pause()
        await pilot.click("#yes")
        for _ in range(600):  # (the stop runs on a thread: scancel, then it waits for the queue to empty)
            await pilot.pause(0.1)
            if json.loads((run / "state.json").read_text())["status"] == "stopped":
                break
    assert not queued(slurm, run)
    assert json.loads((run / "state.json").read_text())["status"] == "stopped"


def test_a_task_that_always_fails_is_resubmitted_twice_then_the_run_fails(slurm, tmp_path):
    """The finish job resubmits a failed task's shards a bounded number of times, then fails saying
    which tasks and where their logs are; the queue is empty, the lease released, and --wait exits 2
    with that message (no traceback)."""
    recipe = make(tmp_path)
    run = tmp_path / "run"
    w = onss(slurm, "run", str(recipe), "--slurm", "--wait", env={"ONSS_FAULT_FAIL_TASK": "1"})
    assert w.returncode == 2 and "Traceback" not in w.stderr, w.stdout + w.stderr
    assert "generate tasks 1 did not finish their shards after 2 resubmissions" in w.stderr
    record = json.loads((run / "slurm.json").read_text())
    assert [(s["by"], s["tasks"]) for s in record["submissions"]] == [("user", [0, 1]), ("finish", [1]),
                                                                      ("finish", [1])]
    assert not queued(slurm, run) and not (run / "lease").exists()
    assert json.loads((run / "state.json").read_text())["status"] == "failed"
