import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from anids_md.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint, shipped_models
from anids_md.data import graph_from_atoms


def test_round_trip_gives_identical_outputs(tiny_model, ethanol, tmp_path):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors", training={"train_file": "x.npz"})
    loaded, metadata = load_checkpoint(path, dtype=torch.float64)
    graph = graph_from_atoms(ethanol, tiny_model.config.cutoff).to(dtype=torch.float64)
    a, b = tiny_model(graph), loaded(graph)
    assert torch.equal(a["energy"], b["energy"]) and torch.equal(a["forces"], b["forces"])
    assert metadata["units"] == {"energy": "eV", "forces": "eV/Å", "length": "Å"}
    assert metadata["training"]["train_file"] == "x.npz"
    assert metadata["model"]["reference_energies"]["6"] == -1025.3


def test_corrupt_file(tiny_model, tmp_path):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_newer_format_is_refused(tiny_model, tmp_path):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    metadata = read_metadata(path)
    metadata["format_version"] = 99
    save_file(load_file(str(path)), str(path), metadata={"anids_md": json.dumps(metadata)})
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(path)


def test_foreign_and_mismatched_files(tiny_model, tmp_path):
    foreign = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="without anids-md metadata"):
        load_checkpoint(foreign)
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    metadata = read_metadata(path)
    metadata["model"]["channels"] = 16  # weights no longer fit the described model
    save_file(load_file(str(path)), str(path), metadata={"anids_md": json.dumps(metadata)})
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="none of that name ships with anids-md; shipped: .*rmd17-ethanol"):
        load_checkpoint(tmp_path / "nothing.safetensors")


@pytest.mark.parametrize("name", ["rmd17-aspirin", "rmd17-ethanol", "rmd17-50-aspirin", "rmd17-50-ethanol"])
def test_shipped_models_load(name):
    assert name in shipped_models()
    model, metadata = load_checkpoint(name)
    assert metadata["training"]["protocol"] in ("rmd17-50", "rmd17-1000")
    assert metadata["results"]["test"]["n_structures"] == 1000
    assert sum(p.numel() for p in model.parameters()) > 1000
