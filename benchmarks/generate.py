"""Generation speed of the incremental decoder on this machine (samples/s summed over the batch).

    python benchmarks/generate.py --device cpu --precision fp32 --batch 1 8 --steps 64
    python benchmarks/generate.py --device cuda --precision bf16 tf32 --batch 1 64 512 4096 --steps 256

The same measurement as `onss bench` (onss_tui/bench.py), kept here as the benchmark script the
docs cite. Prints a Markdown table, writes the result as JSON with --json. Never used in tests.
"""

import sys

from onss_tui.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--no-save", *sys.argv[1:]]))
