"""Files that ship with the package (models, recipes, reference energies), found by name."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def packaged_files(folder: str, suffix: str) -> dict[str, Path]:
    """The files `anids_md/<folder>/*<suffix>`, by name (the file name without the suffix)."""
    root = resources.files("anids_md").joinpath(*folder.split("/"))
    return {p.name[: -len(suffix)]: Path(str(p)) for p in root.iterdir() if p.name.endswith(suffix)}


def resolve_packaged(name_or_path: str | Path, folder: str, suffix: str, what: str) -> Path:
    """An existing file path, or the packaged file of that name; a FileNotFoundError naming the
    packaged choices otherwise."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = packaged_files(folder, suffix)
    if str(name_or_path) in packaged:
        return packaged[str(name_or_path)]
    raise FileNotFoundError(f"no {what} file {str(name_or_path)!r} and none of that name ships with anids-md; shipped: {sorted(packaged)}")
