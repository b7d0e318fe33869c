"""Recipes: validation with positions, round trips, schema, import of the original settings."""

import json
from pathlib import Path

import pytest
import yaml

from onss_tui.cli import main
from onss_tui.recipe import RecipeError, import_original_settings, load_recipe, parse_recipe, recipe_schema, save_recipe

ROOT = Path(__file__).resolve().parents[1]
GOOD = """\
name: birds
inputs: audio/
corners:
  top_left:     [bird1]
  top_right:    [{name: bird2, display: BIRD 2, abbr: B2}]
  bottom_left:  [bird3, owl]
  bottom_right: [bird4]
pitches: [24, 27, 30, 33]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, "r.yaml")
    return err.value.problems


def test_a_good_recipe_and_its_defaults():
    r = parse_recipe(GOOD)
    assert r.corners.names() == [["bird1"], ["bird2"], ["bird3", "owl"], ["bird4"]]
    assert r.corners.top_right[0].display_name == "BIRD 2" and r.corners.top_left[0].display_name == "BIRD1"
    assert r.resolution == 9 and r.engine == "nsynth" and r.generation.sample_length == 64000
    assert r.clean.mode == "mp3" and r.device.midi_channel == 1
    assert r.output_dir(Path("/x")) == Path("/x/runs/birds")


def test_every_error_at_once_with_line_and_column():
    text = GOOD.replace("[bird4]", "[bird1]").replace("[24, 27, 30, 33]", "[24, 300]") + "colour: red\nresolution: 1\n"
    found = problems(text)
    assert "r.yaml:8:1: pitches: MIDI notes are 0-127; [300] are not" in found
    assert "r.yaml:9:1: colour: unknown key; remove it or check its spelling (see: onss recipe schema)" in found
    assert any(p.startswith("r.yaml:10:1: resolution:") for p in found)
    assert any(p.startswith("r.yaml:3:1: corners:") and "'bird1' appears in top_left and bottom_right" in p
               for p in found)
    assert len(found) == 4


@pytest.mark.parametrize("change,where,needle", [
    (("bird2, display", "bird_2, display"), "5:", "no '_'"),
    (("[bird3, owl]", "[]"), "6:", "at least one"),
    (("[bird4]", "[owl]"), "", "appears in bottom_left and bottom_right"),
    (("pitches: [24, 27, 30, 33]", "pitches: [24, 24]"), "8:", "listed twice"),
    (("abbr: B2", "abbr: BRD"), "5:", "1 or 2 characters"),
])
def test_specific_errors(change, where, needle):
    found = problems(GOOD.replace(*change))
    assert any(needle in p and f"r.yaml:{where}" in p for p in found), found


def test_nested_errors_and_loop_points():
    found = problems(GOOD + "generation: {precision: fp16, sample_length: 1000}\n"
                            "device: {loop_start: 0.5, loop_end: 0.4}\n")
    assert any(p.startswith("r.yaml:9:14: generation.precision") for p in found)
    assert any(p.startswith("r.yaml:9:31: generation.sample_length") and "multiple of 512" in p for p in found)
    assert any(p.startswith("r.yaml:10:1: device") and "loop_start (0.5) must be below" in p for p in found)


def test_not_yaml_and_not_a_mapping():
    assert problems("name: [unclosed\n")[0].startswith("r.yaml:2:1: not valid YAML")
    assert "a recipe is a YAML mapping" in problems("- a\n- b\n")[0]
    assert "name: required; add it" in problems(GOOD.replace("name: birds\n", ""))[0]


def test_save_and_load_round_trip(tmp_path):
    r = parse_recipe(GOOD)
    path = save_recipe(r, tmp_path / "recipes" / "birds.yaml")
    again = load_recipe(path)
    assert again == r
    assert yaml.safe_load(path.read_text())["corners"]["top_left"] == ["bird1"]  # bare names stay bare


def test_schema_is_valid_json_schema():
    schema = json.loads(recipe_schema())
    assert schema["additionalProperties"] is False and "corners" in schema["properties"]


def test_shipped_example_recipe_is_valid():
    r = load_recipe(ROOT / "recipes" / "example.yaml")
    assert r.name == "example"


def test_import_original_settings_maps_se_to_bottom_left(tmp_path):
    original = {
        "pads": {"NW": ["brass", "caridle"], "NE": ["fatpoly"], "SW": ["marimba"], "SE": ["synthbrass"]},
        "magenta_dir": "~/magenta", "pitches": [24, 28], "resolution": 9, "final_length": 60000, "gpus": 16,
    }
    f = tmp_path / "settings.json"
    f.write_text(json.dumps(original))
    r = import_original_settings(f, name="shipped")
    assert r.corners.names() == [["brass", "caridle"], ["fatpoly"], ["synthbrass"], ["marimba"]]
    assert r.pitches == [24, 28] and r.resolution == 9


def test_recipe_cli(tmp_path, capsys):
    f = tmp_path / "birds.yaml"
    f.write_text(GOOD)
    assert main(["recipe", "check", str(f), "--no-inputs"]) == 0  # (its notes: tests/test_cli_recipes.py)
    assert "birds" in capsys.readouterr().out
    f.write_text(GOOD + "colour: red\n")
    assert main(["recipe", "check", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"{f}:9:1: colour: unknown key" in err and "Traceback" not in err
    orig = tmp_path / "settings.json"
    orig.write_text(json.dumps({"pads": {"NW": ["a"], "NE": ["b"], "SE": ["c"], "SW": ["d"]}, "pitches": [60]}))
    out = tmp_path / "recipes" / "imported.yaml"
    assert main(["recipe", "import", str(orig), "-o", str(out), "--name", "mine"]) == 0
    assert load_recipe(out).corners.names() == [["a"], ["b"], ["c"], ["d"]]
    assert main(["recipe", "schema"]) == 0
    assert '"additionalProperties": false' in capsys.readouterr().out


def test_published_schema_is_up_to_date():
    """recipes/recipe.schema.json is what editors load; regenerate it with: onss recipe schema"""
    assert json.loads((ROOT / "recipes" / "recipe.schema.json").read_text()) == json.loads(recipe_schema())
