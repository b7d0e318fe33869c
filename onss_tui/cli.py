"""The ``onss`` command line.

    onss model download [--dir DIR] [--from-file TAR]   install the NSynth checkpoint
    onss model info [--checkpoint PATH]                 what is installed, validated
    onss encode FILE... -o DIR [--checkpoint PATH]      stage 1: audio -> <stem>.npy encodings
    onss validate PADS_DIR [--settings FILE]            check a pack against the device's rules
    onss recipe check|import|schema                     recipes (YAML)
    onss run RECIPE [--detach] | status | stop | attach  run a recipe, watch it, stop it
    onss demo | deploy RUN --to MOUNT                    a tiny pack with the preview engine; copy to an SD card
    onss bench [--device cuda]                          measure generation speed (used for projections)
    onss [tui] | onss serve [--port 8000]                the wizard, in the terminal or a browser

User errors print one message naming the file and the fix and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onss_tui.recipe import Recipe

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem the user can fix; printed without a traceback, exit status 2."""


def _positive_int(value: str) -> int:
    """An argparse type: a whole number of 1 or more (batch sizes, steps, counts)."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number; give 1 or more") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: must be 1 or more")
    return n


def _port(value: str) -> int:
    """An argparse type: a TCP port, 1-65535."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: a port is a number, 1-65535 (e.g. --port 8000)") from None
    if not 1 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"{n}: a port is 1-65535 (e.g. --port 8000)")
    return n


def _drop_output(stream) -> None:
    """Send what is still written to ``stream`` to /dev/null: after its reader went away (``| head``)
    the job goes on, and Python's flush at exit does not fail with "Exception ignored ... BrokenPipeError"."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())
        finally:
            os.close(null)
    except (OSError, ValueError, AttributeError):  # (not a real file: nothing is left to fail at exit)
        pass


def _open_closed_std_fds() -> None:
    """``onss run R >&-``: a closed stdin, stdout or stderr becomes /dev/null, so output is dropped
    rather than failing, and no file the run opens gets descriptor 1 or 2 (nor its workers')."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))  # noqa: SIM115


def _user_errors() -> tuple[type[BaseException], ...]:
    from onss_tui.audio.io import AudioError
    from onss_tui.cluster.scheduler import SlurmError
    from onss_tui.device.deploy import DeployError
    from onss_tui.model.checkpoint import CheckpointError
    from onss_tui.model.install import InstallError
    from onss_tui.pipeline.context import RunError
    from onss_tui.pipeline.prepare import PrepareError
    from onss_tui.pipeline.rundir import RunLocked
    from onss_tui.recipe import RecipeError

    return (UserError, CheckpointError, InstallError, AudioError, RecipeError, PrepareError, RunError, RunLocked,
            DeployError, SlurmError)


# --------------------------------------------------------------------------------------------
# Progress: Rich on a terminal, plain lines otherwise


class ByteProgress:
    """A progress callback (done, total) for byte counts."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._rich = None
        self._task = None
        self._last_line = 0.0

    def __enter__(self) -> ByteProgress:
        if self.tty:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._rich = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), TimeRemainingColumn(), console=Console(file=self.stream))
            self._rich.__enter__()
            self._task = self._rich.add_task(self.label, total=None)
        return self

    def __call__(self, done: int, total: int | None) -> None:
        if self._rich is not None:
            self._rich.update(self._task, completed=done, total=total)
            return
        now = time.monotonic()
        if now - self._last_line >= 5 or (total and done >= total):
            self._last_line = now
            pct = f" ({100 * done / total:.1f}%)" if total else ""
            try:
                print(f"{self.label}: {done / 1e6:,.1f} MB{pct}", file=self.stream, flush=True)
            except OSError:  # a closed pipe: the download goes on without its progress lines
                _drop_output(self.stream)

    def __exit__(self, *exc) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)


# --------------------------------------------------------------------------------------------
# onss model ...


def cmd_model_download(args: argparse.Namespace) -> int:
    from onss_tui.model import install

    models_dir = Path(args.dir).expanduser() if args.dir else install.default_models_dir()
    target = install.default_checkpoint(models_dir)
    if not args.force and not args.from_file:
        info = install.checkpoint_info(target, verify=False)
        if info.installed and info.problem is None:
            print(f"The checkpoint is already installed: {info.prefix}\n(use --force to install it again)")
            return 0
    if args.from_file:
        tar = Path(args.from_file).expanduser()
    else:
        tar = models_dir / "wavenet-ckpt.tar"
        print(f"Downloading {args.url}\n  to {tar} (resumable: run again if it is cut off)", file=sys.stderr)
        with ByteProgress("download") as progress:
            install.download(args.url, tar, progress)
    print(f"Unpacking and checking {tar} ...", file=sys.stderr)
    with ByteProgress("unpack") as progress:
        prefix = install.install_from_tar(tar, models_dir, progress=progress)
    if not args.from_file and not args.keep_tar:
        tar.unlink(missing_ok=True)
    print(f"Installed and verified: {prefix}")
    return 0


def cmd_model_info(args: argparse.Namespace) -> int:
    from onss_tui.model import install

    path = Path(args.checkpoint).expanduser() if args.checkpoint else None
    info = install.checkpoint_info(path, verify=not args.no_verify)
    if args.json:
        print(json.dumps({
            "prefix": str(info.prefix), "installed": info.installed, "valid": info.valid,
            "problem": info.problem, "warnings": info.warnings, "files": info.files,
            "tensors": info.tensors, "model_parameters": info.model_parameters, "has_ema": info.has_ema,
        }, indent=2))
        return 0 if info.installed and info.problem is None else EXIT_USER_ERROR
    if not info.installed:
        print(f"No NSynth checkpoint at {info.prefix}.")
        print("Install it with:  onss model download      (about 1 GB; or --from-file wavenet-ckpt.tar)")
        return EXIT_USER_ERROR if path else 0
    print(f"checkpoint  {info.prefix}")
    for name, size in info.files.items():
        print(f"  {name:45s} {size:>15,} B")
    if info.problem:
        print(f"problem     {info.problem}")
        return EXIT_USER_ERROR
    status = ("verified (every model tensor present, right shape, CRC32C ok)" if info.valid
              else "not verified (--no-verify)")
    print(f"tensors     {info.tensors} in the bundle; model parameters {info.model_parameters:,}")
    print(f"EMA shadows {'present (--ema loads them)' if info.has_ema else 'absent'}")
    print(f"status      {status}")
    for w in info.warnings:
        print(f"note        {w}")
    return 0


# --------------------------------------------------------------------------------------------
# onss encode


def _checkpoint_arg(value: str | None) -> Path:
    from onss_tui.model import install

    if value:
        return Path(value).expanduser()
    prefix = install.default_checkpoint()
    if not prefix.with_name(prefix.name + ".index").is_file():
        raise UserError(f"no checkpoint given and none installed at {prefix.parent}. "
                        "Install it with 'onss model download' or pass --checkpoint PATH.")
    return prefix


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from onss_tui.atomic import atomic_save_npy
    from onss_tui.audio.io import fit_length, load
    from onss_tui.model import NSynth

    if args.length <= 0 or args.length % 512:
        raise UserError(f"--length {args.length}: must be a positive multiple of 512 (64000 is 4 s at 16 kHz).")
    files = [Path(f).expanduser() for f in args.files]
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise UserError(f"{f}: has the same name as {stems[f.stem]}; both would write {f.stem}.npy. Rename one.")
        stems[f.stem] = f
    out_dir = Path(args.output).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder. Choose another -o.")
    # read everything first: a bad file stops the run before any model work
    audio = [fit_length(load(f), args.length) for f in files]
    device = args.device or _device_default()
    model = NSynth.load(_checkpoint_arg(args.checkpoint), device=device, precision=args.precision, ema=args.ema)
    out_dir.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(files), args.batch_size):
        batch = np.stack(audio[start : start + args.batch_size])
        enc = model.encode(batch)  # [b, frames, 16]
        for f, e in zip(files[start : start + args.batch_size], enc, strict=True):
            dest = out_dir / f"{f.stem}.npy"
            atomic_save_npy(dest, e.astype(np.float32))
            print(f"{f} -> {dest}  {list(e.shape)}")
    return 0


# --------------------------------------------------------------------------------------------
# onss recipe ...


def cmd_recipe_check(args: argparse.Namespace) -> int:
    from onss_tui.recipe import load_recipe

    path = Path(args.file).expanduser()
    r = load_recipe(path)
    base = path.resolve().parent
    counts = [len(c) for c in r.corners.lists()]
    combos = counts[0] * counts[1] * counts[2] * counts[3]
    print(f"{path}: recipe {r.name!r} is valid")
    print(f"  corners   {' / '.join(', '.join(c) for c in r.corners.names())}  ({combos} pad files)")
    print(f"  pitches   {r.pitches}, resolution {r.resolution}, engine {r.engine}")
    print(f"  inputs    {r.inputs_dir(base)}")
    print(f"  output    {r.output_dir(base)}")
    return 0


def cmd_recipe_import(args: argparse.Namespace) -> int:
    from onss_tui.recipe import import_original_settings, save_recipe

    r = import_original_settings(Path(args.settings).expanduser(), name=args.name, inputs=args.inputs)
    out = Path(args.output).expanduser() if args.output else Path("recipes") / f"{r.name}.yaml"
    if out.exists() and not args.force:
        raise UserError(f"{out}: already exists; pass --force to replace it or -o for another file.")
    save_recipe(r, out)
    print(f"{out}: written. Corners: NW -> top_left, NE -> top_right, SE -> bottom_left, SW -> bottom_right "
          "(where the original really placed them).")
    return 0


def cmd_recipe_schema(args: argparse.Namespace) -> int:
    from onss_tui.recipe import recipe_schema

    print(recipe_schema())
    return 0


# --------------------------------------------------------------------------------------------
# onss run / status / stop / demo / deploy


class EventPrinter:
    """Shows run events: Rich progress on a terminal, plain lines otherwise, or JSON lines."""

    def __init__(self, json_lines: bool = False, stream=None):
        self.json = json_lines
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() and not json_lines
        self.stopped = False  # the output failed (a closed pipe, a gone terminal): print nothing more
        self._last: dict[str, float] = {}
        self._progress = None
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> EventPrinter:
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                      console=Console(file=self.stream))
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        progress, self._progress = self._progress, None  # (later lines are plain prints)
        if progress is not None:
            try:
                progress.__exit__(*exc)
            except OSError:
                self._stop()

    def _stop(self) -> None:
        """Output failed: the job goes on; what would have been printed is dropped."""
        self.stopped = True
        _drop_output(self.stream)
        progress, self._progress = self._progress, None
        if progress is not None:
            try:
                progress.stop()
            except Exception:  # noqa: BLE001 (its last render; the output is gone anyway)
                pass

    def _line(self, text: str) -> None:
        if self.stopped:
            return
        try:
            if self._progress is not None:  # paths and reasons may hold [...]: never Rich markup
                self._progress.console.print(text, markup=False, highlight=False)
            else:
                print(text, file=self.stream, flush=True)
        except OSError:  # BrokenPipeError (| head) and the like never stop the run
            self._stop()

    def __call__(self, e: dict) -> None:
        if self.stopped:
            return
        if self.json:
            try:
                print(json.dumps(e), file=self.stream, flush=True)
            except OSError:
                self._stop()
            return
        kind, stream = e["event"], e["stream"]
        if kind == "stage_start":
            self._line(f"[{e['stage']}] started")
        elif kind == "stage_done":
            extra = ", ".join(f"{k} {v}" for k, v in e.items() if k not in ("t", "stream", "event", "stage"))
            self._line(f"[{e['stage']}] done ({extra})")
        elif kind == "stage_skip":
            self._line(f"[{e['stage']}] already done")
        elif kind == "stage_redo":
            self._line(f"[{e['stage']}] again: {e['reason']}")
        elif kind == "stage_failed":
            self._line(f"[{e['stage']}] FAILED")
        elif kind == "warning":
            self._line(f"[{stream}] warning: {e['message']}")
        elif kind == "run_done":
            self._line(f"pads:     {e['pads']}\nsettings: {e['settings']}")
        elif kind == "progress":
            if "batch" in e:
                label, done, total = f"{stream} batch {e['batch']}/{e['batches']}", e["sample"], e["samples"]
                info = f"{e['samples_per_s']:,.0f} samples/s" if e.get("samples_per_s") else ""
            else:
                label, done, total, info = stream, e["done"], e["total"], ""
            if self._progress is not None:
                key = stream
                try:
                    if key not in self._tasks:
                        self._tasks[key] = self._progress.add_task(label, total=total, info=info)
                    self._progress.update(self._tasks[key], description=label, completed=done, total=total,
                                          info=info)
                except OSError:
                    self._stop()
            elif time.monotonic() - self._last.get(stream, 0) >= 5 or done >= total:
                self._last[stream] = time.monotonic()
                self._line(f"[{label}] {done}/{total} {info}".rstrip())


def _run_recipe(recipe_path: Path, json_lines: bool, device: str | None) -> int:
    from onss_tui.pipeline.runner import Runner, stop_on_signals

    runner = Runner.from_file(recipe_path, device=device)
    with stop_on_signals(), EventPrinter(json_lines) as printer:  # SIGTERM stops it as ctrl+c does
        runner.listener = printer
        run_dir = runner.execute()
    if not json_lines:
        from onss_tui.pipeline.engines import engine_for

        plan = runner.run.plan()
        preview = (" (PREVIEW engine: not NSynth; for checking layout and corners)"
                   if engine_for(plan, "cpu").preview_note else "")
        printer._line(f"Done{preview}: {run_dir}\nCheck it on the device: onss deploy {run_dir} --to /media/SDCARD")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from onss_tui.pipeline.runner import start_detached
    from onss_tui.recipe import load_recipe

    path = Path(args.recipe).expanduser()
    recipe = load_recipe(path)  # every recipe problem is reported here, before anything starts
    if args.wait and not args.slurm:
        raise UserError("--wait is for --slurm (a local run waits anyway; --detach runs it in the background)")
    if args.slurm:
        return _slurm_dry_run(path, recipe, args) if args.dry_run else _slurm_run(path, recipe, args)
    if args.dry_run:
        return _dry_run(path, args.json, args.device)
    if args.detach:
        run_dir, pid = start_detached(path, args.device)
        print(f"Started in the background (pid {pid}); it survives this SSH session.\n"
              f"  watch:  onss status {run_dir}   (or onss attach {run_dir})\n  stop:   onss stop {run_dir}\n"
              f"  log:    {run_dir / 'logs' / 'supervisor.log'}")
        return 0
    return _run_recipe(path, args.json, args.device)


def _dry_run(path: Path, json_out: bool, device: str | None) -> int:
    from onss_tui.pipeline.dryrun import dry_run, dry_run_text
    from onss_tui.pipeline.runner import Runner

    report = dry_run(Runner.from_file(path, device=device))
    print(json.dumps(report, indent=2) if json_out else dry_run_text(report))
    return 0


SLURM_EXAMPLE = """\
slurm:
  partition: gpu        # sinfo lists the partitions
  time: "12:00:00"      # each job's time limit
  max_tasks: 4          # generate tasks at once (one GPU each)"""


def _need_slurm_section(path: Path, recipe: Recipe) -> None:
    if recipe.slurm is None:
        raise UserError(f"{path}: --slurm needs a 'slurm:' section in the recipe (where and how to submit); "
                        f"add one, e.g.\n{SLURM_EXAMPLE}\n(docs/slurm.md has the other fields)")


def _slurm_run(path: Path, recipe: Recipe, args: argparse.Namespace) -> int:
    """Submit the run's jobs and return (or, with --wait, follow them to the end)."""
    _need_slurm_section(path, recipe)
    from onss_tui.cluster.submit import LeaseHeld, follow, submit
    from onss_tui.pipeline.runner import Runner

    runner = Runner.from_file(path)
    run_dir = runner.run.path
    try:
        submitted = submit(runner)
    except LeaseHeld as exc:
        print(f"onss: {exc}", file=sys.stderr)
        if not args.wait or not exc.jobs:
            return 0
        submitted = None
    else:
        if submitted is None:
            print(f"{run_dir}: the run is already done; nothing was submitted.\n  pads:     {runner.run.pads_dir}\n"
                  f"  settings: {runner.run.settings_path}")
            return 0
        ids = ", ".join(f"{role} {job}" for role, job in submitted.jobs.items())
        tasks = f" (generate tasks {_ranges(submitted.tasks)})" if submitted.tasks else ""
        print(f"Submitted to Slurm: {ids}{tasks}", file=sys.stderr if args.json else sys.stdout)
        if not args.wait:
            print(f"  watch:  onss status {run_dir}   (or onss attach {run_dir})\n  stop:   onss stop {run_dir}\n"
                  f"  logs:   {run_dir / 'logs'}/slurm-*.log\n"
                  f"  wait:   onss run {path} --slurm --wait   (submits nothing new while the jobs live)")
            return 0
    with EventPrinter(args.json) as printer:
        outcome = follow(run_dir, printer)
    if outcome == "done":
        if not args.json:
            printer._line(f"Done: {run_dir}\nCheck it on the device: onss deploy {run_dir} --to /media/SDCARD")
        return 0
    state = runner.run.state()
    errors = [f"{s}: {st.error}" for s, st in state.stages.items() if st.error]
    raise UserError(f"{run_dir}: the run's Slurm jobs ended and the run is {outcome}" +
                    (f" ({errors[-1]})" if errors else "") + f". See {run_dir / 'logs'}; run again with --slurm to "
                    "submit only what is missing.")


def _ranges(values: list[int]) -> str:
    """0,1,2,5 -> '0-2,5'."""
    out: list[str] = []
    for v in sorted(values):
        if out and out[-1].split("-")[-1] == str(v - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{v}"
        else:
            out.append(str(v))
    return ",".join(out)


def _slurm_dry_run(path: Path, recipe: Recipe, args: argparse.Namespace) -> int:
    _need_slurm_section(path, recipe)
    from onss_tui.pipeline.dryrun import slurm_dry_run, slurm_dry_run_text
    from onss_tui.pipeline.runner import Runner

    report = slurm_dry_run(Runner.from_file(path), python=sys.executable)
    print(json.dumps(report, indent=2) if args.json else slurm_dry_run_text(report))
    return 0


def _run_dir_arg(value: str | None) -> Path:
    if value:
        p = Path(value).expanduser()
        if p.is_file() and p.suffix in (".yaml", ".yml"):
            from onss_tui.pipeline.runner import run_dir_of

            return run_dir_of(p)
        return p
    runs = sorted(Path("runs").glob("*/state.json"), key=lambda f: f.stat().st_mtime)
    if not runs:
        raise UserError("no run given and none under ./runs; pass the run folder (the recipe's 'output').")
    return runs[-1].parent


def cmd_status(args: argparse.Namespace) -> int:
    from onss_tui.pipeline.rundir import STAGES, RunDir
    from onss_tui.vocab import RunStatus

    INTERRUPTED: RunStatus = "interrupted"

    run = RunDir(_run_dir_arg(args.run))
    if not run.state_path.is_file():
        raise UserError(f"{run.path}: not a run folder (no state.json). Pass the folder a recipe's 'output' names.")
    state = run.state()
    pid = run.locked_by()
    from onss_tui.cluster.submit import slurm_side

    slurm = slurm_side(run.path)
    if args.json:
        print(json.dumps({**state.model_dump(mode="json"), "active_pid": pid,
                          **({"slurm": slurm} if slurm is not None else {})}, indent=2))
        return 0
    if slurm is not None and slurm.get("jobs"):
        alive = f"running on Slurm ({len(slurm['jobs'])} job(s) or task(s) queued)"
    elif pid:
        alive = f"running (pid {pid})"
    elif state.status == "running" and slurm is not None:
        alive = f"{INTERRUPTED} (no Slurm job of it is queued; run the recipe again with --slurm to resume)"
    elif state.status == "running":
        alive = f"{INTERRUPTED} (no process is working on it; run the recipe again to resume)"
    else:
        alive = state.status or "?"
    print(f"{run.path}: {state.name or '?'} [{state.engine or '?'}]  {alive}")
    if run.state_damaged():
        print(f"  {run.state_path} cannot be read (damaged); running the recipe again rebuilds it from the "
              "files, redoing only what their done markers do not certify")
    for stage in STAGES:
        info = state.stage(stage)
        extra = f"  {info.error}" if info.error else ""
        print(f"  {stage:12s} {info.status}{extra}")
    last = {}
    for e in run.events(streams=("generate-w",)):
        if e["event"] == "progress":
            last[e["stream"]] = e
    labels = {e["stream"]: e.get("label") for e in run.events(streams=("generate-w",)) if e["event"] == "start"}
    for stream, e in sorted(last.items()):
        if "batch" in e:
            rate = f", {e['samples_per_s']:,.0f} samples/s" if e.get("samples_per_s") else ""
            where = f" ({labels[stream]})" if labels.get(stream) else ""
            print(f"  {stream}{where}: batch {e['batch']}/{e['batches']}, sample {e['sample']}/{e['samples']}{rate}")
    if slurm is not None:
        _print_slurm(slurm)
    return 0


def _print_slurm(slurm: dict) -> None:
    from onss_tui.cluster.submit import job_lines

    for line in job_lines(slurm):
        print(f"  {line}")


def cmd_stop(args: argparse.Namespace) -> int:
    from onss_tui.pipeline.rundir import RunDir

    run = RunDir(_run_dir_arg(args.run))
    if (run.path / "slurm.json").is_file() and not run.locked_by():
        from onss_tui.cluster.submit import stop

        alive = stop(run.path)
        print(f"Cancelled the run's Slurm jobs ({', '.join(alive)}); none is left in the queue. Finished work is "
              "kept; run the recipe again with --slurm to submit only what is missing." if alive else
              f"{run.path}: no Slurm job of this run is queued.")
        return 0
    pid = run.locked_by()
    if not pid or pid < 0:
        print(f"{run.path}: no run is active.")
        return 0
    os.killpg(os.getpgid(pid), signal.SIGTERM) if args.group else os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if run.locked_by() is None:
            break
        time.sleep(0.1)
    print(f"Stopped pid {pid}. Finished work is kept; run the recipe again to resume.")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from onss_tui.pipeline.demo import make_demo

    out = Path(args.out).expanduser()
    recipe = make_demo(out)
    print(f"Demo instruments in {out / 'audio'}, recipe {recipe}")
    code = _run_recipe(recipe, args.json, "cpu")
    if code == 0 and not args.json:
        from onss_tui.device.settings import validate_pack

        findings = validate_pack(out / "run" / "settings.json", out / "run" / "pads")
        errors = [f for f in findings if f.level == "error"]
        print(f"Validated: {len(errors)} errors, {len(findings) - len(errors)} warnings.")
        return 1 if errors else 0
    return code


def cmd_attach(args: argparse.Namespace) -> int:
    from onss_tui.tui.app import create_app

    run_dir = _run_dir_arg(args.run)
    if not (run_dir / "state.json").is_file():
        raise UserError(f"{run_dir}: not a run folder (no state.json).")
    _need_terminal("attach", f"or watch it with `onss status {run_dir}`")
    create_app(run_dir=run_dir).run()
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from onss_tui import bench
    from onss_tui.pipeline.throughput import PRECISION_ORDER, save_result

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("no CUDA device is visible to torch: run `onss bench --device cpu`, or check the driver "
                        "with `onss` (environment screen).")
    cuda = device.startswith("cuda")
    batches = args.batch or ([1, 64, 512, 2048, 4096, 8192] if cuda else [1, 8])
    precisions = args.precision or (list(PRECISION_ORDER) if cuda else ["fp32"])
    steps = args.steps or (256 if cuda else 32)
    golden = Path(args.golden) if args.golden else None
    if golden is not None and not (golden / "nsynth_reference.npz").is_file():
        raise UserError(f"{golden}: no nsynth_reference.npz there; --golden takes the golden reference folder "
                        "(shared/golden beside the project)")
    samples = args.fidelity_samples if args.fidelity_samples is not None else (4096 if cuda else 256)
    for fused in {"triton", "persistent"} & set(args.kernels or ()):
        from onss_tui.engine import kernels

        why = kernels.why_unavailable(torch.device(device))
        if why:
            raise UserError(f"--kernels {fused}: {why}.")
    result = bench.run(device, precisions, batches, steps, encoder=not args.no_encoder,
                       progress=lambda line: print(line, file=sys.stderr, flush=True),
                       golden_dir=golden, fidelity_samples=samples, kernels=args.kernels)
    print(bench.table(result))
    if not args.no_save:
        print(f"\nSaved for the wizard's projections: {save_result(result)}")
    if args.json:
        from onss_tui.atomic import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return 0


def _app_kwargs(args: argparse.Namespace) -> dict:
    return {"workdir": Path(args.workdir).expanduser().resolve()} if getattr(args, "workdir", None) else {}


def _need_terminal(command: str, instead: str = "or use `onss run RECIPE`") -> None:
    """The wizard on a pipe or /dev/null would wait forever for keys: refuse, saying what to do."""
    if os.environ.get("TEXTUAL_DRIVER"):  # onss serve runs it with the browser as its terminal
        return
    if not (sys.stdin and sys.stdin.isatty() and sys.stdout and sys.stdout.isatty()):
        raise UserError(f"`onss {command}`: the wizard needs a terminal, and stdin or stdout is not one. "
                        f"Run it in an SSH session (ssh -t HOST onss {command}) {instead}.")


def cmd_tui(args: argparse.Namespace) -> int:
    from onss_tui.tui.app import create_app

    _need_terminal("tui")
    create_app(**_app_kwargs(args)).run()
    return 0


def _check_serve_address(host: str, port: int) -> None:
    """Warn when the wizard would be open to the network; refuse a port that is taken, before serving."""
    import errno
    import ipaddress
    import socket

    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: not a name or address of this machine ({exc.strerror}); "
                        "leave it out to serve on localhost, and use ssh -L") from None
    if not all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos):
        print(f"onss: warning: --host {host}: the wizard will be reachable from the network with no password; "
              f"anyone who reaches port {port} can run recipes and write files as you. Safer: leave out --host "
              f"(localhost) and forward the port over SSH: ssh -L {port}:localhost:{port} THIS-HOST, then open "
              f"http://localhost:{port}", file=sys.stderr, flush=True)
    for family, kind, proto, _, address in infos:
        try:
            sock = socket.socket(family, kind, proto)
        except OSError:  # (no IPv6 here: the server skips it too)
            continue
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise UserError(f"port {port} is in use on {host} (another onss serve, or another server); "
                                    f"choose a free one with --port N, e.g. --port {port + 1 if port < 65535 else 8000}"
                                    ) from None
                if exc.errno == errno.EACCES:
                    raise UserError(f"port {port}: only root may listen on ports below 1024; "
                                    "use --port N with N from 1024 up, e.g. --port 8000") from None
                raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); check --host, or leave it "
                                "out to serve on localhost") from None


def cmd_serve(args: argparse.Namespace) -> int:
    _check_serve_address(args.host, args.port)
    try:
        from textual_serve.server import Server
    except ImportError:
        raise UserError("`onss serve` needs the serve extra: pip install 'onss-tui[serve]'") from None
    import shlex

    command = shlex.join([sys.executable, "-m", "onss_tui.cli", "tui", "--workdir", str(Path.cwd())])
    print(f"Serving the onss wizard on http://{args.host}:{args.port} (from your laptop: "
          f"ssh -L {args.port}:localhost:{args.port} THIS-HOST, then open http://localhost:{args.port})", flush=True)
    Server(command, host=args.host, port=args.port, title="onss").serve()
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    import shlex

    from onss_tui.device.deploy import deploy

    report = deploy(_run_dir_arg(args.run), Path(args.to).expanduser(),
                    progress=lambda name, i, n: print(f"  copied {name} ({i}/{n})"), prune=args.prune)
    mb = lambda n: f"{n / 1e6:,.1f} MB"  # noqa: E731
    if report.unchanged:
        print(f"The card already has this pack: nothing written ({report.pads_dir}, {report.settings}).")
    else:
        print(f"Pads in {report.pads_dir}: {len(report.copied)} copied, {len(report.skipped)} already there.")
        for b in report.backups:
            print(f"Backed up {b}")
        print(f"Settings written: {report.settings}" if report.settings_written
              else f"Settings already there: {report.settings}")
    sizes = dict(report.unused)
    if report.removed:
        print(f"Removed {len(report.removed)} .bin files these settings do not use "
              f"({mb(sum(sizes[n] for n in report.removed))}) from {report.pads_dir}:")
        for name in report.removed:
            print(f"  {name} ({mb(sizes[name])})")
    left = [(n, size) for n, size in report.unused if n not in report.removed]
    if left:
        print(f"{len(left)} .bin files in {report.pads_dir} are not used by these settings "
              f"({mb(sum(size for _, size in left))}), pads of an earlier pack:")
        for name, size in left:
            print(f"  {name} ({mb(size)})")
        if not args.prune:
            print("Remove them with: " + shlex.join(["onss", "deploy", args.run, "--to", args.to, "--prune"]))
    return 0


# --------------------------------------------------------------------------------------------
# onss validate


def cmd_validate(args: argparse.Namespace) -> int:
    from onss_tui.device.settings import validate_pack

    pads = Path(args.pads_dir).expanduser()
    settings = Path(args.settings).expanduser() if args.settings else pads / "settings.json"
    if not settings.is_file() and not args.settings and (pads.parent / "settings.json").is_file():
        settings = pads.parent / "settings.json"  # a run folder: <run>/pads and <run>/settings.json
    pitches = None
    if args.pitches:
        try:
            pitches = [int(p) for p in args.pitches.split(",")]
        except ValueError:
            raise UserError(f"--pitches {args.pitches!r}: give MIDI notes separated by commas, e.g. 24,28,32") from None
    findings = validate_pack(settings, pads, resolution=args.resolution, pitches=pitches, content=not args.no_content)
    errors = [f for f in findings if f.level == "error"]
    if args.json:
        print(json.dumps([f.__dict__ for f in findings], indent=2))
    else:
        for f in findings:
            print(f)
        verdict = "INVALID: the device would crash, stay silent or mis-play" if errors else "valid"
        print(f"{verdict} ({len(errors)} errors, {len(findings) - len(errors)} warnings): {settings} + {pads}")
    return 1 if errors else 0


# --------------------------------------------------------------------------------------------
# The parser


def _device_default() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # pragma: no cover
        return "cpu"


def build_parser() -> argparse.ArgumentParser:
    from onss_tui.model.install import CHECKPOINT_URL
    from onss_tui.vocab import KERNELS, PRECISIONS

    parser = argparse.ArgumentParser(prog="onss", description="Open NSynth Super studio")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    model = sub.add_parser("model", help="install and inspect the NSynth checkpoint")
    msub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    dl = msub.add_parser("download", help="download, check and install wavenet-ckpt")
    dl.add_argument("--dir", help="models folder (default: the user data folder)")
    dl.add_argument("--from-file", metavar="TAR", help="install from a wavenet-ckpt.tar you already have")
    dl.add_argument("--url", default=CHECKPOINT_URL, help=argparse.SUPPRESS)
    dl.add_argument("--force", action="store_true", help="install again even if present")
    dl.add_argument("--keep-tar", action="store_true", help="keep the downloaded tar")
    dl.set_defaults(func=cmd_model_download)
    info = msub.add_parser("info", help="what is installed, validated")
    info.add_argument("--checkpoint", help="a checkpoint prefix, .index/.data file or folder (default: installed)")
    info.add_argument("--no-verify", action="store_true", help="skip the CRC check of the model tensors")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_model_info)

    enc = sub.add_parser("encode", help="audio files -> NSynth encodings (<stem>.npy, float32 [frames, 16])")
    enc.add_argument("files", nargs="+", help="audio files in any format soundfile reads")
    enc.add_argument("-o", "--output", required=True, help="output folder")
    enc.add_argument("--checkpoint", help="checkpoint prefix, file or folder (default: installed)")
    enc.add_argument("--length", type=int, default=64000, help="samples at 16 kHz, padded or trimmed (default 64000)")
    enc.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    enc.add_argument("--precision", default="fp32", choices=PRECISIONS)
    enc.add_argument("--ema", action="store_true", help="use the EMA weights instead of the raw ones")
    enc.add_argument("--batch-size", type=_positive_int, default=8)
    enc.set_defaults(func=cmd_encode)

    rec = sub.add_parser("recipe", help="check, import and describe recipes")
    rsub = rec.add_subparsers(dest="recipe_command", metavar="ACTION", required=True)
    chk = rsub.add_parser("check", help="validate a recipe; every problem with file:line:col")
    chk.add_argument("file")
    chk.set_defaults(func=cmd_recipe_check)
    imp = rsub.add_parser("import", help="convert the original pipeline's audio/settings.json")
    imp.add_argument("settings")
    imp.add_argument("-o", "--output", help="recipe file to write (default: recipes/<name>.yaml)")
    imp.add_argument("--name", help="recipe name (default: from the folder)")
    imp.add_argument("--inputs", default="audio", help="the folder of input notes, relative to the recipe")
    imp.add_argument("--force", action="store_true", help="replace an existing recipe file")
    imp.set_defaults(func=cmd_recipe_import)
    sch = rsub.add_parser("schema", help="print the recipe JSON Schema (for editors)")
    sch.set_defaults(func=cmd_recipe_schema)

    run = sub.add_parser("run", help="run a recipe (resumes where it stopped)")
    run.add_argument("recipe")
    run.add_argument("--detach", action="store_true", help="run in the background; survives the SSH session")
    run.add_argument("--json", action="store_true", help="progress as JSON event lines (with --dry-run: the report)")
    run.add_argument("--dry-run", action="store_true",
                     help="check every note and show the plan (work, workers, time, disk) without running or "
                          "writing anything")
    run.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    run.add_argument("--slurm", action="store_true",
                     help="submit the run to Slurm, as the recipe's slurm: section says, and return (with "
                          "--dry-run: show the jobs it would submit)")
    run.add_argument("--wait", action="store_true",
                     help="with --slurm: follow the jobs until the run is done or failed, printing progress")
    run.set_defaults(func=cmd_run)
    st = sub.add_parser("status", help="the stages and progress of a run")
    st.add_argument("run", nargs="?", help="run folder or recipe (default: the newest under ./runs)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    sp = sub.add_parser("stop", help="stop a running run (it resumes when run again)")
    sp.add_argument("run", nargs="?", help="run folder or recipe")
    sp.add_argument("--group", action="store_true", help="also stop its worker processes")
    sp.set_defaults(func=cmd_stop)
    dm = sub.add_parser("demo", help="synthetic instruments -> a validated pack with the preview engine")
    dm.add_argument("--out", default="onss-demo", help="folder for the demo (default ./onss-demo)")
    dm.add_argument("--json", action="store_true")
    dm.set_defaults(func=cmd_demo)
    at = sub.add_parser("attach", help="the live dashboard of a run (leaving it never stops the run)")
    at.add_argument("run", nargs="?", help="run folder or recipe (default: the newest under ./runs)")
    at.set_defaults(func=cmd_attach)
    dp = sub.add_parser("deploy", help="copy a finished run's pads and settings to a mounted SD card")
    dp.add_argument("run", help="run folder or recipe")
    dp.add_argument("--to", required=True, help="mount point of the card's root file system")
    dp.add_argument("--prune", action="store_true",
                    help="then remove the .bin files in the pack's data folder that the new settings do not use")
    dp.set_defaults(func=cmd_deploy)

    bn = sub.add_parser("bench", help="measure generation speed here; the wizard projects run times from it")
    bn.add_argument("--device", help="cuda, cuda:1 or cpu (default: cuda when there is one)")
    bn.add_argument("--precision", nargs="+", choices=PRECISIONS,
                    help="default: bf16 tf32 fp32 on a GPU, fp32 on the CPU")
    bn.add_argument("--batch", nargs="+", type=_positive_int,
                    help="batch sizes (default: 1 64 512 2048 4096 8192 on a GPU)")
    bn.add_argument("--kernels", nargs="+", choices=KERNELS,
                    help="layer steps to time: PyTorch ops, fused Triton kernels, many steps a launch (batches up to "
                         "64) (default: torch and triton where they run)")
    bn.add_argument("--steps", type=_positive_int, help="timed decoder steps per measurement")
    bn.add_argument("--no-encoder", action="store_true", help="skip the encoder measurement")
    bn.add_argument("--golden", help="the golden reference folder: adds the fidelity table (KL to fp32, top-1)")
    bn.add_argument("--fidelity-samples", type=_positive_int,
                    help="teacher-forced steps per golden clip (default 4096 GPU, 256 CPU)")
    bn.add_argument("--no-save", action="store_true", help="do not store the result for the wizard")
    bn.add_argument("--json", help="also write the result to this file")
    bn.set_defaults(func=cmd_bench)
    tu = sub.add_parser("tui", help="the wizard (what `onss` opens on a terminal)")
    tu.add_argument("--workdir", help="where recipes/ and runs/ go (default: the current folder)")
    tu.set_defaults(func=cmd_tui)
    sv = sub.add_parser("serve", help="serve the wizard in a browser via textual-serve (extra: serve)")
    sv.add_argument("--host", default="localhost", help="bind address (default localhost: use ssh -L)")
    sv.add_argument("--port", type=_port, default=8000)
    sv.set_defaults(func=cmd_serve)

    val = sub.add_parser("validate", help="check pad files and the device settings.json before deploying")
    val.add_argument("pads_dir", help="folder of .bin pad files (or a run folder's pads/)")
    val.add_argument("--settings", help="the device settings.json (default: beside or above the pads)")
    val.add_argument("--resolution", type=_positive_int, help="the resolution the pads were made with")
    val.add_argument("--pitches", help="the pitches the pads were made with, comma-separated, in order")
    val.add_argument("--no-content", action="store_true", help="skip the row content checks (faster)")
    val.add_argument("--json", action="store_true", help="findings as JSON")
    val.set_defaults(func=cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _open_closed_std_fds()
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        if not sys.stdin.isatty() or not sys.stdout.isatty():
            parser.print_help()
            return 0
        from onss_tui.tui.app import create_app

        create_app().run()
        return 0
    try:
        code = func(args)
        sys.stdout.flush()  # a closed pipe shows here, not as "Exception ignored" at exit
        return code
    except BrokenPipeError:  # `onss ... | head`: the reader has what it wanted
        _drop_output(sys.stdout)
        return 128 + signal.SIGPIPE
    except _user_errors() as exc:
        print(f"onss: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"onss: interrupted ({signal.Signals(signum).name}); what was finished is kept, nothing unfinished "
              "is marked done. Run the same command again to resume.", file=sys.stderr)
        return 128 + signum
    except RuntimeError as exc:
        if "CUDA" in str(exc) or "device" in str(exc):
            print(f"onss: error: {exc}", file=sys.stderr)
            return EXIT_USER_ERROR
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
