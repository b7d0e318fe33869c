"""Deploying a pack to the device's SD card, mounted on this machine.

The app reads ``/home/pi/opt/of/apps/open-nsynth/open-nsynth/bin/data/settings.json`` (or
``localSettings.json`` there, which wins when present) and the pads from its ``dataDirectory``.
Free space is checked first; every pad is copied to a temp name, fsynced, compared byte for byte
with its source and only then renamed into place; the old settings are backed up.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from onss_tui.atomic import atomic_write_text, fsync_dir

APP_DATA = Path("home/pi/opt/of/apps/open-nsynth/open-nsynth/bin/data")

__all__ = ["DeployError", "DeployReport", "deploy"]


class DeployError(Exception):
    """Deployment cannot go on; the message says why and what to do."""


@dataclass
class DeployReport:
    settings: Path
    pads_dir: Path
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    backups: list[Path] = field(default_factory=list)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _on_card(mount: Path, device_path: str) -> Path:
    p = Path(device_path)
    if not p.is_absolute():  # relative dataDirectory: relative to the app's bin/data
        return mount / APP_DATA / p
    return mount / p.relative_to("/")


def deploy(run_dir: Path, mount: Path, progress: Callable[[str, int, int], None] | None = None) -> DeployReport:
    run_dir, mount = Path(run_dir), Path(mount)
    settings_file, pads = run_dir / "settings.json", run_dir / "pads"
    state = json.loads((run_dir / "state.json").read_text()) if (run_dir / "state.json").is_file() else {}
    if state.get("stages", {}).get("validate", {}).get("status") != "done":
        raise DeployError(f"{run_dir}: the run has not passed validation; finish it first (onss run), "
                          f"or check it with: onss validate {pads}")
    if not mount.is_dir():
        raise DeployError(f"{mount}: no such folder. Mount the SD card's root file system and pass its mount point.")
    app_data = mount / APP_DATA
    if not app_data.is_dir():
        raise DeployError(f"{mount}: no Open NSynth Super app at {app_data}. Is this the card's root partition?")
    settings = json.loads(settings_file.read_text())
    target = _on_card(mount, settings["nsynth"]["dataDirectory"])
    files = sorted(pads.glob("*.bin"))
    need = sum(f.stat().st_size for f in files if not ((target / f.name).is_file()
                                                       and (target / f.name).stat().st_size == f.stat().st_size))
    target.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target).free
    if need > free:
        raise DeployError(f"{target}: needs {need / 1e9:.2f} GB free for the pads, has {free / 1e9:.2f} GB. "
                          "Free space on the card (old pads?) or use a larger card.")
    report = DeployReport(app_data / "settings.json", target)
    for i, f in enumerate(files):
        dest = target / f.name
        digest = _digest(f)
        if dest.is_file() and dest.stat().st_size == f.stat().st_size and _digest(dest) == digest:
            report.skipped.append(f.name)
            continue
        tmp = dest.with_name(f".{dest.name}.part")
        with open(f, "rb") as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 22)
            out.flush()
            os.fsync(out.fileno())
        if _digest(tmp) != digest:
            tmp.unlink(missing_ok=True)
            raise DeployError(f"{dest}: the copy differs from {f}; the card may be failing. Nothing was replaced.")
        os.replace(tmp, dest)
        report.copied.append(f.name)
        if progress:
            progress(f.name, i + 1, len(files))
    fsync_dir(target)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in ("settings.json", "localSettings.json"):
        old = app_data / name
        if old.is_file():
            backup = old.with_name(f"{name}.bak-{stamp}")
            shutil.copy2(old, backup)
            report.backups.append(backup)
    local = app_data / "localSettings.json"
    if local.is_file():  # it would override ours: keep it only as the backup made above
        local.unlink()
    atomic_write_text(report.settings, settings_file.read_text())
    if json.loads(report.settings.read_text()) != settings:
        raise DeployError(f"{report.settings}: read back differs from what was written; check the card.")
    return report
