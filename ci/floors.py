"""The lowest versions pyproject.toml allows, for ci/lowest.sh: pip constraints (``name==floor``) or requirements.

    python3 ci/floors.py [--extra-packages NAME,...] [--skip NAME,...] [--requirements]

prints one line per direct dependency of the package, and per named package of the ``test`` extra
(``--extra-packages pytest,hypothesis``): ``name==floor`` where the floor is the ``>=`` (or ``~=``, ``==``)
bound, or with ``--requirements`` the requirement as pyproject.toml has it (for uv's
``--resolution lowest-direct``). ``--skip`` leaves packages out (torch: ci/lowest.sh installs the CPU
build first). A dependency without a lower bound is an error: its lowest version is no version at all.
Only the standard library: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")
BOUND = re.compile(r"(===|==|~=|>=)\s*([0-9][^,\s]*)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(requirement: str) -> tuple[str, str, str]:
    """``(normalized name, version specifiers, marker)`` of one PEP 508 requirement (no URLs)."""
    m = REQUIREMENT.match(requirement)
    if m is None or "@" in requirement:
        raise ValueError(f"{requirement!r}: not a requirement this script reads")
    return normalize(m.group(1)), m.group(3), (m.group(4) or "")


def floor(requirement: str) -> str:
    """The lowest version a requirement allows: ``numpy>=1.26`` -> ``1.26``; ``ruff==0.17.*`` -> ``0.17.*``."""
    name, spec, _ = parse(requirement)
    bounds = BOUND.findall(spec)
    if not bounds:
        raise ValueError(f"{requirement!r}: no lower bound (>=, ~= or ==), so no lowest version to test")
    exact = [v for op, v in bounds if op in ("==", "===")]
    return exact[0] if exact else max((v for _, v in bounds), key=_key)


def _key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.+-]", version))


def selected(pyproject: Path, extra_packages: list[str], skip: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = {normalize(n) for n in extra_packages}
    chosen = list(project["dependencies"])
    test = project.get("optional-dependencies", {}).get("test", [])
    chosen += [r for r in test if parse(r)[0] in wanted]
    missing = wanted - {parse(r)[0] for r in test}
    if missing:
        raise ValueError(f"not in the test extra: {', '.join(sorted(missing))}")
    dropped = {normalize(n) for n in skip}
    return [r for r in chosen if parse(r)[0] not in dropped]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    ap.add_argument("--extra-packages", default="", help="packages of the test extra to add, comma-separated")
    ap.add_argument("--skip", default="", help="packages to leave out, comma-separated")
    ap.add_argument("--requirements", action="store_true", help="the requirements as written, not name==floor")
    args = ap.parse_args(argv)
    split = [n for n in args.extra_packages.split(",") if n], [n for n in args.skip.split(",") if n]
    try:
        reqs = selected(args.pyproject, *split)
        for r in reqs:
            name, _, marker = parse(r)
            print(r.strip() if args.requirements else f"{name}=={floor(r)}{marker}")
    except ValueError as exc:
        print(f"ci/floors.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
