"""Where the time of a recipe's training step goes, on its real batches.

    python bench/profile_step.py --exp egs2/mini_librispeech_synth/blsp/exp/blsp_train_blsp

Rebuilds the trained experiment from its ``config.yaml`` (and weights, so the
CTC run compression makes the slots the trained model makes), draws batches
as ESPnet's trainer does (same sampler, dataset, preprocessor and collate
function), and runs full training steps (forward, backward, gradient clip,
optimizer). Prints, per step:

- wall time by phase: data loading, encoder + adapter, CTC compression,
  batch assembly, LLM body forward, head + loss, backward, optimizer, and
  the rest of the model's Python;
- the LLM's positions: computed (padded) vs real, labelled (for the head);
- the model FLOP/s of the LLM's forward + backward against this machine's
  matmul peak in the LLM's dtype;
- torch.profiler's top operators by self time over a few steps.
"""

import argparse
import contextlib
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import matmul_peak  # noqa: E402

import espnet_blsp.llm.batch as llm_batch  # noqa: E402
from espnet_blsp.tasks.blsp import BLSPTask  # noqa: E402
from espnet_blsp.tasks.registry import build_model_from_config  # noqa: E402
from espnet_blsp.utils.frozen import load_trained  # noqa: E402


class Phases:
    """Wall-clock seconds by phase, accumulated over steps."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.counts = defaultdict(int)

    @contextlib.contextmanager
    def time(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            with self.time(name):
                return fn(*args, **kwargs)

        return timed


def batches(args: argparse.Namespace, seed: int):
    """(keys, collated batch) in the trainer's first-epoch order."""
    from espnet2.samplers.build_batch_sampler import build_batch_sampler
    from espnet2.train.dataset import ESPnetDataset

    dataset = ESPnetDataset(
        [tuple(x) for x in args.train_data_path_and_name_and_type],
        preprocess=BLSPTask.build_preprocess_fn(args, train=True),
    )
    sampler = build_batch_sampler(
        type=args.batch_type,
        batch_size=args.batch_size,
        batch_bins=args.batch_bins,
        shape_files=args.train_shape_file,
        sort_in_batch=args.sort_in_batch,
        sort_batch=args.sort_batch,
    )
    order = list(sampler)
    random.Random(seed).shuffle(order)  # the trainer shuffles batches each epoch
    collate = BLSPTask.build_collate_fn(args, train=True)
    for keys in order:
        yield keys, lambda keys=keys: collate([dataset[k] for k in keys])[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, default=Path("egs2/mini_librispeech_synth/blsp/exp/blsp_train_blsp"))
    parser.add_argument("--model_file", default="valid.loss.ave.pth", help="in --exp; 'none' for the init")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--profile_steps", type=int, default=4)
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="as llm_conf.compile: true (MLPs and norms compiled)")
    args = parser.parse_args()
    torch.set_num_threads(args.num_threads)
    torch.manual_seed(0)
    exp = args.exp.resolve()
    os.chdir(exp.parent.parent)  # config.yaml's data paths are relative to the recipe
    config = exp / "config.yaml"
    model, train_args = build_model_from_config(config)
    if args.model_file != "none":
        load_trained(model, exp / args.model_file, config)
    model.train()
    model.llm.compile_layers = args.compile
    optimizer = BLSPTask.build_optimizers(train_args, model)[0]
    trainable = [p for p in model.parameters() if p.requires_grad]

    phases = Phases()
    positions = defaultdict(int)
    model.adapter.forward = phases.wrap("encoder + adapter", model.adapter.forward)
    model.encoder.forward = phases.wrap("encoder + adapter", model.encoder.forward)
    model.to_slots = phases.wrap("CTC compression", model.to_slots)
    model.llm.hidden_states = phases.wrap("LLM body forward", model.llm.hidden_states)
    model.llm.logits = phases.wrap("head + loss", model.llm.logits)
    assemble = llm_batch.assemble

    def counted_assemble(*a, **kw):
        with phases.time("batch assembly"):
            batch = assemble(*a, **kw)
        positions["computed"] += batch.mask.numel()
        positions["real"] += int(batch.mask.sum())
        positions["labelled"] += int((batch.labels[:, 1:] != llm_batch.IGNORE_ID).sum())
        positions["rows"] += batch.mask.size(0)
        return batch

    llm_batch.assemble = counted_assemble

    def step(load, timed: bool):
        with phases.time("data loading"):
            data = load()
        with phases.time("forward (all)"):
            loss = model(**data)[0]
        with phases.time("backward"):
            loss.backward()
        with phases.time("optimizer"):
            torch.nn.utils.clip_grad_norm_(trainable, train_args.grad_clip)
            optimizer.step()
            optimizer.zero_grad()
        if timed:
            phases.counts["steps"] += 1
            phases.counts["utterances"] += len(data["speech"])

    stream = batches(train_args, seed=train_args.seed)
    start = time.perf_counter()
    for _ in range(args.warmup):
        step(next(stream)[1], timed=False)
    print(f"warm-up: {args.warmup} steps in {time.perf_counter() - start:.1f} s (compile: {args.compile})")
    phases.seconds.clear()
    positions.clear()
    start = time.perf_counter()
    for _ in range(args.steps):
        step(next(stream)[1], timed=True)
    wall = time.perf_counter() - start
    report(model, phases, positions, wall)

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(args.profile_steps):
            step(next(stream)[1], timed=False)
    print(f"\n## Top operators by self CPU time ({args.profile_steps} steps, profiler on)\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=48))


def report(model, phases: Phases, positions, wall: float) -> None:
    steps = phases.counts["steps"]
    s = phases.seconds
    parts = ["encoder + adapter", "CTC compression", "batch assembly", "LLM body forward", "head + loss"]
    s["model Python (rest of forward)"] = s["forward (all)"] - sum(s[p] for p in parts)
    rows = ["data loading"] + parts + ["model Python (rest of forward)", "backward", "optimizer"]
    s["other (loop)"] = wall - sum(s[r] for r in rows)
    print(f"# Training step profile: {steps} steps, {phases.counts['utterances'] / steps:.1f} utterances each, "
          f"{torch.get_num_threads()} threads, LLM in {model.llm.dtype}\n")
    print("| phase | ms/step | % |\n|---|---|---|")
    for r in rows + ["other (loop)"]:
        print(f"| {r} | {1000 * s[r] / steps:.1f} | {100 * s[r] / wall:.1f} |")
    print(f"| **step** | **{1000 * wall / steps:.1f}** | 100 |")

    hf = model.llm.hf_model()
    cfg = hf.config
    body = sum(p.numel() for n, p in hf.named_parameters() if "embed" not in n and "lm_head" not in n)
    head = cfg.vocab_size * cfg.hidden_size
    computed, real, labelled = positions["computed"] / steps, positions["real"] / steps, positions["labelled"] / steps
    print(f"\nLLM positions per step: {computed:.0f} computed, {real:.0f} real "
          f"(padding {100 * (1 - real / computed):.1f} %), {labelled:.0f} labelled; "
          f"{real / positions['rows'] * steps:.0f} real per row")
    # Frozen LLM: forward 2N and input-gradient backward 2N per position; the head on labelled ones.
    flops = 4 * body * computed + 4 * head * labelled
    llm_seconds = (s["LLM body forward"] + s["head + loss"] + s["backward"]) / steps
    peak = matmul_peak(model.llm.dtype, seconds=2.0)
    print(f"LLM forward + backward: {flops / 1e9:.1f} GFLOP per step (padded positions counted) in "
          f"~{1000 * llm_seconds:.0f} ms (body forward + head + all of backward) = {flops / llm_seconds / 1e12:.3f} "
          f"TFLOP/s; {model.llm.dtype} matmul peak {peak / 1e12:.3f} TFLOP/s -> "
          f"{100 * flops / llm_seconds / peak:.0f} %")


if __name__ == "__main__":
    main()
