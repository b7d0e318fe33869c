"""``onss run RECIPE --dry-run``: every check a run makes before its work, the plan as far as it is
known without a GPU, and nothing written: the run folder does not exist afterwards."""

import json

from onss_tui.cli import main
from onss_tui.pipeline.dryrun import dry_run
from onss_tui.pipeline.runner import Runner
from tests.helpers import fake_gpus, small_recipe, write_notes


def test_a_dry_run_says_what_would_run_and_writes_nothing(tmp_path, capsys):
    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60, 64])
    recipe = small_recipe(tmp_path, generation={"sample_length": 8192, "batch_size": 5, "gpus": 2})
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["run", str(recipe), "--dry-run"]) == 0
    out = capsys.readouterr().out
    # resolution 3, pitches 2: 9 grid points x 2 pitches, of which the corners' duplicates are shared
    assert "nothing was run or written" in out and "notes         8 found and readable" in out
    assert "engine        preview: 18 unique sounds, 1 pad file(s)" in out
    assert "shards        4 over 2 worker(s)" in out and "CPU worker 1: 2 shards, 9 sounds" in out
    assert "would run     prepare, plan, embed" in out and "disk          about" in out
    assert main(["run", str(recipe), "--dry-run", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sounds"] == 18 and report["shards"] == 4 and len(report["executors"]) == 2
    assert report["settings"]["batch_size"] == 5 and report["stages_done"] == []
    assert sum(report["estimates"]["disk_bytes"].values()) > 0
    assert not (tmp_path / "run").exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_dry_run_refuses_a_missing_note_as_a_run_would(tmp_path, capsys):
    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60, 64])
    (tmp_path / "audio" / "c_64.wav").unlink()
    recipe = small_recipe(tmp_path)
    assert main(["run", str(recipe), "--dry-run"]) == 2
    dry = capsys.readouterr().err
    assert "c_64.wav: missing: c at MIDI pitch 64 (found pitches [60])" in dry and "Traceback" not in dry
    assert not (tmp_path / "run").exists()
    assert main(["run", str(recipe)]) == 2
    run = capsys.readouterr().err  # (a real run's progress lines are on stderr too)
    assert run.splitlines()[-1] == dry.splitlines()[-1]  # the same message a real run gives


def test_a_dry_run_refuses_a_missing_folder(tmp_path, capsys):
    recipe = small_recipe(tmp_path, inputs="no-such-folder")
    assert main(["run", str(recipe), "--dry-run", "--json"]) == 2
    err = capsys.readouterr().err
    assert "no-such-folder: no such folder. Set 'inputs' in the recipe to the folder of your notes." in err
    assert not (tmp_path / "run").exists()


def test_a_dry_run_refuses_an_nsynth_run_without_a_checkpoint(tmp_path, capsys):
    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60])
    recipe = small_recipe(tmp_path, engine="nsynth", checkpoint="no-ckpt/model.ckpt", pitches=[60])
    assert main(["run", str(recipe), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "the nsynth engine needs the NSynth checkpoint" in err and "Fix 'checkpoint' in the recipe" in err
    assert not (tmp_path / "run").exists()


def test_a_dry_run_on_gpus_names_them_and_what_it_will_measure(tmp_path, golden_checkpoint):
    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60])
    recipe = small_recipe(tmp_path, engine="nsynth", checkpoint=str(golden_checkpoint), pitches=[60], resolution=2,
                          generation={"sample_length": 512, "gpus": [2, 3]})
    machine = fake_gpus(4)
    report = dry_run(Runner.from_file(recipe, machine=machine))
    assert [e["gpu"] for e in report["executors"]] == [2, 3]
    assert report["settings"]["precision"] == "auto: measured on GPU 2 when the run starts"
    assert report["settings"]["batch_size"].startswith("auto: from GPU memory")
    assert machine.devices == []  # nothing touched a GPU
    assert not (tmp_path / "run").exists()
