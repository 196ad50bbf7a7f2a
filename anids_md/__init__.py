"""anids-md: machine-learned molecular force fields trained with learned-noise denoising.

Units inside the package: energies in eV, forces in eV/Å, lengths in Å.
"""

from .version import __version__


def __getattr__(name):
    # Imported lazily so that `import anids_md` stays light (no torch until needed).
    if name == "AniDSCalculator":
        from .calculator import AniDSCalculator

        return AniDSCalculator
    raise AttributeError(f"module 'anids_md' has no attribute {name!r}")


__all__ = ["AniDSCalculator", "__version__"]
