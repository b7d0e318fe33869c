"""The registry of runs in the user's state folder (onss_tui/registry.py), written by real runs."""

from __future__ import annotations

import shutil

from onss_tui import registry
from onss_tui.pipeline.runner import Runner
from tests.helpers import small_recipe, write_notes


def test_a_run_is_registered_and_found_by_its_recipe_name_from_anywhere(tmp_path, monkeypatch):
    write_notes(tmp_path / "audio", "abcd", [60, 64])
    first = small_recipe(tmp_path, name="first.yaml", output="run1")
    second = small_recipe(tmp_path, name="second.yaml", output="run2")
    second.write_text(second.read_text().replace("name: small", "name: other"))
    Runner.from_file(first, device="cpu").execute()
    Runner.from_file(second, device="cpu").execute()
    monkeypatch.chdir(tmp_path.parent)  # (after an SSH reconnect: somewhere else)
    entries = registry.runs()
    assert [(e.name, e.run) for e in entries] == [("other", str(tmp_path / "run2")),
                                                  ("small", str(tmp_path / "run1"))]
    assert entries[1].recipe == str(first.resolve()) and not entries[1].slurm
    assert registry.find("small").run == str(tmp_path / "run1")
    assert registry.find(str(tmp_path / "run2")).name == "other"
    assert registry.find("nothing") is None
    started = entries[1].started
    Runner.from_file(first, device="cpu").execute()  # resumed (done already): first in the list again
    again = registry.runs()
    assert again[0].name == "small" and again[0].started == started and again[0].updated > started
    shutil.rmtree(tmp_path / "run2")
    assert [e.name for e in registry.runs()] == ["small"]  # a deleted run folder drops out


def test_an_unwritable_registry_never_stops_a_run(tmp_path, monkeypatch):
    write_notes(tmp_path / "audio", "abcd", [60, 64])
    blocker = tmp_path / "state-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ONSS_STATE_DIR", str(blocker))
    Runner.from_file(small_recipe(tmp_path), device="cpu").execute()
    assert (tmp_path / "run" / "settings.json").is_file() and registry.runs() == []
