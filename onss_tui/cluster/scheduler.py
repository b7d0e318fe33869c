"""Slurm's own commands, called as a user would: ``sbatch``, ``squeue``, ``scancel``, ``scontrol``.

onss schedules nothing itself. It submits with ``sbatch --parsable``, asks ``squeue`` what is
queued (``sacct`` is not needed: a cluster without accounting works the same), cancels with
``scancel`` and requeues with ``scontrol requeue``. What a run has achieved is decided from its
run folder, never from a job's state alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["SlurmError", "QueuedJob", "available", "sbatch", "squeue", "scancel", "requeue", "ALIVE"]

TIMEOUT_S = 60.0  # a slurmctld that does not answer within a minute is reported, not waited for

# squeue's states of a job that may still run (everything it lists but the ended ones)
ALIVE = frozenset({"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                   "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "SPECIAL_EXIT"})


class SlurmError(Exception):
    """A Slurm command failed or is missing; the message has its own words and the fix."""


def available() -> str | None:
    """None where sbatch and squeue are on the PATH; otherwise why onss cannot submit here."""
    missing = [c for c in ("sbatch", "squeue", "scancel") if shutil.which(c) is None]
    if missing:
        return (f"{', '.join(missing)} not found on the PATH: run this on a Slurm login node "
                "(or load the Slurm module, e.g. 'module load slurm')")
    return None


def _call(argv: Sequence[str], timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]}: not found on the PATH; {available() or 'is Slurm installed here?'}") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{argv[0]} did not answer within {timeout:.0f} s (is slurmctld up? 'sinfo' shows "
                         "the cluster's state)") from None


def sbatch(arguments: Sequence[str]) -> str:
    """Submit one job (``arguments`` include ``--parsable``); its job id."""
    done = _call(["sbatch", *arguments])
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().removeprefix("sbatch: error: ")
        raise SlurmError(f"sbatch refused the job: {why}. Check the recipe's slurm: section (partition, "
                         "account, qos, time, extra) against 'sinfo' and 'sacctmgr show assoc user=$USER'.")
    out = done.stdout.strip().splitlines()
    if not out or not out[-1].split(";")[0].isdigit():
        raise SlurmError(f"sbatch printed no job id: {done.stdout.strip()!r}")
    return out[-1].split(";")[0]  # "<id>" or "<id>;<cluster>"


@dataclass(frozen=True)
class QueuedJob:
    """One line of squeue: a job, or one task of an array (``array_id``_``task``)."""

    job_id: str  # the unique id (an array task has its own)
    array_id: str  # the array's id for its tasks; the job id otherwise
    task: int | None  # the array index
    name: str
    state: str  # PENDING, RUNNING, ...
    reason: str  # why pending (Dependency, Resources, Priority, BeginTime ...), "None" when running
    start: str  # the expected or actual start time, "N/A" where Slurm has none
    node: str  # where it runs (empty while pending)

    @property
    def alive(self) -> bool:
        return self.state in ALIVE


# %A: the job's own id (unique for each array task), %F: the array's id (the job's for others),
# %a: the array index ("N/A" for others); -r lists every array task on its own line
_FORMAT = "%A|%F|%a|%j|%T|%r|%S|%N"


def _parse(line: str) -> QueuedJob | None:
    parts = line.split("|")
    if len(parts) != 8:
        return None
    job, array, index, name, state, reason, start, node = parts
    return QueuedJob(job, array, int(index) if index.isdigit() else None, name, state, reason, start, node)


def squeue(jobs: Iterable[str]) -> list[QueuedJob]:
    """What the queue holds of ``jobs`` (job or array ids): one entry a job or array task; the jobs
    that have left the queue are absent. The whole queue of this user is read and filtered here:
    ``squeue -j`` with an id the controller has forgotten fails for all of them."""
    wanted = set(jobs)
    if not wanted:
        return []
    argv = ["squeue", "-h", "-r", "-o", _FORMAT]
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    argv += ["-u", user] if user else ["--me"]
    done = _call(argv)
    if done.returncode != 0:
        raise SlurmError(f"squeue failed: {(done.stderr or done.stdout).strip()}")
    out = []
    for line in done.stdout.splitlines():
        job = _parse(line.strip())
        if job is not None and (job.array_id in wanted or job.job_id in wanted):
            out.append(job)
    return out


def scancel(jobs: Iterable[str]) -> None:
    """Cancel ``jobs`` (arrays whole); ids that have already ended are no error."""
    ids = sorted(set(jobs), key=lambda j: (len(j), j))
    if not ids:
        return
    done = _call(["scancel", *ids])
    if done.returncode != 0 and "Invalid job id" not in done.stderr:
        raise SlurmError(f"scancel failed: {(done.stderr or done.stdout).strip()}")


def requeue(job: str) -> None:
    """Put a running job (or one array task, by its own id) back in the queue, to start again."""
    done = _call(["scontrol", "requeue", job])
    if done.returncode != 0:
        raise SlurmError(f"scontrol requeue {job} failed: {(done.stderr or done.stdout).strip()}")
