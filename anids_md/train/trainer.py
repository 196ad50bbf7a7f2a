"""The training loop: energy + force supervision, AdamW, warm-up + cosine, EMA, gradient
clipping, validation every epoch, best-on-validation selection, early stopping and resume."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import write_text_atomically
from ..checkpoint import PRETRAINING_KIND, load_checkpoint, load_generator, read_metadata, save_checkpoint, shipped_models
from ..checkpoint import resolve as resolve_checkpoint
from ..data import (
    collate,
    compute_statistics,
    graph_from_atoms,
    protocol_split,
    random_split,
    read_isolated_atom_energies,
    read_structures,
)
from ..data.readers import reference_energies_file
from ..data.shards import sha256_of
from ..evaluation import error_metrics, evaluate, predict
from ..nn import ForceField, ModelConfig
from ..runtime import check_compiler, machine_name, resolve_device, resolve_dtype
from ..units import MEV_PER_EV
from .compiled import CompiledEnergyForceLoss
from .config import TrainConfig, config_to_dict
from .denoising import AuxiliaryDenoising
from .loop import TrainingLoop
from .losses import energy_force_loss
from .run_dir import check_run_dir, claim_run_dir

logger = logging.getLogger(__name__)


def check_inputs(config: TrainConfig) -> None:
    """Every file the config names, checked before any work: one FileNotFoundError listing all
    that are missing."""
    d = config.data
    if not d.train:
        raise ValueError("data.train is required: the labelled frames to train on (e.g. data.train=frames.extxyz)")
    missing = [f"data.train={d.train}"] if not Path(d.train).is_file() else []
    if d.test and not Path(d.test).is_file():
        missing.append(f"data.test={d.test}")
    for key, value, resolve in (("data.reference_energies", d.reference_energies, reference_energies_file),
                                ("init", config.init, resolve_checkpoint),
                                ("denoise.generator", config.denoise.generator, resolve_checkpoint)):
        if value:
            try:
                resolve(value)
            except FileNotFoundError:
                missing.append(f"{key}={value}")
    if missing:
        raise FileNotFoundError(f"missing input files: {', '.join(missing)}")


@dataclass
class Datasets:
    train: list
    valid: list
    train_indices: np.ndarray


def drop_duplicate_frames(structures: list, where: str) -> list:
    """The structures without exact repeats (same elements and positions), with a warning
    naming how many were dropped: a copy of a training frame in the validation set would make
    validation look better than it is."""
    seen, unique = set(), []
    for atoms in structures:
        key = (atoms.numbers.tobytes(), np.ascontiguousarray(atoms.positions).tobytes())
        if key not in seen:
            seen.add(key)
            unique.append(atoms)
    if len(unique) < len(structures):
        logger.warning("%s: dropped %d exact duplicate frames of %d (same elements and positions); %d remain",
                       where, len(structures) - len(unique), len(structures), len(unique))
    return unique


def load_datasets(config: TrainConfig) -> Datasets:
    d = config.data
    structures = read_structures(d.train, energy_unit=d.energy_unit, labels=d.labels, energy_key=d.energy_key, forces_key=d.forces_key,
                                 forces_unit=d.forces_unit)
    structures = drop_duplicate_frames(structures, str(d.train))
    if d.protocol:
        train_idx, valid_idx = protocol_split(d.protocol, len(structures), config.seed)
    else:
        train_idx, valid_idx = random_split(len(structures), d.n_valid, config.seed)
        if d.n_train is not None:
            train_idx = train_idx[: d.n_train]
    return Datasets([structures[i] for i in train_idx], [structures[i] for i in valid_idx], train_idx)


def prepare_model_config(config: TrainConfig, train_structures, graphs, pretrained: bool = False, trained_init: bool = False) -> None:
    """Fill the model's normalisation (elements, E0s, shift, scale, neighbours) from the
    training structures and their graphs. A `pretrained` model keeps its elements and the
    neighbour count its weights were trained with; a `trained_init` (a force field, not a
    denoising-pretrained backbone) also keeps its force scale, so that it starts by predicting
    the forces it was trained on (its energy shift is aligned by `align_energy_shift`)."""
    avg_neighbors = float(np.mean([g.edge_index.shape[1] / g.n_atoms for g in graphs]))
    e0 = read_isolated_atom_energies(config.data.reference_energies) if config.data.reference_energies else None
    stats = compute_statistics(train_structures, avg_neighbors, e0)
    m = config.model
    if pretrained:
        missing = sorted(set(stats.elements) - set(m.elements))
        if missing:
            raise ValueError(f"the training data has elements {missing} that the pretrained model {config.init} does not know ({m.elements})")
    else:
        m.elements = sorted(set(m.elements) | set(stats.elements))
        m.avg_num_neighbors = stats.avg_num_neighbors
    # Elements the data lack keep a placeholder 0 eV; calculators refuse them (trained_elements).
    m.reference_energies = {**{z: 0.0 for z in m.elements}, **stats.reference_energies}
    m.energy_shift = stats.energy_shift
    if not trained_init:
        m.force_scale = stats.force_scale


# Structures (evenly spread) whose mean error sets the energy shift: on 240 000 foundation frames
# a pass over all of them took 11 minutes before the first step; from this many the mean per atom
# is known to 0.4 meV (qm9-xtb on those frames: 12 meV/atom spread).
SHIFT_SAMPLE = 1000


def align_energy_shift(model: ForceField, graphs: list) -> None:
    """Move the model's per-atom energy shift so that its mean energy error per atom on the
    labelled `graphs` (at most SHIFT_SAMPLE of them, evenly spread) is zero. A model trained at
    another level of theory (a molecule prior on xTB frames) predicts energies on that level's
    scale; the new reference energies and this shift put its first predictions on the new labels'
    scale, so the energy loss starts from the per-frame differences it can learn rather than a
    constant offset it would spend steps on."""
    graphs = graphs[:: -(-len(graphs) // SHIFT_SAMPLE)]
    energies, _ = predict(model, graphs)
    errors = [(float(g.energy) - e) / g.n_atoms for g, e in zip(graphs, energies)]
    model.config.energy_shift += float(np.mean(errors))


def describe_training_data(config: TrainConfig, data: Datasets) -> dict:
    d = config.data
    return {
        "train_file": str(d.train),
        "protocol": d.protocol,
        "labels": d.labels,
        "n_train": len(data.train),
        "n_valid": len(data.valid),
        "train_indices": [int(i) for i in data.train_indices] if len(data.train_indices) <= 100 else f"{len(data.train_indices)} frames, seed {config.seed}",
        "formulae": sorted({a.get_chemical_formula() for a in data.train}),
        "elements": sorted({int(z) for a in data.train for z in a.numbers}),
        "seed": config.seed,
        "description": config.description,
    }


def lineage(config: TrainConfig) -> dict:
    """What a model came from: its data files and parent checkpoint, by name and sha256 (a shard
    manifest's hash covers its shards, whose hashes it lists)."""
    def file(path) -> dict | None:
        return path and {"file": Path(path).name, "sha256": sha256_of(Path(path))}

    parent = None
    if config.init:  # a shipped model by its name, a file by its name alone (not this machine's path)
        parent = {"model": config.init} if config.init in shipped_models() else {"file": Path(config.init).name}
        parent["sha256"] = sha256_of(resolve_checkpoint(config.init))
    return {"train": file(config.data.train), "test": file(config.data.test), "parent": parent}


class Trainer(TrainingLoop):
    """Supervised energy + force training, with auxiliary denoising when `config.denoise.kind` is set."""

    train_keys = ("loss", "denoise")
    valid_keys = ("loss", "energy_mae_meV", "forces_mae_meV_per_A")

    def __init__(self, config: TrainConfig, progress: bool = True):
        check_inputs(config)
        self.device, self.dtype = resolve_device(config.device), resolve_dtype(config.dtype)
        check_run_dir(config)  # early: a clash is refused before any work; the folder is claimed below
        given = config
        config = self.config = copy.deepcopy(config)  # resolved below (model from init, normalisation); the caller's stays as given
        torch.manual_seed(config.seed)
        self.data = load_datasets(config)
        initial, trained_init = None, False
        if config.init:  # architecture and weights from a (pretrained) checkpoint
            initial, metadata = load_checkpoint(config.init)
            trained_init = metadata.get("training", {}).get("kind") != PRETRAINING_KIND
            config.model = ModelConfig.from_dict(metadata["model"])
        cutoff = config.model.cutoff
        self.train_graphs = [graph_from_atoms(a, cutoff, with_labels=True).to(self.device) for a in self.data.train]
        prepare_model_config(config, self.data.train, self.train_graphs, pretrained=initial is not None, trained_init=trained_init)
        self.valid_graphs = [graph_from_atoms(a, cutoff, with_labels=True).to(self.device) for a in self.data.valid]
        claim_run_dir(given)
        self.model = ForceField(config.model)
        if initial is not None:
            self.model.load_state_dict(initial.state_dict())
        if trained_init:
            align_energy_shift(self.model, self.train_graphs)
        self.model.to(self.device, self.dtype)
        self.compiled_loss = None
        if config.optim.compile:
            check_compiler(self.device)
            o = config.optim
            self.compiled_loss = CompiledEnergyForceLoss(self.model, o.energy_weight, o.forces_weight, o.loss)
        self.denoising = None
        if config.denoise.kind != "none":
            self.denoising = AuxiliaryDenoising(config, self.model, self.train_graphs).to(self.device, self.dtype)
        # What the optimiser updates and a resume restores: the model, and the force encoding.
        trainable = nn.ModuleDict({"model": self.model, **({"denoising": self.denoising} if self.denoising else {})})
        self.setup_loop(config.optim, trainable, self.model, len(self.train_graphs), config.seed, config.name, config.run_dir,
                        self.device, progress)
        self.best_path = self.run_dir / "best.safetensors"
        self.lineage = lineage(config)  # hashed once: the data files can be large

    def training_metadata(self) -> dict:
        return {**describe_training_data(self.config, self.data), "config": config_to_dict(self.config), "lineage": self.lineage}

    def objective(self, indices, step: int, rngs) -> dict:
        o = self.config.optim
        batch = collate([self.train_graphs[i] for i in indices]).to(dtype=self.dtype)
        if self.compiled_loss is not None:
            return self.compiled_loss(batch)
        if self.denoising is None:
            return energy_force_loss(self.model, batch, o.energy_weight, o.forces_weight, o.loss)
        return self.denoising.loss(self.model, batch, indices, step / self.total_steps, o.energy_weight, o.forces_weight, *rngs)

    def validate(self) -> dict:
        energy, forces = predict(self.ema.model, self.valid_graphs)
        ref_e = [float(g.energy) for g in self.valid_graphs]
        ref_f = [g.forces.cpu().numpy() for g in self.valid_graphs]
        metrics = error_metrics(energy, forces, ref_e, ref_f)
        o, scale = self.config.optim, self.config.model.force_scale * MEV_PER_EV
        # Same weighting as training, in normalised units, from RMSEs.
        metrics["loss"] = o.energy_weight * (metrics["energy_rmse_meV"] / scale) ** 2 + o.forces_weight * (metrics["forces_rmse_meV_per_A"] / scale) ** 2
        return metrics

    def save_best(self, valid: dict) -> None:
        save_checkpoint(self.ema.model, self.best_path, training=self.training_metadata(), **self._trained_generator())

    def _trained_generator(self) -> dict:
        """The noise generator trained with the model (denoise.train_generator) and its noise
        settings, kept in the checkpoint: a later fine-tune from it denoises with that generator
        (denoise.generator defaults to init). The force field itself never reads it."""
        learned = self.denoising.learned if self.denoising is not None else None
        return {} if learned is None else {"generator": learned.generator, "noise": dataclasses.asdict(learned.config)}

    def finish(self) -> dict:
        """Evaluate the best (EMA, validation-selected) weights on the test file and write the
        final checkpoint `model.safetensors` and `summary.json`."""
        p = self.progress_state
        model, _ = load_checkpoint(self.best_path, device=self.device, dtype=self.dtype)
        summary = {
            "name": self.config.name,
            "steps": p["step"],
            "epochs": p["epoch"],
            "best_epoch": p.get("best_epoch"),
            "train_wall_s": round(p["wall_s"], 1),
            "valid": p.get("best_metrics"),
            "device": str(self.device),
            "machine": machine_name(self.device),
            "dtype": self.config.dtype,
            "torch_threads": torch.get_num_threads(),
            "init": self.config.init,
            "denoise": self.config.denoise.kind,
        }
        if self.denoising is not None:
            summary["noise_scale_A"] = round(self.denoising.mean_noise_scale(), 5)
        if self.config.data.test:
            d = self.config.data
            test = read_structures(d.test, energy_unit=d.energy_unit, labels=d.labels, energy_key=d.energy_key, forces_key=d.forces_key,
                                  forces_unit=d.forces_unit)
            summary["test_file"] = str(self.config.data.test)
            summary["test"] = evaluate(model, test)
        generator = {}
        if "generator" in read_metadata(self.best_path):  # trained with the model: kept as it was at the best weights
            trained, noise = load_generator(self.best_path, device=self.device)
            generator = {"generator": trained, "noise": noise}
        save_checkpoint(model, self.run_dir / "model.safetensors", training=self.training_metadata(), extra={"results": summary}, **generator)
        write_text_atomically(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        plot_learning_curve(self.run_dir / "log.csv", self.run_dir / "learning_curve.png")
        return summary


def plot_learning_curve(log_path, out_path) -> None:
    """Training loss and validation force MAE against epoch, from the run's CSV log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_path) as handle:
        rows = list(csv.DictReader(handle))
    epochs = [int(r["epoch"]) for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.semilogy(epochs, [float(r["train_loss"]) for r in rows], label="train")
    left.semilogy(epochs, [float(r["valid_loss"]) for r in rows], label="validation (EMA)")
    left.set(xlabel="epoch", ylabel="loss (normalised units)")
    left.legend()
    right.semilogy(epochs, [float(r["valid_forces_mae_meV_per_A"]) for r in rows])
    right.set(xlabel="epoch", ylabel="validation force MAE (meV/Å)")
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


def train(config: TrainConfig, progress: bool = True) -> dict:
    """Train a force field as `config` says; resumes from `run_dir/state.safetensors` if present."""
    return Trainer(config, progress).fit()


__all__ = ["Trainer", "train"]
