"""Open NSynth Super studio: from instrument samples to a device sound pack."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("onss-tui")  # the distribution's name (pyproject.toml); the command is `onss`
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
