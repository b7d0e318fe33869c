"""Signals that must not land inside C code which calls back into Python.

A ctrl+c that arrives while libsndfile is inside one of soundfile's virtual-file callbacks raises
KeyboardInterrupt *in the callback*, where cffi prints it and carries on with a damaged result:
the process goes on as if nothing happened and would keep that result. :func:`deferred` holds
SIGINT and SIGTERM back around such calls and delivers them after, where they stop the process
as usual.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["deferred", "ignore_interrupts", "children_ignore_interrupts", "in_main_thread", "Preempted",
           "request_preemption", "preemption_requested"]


def in_main_thread() -> bool:
    """Python runs signal handlers, and lets them be set, only in the main thread."""
    return threading.current_thread() is threading.main_thread()

HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP until the block ends, then deliver what came (main thread only:
    elsewhere Python runs no signal handlers anyway)."""
    if not in_main_thread():
        yield
        return
    came: list[int] = []
    old: dict[int, Any] = {}
    for sig in HELD:
        current = signal.getsignal(sig)
        if current in (signal.SIG_IGN, None):
            continue
        old[sig] = current
        signal.signal(sig, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        for held, handler in old.items():
            signal.signal(held, handler)
        if came:
            signal.raise_signal(came[0])


def ignore_interrupts() -> None:
    """For a worker process: ctrl+c (SIGINT to the terminal's process group) is the supervisor's
    to act on; it stops its workers itself (SIGTERM), so a worker never half-handles one."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def children_ignore_interrupts() -> Iterator[None]:
    """Processes started in this block begin with SIGINT ignored (an ignored signal stays ignored
    through exec, and Python then leaves it so), so a ctrl+c while a worker is still starting up
    does not kill it half-way with a traceback on the terminal. For the block itself (a pool's
    fork and exec, milliseconds) the supervisor ignores ctrl+c too; a handler could not pass on."""
    if not in_main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


class Preempted(Exception):
    """A Slurm job is about to be stopped (preemption, its time limit): the generator saved its
    state, and the job is requeued to resume from it."""


_preempt = threading.Event()


def request_preemption(signum: int | None = None, frame: object = None) -> None:
    """USR2's handler in a Slurm generate task: finish the stride under way, save, stop."""
    _preempt.set()


def preemption_requested() -> bool:
    return _preempt.is_set()
