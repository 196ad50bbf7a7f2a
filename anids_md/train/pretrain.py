"""Denoising pretraining on equilibrium structures (METHOD.md §3.1): every atom of every
molecule corrupted, no labels; the noise generator and the denoiser train together on
λ_denoise·L_denoise + λ_KL·KL + λ_γ·L_γ. Runs on one process, or data-parallel under
`torchrun` (DistributedDataParallel; gloo on CPU, NCCL on CUDA)."""

from __future__ import annotations

import copy
import dataclasses
import json
import os

import numpy as np
import torch
from torch import nn

from ..atomic import write_text_atomically
from ..checkpoint import PRETRAINING_KIND, save_checkpoint
from ..data import collate, graph_from_atoms, random_split, read_qm9, read_structures
from ..nn import DenoisingHead, ForceField
from ..nn.generator import NoiseGenerator
from ..noise import NoiseConfig, corrupt, regulariser, structure_covariances
from ..runtime import resolve_device, resolve_dtype
from .config import PretrainConfig, config_to_dict
from .loop import TrainingLoop
from .losses import vector_error
from .run_dir import check_run_dir, claim_run_dir


class DenoisingPretraining(nn.Module):
    """Denoiser (a ForceField's trunk and a denoising head) and generator as one module, whose
    forward is the pretraining loss of a batch: what DistributedDataParallel wraps."""

    def __init__(self, force_field: ForceField, generator: NoiseGenerator | None, noise: NoiseConfig, loss_form: str):
        super().__init__()
        self.force_field, self.generator, self.noise, self.loss_form = force_field, generator, noise, loss_form
        self.head = DenoisingHead(force_field.config)

    def forward(self, batch, rng: torch.Generator | None = None) -> dict:
        cov = structure_covariances(self.noise, batch, self.generator)
        atoms = torch.arange(batch.n_atoms, device=batch.positions.device)
        corruption = corrupt(self.noise, batch, cov, atoms, self.force_field.config.cutoff, rng)
        encoding = self.force_field.encoder(corruption.graph)  # the trunk only: no energy in pretraining
        predicted = self.head(encoding, corruption.graph.edge_index)
        denoise = vector_error(predicted - corruption.target, self.loss_form, corruption.weights)
        loss = denoise + regulariser(self.noise, corruption)
        return {"loss": loss, "denoise": denoise.detach(), "kl": corruption.kl.detach(), "hinge": corruption.hinge.detach()}


def load_pretraining_structures(config: PretrainConfig) -> list:
    d = config.data
    if d.source == "qm9":
        return read_qm9(d.qm9_dir, d.elements, d.max_atoms, d.n_structures, config.seed)
    structures = read_structures(d.source, require_labels=False)
    structures = [a for a in structures if d.max_atoms is None or len(a) <= d.max_atoms]
    if d.n_structures is not None and d.n_structures < len(structures):
        keep = np.sort(np.random.default_rng(config.seed).choice(len(structures), d.n_structures, replace=False))
        structures = [structures[i] for i in keep]
    return structures


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world


class Pretrainer(TrainingLoop):
    """Denoising pretraining: generator and denoiser trained together on equilibrium structures."""

    train_keys = ("loss", "denoise", "kl", "hinge")
    valid_keys = ("loss", "denoise")

    def __init__(self, config: PretrainConfig, progress: bool = True):
        if config.data.source != "qm9" and not os.path.isfile(config.data.source):
            raise FileNotFoundError(f"missing input files: data.source={config.data.source}")
        self.device, self.dtype = resolve_device(config.device), resolve_dtype(config.dtype)
        check_run_dir(config)  # early: a clash is refused before QM9 is read; the folder is claimed below
        given = config
        config = self.config = copy.deepcopy(config)  # resolved below (elements, neighbours); the caller's stays as given
        if self.device.type == "cuda" and "LOCAL_RANK" in os.environ:
            self.device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        rank, world = init_distributed(self.device)
        torch.manual_seed(config.seed)  # same initial weights on every process
        if config.generator.cutoff != config.model.cutoff:
            raise ValueError("generator.cutoff must equal model.cutoff (both read the same neighbour list)")
        structures = load_pretraining_structures(config)
        if len(structures) <= config.data.n_valid:
            raise ValueError(f"{len(structures)} structures cannot give {config.data.n_valid} for validation and some for training")
        train_idx, valid_idx = random_split(len(structures), config.data.n_valid, config.seed)
        cutoff = config.model.cutoff
        graphs = [graph_from_atoms(a, cutoff).to(self.device) for a in structures]
        self.train_graphs = [graphs[i] for i in train_idx]
        self.valid_graphs = [graphs[i] for i in valid_idx]
        self.n_structures = len(structures)
        claim_run_dir(given, writer=rank == 0)
        elements = sorted(set(config.model.elements) | {int(z) for a in structures for z in a.numbers})
        neighbours = float(np.mean([g.edge_index.shape[1] / g.n_atoms for g in self.train_graphs]))
        config.model.elements, config.model.avg_num_neighbors = elements, neighbours
        config.generator.elements, config.generator.avg_num_neighbors = elements, neighbours
        generator = NoiseGenerator(config.generator) if config.noise.learned else None
        self.pretraining = DenoisingPretraining(ForceField(config.model), generator, config.noise, config.optim.loss)
        self.pretraining.to(self.device, self.dtype)
        self.module = self.pretraining
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            # The energy head gets no gradient from denoising.
            self.module = DistributedDataParallel(self.pretraining, find_unused_parameters=True)
        self.setup_loop(config.optim, self.pretraining, self.pretraining, len(self.train_graphs), config.seed, config.name,
                        config.run_dir, self.device, progress, rank, world)

    def objective(self, indices, step: int, rngs) -> dict:
        batch = collate([self.train_graphs[i] for i in indices]).to(dtype=self.dtype)
        return self.module(batch, rngs[1])

    @torch.no_grad()
    def validate(self) -> dict:
        """Losses of the EMA weights on the validation molecules, with the same noise draws
        every time (a fixed seed), so epochs compare."""
        rng = torch.Generator(device=self.device).manual_seed(12345)
        sums, n = {"loss": 0.0, "denoise": 0.0, "kl": 0.0, "hinge": 0.0}, 0
        batch_size = self.config.optim.batch_size
        for start in range(0, len(self.valid_graphs), batch_size):
            batch = collate(self.valid_graphs[start : start + batch_size]).to(dtype=self.dtype)
            losses = self.ema.model(batch, rng)
            for k in sums:
                sums[k] += float(losses[k]) * batch.n_structures
            n += batch.n_structures
        return {k: v / n for k, v in sums.items()}

    def save_best(self, valid: dict) -> None:
        ema = self.ema.model
        save_checkpoint(ema.force_field, self.run_dir / "model.safetensors", training=self.training_metadata(),
                        extra={"results": {"valid": valid}}, generator=ema.generator, noise=dataclasses.asdict(self.config.noise),
                        denoising_head=ema.head)

    def training_metadata(self) -> dict:
        """What the backbone was pretrained on, and for how long (at the saved weights)."""
        d, p = self.config.data, self.progress_state
        return {
            "kind": PRETRAINING_KIND,
            "source": d.source,
            "n_structures": self.n_structures,
            "n_valid": len(self.valid_graphs),
            "steps": p["step"],
            "epochs": round(p["step"] * self.config.optim.batch_size / len(self.train_graphs), 2),
            "train_wall_s": round(p["wall_s"], 1),
            "device": str(self.device),
            "seed": self.config.seed,
            "description": self.config.description,
            "config": config_to_dict(self.config),
        }

    def finish(self) -> dict:
        p = self.progress_state
        summary = {
            "name": self.config.name,
            "noise": self.config.noise.kind,
            "steps": p["step"],
            "epochs": p["epoch"],
            "best_epoch": p.get("best_epoch"),
            "train_wall_s": round(p["wall_s"], 1),
            "processes": self.world,
            "device": str(self.device),
            "valid": p.get("best_metrics"),
        }
        if self.rank == 0:
            write_text_atomically(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
        return summary


def pretrain(config: PretrainConfig, progress: bool = True) -> dict:
    """Pretrain a denoiser (and generator) as `config` says; resumes from the run's state."""
    return Pretrainer(config, progress).fit()
