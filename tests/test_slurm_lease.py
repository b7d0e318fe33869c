"""The run's lease in Slurm mode (cluster/record.py) and squeue's lines (cluster/scheduler.py), on
real files and without a cluster: the live-job check is given as a function."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from onss_tui.cluster.record import LeaseHeld, read_lease, release_lease, take_lease, update_lease
from onss_tui.cluster.scheduler import _parse
from onss_tui.cluster.slurm import lay_out_jobs
from onss_tui.cluster.submit import _arguments
from onss_tui.recipe import parse_recipe


def none_alive(ids):
    return []


def test_a_lease_is_taken_once_and_names_its_jobs(tmp_path):
    take_lease(tmp_path, none_alive)
    update_lease(tmp_path, ["101"])
    update_lease(tmp_path, ["102", "101"])
    assert read_lease(tmp_path).jobs == ["101", "102"]
    with pytest.raises(LeaseHeld) as held:
        take_lease(tmp_path, lambda ids: sorted(ids))  # its jobs live
    assert held.value.jobs == ["101", "102"] and "nothing new was submitted" in str(held.value)
    assert read_lease(tmp_path).jobs == ["101", "102"]  # (untouched)


def test_a_lease_whose_jobs_have_left_the_queue_is_taken_over(tmp_path):
    take_lease(tmp_path, none_alive)
    update_lease(tmp_path, ["7"])
    lease = take_lease(tmp_path, none_alive)
    assert lease.jobs == [] and read_lease(tmp_path).jobs == [] and read_lease(tmp_path).pid == os.getpid()
    assert [p.name for p in tmp_path.iterdir()] == ["lease"]  # the stale one moved aside and removed


def test_a_submission_under_way_holds_the_lease_until_it_is_old(tmp_path):
    take_lease(tmp_path, none_alive)  # no job yet: being submitted
    with pytest.raises(LeaseHeld, match="submitting"):
        take_lease(tmp_path, none_alive)
    old = time.time() - 3600
    os.utime(tmp_path / "lease", (old, old))
    data = json.loads((tmp_path / "lease").read_text())
    data["created"] = old
    (tmp_path / "lease").write_text(json.dumps(data))
    take_lease(tmp_path, none_alive)  # a submitter that died an hour ago holds nothing


def test_an_unreadable_lease_counts_as_a_submission_under_way(tmp_path):
    (tmp_path / "lease").write_bytes(b"")  # created, never written: its submitter died at once
    with pytest.raises(LeaseHeld):
        take_lease(tmp_path, none_alive)
    release_lease(tmp_path)
    take_lease(tmp_path, none_alive)


def _race(folder: str, results) -> None:
    try:
        take_lease(Path(folder), none_alive)
        results.put("took")
    except LeaseHeld:
        results.put("held")


def test_of_many_submitters_at_once_exactly_one_takes_a_stale_lease(tmp_path):
    take_lease(tmp_path, none_alive)
    update_lease(tmp_path, ["5"])  # stale: its job is gone
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), results)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    got = sorted(results.get(timeout=5) for _ in procs)
    assert got.count("took") == 1 and got.count("held") == 7


def test_squeue_lines():
    task = _parse("107|105|2|onss-birds-generate|RUNNING|None|2026-12-02T10:00:01|n2")
    assert (task.job_id, task.array_id, task.task, task.node, task.alive) == ("107", "105", 2, "n2", True)
    pending = _parse("105|105|3|onss-birds-generate|PENDING|BeginTime|2026-12-02T10:02:00|")
    assert pending.task == 3 and pending.reason == "BeginTime" and pending.node == ""
    job = _parse("104|104|N/A|onss-birds-head|COMPLETING|None|N/A|n1")
    assert job.task is None and job.alive
    assert _parse("garbage") is None


PREVIEW = """
name: birds
inputs: /notes
corners: {top_left: [a], top_right: [b], bottom_left: [c], bottom_right: [d]}
pitches: [60]
engine: preview
output: /runs/birds
slurm: {partition: cpu, time: 30, max_tasks: 4}
"""


def test_a_resubmission_drops_the_dependency_on_a_job_it_does_not_submit():
    jobs = lay_out_jobs(parse_recipe(PREVIEW), Path("/runs/birds"), sounds=18, batch=64)
    generate, finish = jobs.job("generate"), jobs.job("finish")
    alone = _arguments(generate, {}, array="1,3%2")
    assert "--array=1,3%2" in alone
    assert not any(a.startswith("--dependency") or a == "--kill-on-invalid-dep=yes" for a in alone)
    after = _arguments(finish, {"generate": "42"})
    assert "--dependency=afterany:42" in after and "--kill-on-invalid-dep=yes" in after
    after_head = _arguments(finish, {"head": "41"})  # nothing to generate: after the head job
    assert "--dependency=afterany:41" in after_head


def test_a_slurm_worker_is_labelled_by_its_node_and_gpu(tmp_path, monkeypatch):
    """GPU numbers are per node: CUDA_VISIBLE_DEVICES=0 on two nodes gives two labels, n1 GPU 0 and
    n2 GPU 0, on the streams of two workers (a card each), never one."""
    from onss_tui.pipeline.plan import Executor
    from onss_tui.pipeline.rundir import RunDir
    from onss_tui.pipeline.stages.generate import run_worker

    class Plan:
        executors = [Executor(index=w, kind="slurm", task=w, slot=0, device="cuda:0") for w in (0, 1)]

        def executor(self, w):
            return self.executors[w]

        def shards_of(self, w):
            return []

    run = RunDir(tmp_path)
    for worker, node in ((0, "n1"), (1, "n2")):
        monkeypatch.setenv("SLURMD_NODENAME", node)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
        monkeypatch.setenv("SLURM_JOB_ID", str(100 + worker))
        run_worker(run, Plan(), worker, engine=None)  # type: ignore[arg-type]  (no shard: only its start)
    starts = [run.events((f"generate-w{w}",))[0] for w in (0, 1)]
    assert [(e["label"], e["node"], e["gpu"], e["job"]) for e in starts] == [("n1 GPU 0", "n1", 0, "100"),
                                                                              ("n2 GPU 0", "n2", 0, "101")]


def test_usr2_saves_the_generator_now_and_the_resumed_shard_is_bit_identical(tmp_path, small_model):
    """A Slurm task's USR2 (its time limit is near): the worker finishes the stride under way, its
    state is on disk before it stops (Preempted), and the shard resumed from that save is the shard
    of a run never interrupted."""
    import signal

    import numpy as np

    from onss_tui import signals
    from onss_tui.pipeline.stages.generate import generate_nsynth_shard

    emb = np.random.default_rng(0).normal(0, 5, (2, 1, 16)).astype(np.float32)
    ids = np.array([3, 4])
    whole = tmp_path / "whole.npy"
    generate_nsynth_shard(small_model, emb, ids, 1, whole, save_every=128)

    def usr2_at_256(t, total):
        if t == 256:
            signal.raise_signal(signal.SIGUSR2)  # as Slurm sends it (--signal=B:USR2@120)

    old = signal.signal(signal.SIGUSR2, signals.request_preemption)
    cut = tmp_path / "cut.npy"
    try:
        with pytest.raises(signals.Preempted, match="state saved at sample 256"):
            generate_nsynth_shard(small_model, emb, ids, 1, cut, save_every=128, progress=usr2_at_256)
    finally:
        signal.signal(signal.SIGUSR2, old)
        signals._preempt.clear()
    assert (tmp_path / "cut.state.pt").is_file() and not cut.exists()
    seen = []
    generate_nsynth_shard(small_model, emb, ids, 1, cut, save_every=128, progress=lambda t, n: seen.append(t))
    assert seen[0] == 384  # from the save at 256, written before it stopped
    assert np.array_equal(np.load(cut), np.load(whole))
