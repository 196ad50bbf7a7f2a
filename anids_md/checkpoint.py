"""Checkpoints: one .safetensors file holding the (EMA) weights, with JSON metadata in its header
(format and package versions, model config with elements and reference energies, units, and
a description of the training data). Loading never unpickles."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import atomic_path
from .nn import DenoisingHead, ForceField, ModelConfig
from .nn.generator import GeneratorConfig, NoiseGenerator
from .packaged import packaged_files, resolve_packaged
from .version import __version__

# 4: the force field's weights under "encoder." and "readout."; pretraining checkpoints also hold
# the noise generator ("generator.") and the denoising head ("denoising_head."). Earlier formats
# were never released: training/convert_checkpoints.py rewrote the shipped models.
FORMAT_VERSION = 4
GENERATOR_PREFIX = "generator."
HEAD_PREFIX = "denoising_head."
MEMBER_PREFIX = "member{}."  # a committee file's k-th force field
COMMITTEE_KIND = "committee"
METADATA_KEY = "anids_md"
UNITS = {"energy": "eV", "forces": "eV/Å", "length": "Å"}
PRETRAINING_KIND = "denoising pretraining"  # training["kind"] of a checkpoint whose energy head was never trained


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, incompatible or not an anids-md file."""


def package_version() -> str:
    return __version__


def shipped_models() -> dict[str, Path]:
    """Names of the models installed with the package and their files."""
    return packaged_files("models", ".safetensors")


def resolve(checkpoint: str | Path) -> Path:
    """A path to an existing checkpoint file, or the file of a shipped model's name."""
    return resolve_packaged(checkpoint, "models", ".safetensors", "checkpoint")


def save_checkpoint(
    model: ForceField, path: str | Path, training: dict | None = None, extra: dict | None = None,
    generator: NoiseGenerator | None = None, noise: dict | None = None, denoising_head: DenoisingHead | None = None,
) -> Path:
    """Write `model`'s weights and metadata to `path` (.safetensors). `training` describes the
    training data and recipe; `extra` holds further JSON-able metadata (e.g. test figures).
    A pretrained checkpoint also holds the noise `generator`, its `noise` settings and the
    `denoising_head` that fine-tuning starts from."""
    path = Path(path)
    metadata = {
        "format_version": FORMAT_VERSION,
        "package_version": package_version(),
        "kind": "force-field",
        "model": model.config.to_dict(),
        "units": UNITS,
        "training": training or {},
        **(extra or {}),
    }
    tensors = dict(model.state_dict())
    if generator is not None:
        metadata["generator"] = {"config": generator.config.to_dict(), "noise": noise or {}}
        tensors.update({GENERATOR_PREFIX + k: v for k, v in generator.state_dict().items()})
    if denoising_head is not None:
        tensors.update({HEAD_PREFIX + k: v for k, v in denoising_head.state_dict().items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:  # a reader (or a kill) never meets half a checkpoint
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(metadata)})
    return path


def read_metadata(path: str | Path) -> dict:
    """The JSON metadata of a checkpoint, checked for format compatibility."""
    from safetensors import safe_open

    path = resolve(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: corrupt or not a safetensors checkpoint ({error})") from None
    if METADATA_KEY not in header:
        raise CheckpointError(f"{path}: a safetensors file without anids-md metadata")
    try:
        metadata = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: corrupt metadata ({error})") from None
    version = metadata.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version} is newer than this anids-md ({package_version()}) reads "
            f"(format {FORMAT_VERSION}); upgrade anids-md"
        )
    if version < FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version} of a development version; rewrite it with "
                              "training/convert_checkpoints.py (from the anids-md repository)")
    if metadata.get("units") != UNITS:
        raise CheckpointError(f"{path}: units {metadata.get('units')} differ from the package's {UNITS}")
    return metadata


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> tuple[ForceField, dict]:
    """Rebuild the model of a checkpoint (in eval mode) and return it with its metadata."""
    path = resolve(path)
    metadata = read_metadata(path)
    if metadata.get("kind") == COMMITTEE_KIND:
        raise CheckpointError(f"{path} is a committee of force fields; load it with load_force_fields")
    try:
        config = ModelConfig.from_dict(metadata["model"])  # checked against its limits before anything is built
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: unusable model settings in its metadata ({error})") from None
    try:
        tensors = {k: v for k, v in load_file(str(path)).items()
                   if not k.startswith((GENERATOR_PREFIX, HEAD_PREFIX))}
        stored = next((t.dtype for t in tensors.values() if t.is_floating_point()), torch.float32)
        model = ForceField(config).to(stored)  # load at full stored precision, then cast
        model.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, RuntimeError, SafetensorError, ValueError) as error:
        raise CheckpointError(f"{path}: weights do not match the model in its metadata ({error})") from None
    model = model.to(device=device, dtype=dtype or torch.float32).eval()
    return model, metadata


def trained_elements(metadata: dict) -> list[int]:
    """Atomic numbers present in a force field's training data: the only elements whose energy
    it has learned (its embedding may list more, e.g. those of a pretrained backbone)."""
    training = metadata.get("training", {})
    return sorted(int(z) for z in training.get("elements", metadata["model"]["elements"]))


def check_elements(metadata: dict, numbers) -> None:
    """A ValueError when `numbers` hold elements outside the model's training data."""
    known = trained_elements(metadata)
    unknown = sorted({int(z) for z in numbers} - set(known))
    if unknown:
        raise ValueError(f"the model was trained on elements {known} only (atomic numbers); the structure also has {unknown}")


def load_force_field(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> tuple[ForceField, dict]:
    """`load_checkpoint`, refusing checkpoints whose energy head was never trained (pretraining
    trains only the denoising head)."""
    models, metadata = load_force_fields(path, device, dtype)
    if len(models) > 1:
        raise CheckpointError(f"{path} is a committee of {len(models)} force fields; load it with load_force_fields "
                              "(AniDSCalculator does, and reports their spread)")
    return models[0], metadata


def _check_trained(path, metadata: dict) -> None:
    if metadata.get("training", {}).get("kind") == PRETRAINING_KIND:
        raise CheckpointError(
            f"{path} is a denoising-pretraining checkpoint: its energy head was never trained, so it gives no usable "
            f"energies or forces; fine-tune it on labelled frames first (anids-md train ... init={path})")


def save_committee(members: list[str | Path], path: str | Path) -> Path:
    """One file holding the force fields of the checkpoints `members` (two or more with the same
    cutoff, e.g. from different seeds). The calculator predicts with their mean and reports their
    spread (`energy_std`, `forces_std`); it accepts the elements that every member was trained on."""
    if len(members) < 2:
        raise ValueError(f"a committee needs at least two force fields, got {len(members)}")
    loaded = [load_force_field(m) for m in members]
    first_model, first = loaded[0]
    for member, (model, _) in zip(members, loaded):
        if model.config.cutoff != first_model.config.cutoff:
            raise ValueError(f"{member}: cutoff {model.config.cutoff} Å differs from the first member's "
                             f"({first_model.config.cutoff} Å); a committee shares one neighbour list")
    shared = sorted(set.intersection(*(set(trained_elements(meta)) for _, meta in loaded)))
    metadata = {**first, "kind": COMMITTEE_KIND, "package_version": package_version(),
                "training": {**first.get("training", {}), "elements": shared},
                "committee": {"members": [{"file": str(m), "model": model.config.to_dict(), "training": meta.get("training", {})}
                                          for m, (model, meta) in zip(members, loaded)]}}
    tensors = {MEMBER_PREFIX.format(k) + name: value  # as stored: a float64 member stays float64
               for k, member in enumerate(members) for name, value in load_file(str(resolve(member))).items()
               if not name.startswith((GENERATOR_PREFIX, HEAD_PREFIX))}
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(metadata)})
    return Path(path)


def load_force_fields(path: str | Path, device: str | torch.device = "cpu",
                      dtype: torch.dtype | None = None) -> tuple[list[ForceField], dict]:
    """The members of a committee file (see `save_committee`), or the one force field of any other
    checkpoint, in eval mode, with the file's metadata. Pretraining checkpoints are refused."""
    path = resolve(path)
    metadata = read_metadata(path)
    _check_trained(path, metadata)
    if metadata.get("kind") != COMMITTEE_KIND:
        return [load_checkpoint(path, device, dtype)[0]], metadata
    try:
        tensors = load_file(str(path))
        models = []
        for k, member in enumerate(metadata["committee"]["members"]):
            prefix = MEMBER_PREFIX.format(k)
            weights = {name[len(prefix):]: v for name, v in tensors.items() if name.startswith(prefix)}
            stored = next((t.dtype for t in weights.values() if t.is_floating_point()), torch.float32)
            model = ForceField(ModelConfig.from_dict(member["model"])).to(stored)  # full stored precision, then cast
            model.load_state_dict(weights, strict=True)
            models.append(model.to(device=device, dtype=dtype or torch.float32).eval())
    except (KeyError, TypeError, RuntimeError, SafetensorError, ValueError) as error:
        raise CheckpointError(f"{path}: committee members do not match their metadata ({error})") from None
    if len(models) < 2:
        raise CheckpointError(f"{path}: a committee file with {len(models)} member")
    return models, metadata


def load_denoising_head(path: str | Path, config: ModelConfig) -> DenoisingHead | None:
    """The denoising head stored with a pretrained checkpoint (float32), or None if it has none."""
    path = resolve(path)
    n = len(HEAD_PREFIX)
    tensors = {k[n:]: v for k, v in load_file(str(path)).items() if k.startswith(HEAD_PREFIX)}
    if not tensors:
        return None
    head = DenoisingHead(config)
    try:
        head.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: denoising-head weights do not match its model ({error})") from None
    return head.float()


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[NoiseGenerator, dict]:
    """The noise generator of a pretrained checkpoint (eval mode, float32) and its noise
    settings (`kind`, `sigma_prior`, ...)."""
    path = resolve(path)
    metadata = read_metadata(path)
    if "generator" not in metadata:
        raise CheckpointError(f"{path}: holds no noise generator (only pretrained checkpoints do)")
    try:
        generator = NoiseGenerator(GeneratorConfig.from_dict(metadata["generator"]["config"]))
        n = len(GENERATOR_PREFIX)
        tensors = {k[n:]: v for k, v in load_file(str(path)).items() if k.startswith(GENERATOR_PREFIX)}
        generator.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, RuntimeError, SafetensorError, ValueError) as error:
        raise CheckpointError(f"{path}: generator weights do not match its metadata ({error})") from None
    return generator.float().to(device).eval(), metadata["generator"]["noise"]
