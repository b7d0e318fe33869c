"""Recipe YAML reading: duplicate keys refused with both lines, names read as text (YAML 1.2
booleans: yes/no/on/off are words), everything else as the safe loader reads it."""

from pathlib import Path

import pytest
import yaml

from onss_tui.recipe import RecipeError, load_recipe, parse_recipe, save_recipe

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


# -- duplicate keys ----------------------------------------------------------------------------

def test_a_top_level_key_given_twice_is_refused_with_both_lines():
    found = problems(GOOD + "resolution: 9\nengine: preview\nresolution: 5\n")
    assert found == ["r.yaml:11:1: resolution: given twice, on lines 9 and 11; keep one "
                     "(YAML would silently use the last)"]


@pytest.mark.parametrize("text,want", [
    (GOOD + "generation:\n  seed: 1\n  batch_size: 4\n  seed: 2\n",
     "r.yaml:12:3: generation.seed: given twice, on lines 10 and 12"),
    (GOOD + "generation: {seed: 1, seed: 2}\n", "r.yaml:9:23: generation.seed: given twice, on lines 9 and 9"),
    (GOOD.replace("abbr: B2}", "abbr: B2, display: BRD}"),
     "r.yaml:5:59: corners.top_right.0.display: given twice, on lines 5 and 5"),
    (GOOD.replace("  bottom_right: [bird4]\n", "  bottom_right: [bird4]\n  top_left: [owl2]\n"),
     "r.yaml:8:3: corners.top_left: given twice, on lines 4 and 8"),
    (GOOD + 'device: {looping: true, "looping": false}\n',
     "r.yaml:9:25: device.looping: given twice, on lines 9 and 9"),
])
def test_duplicates_at_any_level(text, want):
    found = problems(text)
    assert len(found) == 1 and found[0].startswith(want), found


def test_every_duplicate_at_once_in_line_order():
    found = problems(GOOD + "pitches: [60]\nname: again\ngeneration: {seed: 1, seed: 2}\n")
    assert [p.split(": ")[0:2] for p in found] == [["r.yaml:9:1", "pitches"], ["r.yaml:10:1", "name"],
                                                    ["r.yaml:11:23", "generation.seed"]]


def test_a_duplicate_in_a_recipe_file_names_the_file(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(GOOD + "resolution: 9\nresolution: 5\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert err.value.problems == [f"{path}:10:1: resolution: given twice, on lines 9 and 10; keep one "
                                  "(YAML would silently use the last)"]


def test_merge_keys_and_aliases_are_not_duplicates():
    text = GOOD + "generation: &g {seed: 1, batch_size: 4}\nclean: {mode: none}\n"
    assert parse_recipe(text).generation.seed == 1
    merged = GOOD + "x-base: &g {seed: 1, batch_size: 4}\n"  # an unknown key: still refused, but for that
    assert any("x-base: unknown key" in p for p in problems(merged))
    over = GOOD.replace("pitches:", "generation: {<<: {seed: 1, batch_size: 4}, seed: 3}\npitches:")
    r = parse_recipe(over)
    assert r.generation.seed == 3 and r.generation.batch_size == 4  # an explicit key overrides a merged one
    shared = GOOD.replace("  top_left:     [bird1]", "  top_left:     [&b {name: bird1, abbr: B1}]")
    assert parse_recipe(shared).corners.top_left[0].abbr == "B1"


# -- names are text ------------------------------------------------------------------------------

@pytest.mark.parametrize("word", ["on", "off", "yes", "no", "On", "OFF", "Yes", "NO", "y", "n"])
def test_yaml_1_1_boolean_words_are_instrument_names(word):
    r = parse_recipe(GOOD.replace("[bird1]", f"[{word}]").replace("[bird4]", f"[{{name: {word}x}}, {word}2]"))
    assert r.corners.top_left[0].name == word
    assert [i.name for i in r.corners.bottom_right] == [f"{word}x", f"{word}2"]


def test_names_that_look_like_numbers_or_dates_stay_text():
    text = (GOOD.replace("name: birds", "name: 2024-01-01")
                .replace("[bird1]", "[808]")
                .replace("{name: bird2, display: BIRD 2, abbr: B2}", "{name: 1.5, display: 909, abbr: 12}")
                .replace("[bird3, owl]", "[on, off]")
                .replace("[bird4]", "yes"))
    r = parse_recipe(text)
    assert r.name == "2024-01-01"
    assert r.corners.names() == [["808"], ["1.5"], ["on", "off"], ["yes"]]
    assert r.corners.top_right[0].display == "909" and r.corners.top_right[0].abbr == "12"


def test_a_recipe_named_no_and_an_on_instrument_round_trip(tmp_path):
    r = parse_recipe(GOOD.replace("name: birds", "name: no").replace("[bird1]", "[on]"))
    assert r.name == "no"
    path = save_recipe(r, tmp_path / "no.yaml")
    assert load_recipe(path) == r
    assert yaml.safe_load(path.read_text())["corners"]["top_left"] == ["on"]  # written quoted


def test_display_and_abbr_null_stay_unset():
    r = parse_recipe(GOOD.replace("display: BIRD 2, abbr: B2", "display: null, abbr: ~"))
    assert r.corners.top_right[0].display is None and r.corners.top_right[0].abbr is None


def test_an_empty_name_is_still_an_error():
    assert any(p.startswith("r.yaml:1:1: name:") for p in problems(GOOD.replace("name: birds", "name:")))


# -- everything else as before -------------------------------------------------------------------

def test_booleans_numbers_and_nulls_as_before():
    r = parse_recipe(GOOD + "resolution: 0x9\ncheckpoint: ~\nclean: {normalize_dbfs: -1_2}\n"
                            "device: {looping: false, loop_start: .25, loop_end: 4.1e-1}\n")
    assert r.resolution == 9 and r.checkpoint is None and r.clean.normalize_dbfs == -12
    assert r.device.looping is False and r.device.loop_start == 0.25 and r.device.loop_end == 0.41
    for word, want in (("yes", True), ("on", True), ("off", False), ("True", True), ("FALSE", False)):
        assert parse_recipe(GOOD + f"device: {{looping: {word}}}\n").device.looping is want


def test_the_text_fields_and_yaml_errors_as_before():
    r = parse_recipe(GOOD + "output: yes\n")
    assert r.output == "yes"  # a path, once read as True
    assert problems("name: [unclosed\n")[0].startswith("r.yaml:2:1: not valid YAML")


def test_the_shipped_recipes_load():
    paths = sorted((ROOT / "recipes").glob("*.yaml"))
    assert paths
    for path in paths:
        text = path.read_text()
        r = load_recipe(path)
        assert r == parse_recipe(text, str(path))
        assert r.model_dump() == parse_recipe(yaml.safe_dump(yaml.safe_load(text))).model_dump()
