"""Write a `benchmarks/vs_mace.py` run as a shippable checkpoint: its weights and training
metadata, with the run's summary and the test figures of its `test.json` (the benchmark
evaluates after training, so the trainer's own checkpoint has none) as `results`.

    python training/ship_benchmark_run.py runs/vs-mace/anids-mix-dw3.125-ethanol-s0 \
        anids_md/models/rmd17-50-ethanol.safetensors
"""

import argparse
import json
from pathlib import Path

from anids_md.checkpoint import load_checkpoint, save_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run folder (model.safetensors, summary.json, test.json, result.json)")
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    model, metadata = load_checkpoint(args.run / "model.safetensors")
    results = json.loads((args.run / "summary.json").read_text())
    molecule = json.loads((args.run / "result.json").read_text())["molecule"]
    test = {k: v for k, v in json.loads((args.run / "test.json").read_text()).items() if k not in ("checkpoint", "data")}  # local paths
    results |= {"test_file": f"rmd17_{molecule}_test_01.npz", "test": test}
    save_checkpoint(model, args.target, training=metadata["training"], extra={"results": results})
    print(f"wrote {args.target}: test forces {results['test']['forces_mae_meV_per_A']:.2f} meV/Å")


if __name__ == "__main__":
    main()
