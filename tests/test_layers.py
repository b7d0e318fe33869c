"""Who may import whom: the decisions live in the plan, the machinery below it.

- a generate worker reads the plan and the run folder: it never builds a Runner (the supervisor);
- no stage and no engine reaches back up into the runner, the CLI, the benchmark or the UI;
- the generation machinery lives in ``onss_tui/engine``, and ``onss_tui/model`` (the paper) imports
  none of the pipeline.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "onss_tui"


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_the_worker_reads_the_plan_and_never_builds_a_runner():
    used = imports(PACKAGE / "pipeline" / "worker.py")
    assert not {m for m in used if m.startswith("onss_tui.pipeline.runner")}, used
    assert "onss_tui.pipeline.engines.engine_for" in used


def test_stages_and_engines_never_import_upwards():
    upward = ("onss_tui.pipeline.runner", "onss_tui.cli", "onss_tui.bench", "onss_tui.tui")
    files = sorted((PACKAGE / "pipeline" / "stages").glob("*.py")) + [
        PACKAGE / "pipeline" / f for f in ("engines.py", "plan.py", "context.py", "files.py", "worker.py")]
    offenders = {f.name: sorted(m for m in imports(f) if m.startswith(upward)) for f in files}
    assert not {k: v for k, v in offenders.items() if v}


def test_every_stage_has_its_module():
    from onss_tui.pipeline.stages import STAGE_FUNCTIONS, STAGES

    for stage in STAGES:
        assert (PACKAGE / "pipeline" / "stages" / f"{stage}.py").is_file()
        assert STAGE_FUNCTIONS[stage].__module__ == f"onss_tui.pipeline.stages.{stage}"


def test_the_model_is_the_paper_and_imports_no_machinery():
    for f in sorted((PACKAGE / "model").glob("*.py")):
        bad = sorted(m for m in imports(f) if m.startswith(("onss_tui.pipeline", "onss_tui.bench", "onss_tui.cli")))
        assert not bad, (f.name, bad)
    for gone in ("fastgen", "graphgen", "kernels", "persistent", "fidelity"):
        assert not (PACKAGE / "model" / f"{gone}.py").exists()
        assert (PACKAGE / "engine" / f"{gone}.py").is_file()
