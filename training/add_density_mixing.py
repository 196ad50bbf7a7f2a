"""Give a trained checkpoint density mixing (`model.density_mixing`) without changing what it
predicts (`ForceField.with_density_mixing`: the new mixing starts as the identity), so training
can go on from the old model's accuracy with the extra freedom instead of starting again.

    python training/add_density_mixing.py runs/rmd17-1000-ethanol-stage5/model.safetensors runs/rmd17-ethanol-mixing-start.safetensors
    anids-md train --config rmd17-1000 init=runs/rmd17-ethanol-mixing-start.safetensors ...
"""

import argparse

from anids_md.checkpoint import load_checkpoint, save_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="checkpoint path or shipped name")
    parser.add_argument("target", help="where to write the checkpoint with density mixing")
    args = parser.parse_args()
    model, metadata = load_checkpoint(args.source)
    training = {**metadata.get("training", {}), "grown_from": str(args.source), "change": "density mixing added as the identity"}
    save_checkpoint(model.with_density_mixing(), args.target, training=training)
    print(f"wrote {args.target}")


if __name__ == "__main__":
    main()
