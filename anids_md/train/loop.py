"""The one training loop, shared by supervised training and denoising pretraining: batches,
the optimiser step (zero_grad, backward, clipping, AdamW), the learning rate (warm-up + cosine
through LambdaLR), EMA, per-step seeding, validation every epoch, best-on-validation, early
stopping, the CSV log and resume."""

from __future__ import annotations

import csv
import logging
import math
import time

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..folder_lock import folder_lock
from .config import OptimConfig
from .ema import ExponentialMovingAverage
from .run_dir import open_log
from .schedule import warmup_cosine
from .state import load_state, save_state

logger = logging.getLogger(__name__)
# With optim.max_wall_s the step budget is re-estimated this often within an epoch: an epoch of a
# large data set (15 000 steps of the foundation) would otherwise keep the peak rate, and overrun a
# budget shorter than itself, until its end.
BUDGET_CHECK_STEPS = 100


class TrainingLoop:
    """A subclass sets up data and model, calls `setup_loop`, and provides:
    `objective(indices, step, rngs) -> dict` (the losses of one batch of training structures,
    "loss" to minimise), `validate() -> dict` ("loss", lower is better, and any metrics),
    `save_best(valid)`, `finish() -> dict`, and the names `train_keys`/`valid_keys` logged."""

    train_keys: tuple[str, ...] = ("loss",)
    valid_keys: tuple[str, ...] = ("loss",)

    def setup_loop(self, optim: OptimConfig, trainable: nn.Module, averaged: nn.Module, n_train: int, seed: int, name: str,
                   run_dir, device: torch.device, progress: bool, rank: int = 0, world: int = 1) -> None:
        """`trainable`: every optimised parameter (and what a resume restores); `averaged`: the
        module whose EMA is validated and saved."""
        self.optim, self.trainable, self.averaged = optim, trainable, averaged
        self.seed, self.name, self.run_dir, self.rank, self.world = seed, name, run_dir, rank, world
        self.show_progress = progress and rank == 0
        self.n_train, self.per_rank = n_train, n_train // world  # the same number of steps on every process
        self.planned_steps = optim.max_steps or optim.epochs * math.ceil(self.per_rank / optim.batch_size)
        self.total_steps = self.planned_steps
        if optim.max_wall_s and world > 1:
            raise ValueError("optim.max_wall_s needs a single process: data-parallel ranks would each time themselves")
        self.optimizer = torch.optim.AdamW(trainable.parameters(), lr=optim.lr, weight_decay=optim.weight_decay, amsgrad=optim.amsgrad)
        self.scheduler = self._schedule(first_step=0)
        self.ema = ExponentialMovingAverage(averaged, optim.ema_decay)
        self.noise_rng = torch.Generator(device=device)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = run_dir / "state.safetensors"
        # batches_done: of the current epoch, so a run saved mid-epoch resumes where it stopped
        self.progress_state = {"step": 0, "epoch": 0, "batches_done": 0, "best_valid": float("inf"), "epochs_since_best": 0,
                               "wall_s": 0.0}

    def _schedule(self, first_step: int):
        """Warm-up + cosine learning rate, starting at `first_step`."""
        o = self.optim
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", o.lr)
        return torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: warmup_cosine(step, self.total_steps, o.warmup_steps, o.min_lr_ratio), last_epoch=first_step - 1)

    def rngs(self, step: int) -> tuple[np.random.Generator, torch.Generator]:
        """Random streams seeded by the step (and process), so a resumed run draws what it would have drawn."""
        self.noise_rng.manual_seed(self.seed * 1_000_003 + step + 10**12 * self.rank)
        return np.random.default_rng([self.seed, 1, step, self.rank]), self.noise_rng

    def train_epoch(self, epoch: int, bar=None) -> dict:
        o, p = self.optim, self.progress_state
        self.trainable.train()
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n_train)
        mine = order[self.rank :: self.world][: self.per_rank]
        sums, n = {}, 0
        clock = time.perf_counter()
        starts = range(0, len(mine), o.batch_size)
        for start in starts[p["batches_done"] :]:
            if p["step"] >= self.total_steps:
                break
            losses = self.objective(mine[start : start + o.batch_size], p["step"], self.rngs(p["step"]))
            self.optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(self.trainable.parameters(), o.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.ema.update(self.averaged)
            p["step"] += 1
            p["batches_done"] += 1
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n += 1
            if bar is not None:
                bar.update(1)
            check_budget = o.max_wall_s and p["step"] % BUDGET_CHECK_STEPS == 0
            save = o.checkpoint_steps and p["step"] % o.checkpoint_steps == 0 and self.rank == 0
            if check_budget or save:
                now = time.perf_counter()
                p["wall_s"], clock = p["wall_s"] + now - clock, now
            if check_budget:
                self.fit_to_budget()
                if bar is not None:
                    bar.total = self.total_steps
            if save:
                save_state(self.state_path, self.trainable, self.ema, self.optimizer, p)
        p["wall_s"] += time.perf_counter() - clock
        p["batches_done"] = 0
        return {k: v / max(n, 1) for k, v in sums.items()}

    def fit_to_budget(self) -> None:
        """With optim.max_wall_s: the step budget that the rate measured so far (validation
        included) fits into the seconds left; the cosine follows it."""
        p, budget = self.progress_state, self.optim.max_wall_s
        if budget and p["step"] > 0 and p["wall_s"] > 0:
            left = max(0.0, budget - p["wall_s"])
            self.total_steps = min(self.planned_steps, p["step"] + int(left * p["step"] / p["wall_s"]))

    def resume(self) -> None:
        p = self.progress_state
        if not self.state_path.exists():
            return
        p.update(load_state(self.state_path, self.trainable, self.ema, self.optimizer))
        self.fit_to_budget()
        self.scheduler = self._schedule(first_step=p["step"])
        logger.info("resuming %s from step %d of %d (epoch %d)", self.run_dir, p["step"], self.total_steps, p["epoch"])

    def fit(self) -> dict:
        """Train until the step budget or early stopping, then `finish()`. The writing process
        holds the run folder's lock throughout: a second process on the same run is refused."""
        if self.rank != 0:
            return self._fit()
        with folder_lock(self.run_dir, "train"):
            return self._fit()

    def _fit(self) -> dict:
        self.resume()
        p, o = self.progress_state, self.optim
        fields = ["epoch", "step", "lr", *(f"train_{k}" for k in self.train_keys), *(f"valid_{k}" for k in self.valid_keys), "wall_s"]
        log_path = self.run_dir / "log.csv"
        writer = None
        if self.rank == 0:
            open_log(log_path, fields, p["step"])
            writer = _tensorboard(self.run_dir)
        bar = tqdm(total=self.total_steps, initial=p["step"], disable=not self.show_progress, desc=self.name, unit="step")
        # Early stopping is decided on rank 0 alone, so a data-parallel run keeps to the step budget.
        while p["step"] < self.total_steps and (p["epochs_since_best"] < o.patience or self.world > 1):
            train = self.train_epoch(p["epoch"], bar)
            p["epoch"] += 1
            if self.rank != 0:
                continue
            clock = time.perf_counter()
            valid = self.validate()
            p["wall_s"] += time.perf_counter() - clock
            self.fit_to_budget()
            bar.total = self.total_steps
            if not math.isfinite(valid["loss"]):
                raise FloatingPointError(f"training diverged: the validation loss is {valid['loss']} after epoch {p['epoch']}; "
                                         "lower optim.lr or check the training data")
            if valid["loss"] < p["best_valid"] or o.keep == "last":
                p.update(best_valid=valid["loss"], epochs_since_best=0, best_epoch=p["epoch"], best_metrics=valid)
                self.save_best(valid)
            else:
                p["epochs_since_best"] += 1
            row = [p["epoch"], p["step"], self.optimizer.param_groups[0]["lr"], *(train.get(k, 0.0) for k in self.train_keys),
                   *(valid[k] for k in self.valid_keys), round(p["wall_s"], 2)]
            with open(log_path, "a", newline="") as handle:
                csv.writer(handle).writerow(row)
            if writer is not None:
                for name, value in zip(fields[2:-1], row[2:-1]):
                    writer.add_scalar(name, value, p["step"])
            save_state(self.state_path, self.trainable, self.ema, self.optimizer, p)
            bar.set_postfix({f"valid_{k}": f"{valid[k]:.4g}" for k in self.valid_keys[-1:]}, refresh=True)
        bar.close()
        return self.finish()


def _tensorboard(run_dir):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
