"""A real Slurm cluster for tests: the session fixture ``slurm``, started from ``ci/slurm/start.sh``.

Two fake nodes (``n1``, ``n2``) with two fake GPUs each (``SLURM_CI_NODES``, ``SLURM_CI_GPUS``),
accounting on unless ``SLURM_CI_ACCOUNTING=0``, in ``SLURM_CI_DIR`` (``/tmp/onss-slurm``). The
fixture yields a :class:`SlurmCluster`; run Slurm's commands with its ``env`` (``SLURM_CONF`` set)
or through ``cluster.run(...)``. Where Slurm cannot start (not root, not Linux, no apt-get, a
failed install or start) every test that uses it is skipped with the reason and the last lines of
the script's output; it never fails the suite. ``ONSS_SLURM_REQUIRED=1`` (for a CI that must run
them) turns those skips into failures. Mark the tests ``@pytest.mark.xdist_group("slurm")``.

Under pytest-xdist: the start runs under an ``fcntl.flock`` on ``$SLURM_CI_DIR/.fixture.lock``
(the script is idempotent, so a second worker finds the cluster running and only waits for the
first); each session that uses the cluster registers its pid in ``$SLURM_CI_DIR/.users/``, and
the last one to leave (the dead are not counted) stops the cluster, and only when a fixture
started it: a cluster someone started by hand is left running.

Start times measured here (the 2-core CI machine, busy with another CI run), the fixture's setup:
58.6 s the first time, with apt-get installing slurmctld, slurmd, slurm-client, munge, slurmdbd
and mariadb-server (~49 s of it apt-get); 2.4 s again (packages installed, accounting database
kept in the folder); 9.6 s with a new database (an empty folder); 0.6 s with
``SLURM_CI_ACCOUNTING=0``; 0.1 s when it is already running.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "ci" / "slurm" / "start.sh"
STOP = ROOT / "ci" / "slurm" / "stop.sh"
START_TIMEOUT_S = float(os.environ.get("ONSS_SLURM_START_TIMEOUT_S", "300"))  # a first apt-get install included
STOP_TIMEOUT_S = 120.0


@dataclass
class SlurmCluster:
    """The running test cluster: its folder, config and shape, and the environment for its commands."""

    dir: Path
    conf: Path
    nodes: int
    gpus: int
    accounting: bool
    start_s: float
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command (``sbatch``, ``squeue``, ...) against this cluster, bounded by ``timeout``."""
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}"
            )
        return done


def wait_until(what: str, check, timeout: float, every: float = 0.3):
    """Poll ``check()`` until it returns something truthy (returned); fail after ``timeout`` seconds.
    The bound on every wait for the scheduler: no test asserts on speed."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def _settings() -> tuple[Path, int, int, bool]:
    folder = Path(os.environ.get("SLURM_CI_DIR", "/tmp/onss-slurm"))
    nodes = int(os.environ.get("SLURM_CI_NODES", "2"))
    gpus = int(os.environ.get("SLURM_CI_GPUS", "2"))
    accounting = os.environ.get("SLURM_CI_ACCOUNTING", "1") != "0"
    return folder, nodes, gpus, accounting


def _unavailable(reason: str) -> None:
    if os.environ.get("ONSS_SLURM_REQUIRED") == "1":
        pytest.fail(f"Slurm is required (ONSS_SLURM_REQUIRED=1) but: {reason}", pytrace=False)
    pytest.skip(f"no Slurm cluster: {reason}")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


class _Lock:
    """An exclusive ``fcntl.flock`` on a file, taken within a bounded wait."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path, self.timeout = path, timeout

    def __enter__(self) -> _Lock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise TimeoutError(f"{self.path} still locked after {self.timeout:.0f}s") from None
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run_script(script: Path, env: dict[str, str], timeout: float) -> tuple[int, str]:
    try:
        done = subprocess.run(
            ["bash", str(script)], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""
        text = out.decode(errors="replace") if isinstance(out, bytes) else out
        return 124, text + f"\n(timed out after {timeout:.0f}s)"
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """A real Slurm cluster for the session (see the module's docstring); skips where it cannot start."""
    if not sys.platform.startswith("linux"):
        _unavailable("Slurm's test cluster runs on Linux only")
    if os.geteuid() != 0:
        _unavailable("ci/slurm/start.sh needs root (munged, slurmd and mariadbd switch users)")
    folder, nodes, gpus, accounting = _settings()
    if not shutil.which("sbatch") and not shutil.which("apt-get"):
        _unavailable("Slurm is not installed and apt-get is not there to install it")
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    env["SLURM_CONF"] = str(folder / "etc" / "slurm.conf")
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # munged and mariadbd, as their own users, must reach into it
    users = folder / ".users"
    users.mkdir(exist_ok=True)
    started_marker = users / "started-by-fixture"
    lock = folder / ".fixture.lock"

    t0 = time.monotonic()
    try:
        with _Lock(lock, START_TIMEOUT_S + 60):
            rc, out = _run_script(START, env, START_TIMEOUT_S)
            if rc == 0 and "READY SLURM_CONF=" in out:
                (users / str(os.getpid())).touch()
                if "already running" not in out:
                    started_marker.touch()
    except TimeoutError as e:
        _unavailable(str(e))
    start_s = time.monotonic() - t0
    if rc != 0 or "READY SLURM_CONF=" not in out:
        _unavailable(f"ci/slurm/start.sh exited {rc}; its last lines:\n{_tail(out)}")
    conf = Path(out.rsplit("READY SLURM_CONF=", 1)[1].split()[0])
    env["SLURM_CONF"] = str(conf)
    cluster = SlurmCluster(folder, conf, nodes, gpus, accounting, start_s, env)
    try:
        yield cluster
    finally:
        with _Lock(lock, STOP_TIMEOUT_S + 60):
            (users / str(os.getpid())).unlink(missing_ok=True)
            others = []
            for p in users.iterdir():
                if p.name.isdigit():
                    if _alive(int(p.name)):
                        others.append(p)
                    else:
                        p.unlink(missing_ok=True)  # a session that died without its teardown
            if not others and started_marker.exists():
                _run_script(STOP, env, STOP_TIMEOUT_S)
                started_marker.unlink(missing_ok=True)
