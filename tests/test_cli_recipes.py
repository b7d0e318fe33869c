"""Recipes from the command line (issue 17, "Recipes"), through the real CLI in a child process:
`recipe check` checks the notes too, `recipe import` writes paths relative to the recipe, and
`recipe new` writes a commented recipe that `recipe check` accepts once its notes exist."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from onss_tui.recipe import load_recipe
from tests.helpers import write_notes


def onss(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onss_tui", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def recipe_file(folder: Path, corners: dict[str, list[str]], pitches: list[int], inputs: str = "audio") -> Path:
    path = folder / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "r", "inputs": inputs, "corners": corners, "pitches": pitches,
                                    "engine": "preview"}, sort_keys=False))
    return path


CORNERS = {"top_left": ["flute"], "top_right": ["bass"], "bottom_left": ["marimba"], "bottom_right": ["organ"]}


# --------------------------------------------------------------------------------------------
# 11. recipe check: the notes folder has every instrument at every pitch


def test_check_refuses_an_instrument_with_no_notes_and_a_missing_pitch(tmp_path):
    write_notes(tmp_path / "audio", ["flute", "bass", "marimba", "organ"], [60, 72], seconds=0.2)
    good = recipe_file(tmp_path, CORNERS, [60, 72])
    p = onss("recipe", "check", str(good), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "is valid, and its inputs have every note" in p.stdout
    bad = recipe_file(tmp_path, {**CORNERS, "bottom_right": ["organ", "vibez"]}, [60, 72, 84])
    p = onss("recipe", "check", str(bad), cwd=tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    err = p.stderr
    assert "Traceback" not in err and err.startswith(f"onss: error: {bad}: ")
    assert "no notes of 'vibez' (corners.bottom_right) at all" in err and "fix the name's spelling" in err
    assert err.count("vibez") <= 2  # one line for the instrument, not one per pitch
    for name in ("flute", "bass", "marimba", "organ"):
        assert f"{tmp_path / 'audio' / f'{name}_84.wav'}: missing: {name} at MIDI pitch 84" in err
    assert "remove pitch 84 from the recipe" in err and f"onss recipe check {bad}" in err
    # the same as JSON; --no-inputs checks the file alone
    j = onss("recipe", "check", str(bad), "--json", cwd=tmp_path)
    report = json.loads(j.stdout)
    assert j.returncode == 2 and report["valid"] is False and len(report["problems"]) == 5
    assert onss("recipe", "check", str(bad), "--no-inputs", cwd=tmp_path).returncode == 0


def test_check_refuses_a_missing_notes_folder_and_names_case_mistakes(tmp_path):
    r = recipe_file(tmp_path, CORNERS, [60], inputs="nowhere")
    p = onss("recipe", "check", str(r), cwd=tmp_path)
    assert p.returncode == 2 and f"{tmp_path / 'nowhere'}: no such folder" in p.stderr, p.stderr
    write_notes(tmp_path / "audio", ["Flute", "bass", "marimba", "organ"], [60], seconds=0.2)
    r = recipe_file(tmp_path, CORNERS, [60])
    p = onss("recipe", "check", str(r), cwd=tmp_path)
    assert p.returncode == 2 and "names are case-sensitive" in p.stderr and "Flute_60.wav" in p.stderr, p.stderr


def test_a_bad_recipe_file_as_json(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\ncolour: red\n")
    p = onss("recipe", "check", str(f), "--json", cwd=tmp_path)
    report = json.loads(p.stdout)
    assert p.returncode == 2 and report["valid"] is False
    assert any(line.startswith(f"{f}:2:1: colour: unknown key") for line in report["problems"]), report


# --------------------------------------------------------------------------------------------
# 12. recipe import: inputs and output relative to the new recipe's folder


def test_import_into_another_folder_writes_paths_that_resolve(tmp_path):
    work = tmp_path / "work"
    write_notes(work / "audio", ["flute", "bass", "marimba", "organ"], [36, 48], seconds=0.2)
    original = work / "old" / "settings.json"
    original.parent.mkdir()
    original.write_text(json.dumps({"pads": {"NW": ["flute"], "NE": ["bass"], "SE": ["marimba"], "SW": ["organ"]},
                                    "pitches": [36, 48]}))
    out = work / "packs" / "deep" / "mine.yaml"
    p = onss("recipe", "import", "old/settings.json", "-o", "packs/deep/mine.yaml", "--name", "mine", cwd=work)
    assert p.returncode == 0, p.stderr
    data = yaml.safe_load(out.read_text())
    assert data["inputs"] == "../../audio" and data["output"] == "../../runs/mine", data
    recipe = load_recipe(out)
    assert recipe.inputs_dir(out.parent).resolve() == (work / "audio").resolve()
    assert recipe.output_dir(out.parent).resolve() == (work / "runs" / "mine").resolve()
    p = onss("recipe", "check", str(out), cwd=tmp_path)  # from anywhere: the paths are the recipe's own
    assert p.returncode == 0, p.stderr
    assert f"inputs    {(work / 'audio').resolve()}" in p.stdout
    # the default place, recipes/<name>.yaml, and an absolute --inputs stays absolute
    p = onss("recipe", "import", "old/settings.json", "--name", "two", "--inputs", str(work / "audio"), cwd=work)
    assert p.returncode == 0, p.stderr
    data = yaml.safe_load((work / "recipes" / "two.yaml").read_text())
    assert data["inputs"] == str(work / "audio") and data["output"] == "../runs/two"
    assert onss("recipe", "check", "recipes/two.yaml", cwd=work).returncode == 0


# --------------------------------------------------------------------------------------------
# 13. recipe new: a commented recipe that recipe check accepts once its notes exist


def test_new_writes_a_commented_recipe_that_checks_once_the_notes_exist(tmp_path):
    p = onss("recipe", "new", "birds", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    path = tmp_path / "recipes" / "birds.yaml"
    text = path.read_text()
    for field in ("name", "inputs", "corners", "top_left", "pitches", "resolution", "engine", "checkpoint",
                  "generation", "precision", "batch_size", "gpus", "sample_length", "clean", "mode", "device",
                  "data_directory", "loop_start", "output"):
        line = next(line for line in text.splitlines() if line.lstrip().startswith(f"{field}:"))
        assert "# " in line, (field, line)  # every main field has its comment
    recipe = load_recipe(path)
    assert recipe.name == "birds" and recipe.inputs == "../audio" and recipe.output == "../runs/birds"
    assert recipe.device.data_directory == "/home/pi/birds"
    # its notes are not there yet: check says which are missing
    p = onss("recipe", "check", str(path), cwd=tmp_path)
    assert p.returncode == 2 and "no such folder" in p.stderr, p.stderr
    write_notes(tmp_path / "audio", [n for c in recipe.corners.names() for n in c], recipe.pitches, seconds=0.2)
    p = onss("recipe", "check", str(path), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    # again: refused without --force; a bad name is refused before anything is written
    assert onss("recipe", "new", "birds", cwd=tmp_path).returncode == 2
    bad = onss("recipe", "new", "my birds", cwd=tmp_path)
    assert bad.returncode == 2 and "letters, digits" in bad.stderr
    assert not (tmp_path / "recipes" / "my birds.yaml").exists()


def test_new_takes_the_instruments_and_pitches_of_the_notes_folder(tmp_path):
    write_notes(tmp_path / "samples", ["bird1", "bird2", "bird3", "bird4"], [40, 52, 64], seconds=0.2)
    write_notes(tmp_path / "samples", ["bird1"], [76], seconds=0.2)  # (not all four have it)
    p = onss("recipe", "new", "birds", "--inputs", "samples", "-o", "birds.yaml", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    recipe = load_recipe(tmp_path / "birds.yaml")
    assert recipe.corners.names() == [["bird1"], ["bird2"], ["bird3"], ["bird4"]]
    assert recipe.pitches == [40, 52, 64] and recipe.inputs == "samples" and recipe.output == "runs/birds"
    assert onss("recipe", "check", "birds.yaml", cwd=tmp_path).returncode == 0
