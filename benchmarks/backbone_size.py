"""Which backbone size? Accuracy against speed of the force field's size (channels, layers) on the
few-label route. The foundation exists at one size only, so every size starts from scratch: the
molecule prior fitted for 60 epochs on the recommended recipe's GFN2-xTB frames of the molecule
(as the prior-from-scratch arm of priors.py), then the recommended fine-tune (4000 steps, peak lr
2e-3, energy weight 3) on the 50 DFT frames of rmd17-50; test errors on all 1000 test frames. Speed:
ms per energy+forces call on rMD17 aspirin's first test frame (the speed target's structure; the
ethanol models know H, C and O), eager float32, one thread, in alternating rounds with MACE small
(peer_mace_speed.sh), after the training, with nothing beside it.

    python benchmarks/backbone_size.py --molecule ethanol --sizes 32:2 32:3 64:2 64:3 --workers 2

Writes benchmarks/results/backbone_size_rmd17-50.json and .png (a run folder that holds a summary
is read, not trained again)."""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ase.io import write
from common import RESULTS, machine, rmd17_dir
from harness import provenance, train_run
from vs_mace import measure_speed

from anids_md.data import read_structures
from anids_md.nn import ModelConfig
from anids_md.prior import build_prior, fit_prior
from anids_md.reference import XTBLevel
from anids_md.settings import PriorConfig

OUT = RESULTS / "backbone_size_rmd17-50.json"
PRIOR = PriorConfig(frames=1000, interval=20, epochs=60, init=None, compile=False)  # the recipe's sampling when measured, fitted from scratch


def run_size(args, built, size: tuple[int, int]) -> dict:
    """The prior at `size` on the xTB frames of `built` (the plain recipe's size is `built`'s own
    fit), its fine-tune, and their errors."""
    channels, layers = size
    data = rmd17_dir(args.data)
    files = [data / f"rmd17_{args.molecule}_train_01.npz", data / f"rmd17_{args.molecule}_test_01.npz"]
    name = f"{args.molecule}-c{channels}-l{layers}-s{args.seed}"
    if (channels, layers) == (ModelConfig.channels, ModelConfig.layers):
        prior_model = built.model
        prior = json.loads((prior_model.parent / "summary.json").read_text())
    else:
        prior, prior_model = fit_prior(built.frames_file, Path(args.runs) / f"prior-{name}", PRIOR, XTBLevel(method=PRIOR.method), args.seed,
                                       False, (f"model.channels={channels}", f"model.layers={layers}"))
    summary_path = Path(args.runs) / name / "summary.json"
    if not summary_path.exists():
        status, _, output = train_run([f"name={name}", f"output_dir={args.runs}", f"seed={args.seed}", f"data.train={files[0]}",
                                       f"data.test={files[1]}", f"init={prior_model}", "prior=null", "device=cpu", "resume=true"],
                                      config="rmd17-50-anids")
        if status != 0:
            raise RuntimeError(f"{name} failed:\n{output}")
    summary = json.loads(summary_path.read_text())
    return {"molecule": args.molecule, "channels": channels, "layers": layers, "seed": args.seed,
            "test_forces_mae_meV_per_A": summary["test"]["forces_mae_meV_per_A"], "test_energy_mae_meV": summary["test"]["energy_mae_meV"],
            "prior_valid_xtb_forces_mae_meV_per_A": prior["valid"]["forces_mae_meV_per_A"], "prior_fit_wall_s": prior["train_wall_s"],
            "finetune_wall_s": summary["train_wall_s"], "model": str(Path(args.runs) / name / "model.safetensors"),
            "provenance": provenance(models=[Path(args.runs) / name / "model.safetensors", prior_model], data=files)}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for r in rows:
        ax.scatter(r["ms_per_call"], r["test_forces_mae_meV_per_A"], color=f"C{r['layers'] - 2}")
        ax.annotate(f"{r['channels']} ch, {r['layers']} layers", (r["ms_per_call"], r["test_forces_mae_meV_per_A"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.axvline(rows[0]["mace_small_ms_per_call"] / 3, color="k", ls=":", lw=1, label="3x faster than MACE small")
    ax.set(xlabel="ms per aspirin energy+forces call (float32, 1 thread)", ylabel="test force MAE (meV/Å)",
           title=f"{rows[0]['molecule']} rmd17-50, prior from scratch + fine-tune")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", default="ethanol")
    parser.add_argument("--sizes", nargs="+", default=["32:2", "32:3", "64:2", "64:3"], help="CHANNELS:LAYERS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="sizes trained at once, one thread each")
    parser.add_argument("--speed-rounds", type=int, default=3)
    parser.add_argument("--runs", default="runs/backbone-size")
    parser.add_argument("--data", help="folder of the rMD17 split files (default $ANIDS_RMD17 or ../shared/data/rmd17)")
    args = parser.parse_args()
    data = rmd17_dir(args.data)
    train_frames = read_structures(data / f"rmd17_{args.molecule}_train_01.npz")
    # the recommended recipe's xTB frames (train's prior is built from the first frame of each formula), fitted at the plain size
    built = build_prior(train_frames[:1], Path(args.runs) / "priors", PRIOR, args.seed, False)
    sizes = [tuple(int(x) for x in item.split(":")) for item in args.sizes]
    with ThreadPoolExecutor(args.workers) as pool:
        rows = list(pool.map(lambda size: run_size(args, built, size), sizes))
    structure = Path(args.runs) / "aspirin_test0.xyz"  # MACE's timer reads a file
    write(structure, read_structures(data / "rmd17_aspirin_test_01.npz")[0])
    speed = measure_speed(structure, {k: row["model"] for k, row in enumerate(rows)}, args.speed_rounds)
    for k, row in enumerate(rows):
        row |= {"ms_per_call": speed[k], "mace_small_ms_per_call": speed["MACE small"], "faster_than_mace": speed["MACE small"] / speed[k]}
    OUT.write_text(json.dumps({"machine": machine(), "protocol": __doc__.split("\n\n")[0].replace("\n", " "), "rows": rows}, indent=1))
    plot(rows, OUT.with_suffix(".png"))
    for r in rows:
        print(f"{r['channels']} ch, {r['layers']} layers: forces {r['test_forces_mae_meV_per_A']:.1f} meV/Å, energy "
              f"{r['test_energy_mae_meV']:.1f} meV, {r['ms_per_call']:.2f} ms per call ({r['faster_than_mace']:.1f}x MACE small)")


if __name__ == "__main__":
    main()
