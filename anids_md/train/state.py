"""Resumable training state without pickle: tensors (model, EMA, optimiser moments) in
safetensors, everything else (step, epoch, best score, optimiser hyperparameters) in JSON."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path


def save_state(path: Path, model, ema, optimizer, progress: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.model.state_dict().items()})
    optim = optimizer.state_dict()
    for index, state in optim["state"].items():
        for name, value in state.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"progress": progress, "param_groups": optim["param_groups"], "ema_updates": ema.updates}
    with atomic_path(path) as tmp:  # an interruption never leaves half a state
        save_file(tensors, str(tmp), metadata={"state": json.dumps(meta)})


def load_state(path: Path, model, ema, optimizer) -> dict:
    """Restore tensors into `model`, `ema` and `optimizer`; return the saved progress dict."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads(handle.metadata()["state"])
        tensors = load_file(str(path))
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: the saved training state is corrupt or truncated ({type(error).__name__}: {error}); "
                         "add overwrite=true to start the run afresh") from None
    device = next(model.parameters()).device
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema.model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    except RuntimeError as error:
        raise ValueError(f"{path}: the saved training state does not fit this model (were model settings changed?): {error}; "
                         "add overwrite=true to start the run afresh") from None
    ema.updates = meta["ema_updates"]
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value if name == "step" else value.to(device)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta["progress"]
