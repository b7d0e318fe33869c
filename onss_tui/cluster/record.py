"""What a Slurm run keeps in its run folder: ``slurm.json`` (its submissions) and ``lease`` (its lock).

    <run>/slurm.json   SlurmRecord, atomic: the shape of the generate array the plan follows, and
                       every submission (who made it, each job's id, the array's tasks)
    <run>/lease        the run's lock in Slurm mode: created with O_EXCL by the submitter, naming
                       the jobs that hold it; released by the finish job (or ``onss stop``)

Why not ``flock``: the run folder of a cluster run lives on a shared file system, where ``flock``
is unreliable (NFS) or needs a mount option (Lustre), and the jobs that hold the run one after
another run on different nodes. A lease is only as good as its jobs: one whose jobs have all left
the queue (``squeue``) is stale, and the next submission takes it over.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from onss_tui.atomic import atomic_write_text

__all__ = ["ClusterShape", "Submission", "SlurmRecord", "read_record", "write_record", "Lease", "LeaseHeld",
           "take_lease", "read_lease", "update_lease", "release_lease", "RECORD", "LEASE"]

RECORD = "slurm.json"
LEASE = "lease"
SUBMITTING_S = 300.0  # a lease with no job yet is a submission under way for this long


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClusterShape(_Model):
    """The generate array the plan lays its executors over: ``tasks`` tasks of ``per_task`` each."""

    tasks: int
    per_task: int


class Submission(_Model):
    at: float  # Unix time
    by: str  # "user" (onss run --slurm) or "finish" (the finish job resubmitting what is missing)
    jobs: dict[str, str]  # role -> job id (the generate array's id for its tasks)
    tasks: list[int] = Field(default_factory=list)  # the generate array's indices submitted


class SlurmRecord(_Model):
    """slurm.json. Written by the submitter and by the finish job, never at the same time (the lease)."""

    version: int = 1
    shape: ClusterShape
    submissions: list[Submission] = Field(default_factory=list)

    def job_ids(self) -> list[str]:
        return [j for s in self.submissions for j in s.jobs.values()]

    def resubmissions(self) -> int:
        """The finish job's resubmissions since the user's last submission."""
        n = 0
        for s in reversed(self.submissions):
            if s.by == "user":
                break
            n += 1
        return n

    def role_of(self, job_id: str) -> str | None:
        for s in self.submissions:
            for role, j in s.jobs.items():
                if j == job_id:
                    return role
        return None


def read_record(run: Path) -> SlurmRecord | None:
    try:
        return SlurmRecord.model_validate_json((Path(run) / RECORD).read_bytes())
    except FileNotFoundError:
        return None


def write_record(run: Path, record: SlurmRecord) -> None:
    atomic_write_text(Path(run) / RECORD, record.model_dump_json(indent=1))


# --------------------------------------------------------------------------------------------
# the lease


class Lease(_Model):
    created: float
    host: str
    pid: int
    token: str = ""  # random: which lease this is (two with the same jobs are still told apart)
    jobs: list[str] = Field(default_factory=list)


class LeaseHeld(Exception):
    """The run is held by live Slurm jobs (or a submission under way); ``jobs`` names them."""

    def __init__(self, message: str, jobs: list[str]):
        super().__init__(message)
        self.jobs = jobs


def read_lease(run: Path) -> Lease | None:
    """The lease, or None where there is none. A lease that cannot be read (a crash between
    create and write) counts as a submission under way until it is old."""
    path = Path(run) / LEASE
    try:
        return Lease.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        try:
            created = path.stat().st_mtime
        except OSError:
            return None
        return Lease(created=created, host="?", pid=0)


def _create(path: Path, lease: Lease) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, lease.model_dump_json().encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def take_lease(run: Path, alive: Callable[[Iterable[str]], list[str]]) -> Lease:
    """Take the run's lease for a new submission. ``alive(ids)`` returns those of the jobs that are
    still queued or running. Raises LeaseHeld while another lease's jobs live (or its submission
    is under way); a stale lease is moved aside (one rename: of two submitters only one wins) and
    removed."""
    run = Path(run)
    path = run / LEASE
    mine = Lease(created=time.time(), host=socket.gethostname(), pid=os.getpid(), token=secrets.token_hex(8))
    for _ in range(3):
        if _create(path, mine):
            return mine
        try:
            judged = path.read_bytes()
        except FileNotFoundError:
            continue  # released meanwhile
        held = read_lease(run)
        if held is None:
            continue
        if not held.jobs:
            if time.time() - held.created < SUBMITTING_S:
                raise LeaseHeld(f"{run}: another onss (pid {held.pid} on {held.host}) is submitting this run's "
                                "jobs right now. Watch it with: onss status " + str(run), [])
        else:
            live = alive(held.jobs)
            if live:
                raise LeaseHeld(f"{run}: this run's Slurm jobs are alive ({', '.join(live)}); nothing new was "
                                f"submitted. Watch them with: onss status {run}   stop them with: onss stop {run}",
                                live)
        aside = run / f".{LEASE}.{secrets.token_hex(4)}.tmp"
        try:
            os.rename(path, aside)  # stale: whoever renames it first takes over
        except FileNotFoundError:
            continue
        if aside.read_bytes() != judged:  # another submitter took it over first: this is its new lease
            try:
                os.link(aside, path)  # back in place (fails only where a third one made another)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            raise LeaseHeld(f"{run}: another onss is submitting this run's jobs right now. Watch it with: "
                            f"onss status {run}", [])
        aside.unlink(missing_ok=True)
    raise LeaseHeld(f"{run}: could not take the run's lease ({path}); another submission keeps taking it. "
                    "Try again in a minute.", [])


def update_lease(run: Path, jobs: list[str]) -> None:
    """The lease now names ``jobs`` (the holder's own call: it is replaced atomically)."""
    lease = read_lease(run) or Lease(created=time.time(), host=socket.gethostname(), pid=os.getpid())
    data = lease.model_dump()
    data["jobs"] = list(dict.fromkeys([*lease.jobs, *jobs]))
    atomic_write_text(Path(run) / LEASE, json.dumps(data))


def release_lease(run: Path) -> None:
    (Path(run) / LEASE).unlink(missing_ok=True)
