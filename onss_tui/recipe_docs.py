"""docs/recipe-reference.md, rendered from the recipe's JSON Schema (:func:`onss_tui.recipe.recipe_schema`).

Every field of every section: its type, default, allowed values and description, all read from the
schema, so the reference says what the recipe model says. Write it with
``python tools/recipe_reference.py > docs/recipe-reference.md``; ``--check`` (and a test) says when
it no longer matches the model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["COMMAND", "REFERENCE_PATH", "DocField", "fields", "render_reference"]

REFERENCE_PATH = "docs/recipe-reference.md"
COMMAND = "python tools/recipe_reference.py > docs/recipe-reference.md"

_DOC_RE = re.compile(r"\bdocs/([\w.-]+\.md)\b")
_TYPES = {"string": "text", "integer": "integer", "number": "number", "boolean": "true or false", "null": "null",
          "object": "mapping"}


@dataclass
class DocField:
    """One row of the reference: a field as the schema describes it."""

    path: str  # dotted, as written in a recipe: generation.precision
    schema: dict[str, Any]
    required: bool


@dataclass
class _Section:
    anchor: str
    title: str
    prefix: str  # what the section's field names are written after, e.g. "generation."
    schema: dict[str, Any]
    intro: str


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _refs(schema: dict[str, Any]) -> list[tuple[str, bool]]:
    """The $defs a field's schema names: (name, as list items)."""
    if "$ref" in schema:
        return [(_ref_name(schema["$ref"]), False)]
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return [(name, True) for name, _ in _refs(schema["items"])]
    return [r for option in schema.get("anyOf", []) for r in _refs(option)]


def _sections(schema: dict[str, Any]) -> list[_Section]:
    """The recipe's top level, then each nested model right after the section whose field first names it."""
    defs = schema.get("$defs", {})
    seen: set[str] = set()

    def walk(section: _Section) -> list[_Section]:
        out = [section]
        for name, field in section.schema.get("properties", {}).items():
            for ref, items in _refs(field):
                if ref in seen or ref not in defs:
                    continue
                seen.add(ref)
                path = section.prefix + name
                if items:  # the entries of a list: a section of their own, named by the model
                    lists = _named_by(section, ref)
                    title, prefix = ref.lower(), (lists[0] if len(lists) == 1 else section.prefix + "*") + "[]."
                    intro = [f"An entry of {', '.join(f'`{n}`' for n in lists)}"]
                else:
                    title, prefix = path, path + "."
                    intro = [field.get("description", "")]
                intro.append(defs[ref].get("description", ""))
                out += walk(_Section(_slug(title), title, prefix, defs[ref],
                                     " ".join(_sentence(t) for t in intro if t)))
        return out

    return walk(_Section(_slug("Top level"), "Top level", "", schema, "The keys of the recipe file itself."))


def _named_by(section: _Section, ref: str) -> list[str]:
    """The fields of ``section`` that are lists of ``ref``."""
    return [section.prefix + n for n, f in section.schema.get("properties", {}).items() if (ref, True) in _refs(f)]


def _sentence(text: str) -> str:
    text = text.strip().replace("``", "`")
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def _fields_of(section: _Section) -> list[DocField]:
    required = section.schema.get("required", [])
    return [DocField(section.prefix + name, field, name in required)
            for name, field in section.schema.get("properties", {}).items()]


def fields(schema: dict[str, Any] | None = None) -> list[DocField]:
    """Every field of the recipe, nested ones included, as the reference lists them."""
    return [f for s in _sections(schema if schema is not None else _schema()) for f in _fields_of(s)]


def _schema() -> dict[str, Any]:
    from onss_tui.recipe import recipe_schema

    return json.loads(recipe_schema())


def _code(value: Any) -> str:
    return "`" + (value if isinstance(value, str) else json.dumps(value)) + "`"


def _type(schema: dict[str, Any], anchors: dict[str, tuple[str, str]]) -> str:
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{anchors[name][1]}](#{anchors[name][0]})" if name in anchors else name
    if "const" in schema:
        return _code(schema["const"])
    if "enum" in schema:  # its values are the allowed ones
        return _TYPES.get(str(schema.get("type")), "one of")
    if "anyOf" in schema:
        return " or ".join(_type(option, anchors) for option in schema["anyOf"])
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        return "list of " + (_type(items, anchors) if isinstance(items, dict) else "values")
    return _TYPES.get(str(kind), str(kind))


def _number(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return f"{v:,}" if isinstance(v, int) and abs(v) >= 10_000 else str(v)


def _limits(schema: dict[str, Any]) -> list[str]:
    out = []
    low = ("≥", schema["minimum"]) if "minimum" in schema else (">", schema.get("exclusiveMinimum"))
    high = ("≤", schema["maximum"]) if "maximum" in schema else ("<", schema.get("exclusiveMaximum"))
    if low[1] is not None and high[1] is not None and (low[0], high[0]) == ("≥", "≤"):
        out.append(f"{_number(low[1])} to {_number(high[1])}")
    elif low[1] is not None and high[1] is not None:
        out.append(f"{low[0]} {_number(low[1])} and {high[0]} {_number(high[1])}")
    else:
        out += [f"{op} {_number(v)}" for op, v in (low, high) if v is not None]
    for key, words in (("minItems", "at least {} entries"), ("maxItems", "at most {} entries"),
                       ("minLength", "at least {} characters"), ("maxLength", "at most {} characters")):
        if key in schema:
            out.append(words.format(schema[key]).replace("1 entries", "1 entry"))
    if "pattern" in schema:
        out.append(f"matching `{schema['pattern']}`")
    return out


def _allowed(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return ", ".join(_code(v) for v in schema["enum"])
    parts = _limits(schema)
    for option in schema.get("anyOf", []):  # (its constants are in the type column: `auto` or integer)
        if "const" not in option and option.get("type") != "null" and "$ref" not in option:
            limits = _limits(option)
            if limits:
                parts.append(f"{_TYPES.get(option.get('type', ''), 'list')}: {', '.join(limits)}")
    items = schema.get("items")
    if isinstance(items, dict) and schema.get("type") == "array":
        parts += [f"each {x}" for x in _limits(items)]
    return "; ".join(parts)


def _default(field: DocField) -> str:
    if field.required:
        return "**required**"
    if "default" in field.schema:
        return _code(field.schema["default"])
    if _refs(field.schema):  # a section made from its own fields' defaults
        return "its fields' defaults"
    if field.schema.get("type") == "array":
        return "`[]`"
    return "optional"


def _cell(text: str) -> str:
    """Text for a table cell: pipes escaped, and outside `code` the angle brackets (GitHub would take
    <name> for an HTML tag and hide it), and docs/NAME.md made a link (this page is in docs/)."""
    parts = text.replace("\n", " ").replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else _DOC_RE.sub(r"[\g<0>](\g<1>)", p.replace("<", "&lt;").replace(">", "&gt;"))
                    for i, p in enumerate(parts))


def _slug(title: str) -> str:
    """The anchor GitHub gives a heading."""
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def render_reference(schema: dict[str, Any] | None = None) -> str:
    """The whole of docs/recipe-reference.md."""
    schema = schema if schema is not None else _schema()
    sections = _sections(schema)
    defs = schema.get("$defs", {})
    anchors: dict[str, tuple[str, str]] = {}
    for s in sections[1:]:
        name = next(n for n, d in defs.items() if d is s.schema)
        anchors[name] = (s.anchor, s.title)
    lines = [
        "# Recipe reference",
        "",
        f"<!-- Generated from the recipe model's JSON Schema: do not edit. Regenerate with: {COMMAND} -->",
        "",
        "Every field a recipe (`recipes/NAME.yaml`) may hold, section by section. File paths in a recipe are",
        "relative to the recipe file; a key not listed here is an error (`onss recipe check` names its line).",
        "`onss recipe new NAME` writes a recipe with a comment on every field, `recipes/example.yaml` is a",
        "complete one, and `onss recipe schema` prints the JSON Schema this page is made from (for editors:",
        "`recipes/recipe.schema.json`). The guide to making a pack is [guide.md](guide.md).",
        "",
        "Sections: " + ", ".join(f"[{s.title}](#{s.anchor})" for s in sections) + ".",
        "",
    ]
    for s in sections:
        lines += [f"## {s.title}", ""]
        if s.intro:
            lines += [_cell(s.intro), ""]
        lines += ["| field | type | default | allowed | description |", "|---|---|---|---|---|"]
        for f in _fields_of(s):
            lines.append(f"| `{f.path}` | {_cell(_type(f.schema, anchors))} | {_cell(_default(f))} | "
                         f"{_cell(_allowed(f.schema))} | {_cell(f.schema.get('description', ''))} |")
        lines.append("")
    return "\n".join(lines)
