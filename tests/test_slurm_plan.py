"""The recipe's slurm: section and the jobs onss would submit (``onss run RECIPE --dry-run --slurm``):
validated with file:line errors, laid out without Slurm, printed without creating the run folder."""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from onss_tui.cluster.slurm import lay_out_jobs
from onss_tui.pipeline.plan import Estimates, Executor, RunPlan, make_shards
from onss_tui.recipe import RecipeError, parse_recipe, recipe_yaml
from tests.helpers import small_recipe, write_notes

ROOT = Path(__file__).resolve().parents[1]
BASE = """\
name: birds
inputs: audio/
corners: {top_left: [a], top_right: [b], bottom_left: [c], bottom_right: [d]}
pitches: [24, 27]
resolution: 3
"""
GOOD_SLURM = """\
slurm:
  partition: gpu
  account: project_2001234
  qos: normal
  time: 1-12:00
  gpus_per_task: 1
  max_tasks: 8
  cpus_per_task: 6
  mem: 32g
  extra: [--constraint=h100, --exclusive]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, "r.yaml")
    return err.value.problems


def test_a_good_slurm_section_is_validated_and_normalised():
    s = parse_recipe(BASE + GOOD_SLURM).slurm
    assert s is not None
    assert (s.partition, s.account, s.qos, s.time, s.max_tasks, s.cpus_per_task, s.mem) == (
        "gpu", "project_2001234", "normal", "1-12:00:00", 8, 6, "32G")
    assert s.extra == ["--constraint=h100", "--exclusive"] and s.gpus_per_task == 1


def test_the_slurm_section_is_optional_and_absent_from_recipes_without_it():
    r = parse_recipe(BASE)
    assert r.slurm is None and "slurm" not in recipe_yaml(r)  # so older runs' recipe digests are unchanged
    again = parse_recipe(recipe_yaml(parse_recipe(BASE + GOOD_SLURM)))
    assert again.slurm == parse_recipe(BASE + GOOD_SLURM).slurm


@pytest.mark.parametrize("written,normal", [
    ("30", "00:30:00"), ("90", "01:30:00"), ("'45:30'", "00:45:30"), ("45:30", "00:45:30"),
    ("1:30:00", "01:30:00"), ("'12:00:00'", "12:00:00"), ("2-0", "2-00:00:00"), ("1-2:30", "1-02:30:00"),
    ("'3-04:05:06'", "3-04:05:06"), ("48:00:00", "2-00:00:00"),
])
def test_slurm_times_in_every_format_slurm_takes(written, normal):
    # unquoted 1:30:00 is the number 5400 to YAML 1.1; the recipe keeps what was written
    text = BASE + f"slurm: {{partition: gpu, max_tasks: 2, time: {written}}}\n"
    assert parse_recipe(text).slurm.time == normal


@pytest.mark.parametrize("line,field,needle", [
    ("time: soon", "slurm.time", "not a Slurm time; write minutes (90), MM:SS, HH:MM:SS"),
    ("time: '00:00:30'", "slurm.time", "under a minute"),
    ("mem: 16 GB", "slurm.mem", "not a Slurm size; write a number and K, M, G or T, e.g. '16G'"),
    ("max_tasks: 0", "slurm.max_tasks", "must be at least 1 (it is 0)"),
    ("gpus_per_task: 0", "slurm.gpus_per_task", "must be at least 1 (it is 0)"),
    ("cpus_per_task: 0", "slurm.cpus_per_task", "must be at least 1 (it is 0)"),
    ("partition: my gpus", "slurm.partition", "one name without spaces"),
    ("extra: [-C h100]", "slurm.extra", "long form, starting with '--' (e.g. --constraint=h100"),
    ("extra: [--constraint=h100 --exclusive]", "slurm.extra", "one option per entry"),
    ("extra: [--array=0-3]", "slurm.extra", "onss sets --array itself (onss sizes the generate array"),
    ("extra: [--dependency=afterok:1]", "slurm.extra", "onss sets --dependency itself"),
    ("extra: [--job-name=x]", "slurm.extra", "onss sets --job-name itself"),
    ("extra: [--output=x.log]", "slurm.extra", "onss sets --output itself (onss writes every job's log"),
    ("extra: [--parsable]", "slurm.extra", "onss sets --parsable itself"),
    ("extra: ['--time=10']", "slurm.extra", "set slurm.time instead"),
    ("colour: red", "slurm.colour", "unknown key; remove it or check its spelling"),
])
def test_each_bad_slurm_field_names_the_field_the_line_and_the_fix(line, field, needle):
    given = {"partition": "gpu", "time": "60", "max_tasks": "2"}
    key = line.split(":", 1)[0]
    kept = "".join(f"  {k}: {v}\n" for k, v in given.items() if k != key)  # (a key given twice is refused)
    text = BASE + "slurm:\n" + kept + "  # the field under test\n" * (key in given) + f"  {line}\n"
    found = problems(text)
    assert len(found) == 1, found
    assert found[0].startswith(f"r.yaml:10:3: {field}: ") and needle in found[0], found


def test_the_required_slurm_fields_say_so():
    found = problems(BASE + "slurm: {account: x}\n")
    assert {p.split(": ")[1] for p in found} == {"slurm.partition", "slurm.time", "slurm.max_tasks"}
    assert all(p.startswith("r.yaml:6:") and p.endswith("required; add it") for p in found)


# -- the jobs ------------------------------------------------------------------------------------

PREVIEW = BASE + "engine: preview\nslurm: {partition: cpu, time: 30, max_tasks: 3}\n"
NSYNTH = BASE + """\
engine: nsynth
slurm:
  partition: gpu
  account: proj
  qos: high
  time: "12:00:00"
  gpus_per_task: 2
  max_tasks: 2
  cpus_per_task: 8
  mem: 64G
  extra: [--constraint=h100]
"""


def test_the_jobs_of_a_preview_recipe():
    jobs = lay_out_jobs(parse_recipe(PREVIEW), Path("/runs/birds"), sounds=18, batch=64)
    head, gen, fin = jobs.jobs
    assert [j.role for j in jobs.jobs] == ["head", "generate", "finish"]
    assert head.arguments() == [
        "--parsable", "--job-name=onss-birds-head", "--output=/runs/birds/logs/slurm-%x-%j.log", "--partition=cpu",
        "--time=00:30:00", "--ntasks=1", "--requeue", "--open-mode=append",
        "--wrap=exec python -m onss_tui.cluster.task /runs/birds head"]
    assert gen.arguments() == [
        "--parsable", "--job-name=onss-birds-generate", "--output=/runs/birds/logs/slurm-%x-%A_%a.log",
        "--partition=cpu", "--time=00:30:00", "--ntasks=1", "--array=0-2%3", "--dependency=afterok:{head}",
        "--kill-on-invalid-dep=yes", "--requeue", "--open-mode=append", "--signal=B:USR2@120",
        "--wrap=exec python -m onss_tui.cluster.task /runs/birds generate"]
    assert fin.arguments() == [
        "--parsable", "--job-name=onss-birds-finish", "--output=/runs/birds/logs/slurm-%x-%j.log", "--partition=cpu",
        "--time=00:30:00", "--ntasks=1", "--dependency=afterany:{generate}", "--kill-on-invalid-dep=yes",
        "--requeue", "--open-mode=append", "--wrap=exec python -m onss_tui.cluster.task /runs/birds finish"]
    assert head.stages == ("prepare", "plan", "embed", "interpolate") and fin.stages == (
        "clean", "pack", "settings", "validate")
    assert head.command == ("python", "-m", "onss_tui.cluster.task", "/runs/birds", "head")
    # one CPU worker a task; worker w takes shards w, w+W, ... as the local executors do
    assert [(t.index, t.workers, [s.id for s in t.shards], t.sounds) for t in gen.tasks] == [
        (0, (0,), [0], 6), (1, (1,), [1], 6), (2, (2,), [2], 6)]
    assert jobs.shards_final and jobs.workers == 3
    assert gen.arguments({"head": "4242"})[7] == "--dependency=afterok:4242"
    assert fin.line({"generate": "4243"}).startswith("sbatch --parsable --job-name=onss-birds-finish ")


def test_the_jobs_of_an_nsynth_recipe_before_its_plan():
    jobs = lay_out_jobs(parse_recipe(NSYNTH), Path("/scratch/my runs/birds"), sounds=18, batch=None,
                        python="/venv/bin/python")
    head, gen, fin = jobs.jobs
    common = ["--partition=gpu", "--account=proj", "--qos=high", "--time=12:00:00", "--ntasks=1"]
    assert head.arguments() == [
        "--parsable", "--job-name=onss-birds-head", "--output=/scratch/my runs/birds/logs/slurm-%x-%j.log", *common,
        "--gpus-per-task=1", "--cpus-per-task=8", "--mem=64G", "--requeue", "--open-mode=append", "--constraint=h100",
        "--wrap=exec /venv/bin/python -m onss_tui.cluster.task '/scratch/my runs/birds' head"]
    assert gen.arguments() == [
        "--parsable", "--job-name=onss-birds-generate", "--output=/scratch/my runs/birds/logs/slurm-%x-%A_%a.log",
        *common, "--gpus-per-task=2", "--cpus-per-task=8", "--mem=64G", "--array=0-1%2",
        "--dependency=afterok:{head}", "--kill-on-invalid-dep=yes", "--requeue", "--open-mode=append",
        "--signal=B:USR2@120",
        "--constraint=h100",
        "--wrap=exec /venv/bin/python -m onss_tui.cluster.task '/scratch/my runs/birds' generate"]
    assert fin.arguments() == [
        "--parsable", "--job-name=onss-birds-finish", "--output=/scratch/my runs/birds/logs/slurm-%x-%j.log", *common,
        "--cpus-per-task=8", "--mem=64G", "--dependency=afterany:{generate}", "--kill-on-invalid-dep=yes",
        "--requeue", "--open-mode=append", "--constraint=h100",
        "--wrap=exec /venv/bin/python -m onss_tui.cluster.task '/scratch/my runs/birds' finish"]
    assert "'--output=/scratch/my runs/birds/logs/slurm-%x-%j.log'" in head.line()
    # two GPUs a task: task t runs executors 2t and 2t+1; the batch is measured later, so not final
    assert [t.workers for t in gen.tasks] == [(0, 1), (2, 3)] and not jobs.shards_final
    assert sum(t.sounds for t in gen.tasks) == 18


def test_the_jobs_follow_the_plan_once_there_is_one():
    plan = RunPlan(recipe_sha256="0" * 64, engine="nsynth", precision="bf16", kernels="torch", batch_size=3,
                   encode_batch=64, checkpoint="/ckpt/model.ckpt", seed=0, sample_length=512, save_every=64,
                   sounds=18, shards=make_shards(18, 3, 4),
                   executors=[Executor(index=i, gpu=i % 2, device="cuda:0", label=f"GPU {i}") for i in range(4)],
                   cpu_workers=2, estimates=Estimates(seconds=None, time_text="", disk_bytes={}, free_bytes=None))
    jobs = lay_out_jobs(parse_recipe(NSYNTH), Path("/r"), plan=plan)
    gen = jobs.job("generate")
    assert jobs.shards_final and "--array=0-1%2" in gen.arguments()
    assert [[s.id for s in t.shards] for t in gen.tasks] == [[0, 1, 4, 5], [2, 3, 6, 7]]
    assert {s.id for t in gen.tasks for s in t.shards} == {s.id for s in plan.shards}


def test_few_sounds_make_few_tasks_and_a_percent_in_the_folder_is_kept():
    jobs = lay_out_jobs(parse_recipe(PREVIEW), Path("/runs/100%"), sounds=2, batch=64)
    gen = jobs.job("generate")
    assert "--array=0-1%2" in gen.arguments() and len(gen.tasks) == 2
    assert "--output=/runs/100%%/logs/slurm-%x-%A_%a.log" in gen.arguments()


def test_the_cluster_package_imports_no_ui_library():
    for f in sorted((ROOT / "onss_tui" / "cluster").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            assert not [n for n in names if n.split(".")[0] in ("textual", "rich")], f


# -- onss run RECIPE --dry-run --slurm -----------------------------------------------------------

def onss(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    empty = cwd / "no-slurm-bin"
    empty.mkdir(exist_ok=True)
    env = {**os.environ, "PATH": str(empty), "PYTHONPATH": str(ROOT)}
    assert shutil.which("sbatch", path=env["PATH"]) is None  # nothing here needs Slurm
    return subprocess.run([sys.executable, "-m", "onss_tui", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


SECTION = {"partition": "gpu", "time": "02:00:00", "max_tasks": 2, "extra": ["--constraint=h100"]}


def test_a_slurm_dry_run_prints_the_jobs_and_creates_no_run_folder(tmp_path):
    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60, 64])
    small_recipe(tmp_path, slurm=SECTION)
    done = onss("run", "small.yaml", "--dry-run", "--slurm", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "on Slurm: nothing was submitted or written" in out and "notes         8 found and readable" in out
    assert "head job: prepare, plan, embed, interpolate; CPUs only" in out
    assert "generate job: generate; CPUs only, after head (afterok)" in out
    assert f"--output={tmp_path}/run/logs/slurm-%x-%A_%a.log" in out and "--array=0-1%2" in out
    assert "'--dependency=afterok:{head}'" in out and "--constraint=h100" in out
    assert "task 0: worker(s) 0, shard(s) 0, 9 sounds" in out and "task 1: worker(s) 1, shard(s) 1, 9 sounds" in out
    assert "finish job: clean, pack, settings, validate; CPUs only, after generate (afterany)" in out
    done = onss("run", "small.yaml", "--dry-run", "--slurm", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [j["role"] for j in report["slurm"]["jobs"]] == ["head", "generate", "finish"]
    generate = report["slurm"]["jobs"][1]
    assert generate["sbatch"][0] == "--parsable" and generate["sbatch"][-1].startswith("--wrap=exec ")
    assert [t["sounds"] for t in generate["tasks"]] == [9, 9] and report["sounds"] == 18
    assert not (tmp_path / "run").exists()


def test_slurm_without_a_section_or_without_dry_run_exits_2(tmp_path):
    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60, 64])
    small_recipe(tmp_path)
    done = onss("run", "small.yaml", "--dry-run", "--slurm", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--slurm needs a 'slurm:' section in the recipe" in done.stderr
    assert "slurm:\n  partition: gpu" in done.stderr and "max_tasks: 4" in done.stderr
    small_recipe(tmp_path, slurm=SECTION)
    done = onss("run", "small.yaml", "--slurm", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr  # (a machine without Slurm)
    assert "sbatch, squeue, scancel not found on the PATH: run this on a Slurm login node" in done.stderr
    assert not (tmp_path / "run").exists()
    done = onss("run", "small.yaml", "--wait", cwd=tmp_path)
    assert done.returncode == 2 and "--wait is for --slurm" in done.stderr


def test_a_bad_slurm_section_is_refused_with_its_line(tmp_path):
    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60, 64])
    small_recipe(tmp_path, slurm={**SECTION, "extra": ["--array=0-9"]})
    done = onss("run", "small.yaml", "--dry-run", "--slurm", cwd=tmp_path)
    assert done.returncode == 2 and "small.yaml:" in done.stderr and "slurm.extra: '--array=0-9': onss sets --array" \
        in done.stderr
    assert not (tmp_path / "run").exists()
