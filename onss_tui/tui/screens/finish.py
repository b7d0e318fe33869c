"""Finish: the ordering check (which instrument sits in which corner of every pad file, against
the recipe and settings.json), the settings preview, the validation, and deploy to an SD card."""

from __future__ import annotations

import json
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Static

from onss_tui.device.settings import validate_pack
from onss_tui.pipeline.grid import CORNER_NAMES
from onss_tui.recipe import parse_recipe


def ordering_check(run_dir: Path) -> tuple[list[str], list[str]]:
    """Lines drawing each pad as a 2x2 picture, and the mismatches found."""
    recipe = parse_recipe((run_dir / "recipe.yaml").read_text(), str(run_dir / "recipe.yaml"))
    settings = json.loads((run_dir / "settings.json").read_text())
    want = recipe.corners.names()
    device = [[i["name"] for i in c["instruments"]] for c in settings.get("corners", [])]
    lines, problems = [], []
    if device != want:
        problems.append(f"settings.json corners {device} differ from the recipe's {want}")
    for pad in sorted((run_dir / "pads").glob("*.bin")):
        names = pad.stem.split("_")
        if len(names) != 4:
            problems.append(f"{pad.name}: not four instruments")
            continue
        for i, n in enumerate(names):
            if n not in want[i]:
                problems.append(f"{pad.name}: {n} is not in the recipe's {CORNER_NAMES[i]} corner {want[i]}")
        w = max(len(n) for n in names) + 2
        lines += [f"{pad.name}", f"  ┌{'─' * w}┬{'─' * w}┐", f"  │{names[0]:^{w}}│{names[1]:^{w}}│",
                  f"  ├{'─' * w}┼{'─' * w}┤", f"  │{names[2]:^{w}}│{names[3]:^{w}}│", f"  └{'─' * w}┴{'─' * w}┘"]
    return lines, problems


class FinishScreen(Screen):
    BINDINGS = [("ctrl+d", "deploy", "Deploy")]

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run_dir = Path(run_dir)

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static("", id="ordering", markup=False)
            yield Static("", id="validation", markup=False)
            yield Static("", id="settings", markup=False)
        with Horizontal(id="mount-row"):
            yield Label("SD card mount point")
            yield Input(placeholder="/media/you/rootfs", id="mount")
        yield Footer()

    def on_mount(self) -> None:
        lines, problems = ordering_check(self.run_dir)
        verdict = "ordering check: OK, file names, recipe and settings.json agree" if not problems else \
            "ordering check: MISMATCH\n" + "\n".join(f"  ! {p}" for p in problems)
        self.query_one("#ordering", Static).update(verdict + "\n" + "\n".join(lines))
        findings = validate_pack(self.run_dir / "settings.json", self.run_dir / "pads")
        errors = [f for f in findings if f.level == "error"]
        text = (f"validation: {'VALID' if not errors else 'INVALID'} "
                f"({len(errors)} errors, {len(findings) - len(errors)} warnings)")
        self.query_one("#validation", Static).update("\n".join([text] + [f"  {f}" for f in findings[:20]]))
        self.query_one("#settings", Static).update("settings.json:\n" + (self.run_dir / "settings.json").read_text())

    def action_deploy(self) -> None:
        from onss_tui.device.deploy import DeployError, deploy

        mount = self.query_one("#mount", Input).value.strip()
        if not mount:
            self.notify("type the SD card's mount point first", severity="error")
            return
        try:
            report = deploy(self.run_dir, Path(mount).expanduser())
        except (DeployError, OSError) as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        self.notify(f"deployed: {len(report.copied)} pads copied, settings at {report.settings}", timeout=10)
