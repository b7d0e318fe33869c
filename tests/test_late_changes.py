"""A started run takes changes of the sections only late stages read (clean, device): those stages
are redone, said why, and the earlier ones kept as they are (no generation again); the result is
byte-identical to a fresh run of the changed recipe. Any other change is still refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from onss_tui.cli import main
from onss_tui.pipeline.context import RunError
from onss_tui.pipeline.rundir import STAGES
from onss_tui.pipeline.runner import Runner
from tests.helpers import digests, small_recipe, write_notes

NAMES = ["a", "b", "c", "d"]


def make(folder: Path, **over) -> Path:
    write_notes(folder / "audio", NAMES, [60, 64])
    return small_recipe(folder, **{"clean": {"mode": "mp3"}, **over})


def edit(recipe: Path, **sections) -> None:
    data = yaml.safe_load(recipe.read_text())
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    recipe.write_text(yaml.safe_dump(data))


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("*.npy"))}


def events(run: Path, since: int) -> list[dict]:
    lines = (run / "events" / "supervisor.jsonl").read_text().splitlines()[since:]
    return [json.loads(x) for x in lines]


def test_a_new_clean_mode_redoes_clean_and_after_only(tmp_path, capsys):
    recipe = make(tmp_path / "run1")
    assert main(["run", str(recipe), "--json"]) == 0
    run = tmp_path / "run1" / "run"
    generated, plan = mtimes(run / "generate"), (run / "plan.json").read_bytes()
    mp3_pads = digests(run / "pads")
    since = len((run / "events" / "supervisor.jsonl").read_text().splitlines())
    edit(recipe, clean={"mode": "lowpass"})
    assert main(["run", str(recipe), "--json"]) == 0
    assert mtimes(run / "generate") == generated and (run / "plan.json").read_bytes() == plan  # kept
    new = events(run, since)
    redone = [e["stage"] for e in new if e["event"] == "stage_redo"]
    skipped = [e["stage"] for e in new if e["event"] == "stage_skip"]
    assert redone == list(STAGES[STAGES.index("clean"):]), redone
    assert skipped == list(STAGES[: STAGES.index("clean")]), skipped
    assert next(e for e in new if e["event"] == "stage_redo")["reason"] == "the recipe's clean settings changed"
    assert digests(run / "pads") != mp3_pads
    fresh = make(tmp_path / "run2", clean={"mode": "lowpass"})  # the changed recipe from scratch
    assert main(["run", str(fresh), "--json"]) == 0
    assert digests(run / "pads") == digests(tmp_path / "run2" / "run" / "pads")
    assert main(["run", str(recipe), "--json"]) == 0  # and now it is simply done
    assert [e["event"] for e in events(run, since) if e["event"] == "stage_redo"] == ["stage_redo"] * 4


def test_new_device_settings_redo_settings_and_validate_only(tmp_path, capsys):
    recipe = make(tmp_path)
    assert main(["run", str(recipe), "--json"]) == 0
    run = tmp_path / "run"
    pads = {p.name: p.stat().st_mtime_ns for p in (run / "pads").glob("*.bin")}
    since = len((run / "events" / "supervisor.jsonl").read_text().splitlines())
    edit(recipe, device={"midi_channel": 5, "osc_port": 9000})
    assert main(["run", str(recipe), "--json"]) == 0
    redone = [e for e in events(run, since) if e["event"] == "stage_redo"]
    assert [e["stage"] for e in redone] == ["settings", "validate"]
    assert redone[0]["reason"] == "the recipe's device settings changed"
    assert {p.name: p.stat().st_mtime_ns for p in (run / "pads").glob("*.bin")} == pads  # not rewritten
    settings = json.loads((run / "settings.json").read_text())
    assert settings["midi"]["channel"] == 5 and settings["osc"]["in"]["port"] == 9000
    assert "midi_channel: 5" in (run / "recipe.yaml").read_text()  # the run's stored recipe is the new one


def test_other_changes_are_still_refused_and_say_what_may_change(tmp_path, capsys):
    recipe = make(tmp_path)
    assert main(["run", str(recipe), "--json"]) == 0
    edit(recipe, generation={"seed": 7})
    with pytest.raises(RunError, match="different recipe") as exc:
        Runner.from_file(recipe, device="cpu").execute()
    assert "Only the clean and device settings may change" in str(exc.value)
