"""Recipes: what to make, as YAML. One model serves the CLI, the wizard and the workers.

    name: birds
    inputs: audio/                  # folder of <instrument>_<midi pitch>.<wav|aif|aiff|flac|mp3|ogg>
    corners:                        # by position on the touch pad
      top_left:     [bird1]         # a bare name, or {name: bird1, display: BIRD 1, abbr: B1}
      top_right:    [bird2]
      bottom_left:  [bird3]
      bottom_right: [bird4]
    pitches: [24, 27, 30, 33]
    resolution: 9
    engine: nsynth                  # nsynth | preview
    output: runs/birds              # relative paths are relative to the recipe file

Errors are reported all at once, each as ``file:line:col: field: message``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from onss_tui.atomic import atomic_write_text
from onss_tui.vocab import ROW_LENGTH, CleanMode, Engine, KernelsSetting, PrecisionSetting

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]*$")
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
MAX_RECIPE_BYTES = 1_000_000  # a recipe is a few hundred bytes; a bigger file is the wrong file
MAX_YAML_VALUES = 100_000  # values after aliases are expanded: refuses a "billion laughs" recipe
NAME_MAX = 255  # bytes in one file name (ext4, tmpfs, the device's card)
# The longest name the run writes for a pad <tl>_<tr>_<bl>_<br>.bin is the temporary file of its done
# marker, pack/done/.<pad>.bin.done.<8 random>.tmp: 19 bytes more than the pad's file name.
PAD_NAME_MAX = NAME_MAX - len(".") - len(".done") - len(".12345678") - len(".tmp")

__all__ = ["Recipe", "RecipeError", "Slurm", "slurm_time", "read_recipe_data", "load_recipe", "save_recipe",
           "recipe_schema", "import_original_settings", "dump_recipe_data", "recipe_node"]


class RecipeError(Exception):
    """One or more problems in a recipe; ``problems`` holds each ``file:line:col: field: message``."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Instrument(_Strict):
    name: str = Field(description="the file prefix of its notes: <name>_<pitch>.wav; letters, digits, '.' and '-' "
                                  "(no '_': the name is also part of the pad file names)")
    display: str | None = Field(None, description="shown on the device's selection screen (8 characters; default: "
                                                  "the name in capitals)")
    abbr: str | None = Field(None, description="shown in the pad's corner (2 characters; default: the name's first "
                                               "two letters in capitals)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"{v!r}: use letters, digits, '.' and '-' only (no '_', '/' or spaces: "
                             "the name is part of <name>_<pitch>.wav and of the pad file names)")
        return v

    @field_validator("display")
    @classmethod
    def _display(cls, v: str | None) -> str | None:
        if v is not None and not 1 <= len(v) <= 8:
            raise ValueError(f"{v!r}: 1 to 8 characters (the device's screen shows 8)")
        return v

    @field_validator("abbr")
    @classmethod
    def _abbr(cls, v: str | None) -> str | None:
        if v is not None and not 1 <= len(v) <= 2:
            raise ValueError(f"{v!r}: 1 or 2 characters")
        return v

    @property
    def display_name(self) -> str:
        return self.display or self.name.upper()[:8]

    @property
    def abbreviation(self) -> str:
        return self.abbr or self.name.upper()[:2]


def _instrument(v: Any) -> Any:
    return {"name": v} if isinstance(v, str) else v


class Corners(_Strict):
    top_left: list[Instrument] = Field(
        min_length=1, description="the instruments of the pad's top-left corner, first in every pad file's name "
                                  "(the original's NW list): a bare name, an {name, display, abbr} mapping, or a list")
    top_right: list[Instrument] = Field(
        min_length=1, description="the instruments of the top-right corner, second in pad file names (the "
                                  "original's NE list)")
    bottom_left: list[Instrument] = Field(
        min_length=1, description="the instruments of the bottom-left corner, third in pad file names (the "
                                  "original's \"SE\" list)")
    bottom_right: list[Instrument] = Field(
        min_length=1, description="the instruments of the bottom-right corner, fourth in pad file names (the "
                                  "original's \"SW\" list)")

    @field_validator(*CORNERS, mode="before")
    @classmethod
    def _bare_names(cls, v: Any) -> Any:
        if isinstance(v, (str, dict)):
            v = [v]
        return [_instrument(i) for i in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _unique(self) -> Corners:
        seen: dict[str, str] = {}
        for corner in CORNERS:
            for inst in getattr(self, corner):
                if inst.name in seen:
                    where = "twice in " + corner if seen[inst.name] == corner else f"in {seen[inst.name]} and {corner}"
                    raise ValueError(f"instrument {inst.name!r} appears {where}; "
                                     "each instrument may sit in one corner once")
                seen[inst.name] = corner
        return self

    @model_validator(mode="after")
    def _pad_name_length(self) -> Corners:
        # one instrument of each corner names each pad: the longest combination is the longest of each
        longest = [max((i.name for i in c), key=lambda n: len(n.encode())) for c in self.lists()]
        pad = "_".join(longest) + ".bin"
        size = len(pad.encode())
        if size > PAD_NAME_MAX:
            raise ValueError(f"the longest pad file name, {pad}, is {size} bytes; pad file names (one instrument "
                             f"of each corner) may have at most {PAD_NAME_MAX} (file names are limited to "
                             f"{NAME_MAX} bytes and the run adds to them): use shorter instrument names (what the "
                             "device shows is set by display and abbr)")
        return self

    def lists(self) -> list[list[Instrument]]:
        """The four corners in device order: top-left, top-right, bottom-left, bottom-right."""
        return [getattr(self, c) for c in CORNERS]

    def names(self) -> list[list[str]]:
        return [[i.name for i in c] for c in self.lists()]


class Generation(_Strict):
    precision: PrecisionSetting = Field(
        "auto", description="the generator's arithmetic: fp32 (the reference), tf32 (TF32 matmuls on CUDA), bf16 "
                            "(bfloat16 weights and states, float32 sums); auto measures bf16, then tf32, against "
                            "fp32 on the run's first notes and takes the first within 0.01 nats a step")
    kernels: KernelsSetting = Field(
        "auto", description="the generator's layer step: PyTorch ops, or fused Triton kernels (GPU); auto "
                            "times both on the GPU when the run generates and keeps the faster")
    batch_size: Literal["auto"] | int = Field(
        "auto", description="voices generated at once by each worker (one shard), 1 or more; auto: from the free "
                            "memory of the smallest of the run's GPUs (fixed on CPUs). Out of GPU memory a batch is "
                            "halved until it fits")
    gpus: Literal["all"] | int | list[int] = Field(
        "all", description="the GPUs that generate: all, a count (the first N), or a list of GPU indices, e.g. "
                           "[0, 1]; without a CUDA GPU (or with the preview engine), how many CPU workers (all: one)")
    seed: int = Field(0, ge=0, lt=2**32, description="the sampler's seed: the same seed and notes make the same pads")
    sample_length: int = Field(64000, description="samples generated per sound at 16 kHz (multiple of 512)")
    save_every: int = Field(8192, ge=64, description="samples between resumable checkpoints of a batch")

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, v: Any) -> Any:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be 'auto' or a positive integer")
        return v

    @field_validator("sample_length")
    @classmethod
    def _length(cls, v: int) -> int:
        if v < 512 or v % 512:
            raise ValueError(f"{v}: must be a positive multiple of 512 (64000 = 4 s)")
        return v


class Clean(_Strict):
    mode: CleanMode = Field(
        "mp3", description="after de-clicking and normalising: mp3, the original's MP3 round trip (16 kHz mono "
                           "24 kbps, a 5.8 kHz low-pass and its coding colour); lowpass, the band limit alone; "
                           "none, as generated")
    normalize_dbfs: float = Field(-12.0, ge=-60, le=0, description="peak level of every sound, in dBFS")


class Device(_Strict):
    data_directory: str = Field(
        "/home/pi/pads", description="the folder of the pads on the device (settings.json's nsynth.dataDirectory); "
                                     "onss deploy copies them there on the card")
    looping: bool = Field(True, description="a held note loops between loop_start and loop_end; false: it plays "
                                            "once")
    loop_start: float = Field(0.2, ge=0, le=1, description="fraction of the row, not seconds")
    loop_end: float = Field(0.41, ge=0, le=1, description="fraction of the row, not seconds; above loop_start")
    midi_channel: int = Field(1, ge=1, le=16, description="the MIDI channel the device listens on")
    osc_port: int = Field(8000, ge=1, le=65535, description="the device's OSC input port (settings.json's osc.in.port)")

    @model_validator(mode="after")
    def _loop(self) -> Device:
        if self.loop_start >= self.loop_end:
            raise ValueError(f"loop_start ({self.loop_start}) must be below loop_end ({self.loop_end}); "
                             f"both are fractions of the {ROW_LENGTH}-sample row")
        return self


SLURM_TIME_RE = re.compile(r"^(?:(?P<d>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?"
                           r"|(?P<a>\d+)(?::(?P<b>\d+)(?::(?P<c>\d+))?)?)$")
SLURM_MEM_RE = re.compile(r"^(\d+)([KMGT]?)$", re.IGNORECASE)
# sbatch options onss sets itself: refused in slurm.extra, with where each one comes from
SLURM_OWN_OPTIONS = {
    "--array": "onss sizes the generate array from the plan (slurm.max_tasks bounds how many run at once)",
    "--dependency": "onss chains its head, generate and finish jobs itself",
    "--job-name": "onss names its jobs onss-<recipe name>-<role>, which is how it finds them again",
    "--output": "onss writes every job's log to <run>/logs/",
    "--error": "onss writes every job's log (stdout and stderr) to <run>/logs/",
    "--parsable": "onss reads the job ids that sbatch prints",
    "--wrap": "onss gives each job its command",
    "--requeue": "onss requeues its jobs on preemption and node failure",
    "--no-requeue": "onss requeues its jobs on preemption and node failure; a run resumes only so",
    "--signal": "onss asks for USR2 before the time limit so a generate task saves its state",
    "--open-mode": "onss appends a requeued job's log to its first part",
    "--partition": "set slurm.partition instead", "--account": "set slurm.account instead",
    "--qos": "set slurm.qos instead", "--time": "set slurm.time instead",
    "--gpus-per-task": "set slurm.gpus_per_task instead", "--cpus-per-task": "set slurm.cpus_per_task instead",
    "--mem": "set slurm.mem instead",
}


def slurm_time(v: str) -> str:
    """A Slurm time limit (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) as [D-]HH:MM:SS."""
    m = SLURM_TIME_RE.match(v.strip())
    if not m:
        raise ValueError(f"{v!r}: not a Slurm time; write minutes (90), MM:SS, HH:MM:SS, D-HH, D-HH:MM or "
                         "D-HH:MM:SS, e.g. '12:00:00' for 12 hours or '2-00:00:00' for 2 days (quote it)")
    g = {k: int(x) for k, x in m.groupdict().items() if x is not None}
    if "d" in g:
        seconds = ((g["d"] * 24 + g["dh"]) * 60 + g.get("dm", 0)) * 60 + g.get("ds", 0)
    elif "c" in g:
        seconds = (g["a"] * 60 + g["b"]) * 60 + g["c"]
    else:
        seconds = g["a"] * 60 + g.get("b", 0)
    if seconds < 60:
        raise ValueError(f"{v!r}: under a minute; a job needs minutes at least (e.g. '30' or '02:00:00')")
    days, rest = divmod(seconds, 86400)
    clock = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{clock}" if days else clock


class Slurm(_Strict):
    """Where and how the run's jobs are submitted on a Slurm cluster (``onss run RECIPE --slurm``)."""

    partition: str = Field(description="the partition (sinfo lists them)")
    account: str | None = Field(None, description="the account to charge (sacctmgr show assoc user=$USER)")
    qos: str | None = Field(None, description="the quality of service, where the cluster asks for one")
    time: str = Field(description="each job's time limit: MM, HH:MM:SS, D-HH:MM:SS, ... (minutes as a number)")
    gpus_per_task: int = Field(1, ge=1, description="GPUs of each generate task (nsynth engine)")
    max_tasks: int = Field(ge=1, description="how many generate tasks may run at once")
    cpus_per_task: int | None = Field(None, ge=1, description="CPUs of each task (default: the partition's)")
    mem: str | None = Field(None, description="memory of each job: 16G, 500M, ... (a number: megabytes)")
    extra: list[str] = Field(default_factory=list, description="further sbatch options, e.g. --constraint=h100")

    @field_validator("partition", "account", "qos")
    @classmethod
    def _word(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c.isspace() for c in v)):
            raise ValueError(f"{v!r}: one name without spaces (sinfo and sacctmgr list them)")
        return v

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)  # minutes, as Slurm reads a bare number
        return slurm_time(v) if isinstance(v, str) else v

    @field_validator("mem", mode="before")
    @classmethod
    def _mem(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)  # megabytes, as Slurm reads a bare number
        if isinstance(v, str):
            m = SLURM_MEM_RE.match(v.strip())
            if not m:
                raise ValueError(f"{v!r}: not a Slurm size; write a number and K, M, G or T, e.g. '16G' or '500M'")
            return m.group(1) + m.group(2).upper()
        return v

    @field_validator("extra")
    @classmethod
    def _extra(cls, v: list[str]) -> list[str]:
        for option in v:
            if not option.startswith("--") or len(option) < 3:
                raise ValueError(f"{option!r}: write each sbatch option in its long form, starting with '--' "
                                 "(e.g. --constraint=h100, not -C h100)")
            if any(c.isspace() for c in option):
                raise ValueError(f"{option!r}: one option per entry, its value after '=' (e.g. "
                                 "[--constraint=h100, --exclusive])")
            name = option.split("=", 1)[0]
            if name in SLURM_OWN_OPTIONS:
                raise ValueError(f"{option!r}: onss sets {name} itself ({SLURM_OWN_OPTIONS[name]}); "
                                 "remove it from slurm.extra")
        return v


class Recipe(_Strict):
    name: str = Field(description="letters, digits, '.' and '-': names the run (runs/<name>) and the pack")
    inputs: str = Field(description="folder of <instrument>_<pitch> audio files")
    corners: Corners = Field(description="the instruments by position on the touch pad, a list per corner")
    pitches: list[int] = Field(
        min_length=1, description="MIDI notes 0-127 (60 = middle C), in the order the device's settings list them; "
                                  "every instrument needs a note at each")
    resolution: int = Field(9, ge=2, le=33, description="grid points along each side of the pad (the original: 9); a "
                                                        "pad holds resolution x resolution x pitches rows")
    engine: Engine = Field(
        "nsynth", description="nsynth: Magenta's WaveNet (hours, on GPUs); preview: a spectral morph of the corner "
                              "notes on the CPU in seconds, to check layout, corner order and pitches on the device")
    checkpoint: str | None = Field(None, description="the NSynth checkpoint (its prefix, a file or its folder); "
                                                     "null: the installed one (onss model download)")
    generation: Generation = Field(default_factory=Generation,
                                   description="how the sounds are generated (the run's plan decides every auto once)")
    clean: Clean = Field(default_factory=Clean, description="what is done to every generated sound before packing")
    device: Device = Field(default_factory=Device, description="written to the device's settings.json")
    output: str | None = Field(None, description="the run folder (default: runs/<name>)")
    slurm: Slurm | None = Field(None, description="run over a Slurm cluster: onss run RECIPE --slurm (docs/slurm.md)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"{v!r}: use letters, digits, '.' and '-' only")
        return v

    @field_validator("pitches")
    @classmethod
    def _pitches(cls, v: list[int]) -> list[int]:
        bad = [p for p in v if not 0 <= p <= 127]
        if bad:
            raise ValueError(f"MIDI notes are 0-127; {bad} are not")
        if len(set(v)) != len(v):
            raise ValueError("a pitch is listed twice")
        return v

    # -- paths relative to the recipe file ------------------------------------------------------
    def resolve(self, base: Path, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base / p)

    def output_dir(self, base: Path) -> Path:
        return self.resolve(base, self.output or f"runs/{self.name}")

    def inputs_dir(self, base: Path) -> Path:
        return self.resolve(base, self.inputs)


# --------------------------------------------------------------------------------------------
# YAML with positions


def _positions(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, tuple[int, int]]:
    """Map every field path to the (line, col) of its key (1-based), or of its value for list items."""
    out = {} if out is None else out
    out.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = path + (key.value,)
            out[sub] = (key.start_mark.line + 1, key.start_mark.column + 1)
            _positions(value, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _positions(item, path + (i,), out)
    return out


def _where(loc: tuple, positions: dict) -> tuple[int, int]:
    loc = tuple(x for x in loc if not (isinstance(x, str) and ("[" in x or x in {"str", "int", "list[int]"})))
    while loc and loc not in positions:
        loc = loc[:-1]
    return positions.get(loc, (1, 1))


def _message(err: ErrorDetails) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return "unknown key; remove it or check its spelling (see: onss recipe schema)"
    if kind == "missing":
        return "required; add it"
    if kind == "too_short":
        return "needs at least one entry"
    if kind in RANGE_ERRORS:
        return f"must be {_range_of(err['loc'], err.get('ctx') or {})} (it is {err.get('input')!r})"
    return msg.removeprefix("Value error, ")


RANGE_ERRORS = ("greater_than_equal", "less_than_equal", "greater_than", "less_than")


def _range_of(loc: tuple, ctx: dict) -> str:
    """A number field's allowed range, both ends where the model has them: 'from 2 to 33'."""
    model: Any = Recipe
    bounds: dict[str, Any] = {}
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not isinstance(part, str) or fields is None or part not in fields:
            continue
        info = fields[part]
        bounds = {k: getattr(m, k) for m in info.metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
        annotation = info.annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    bounds = bounds or {k: ctx[k] for k in ("ge", "gt", "le", "lt") if k in ctx}
    low = f"at least {bounds['ge']}" if "ge" in bounds else f"above {bounds['gt']}" if "gt" in bounds else ""
    high = f"at most {bounds['le']}" if "le" in bounds else f"below {bounds['lt']}" if "lt" in bounds else ""
    if "ge" in bounds and "le" in bounds:
        return f"from {bounds['ge']} to {bounds['le']}"
    return " and ".join(x for x in (low, high) if x) or "in range"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_expansion(root: yaml.Node, text: str, source: str, limit: int = MAX_YAML_VALUES) -> None:
    """Refuse YAML whose aliases expand it beyond ``limit`` values (or into a loop), before any
    Python object is built. An alias is the very node its anchor names, so sizes are memoised by
    node id: the graph is walked once, however far it would expand."""

    def anchor(node: yaml.Node) -> tuple[str, str]:
        mark = node.start_mark
        name = re.match(r"&([^\s,\[\]{}]+)", text[mark.index:])
        return f"{source}:{mark.line + 1}:{mark.column + 1}", (f"&{name.group(1)}" if name else "an anchor")

    size: dict[int, int] = {}
    refs: dict[int, int] = {}
    nodes: dict[int, yaml.Node] = {}
    open_: set[int] = set()  # nodes being walked: the path from the root
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finish = stack.pop()
        key = id(node)
        if finish:
            open_.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            if size[key] > limit:
                aliased = [k for k, n in refs.items() if n > 1 and k in size]
                if not aliased:
                    raise RecipeError([f"{source}: holds more than {limit:,} values; a recipe needs a few hundred. "
                                       "Is this the right file?"])
                where, name = anchor(nodes[max(aliased, key=lambda k: size[k])])
                raise RecipeError([f"{where}: {name} is repeated through aliases until the recipe expands to more "
                                   f"than {limit:,} values (a YAML bomb); a recipe needs a few hundred. Write the "
                                   "values out instead of repeating them with aliases."])
            continue
        if key in size:
            continue
        if key in open_:
            where, name = anchor(node)
            raise RecipeError([f"{where}: {name} contains an alias of itself, so it never ends; "
                               "remove that alias"])
        open_.add(key)
        nodes[key] = node
        stack.append((node, True))
        for child in _children(node):
            refs[id(child)] = refs.get(id(child), 0) + 1
            nodes.setdefault(id(child), child)
            stack.append((child, False))


_BOOL_TAG = "tag:yaml.org,2002:bool"
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only true/false (True, TRUE, False, FALSE) are
    booleans; yes/no/on/off (YAML 1.1) stay text, so an instrument called ``on`` is the name "on".
    Everything else is the safe loader's (ints, floats, null, merge keys, ...). A boolean field still
    takes yes/no/on/off: the recipe model reads those strings as booleans."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_RecipeLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _check_duplicate_keys(root: yaml.Node, source: str) -> None:
    """Refuse a key given twice in one mapping, at any level (YAML loaders silently keep the last)."""
    problems: list[tuple[int, int, str]] = []
    walked: set[int] = set()
    stack: list[tuple[yaml.Node, tuple]] = [(root, ())]
    while stack:  # iterative, and each node once: an alias is the node its anchor names
        node, path = stack.pop()
        if id(node) in walked:
            continue
        walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], yaml.Node] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                    field = ".".join(str(x) for x in path + (key.value,))
                    seen = first.setdefault((key.tag, key.value), key)
                    if seen is not key:
                        line, col = key.start_mark.line + 1, key.start_mark.column + 1
                        problems.append((line, col, f"{source}:{line}:{col}: {field}: given twice, on lines "
                                                    f"{seen.start_mark.line + 1} and {line}; keep one (YAML would "
                                                    "silently use the last)"))
                    stack.append((value, path + (key.value,)))
                else:
                    stack.append((value, path))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, path + (i,)) for i, item in enumerate(node.value))
    if problems:
        raise RecipeError([p for _, _, p in sorted(problems)])


def _names_as_text(root: yaml.Node) -> None:
    """Names are text whatever they look like: an unquoted 808, 1.5 or 2024-01-01 as an instrument
    name (or the recipe's name, or a display or abbr) would otherwise be a number or a date. A
    display or abbr written as null (or a name left empty) stays null."""

    def text(node: yaml.Node | None, keep_null: bool = False) -> None:
        if isinstance(node, yaml.ScalarNode) and node.style is None and node.tag != _STR_TAG:
            if node.tag == _NULL_TAG and (keep_null or node.value in ("", "~")):
                return
            node.tag = _STR_TAG

    def value(mapping: yaml.Node, key: str) -> yaml.Node | None:
        if not isinstance(mapping, yaml.MappingNode):
            return None
        return next((v for k, v in mapping.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)

    def instrument(node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            text(value(node, "name"))
            text(value(node, "display"), keep_null=True)
            text(value(node, "abbr"), keep_null=True)
        else:
            text(node)

    text(value(root, "name"))
    corners = value(root, "corners")
    for corner in CORNERS:
        entries = value(corners, corner) if corners is not None else None
        if isinstance(entries, yaml.SequenceNode):
            for entry in entries.value:
                instrument(entry)
        elif entries is not None:
            instrument(entries)


def _keep_text(root: yaml.Node, data: dict, path: tuple[str, ...]) -> None:
    """The value at ``path`` as written: YAML 1.1 reads an unquoted 1:30:00 as the number 5400."""
    node: yaml.Node | None = root
    target: Any = data
    for key in path:
        if not isinstance(node, yaml.MappingNode) or not isinstance(target, dict) or key not in target:
            return
        node = next((v for k, v in node.value if k.value == key), None)
        if key != path[-1]:
            target = target[key]
    if isinstance(node, yaml.ScalarNode) and node.style is None and ":" in node.value:
        target[path[-1]] = node.value


def read_recipe_data(text: str, source: str = "<recipe>") -> tuple[dict, yaml.Node | None]:
    """The recipe text as plain data, read as every recipe is read (safe, only true/false as
    booleans, names as text, YAML bombs and duplicate keys refused), and its root node; nothing
    validated yet. Raises RecipeError when the text is not YAML or not a mapping."""
    try:
        loader = _RecipeLoader(text)
        try:
            node = loader.get_single_node()
            data = None
            if node is not None:
                _check_expansion(node, text, source)
                _check_duplicate_keys(node, source)
                _names_as_text(node)
                data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise RecipeError([f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
    except RecursionError:
        raise RecipeError([f"{source}: nested too deeply to be a recipe (lists or mappings inside each other "
                           "hundreds of levels down); is this the right file?"]) from None
    if not isinstance(data, dict):
        raise RecipeError([f"{source}:1:1: a recipe is a YAML mapping of keys (name, inputs, corners, pitches, ...)"])
    if node is not None:
        _keep_text(node, data, ("slurm", "time"))
    return data, node


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Validate YAML text; raises RecipeError listing every problem with its position."""
    data, node = read_recipe_data(text, source)
    positions = _positions(node) if node is not None else {}
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = err["loc"]
            line, col = _where(loc, positions)
            field = ".".join(str(x) for x in loc if not (isinstance(x, str) and "[" in x)) or "(top level)"
            problems.append(f"{source}:{line}:{col}: {field}: {_message(err)}")
        problems = sorted(set(problems), key=lambda p: [int(x) if x.isdigit() else x for x in p.split(":")[1:3]])
        raise RecipeError(problems) from None


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    too_big = (f"{path}: more than {MAX_RECIPE_BYTES:,} bytes; a recipe is a short YAML file (a few hundred "
               "bytes). Is this the right file?")
    try:
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise RecipeError([too_big])
        with open(path, "rb") as f:
            raw = f.read(MAX_RECIPE_BYTES + 1)  # never more: the file may grow, or never end (a device)
    except OSError as exc:
        raise RecipeError([f"{path}: cannot read the recipe ({exc.strerror})"]) from None
    if len(raw) > MAX_RECIPE_BYTES:
        raise RecipeError([too_big])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RecipeError([f"{path}:{line}:{col}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                           f"{exc.start}); save the file as UTF-8 (in the editor's encoding menu, or: "
                           f"iconv -f latin1 -t utf-8 {path.name} > fixed.yaml)"]) from None
    return parse_recipe(text, str(path))


def recipe_yaml(recipe: Recipe) -> str:
    data = recipe.model_dump(mode="json", exclude_none=False)
    corners = {}
    for c in CORNERS:  # bare names where nothing else is set: the way people write them
        corners[c] = [i["name"] if i["display"] is None and i["abbr"] is None else
                      {k: v for k, v in i.items() if v is not None} for i in data["corners"][c]]
    data["corners"] = corners
    if data.get("slurm") is None:  # absent, as in every recipe written before it existed (and their digests)
        data.pop("slurm", None)
    return dump_recipe_data(data)


def dump_recipe_data(data: dict) -> str:
    """Recipe data (as recipe_yaml lays it out) in the standard layout of a recipe file."""
    return yaml.dump(data, Dumper=_RecipeDumper, sort_keys=False, width=100, allow_unicode=True)


def recipe_node(text: str) -> yaml.Node | None:
    """The root node of a recipe text, composed as every recipe is read (only true/false as booleans);
    nothing checked yet. Raises yaml.YAMLError."""
    loader = _RecipeLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


class _RecipeDumper(yaml.SafeDumper):
    """Block style for mappings; one-line lists where they hold only names, numbers or small maps."""


def _represent_list(dumper: yaml.SafeDumper, items: list) -> yaml.Node:
    flat = all(not isinstance(i, (list, dict)) or (isinstance(i, dict) and len(i) <= 3) for i in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flat)


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    # an instrument with labels: {name: .., display: ..}
    flow = "name" in data and set(data) <= {"name", "display", "abbr"}
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


_RecipeDumper.add_representer(list, _represent_list)
_RecipeDumper.add_representer(dict, _represent_dict)


def save_recipe(recipe: Recipe, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_text(path, recipe_yaml(recipe))
    return path


def recipe_schema() -> str:
    """JSON Schema of recipes, for editors (e.g. yaml-language-server)."""
    return json.dumps(Recipe.model_json_schema(), indent=2)


# --------------------------------------------------------------------------------------------
# The original pipeline's audio/settings.json


def import_original_settings(path: str | Path, name: str | None = None, inputs: str = "audio") -> Recipe:
    """Convert the original ``audio/settings.json``. Its corner lists are built NW, NE, SE, SW and
    land at (0,0), (1,0), (0,1), (1,1): so "SE" is bottom-LEFT and "SW" bottom-RIGHT (spec §3.6.4)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise RecipeError([f"{path}: cannot read it ({exc.strerror})"]) from None
    except json.JSONDecodeError as exc:
        raise RecipeError([f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})"]) from None
    pads = data.get("pads") if isinstance(data, dict) else None
    if not isinstance(pads, dict) or set(pads) != {"NW", "NE", "SE", "SW"}:
        raise RecipeError([f"{path}: expected a \"pads\" object with the lists NW, NE, SE and SW"])
    raw = {
        "name": name or (path.parent.name if path.parent.name not in ("", ".", "audio") else "imported"),
        "inputs": inputs,
        "corners": {"top_left": pads["NW"], "top_right": pads["NE"], "bottom_left": pads["SE"],
                    "bottom_right": pads["SW"]},
        "pitches": data.get("pitches", list(range(24, 85, 4))),
        "resolution": data.get("resolution", 9),
    }
    if not NAME_RE.match(raw["name"]):
        raw["name"] = "imported"
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError([f"{path}: {'.'.join(map(str, e['loc']))}: {_message(e)}" for e in exc.errors()]) from None
