#!/usr/bin/env python3
"""Write the recipe reference (docs/recipe-reference.md) from the recipe model's JSON Schema.

    python tools/recipe_reference.py > docs/recipe-reference.md    # regenerate it
    python tools/recipe_reference.py --check                        # exit 1 when the file is stale

The rendering is onss_tui.recipe_docs.render_reference; tests/test_docs.py runs the same check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's onss_tui, also when onss is not installed

from onss_tui.recipe_docs import COMMAND, REFERENCE_PATH, render_reference  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help=f"compare {REFERENCE_PATH} with what the model gives; exit 1 if they differ")
    args = parser.parse_args(argv)
    text = render_reference()
    if not args.check:
        sys.stdout.write(text)
        return 0
    path = ROOT / REFERENCE_PATH
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        print(f"{REFERENCE_PATH} is out of date with the recipe model; regenerate it: {COMMAND}", file=sys.stderr)
        return 1
    print(f"{REFERENCE_PATH} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
