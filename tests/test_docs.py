"""The users' docs cannot go stale: the recipe reference is what its generator makes from the model,
every recipe field has a description, the formats page says what the code does, and the links of the
guide, troubleshooting, formats and reference pages (and README's) lead somewhere."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from onss_tui.recipe import Recipe, recipe_schema
from onss_tui.recipe_docs import COMMAND, fields, render_reference
from tests.helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "recipe-reference.md"
OURS = ["guide.md", "troubleshooting.md", "formats.md", "recipe-reference.md"]


def schema() -> dict:
    return json.loads(recipe_schema())


def all_properties(s: dict) -> list[tuple[str, str, dict]]:
    """(model, field, field schema) of the top level and of every model in $defs."""
    out = [("Recipe", name, f) for name, f in s["properties"].items()]
    for model, d in s.get("$defs", {}).items():
        out += [(model, name, f) for name, f in d.get("properties", {}).items()]
    return out


def test_every_recipe_field_has_a_description():
    props = all_properties(schema())
    assert len(props) >= 40  # every nested model is in the schema
    missing = [f"{model}.{name}" for model, name, f in props if not f.get("description", "").strip()]
    assert not missing, f"give these recipe fields a description= in onss_tui/recipe.py: {missing}"


def test_the_reference_lists_every_field_once():
    rows = re.findall(r"^\| `([^`]+)` \|", REFERENCE.read_text(), re.M)
    assert sorted(rows) == sorted(f.path for f in fields())
    assert len(rows) == len(set(rows)) == len(all_properties(schema()))
    for path in ("name", "corners.bottom_left", "generation.batch_size", "clean.mode", "device.osc_port",
                 "slurm.max_tasks", "corners.*[].display"):
        assert path in rows


def test_the_recipe_reference_is_up_to_date():
    assert REFERENCE.read_text(encoding="utf-8") == render_reference(), (
        f"docs/recipe-reference.md is stale: regenerate it with {COMMAND}")


def _model_fields(model: type[BaseModel], prefix: str = "") -> dict[str, object]:
    """Each field's default as the reference should say it, from the pydantic models themselves."""
    out: dict[str, object] = {}
    for name, info in model.model_fields.items():
        path = prefix + name
        if info.is_required():
            out[path] = "**required**"
        elif info.default_factory is not None:
            value = info.default_factory()  # type: ignore[call-arg]
            out[path] = "its fields' defaults" if isinstance(value, BaseModel) else f"`{json.dumps(value)}`"
        else:
            d = info.default
            out[path] = f"`{d}`" if isinstance(d, str) else f"`{json.dumps(d)}`"
        inner = info.annotation
        for arg in getattr(inner, "__args__", ()) + (inner,):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                is_list = getattr(inner, "__origin__", None) is list  # the corners' lists of instruments
                out.update(_model_fields(arg, prefix + "*[]." if is_list else path + "."))
    return out


def test_the_reference_gives_the_models_defaults():
    from onss_tui.recipe_docs import _default

    want = _model_fields(Recipe)
    got = {f.path: _default(f) for f in fields()}
    assert got == want


def _script():
    return load_script(ROOT / "tools" / "recipe_reference.py")


def test_the_generator_script_prints_and_checks(tmp_path, monkeypatch, capsys):
    script = _script()
    assert script.main([]) == 0
    assert capsys.readouterr().out == render_reference()
    assert script.main(["--check"]) == 0
    monkeypatch.setattr(script, "ROOT", tmp_path)  # a checkout whose reference is stale, then missing
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "recipe-reference.md").write_text(render_reference().replace("MIDI", "midi"))
    assert script.main(["--check"]) == 1
    assert COMMAND in capsys.readouterr().err
    (tmp_path / "docs" / "recipe-reference.md").unlink()
    assert script.main(["--check"]) == 1


def test_the_generator_runs_as_a_command():
    """As the docs say to run it: from the checkout, with the project's python."""
    p = subprocess.run([sys.executable, "tools/recipe_reference.py", "--check"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_published_schema_has_the_descriptions():
    """recipes/recipe.schema.json (what editors show on hover) is regenerated with the descriptions."""
    published = json.loads((ROOT / "recipes" / "recipe.schema.json").read_text())
    assert all(f.get("description") for _, _, f in all_properties(published))


# -- the formats page says what the code does ------------------------------------------------------


def test_formats_pad_sizes_and_rows_are_the_codes():
    from onss_tui.device.pads import pad_filename, pad_size, row_index
    from onss_tui.vocab import ROW_LENGTH

    text = (DOCS / "formats.md").read_text()
    assert "row = (yi * R + xi) * P + pi" in text and f"**{ROW_LENGTH}** samples" in text
    assert row_index(2, 3, 1, 9, 16) == (3 * 9 + 2) * 16 + 1
    sizes = re.findall(r"^  \| (\d+) \| (\d+)[^|]* \| ([\d,]+) \| ([\d,]+) \|$", text, re.M)
    assert len(sizes) >= 3
    for r, p, rows, size in sizes:
        assert int(rows.replace(",", "")) == int(r) ** 2 * int(p)
        assert int(size.replace(",", "")) == pad_size(int(r), int(p))
    assert pad_filename(["tl", "tr", "bl", "br"]) == "tl_tr_bl_br.bin"


def _events_in_code() -> set[str]:
    names = set()
    call = re.compile(r'\b(?:emit|send|_record_end)\(\s*(?:"[^"]*"|[a-z_]+)\s*,\s*"([a-z_]+)"')
    for f in (ROOT / "onss_tui").rglob("*.py"):
        if "tui" not in f.relative_to(ROOT / "onss_tui").parts:
            names.update(call.findall(f.read_text()))
    return names


def test_formats_lists_every_event_the_pipeline_writes():
    events = _events_in_code()
    assert {"run_start", "stage_done", "progress", "out_of_memory", "shard_done", "submitted"} <= events
    documented = set(re.findall(r"^  \| `([a-z_]+)`(?:, `([a-z_]+)`)? \|", (DOCS / "formats.md").read_text(), re.M))
    documented_names = {n for pair in documented for n in pair if n}
    assert events <= documented_names, f"document these events in docs/formats.md: {sorted(events - documented_names)}"


# -- links --------------------------------------------------------------------------------------------


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return "".join(c for c in text.replace(" ", "-") if c.isalnum() or c in "-_")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


# the users' pages and the other docs of this folder but cli.md and slurm.md (whose owners check them)
CHECKED = sorted({*OURS, *(p.name for p in DOCS.glob("*.md"))} - {"cli.md", "slurm.md"})


@pytest.mark.parametrize("page", [*(f"docs/{p}" for p in CHECKED), "README.md"])
def test_links_lead_somewhere(page):
    path = ROOT / page
    bad = []
    for link in _links(path):
        if re.match(r"^[a-z]+://", link) or link.startswith("mailto:"):
            continue
        target, _, anchor = link.partition("#")
        dest = (path.parent / target).resolve() if target else path
        if not dest.exists():
            bad.append(f"{link}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{link}: no such heading in {dest.name}")
    assert not bad, f"{page}: {bad}"


def test_readme_links_the_docs():
    readme = (ROOT / "README.md").read_text()
    for page in [*OURS, "run-folder.md", "cli.md", "slurm.md"]:
        assert f"(docs/{page})" in readme, page


def test_the_guide_has_the_wizards_pictures():
    guide = (DOCS / "guide.md").read_text()
    pictures = re.findall(r"!\[[^\]]+\]\((images/[^)]+\.svg)\)", guide)
    assert [Path(p).stem for p in pictures] == ["environment", "corners", "settings", "review", "dashboard", "finish"]
    # drawn at 80x24 (docs/images/screenshots.py), as the snapshot tests' pictures are
    snapshot = ROOT / "tests" / "__snapshots__" / "test_snapshots" / "test_environment.svg"
    size = re.search(r'viewBox="([^"]+)"', snapshot.read_text())
    assert size is not None
    for p in pictures:
        svg = (DOCS / p).read_text()
        assert svg.startswith("<svg") and "onss" in svg
        assert f'viewBox="{size.group(1)}"' in svg.splitlines()[0], f"{p} is not an 80x24 picture"


def test_the_generator_renders_any_schema_safely():
    """Table cells stay one cell and show <names> (GitHub would hide an unknown HTML tag)."""
    s = {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "integer", "minimum": 1, "exclusiveMaximum": 10, "description": "x | y, <name>, `<code>`"},
        "b": {"$ref": "#/$defs/Sub", "description": "a section"},
    }, "$defs": {"Sub": {"type": "object", "properties": {
        "c": {"enum": ["p", "q"], "type": "string", "default": "p", "description": "see docs/slurm.md"}}}}}
    text = render_reference(s)
    assert "| `a` | integer | **required** | ≥ 1 and &lt; 10 | x \\| y, &lt;name&gt;, `<code>` |" in text
    assert "| `b` | [b](#b) | its fields' defaults |  | a section |" in text
    assert "| `b.c` | text | `p` | `p`, `q` | see [docs/slurm.md](slurm.md) |" in text
    assert [f.path for f in fields(s)] == ["a", "b", "b.c"]
