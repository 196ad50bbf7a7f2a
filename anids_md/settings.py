"""Settings that the command line takes its defaults from, light to import (no torch): the
molecule prior (also the recipe section `prior:`) and the xTB data set of the foundation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PriorConfig:
    """A molecule prior learned before the fine-tune (anids_md/prior.py): the molecules of the
    training data at a cheap level (GFN2-xTB), sampled by Langevin MD, and a short fit on them
    that the fine-tune starts from. Lengths Å, times fs, temperatures K."""

    method: str = "GFN2-xTB"  # GFN2-xTB | GFN1-xTB (tblite)
    temperature_K: float = 500.0
    # 2000 frames 10 fs apart and 70 epochs gain 10-15 % on the fine-tunes' forces over 1000 frames
    # 20 fs apart and 60 epochs (toluene 9.8 against 11.4 meV/Å, aspirin 29.1 against 32.4), and
    # aspirin's prior takes 14.7-14.8 min of one core with its fit compiled (eager: 21.3 min):
    # docs/results.md, benchmarks/results/priors_rmd17-50.json
    frames: int = 2000  # per molecule, spread over the starts
    starts: int = 4  # independent MD runs from the xTB minimum, each with its own velocities
    # 1 fs steps: half the xTB calls of 0.5 fs for the same 1 ps of equilibration (docs/results.md)
    equilibration_steps: int = 1000  # 1 ps before a run's frames are kept
    interval: int = 10  # MD steps between kept frames (10 fs)
    timestep_fs: float = 1.0
    friction_per_fs: float = 0.01
    # From the qm9-xtb foundation, 30 epochs fit the xTB frames better than 60 from scratch
    # (benchmarks/results/priors_rmd17-50.json); 60 fit them better still and the fine-tunes gain
    # 5-15 % (benchmarks/results/prior_epochs_rmd17-50.json).
    epochs: int = 70  # of the fit on the xTB frames (5 frames a step)
    n_valid: int = 50  # xTB frames held out to select the fit's best epoch
    init: str | None = "qm9-xtb"  # checkpoint the prior's fit starts from (None: from scratch); H C N O F
    # The fit through torch.compile (optim.compile): about 2x faster steps on CPU after a minute of
    # compiling; needs a C++ compiler. auto: compiled on CPU where one is found, eager otherwise
    # (on a GPU it has not been measured). The prior's folder names the choice made.
    compile: bool | str = "auto"

    def __post_init__(self):
        for name in ("frames", "starts", "interval", "epochs", "n_valid"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"prior.{name} must be a whole number of at least 1, got {value!r}")
        if not (isinstance(self.equilibration_steps, int) and self.equilibration_steps >= 0):
            raise ValueError(f"prior.equilibration_steps must be a whole number, 0 or more, got {self.equilibration_steps!r}")
        if not (self.temperature_K > 0 and self.timestep_fs > 0 and self.friction_per_fs >= 0):
            raise ValueError("prior.temperature_K and prior.timestep_fs must be positive, prior.friction_per_fs 0 or more")
        if self.frames <= self.n_valid:
            raise ValueError(f"prior.frames ({self.frames}) must exceed prior.n_valid ({self.n_valid})")
        if self.compile not in (True, False, "auto"):
            raise ValueError(f"prior.compile must be true, false or auto, got {self.compile!r}")


@dataclass(frozen=True)
class DatasetSettings:
    conformers: int = 4  # per molecule
    min_temperature_K: float = 300.0  # conformer k of K is drawn at a temperature spread over [min, max]
    max_temperature_K: float = 1000.0
    shard_molecules: int = 500
    generator: str = "qm9-anids"  # whose covariances shape the displacements
    method: str = "GFN2-xTB"
    seed: int = 0

    def __post_init__(self):
        if not (isinstance(self.conformers, int) and self.conformers >= 1 and isinstance(self.shard_molecules, int)
                and self.shard_molecules >= 1):
            raise ValueError("conformers and shard_molecules must be whole numbers of at least 1")
        if not 0 < self.min_temperature_K <= self.max_temperature_K:
            raise ValueError("temperatures must satisfy 0 < min_temperature_K <= max_temperature_K")
