"""The adapter in float32 and under bf16 autocast (``model_conf.adapter_dtype``): loss curve and step time.

    PYTHONPATH=. tools/venv/bin/python bench/adapter_dtype_loss.py \\
        --exp egs2/mini_librispeech_synth/desta2/exp/desta2_train_desta2 --steps 150

Trains the experiment's config from its initialisation (same seed, same
batches in the trainer's order, the config's optimizer and scheduler) once
per adapter dtype, and prints the mean training loss over each window of
steps side by side, the validation loss on the first ``--valid_batches``
validation batches at the end, and the mean step time.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from espnet2.tasks.abs_task import scheduler_classes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_step import batches  # noqa: E402

from espnet_blsp.tasks.blsp import BLSPTask  # noqa: E402
from espnet_blsp.tasks.registry import build_model_from_config  # noqa: E402


def run(config: Path, dtype: torch.dtype, args) -> dict:
    torch.manual_seed(0)
    model, train_args = build_model_from_config(config)
    model.adapter_dtype = dtype
    model.train()
    optimizer = BLSPTask.build_optimizers(train_args, model)[0]
    # The demo's warmuplr steps per batch, as the trainer steps it.
    scheduler = scheduler_classes[train_args.scheduler](optimizer, **train_args.scheduler_conf)
    trainable = [p for p in model.parameters() if p.requires_grad]
    losses, start = [], time.perf_counter()
    for step, (_, load) in enumerate(batches(train_args, seed=train_args.seed)):
        if step == args.steps:
            break
        loss = model(**load())[0]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, train_args.grad_clip)
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
        losses.append(loss.item())
    seconds = (time.perf_counter() - start) / len(losses)
    model.eval()
    valid_args = argparse.Namespace(**vars(train_args))
    valid_args.train_data_path_and_name_and_type = train_args.valid_data_path_and_name_and_type
    valid_args.train_shape_file = train_args.valid_shape_file
    valid, weights = [], []
    with torch.no_grad():
        for i, (keys, load) in enumerate(batches(valid_args, seed=0)):
            if i == args.valid_batches:
                break
            valid.append(model(**load())[0].item() * len(keys))
            weights.append(len(keys))
    return {"losses": losses, "step_s": seconds, "valid": sum(valid) / sum(weights)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exp", type=Path, required=True, help="a trained experiment (its config.yaml)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--window", type=int, default=25)
    parser.add_argument("--valid_batches", type=int, default=20)
    parser.add_argument("--num_threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.num_threads)
    exp = args.exp.resolve()
    os.chdir(exp.parent.parent)  # config.yaml's data paths are relative to the recipe
    results = {d: run(exp / "config.yaml", d, args) for d in (torch.float32, torch.bfloat16)}
    print("| steps | adapter float32 | adapter bf16 autocast |\n|---|---|---|")
    for lo in range(0, args.steps, args.window):
        cells = [sum(r["losses"][lo : lo + args.window]) / len(r["losses"][lo : lo + args.window]) for r in results.values()]
        print(f"| {lo + 1}-{min(lo + args.window, args.steps)} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    print(f"| valid loss ({args.valid_batches} batches) | " + " | ".join(f"{r['valid']:.4f}" for r in results.values()) + " |")
    print("| s/step | " + " | ".join(f"{r['step_s']:.3f}" for r in results.values()) + " |")


if __name__ == "__main__":
    main()
