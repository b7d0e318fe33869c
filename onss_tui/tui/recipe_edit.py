"""The recipe the wizard edits, and saving it the way its author wrote it.

The wizard edits a :class:`~onss_tui.recipe.Recipe` itself (``model_copy(update=...)`` as fields
change, unvalidated until it is checked), so every field of an opened recipe survives the wizard,
also those it has no screen for (checkpoint, generation, clean, device, output, slurm).

Saving keeps the file as its author wrote it:

* a recipe nobody changed is written back byte for byte;
* a changed one is the original text with only the changed values replaced, in place, at the
  positions of their YAML nodes (keys added where a field was not written before, removed where
  a field went away): comments, key order, quoting and flow/block style of everything else stay;
* where that cannot be done (a top level that is not a mapping, aliases or merge keys, or a patch
  that would not read back as the edited recipe), the recipe is written in the standard layout
  (:func:`onss_tui.recipe.recipe_yaml`'s), keeping the comment lines at the top of the file.

A recipe that fails its check still opens (:func:`lenient_recipe`): the values that pass are
validated, the others kept as written, so the wizard can show each problem where it is and the
user can fix it. Nothing here imports textual; file I/O is left to the callers' thread workers,
except the small autosave helpers at the end, which those workers call.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from onss_tui import recipe as _recipe
from onss_tui.recipe import CORNERS, Corners, Device, Instrument, Recipe, RecipeError, parse_recipe

__all__ = ["Draft", "Problem", "Check", "load_data", "lenient_recipe", "recipe_data", "fresh_yaml", "render",
           "patch_text", "read_recipe_text", "autosave_path", "write_autosave", "read_autosave", "clear_autosave"]

MISSING = object()
# required fields of a recipe the wizard reads: what stands in for them when a file leaves them out
_PLACEHOLDERS: dict[str, Callable[[], Any]] = {
    "name": lambda: "", "inputs": lambda: "", "pitches": list,
    "corners": lambda: Corners.model_construct(None, **{c: [] for c in CORNERS}),
}
PATH_FIELDS = ("inputs", "output", "checkpoint")  # relative to the recipe file's folder


# --------------------------------------------------------------------------------------------
# Reading: the data a text holds, and a recipe of it that may fail its check


def load_data(text: str, source: str = "<recipe>") -> dict:
    """The mapping a recipe's text holds, read exactly as :func:`parse_recipe` reads it (YAML 1.2
    booleans, names as text, YAML bombs and duplicate keys refused), before validation. Raises
    RecipeError when the text is not YAML or not a mapping."""
    return _recipe.read_recipe_data(text, source)[0]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next((m for a in typing.get_args(annotation) if (m := _model_of(a)) is not None), None)
    return None


def _lenient_instrument(raw: Any) -> Instrument:
    raw = {"name": raw} if isinstance(raw, str) else raw
    try:
        return Instrument.model_validate(raw)
    except ValidationError:
        pass
    if isinstance(raw, dict):
        return Instrument.model_construct(**{k: raw[k] for k in ("display", "abbr") if k in raw},
                                          name=raw.get("name") if raw.get("name") is not None else "")
    return Instrument.model_construct(name="" if raw is None else str(raw))


def _lenient(cls: type[BaseModel], data: dict) -> BaseModel:
    try:
        return cls.model_validate(data)
    except ValidationError:
        pass
    values: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        if name not in data:
            if info.is_required():
                values[name] = _PLACEHOLDERS[name]() if cls is Recipe and name in _PLACEHOLDERS else None
            continue
        raw = data[name]
        sub = _model_of(info.annotation)
        if cls is Corners:
            items = [raw] if isinstance(raw, (str, dict)) else raw if isinstance(raw, list) else []
            values[name] = [_lenient_instrument(i) for i in items]
        elif sub is not None and isinstance(raw, dict):
            values[name] = _lenient(sub, raw)
        elif sub is Corners:
            values[name] = _PLACEHOLDERS["corners"]()
        else:
            values[name] = raw
    if cls is Corners:
        values.update({c: values.get(c) or [] for c in CORNERS})
    return cls.model_construct(**values)


def lenient_recipe(data: dict) -> Recipe:
    """The recipe a mapping holds: validated where it passes the check, else a Recipe whose
    failing values are kept as written (unknown keys left out) for the wizard to show and fix."""
    out = _lenient(Recipe, data)
    assert isinstance(out, Recipe)
    return out


def recipe_data(recipe: Recipe) -> dict:
    """What a recipe file holds for ``recipe``, as :func:`onss_tui.recipe.recipe_yaml` writes it:
    bare names for instruments without labels, no ``slurm`` key when there is no section."""
    data = recipe.model_dump(mode="json", warnings=False)
    corners = data.get("corners")
    if isinstance(corners, dict):
        for c in CORNERS:
            items = corners.get(c)
            if isinstance(items, list):
                corners[c] = [i["name"] if isinstance(i, dict) and i.get("display") is None and i.get("abbr") is None
                              else {k: v for k, v in i.items() if v is not None} if isinstance(i, dict) else i
                              for i in items]
    if data.get("slurm") is None:
        data.pop("slurm", None)
    return data


def fresh_yaml(data: dict) -> str:
    """The standard layout of a recipe file (recipe_yaml's)."""
    return _recipe.dump_recipe_data(data)


# --------------------------------------------------------------------------------------------
# Writing: the original text with only what changed replaced


class _FlowDumper(yaml.SafeDumper):
    """Every collection in flow style, on one line: a value written in place of another."""


def _flow(value: Any) -> str:
    out = yaml.dump(value, Dumper=_FlowDumper, default_flow_style=True, width=1_000_000, allow_unicode=True,
                    sort_keys=False).rstrip("\n")
    return out[:-4].rstrip("\n") if out.endswith("\n...") else out


def _block(key: str, value: Any, indent: int) -> str:
    lines = fresh_yaml({key: value}).splitlines()
    return "".join(" " * indent + line + "\n" for line in lines)


def _block_value(value: dict, indent: int) -> str:
    """A mapping as the block under a key at column ``indent``: a newline, then its lines."""
    return "\n" + "\n".join(" " * (indent + 2) + line for line in fresh_yaml(value).splitlines())


def _end(node: yaml.Node, text: str) -> int:
    """Where the node's own text ends (a block collection: its last value's end)."""
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style and node.value:
        last = node.value[-1]
        return _end(last[1] if isinstance(node, yaml.MappingNode) else last, text)
    end = node.end_mark.index
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        while end > node.start_mark.index and text[end - 1] in " \t\r\n":
            end -= 1
    return end


def _line_start(text: str, pos: int) -> int | None:
    """The start of pos's line, where only blanks stand before pos on it (else None)."""
    start = text.rfind("\n", 0, pos) + 1
    return start if not text[start:pos].strip() else None


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end + 1


def _colon(text: str, key: yaml.Node) -> int:
    return text.index(":", key.end_mark.index) + 1


@dataclass
class _Edits:
    text: str
    items: list[tuple[int, int, int, str]] = field(default_factory=list)  # (start, end, order, replacement)

    def add(self, start: int, end: int, replacement: str) -> None:
        self.items.append((start, end, len(self.items), replacement))

    def apply(self) -> str | None:
        ordered = sorted(self.items)
        for (_, a_end, _, _), (b_start, _, _, _) in zip(ordered, ordered[1:]):
            if b_start < a_end:
                return None  # overlapping edits: not a patch this module can make
        text = self.text
        for start, end, _, replacement in sorted(self.items, reverse=True):
            if start == end == len(text) and text and not text.endswith("\n"):
                replacement = "\n" + replacement
            text = text[:start] + replacement + text[end:]
        return text


def _replace(edits: _Edits, key: yaml.Node, node: yaml.Node, value: Any, indent: int, flow: bool) -> None:
    """Put ``value`` in place of the value node of ``key``."""
    text = edits.text
    block_value = isinstance(value, dict) and value and not flow
    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False):
        start, end = node.start_mark.index, _end(node, text)
        if block_value:
            edits.add(_colon(text, key), end, _block_value(value, indent))
        else:
            edits.add(start, end, (" " if start == end else "") + _flow(value))
        return
    start, end = _colon(text, key), _end(node, text)  # a block collection: from the colon on
    if block_value:
        edits.add(start, end, _block_value(value, indent))
    else:
        edits.add(start, end, " " + _flow(value))


def _edit_mapping(edits: _Edits, node: yaml.MappingNode, old: dict, new: dict) -> bool:
    """Edits that turn the mapping's text from ``old`` into ``new``; False where it cannot."""
    text = edits.text
    keys: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode) or k.tag == "tag:yaml.org,2002:merge":
            return False
        keys[str(k.value)] = (k, v)
    flow = bool(node.flow_style)
    indent = node.value[0][0].start_mark.column if node.value else 0
    if not node.value and flow and any(old.get(n, MISSING) != v for n, v in new.items()):
        return False
    for name, (k, v) in keys.items():
        if name not in new:
            if name in old:  # gone (a slurm: section removed): the entry goes
                start = _line_start(text, k.start_mark.index)
                if flow or start is None:
                    return False
                edits.add(start, _line_end(text, _end(v, text)), "")
            continue  # a key the model does not know stays as written (its problem is shown)
        o, n = old.get(name, MISSING), new[name]
        if o == n:
            continue
        if isinstance(v, yaml.MappingNode) and isinstance(o, dict) and isinstance(n, dict):
            inner = _Edits(text)
            if _edit_mapping(inner, v, o, n):
                for start, end, _, replacement in inner.items:
                    edits.add(start, end, replacement)
                continue
        _replace(edits, k, v, n, indent, flow)
    order = list(new)
    for i, name in enumerate(order):
        if name in keys or old.get(name, MISSING) == new[name]:
            continue
        prev = next((p for p in reversed(order[:i]) if p in keys), None)
        if flow:
            if prev is not None:
                edits.add(_end(keys[prev][1], text), _end(keys[prev][1], text), f", {name}: {_flow(new[name])}")
            else:
                first = node.value[0][0].start_mark.index
                edits.add(first, first, f"{name}: {_flow(new[name])}, ")
            continue
        if prev is not None:
            at = _line_end(text, _end(keys[prev][1], text))
        else:
            first = _line_start(text, node.value[0][0].start_mark.index) if node.value else None
            if first is None:
                return False
            at = first
        edits.add(at, at, _block(name, new[name], indent))
    return True


def _shared_nodes(root: yaml.Node) -> bool:
    """Whether a node is reached twice (an alias of an anchor)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            return True
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return False


def patch_text(text: str, old: dict, new: dict) -> str | None:
    """``text`` (which holds ``old``) with the values that differ in ``new`` replaced in place, or
    None where the text's layout does not allow it (see the module's docstring)."""
    try:
        root = _recipe.recipe_node(text)
    except (yaml.YAMLError, RecursionError):
        return None
    if not isinstance(root, yaml.MappingNode) or _shared_nodes(root):
        return None
    edits = _Edits(text)
    if not _edit_mapping(edits, root, old, new):
        return None
    return edits.apply()


def _means(text: str) -> dict | None:
    try:
        return recipe_data(lenient_recipe(load_data(text)))
    except RecipeError:
        return None


def _header(text: str) -> str:
    """The comment lines (and blank lines) at the top of a file."""
    lines = []
    for line in text.splitlines(keepends=True):
        if line.strip() and not line.lstrip().startswith("#"):
            break
        lines.append(line if line.endswith("\n") else line + "\n")
    return "".join(lines)


def render(text: str | None, old: dict, recipe: Recipe) -> str:
    """The file for ``recipe``, edited from ``text`` (which holds ``old``): ``text`` itself when
    nothing changed, else patched in place, else (where that fails) in the standard layout."""
    new = recipe_data(recipe)
    if text is None:
        return fresh_yaml(new)
    if new == old:
        return text
    patched = patch_text(text, old, new)
    if patched is not None and _means(patched) == new:
        return patched
    return _header(text) + fresh_yaml(new)


# --------------------------------------------------------------------------------------------
# The draft: what the wizard edits


PROBLEM_RE = re.compile(r"^(?P<source>.*?):(?P<line>\d+):(?P<col>\d+): (?P<field>[^ :]+): (?P<message>.*)$", re.S)


@dataclass(frozen=True)
class Problem:
    """One of RecipeError's problems, taken apart: ``file:line:col: field: message``."""

    text: str
    line: int | None
    field: str | None
    message: str

    @classmethod
    def parse(cls, text: str) -> Problem:
        m = PROBLEM_RE.match(text)
        if not m:
            return cls(text, None, None, text.split(": ", 1)[-1])
        return cls(text, int(m["line"]), m["field"], m["message"])

    def of(self, fields: tuple[str, ...]) -> bool:
        return self.field is not None and any(self.field == f or self.field.startswith(f + ".") for f in fields)

    def short(self) -> str:
        """``line 6: pitches: MIDI notes are 0-127; [200] are not``"""
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.field + ': ' if self.field else ''}{self.message}"


@dataclass
class Check:
    """A draft checked as the file it would be saved as."""

    text: str
    recipe: Recipe | None  # the validated recipe that text holds, where it passes
    problems: list[Problem]


def fresh_recipe(workdir: Path) -> Recipe:
    """The wizard's start: the notes in ./audio, the preview engine, the run in ./runs/NAME."""
    return Recipe.model_construct(
        name="my-pack", inputs=str((workdir / "audio").resolve()), corners=_PLACEHOLDERS["corners"](),
        pitches=[36, 48, 60, 72], resolution=9, engine="preview", output=str((workdir / "runs" / "my-pack").resolve()),
        device=Device(data_directory=device_folder("my-pack")))


def device_folder(name: str) -> str:
    """The pads' folder on the device for a pack: its own, so a second pack's deploy does not leave
    the first one's files beside it (the recipe's default, /home/pi/pads, is kept for recipes that
    say nothing)."""
    return f"/home/pi/{name}"


def _labels(recipe: Recipe) -> dict[str, dict[str, str]]:
    corners = recipe.corners if isinstance(recipe.corners, Corners) else None
    lists = [getattr(corners, c, []) for c in CORNERS] if corners is not None else []
    return {i.name: {"display": i.display or "", "abbr": i.abbr or ""}
            for c in lists for i in c if getattr(i, "display", None) or getattr(i, "abbr", None)}


class Draft:
    """The recipe the wizard edits: ``recipe`` (unvalidated until :meth:`check`), the file it came
    from and the text that file holds, and what was last saved (for "unsaved changes").

    ``on_change`` is called after every change (the app autosaves there)."""

    def __init__(self, workdir: Path | None = None):
        self.workdir = Path(workdir) if workdir is not None else Path.cwd()
        self.found: dict[str, list[int]] = {}  # instrument -> pitches in the notes folder (the audio step's scan)
        self.on_change: Callable[[], None] | None = None
        self.start_new()

    # -- starting points ------------------------------------------------------------------------
    def start_new(self) -> None:
        self.source: Path | None = None  # the file it was opened from (or last saved to)
        self.text: str | None = None  # that file's text (or the text as edited on the review step)
        self.base_dir = self.workdir / "recipes"  # what relative paths in the recipe are relative to
        self.recipe: Recipe = fresh_recipe(self.workdir)
        self.old = recipe_data(self.recipe)  # what self.text holds
        self.saved: dict = self.old  # the baseline of unsaved changes: what was last opened or saved
        self.saved_text: str | None = self.text
        self.opened_name: str | None = None
        self.labels: dict[str, dict[str, str]] = {}

    def open_text(self, path: Path, text: str) -> None:
        """Edit the recipe file ``path`` holding ``text``; one that fails its check opens too (its
        problems are in :meth:`check`). Raises RecipeError when the text is no YAML mapping."""
        data = load_data(text, str(path))
        recipe = lenient_recipe(data)
        self.source, self.text, self.base_dir = Path(path), text, Path(path).parent
        self.recipe = recipe
        self.old = self._meaning(recipe, data)
        self.saved, self.saved_text = self.old, text
        self.opened_name = recipe.name if isinstance(recipe.name, str) else None
        self.labels = _labels(recipe)

    @staticmethod
    def _meaning(recipe: Recipe, data: dict) -> dict:
        out = recipe_data(recipe)
        for name in _PLACEHOLDERS:  # a required key the file leaves out is not in its text
            if name not in data:
                out.pop(name, None)
        return out

    def edit_text(self, text: str) -> None:
        """The review step's YAML, as the user edited it, becomes the draft (RecipeError: not YAML)."""
        data = load_data(text, str(self.target()))
        self.text = text
        self.recipe = lenient_recipe(data)
        self.old = self._meaning(self.recipe, data)
        self.labels = _labels(self.recipe)
        self.changed()

    def after_save(self, path: Path, text: str, recipe: Recipe, edited: dict) -> None:
        """``text`` (holding ``recipe``) was written to ``path``; ``edited`` is the draft's data then
        (a change made while the file was being written stays unsaved). Not a change: the caller
        updates the autosave."""
        self.source, self.text, self.base_dir = Path(path), text, Path(path).parent
        self.old = recipe_data(recipe)
        self.saved, self.saved_text = self.old, text
        self.opened_name = recipe.name
        if recipe_data(self.recipe) == edited:
            self.recipe = recipe

    # -- state ------------------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        """Changes not saved yet (a fresh draft nobody touched has none)."""
        return recipe_data(self.recipe) != self.saved or self.text != self.saved_text

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def update(self, **changes: Any) -> bool:
        """Set top-level fields (unvalidated); False when they already had those values."""
        if all(getattr(self.recipe, k, MISSING) == v for k, v in changes.items()):
            return False
        self.recipe = self.recipe.model_copy(update=changes)
        self.changed()
        return True

    def update_generation(self, **changes: Any) -> bool:
        return self.update_section("generation", **changes)

    def update_section(self, section: str, **changes: Any) -> bool:
        """Set fields of a section (generation, clean, device), unvalidated; False when they already
        had those values, or when the section is no mapping at all (its problem is fixed on the review step)."""
        current = getattr(self.recipe, section, None)
        if not isinstance(current, BaseModel):
            return False
        if all(getattr(current, k, MISSING) == v for k, v in changes.items()):
            return False
        return self.update(**{section: current.model_copy(update=changes)})

    def section_value(self, field: str) -> Any:
        """A dotted field's value (``device.midi_channel``); MISSING where the section has none."""
        section, _, name = field.partition(".")
        return getattr(getattr(self.recipe, section, None), name, MISSING)

    # -- what the screens read and set ----------------------------------------------------------
    @property
    def name(self) -> str:
        return self.recipe.name if isinstance(self.recipe.name, str) else ""

    @property
    def corners(self) -> dict[str, list[str]]:
        corners = self.recipe.corners
        return {c: [str(i.name) for i in getattr(corners, c, None) or []] for c in CORNERS}

    @property
    def pitches(self) -> list[int]:
        p = self.recipe.pitches
        return list(p) if isinstance(p, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in p) else []

    @property
    def resolution(self) -> int:
        r = self.recipe.resolution
        return r if isinstance(r, int) and not isinstance(r, bool) else 0

    @property
    def engine(self) -> str:
        return str(self.recipe.engine)

    @property
    def precision(self) -> str:
        return str(self.recipe.generation.precision)

    @property
    def gpus(self) -> Any:
        return self.recipe.generation.gpus

    def resolve(self, value: Any) -> Path:
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def inputs_dir(self) -> Path:
        return self.resolve(self.recipe.inputs)

    @property
    def inputs(self) -> str:
        """The notes folder as the audio step shows it: relative to the working folder where inside it."""
        folder = self.inputs_dir()
        try:
            return str(folder.resolve().relative_to(self.workdir.resolve())) or "."
        except (ValueError, OSError):
            return str(folder)

    def set_inputs(self, typed: str) -> None:
        """The folder typed on the audio step (relative to the working folder); the recipe's own
        text stays where it names the same folder."""
        folder = Path(typed).expanduser()
        folder = (folder if folder.is_absolute() else self.workdir / folder).resolve()
        if folder != self.inputs_dir().resolve():
            self.update(inputs=str(folder))

    def set_corners(self, names: dict[str, list[str]]) -> None:
        if names == self.corners:
            return
        self.update(corners=self._corners(names))

    def _corners(self, names: dict[str, list[str]]) -> Corners:
        def instrument(name: str) -> Instrument:
            label = self.labels.get(name, {})
            return Instrument.model_construct(name=name, display=label.get("display") or None,
                                              abbr=label.get("abbr") or None)

        return Corners.model_construct(None, **{c: [instrument(n) for n in names.get(c, [])] for c in CORNERS})

    def set_label(self, name: str, which: str, value: str) -> None:
        self.labels.setdefault(name, {})[which] = value
        corners = self._corners(self.corners)
        if corners != self.recipe.corners:
            self.update(corners=corners)

    def rename(self, name: str) -> None:
        """A new name; an output folder and a device data folder named after the old name follow it."""
        old, changes = self.name, {"name": name}
        output = self.recipe.output
        if isinstance(output, str) and old and Path(output).name == old and name:
            changes["output"] = str(Path(output).with_name(name))
        device = self.recipe.device
        if (isinstance(device, Device) and old and name
                and device.data_directory == device_folder(old)):
            changes["device"] = device.model_copy(update={"data_directory": device_folder(name)})
        self.update(**changes)

    # -- saving -----------------------------------------------------------------------------------
    def target(self) -> Path:
        """Where it is saved: the file it came from while it keeps its name there, else recipes/NAME.yaml."""
        recipes = self.workdir / "recipes"
        if (self.source is not None and self.opened_name == self.name
                and self.source.resolve().parent == recipes.resolve()):
            return self.source
        return recipes / f"{self.name or 'my-pack'}.yaml"

    def for_target(self) -> Recipe:
        """The recipe with its relative paths rebased when it is saved to another folder."""
        target_dir = self.target().parent
        if target_dir.resolve() == self.base_dir.resolve():
            return self.recipe
        changes = {}
        for name in PATH_FIELDS:
            value = getattr(self.recipe, name, None)
            if isinstance(value, str) and not Path(value).expanduser().is_absolute():
                changes[name] = str(self.resolve(value).resolve())
        return self.recipe.model_copy(update=changes) if changes else self.recipe

    def render(self) -> str:
        return render(self.text, self.old, self.for_target())

    def check(self) -> Check:
        """The file it would be saved as, and its problems (``onss recipe check``'s, on that file)."""
        text = self.render()
        try:
            return Check(text, parse_recipe(text, str(self.target())), [])
        except RecipeError as exc:
            return Check(text, None, [Problem.parse(p) for p in exc.problems])

    # -- autosave ---------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({
            "version": 1, "saved_at": time.time(), "workdir": str(self.workdir),
            "source": str(self.source) if self.source else None, "text": self.text, "base_dir": str(self.base_dir),
            "opened_name": self.opened_name, "recipe": self.recipe.model_dump(mode="json", warnings=False),
            "old": self.old, "saved": self.saved, "saved_text": self.saved_text, "labels": self.labels,
        }, indent=1)

    @classmethod
    def from_json(cls, raw: str, workdir: Path) -> Draft:
        """A draft autosaved by :meth:`to_json` (ValueError when the file is not one)."""
        try:
            d = json.loads(raw)
            draft = cls(workdir)
            draft.source = Path(d["source"]) if d.get("source") else None
            draft.text, draft.base_dir = d.get("text"), Path(d["base_dir"])
            draft.opened_name = d.get("opened_name")
            draft.recipe = lenient_recipe(d["recipe"])
            draft.old, draft.saved, draft.saved_text = d["old"], d["saved"], d.get("saved_text")
            draft.labels = d.get("labels") or _labels(draft.recipe)
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not an autosaved draft ({exc})") from None
        return draft


def autosave_path(workdir: Path) -> Path:
    """The autosaved draft of the wizard working in ``workdir``: one a folder, in the user state folder."""
    from onss_tui.registry import state_dir

    key = hashlib.sha1(str(Path(workdir).resolve()).encode()).hexdigest()[:16]
    return state_dir() / "drafts" / f"{key}.json"


def write_autosave(workdir: Path, payload: str) -> Path:
    from onss_tui.atomic import atomic_write_text

    path = autosave_path(workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, payload)
    return path


def read_autosave(workdir: Path) -> tuple[Draft, float] | None:
    """The autosaved draft of ``workdir`` with unsaved changes, and when it was saved; None if none."""
    path = autosave_path(workdir)
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        draft = Draft.from_json(raw, workdir)
        when = float(json.loads(raw).get("saved_at") or path.stat().st_mtime)
    except (ValueError, OSError):
        return None
    return (draft, when) if draft.dirty else None


def clear_autosave(workdir: Path) -> None:
    autosave_path(workdir).unlink(missing_ok=True)


def read_recipe_text(path: Path) -> str:
    """A recipe file's text, with load_recipe's limits (its size, UTF-8); RecipeError otherwise."""
    path = Path(path)
    try:
        if path.stat().st_size > _recipe.MAX_RECIPE_BYTES:
            raise RecipeError([f"{path}: more than {_recipe.MAX_RECIPE_BYTES:,} bytes; a recipe is a short YAML file"])
        with open(path, "rb") as f:
            raw = f.read(_recipe.MAX_RECIPE_BYTES + 1)
    except OSError as exc:
        raise RecipeError([f"{path}: cannot read the recipe ({exc.strerror})"]) from None
    if len(raw) > _recipe.MAX_RECIPE_BYTES:
        raise RecipeError([f"{path}: more than {_recipe.MAX_RECIPE_BYTES:,} bytes; a recipe is a short YAML file"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise RecipeError([f"{path}:{line}: not UTF-8 text; save the file as UTF-8"]) from None
