"""The installed package's version, for checkpoints and results to record."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("anids-md")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
