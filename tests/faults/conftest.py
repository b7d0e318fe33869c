"""What the fault tests share: real mounts (a tmpfs for a full disk or card, a read-only bind)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def mounts():
    """mount(*args, target): a mount as root, undone after the test; skips, with the reason, where not allowed."""
    done: list[Path] = []

    def mount(*args: str) -> Path:
        target = Path(args[-1])
        if os.geteuid() != 0 or not shutil.which("mount"):
            pytest.skip("a mount needs root (id -u is not 0); the same logic is tested without one where it can be")
        r = subprocess.run(["mount", *args], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"mount {' '.join(args)} is not allowed here ({r.stderr.strip()}); "
                        "the same logic is tested without one where it can be")
        done.append(target)
        return target

    yield mount
    for target in reversed(done):
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)
