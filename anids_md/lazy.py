"""Packages that load their modules on first use, so that `anids-md --help` or `rmsd` does not
import torch: a package's __init__ maps each name it exports to the module that defines it."""

from __future__ import annotations

from importlib import import_module


def lazy_exports(package: str, modules: dict[str, str]):
    """A module-level __getattr__ for `package`: name -> the submodule (".graph", ...) it lives in."""

    def __getattr__(name: str):
        if name in modules:
            return getattr(import_module(modules[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
