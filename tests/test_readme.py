"""The README's test command is exactly what CI runs (.ci/run), so a newcomer runs what CI does."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_test_command_is_the_ci_script():
    readme = (ROOT / "README.md").read_text().splitlines()
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    marker = next(i for i, line in enumerate(readme) if "exactly what .ci/run does" in line)
    assert ci[-1] == readme[marker + 1], "README's test command and .ci/run's last line must be the same"
