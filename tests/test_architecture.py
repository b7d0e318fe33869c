"""House rules that keep the core headless."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "onss_tui"
CORE = ["model", "engine", "pipeline", "device", "audio", "recipe.py", "vocab.py", "atomic.py"]
UI_LIBS = {"textual", "rich"}


def core_files():
    for entry in CORE:
        p = PACKAGE / entry
        if p.is_dir():
            yield from sorted(p.rglob("*.py"))
        elif p.is_file():
            yield p


def test_core_sources_never_import_textual_or_rich():
    offenders = []
    for f in core_files():
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{f.relative_to(PACKAGE)}: {n}" for n in names if n.split(".")[0] in UI_LIBS]
    assert not offenders, offenders
    assert any(True for _ in core_files())


def test_importing_the_core_loads_no_ui_library():
    code = (
        "import sys, onss_tui.model, onss_tui.engine, onss_tui.audio, onss_tui.model.install, onss_tui.atomic\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
