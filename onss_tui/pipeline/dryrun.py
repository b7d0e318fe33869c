"""``onss run RECIPE --dry-run``: every check that needs no GPU and writes nothing, then what the
run would do, where and for how long. The run folder is not created.

The same checks as a real run, with the same messages: the recipe, the folders, every note (read
and checked as the prepare stage does), a run folder made by another recipe, the GPUs the recipe
names and the kernels it asks for. Then the plan as far as it can be known without measuring:
an ``auto`` that the plan stage measures on a GPU is shown as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onss_tui.pipeline import plan as planning
from onss_tui.pipeline.prepare import read_notes
from onss_tui.pipeline.rundir import STAGES
from onss_tui.sizes import size_text
from onss_tui.vocab import AUTO

if TYPE_CHECKING:
    from onss_tui.pipeline.runner import Runner

__all__ = ["dry_run", "dry_run_text", "slurm_dry_run", "slurm_dry_run_text", "Verdict", "verdict"]


def _checked(runner: Runner) -> dict[str, Any]:
    """The checks a real run makes before any work (raising its errors), and what the folder holds."""
    recipe, run = runner.recipe, runner.run
    runner._check_paths(create=False)
    runner.check_recipe_unchanged()
    runner.check_tools()
    keys, _, _, warnings = read_notes(recipe, Path(recipe.inputs))
    state = run.state()
    done = [s for s in STAGES if state.stage(s).status == "done"]
    return {
        "recipe": recipe.name, "run_folder": str(run.path), "run_folder_exists": run.path.exists(),
        "stages_done": done, "stages_to_run": [s for s in STAGES if s not in done],
        "notes": len(keys), "warnings": warnings,
    }


def dry_run(runner: Runner) -> dict[str, Any]:
    """The report (JSON-able). Raises the errors a real run would raise, before any work."""
    recipe, run = runner.recipe, runner.run
    report = _checked(runner)
    if run.has_plan():  # a resumed run keeps its plan
        plan = run.plan()
        report.update(_from_plan(plan), planned="kept from the run folder's plan.json")
        return report
    layout = planning.lay_out(recipe, runner.machine)
    g = recipe.generation
    precision = layout.precision
    first = layout.executors[0].gpu
    settings = {
        "precision": precision if precision != AUTO else f"auto: measured on GPU {first} when the run starts",
        "kernels": layout.kernels if layout.kernels != AUTO else f"auto: timed on GPU {first} when the run starts",
        "batch_size": layout.batch_size if layout.batch_size is not None else
        f"auto: from GPU memory once the precision is measured (at least {layout.batch_bound})",
        "seed": g.seed, "sample_length": g.sample_length, "save_every": g.save_every,
    }
    shards = planning.make_shards(layout.sounds, layout.batch_bound, len(layout.executors))
    est = planning.estimate(layout, runner.machine, precision if precision != AUTO else "auto", g.sample_length,
                            run.path)
    report.update(
        planned="now (nothing measured yet)", engine=layout.engine, sounds=layout.sounds, pads=layout.pads,
        settings=settings, reasons=layout.reasons, shards=len(shards),
        executors=[_executor(e, shards) for e in layout.executors],
        estimates=est.model_dump(),
    )
    return report


def slurm_dry_run(runner: Runner, python: str = "python") -> dict[str, Any]:
    """``--dry-run --slurm``: the same checks, then the jobs onss would submit (the recipe's ``slurm:``
    section). Asks no GPU and no scheduler: the plan's settings are decided later, in the head job."""
    from onss_tui.cluster.slurm import lay_out_jobs
    from onss_tui.pipeline.grid import plan_sounds

    recipe, run = runner.recipe, runner.run
    report = {**_checked(runner), "engine": recipe.engine}
    if run.has_plan():  # a resumed run keeps its plan
        plan = run.plan()
        jobs = lay_out_jobs(recipe, run.path, plan=plan, python=python)
        report.update(sounds=plan.sounds, batch_size=plan.batch_size, planned="kept from the run folder's plan.json")
    else:
        if recipe.engine == "nsynth":
            planning._check_checkpoint(recipe)
        sounds = len(plan_sounds(recipe.corners.names(), recipe.pitches, recipe.resolution).sounds)
        g = recipe.generation
        batch = (int(g.batch_size) if g.batch_size != AUTO else
                 planning.PREVIEW_BATCH if recipe.engine == "preview" else None)
        jobs = lay_out_jobs(recipe, run.path, sounds=sounds, batch=batch, python=python)
        report.update(sounds=sounds, batch_size=batch if batch is not None else
                      "auto: from the head job's GPU memory once the precision is measured",
                      planned="by the head job, on its GPU" if recipe.engine == "nsynth" else "by the head job")
    report["slurm"] = jobs.as_dict()
    return report


def _head(report: dict[str, Any], what: str) -> list[str]:
    """The first lines of both dry runs' text: what was checked and the notes' warnings."""
    lines = [
        f"Dry run of {report['recipe']!r}{what}",
        f"  run folder    {report['run_folder']}" + ("" if report["run_folder_exists"] else " (would be created)"),
        f"  notes         {report['notes']} found and readable" +
        (f", {len(report['warnings'])} warnings" if report["warnings"] else ""),
    ]
    return lines + [f"    warning: {w}" for w in report["warnings"]]


def slurm_dry_run_text(report: dict[str, Any]) -> str:
    slurm = report["slurm"]
    lines = _head(report, " on Slurm: nothing was submitted or written.")
    lines += [f"  engine        {report['engine']}: {report['sounds']:,} unique sounds",
              f"  batch_size    {report['batch_size']}",
              f"  plan          {report['planned']}",
              f"  would run     {', '.join(report['stages_to_run']) or 'nothing: the run is done'}", ""]
    for job in slurm["jobs"]:
        after = f", after {job['after']['job']} ({job['after']['type']})" if job["after"] else ""
        where = f"{job['gpus_per_task']} GPU(s) a task" if job["gpus_per_task"] else "CPUs only"
        lines.append(f"{job['role']} job: {', '.join(job['stages'])}; {where}{after}")
        lines.append(f"  {job['line']}")
        for t in job["tasks"]:
            ids = ", ".join(str(s["id"]) for s in t["shards"]) or "none"
            lines.append(f"  task {t['index']}: worker(s) {', '.join(map(str, t['workers']))}, "
                         f"shard(s) {ids}, {t['sounds']:,} sounds")
    if not slurm["shards_final"]:
        lines.append("  (shards: one per worker shown; the plan splits them by the batch it measures on the GPU)")
    lines.append("Job ids are known once submitted: {head} and {generate} stand for them.")
    return "\n".join(lines)


def _executor(e: planning.Executor, shards: list[planning.Shard]) -> dict[str, Any]:
    mine = [s for s in shards if s.worker == e.index]
    return {"index": e.index, "label": e.label, "gpu": e.gpu, "shards": len(mine), "sounds": sum(s.size for s in mine)}


def _from_plan(plan: planning.RunPlan) -> dict[str, Any]:
    return {
        "engine": plan.engine, "sounds": plan.sounds,
        "settings": {"precision": plan.precision, "kernels": plan.kernels, "batch_size": plan.batch_size,
                     "seed": plan.seed, "sample_length": plan.sample_length, "save_every": plan.save_every},
        "reasons": plan.reasons, "shards": len(plan.shards),
        "executors": [_executor(e, plan.shards) for e in plan.executors],
        "estimates": plan.estimates.model_dump(),
    }


def dry_run_text(report: dict[str, Any]) -> str:
    est = report["estimates"]
    disk = sum(est["disk_bytes"].values())
    free = f", {size_text(est['free_bytes'])} free there" if est.get("free_bytes") is not None else ""
    lines = _head(report, ": nothing was run or written.")
    lines += [
        f"  engine        {report['engine']}: {report['sounds']:,} unique sounds"
        + (f", {report['pads']} pad file(s)" if "pads" in report else ""),
    ]
    for key, value in report["settings"].items():
        why = report["reasons"].get(key)
        lines.append(f"  {key:<14}{value}" + (f"  ({why})" if why and not str(value).startswith("auto") else ""))
    lines.append(f"  shards        {report['shards']} over {len(report['executors'])} worker(s)"
                 f" ({report['reasons'].get('executors', '')})")
    for e in report["executors"]:
        lines.append(f"    {e['label']}: {e['shards']} shards, {e['sounds']:,} sounds")
    lines.append(f"  time          {est['time_text']}")
    lines.append(f"  disk          about {size_text(disk)} in the run folder{free}")
    if report["stages_done"]:
        lines.append(f"  resumes       done already: {', '.join(report['stages_done'])}")
    lines.append(f"  would run     {', '.join(report['stages_to_run']) or 'nothing: the run is done'}")
    lines.append(f"  plan          {report['planned']}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Verdict:
    """Whether a recipe's run can start: ``problem`` is what would stop it (the error a real run
    gives, with its fix), ``warning`` what a user would want to know first (and may accept)."""

    problem: str | None = None
    warning: str | None = None


def verdict(recipe_path: Path, device: str | None = None) -> Verdict:
    """The dry run's checks on a saved recipe, as a verdict instead of an exception (the wizard asks
    before it starts a run; call it on a thread: it reads every note and probes the GPUs)."""
    from onss_tui.errors import user_errors
    from onss_tui.pipeline.runner import Runner

    try:
        report = dry_run(Runner.from_file(recipe_path, device=device))
    except user_errors() as exc:
        return Verdict(problem=str(exc))
    est = report["estimates"]
    disk, free = sum(est["disk_bytes"].values()), est.get("free_bytes")
    if free is not None and disk > free:
        return Verdict(problem=f"{report['run_folder']}: the run needs about {size_text(disk)} and "
                               f"{size_text(free)} is free there. Free some space, or set 'output' to a "
                               "folder on a bigger disk.")
    on_cpu = all(e["gpu"] is None for e in report["executors"])
    if report["engine"] == "nsynth" and on_cpu:
        return Verdict(warning=f"No CUDA GPU here: NSynth would generate {report['sounds']:,} sounds on the CPU "
                               f"({est['time_text']}; on a GPU it is minutes to hours). Run it on a GPU "
                               "machine or on Slurm, or use the preview engine to check the layout.")
    return Verdict()
