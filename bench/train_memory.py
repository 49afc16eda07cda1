"""Memory and time of a BLSP training step, with and without gradient checkpointing.

    python bench/train_memory.py --llm egs2/mini_librispeech_synth/blsp/exp/models/smollm2-135m-instruct
    python bench/train_memory.py --table   # the README's estimate for 7-8B LLMs (no model needed)

For each setting of ``llm_conf.gradient_checkpointing`` a fresh process
builds the demo-shaped model of ``train_throughput.py`` (synthetic batches:
3.5 s of Whisper tiny frames, a 45-token continuation; the prompt prefix from
the KV cache), runs a warm-up step and then full training steps (forward,
backward, AdamW), and prints per step:

- kept: memory held at the end of the forward, above what was held before
  it (the activations autograd keeps for backward, the logits, ...);
- peak: the step's peak memory above what was held before it;
- the step time, wall-clock and the process's CPU time (median of
  ``--steps``, in another fresh process with the usual allocator; on a
  shared machine ``--threads 1`` times steadily).

On CUDA these are ``torch.cuda`` allocator counts. On the CPU they are the
process's resident memory (``VmRSS``, and ``VmHWM`` reset before each step
through ``/proc/self/clear_refs``) with glibc's mmap threshold fixed at 64 KiB
(``MALLOC_MMAP_THRESHOLD_``), so a freed tensor's pages go back to the system
at once and the resident memory follows the live tensors.

Without checkpointing it also prints what autograd saves inside the decoder
layers per computed token and layer (weights and tensors shared by all
layers left out), against the formula of :func:`layer_bytes`, and the
formula's estimate of the kept memory against the measured one: the
calibration of ``--table``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import make_batch  # noqa: E402

MiB = 2**20
GiB = 2**30


# ---- the estimate ---------------------------------------------------------------
def layer_bytes(arch: dict, rows: int, computed: int, prefix: int, dtype_bytes: int, checkpointing: bool) -> int:
    """Bytes one decoder layer keeps for backward (HF Llama-style layer with
    SDPA, frozen weights: no layer input is kept for a weight gradient).

    Per computed token: both RMSNorms save their input upcast to float32
    (2 x 4D), SDPA saves queries and output (2 x H*hd, k/v heads repeated to
    H as HF does under a padding mask), its log-sum-exp (4H) and its mask
    row (one number per attended position), the MLP saves gate, up and
    SiLU(gate) (3I), in the model dtype; per attended position (prefix
    included) SDPA saves keys and values (2 x H*hd). With checkpointing a
    layer keeps only its input (D per token).
    """
    d, i, h, hd = arch["hidden_size"], arch["intermediate_size"], arch["heads"], arch["head_dim"]
    tokens = rows * computed
    if checkpointing:
        return tokens * d * dtype_bytes
    attended = prefix + computed
    per_token = 8 * d + dtype_bytes * (2 * h * hd + 3 * i + attended) + 4 * h + 8
    return tokens * per_token + rows * attended * 2 * dtype_bytes * h * hd


def head_bytes(arch: dict, labelled: int) -> int:
    """The float32 log-softmax over the vocabulary at the labelled positions,
    kept for backward (the head's matmul runs only there)."""
    return labelled * arch["vocab_size"] * 4


def kept_estimate(
    arch: dict, rows: int, computed: int, prefix: int, labelled: int, dtype_bytes: int, checkpointing: bool
) -> int:
    """Bytes the forward of a training step keeps for backward in the LLM:
    the decoder layers, the final RMSNorm's float32 input, the head."""
    layers = arch["layers"] * layer_bytes(arch, rows, computed, prefix, dtype_bytes, checkpointing)
    return layers + rows * computed * 4 * arch["hidden_size"] + head_bytes(arch, labelled)


def peak_estimate(
    arch: dict, rows: int, computed: int, prefix: int, labelled: int, dtype_bytes: int, checkpointing: bool
) -> int:
    """The step's peak above the weights and optimizer states: the kept
    memory, then at the start of backward the head's float32 gradients (two
    more log-softmax sizes), or later one layer's activations (recomputed,
    with checkpointing), whichever is larger (the adapter's activations
    come on top)."""
    kept = kept_estimate(arch, rows, computed, prefix, labelled, dtype_bytes, checkpointing)
    layer = layer_bytes(arch, rows, computed, prefix, dtype_bytes, False)
    return kept + max(2 * head_bytes(arch, labelled), layer)


def arch_of(config) -> dict:
    return {
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "heads": config.num_attention_heads,
        "head_dim": getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
        "vocab_size": config.vocab_size,
    }


# ---- the measurement ------------------------------------------------------------
def rss_bytes(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class Meter:
    """Memory above a baseline: the CUDA allocator's, or resident memory."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = rss_bytes()
            reset_peak_rss()

    def now(self) -> int:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.memory_allocated() - self.base
        return rss_bytes() - self.base

    def peak(self) -> int:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.base
        return rss_bytes("VmHWM") - self.base


def saved_inside(modules, run) -> int:
    """Bytes autograd saves while inside any of ``modules``' forward during
    ``run()``: each storage once, parameters and tensors that an earlier
    module saved already (e.g. rotary tables, the prefix) left out."""
    params = {p.untyped_storage().data_ptr() for m in modules for p in m.parameters()}
    seen, inside, total = set(), [False], [0]
    hooks = []
    for m in modules:
        hooks.append(m.register_forward_pre_hook(lambda *_: inside.__setitem__(0, True)))
        hooks.append(m.register_forward_hook(lambda *_: inside.__setitem__(0, False)))

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if inside[0] and ptr not in params and ptr not in seen:
            seen.add(ptr)
            total[0] += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    for h in hooks:
        h.remove()
    return total[0]


def adapter_bytes_per_frame(adapter: torch.nn.Module, width: int, frames: int = 600) -> float:
    """What autograd saves in the adapter per encoder frame (float32)."""
    x = torch.randn(1, frames, width)
    return saved_inside([adapter], lambda: adapter(x, torch.tensor([frames]))) / frames


def child(args) -> None:
    """One setting, in this fresh process: memory (glibc returning freed
    pages) or time (its usual allocator; the mmap threshold slows the step
    several-fold); prints a JSON line."""
    from espnet_blsp.adapters.conv_glu_adapter import ConvGLUAdapter
    from espnet_blsp.encoders.precomputed_encoder import PrecomputedEncoder
    from espnet_blsp.llm.batch import assemble
    from espnet_blsp.llm.hf_causal_lm import HFCausalLM, decoder_layers
    from espnet_blsp.llm.prompt import shared_prefix
    from espnet_blsp.models.blsp import BLSPModel

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    llm = HFCausalLM(args.llm, dtype=args.dtype, gradient_checkpointing=args.gradient_checkpointing)
    adapter = ConvGLUAdapter(args.width, llm.hidden_size())
    model = BLSPModel(PrecomputedEncoder(args.width), adapter, llm).to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    config = llm.hf_model().config
    data = make_batch(args.batch_size, args.frames, args.target_len, args.width, config.vocab_size)
    data = {k: v.to(device) for k, v in data.items()}
    prefix = shared_prefix([model.prompt])  # as the loss reads it from the cache
    with torch.no_grad():
        slots = [{"speech": s} for s in model.speech_slots(data["speech"], data["speech_lengths"])]
        rows = assemble(model.llm, slots, model.prompt, data["response"].tolist(), cached=prefix)
    shape = {
        "rows": args.batch_size,
        "computed": rows.mask.size(1),
        "prefix": len(prefix),
        "labelled": int((rows.labels != -100).sum()),
    }
    meter = Meter(device)

    def step():
        if args.child == "memory":
            meter.start()
        start, cpu = time.perf_counter(), time.process_time()
        loss = model(**data)[0]
        kept = meter.now() if args.child == "memory" else 0
        loss.backward()
        opt.step()
        opt.zero_grad()
        peak = meter.peak() if args.child == "memory" else 0
        if device.type == "cuda":
            torch.cuda.synchronize()
        return kept, peak, time.perf_counter() - start, time.process_time() - cpu

    step()  # warm-up: optimizer states, the prefix's keys and values
    runs = [step() for _ in range(1 if args.child == "memory" else args.steps)]
    out = {
        "kept": statistics.median(r[0] for r in runs),
        "peak": statistics.median(r[1] for r in runs),
        "seconds": statistics.median(r[2] for r in runs),
        "cpu_seconds": statistics.median(r[3] for r in runs),
        "arch": arch_of(config),
        "dtype_bytes": llm.dtype.itemsize,
        **shape,
    }
    if args.child == "memory" and not args.gradient_checkpointing:
        out["saved_in_layers"] = saved_inside(decoder_layers(model.llm._body()), lambda: model(**data))
        out["saved_in_adapter"] = saved_inside([model.adapter], lambda: model(**data))
    print("RESULT " + json.dumps(out), flush=True)


def run_child(args, what: str, checkpointing: bool) -> dict:
    env = dict(os.environ)
    if what == "memory":
        env.update(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536")
    passed = {k: v for k, v in vars(args).items() if k not in ("child", "table", "gradient_checkpointing")}
    cmd = [sys.executable, __file__, "--child", what] + [f"--{k}={v}" for k, v in passed.items() if v is not None]
    cmd += ["--gradient_checkpointing"] if checkpointing else []
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def measure(args) -> None:
    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}, LLM {args.llm} in {args.dtype}")
    results = {}
    for ckpt in (False, True):
        r = run_child(args, "memory", ckpt)
        timed = run_child(args, "time", ckpt)
        r["seconds"], r["cpu_seconds"] = timed["seconds"], timed["cpu_seconds"]
        results[ckpt] = r
        print(
            f"gradient checkpointing {'on ' if ckpt else 'off'}: kept after forward {r['kept'] / MiB:7.1f} MiB, "
            f"step peak {r['peak'] / MiB:7.1f} MiB, step {r['seconds']:.2f} s ({r['cpu_seconds']:.2f} CPU s) "
            f"(batch {r['rows']} x {r['computed']} computed positions after a cached prefix of {r['prefix']}, "
            f"{r['labelled']} labelled)"
        )
    off, on = results[False], results[True]
    print(
        f"checkpointing: kept x{on['kept'] / off['kept']:.2f}, peak x{on['peak'] / off['peak']:.2f}, "
        f"time x{on['seconds'] / off['seconds']:.2f} (CPU time x{on['cpu_seconds'] / off['cpu_seconds']:.2f})"
    )
    arch, b = off["arch"], off["dtype_bytes"]
    tokens = off["rows"] * off["computed"] * arch["layers"]
    formula = arch["layers"] * layer_bytes(arch, off["rows"], off["computed"], off["prefix"], b, False)
    print(
        f"autograd saves in the decoder layers {off['saved_in_layers'] / MiB:.1f} MiB = "
        f"{off['saved_in_layers'] / tokens:.0f} bytes per computed token and layer (layer_bytes(): "
        f"{formula / MiB:.1f} MiB = {formula / tokens:.0f}); in the adapter {off['saved_in_adapter'] / MiB:.1f} MiB"
    )
    for ckpt, r in results.items():
        shape = (arch, r["rows"], r["computed"], r["prefix"], r["labelled"], b, ckpt)
        adapter = off["saved_in_adapter"]
        kept, peak = kept_estimate(*shape) + adapter, peak_estimate(*shape) + adapter
        print(
            f"checkpointing {'on ' if ckpt else 'off'}: estimated (+ the adapter's) kept {kept / MiB:7.1f} MiB, "
            f"peak {peak / MiB:7.1f} MiB; measured / estimated: kept x{r['kept'] / kept:.2f}, "
            f"peak x{r['peak'] / peak:.2f}"
        )


# ---- the README table -------------------------------------------------------------
# Shapes from the models' HF config.json; parameters with embeddings and head.
LLMS = {
    "Llama-2-7b-chat (BLSP's LLM)": dict(
        layers=32, hidden_size=4096, intermediate_size=11008, heads=32, head_dim=128, vocab_size=32000, params=6.74e9
    ),
    "Llama-3-8B-Instruct (DeSTA2's LLM)": dict(
        layers=32, hidden_size=4096, intermediate_size=14336, heads=32, head_dim=128, vocab_size=128256, params=8.03e9
    ),
}


def table(args) -> None:
    """Estimated GPU memory of a training step: bf16 LLM, cached encoder frames."""
    from espnet_blsp.adapters.conv_glu_adapter import ConvGLUAdapter

    computed = args.speech_positions + args.suffix + args.target_len + 1  # + the end-of-turn token
    adapter = ConvGLUAdapter(args.encoder_width, 4096)
    adapter_params = sum(p.numel() for p in adapter.parameters())
    adapter_frame = adapter_bytes_per_frame(adapter, args.encoder_width)
    frames = args.speech_positions * 8
    print(
        f"bf16 LLM, SDPA; per utterance {frames} encoder frames (width {args.encoder_width}) -> "
        f"{args.speech_positions} speech positions, + {args.suffix} prompt tokens after the speech + "
        f"{args.target_len} target tokens + an end token = {computed} computed positions after a cached prefix of "
        f"{args.prefix}; "
        f"conv_glu adapter {adapter_params / 1e6:.1f} M params in fp32 with AdamW "
        f"({adapter_params * 16 / GiB:.2f} GiB), "
        f"its activations {adapter_frame * frames / MiB:.0f} MiB per utterance; + {args.overhead:g} GiB CUDA "
        "context and allocator slack. GiB; in brackets the smallest of 24/40/80 GB that fits with 5% to spare."
    )
    print(
        "| LLM | batch | weights | activations kept | with checkpointing | logits (fp32) | peak "
        "| with checkpointing |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, arch in LLMS.items():
        weights = arch["params"] * 2 + adapter_params * 16
        for rows in args.batch_sizes:
            labelled = rows * (args.target_len + 1)
            shape = (arch, rows, computed, args.prefix, labelled, 2)
            fixed = weights + args.overhead * GiB + rows * frames * adapter_frame
            layers = arch["layers"] * layer_bytes(arch, rows, computed, args.prefix, 2, False)
            layers_ckpt = arch["layers"] * layer_bytes(arch, rows, computed, args.prefix, 2, True)
            peak, peak_ckpt = fixed + peak_estimate(*shape, False), fixed + peak_estimate(*shape, True)
            print(
                f"| {name} | {rows} | {weights / GiB:.1f} | {layers / GiB:.1f} | {layers_ckpt / GiB:.2f} "
                f"| {head_bytes(arch, labelled) / GiB:.2f} | {peak / GiB:.1f} {fits(peak)} "
                f"| {peak_ckpt / GiB:.1f} {fits(peak_ckpt)} |"
            )


def fits(total: float) -> str:
    """The smallest GPU that holds ``total`` bytes with 5% to spare (a 24 GB
    card has 24 GiB)."""
    gpus = [g for g in (24, 40, 80) if total <= 0.95 * g * GiB]
    return f"({gpus[0]} GB)" if gpus else "(> 80 GB)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llm", help="HF causal LM dir")
    parser.add_argument("--dtype", default="float32", help="of the LLM (bf16 matmuls are ~440x slower on AVX2 CPUs)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--frames", type=int, default=175, help="encoder frames (50 Hz)")
    parser.add_argument("--target_len", type=int, default=None, help="target tokens (default 45; --table: 50)")
    parser.add_argument("--width", type=int, default=384, help="encoder width (tiny: 384)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--gradient_checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=["memory", "time"], help=argparse.SUPPRESS)
    parser.add_argument("--table", action="store_true", help="print the 7-8B estimate instead")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 4, 8, 16, 32, 64])
    parser.add_argument("--speech_positions", type=int, default=75, help="12 s at 50 Hz / 8")
    parser.add_argument("--prefix", type=int, default=30, help="--table: cached prompt tokens before the speech")
    parser.add_argument("--suffix", type=int, default=6, help="--table: prompt tokens after the speech")
    parser.add_argument("--encoder_width", type=int, default=768, help="--table: whisper-small's")
    parser.add_argument("--overhead", type=float, default=1.0, help="GiB: CUDA context, allocator slack")
    args = parser.parse_args()
    if args.table:
        args.target_len = args.target_len or 50
        table(args)
        return
    args.target_len = args.target_len or 45
    if not args.llm:
        parser.error("--llm is needed (or --table)")
    for k in ("batch_sizes", "speech_positions", "prefix", "suffix", "encoder_width", "overhead"):
        delattr(args, k)
    if args.child:
        child(args)
    else:
        measure(args)


if __name__ == "__main__":
    main()
