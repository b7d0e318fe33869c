"""The supervisor: runs a recipe's stages in its run directory, skipping finished work.

It only sequences: the lock, the recipe check, each stage in order (``pipeline/stages/``), faults
and events. What a run does is decided once by the plan stage (``plan.json``); every stage after it
reads the plan. Every stage's outputs are written atomically and marked done after, so the runner
can be killed at any moment and started again: finished work is never redone, partial work is
never taken for finished, and the pads come out byte-identical.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from onss_tui import registry
from onss_tui.atomic import TEMP_SUFFIXES, atomic_write_text
from onss_tui.pipeline import integrity
from onss_tui.pipeline import plan as planning
from onss_tui.pipeline.context import RunError, StageContext
from onss_tui.pipeline.files import FileDigest, StageState
from onss_tui.pipeline.grid import plan_sounds, stage_bytes
from onss_tui.pipeline.rundir import STAGES, RunDir
from onss_tui.recipe import Recipe, load_recipe, parse_recipe, recipe_yaml
from onss_tui.signals import in_main_thread
from onss_tui.sizes import size_text

__all__ = ["RunError", "Runner", "Deferred", "Stopped", "stop_on_signals", "resolved_recipe", "run_dir_of",
           "start_detached", "stop_run", "ONSS_NAMES"]

# what onss itself puts in a run folder (anything else there is the user's)
ONSS_NAMES = frozenset({*STAGES, "pads", "events", "logs", "state.json", "recipe.yaml", "plan.json", "settings.json",
                        "lock", "slurm.json", "lease", "audition", "stop"})


class Stopped(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) to the supervisor: the run stops as on ctrl+c, workers first."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

Listener = Callable[[dict[str, Any]], None]


def resolved_recipe(recipe: Recipe, base: Path) -> Recipe:
    """The recipe with every path made absolute, as stored in the run directory."""
    data = recipe.model_dump()
    data["inputs"] = str(recipe.inputs_dir(base).resolve())
    data["output"] = str(recipe.output_dir(base).resolve())
    if recipe.checkpoint:
        data["checkpoint"] = str(recipe.resolve(base, recipe.checkpoint).resolve())
    return Recipe.model_validate(data)


def run_dir_of(recipe_path: Path) -> Path:
    """The run folder a recipe file's 'output' names (absolute)."""
    recipe_path = Path(recipe_path)
    return recipe_path_output(resolved_recipe(load_recipe(recipe_path), recipe_path.resolve().parent))


def recipe_path_output(recipe: Recipe) -> Path:
    """A resolved recipe's run folder (absolute)."""
    assert recipe.output is not None, "a resolved recipe names its output"
    return Path(recipe.output)


def start_detached(recipe_path: Path, device: str | None = None) -> tuple[Path, int]:
    """Start ``onss run RECIPE --json`` in its own session (it outlives the terminal and the SSH
    session that started it), logging to ``<run>/logs/supervisor.log``; return (run folder, pid)."""
    recipe_path = Path(recipe_path).resolve()
    run_dir = run_dir_of(recipe_path)
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "onss_tui", "run", str(recipe_path), "--json"]
    argv += ["--device", device] if device else []
    with open(logs / "supervisor.log", "ab") as log, open(os.devnull, "rb") as null:
        proc = subprocess.Popen(argv, stdin=null, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return run_dir, proc.pid


def stop_run(run_dir: Path, group: bool = False, wait: float = 0.0) -> int | None:
    """Stop the run working in ``run_dir`` on this machine, as ``onss stop`` and the dashboard do:
    the stop request is written first (``<run>/stop``), then the supervisor gets SIGTERM (``group``:
    its whole process group), so that it records "stopped" when it ends, and a reader sees it
    stopped even if it dies without recording it, however long it takes. Waits up to ``wait``
    seconds for it to let go of the run. The pid signalled; None when no process works on the run."""
    run = RunDir(run_dir)
    pid = run.locked_by()
    if not pid or pid < 0:
        return None
    with contextlib.suppress(OSError):  # (a run folder this user may not write: then it is only signalled)
        run.request_stop(pid)
    try:
        os.killpg(os.getpgid(pid), signal.SIGTERM) if group else os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it ended meanwhile (the request is then cleared by the next start)
    deadline = time.monotonic() + wait
    while run.locked_by() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if run.locked_by() is None and run.stop_requested() and run.state().status in ("running", "interrupted"):
        with contextlib.suppress(OSError):  # (the supervisor ended without recording it: said here)
            run.update_state(status="stopped")
    return pid


StageFunction = Callable[[StageContext], dict]


class Deferred(Exception):
    """A stage's work goes on elsewhere (Slurm jobs were submitted for it): the run is not over,
    and nothing failed. The stage stays pending; the message says what was submitted."""


class Runner:
    """Runs the stages. ``cluster``: the run is planned for Slurm (its generate array's shape), and
    runs one job's share of the stages at a time (:meth:`execute` with ``stages``)."""

    def __init__(self, recipe: Recipe, base: Path, listener: Listener | None = None, device: str | None = None,
                 cpu_workers: int | None = None, machine: planning.Machine | None = None,
                 cluster: planning.Cluster | None = None):
        self.recipe = resolved_recipe(recipe, base)
        self.run = RunDir(recipe_path_output(self.recipe))
        self.changed_sections: list[str] = []  # late recipe sections changed since the run folder was made
        self.listener = listener
        self.device = device
        self.cpu_workers = cpu_workers
        self._machine = machine
        self.cluster = cluster

    recipe_file: Path | None = None  # where it was started from (the registry of runs shows it)

    @classmethod
    def from_file(cls, path: Path, **kw: Any) -> Runner:
        runner = cls(load_recipe(path), path.resolve().parent, **kw)
        runner.recipe_file = Path(path).resolve()
        return runner

    @classmethod
    def from_run_dir(cls, run_dir: Path, **kw: Any) -> Runner:
        r = parse_recipe((run_dir / "recipe.yaml").read_text(), str(run_dir / "recipe.yaml"))
        return cls(r, run_dir, **kw)

    @property
    def machine(self) -> planning.Machine:
        """What the plan may use here (NVML and torch are asked once, when first needed)."""
        if self._machine is None:
            self._machine = planning.Machine.detect(self.device, self.cpu_workers)
        if self.cluster is not None and self._machine.cluster is None:
            self._machine.cluster = self.cluster
        return self._machine

    # -- events ------------------------------------------------------------------------------
    def emit(self, stream: str, event: str, **fields: Any) -> None:
        record = self.run.emit(stream, event, **fields)
        if self.listener:
            self.listener(record)

    def context(self) -> StageContext:
        return StageContext(self.recipe, self.run, self.machine, self.emit, self.listener)

    # -- the run -----------------------------------------------------------------------------
    def _check_paths(self, create: bool = True) -> None:
        out, inputs = self.run.path, Path(self.recipe.inputs)
        if out == inputs or inputs in out.parents:
            raise RunError(f"{out}: the output folder is inside the inputs folder {inputs}; the run would mix its "
                           "files with your notes. Set 'output' to a folder outside 'inputs'.")
        if out.exists() and not out.is_dir():
            raise RunError(f"{out}: exists and is not a folder. Set 'output' to a folder.")
        foreign = self._foreign_files()
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise RunError(f"{out}: holds files onss did not write ({shown}); a run folder is onss's alone, and "
                           "nothing in it was touched. Set 'output' to a new or empty folder (e.g. 'run').")
        if not create:
            return
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".onss-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise RunError(f"{out}: cannot write the run folder ({exc.strerror}). "
                           "Set 'output' to a writable folder.") from None

    def check_tools(self) -> None:
        """What the stages to come need of this installation, refused now rather than after hours of
        generation: the clean mode mp3 needs a libsndfile that writes MP3 (clean checks it again)."""
        if self.recipe.clean.mode == "mp3" and self.run.state().stage("clean").status != "done":
            from onss_tui.pipeline.stages.clean import check_mp3

            check_mp3()

    def preflight(self) -> planning.Layout | None:
        """What can be refused before any work (an installation that cannot make the pack, GPUs the
        machine lacks, kernels that cannot run); a resumed run keeps its plan and checks no GPU again."""
        self.check_tools()
        if self.run.has_plan():
            return None
        return planning.lay_out(self.recipe, self.machine)

    def _check_where(self) -> None:
        """A run folder is planned for this machine or for Slurm, and continues where it was planned;
        while its Slurm jobs hold it (the lease), no local run may work in it."""
        if self.cluster is None:
            from onss_tui.cluster.record import read_lease

            lease = read_lease(self.run.path)
            if lease is not None:
                from onss_tui.cluster.scheduler import SlurmError, squeue

                try:
                    live = sorted({j.array_id for j in squeue(lease.jobs) if j.alive}) if lease.jobs else ["?"]
                except SlurmError:
                    live = lease.jobs  # no Slurm here: the lease cannot be checked, so it holds
                if live:
                    raise RunError(f"{self.run.path}: this run is on Slurm (jobs {', '.join(live)} hold it). "
                                   f"Watch it with: onss status {self.run.path}   or stop it first: "
                                   f"onss stop {self.run.path}")
        if not self.run.has_plan():
            return
        try:
            kinds = {e.kind for e in self.run.plan().executors}
        except (OSError, ValueError):
            return  # (the plan stage reads it again and says what is wrong)
        if self.cluster is None and "slurm" in kinds:
            raise RunError(f"{self.run.path}: this run was planned for Slurm; resume it there with "
                           "onss run RECIPE --slurm (or set another 'output' to start it over on this machine).")
        if self.cluster is not None and "local" in kinds:
            raise RunError(f"{self.run.path}: this run was planned for this machine's workers; resume it here with "
                           "onss run RECIPE (or set another 'output' to start it over on Slurm).")

    def execute(self, stages: tuple[str, ...] | None = None, functions: dict[str, StageFunction] | None = None,
                lock: bool = True) -> Path:
        """Run the stages not done yet (``stages``: only these, every earlier one must be done), with
        ``functions`` in place of some stages' own. ``lock``: take the run's flock (a Slurm job runs
        under the run's lease instead)."""
        self._check_paths()
        held = self.run.lock() if lock else contextlib.nullcontext()
        with held, stop_on_signals():
            if lock:
                self.run.clear_stop()  # (a stop asked of an earlier supervisor is over)
            self._check_where()
            self._sweep_temp_files()
            self._check_recipe()
            self.preflight()
            self.run.update_state(pid=os.getpid(), status="running", name=self.recipe.name, engine=self.recipe.engine)
            if self.cluster is None:  # (a Slurm run is registered where it is submitted)
                registry.register(self.run.path, self.recipe.name, self.recipe_file)
            self.emit("supervisor", "run_start", pid=os.getpid(), run=str(self.run.path))
            from onss_tui.pipeline.stages import STAGE_FUNCTIONS

            chosen = {**STAGE_FUNCTIONS, **(functions or {})}
            ctx = self.context()
            recipe_sha = planning.recipe_digest(self.recipe)
            sources = integrity.note_sources(self.recipe)
            earlier: dict[str, dict[str, FileDigest]] = {}
            try:
                for stage in STAGES:
                    if stages is not None and stage not in stages and STAGES.index(stage) > STAGES.index(stages[-1]):
                        break
                    st = self.run.state().stage(stage)
                    consumed = self._consumed(stage, st, earlier, sources, recipe_sha)
                    if stages is not None and stage not in stages:  # an earlier job's: it must be done, and current
                        stale = integrity.check_stage(self.run, st, consumed) if st.status == "done" else \
                            integrity.Stale("it has not finished", False)
                        if stale is not None:
                            raise RunError(f"{self.run.path}: stage {stage} is not done ({stale.reason}); an "
                                           "earlier job of this run did not finish it. See logs/ and run again.")
                        earlier[stage] = st.produced or {}
                        continue
                    if st.status == "done":
                        stale = integrity.check_stage(self.run, st, consumed)
                        if stale is None:
                            self.emit("supervisor", "stage_skip", stage=stage)
                            earlier[stage] = st.produced or {}
                            continue
                        self._redo(stage, st, stale, sources)
                    elif st.consumed is not None and st.consumed != consumed:  # partial work from other inputs
                        self._redo(stage, st, integrity.Stale("its inputs changed since it started", True), sources)
                    self._run_stage(ctx, stage, chosen[stage], consumed, sources if stage == "prepare" else None)
                    earlier[stage] = self.run.state().stage(stage).produced or {}
            except Deferred as exc:
                self.emit("supervisor", "run_deferred", message=str(exc))
                return self.run.path
            except KeyboardInterrupt as exc:
                if lock and self.run.stop_requested():  # onss stop, the dashboard: asked to stop
                    self._record_end("stopped", "run_stopped", signal=getattr(exc, "signum", signal.SIGTERM))
                else:
                    self._record_end("interrupted", "run_interrupted", signal=getattr(exc, "signum", signal.SIGINT))
                raise
            except OSError as exc:  # out of space outside a stage's own work (its state, its events)
                if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                    raise
                stage = next((s for s in STAGES if self.run.stage_status(s) != "done"), STAGES[-1])
                self._record_end("failed", "run_failed", error=str(exc))
                raise self._out_of_space(stage, exc) from None
            finally:
                ctx.release()
            if stages is not None and stages[-1] != STAGES[-1]:
                return self.run.path  # (a Slurm head job: the run goes on in the next jobs)
            self.run.update_state(status="done")
            self.emit("supervisor", "run_done", pads=str(self.run.pads_dir), settings=str(self.run.settings_path))
        return self.run.path

    def _consumed(self, stage: str, st: StageState, earlier: dict[str, dict[str, FileDigest]], sources: dict,
                  recipe_sha: str) -> str:
        """The digest of what ``stage`` reads now: the recipe as it reads it, the earlier stages' outputs
        (and for prepare the notes)."""
        read = sources if stage == "prepare" else None
        consumed = integrity.consumed_digest(planning.stage_recipe_digest(self.recipe, stage), earlier, read)
        if st.consumed not in (None, consumed) and st.consumed == integrity.consumed_digest(recipe_sha, earlier, read):
            return st.consumed  # recorded by an onss that keyed each stage on the whole recipe: the same inputs
        return consumed

    def verify_done(self) -> tuple[str, str] | None:
        """For a run whose state says done, without running anything (a Slurm submission): check every
        stage as a local rerun would, and put the first stale one (and, where its inputs changed, every
        later one) back to pending, saying why. Returns that stage and why, or None when all still hold."""
        recipe_sha = planning.recipe_digest(self.recipe)
        sources = integrity.note_sources(self.recipe)
        earlier: dict[str, dict[str, FileDigest]] = {}
        for i, stage in enumerate(STAGES):
            st = self.run.state().stage(stage)
            stale = integrity.check_stage(self.run, st, self._consumed(stage, st, earlier, sources, recipe_sha)) \
                if st.status == "done" else integrity.Stale("it has not finished", False)
            if stale is None:
                earlier[stage] = st.produced or {}
                continue
            self._redo(stage, st, stale, sources)
            if stale.changed:  # what later stages made came from the old inputs
                for later in STAGES[i + 1:]:
                    self._redo(later, self.run.state().stage(later), integrity.Stale("an earlier stage is redone",
                                                                                     True), sources)
            return stage, stale.reason
        return None

    def _redo(self, stage: str, st: StageState, stale: integrity.Stale, sources: dict) -> None:
        """A finished (or started) stage runs again: say why; stale outputs of changed inputs go."""
        reason = stale.reason
        first = [s for s in self.changed_sections if planning.LATE_SECTIONS[s] == stage]
        if stale.changed and first:
            reason = f"the recipe's {' and '.join(first)} settings changed"
        if stage == "prepare" and stale.changed:
            names = integrity.changed_sources(st.sources, sources)
            if names:
                reason = f"input notes changed: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
        removed = integrity.clear_stage(self.run, stage, st) if stale.changed else 0
        self.run.set_stage(stage, "pending", produced=None)
        self.emit("supervisor", "stage_redo", stage=stage, reason=reason, removed=removed)

    def _run_stage(self, ctx: StageContext, stage: str, fn: Callable[[StageContext], dict], consumed: str,
                   sources: dict | None = None) -> None:
        read = {"sources": {k: v.model_dump() for k, v in sources.items()}} if sources is not None else {}
        t0 = time.monotonic()
        try:
            try:
                self.run.set_stage(stage, "running", consumed=consumed, produced=None, **read)
                self.emit("supervisor", "stage_start", stage=stage)
                info = fn(ctx) or {}
                made = integrity.produced(self.run, stage)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                    raise
                raise self._out_of_space(stage, exc) from None
        except KeyboardInterrupt:
            self._record_stage(stage, "failed", error="interrupted")
            raise
        except Deferred:
            self._record_stage(stage, "pending")
            raise
        except Exception as exc:
            self._record_stage(stage, "failed", error=str(exc))
            self._record_end("failed", "stage_failed", stage=stage, error=str(exc))
            raise
        seconds = round(time.monotonic() - t0, 3)
        self.run.set_stage(stage, "done", seconds=seconds, produced={k: v.model_dump() for k, v in made.items()},
                           **info)
        self.emit("supervisor", "stage_done", stage=stage, seconds=seconds, **info)

    # reporting an end must not need what may have run out (disk space, for one): each write is
    # tried, and the listener (the terminal) hears of it in any case
    def _record_stage(self, stage: str, status: str, **info: Any) -> None:
        try:
            self.run.set_stage(stage, status, **info)
        except OSError:
            pass

    def _record_end(self, status: str, event: str, **fields: Any) -> None:
        try:
            self.run.update_state(status=status)
        except OSError:
            pass
        record = {"t": round(time.time(), 3), "stream": "supervisor", "event": event, **fields}
        try:
            record = self.run.emit("supervisor", event, **fields)
        except OSError:
            pass
        if self.listener:
            self.listener(record)

    def _out_of_space(self, stage: str, exc: OSError) -> RunError:
        folder = self.run.pads_dir if stage == "pack" else self.run.path / stage
        need = self._space_estimate(stage)
        free = shutil.disk_usage(self.run.path).free
        why = "the file size limit (ulimit -f) was reached" if exc.errno == errno.EFBIG else "the disk is full"
        return RunError(f"{folder}: out of space during {stage}: {why}. This stage writes about "
                        f"{size_text(need)} there ({size_text(free)} free now). Free some space and run "
                        "again: finished work is kept and nothing partial was left behind.")

    def _space_estimate(self, stage: str) -> int:
        """Bytes a stage writes in all (the plan's estimate; from the recipe before there is a plan)."""
        if self.run.has_plan():
            return self.run.plan().estimates.disk_bytes.get(stage, 1 << 20)
        r = self.recipe
        counts = [len(c) for c in r.corners.lists()]
        n = len(plan_sounds(r.corners.names(), r.pitches, r.resolution).sounds)
        sizes = stage_bytes(n, sum(counts), len(r.pitches), r.resolution,
                            counts[0] * counts[1] * counts[2] * counts[3], r.generation.sample_length)
        return sizes.get(stage, 1 << 20)

    def _foreign_files(self) -> list[str]:
        """What the output folder holds that onss did not put there (names; none for a new folder)."""
        try:
            entries = sorted(os.listdir(self.run.path))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError:
            return []  # (unreadable: the write probe explains it)
        return [n for n in entries if n not in ONSS_NAMES and not (n.startswith(".") and n.endswith(TEMP_SUFFIXES))]

    def _sweep_temp_files(self) -> None:
        """Temp files of a killed run (``.<name>.<random>.tmp`` / ``.part``, as :mod:`onss_tui.atomic`
        names them): never finished, so removed. Only in the folders onss makes here."""
        folders = [self.run.path] + [self.run.path / n for n in sorted(ONSS_NAMES) if (self.run.path / n).is_dir()]
        for folder in folders:
            files = folder.glob(".*") if folder == self.run.path else folder.rglob(".*")
            for f in files:
                if f.is_file() and f.name.endswith(TEMP_SUFFIXES) and f.name.count(".") >= 3:
                    f.unlink(missing_ok=True)

    def _check_recipe(self) -> None:
        self.check_recipe_unchanged()
        atomic_write_text(self.run.recipe_path, recipe_yaml(self.recipe))

    def check_recipe_unchanged(self) -> None:
        """A run folder belongs to one recipe: another recipe is refused (a resumed run keeps its plan)."""
        stored = self.run.recipe_path
        if stored.is_file():
            try:
                old = parse_recipe(stored.read_text(), str(stored))
            except Exception:
                old = None
            # (the slurm: section says where the run goes, not what it makes: it may change; so may the
            # sections only late stages read: those stages are redone, the earlier ones kept)
            if old is not None and _what(old) != _what(self.recipe):
                raise RunError(f"{self.run.path}: this run folder was made by a different recipe "
                               f"({stored}). Set another 'output' in the recipe, or delete the folder to start over. "
                               f"(Only the {' and '.join(planning.LATE_SECTIONS)} settings may change in a started "
                               "run.)")
            if old is not None:
                self.changed_sections = [s for s in planning.LATE_SECTIONS
                                         if getattr(old, s) != getattr(self.recipe, s)]


def _what(recipe: Recipe) -> Recipe:
    """What must not change in a started run: all but the slurm section and the late sections."""
    return recipe.model_copy(update={"slurm": None, **{s: type(getattr(recipe, s))() for s in planning.LATE_SECTIONS}})


class stop_on_signals:
    """While a run works: SIGTERM and SIGHUP stop it as ctrl+c does (a :class:`Stopped`), so the
    workers are stopped first and nothing unfinished is marked done. Only in the main thread (a
    runner in a test's thread keeps the process's handlers)."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __enter__(self) -> None:
        self.old: dict[int, Any] = {}
        if sys.platform == "win32" or not in_main_thread():
            return
        for sig in self.SIGNALS:
            old = signal.getsignal(sig)
            if sig == signal.SIGHUP and old == signal.SIG_IGN:  # nohup, or a detached run: keep ignoring it
                continue
            self.old[sig] = old
            signal.signal(sig, _raise_stopped)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self.old.items():
            signal.signal(sig, old)


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped(signum)
