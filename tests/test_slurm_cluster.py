"""The Slurm test harness itself, against the real cluster of ci/slurm/start.sh (tests/slurm.py):
GPU tasks spread over two nodes, sacct, scancel. Skipped where Slurm cannot start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.slurm import wait_until

pytestmark = pytest.mark.xdist_group("slurm")

WAIT_S = 90.0  # the bound on every wait for the scheduler (no test asserts on speed)


def _wait(what: str, check, timeout: float = WAIT_S):
    return wait_until(what, check, timeout)


def _queued(slurm, job: str) -> list[str]:
    """The states squeue lists for a job (its array tasks included); empty once it has left the queue."""
    return slurm.run("squeue", "-h", "-j", job, "-o", "%T", check=False).stdout.split()


def _sacct_states(slurm, job: str) -> dict[str, str]:
    out = slurm.run("sacct", "-n", "-P", "-X", "-j", job, "-o", "JobID,State", check=False).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)


def _array_of_gpu_tasks(slurm, out: Path) -> str:
    # Slurm 22.05 refuses --gpus-per-task without --ntasks (or --gpus).
    # exec: with proctrack/linuxproc a process whose parent exits escapes scancel.
    script = 'exec sh -c "echo $SLURMD_NODENAME $CUDA_VISIBLE_DEVICES $SLURM_ARRAY_TASK_ID'
    script += f' > {out}/$SLURM_ARRAY_TASK_ID"'
    submitted = slurm.run(
        "sbatch",
        "--parsable",
        "--array=0-3",
        "--ntasks=1",
        "--gpus-per-task=1",
        f"--output={out}/slurm-%A_%a.out",
        "--wrap",
        script,
    )
    return submitted.stdout.strip().split(";")[0]


def _finished_array(slurm, tmp_path: Path) -> tuple[str, dict[int, tuple[str, str]]]:
    out = tmp_path / "out"
    out.mkdir()
    job = _array_of_gpu_tasks(slurm, out)
    _wait(f"array job {job} leaves the queue", lambda: not _queued(slurm, job))
    written = {}
    for i in range(4):
        f = out / str(i)
        log = out / f"slurm-{job}_{i}.out"
        assert f.is_file(), f"task {i} wrote nothing; its log: {log.read_text() if log.exists() else '(none)'}"
        node, gpu, task = f.read_text().split()
        assert task == str(i)
        written[i] = (node, gpu)
    return job, written


def test_gpu_array_tasks_get_one_gpu_each_numbered_per_node(slurm, tmp_path):
    if slurm.nodes < 2 or slurm.gpus < 2:
        pytest.skip("needs two nodes with two GPUs each (SLURM_CI_NODES, SLURM_CI_GPUS)")
    _, written = _finished_array(slurm, tmp_path)
    pairs = set(written.values())
    assert len(pairs) == 4, f"four tasks, four distinct (node, GPU) pairs: {written}"
    assert {node for node, _ in pairs} == {"n1", "n2"}, written
    assert all(gpu in {"0", "1"} for _, gpu in pairs), f"one GPU a task, numbered on its node: {written}"
    gpus_by_node = {node: {g for n, g in pairs if n == node} for node, _ in pairs}
    # the collision a label must avoid: the same CUDA_VISIBLE_DEVICES on two nodes
    assert gpus_by_node["n1"] & gpus_by_node["n2"], written


def test_sacct_knows_a_finished_jobs_state(slurm, tmp_path):
    if not slurm.accounting:
        pytest.skip("accounting is off (SLURM_CI_ACCOUNTING=0): sacct knows nothing")
    job = slurm.run("sbatch", "--parsable", f"--output={tmp_path}/slurm-%j.out", "--wrap", "exec true").stdout.strip()
    _wait(f"job {job} leaves the queue", lambda: not _queued(slurm, job))
    # slurmctld reports to slurmdbd asynchronously: the record may lag the queue a little
    state = _wait(
        f"sacct records job {job}'s end",
        lambda: (
            _sacct_states(slurm, job).get(job) not in (None, "PENDING", "RUNNING") and _sacct_states(slurm, job)[job]
        ),
    )
    assert state == "COMPLETED"


def _processes_with(word: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if word.encode() in cmdline:
                pids.append(int(proc.name))
    return pids


def test_scancel_ends_a_running_job(slurm, tmp_path):
    seconds = f"{4000 + os.getpid() % 1000}"  # a sleep of a length no other process here has
    job = slurm.run(
        "sbatch", "--parsable", f"--output={tmp_path}/slurm-%j.out", "--wrap", f"exec sleep {seconds}"
    ).stdout.strip()
    _wait(f"job {job} runs", lambda: _queued(slurm, job) == ["RUNNING"])
    _wait(f"job {job}'s sleep starts", lambda: _processes_with(seconds))
    slurm.run("scancel", job)
    _wait(f"job {job} leaves the queue after scancel", lambda: not _queued(slurm, job))
    _wait(f"job {job}'s sleep ends", lambda: not _processes_with(seconds))
    if slurm.accounting:
        _wait(
            f"sacct records job {job} as CANCELLED",
            lambda: _sacct_states(slurm, job).get(job, "").startswith("CANCELLED"),
        )
