from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from anids_md.nn import DenoisingHead, ForceField, ModelConfig
from anids_md.train import PretrainConfig, load_config, pretrain

DATA = Path(__file__).resolve().parent / "data"  # small rMD17 excerpts shipped with the tests (tests/data/README.md)
ETHANOL = DATA / "rmd17_ethanol_test_01_first32.npz"
ASPIRIN = DATA / "rmd17_aspirin_test_01_first32.npz"


def tiny_config(**overrides) -> ModelConfig:
    values = dict(
        elements=[1, 6, 8], cutoff=4.0, channels=8, lmax=2, layers=2, n_radial=6, radial_hidden=16,
        readout_hidden=8, avg_num_neighbors=8.0, force_scale=1.3, energy_shift=-0.2,
        reference_energies={1: -13.6, 6: -1025.3, 8: -2035.6}, density_mixing=True,
    )
    values.update(overrides)
    return ModelConfig(**values)


@pytest.fixture
def tiny_model() -> ForceField:
    torch.manual_seed(0)
    model = ForceField(tiny_config()).double()
    # Random, not-small weights everywhere so that every path contributes to the tests.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


@pytest.fixture
def tiny_head(tiny_model) -> DenoisingHead:
    torch.manual_seed(1)
    head = DenoisingHead(tiny_model.config).double()
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return head.eval()


@pytest.fixture
def ethanol():
    atoms = molecule("CH3CH2OH")
    atoms.positions += np.random.default_rng(0).normal(0, 0.05, atoms.positions.shape)
    return atoms


def emt_frames(n: int, seed: int = 0, noise: float = 0.08):
    """Perturbed ethanol frames labelled with ASE's EMT: data the tests make themselves."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = molecule("CH3CH2OH")
        atoms.positions += rng.normal(0, noise, atoms.positions.shape)
        atoms.calc = EMT()
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f)
        frames.append(atoms)
    return frames


def interrupt(monkeypatch, loop_class, method: str, at_call: int):
    """Make `loop_class.<method>` (validate, objective) raise KeyboardInterrupt on its
    `at_call`-th call, as a kill in the middle of a run would; returns a function that puts
    the real one back."""
    original, calls = getattr(loop_class, method), {"n": 0}

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(loop_class, method, interrupted)
    return lambda: monkeypatch.setattr(loop_class, method, original)


TINY_MODEL = ["model.channels=8", "model.layers=2", "model.lmax=1", "model.cutoff=4.0", "model.radial_hidden=16", "model.readout_hidden=8"]
TINY_GENERATOR = ["generator.channels=8", "generator.lmax=1", "generator.layers=1", "generator.cutoff=4.0", "generator.hidden=16"]
PRETRAINING_MOLECULES = ["CH3CH2OH", "CH3OH", "H2O", "CH4", "HCOOH", "CH3CHO", "C2H6", "C2H4", "CH3OCH3", "H2CO", "CO2", "C2H2"]


@pytest.fixture
def frames_file(tmp_path):
    path = tmp_path / "emt.extxyz"
    write(path, emt_frames(24))
    return path


def tiny_run(tmp_path, frames_file, *extra):
    """A supervised training config of a tiny model on `frames_file`, in tmp_path/runs/tiny."""
    return load_config(None, [f"output_dir={tmp_path / 'runs'}", "name=tiny", f"data.train={frames_file}",
                              "data.protocol=null", "data.n_valid=4", "optim.batch_size=4", "optim.warmup_steps=2",
                              "optim.lr=0.01", *TINY_MODEL, *extra])


@pytest.fixture(scope="session")
def structures_file(tmp_path_factory):
    """Equilibrium-like molecules made by the code (ASE's g2 geometries), slightly varied."""
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(4):
        for name in PRETRAINING_MOLECULES:
            atoms = molecule(name)
            atoms.positions += rng.normal(0, 0.02, atoms.positions.shape)
            frames.append(atoms)
    path = tmp_path_factory.mktemp("pretrain") / "molecules.extxyz"
    write(path, frames)
    return path


def pretrain_config(tmp_path, structures_file, *extra) -> PretrainConfig:
    return load_config(None, [f"output_dir={tmp_path}", "name=pt", f"data.source={structures_file}", "data.n_valid=8",
                              "optim.batch_size=8", "optim.warmup_steps=2", "optim.lr=0.005", "device=cpu",
                              *TINY_MODEL, *TINY_GENERATOR, *extra], kind=PretrainConfig)


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory, structures_file):
    """A tiny model pretrained by anisotropic denoising (8 epochs): (config, summary)."""
    config = pretrain_config(tmp_path_factory.mktemp("runs"), structures_file, "optim.epochs=8")
    summary = pretrain(config, progress=False)
    return config, summary
