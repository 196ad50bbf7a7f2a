"""Rewrite the shipped checkpoints of format 3 as format 4, once (2026-12-02), with the same weights:

- weights: the force field is an encoder and an energy readout (`encoder.*`, `readout.mlp.*`
  instead of the top-level names and `energy_head.*`);
- model settings: the five architecture options no shipped model used (`correlation`,
  `bond_projections`, `radial_layers`, `readout_every_layer`, `feature_lmax`) are dropped after
  checking that each had its neutral value;
- training settings: `noise` becomes `denoise.kind`, `denoise.sigma` `denoise.mean_scale_A`, and a
  `denoise.weight` of null the λ the model was trained with (stated explicitly);
- lineage: data files and parent models as names and sha256, not the paths of the machine that
  trained them.

    python training/convert_checkpoints.py [--data ../shared/data/rmd17] anids_md/models/*.safetensors

Each file is checked after conversion: the same energies and forces (or generator covariances)
as before, computed by the previous commit's code in a separate process, are the caller's check
(tests/test_model.py compares the shipped models against stored reference values).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

DROPPED = {"correlation": 2, "bond_projections": False, "radial_layers": 1, "readout_every_layer": False, "feature_lmax": None}
# λ_denoise of the shipped rmd17-50 models whose recipe stored null (training/README.md): aspirin
# was trained when null meant forces_weight / 16.
TRAINED_DENOISE_WEIGHT = {"rmd17-50-aspirin": 6.25}
SHIPPED_PARENTS = {"runs/qm9-anisotropic-mix/model.safetensors": "qm9-anids"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rename(key: str) -> str:
    if key.startswith(("generator.", "denoising_head.")):
        return key
    if key.startswith("energy_head."):
        return "readout.mlp." + key.removeprefix("energy_head.")
    return "encoder." + key


def data_lineage(value: str | None, data_dir: Path) -> dict | None:
    if not value:
        return None
    name = Path(value).name
    local = data_dir / name
    return {"file": name, "sha256": sha256(local) if local.is_file() else None}


def parent_lineage(init: str | None, models: Path) -> dict | None:
    if not init:
        return None
    shipped = SHIPPED_PARENTS.get(init, init if (models / f"{init}.safetensors").exists() else None)
    if shipped:
        return {"model": shipped, "sha256": sha256(models / f"{shipped}.safetensors")}
    return {"run": Path(init).parent.name or Path(init).stem, "sha256": None, "note": "an intermediate run, not kept"}


def convert(path: Path, data_dir: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = json.loads(handle.metadata()["anids_md"])
    if metadata["format_version"] != 3:
        raise SystemExit(f"{path}: format {metadata['format_version']}, expected 3")
    for key, neutral in DROPPED.items():
        value = metadata["model"].pop(key, neutral)
        if value != neutral:
            raise SystemExit(f"{path}: model.{key} is {value!r}, not {neutral!r}: this model cannot be converted")
    generator = metadata.get("generator")
    training = metadata["training"]
    config = training.get("config", {})
    name = path.stem
    if "denoise" in config:  # a supervised run's settings
        denoise = config["denoise"]
        denoise["kind"] = config.pop("noise")
        denoise["mean_scale_A"] = denoise.pop("sigma")
        if denoise["weight"] is None and denoise["kind"] != "none":
            denoise["weight"] = TRAINED_DENOISE_WEIGHT.get(name, config["optim"]["forces_weight"] / 32)
        lineage = {"train": data_lineage(config["data"]["train"], data_dir), "test": data_lineage(config["data"]["test"], data_dir),
                   "parent": parent_lineage(config.get("init"), path.parent)}
        config["data"]["train"] = lineage["train"]["file"]
        config["data"]["test"] = lineage["test"]["file"] if lineage["test"] else None
        config["init"] = (lineage["parent"] or {}).get("model") or (lineage["parent"] or {}).get("run")
        config["output_dir"] = "runs"
        training["train_file"] = lineage["train"]["file"]
        training["lineage"] = lineage
        results = metadata.get("results", {})
        if "noise" in results:
            results["denoise"] = results.pop("noise")
        for key in ("init", "test_file"):
            if isinstance(results.get(key), str):
                results[key] = config["init"] if key == "init" else Path(results[key]).name
    elif config:
        config["output_dir"] = "runs"
    metadata["format_version"] = 4
    tensors = {rename(k): v for k, v in load_file(str(path)).items()}
    if generator is not None:
        metadata["generator"] = generator
    save_file(tensors, str(path), metadata={"anids_md": json.dumps(metadata)})
    print(f"{path}: format 4")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "rmd17")
    args = parser.parse_args()
    # parents first: a child's lineage records the converted parent's hash
    for path in sorted(args.checkpoints, key=lambda p: p.stem != "qm9-anids"):
        convert(path, args.data)


if __name__ == "__main__":
    main()
