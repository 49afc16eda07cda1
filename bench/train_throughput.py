"""Training throughput of BLSP on this machine, against its matmul peak.

    python bench/train_throughput.py --llm egs2/mini_librispeech_synth/blsp/exp/models/smollm2-135m-instruct

Prints the measured bf16 and fp32 matmul peaks, then for each LLM dtype, with
and without the prompt-prefix KV cache, the adapter-training step rate and the
model FLOP/s it implies (frozen LLM: forward 2N + input-gradient backward 2N
per computed token; no weight gradients), as a fraction of that dtype's peak. Uses synthetic batches shaped like
the demo's (3.5 s of Whisper tiny frames, a 45-token continuation).
"""

import argparse
import time

import torch

from espnet_blsp.adapters.conv_glu_adapter import ConvGLUAdapter
from espnet_blsp.encoders.precomputed_encoder import PrecomputedEncoder
from espnet_blsp.llm.batch import assemble, token_logits
from espnet_blsp.llm.hf_causal_lm import HFCausalLM
from espnet_blsp.models.blsp import BLSPModel


def matmul_peak(dtype: torch.dtype, seconds: float = 3.0) -> float:
    """Best sustained FLOP/s of large square matmuls in ``dtype``."""
    best = 0.0
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        count, start = 0, time.time()
        while time.time() - start < seconds:
            a @ b
            count += 1
        best = max(best, 2 * n**3 * count / (time.time() - start))
    return best


def step_flops(model: BLSPModel, batch) -> float:
    """Model FLOPs of one training step of the frozen LLM (+ adapter, ~1%)."""
    llm = model.llm.hf_model()
    d, vocab = llm.config.hidden_size, llm.config.vocab_size
    body = sum(p.numel() for n, p in llm.named_parameters() if "embed" not in n and "lm_head" not in n)
    adapter = sum(p.numel() for p in model.adapter.parameters())
    tokens, labelled = batch["tokens"], batch["labelled"]
    # forward 2N + input-gradient backward 2N; the head only on labelled tokens.
    return 4 * body * tokens + 4 * vocab * d * labelled + 6 * adapter * batch["frames"]


def make_batch(batch_size: int, frames: int, target_len: int, width: int, vocab: int):
    g = torch.Generator().manual_seed(0)
    return {
        "speech": torch.randn(batch_size, frames, width, generator=g),
        "speech_lengths": torch.full((batch_size,), frames),
        "response": torch.randint(100, vocab - 100, (batch_size, target_len), generator=g),
        "response_lengths": torch.full((batch_size,), target_len),
    }


def uncached_step(model: BLSPModel, data) -> torch.Tensor:
    """The training loss without the prefix KV cache (the prompt recomputed)."""
    rows = [{"speech": s} for s in model.speech_slots(data["speech"], data["speech_lengths"])]
    logits, target, _ = token_logits(model.llm, assemble(model.llm, rows, model.prompt, data["response"].tolist()))
    return torch.nn.functional.cross_entropy(logits, target)


def bench(llm_dir: str, dtype: str, prefix_cache: bool, args) -> None:
    llm = HFCausalLM(llm_dir, dtype=dtype)
    adapter = ConvGLUAdapter(args.width, llm.hidden_size())
    model = BLSPModel(PrecomputedEncoder(args.width), adapter, llm).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    data = make_batch(args.batch_size, args.frames, args.target_len, args.width, llm.hf_model().config.vocab_size)
    slots = [{"speech": s} for s in model.speech_slots(data["speech"], data["speech_lengths"])]
    rows = assemble(model.llm, slots, model.prompt, data["response"].tolist())
    n_prefix = len(model.prompt.prefix)
    shape = {  # tokens the LLM actually runs on; a cached prefix is not recomputed
        "tokens": int(rows.mask.sum()) - (n_prefix * args.batch_size if prefix_cache else 0),
        "labelled": int((rows.labels != -100).sum()),
        "frames": args.batch_size * args.frames,
    }
    flops = step_flops(model, shape)

    def step():
        return model(**data)[0] if prefix_cache else uncached_step(model, data)

    for _ in range(2):  # warm-up
        step().backward()
    steps, start = 0, time.time()
    while time.time() - start < args.seconds:
        loss = step()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    elapsed = time.time() - start
    rate = flops * steps / elapsed
    peak = args.peaks[dtype]
    utts = args.batch_size * steps / elapsed
    print(
        f"LLM {dtype:8s} prefix cache {'on ' if prefix_cache else 'off'}: {steps / elapsed:5.2f} steps/s, "
        f"{utts:5.1f} utts/s, {shape['tokens'] * steps / elapsed:5.0f} computed tokens/s "
        f"({shape['tokens'] // args.batch_size}/utt; prefix of {n_prefix} {'cached' if prefix_cache else 'included'}), "
        f"{rate / 1e12:.3f} TFLOP/s = {100 * rate / peak:.0f}% of the {dtype} matmul peak"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llm", required=True, help="HF causal LM dir")
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--frames", type=int, default=175, help="encoder frames (50 Hz)")
    parser.add_argument("--target_len", type=int, default=45)
    parser.add_argument("--width", type=int, default=384, help="encoder width (tiny: 384)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    args.peaks = {}
    for dtype in ("bfloat16", "float32"):
        args.peaks[dtype] = matmul_peak(getattr(torch, dtype))
        print(f"matmul peak {dtype:8s}: {args.peaks[dtype] / 1e12:.3f} TFLOP/s (best of 1024/2048/4096^3)")
    for dtype in args.dtypes:
        for prefix_cache in (True, False):
            bench(args.llm, dtype, prefix_cache, args)


if __name__ == "__main__":
    main()
