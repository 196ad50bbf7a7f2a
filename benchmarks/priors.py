"""Does a prior pay? rmd17-50 test errors (all 1000 test frames) of the plain recipe from scratch
(10 000 steps) against the recommended recipe rmd17-50-anids (the molecule's GFN2-xTB prior, built
by `train` itself: xTB minimum of train frame 0, Langevin MD at 500 K from 4 starts, 1000 frames,
a 60-epoch fit from the qm9-xtb foundation; then 4000 steps at peak lr 2e-3 on the 50 DFT frames;
2000 steps at 5e-3 until 2026-12-03, which the prior-from-scratch rows still used), and its
variants: the prior fitted from scratch (60 epochs; the recommended recipe until 2026-12-02), the
foundation alone without a molecule prior (`--foundation`, default qm9-xtb), the recommended
recipe with its prior fitted from that foundation (`recommended-foundation`: to try a new one),
and the earlier recipe (qm9-anids with auxiliary anisotropic denoising, 10 000 steps); and the
ablation of auxiliary denoising on top of the prior or the foundation (`prior-denoise*`,
`foundation-denoise*`: anisotropic noise from qm9-anids's generator, frozen or trained jointly,
fixed noise, or isotropic noise from a generator pretrained with it: `--isotropic-generator`).
Each at its recipe's full budget, one thread. The plot marks MACE small trained on the same 50
frames with its own rMD17 recipe (600 epochs; `vs_mace.json`, with its wall time per run).

    python benchmarks/priors.py --molecules ethanol aspirin --seeds 0 1 --arms scratch recommended foundation [--workers 2]

Writes benchmarks/results/priors_rmd17-50.json (or `--out`) and .png (rows gathered by molecule,
arm and seed; each row carries its own provenance; a run folder that holds a summary is read, not
trained again). The prior's cost (xTB seconds, fit seconds) is in its row."""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import RESULTS, machine, rmd17_dir, seed_bars
from harness import provenance, train_run

from anids_md.checkpoint import resolve
from anids_md.train import load_config

# arm: (recipe, overrides); {foundation} is the --foundation checkpoint
ARMS = {
    "scratch": ("rmd17-50", ["optim.max_steps=10000"]),
    "qm9-anids": ("rmd17-50", ["optim.max_steps=10000", "init=qm9-anids", "denoise.kind=anisotropic"]),
    "recommended": ("rmd17-50-anids", []),
    "recommended-compiled": ("rmd17-50-anids", ["prior.compile=true", "optim.compile=true"]),  # the same, trained through torch.compile
    "prior-from-scratch": ("rmd17-50-anids", ["prior.init=null", "prior.epochs=60"]),
    "foundation": ("rmd17-50-anids", ["prior=null", "init={foundation}"]),
    "recommended-foundation": ("rmd17-50-anids", ["prior.init={foundation}"]),  # the prior fitted from --foundation
    # the ablation: auxiliary denoising added to the recommended recipe and to the foundation arm,
    # anisotropic with qm9-anids's generator (frozen, or trained with the model as AniDS eq. 27)
    # or fixed isotropic noise, or isotropic with a per-atom scale from a generator pretrained so
    # ({isotropic}, DenoiseVAE's σ_i²-weighted loss); qm9-xtb keeps no generator of its own
    "prior-denoise": ("rmd17-50-anids", ["denoise.kind=anisotropic", "denoise.generator=qm9-anids"]),
    "prior-denoise-joint": ("rmd17-50-anids", ["denoise.kind=anisotropic", "denoise.generator=qm9-anids", "denoise.train_generator=true"]),
    "prior-denoise-fixed": ("rmd17-50-anids", ["denoise.kind=fixed"]),
    "foundation-denoise": ("rmd17-50-anids", ["prior=null", "init={foundation}", "denoise.kind=anisotropic", "denoise.generator=qm9-anids"]),
    "foundation-denoise-joint": ("rmd17-50-anids", ["prior=null", "init={foundation}", "denoise.kind=anisotropic",
                                                    "denoise.generator=qm9-anids", "denoise.train_generator=true"]),
    "foundation-denoise-fixed": ("rmd17-50-anids", ["prior=null", "init={foundation}", "denoise.kind=fixed"]),
    "foundation-denoise-isotropic": ("rmd17-50-anids", ["prior=null", "init={foundation}", "denoise.kind=isotropic",
                                                        "denoise.generator={isotropic}"]),
}
OUT = RESULTS / "priors_rmd17-50.json"


def pretrained_starts(recipe: str, overrides: list[str]) -> list[str]:
    """The pretrained checkpoints an arm starts from, as its recipe resolves them: its init, its
    noise generator, and the checkpoint its molecule prior is fitted from."""
    config = load_config(recipe, overrides)
    return [start for start in (config.init, config.denoise.generator, config.prior and config.prior.init) if start]


def run_arm(args, molecule: str, arm: str, seed: int) -> dict:
    data = rmd17_dir(args.data)
    files = [data / f"rmd17_{molecule}_train_01.npz", data / f"rmd17_{molecule}_test_01.npz"]
    name = f"{molecule}-{arm}-s{seed}"
    recipe, template = ARMS[arm]
    extra = [o.format(foundation=args.foundation, isotropic=args.isotropic_generator) for o in template]
    overrides = [f"name={name}", f"output_dir={args.runs}", f"seed={seed}", f"data.train={files[0]}", f"data.test={files[1]}",
                 "device=cpu", "resume=true", *extra]
    summary_path = Path(args.runs) / name / "summary.json"
    if not summary_path.exists():
        status, wall, output = train_run(overrides, config=recipe)
        if status != 0:
            raise RuntimeError(f"{name} failed:\n{output}")
        print(f"{name}: {wall:.0f} s", flush=True)
    summary = json.loads(summary_path.read_text())
    prior = summary.get("prior")
    models = [Path(args.runs) / name / "model.safetensors"] + ([prior["model"]] if prior else [])
    models += [resolve(start) for start in pretrained_starts(recipe, extra)]
    return {"molecule": molecule, "arm": arm, "recipe": recipe, "overrides": extra, "seed": seed,
            "test_forces_mae_meV_per_A": summary["test"]["forces_mae_meV_per_A"], "test_energy_mae_meV": summary["test"]["energy_mae_meV"],
            "n_test_frames": summary["test"]["n_structures"], "steps": summary["steps"], "finetune_wall_s": summary["train_wall_s"],
            "dft_labels": 100,  # 50 train + 50 validation
            "prior": prior, "provenance": provenance(models=models, data=files)}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    molecules = sorted({r["molecule"] for r in rows})
    mace = {m["molecule"]: {"test_forces_mae_meV_per_A": m["forces_mae_meV_per_A"], "test_energy_mae_meV": m["energy_mae_meV"],
                            "wall_s": m["wall_s"]}
            for m in json.loads((RESULTS / "vs_mace.json").read_text())["summary"] if m["code"] == "MACE small"}
    columns = min(4, len(molecules))  # four molecules a row: forces above, energies below
    blocks = -(-len(molecules) // columns)
    fig, axes = plt.subplots(2 * blocks, columns, figsize=(4.2 * columns, 3.6 * 2 * blocks), squeeze=False)
    for n in range(len(molecules), blocks * columns):  # the last block's empty places
        axes[2 * (n // columns)][n % columns].set_visible(False)
        axes[2 * (n // columns) + 1][n % columns].set_visible(False)
    for n, molecule in enumerate(molecules):
        row, k = 2 * (n // columns), n % columns
        for ax, key, label in ((axes[row][k], "test_forces_mae_meV_per_A", "test force MAE (meV/Å)"),
                               (axes[row + 1][k], "test_energy_mae_meV", "test energy MAE (meV)")):
            groups = [(arm, [r[key] for r in rows if r["molecule"] == molecule and r["arm"] == arm]) for arm in ARMS]
            seed_bars(ax, [(a, v) for a, v in groups if v], label)
            if molecule in mace:  # MACE small's own rMD17 recipe on the same frames, this machine
                ax.axhline(mace[molecule][key], color="k", ls="--", lw=1, label=f"MACE small, {mace[molecule]['wall_s']:.0f} s")
                ax.legend(fontsize=7)
        axes[row][k].set_title(f"{molecule}, rmd17-50")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", nargs="+", default=["ethanol", "aspirin"])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=["scratch", "recommended"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--workers", type=int, default=1, help="arms run at once, one thread each")
    parser.add_argument("--runs", default="runs/priors-benchmark")
    parser.add_argument("--foundation", default="qm9-xtb", help="checkpoint of the foundation arm")
    parser.add_argument("--isotropic-generator", default="runs/qm9-isotropic/model.safetensors",
                        help="QM9 denoising pretraining with isotropic noise, for the *-isotropic arm: anids-md pretrain "
                             "--config pretrain_qm9 noise.kind=isotropic name=qm9-isotropic")
    parser.add_argument("--data", help="folder of the rMD17 split files (default $ANIDS_RMD17 or ../shared/data/rmd17)")
    parser.add_argument("--out", type=Path, default=OUT, help="results JSON (the plot beside it)")
    args = parser.parse_args()
    jobs = [(m, a, s) for m in args.molecules for a in args.arms for s in args.seeds]
    with ThreadPoolExecutor(args.workers) as pool:
        new = list(pool.map(lambda job: run_arm(args, *job), jobs))
    old = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    keep = [r for r in old if (r["molecule"], r["arm"], r["seed"]) not in {(m, a, s) for m, a, s in jobs}]
    rows = sorted(keep + new, key=lambda r: (r["molecule"], r["arm"], r["seed"]))
    args.out.write_text(json.dumps({"machine": machine(), "protocol": __doc__.split("\n\n")[0].replace("\n", " "), "rows": rows}, indent=1))
    plot(rows, args.out.with_suffix(".png"))
    for r in new:
        print(r["molecule"], r["arm"], r["seed"], f"forces {r['test_forces_mae_meV_per_A']:.1f} meV/Å, energy {r['test_energy_mae_meV']:.1f} meV")


if __name__ == "__main__":
    main()
