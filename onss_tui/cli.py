"""The ``onss`` command line (every command: docs/cli.md).

    onss model download [--dir DIR] [--from-file TAR]   install the NSynth checkpoint
    onss model info [--checkpoint PATH] [--json]        what is installed, validated (exit 1: nothing is)
    onss encode FILE... -o DIR [--checkpoint PATH]      stage 1: audio -> <stem>.npy encodings
    onss validate RUN|PADS_DIR [--settings FILE]        check a pack against the device's rules
    onss recipe new|check|import|schema                 recipes (YAML)
    onss run RECIPE [--detach] | status | stop | attach  run a recipe, watch it, stop it
    onss demo | deploy RUN --to MOUNT                    a tiny pack with the preview engine; copy to an SD card
    onss bench [--device cuda]                          measure generation speed (used for projections)
    onss env [--json]                                   python, torch, GPUs, checkpoint, Slurm, MP3 support
    onss completion bash|zsh|fish                       a shell completion script
    onss [tui] | onss serve [--port 8000]                the wizard, in the terminal or a browser

Conventions: results on stdout, progress and messages on stderr; every read command has --json;
a closed pipe (``| head``) is never a traceback; ``onss --version``.
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
EXIT_NOT_INSTALLED = 1  # `onss model info`: no checkpoint is installed (a state, not a mistake)


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
    from onss_tui.errors import user_errors

    return (UserError, *user_errors())


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
    # exit status: 0 installed and sound; 1 nothing installed (a state, as `test -e`); 2 a checkpoint
    # named with --checkpoint that is not there, or one that is damaged (something to fix)
    code = (0 if info.installed and info.problem is None else
            EXIT_NOT_INSTALLED if not info.installed and path is None else EXIT_USER_ERROR)
    if args.json:
        print(json.dumps({
            "prefix": str(info.prefix), "installed": info.installed, "valid": info.valid,
            "problem": info.problem, "warnings": info.warnings, "files": info.files,
            "tensors": info.tensors, "model_parameters": info.model_parameters, "has_ema": info.has_ema,
        }, indent=2))
        return code
    if not info.installed:
        print(f"No NSynth checkpoint at {info.prefix}.")
        print("Install it with:  onss model download      (about 1 GB; or --from-file wavenet-ckpt.tar)")
        return code
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
    from onss_tui.recipe import RecipeError, load_recipe

    path = Path(args.file).expanduser()
    try:
        r = load_recipe(path)
    except RecipeError as exc:
        if not args.json:
            raise
        print(json.dumps({"file": str(path), "valid": False, "problems": exc.problems, "warnings": []}, indent=2))
        return EXIT_USER_ERROR
    base = path.resolve().parent
    inputs = r.inputs_dir(base).resolve()  # (recipes/../audio shown as the folder it is)
    problems, warnings = ([], []) if args.no_inputs else _input_findings(r, inputs)
    counts = [len(c) for c in r.corners.lists()]
    combos = counts[0] * counts[1] * counts[2] * counts[3]
    if args.json:
        print(json.dumps({
            "file": str(path), "valid": not problems, "name": r.name, "corners": dict(zip(
                ("top_left", "top_right", "bottom_left", "bottom_right"), r.corners.names(), strict=True)),
            "pad_files": combos, "pitches": r.pitches, "resolution": r.resolution, "engine": r.engine,
            "inputs": str(inputs), "inputs_checked": not args.no_inputs, "output": str(r.output_dir(base).resolve()),
            "problems": problems, "warnings": warnings,
        }, indent=2))
        return EXIT_USER_ERROR if problems else 0
    if problems:
        shown = "\n".join(f"  {line}" for line in problems)
        raise UserError(f"{path}: the recipe is valid, but its inputs ({r.inputs!r}, that is {inputs}) cannot "
                        f"make it ({len(problems)} problem{'s' if len(problems) > 1 else ''}):\n{shown}\n"
                        f"Fix: add or rename the notes in {inputs}, or change 'inputs', 'corners' or 'pitches' "
                        f"in {path}; then run `onss recipe check {path}` again.")
    print(f"{path}: recipe {r.name!r} is valid" + ("" if args.no_inputs else ", and its inputs have every note"))
    print(f"  corners   {' / '.join(', '.join(c) for c in r.corners.names())}  ({combos} pad files)")
    print(f"  pitches   {r.pitches}, resolution {r.resolution}, engine {r.engine}")
    print(f"  inputs    {inputs}" + ("  (not checked: --no-inputs)" if args.no_inputs else ""))
    print(f"  output    {r.output_dir(base).resolve()}")
    for w in warnings:
        print(f"  note      {w}")
    return 0


def _input_findings(recipe: Recipe, inputs: Path) -> tuple[list[str], list[str]]:
    """What the notes folder lacks for this recipe (the prepare stage's rules, no audio read): its
    problems, each naming the file and the fix (an instrument with no note at all is one line, not
    one per pitch), and its warnings."""
    from onss_tui.pipeline.prepare import scan_inputs

    scan = scan_inputs(recipe, inputs)
    if not inputs.is_dir():
        return scan.problems, scan.warnings
    found = {name for name, _ in scan.notes}
    problems: list[str] = []
    absent: set[str] = set()
    for corner, names in zip(("top_left", "top_right", "bottom_left", "bottom_right"), recipe.corners.names(),
                             strict=True):
        for name in names:
            prefixes = tuple(f"{inputs / f'{name}_{p}.wav'}: missing:" for p in recipe.pitches)
            if name not in found and all(any(line.startswith(pre) for line in scan.problems) for pre in prefixes):
                absent.add(name)
                problems.append(f"{inputs}: no notes of {name!r} (corners.{corner}) at all: the recipe needs "
                                f"{name}_<pitch>.wav for pitches {recipe.pitches}. Add them, or fix the name's "
                                "spelling (names are case-sensitive).")
    missing_of_absent = tuple(f"{inputs / f'{n}_{p}.wav'}: missing:" for n in absent for p in recipe.pitches)
    problems += [line for line in scan.problems if not line.startswith(missing_of_absent)]
    return problems, scan.warnings


def _relative_to(folder: Path, value: str) -> str:
    """A path given on the command line (relative to the current folder) as a recipe writes it:
    relative to the recipe's folder (absolute stays absolute)."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    return Path(os.path.relpath(Path.cwd() / p, folder.resolve())).as_posix()


def cmd_recipe_import(args: argparse.Namespace) -> int:
    from onss_tui.recipe import import_original_settings, save_recipe

    r = import_original_settings(Path(args.settings).expanduser(), name=args.name)
    out = Path(args.output).expanduser() if args.output else Path("recipes") / f"{r.name}.yaml"
    if out.exists() and not args.force:
        raise UserError(f"{out}: already exists; pass --force to replace it or -o for another file.")
    folder = out.parent if str(out.parent) else Path(".")
    r.inputs = _relative_to(folder, args.inputs)
    r.output = _relative_to(folder, args.run_dir or f"runs/{r.name}")
    save_recipe(r, out)
    print(f"{out}: written. Corners: NW -> top_left, NE -> top_right, SE -> bottom_left, SW -> bottom_right "
          "(where the original really placed them).")
    print(f"  inputs    {r.inputs}  (= {r.inputs_dir(out.resolve().parent).resolve()})\n"
          f"  output    {r.output}  (= {r.output_dir(out.resolve().parent).resolve()})\n"
          f"Check it, notes included: onss recipe check {out}")
    return 0


RECIPE_TEMPLATE = """\
# The recipe {name!r}: what onss makes and from which notes. Edit it, then check it (the notes too):
#   onss recipe check {file}
# Relative paths are relative to this file's folder. All fields: onss recipe schema, recipes/example.yaml.
name: {name}{pad_name}# letters, digits, '.' and '-': names the run and the pack
inputs: {inputs}{pad_inputs}# the folder of notes, named <instrument>_<midi pitch>.wav (.aif .flac .mp3 .ogg too)
corners:                          # the instruments by position on the touch pad; a list per corner
  top_left: [{tl}]{pad_tl}# a bare name (its files' prefix), or {{name: flute, display: FLUTE, abbr: FL}}
  top_right: [{tr}]
  bottom_left: [{bl}]
  bottom_right: [{br}]
pitches: {pitches}{pad_pitches}# MIDI notes (60 = middle C); every instrument needs a note at each
resolution: 9                     # grid points along each side of the pad, 2-33 (the original: 9)
engine: nsynth                    # {engines}: the WaveNet on a GPU, or a quick CPU stand-in to check a layout
checkpoint: null                  # the NSynth checkpoint; null: the installed one (onss model download)
generation:                       # how the sounds are generated (every auto is decided by the run's plan)
  precision: auto                 # {precisions}: auto measures the fastest that keeps fidelity
  kernels: auto                   # {kernels}: PyTorch ops or fused Triton kernels (auto times both)
  batch_size: auto                # voices at once on each GPU (auto: measured)
  gpus: all                       # all, a count, or a list of GPU indices, e.g. [0, 1]
  seed: 0                         # the same seed and notes make the same pads
  sample_length: 64000            # samples a sound at 16 kHz (4 s), a multiple of 512
clean:                            # after generation, once per sound
  mode: mp3                       # {clean}: the original's MP3 colour, a low-pass, or as generated
  normalize_dbfs: -12             # peak level of every sound
device:                           # written to the device's settings.json
  data_directory: /home/pi/{name}{pad_dir}# where the pads go on the device's card
  looping: true
  loop_start: 0.2                 # the loop, as fractions of the row (not seconds)
  loop_end: 0.41
  midi_channel: 1
  osc_port: 8000
output: {output}{pad_output}# the run folder: every stage, the logs, pads/ and settings.json
# slurm: {{partition: gpu, time: "12:00:00", max_tasks: 4}}   # for onss run FILE --slurm (docs/slurm.md)
"""


def _pad(text: str, column: int = 34) -> str:
    return " " * max(1, column - len(text))


def _discover_corners(inputs: Path) -> tuple[list[str], list[int]] | None:
    """Four instruments found in a notes folder and the pitches all four have, or None."""
    from onss_tui.audio.io import AUDIO_SUFFIXES
    from onss_tui.pipeline.prepare import FILE_RE

    if not inputs.is_dir():
        return None
    notes: dict[str, set[int]] = {}
    for f in sorted(inputs.iterdir()):
        m = FILE_RE.match(f.stem)
        if m and f.suffix.lower() in AUDIO_SUFFIXES and not f.name.startswith("."):
            notes.setdefault(m["name"], set()).add(int(m["pitch"]))
    names = sorted(notes)[:4]
    if len(names) < 4:
        return None
    common = sorted(set.intersection(*(notes[n] for n in names)))
    return (names, common) if common else None


def cmd_recipe_new(args: argparse.Namespace) -> int:
    from onss_tui.recipe import NAME_RE, RecipeError, parse_recipe
    from onss_tui.vocab import CLEAN_MODES, ENGINES, PRECISIONS, RECIPE_KERNELS

    if not NAME_RE.match(args.name):
        raise UserError(f"onss recipe new {args.name!r}: a recipe name is letters, digits, '.' and '-' "
                        "(it names the run and the pack), e.g. onss recipe new birds-2")
    out = Path(args.output).expanduser() if args.output else Path("recipes") / f"{args.name}.yaml"
    if out.exists() and not args.force:
        raise UserError(f"{out}: already exists; pass --force to replace it or -o for another file.")
    folder = out.parent if str(out.parent) else Path(".")
    inputs = _relative_to(folder, args.inputs)
    output = _relative_to(folder, f"runs/{args.name}")
    found = _discover_corners(Path(args.inputs).expanduser())
    names, pitches = found if found else (["flute", "bass", "marimba", "organ"], [36, 48, 60, 72])
    pitch_text = f"[{', '.join(map(str, pitches))}]"
    text = RECIPE_TEMPLATE.format(
        name=args.name, file=out, inputs=inputs, output=output, tl=names[0], tr=names[1], bl=names[2], br=names[3],
        pitches=pitch_text, engines=" | ".join(ENGINES), precisions=" | ".join(("auto", *PRECISIONS)),
        kernels=" | ".join(RECIPE_KERNELS), clean=" | ".join(CLEAN_MODES),
        pad_name=_pad(f"name: {args.name}"), pad_inputs=_pad(f"inputs: {inputs}"),
        pad_tl=_pad(f"  top_left: [{names[0]}]"), pad_pitches=_pad(f"pitches: {pitch_text}"),
        pad_dir=_pad(f"  data_directory: /home/pi/{args.name}"), pad_output=_pad(f"output: {output}"))
    try:
        parse_recipe(text, str(out))
    except RecipeError as exc:  # a bad name: said before anything is written
        raise UserError(f"onss recipe new {args.name}: {exc.problems[0].split(': ', 1)[-1]}") from None
    from onss_tui.atomic import atomic_write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    where = (f"the instruments and pitches found in {args.inputs}" if found else
             f"example instruments: put their notes in {args.inputs} or change the corners")
    print(f"{out}: written, with {where}.\nEdit it, then check it, notes included: onss recipe check {out}")
    return 0


def cmd_recipe_schema(args: argparse.Namespace) -> int:
    from onss_tui.recipe import recipe_schema

    print(recipe_schema())
    return 0


# --------------------------------------------------------------------------------------------
# onss run / status / stop / demo / deploy


def event_line(e: dict) -> str | None:
    """The line a run event prints, the same on a terminal and on a pipe (progress aside): every
    stage line names its stage, ``[prepare] started``."""
    kind, stream = e["event"], e["stream"]
    if kind == "stage_start":
        return f"[{e['stage']}] started"
    if kind == "stage_done":
        extra = ", ".join(f"{k} {v}" for k, v in e.items() if k not in ("t", "stream", "event", "stage"))
        return f"[{e['stage']}] done ({extra})"
    if kind == "stage_skip":
        return f"[{e['stage']}] already done"
    if kind == "stage_redo":
        return f"[{e['stage']}] again: {e['reason']}"
    if kind == "stage_failed":
        return f"[{e['stage']}] FAILED"
    if kind == "warning":
        return f"[{stream}] warning: {e['message']}"
    return None


class EventPrinter:
    """Shows run events: Rich progress on a terminal, plain lines otherwise, or JSON lines.

    Progress (stage lines, bars, warnings) goes to ``stream``, stderr by default; results (where the
    pads and settings are, ``result()``) to ``out``, stdout by default, or ``stream`` when only a
    stream is given. ``--json`` event lines are the command's output: stdout."""

    def __init__(self, json_lines: bool = False, stream=None, out=None):
        self.json = json_lines
        self.out = out or stream or sys.stdout
        self.stream = stream or (sys.stdout if json_lines else sys.stderr)
        self.tty = self.stream.isatty() and not json_lines
        self.stopped = False  # the output failed (a closed pipe, a gone terminal): print nothing more
        self.out_stopped = False  # the same for the results' stream
        self._last: dict[str, float] = {}
        self._progress = None
        self._tasks: dict[str, int] = {}
        self._pending: list[str] = []  # results that wait for the live progress display to end

    def __enter__(self) -> EventPrinter:
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description:<22}", markup=False), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("{task.fields[info]}", markup=False),
                                      TimeRemainingColumn(), console=Console(file=self.stream))
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        progress, self._progress = self._progress, None  # (later lines are plain prints)
        if progress is not None:
            try:
                progress.__exit__(*exc)
            except OSError:
                self._stop()
        pending, self._pending = self._pending, []
        for text in pending:
            self.result(text)

    def _stop(self) -> None:
        """Output failed: the job goes on; what would have been printed is dropped."""
        self.stopped = True
        _drop_output(self.stream)
        if self.out is self.stream:
            self.out_stopped = True
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

    def result(self, text: str) -> None:
        """A result line (stdout): after the live progress display, never inside it."""
        if self.out is self.stream:
            self._line(text)
            return
        if self._progress is not None:
            self._pending.append(text)
            return
        if self.out_stopped:
            return
        try:
            print(text, file=self.out, flush=True)
        except OSError:  # `onss run R | head -1`: the run goes on, its results are dropped
            self.out_stopped = True
            _drop_output(self.out)

    def __call__(self, e: dict) -> None:
        if self.stopped and (self.json or e["event"] != "run_done"):
            return
        if self.json:
            try:
                print(json.dumps(e), file=self.stream, flush=True)
            except OSError:
                self._stop()
            return
        kind, stream = e["event"], e["stream"]
        line = event_line(e)
        if line is not None:
            self._line(line)
        elif kind == "run_done":
            self.result(f"pads:     {e['pads']}\nsettings: {e['settings']}")
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
        printer.result(f"Done{preview}: {run_dir}\nHear it:   onss audition {run_dir}   (WAVs and a page to open "
                       f"anywhere)\nDeploy it: onss deploy {run_dir} --to /media/SDCARD")
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
        if submitted.redo is not None:
            print(f"{run_dir}: the run was done, but stage {submitted.redo[0]} must be made again "
                  f"({submitted.redo[1]})", file=sys.stderr)
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
            printer.result(f"Done: {run_dir}\nHear it:   onss audition {run_dir}\n"
                           f"Deploy it: onss deploy {run_dir} --to /media/SDCARD")
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
    """A run folder from what the user typed: a run folder, a recipe file, or a recipe's name (the
    registry of runs knows them from any folder); nothing: the newest run under ./runs, else the
    newest this user started anywhere."""
    from onss_tui import registry

    if value:
        p = Path(value).expanduser()
        if p.is_file() and p.suffix in (".yaml", ".yml"):
            from onss_tui.pipeline.runner import run_dir_of

            return run_dir_of(p)
        if p.exists():
            return p
        entry = registry.find(value)
        if entry is not None:
            return Path(entry.run)
        known = ", ".join(sorted({e.name for e in registry.runs()})) or "none yet"
        raise UserError(f"{value}: no such run folder or recipe file, and no run of a recipe named so (runs this "
                        f"user started: {known}; onss ls lists them).")
    runs = sorted(Path("runs").glob("*/state.json"), key=lambda f: f.stat().st_mtime)
    if runs:
        return runs[-1].parent
    entries = registry.runs()
    if entries:
        return Path(entries[0].run)
    raise UserError("no run given, none under ./runs and none started by this user; pass the run folder "
                    "(the recipe's 'output') or the recipe's name.")


def cmd_ls(args: argparse.Namespace) -> int:
    """The runs this user started, anywhere: name, state, progress, folder."""
    from onss_tui import registry
    from onss_tui.pipeline.progress import progress_of
    from onss_tui.pipeline.rundir import STAGES, RunDir

    rows = []
    for e in registry.runs():
        run = RunDir(e.run)
        state = run.state()
        done = sum(1 for s in STAGES if state.stage(s).status == "done")
        status = run.status_now(slurm=e.slurm)
        rows.append({"name": e.name, "status": status, "percent": progress_of(run).percent, "stages_done": done,
                     "stages": len(STAGES), "run": e.run, "recipe": e.recipe, "slurm": e.slurm,
                     "updated": e.updated})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No runs yet: onss run RECIPE starts one (onss demo makes a first one in seconds).")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        where = " (Slurm)" if r["slurm"] else ""
        print(f"{r['name']:{width}s}  {r['status'] + where:24s} {r['percent']:3.0f}%  {r['run']}")
    return 0


def cmd_audition(args: argparse.Namespace) -> int:
    from onss_tui.audition import make_audition

    run_dir = _run_dir_arg(args.run)
    if not (run_dir / "settings.json").is_file():
        raise UserError(f"{run_dir}: no settings.json: the run has not finished; run the recipe to the end first.")
    report = make_audition(run_dir, Path(args.out).expanduser() if args.out else None)
    print(f"{len(report.clips)} WAVs and {report.index}\n"
          f"Copy it to a machine with speakers and open index.html, e.g.:\n"
          f"  scp -r {os.uname().nodename}:{report.folder} . && xdg-open {report.folder.name}/index.html")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    run_dir = _run_dir_arg(args.run)
    if not getattr(args, "watch", False):
        return _status_once(run_dir, args.json)
    while True:  # --watch: again every 2 s until the run is no longer running (ctrl+c leaves)
        if sys.stdout.isatty():
            print("\033[H\033[2J", end="")
        _status_once(run_dir, args.json)
        sys.stdout.flush()
        from onss_tui.pipeline.rundir import RunDir

        run = RunDir(run_dir)
        if run.state().status != "running" or not (run.locked_by() or (run.path / "lease").is_file()):
            return 0
        time.sleep(2.0)


def _status_once(run_dir: Path, as_json: bool) -> int:
    from onss_tui.pipeline.progress import clock, progress_of
    from onss_tui.pipeline.rundir import STAGES, RunDir
    from onss_tui.vocab import RunStatus

    INTERRUPTED: RunStatus = "interrupted"

    run = RunDir(run_dir)
    if not run.state_path.is_file():
        raise UserError(f"{run.path}: not a run folder (no state.json). Pass the folder a recipe's 'output' names.")
    state = run.state()
    pid = run.locked_by()
    from onss_tui.cluster.submit import slurm_side

    slurm = slurm_side(run.path)
    progress = progress_of(run)
    if as_json:
        print(json.dumps({**state.model_dump(mode="json"), "active_pid": pid, "progress": progress.as_dict(),
                          **({"slurm": slurm} if slurm is not None else {})}, indent=2))
        return 0
    if slurm is not None and slurm.get("jobs"):
        alive = f"running on Slurm ({len(slurm['jobs'])} job(s) or task(s) queued)"
    elif pid:
        alive = f"running (pid {pid})"
    elif slurm is None and run.status_now() == "stopped":
        alive = "stopped"  # (onss stop or the dashboard asked it to: its supervisor ended without saying so)
    elif state.status == "running" and slurm is not None:
        alive = f"{INTERRUPTED} (no Slurm job of it is queued; run the recipe again with --slurm to resume)"
    elif state.status == "running":
        alive = f"{INTERRUPTED} (no process is working on it; run the recipe again to resume)"
    else:
        alive = state.status or "?"
    print(f"{run.path}: {state.name or '?'} [{state.engine or '?'}]  {alive}")
    whole = f"  {progress.percent:.0f}% of the run"
    if progress.shards:
        whole += f" ({progress.shards_done}/{progress.shards} shards generated)"
    if progress.elapsed_s is not None:
        whole += f", elapsed {clock(progress.elapsed_s)}"
    if progress.eta_s is not None:
        whole += f", about {clock(progress.eta_s)} left"
    if progress.took_s is not None:
        whole += f", took {clock(progress.took_s)}"
    print(whole)
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
    from onss_tui.pipeline.runner import stop_run

    pid = stop_run(run.path, group=args.group, wait=10.0)  # (marked stopped however long it takes to end)
    if pid is None:
        print(f"{run.path}: no run is active.")
    elif run.locked_by() is not None:
        print(f"Asked pid {pid} to stop; it is still stopping its workers, and the run will say stopped when it "
              f"ends (watch it: onss status {run.path}). Finished work is kept; run the recipe again to resume.")
    else:
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
    try:
        run_dir: Path | None = _run_dir_arg(args.run)
    except UserError:
        run_dir = None  # (said below: the terminal first, so that a pipe learns what to use instead)
    _need_terminal("attach", f"or watch it with `onss status {run_dir or args.run or 'RUN'}` "
                             "(add --json for scripts)")
    run_dir = _run_dir_arg(args.run)
    if not (run_dir / "state.json").is_file():
        raise UserError(f"{run_dir}: not a run folder (no state.json).")
    from onss_tui.tui.app import create_app

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


NO_TERMINAL_INSTEAD = "or use the commands: `onss run RECIPE` to run, `onss status RUN` to watch"


def _need_terminal(command: str, instead: str = NO_TERMINAL_INSTEAD) -> None:
    """The wizard on a pipe or /dev/null would wait forever for keys: refuse, saying what to do."""
    if os.environ.get("TEXTUAL_DRIVER"):  # onss serve runs it with the browser as its terminal
        return
    if not (sys.stdin and sys.stdin.isatty() and sys.stdout and sys.stdout.isatty()):
        raise UserError(f"`onss {command}`: the wizard needs a terminal, and stdin or stdout is not one. "
                        f"Run it in an SSH session (ssh -t HOST onss {command}) {instead}.")


def cmd_tui(args: argparse.Namespace) -> int:
    _need_terminal("tui")
    from onss_tui.tui.app import create_app

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

    from onss_tui.device.deploy import DeployError, deploy
    from onss_tui.device.remote import DEFAULT_RESTART, deploy_remote, parse_target

    args.restart_command = args.restart_command or os.environ.get("ONSS_RESTART_COMMAND") or DEFAULT_RESTART
    progress = lambda name, i, n: print(f"  copied {name} ({i}/{n})", file=sys.stderr, flush=True)  # noqa: E731
    remote = parse_target(args.to)
    if remote is None and args.restart:
        raise DeployError(f"{args.to}: --restart needs the synth as an ssh target (pi@HOST); after a card "
                          "deploy, put the card back and power the synth on.")
    if remote is not None:
        report = deploy_remote(_run_dir_arg(args.run), remote, progress=progress, prune=args.prune,
                               restart=args.restart_command if args.restart else None)
    else:
        report = deploy(_run_dir_arg(args.run), Path(args.to).expanduser(), progress=progress, prune=args.prune)
    from onss_tui.sizes import size_text as mb

    at = f"{report.host}:" if report.host else ""
    if report.unchanged:
        print(f"The {'synth' if at else 'card'} already has this pack: nothing written "
              f"({at}{report.pads_dir}, {at}{report.settings}).")
    else:
        print(f"Pads in {at}{report.pads_dir}: {len(report.copied)} copied, {len(report.skipped)} already there.")
        if report.fixed:
            uid, gid, mode = report.pad_owner or (-1, -1, 0)
            print(f"Gave {len(report.fixed)} pads already there the owner of their folder and a mode it can read "
                  f"({uid}:{gid}, {mode:04o}); their bytes were not rewritten.")
        for b in report.backups:
            print(f"Backed up {at}{b}")
        print(f"Settings written: {at}{report.settings}" if report.settings_written
              else f"Settings already there: {at}{report.settings}")
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
    if report.restarted:
        print(f"Restarted the app on {report.host}: {args.restart_command}")
    return 0


# --------------------------------------------------------------------------------------------
# onss validate


def _validate_target(args: argparse.Namespace) -> tuple[Path, Path, int | None, list[int] | None]:
    """(settings.json, pads folder, resolution, pitches) for `onss validate`: a run folder (its
    pads/, settings.json, and the resolution and pitches of the recipe it ran), a run's pads/, or
    any folder of pad files with a settings.json beside or above it."""
    pitches = None
    if args.pitches:
        try:
            pitches = [int(p) for p in args.pitches.split(",")]
        except ValueError:
            raise UserError(f"--pitches {args.pitches!r}: give MIDI notes separated by commas, e.g. 24,28,32") from None
    resolution = args.resolution
    target = Path(args.pads_dir).expanduser()
    if target.is_file() and target.suffix in (".yaml", ".yml"):
        target = _run_dir_arg(str(target))  # a recipe: its run folder
    run = target if (target / "pads").is_dir() and not list(target.glob("*.bin")) else None
    if run is None and target.name == "pads" and (target.parent / "state.json").is_file():
        run = target.parent
    pads = run / "pads" if run is not None else target
    if args.settings:
        settings = Path(args.settings).expanduser()
    elif run is not None:
        settings = run / "settings.json"
    else:
        settings = pads / "settings.json"
        if not settings.is_file() and (pads.parent / "settings.json").is_file():
            settings = pads.parent / "settings.json"  # <run>/pads and <run>/settings.json
    if run is not None and (run / "recipe.yaml").is_file() and (resolution is None or pitches is None):
        from onss_tui.recipe import RecipeError, load_recipe

        try:  # the layout the run made, so that the rows are checked against it
            recipe = load_recipe(run / "recipe.yaml")
        except RecipeError:
            pass  # (a damaged copy: the pack is still checked against its settings.json)
        else:
            resolution = recipe.resolution if resolution is None else resolution
            pitches = list(recipe.pitches) if pitches is None else pitches
    return settings, pads, resolution, pitches


def cmd_validate(args: argparse.Namespace) -> int:
    from onss_tui.device.settings import validate_pack

    settings, pads, resolution, pitches = _validate_target(args)
    findings = validate_pack(settings, pads, resolution=resolution, pitches=pitches, content=not args.no_content)
    errors = [f for f in findings if f.level == "error"]
    if args.json:
        print(json.dumps({"verdict": "invalid" if errors else "valid", "settings": str(settings), "pads": str(pads),
                          "resolution": resolution, "pitches": pitches, "errors": len(errors),
                          "warnings": len(findings) - len(errors), "findings": [f.__dict__ for f in findings]},
                         indent=2))
    else:
        for f in findings:
            print(f)
        verdict = "INVALID: the device would crash, stay silent or mis-play" if errors else "valid"
        print(f"{verdict} ({len(errors)} errors, {len(findings) - len(errors)} warnings): {settings} + {pads}")
    return 1 if errors else 0


# --------------------------------------------------------------------------------------------
# onss env


def cmd_env(args: argparse.Namespace) -> int:
    from onss_tui.environment import environment, environment_lines

    env = environment()
    if args.json:
        print(json.dumps(env, indent=2))
        return 0
    print("\n".join(environment_lines(env)))
    return 0


# --------------------------------------------------------------------------------------------
# onss completion


def _completion_tree(parser: argparse.ArgumentParser) -> dict[str, dict]:
    """Each command path ("", "model", "model info", ...) -> its subcommands (name: help), options
    (flag: help), the choices of its options (flag: values) and of its positional arguments."""
    tree: dict[str, dict] = {}

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        node: dict = {"commands": {}, "options": {}, "values": {}, "choices": []}
        tree[path] = node
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help or "" for a in action._choices_actions}
                for name, child in action.choices.items():
                    node["commands"][name] = helps.get(name, "")
                    walk(child, f"{path} {name}".strip())
            elif action.option_strings:
                if action.help != argparse.SUPPRESS:
                    for flag in action.option_strings:
                        node["options"][flag] = action.help or ""
                        if action.choices:
                            node["values"][flag] = [str(c) for c in action.choices]
            elif action.choices:
                node["choices"] += [str(c) for c in action.choices]

    walk(parser, "")
    return tree


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def completion_script(shell: str, parser: argparse.ArgumentParser | None = None) -> str:
    tree = _completion_tree(parser or build_parser())
    if shell == "bash":
        cases: list[str] = []
        values_cases: list[str] = []
        for path, node in tree.items():
            words = " ".join([*node["commands"], *node["choices"]])
            opts = " ".join(node["options"])
            cases.append(f"        {_sh_quote(path)}) words={_sh_quote(words)}; opts={_sh_quote(opts)} ;;")
            for flag, values in node["values"].items():
                values_cases.append(f"        {_sh_quote(f'{path}|{flag}')}) values={_sh_quote(' '.join(values))} ;;")
        paths = " ".join(_sh_quote(f"|{p}|") for p in tree)
        return f"""# bash completion for onss (generated by: onss completion bash)
# Load it now: source <(onss completion bash); for every new shell:
#   onss completion bash > ~/.local/share/bash-completion/completions/onss
_onss() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" path="" w i words opts values=""
    local paths=({paths})
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        [[ "$w" == -* ]] && continue
        local next="${{path:+$path }}$w"
        [[ " ${{paths[*]}} " == *" |$next| "* ]] && path="$next"
    done
    case "$path" in
{chr(10).join(cases)}
        *) words=""; opts="" ;;
    esac
    case "$path|$prev" in
{chr(10).join(values_cases)}
    esac
    if [[ -n "$values" ]]; then
        COMPREPLY=($(compgen -W "$values" -- "$cur"))
    elif [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    fi
}}
complete -o default -o bashdefault -F _onss onss
"""
    if shell == "zsh":
        cases = []
        values_cases = []
        for path, node in tree.items():
            cmds = " ".join(_sh_quote(f"{n}:{h.replace(':', ' ')}") for n, h in node["commands"].items())
            choices = " ".join(_sh_quote(c) for c in node["choices"])
            opts = " ".join(_sh_quote(o) for o in node["options"])
            cases.append(f"    ({_sh_quote(path)}) cmds=({cmds}); choices=({choices}); opts=({opts}) ;;")
            for flag, values in node["values"].items():
                quoted = " ".join(map(_sh_quote, values))
                values_cases.append(f"    ({_sh_quote(f'{path}|{flag}')}) values=({quoted}) ;;")
        paths = " ".join(_sh_quote(p) for p in tree)
        return f"""#compdef onss
# zsh completion for onss (generated by: onss completion zsh)
# Load it now: source <(onss completion zsh); for every shell: onss completion zsh > "${{fpath[1]}}/_onss"
_onss() {{
    local -a paths cmds choices opts values
    local path_="" w i next
    paths=({paths})
    for ((i = 2; i < CURRENT; i++)); do
        w=${{words[i]}}
        [[ $w == -* ]] && continue
        next="${{path_:+$path_ }}$w"
        (( ${{paths[(Ie)$next]}} )) && path_=$next
    done
    case $path_ in
{chr(10).join(cases)}
    esac
    case "$path_|${{words[CURRENT-1]}}" in
{chr(10).join(values_cases)}
    esac
    if (( ${{#values}} )); then
        compadd -- $values
    elif [[ ${{words[CURRENT]}} == -* ]]; then
        compadd -- $opts
    elif (( ${{#cmds}} )); then
        _describe -t commands 'onss command' cmds
    elif (( ${{#choices}} )); then
        compadd -- $choices
    else
        _files
    fi
}}
if (( $+functions[compdef] )); then compdef _onss onss; fi
"""
    if shell == "fish":
        lines = ["# fish completion for onss (generated by: onss completion fish)",
                 "# Load it now: onss completion fish | source; for every shell: "
                 "onss completion fish > ~/.config/fish/completions/onss.fish",
                 "complete -c onss -f"]
        for path, node in tree.items():
            parts = path.split()
            if not parts:
                cond = "__fish_use_subcommand"
            else:
                siblings = " ".join(tree[path]["commands"])
                cond = "; and ".join(f"__fish_seen_subcommand_from {w}" for w in parts)
                if siblings:
                    cond += f"; and not __fish_seen_subcommand_from {siblings}"
            for name, text in node["commands"].items():
                lines.append(f"complete -c onss -n {_sh_quote(cond)} -a {name} -d {_sh_quote(text)}")
            for c in node["choices"]:
                lines.append(f"complete -c onss -n {_sh_quote(cond)} -a {_sh_quote(c)}")
            for flag, text in node["options"].items():
                spec = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
                if flag in node["values"]:
                    spec += f" -xa {_sh_quote(' '.join(node['values'][flag]))}"
                lines.append(f"complete -c onss -n {_sh_quote(cond)} {spec} -d {_sh_quote(text)}")
            if parts and not node["commands"] and not node["choices"]:
                lines.append(f"complete -c onss -n {_sh_quote(cond)} -F")  # files for its arguments
        return "\n".join(lines) + "\n"
    raise UserError(f"onss completion {shell}: give bash, zsh or fish")


def cmd_completion(args: argparse.Namespace) -> int:
    print(completion_script(args.shell), end="")
    return 0


# --------------------------------------------------------------------------------------------
# The parser


def _device_default() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # pragma: no cover
        return "cpu"


def _command(sub, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    """A subcommand with its one-line help (in the list), a description and examples (in its --help)."""
    import textwrap

    lines = "\n".join(f"  {line}" for line in example.strip("\n").splitlines())
    return sub.add_parser(name, help=help, description=textwrap.fill(description, 88),
                          epilog=f"example{'s' if example.count(chr(10)) else ''}:\n{lines}",
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    from onss_tui import __version__
    from onss_tui.model.install import CHECKPOINT_URL
    from onss_tui.vocab import KERNELS, PRECISIONS

    parser = argparse.ArgumentParser(
        prog="onss", description="Open NSynth Super studio: from instrument notes to a device sound pack.\n"
        "`onss` alone opens the wizard on a terminal; the commands below do each step from a shell.",
        epilog="examples:\n  onss demo                      a tiny pack in seconds, no GPU\n"
               "  onss recipe new birds          a commented recipe to edit\n"
               "  onss run recipes/birds.yaml    make the pack\n"
               "  onss COMMAND --help            a command's options and examples\n\n"
               "Results go to stdout, progress and messages to stderr. A mistake to fix exits 2 with one\n"
               "message naming the file and the fix. Every command: docs/cli.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"onss {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    model = _command(sub, "model", "install and inspect the NSynth checkpoint",
                     "Install the NSynth WaveNet checkpoint (wavenet-ckpt, about 1 GB) and show what is installed.",
                     "onss model download\nonss model info --json")
    msub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    dl = _command(msub, "download", "download, check and install wavenet-ckpt",
                  "Download the checkpoint (resumable: run it again if it is cut off), check every file's size and "
                  "the model tensors' CRCs, and install it in the user data folder (or --dir).",
                  "onss model download\nonss model download --from-file ~/wavenet-ckpt.tar")
    dl.add_argument("--dir", help="models folder (default: the user data folder)")
    dl.add_argument("--from-file", metavar="TAR", help="install from a wavenet-ckpt.tar you already have")
    dl.add_argument("--url", default=CHECKPOINT_URL, help=argparse.SUPPRESS)
    dl.add_argument("--force", action="store_true", help="install again even if present")
    dl.add_argument("--keep-tar", action="store_true", help="keep the downloaded tar")
    dl.set_defaults(func=cmd_model_download)
    info = _command(msub, "info", "what is installed, validated",
                    "Show the installed checkpoint (or --checkpoint) and verify its model tensors. Exit status: 0 "
                    "installed and sound, 1 nothing installed, 2 a damaged checkpoint or a --checkpoint that "
                    "is not there.", "onss model info\nonss model info --json | jq .installed")
    info.add_argument("--checkpoint", help="a checkpoint prefix, .index/.data file or folder (default: installed)")
    info.add_argument("--no-verify", action="store_true", help="skip the CRC check of the model tensors")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_model_info)

    enc = _command(sub, "encode", "audio files -> NSynth encodings (<stem>.npy, float32 [frames, 16])",
                   "Encode audio files with the NSynth encoder: one <stem>.npy (float32, [frames, 16]) each in the "
                   "output folder. Any format soundfile reads; resampled to 16 kHz mono and padded or trimmed.",
                   "onss encode notes/*.wav -o encodings/")
    enc.add_argument("files", nargs="+", help="audio files in any format soundfile reads")
    enc.add_argument("-o", "--output", required=True, help="output folder")
    enc.add_argument("--checkpoint", help="checkpoint prefix, file or folder (default: installed)")
    enc.add_argument("--length", type=int, default=64000, help="samples at 16 kHz, padded or trimmed (default 64000)")
    enc.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    enc.add_argument("--precision", default="fp32", choices=PRECISIONS)
    enc.add_argument("--ema", action="store_true", help="use the EMA weights instead of the raw ones")
    enc.add_argument("--batch-size", type=_positive_int, default=8)
    enc.set_defaults(func=cmd_encode)

    rec = _command(sub, "recipe", "write, check, import and describe recipes",
                   "Recipes are YAML files saying what to make: the notes folder, the instruments at each corner, "
                   "the pitches, the grid, the engine and the run folder.",
                   "onss recipe new birds\nonss recipe check recipes/birds.yaml")
    rsub = rec.add_subparsers(dest="recipe_command", metavar="ACTION", required=True)
    new = _command(rsub, "new", "write a commented example recipe to edit",
                   "Write a recipe with a comment on every field. Its instruments and pitches come from the notes "
                   "folder when it has four instruments, else they are examples to replace. Paths in it are "
                   "relative to the recipe file.",
                   "onss recipe new birds                        # recipes/birds.yaml, notes in ./audio\n"
                   "onss recipe new birds --inputs samples -o birds.yaml")
    new.add_argument("name", help="the recipe's name (letters, digits, '.' and '-')")
    new.add_argument("-o", "--output", help="recipe file to write (default: recipes/<name>.yaml)")
    new.add_argument("--inputs", default="audio", help="the notes folder, from the current folder (default: audio)")
    new.add_argument("--force", action="store_true", help="replace an existing recipe file")
    new.set_defaults(func=cmd_recipe_new)
    chk = _command(rsub, "check", "validate a recipe and its notes; every problem with file:line:col",
                   "Check a recipe: every problem in the file at once as file:line:col: field: message, then its "
                   "notes folder: every instrument of the corners at every pitch (no audio is read; the run "
                   "reads and checks each note). Exit status 2 when anything is wrong.",
                   "onss recipe check recipes/birds.yaml\nonss recipe check recipes/birds.yaml --json")
    chk.add_argument("file")
    chk.add_argument("--no-inputs", action="store_true", help="check the recipe file only, not its notes folder")
    chk.add_argument("--json", action="store_true", help="machine-readable output (also for a bad recipe)")
    chk.set_defaults(func=cmd_recipe_check)
    imp = _command(rsub, "import", "convert the original pipeline's audio/settings.json",
                   "Convert the original Open NSynth Super pipeline's settings.json into a recipe. Its NW, NE, SE "
                   "and SW lists become top_left, top_right, bottom_left and bottom_right, where the original "
                   "really placed them. --inputs and --run-dir are given from the current folder and written "
                   "relative to the recipe.",
                   "onss recipe import audio/settings.json --inputs audio/audio_input\n"
                   "onss recipe import old/settings.json -o recipes/old.yaml --name old")
    imp.add_argument("settings")
    imp.add_argument("-o", "--output", help="recipe file to write (default: recipes/<name>.yaml)")
    imp.add_argument("--name", help="recipe name (default: from the folder)")
    imp.add_argument("--inputs", default="audio", help="the folder of input notes, from the current folder "
                                                       "(default: audio)")
    imp.add_argument("--run-dir", help="the run folder, from the current folder (default: runs/<name>)")
    imp.add_argument("--force", action="store_true", help="replace an existing recipe file")
    imp.set_defaults(func=cmd_recipe_import)
    sch = _command(rsub, "schema", "print the recipe JSON Schema (for editors)",
                   "Print the JSON Schema of recipes, for editors with yaml-language-server "
                   "(# yaml-language-server: $schema=recipe.schema.json).",
                   "onss recipe schema > recipes/recipe.schema.json")
    sch.set_defaults(func=cmd_recipe_schema)

    run = _command(sub, "run", "run a recipe (resumes where it stopped)",
                   "Run every stage of a recipe into its run folder; run it again to resume where it stopped. "
                   "Progress goes to stderr (bars on a terminal, lines otherwise); the results (where the pads "
                   "and settings are) to stdout. --json prints every event as a JSON line on stdout.",
                   "onss run recipes/birds.yaml\nonss run recipes/birds.yaml --dry-run\n"
                   "onss run recipes/birds.yaml --detach\nonss run recipes/birds.yaml --slurm --wait")
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
    st = _command(sub, "status", "the stages and progress of a run",
                  "Show a run's stages, whether a process (or Slurm job) works on it, and each worker's batch and "
                  "speed. Reads the run folder only: safe while the run goes on.",
                  "onss status runs/birds\nonss status recipes/birds.yaml --json")
    st.add_argument("run", nargs="?", help="run folder or recipe (default: the newest under ./runs)")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--watch", action="store_true", help="show it again every 2 s until the run ends (ctrl+c leaves)")
    st.set_defaults(func=cmd_status)
    sp = _command(sub, "stop", "stop a running run (it resumes when run again)",
                  "Stop the process (or cancel the Slurm jobs) working on a run. Finished work is kept; run the "
                  "recipe again to resume.", "onss stop runs/birds")
    sp.add_argument("run", nargs="?", help="run folder or recipe")
    sp.add_argument("--group", action="store_true", help="also stop its worker processes")
    sp.set_defaults(func=cmd_stop)
    dm = _command(sub, "demo", "synthetic instruments -> a validated pack with the preview engine",
                  "Write four synthetic instruments and their recipe, run every stage with the preview engine "
                  "(CPU, seconds) and validate the pack: a check that everything works, no GPU or checkpoint "
                  "needed.", "onss demo\nonss demo --out /tmp/demo && onss validate /tmp/demo/run")
    dm.add_argument("--out", default="onss-demo", help="folder for the demo (default ./onss-demo)")
    dm.add_argument("--json", action="store_true", help="progress as JSON event lines")
    dm.set_defaults(func=cmd_demo)
    at = _command(sub, "attach", "the live dashboard of a run (leaving it never stops the run)",
                  "Open the wizard's dashboard of a run on this terminal; leaving it never stops the run. Needs a "
                  "terminal: from a script use `onss status RUN`.", "onss attach runs/birds")
    at.add_argument("run", nargs="?", help="run folder or recipe (default: the newest under ./runs)")
    at.set_defaults(func=cmd_attach)
    dp = _command(sub, "deploy", "copy a finished run's pads and settings to a mounted SD card or over ssh",
                  "Copy a finished run's pads and settings.json to the device's mounted SD card, or over ssh to "
                  "the running synth (pi@HOST[:PORT]): space checked first, every file verified, the old settings "
                  "backed up.",
                  "onss deploy runs/birds --to /media/$USER/rootfs\nonss deploy runs/birds --to /mnt/card --prune\n"
                  "onss deploy runs/birds --to pi@nsynth.local --restart")
    dp.add_argument("run", help="run folder or recipe")
    dp.add_argument("--to", required=True,
                    help="mount point of the card's root file system, or the running synth over ssh: "
                         "pi@HOST[:PORT] (your ssh config and keys; never a password prompt)")
    dp.add_argument("--prune", action="store_true",
                    help="then remove the .bin files in the pack's data folder that the new settings do not use")
    dp.add_argument("--restart", action="store_true", help="ssh target only: then restart the app on the synth")
    dp.add_argument("--restart-command", metavar="CMD",
                    help="what --restart runs on the synth (default: $ONSS_RESTART_COMMAND, else "
                         "'sudo -n systemctl restart open-nsynth')")
    dp.set_defaults(func=cmd_deploy)

    bn = _command(sub, "bench", "measure generation speed here; the wizard projects run times from it",
                  "Time the generator per precision, batch size and kernels on this machine (and, with --golden, "
                  "its fidelity). The wizard projects run times from the saved result.",
                  "onss bench\nonss bench --device cpu --batch 1 8")
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
    tu = _command(sub, "tui", "the wizard (what `onss` opens on a terminal)",
                  "Open the wizard: environment, notes, corners, grid, recipe, run and dashboard. Needs a "
                  "terminal (an SSH session: ssh -t HOST onss tui).", "onss tui --workdir ~/packs")
    tu.add_argument("--workdir", help="where recipes/ and runs/ go (default: the current folder)")
    tu.set_defaults(func=cmd_tui)
    sv = _command(sub, "serve", "serve the wizard in a browser via textual-serve (extra: serve)",
                  "Serve the wizard to a browser (pip install 'onss-tui[serve]'). It listens on localhost: reach "
                  "it over SSH with ssh -L 8000:localhost:8000 HOST.", "onss serve --port 8000")
    sv.add_argument("--host", default="localhost", help="bind address (default localhost: use ssh -L)")
    sv.add_argument("--port", type=_port, default=8000)
    sv.set_defaults(func=cmd_serve)

    val = _command(sub, "validate", "check a run's pads and settings.json before deploying",
                   "Check a pack against the device's rules: the file set and sizes, settings.json's types and "
                   "ranges, and the rows' content. Give a run folder (its pads/, settings.json and the recipe it "
                   "ran), its pads/, or any folder of pad files. Exit status 1 when the pack is invalid.",
                   "onss validate runs/birds\nonss validate runs/birds --json | jq .verdict\n"
                   "onss validate /media/card/home/pi/pads --settings /media/card/home/pi/settings.json")
    val.add_argument("pads_dir", metavar="RUN_OR_PADS", help="a run folder, a recipe, or a folder of .bin pad files")
    val.add_argument("--settings", help="the device settings.json (default: the run's, or beside or above the pads)")
    val.add_argument("--resolution", type=_positive_int, help="the resolution the pads were made with "
                                                              "(default: the run's recipe)")
    val.add_argument("--pitches", help="the pitches the pads were made with, comma-separated, in order "
                                       "(default: the run's recipe)")
    val.add_argument("--no-content", action="store_true", help="skip the row content checks (faster)")
    val.add_argument("--json", action="store_true", help="one JSON object: the verdict and every finding")
    val.set_defaults(func=cmd_validate)
    ls = _command(sub, "ls", "the runs you started, from any folder",
                  "List the runs this user started, wherever they are (the registry in the user's state folder): "
                  "name, state, stages done and folder. status, attach and stop take these names.",
                  "onss ls\nonss ls --json\nonss attach birds")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_ls)
    au = _command(sub, "audition", "WAVs and one HTML page to hear a finished pack anywhere",
                  "Write 16 kHz WAVs cut from the pack's rows (each corner instrument at each pitch, as the "
                  "device plays it, and sweeps across each pad) and a self-contained index.html (waveforms, "
                  "players, the pad) to copy back with scp and open: no network needed.",
                  "onss audition birds\nonss audition runs/birds -o /tmp/hear && scp -r box:/tmp/hear .")
    au.add_argument("run", nargs="?", help="run folder, recipe or recipe name (default: the newest run)")
    au.add_argument("-o", "--out", help="folder for the WAVs and index.html (default: <run>/audition)")
    au.set_defaults(func=cmd_audition)
    env = _command(sub, "env", "what this machine has for onss: python, torch, GPUs, checkpoint, Slurm, MP3",
                   "Show what the wizard's environment screen shows: python, torch and CUDA, the GPUs (NVML), the "
                   "checkpoint, Slurm's sbatch, and MP3 support (libsndfile) and ffmpeg.",
                   "onss env\nonss env --json")
    env.add_argument("--json", action="store_true", help="machine-readable output")
    env.set_defaults(func=cmd_env)
    comp = _command(sub, "completion", "print a shell completion script (bash, zsh, fish)",
                    "Print a completion script for the commands and options of onss.",
                    "source <(onss completion bash)          # bash, now; add it to ~/.bashrc to keep it\n"
                    "onss completion zsh > \"${fpath[1]}/_onss\"\n"
                    "onss completion fish > ~/.config/fish/completions/onss.fish")
    comp.add_argument("shell", choices=("bash", "zsh", "fish"))
    comp.set_defaults(func=cmd_completion)
    return parser


def _flush_stdout() -> bool:
    """Flush stdout; False (and later output dropped) when its reader is gone (``| head``)."""
    try:
        sys.stdout.flush()
        return True
    except (OSError, ValueError):  # BrokenPipeError, or a stdout already closed
        _drop_output(sys.stdout)
        return False


def main(argv: Sequence[str] | None = None) -> int:
    _open_closed_std_fds()
    try:
        return _main(argv)
    except BrokenPipeError:  # `onss ... | head`: the reader has what it wanted
        _drop_output(sys.stdout)
        return 128 + signal.SIGPIPE


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:  # --help, --version, a usage error: what argparse printed may meet a closed pipe
        _flush_stdout()
        raise
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        if not sys.stdin.isatty() or not sys.stdout.isatty():
            parser.print_help()
            if _flush_stdout():
                print("\nonss: the wizard needs a terminal, and stdin or stdout is not one: the help instead. "
                      "Run `onss` in an SSH session (ssh -t HOST onss), " + NO_TERMINAL_INSTEAD + ".",
                      file=sys.stderr)
            return 0
        from onss_tui.tui.app import create_app

        create_app().run()
        return 0
    try:
        code = func(args)
        if not _flush_stdout():  # a closed pipe shows here, not as "Exception ignored" at exit
            return 128 + signal.SIGPIPE
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
