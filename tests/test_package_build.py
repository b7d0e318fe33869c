"""The sdist and the wheel, built as a release would build them (offline: ``python -m build --no-isolation``,
the sdist first and the wheel from it), hold what they must and say what PyPI shows; and ci/floors.py, which
ci/lowest.sh installs the lowest allowed versions from, reads every dependency's floor."""

import email
import email.message
import importlib.util
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.helpers import load_script

pytestmark = pytest.mark.xdist_group("package-build")  # one worker: the sdist is built in the checkout itself

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
NAME = f"onss_tui-{PROJECT['version']}"
SDIST_FOLDERS = ("tests", "docs", "recipes", "ci", "benchmarks", "onss_tui")
SDIST_FILES = ("README.md", "LICENSE", "NOTICE", "pyproject.toml", "MANIFEST.in", ".ci/run", "PKG-INFO")


def _tracked(prefixes: tuple[str, ...]) -> list[str]:
    """The files git tracks under these folders (none outside a git checkout, e.g. in an unpacked sdist)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", *prefixes], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return []
    return [f for f in out.stdout.decode().split("\0") if f and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    if importlib.util.find_spec("build") is None:  # (the test extra brings it)
        pytest.fail("the 'build' package is not installed: pip install -e '.[test]'")
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sdist,), (wheel,) = out.glob("*.tar.gz"), out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="module")
def wheel_files(dist) -> list[str]:
    with zipfile.ZipFile(dist["wheel"]) as z:
        return z.namelist()


@pytest.fixture(scope="module")
def sdist_files(dist) -> list[str]:
    with tarfile.open(dist["sdist"]) as t:
        names = [m.name for m in t.getmembers() if m.isfile()]
    assert all(n.startswith(f"{NAME}/") for n in names)
    return [n.removeprefix(f"{NAME}/") for n in names]


def _metadata(dist, kind: str) -> email.message.Message:
    if kind == "wheel":
        with zipfile.ZipFile(dist["wheel"]) as z:
            return email.message_from_bytes(z.read(f"{NAME}.dist-info/METADATA"))
    with tarfile.open(dist["sdist"]) as t:
        f = t.extractfile(f"{NAME}/PKG-INFO")
        assert f is not None
        return email.message_from_bytes(f.read())


def test_the_wheel_carries_the_package_its_data_and_py_typed(wheel_files):
    files = set(wheel_files)
    assert {"onss_tui/py.typed", "onss_tui/tui/onss.tcss", "onss_tui/pipeline/reference_bench.json"} <= files
    modules = {f for f in _tracked(("onss_tui",)) if f.endswith(".py")}
    assert modules <= files, sorted(modules - files)
    assert {f"{NAME}.dist-info/licenses/LICENSE", f"{NAME}.dist-info/licenses/NOTICE"} <= files
    assert all(f.startswith(("onss_tui/", f"{NAME}.dist-info/")) for f in files), "only the package and its metadata"
    assert not [f for f in files if f.endswith((".pyc", ".pyo")) or "__pycache__" in f]


def test_the_wheel_installs_the_onss_command(dist):
    with zipfile.ZipFile(dist["wheel"]) as z:
        entry_points = z.read(f"{NAME}.dist-info/entry_points.txt").decode()
    assert "onss = onss_tui.cli:main" in entry_points


def test_the_sdist_holds_tests_docs_recipes_and_ci(sdist_files):
    files = set(sdist_files)
    assert set(SDIST_FILES) <= files
    for folder in ("tests", "docs", "recipes", "ci"):
        assert any(f.startswith(f"{folder}/") for f in files), folder
    assert {"tests/conftest.py", "recipes/example.yaml", "recipes/recipe.schema.json", "ci/lowest.sh",
            "ci/floors.py", "ci/slurm/start.sh", "onss_tui/py.typed"} <= files
    assert any(f.startswith("tests/__snapshots__/") and f.endswith(".svg") for f in files)
    tracked = set(_tracked(SDIST_FOLDERS))
    assert tracked <= files, sorted(tracked - files)  # every file git has there
    assert not [f for f in files if f.endswith((".pyc", ".pyo")) or "__pycache__" in f or "/.hypothesis/" in f]


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_the_metadata_pypi_shows(dist, kind):
    meta = _metadata(dist, kind)
    assert meta["Metadata-Version"] in ("2.4", "2.5")  # PEP 639's License-Expression
    assert meta["License-Expression"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]  # the license the repository has
    assert sorted(meta.get_all("License-File")) == ["LICENSE", "NOTICE"]
    assert not [c for c in meta.get_all("Classifier") if c.startswith("License ::")]  # (PEP 639: the expression)
    assert set(PROJECT["classifiers"]) == set(meta.get_all("Classifier"))
    assert {"Typing :: Typed", "Programming Language :: Python :: 3.11", "Environment :: GPU :: NVIDIA CUDA"} <= set(
        meta.get_all("Classifier"))
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert urls == PROJECT["urls"] and all(u.startswith("https://") for u in urls.values())
    assert {"nsynth", "open-nsynth-super", "wavenet"} <= set(meta["Keywords"].split(","))
    assert meta["Requires-Python"] == ">=3.11"
    requires = meta.get_all("Requires-Dist")
    assert "soundfile>=0.13" in requires  # compression_level and bitrate_mode of the MP3 mode
    assert meta.get_content_type() == "text/plain" and meta["Description-Content-Type"] == "text/markdown"


def _floors():
    return load_script(ROOT / "ci" / "floors.py")


def test_every_dependency_has_a_floor_that_ci_lowest_installs(capsys):
    floors = _floors()
    assert floors.main(["--extra-packages", "pytest,pytest-asyncio,hypothesis", "--skip", "torch"]) == 0
    pins = dict(line.split("==", 1) for line in capsys.readouterr().out.split())
    assert len(pins) == len(PROJECT["dependencies"]) - 1 + 3
    assert pins["soundfile"] == "0.13" and pins["textual"] == "2" and "torch" not in pins
    assert floors.floor("torch>=2.4,<3") == "2.4" and floors.floor("ruff==0.17.*") == "0.17.*"
    assert floors.floor("triton>=3.3; platform_system == 'Linux'") == "3.3"
    with pytest.raises(ValueError, match="no lower bound"):
        floors.floor("types-PyYAML")
    assert floors.main(["--extra-packages", "no-such-package"]) == 2
