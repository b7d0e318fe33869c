"""Finish: the verdict first (validation and the ordering check: which instrument sits in which
corner of every pad file, against the recipe and settings.json), where the pack is, and deploy
to an SD card; below, the findings, the pads drawn and settings.json. The pack is read and the
deploy runs on threads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Checkbox, Footer, Header, Input, Label, Static

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


@dataclass
class PackReport:
    """What the finish screen shows of a run's pack (read on a thread)."""

    lines: list[str]  # the pads drawn
    problems: list[str]  # ordering mismatches
    findings: list  # validate_pack's
    settings_text: str
    pads: int


def read_pack(run_dir: Path) -> PackReport:
    lines, problems = ordering_check(run_dir)
    findings = validate_pack(run_dir / "settings.json", run_dir / "pads")
    return PackReport(lines, problems, findings, (run_dir / "settings.json").read_text(),
                      len(list((run_dir / "pads").glob("*.bin"))))


class FinishScreen(Screen):
    """The verdict, the settings' path and the deploy box first; the details below, scrolled."""

    BINDINGS = [Binding("ctrl+d", "deploy", "Deploy", priority=True),  # (an Input takes ctrl+d otherwise)
                Binding("ctrl+a", "audition", "Hear it", priority=True)]
    DEFAULT_CSS = """
    FinishScreen #verdict { height: auto; padding: 0 1; text-style: bold; }
    FinishScreen #paths { height: auto; padding: 0 1; }
    FinishScreen #mount-row { height: auto; }
    FinishScreen #mount-row Label { padding: 1 1 0 1; }
    FinishScreen #mount { width: 1fr; }
    FinishScreen #deploy-row { height: auto; padding: 0 1; }
    FinishScreen #deploy-result { height: auto; padding: 0 1; }
    FinishScreen #details { border-top: solid $accent; }
    """

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run_dir = Path(run_dir)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("checking the pack ...", id="verdict", markup=False)
        yield Static(f"settings: {self.run_dir / 'settings.json'}\npads:     {self.run_dir / 'pads'}", id="paths",
                     markup=False)
        with Horizontal(id="mount-row"):
            yield Label("SD card mount point")
            yield Input(placeholder="/media/you/rootfs  (enter deploys)", id="mount")
        with Horizontal(id="deploy-row"):
            yield Checkbox("also remove the pads of earlier packs (--prune)", id="prune")
        yield Static("", id="deploy-result", markup=False)
        with VerticalScroll(id="details"):
            yield Static("", id="validation", markup=False)
            yield Static("", id="ordering", markup=False)
            yield Static("", id="settings", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.run_worker(self._read, thread=True, exclusive=True, group="pack")

    def _read(self) -> None:
        self.app.call_from_thread(self.show_pack, read_pack(self.run_dir))

    def show_pack(self, pack: PackReport) -> None:
        errors = [f for f in pack.findings if f.level == "error"]
        pads = f"{pack.pads} pad" + ("s" if pack.pads != 1 else "")
        ordering = (f"ordering check: OK, file names, recipe and settings.json agree ({pads})"
                    if not pack.problems else "ordering check: MISMATCH\n" +
                    "\n".join(f"  ! {p}" for p in pack.problems))
        valid = "VALID" if not errors and not pack.problems else "INVALID"
        self.query_one("#verdict", Static).update(
            f"{valid}: {len(errors)} errors, {len(pack.findings) - len(errors)} warnings; "
            f"{'ordering OK' if not pack.problems else 'ordering MISMATCH'}"
            + ("  (details below)" if errors or pack.problems else "  ready for the device"))
        self.query_one("#ordering", Static).update(ordering + "\n" + "\n".join(pack.lines))
        text = (f"validation: {'VALID' if not errors else 'INVALID'} "
                f"({len(errors)} errors, {len(pack.findings) - len(errors)} warnings)")
        self.query_one("#validation", Static).update("\n".join([text] + [f"  {f}" for f in pack.findings[:20]]))
        self.query_one("#settings", Static).update("settings.json:\n" + pack.settings_text)

    def action_audition(self) -> None:
        """WAVs and a page to hear the pack on another machine (no speakers on a GPU box)."""
        self.query_one("#deploy-result", Static).update("writing the audition ...")
        self.run_worker(self._audition, thread=True, exclusive=True, group="audition")

    def _audition(self) -> None:
        import os

        from onss_tui.audition import make_audition

        try:
            report = make_audition(self.run_dir)
        except (OSError, ValueError) as exc:
            self.app.call_from_thread(self.show_deployed, f"audition failed: {exc}", True)
            return
        text = (f"audition: {len(report.clips)} WAVs and {report.index}\ncopy it and open index.html: "
                f"scp -r {os.uname().nodename}:{report.folder} .")
        self.app.call_from_thread(self.show_deployed, text, False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "mount":
            self.action_deploy()

    def action_deploy(self) -> None:
        mount = self.query_one("#mount", Input).value.strip()
        if not mount:
            self.notify("type the SD card's mount point first", severity="error")
            return
        prune = self.query_one("#prune", Checkbox).value
        self.query_one("#deploy-result", Static).update(f"deploying to {mount} ...")
        self.run_worker(lambda: self._deploy(Path(mount).expanduser(), prune), thread=True, exclusive=True,
                        group="deploy")

    def _deploy(self, mount: Path, prune: bool) -> None:
        from onss_tui.device.deploy import DeployError, deploy

        try:
            report = deploy(self.run_dir, mount, prune=prune)
        except (DeployError, OSError) as exc:
            self.app.call_from_thread(self.show_deployed, f"deploy failed: {exc}", True)
            return
        if report.unchanged:
            text = f"the card already has this pack: nothing written ({report.settings})"
        else:
            text = f"deployed: {len(report.copied)} pads copied, {len(report.skipped)} already there; " \
                   f"settings at {report.settings}"
        if report.removed:
            text += f"\nremoved {len(report.removed)} pads of earlier packs"
        elif report.unused:
            text += (f"\n{len(report.unused)} pads of earlier packs ({report.unused_bytes / 1e6:,.0f} MB) stay on "
                     "the card: tick --prune and deploy again to remove them")
        self.app.call_from_thread(self.show_deployed, text, False)

    def show_deployed(self, text: str, failed: bool) -> None:
        self.query_one("#deploy-result", Static).update(text)
        self.notify(text.splitlines()[0], severity="error" if failed else "information", timeout=10)
