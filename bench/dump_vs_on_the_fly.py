"""Encoder dump or encoding on the fly: disk against compute, measured here.

    python bench/dump_vs_on_the_fly.py --recipe egs2/mini_librispeech_synth/blsp --num_threads 2

Needs the BLSP demo's data, dumps, models and trained experiment (``make demo``).
Prints, in order:

1. Precision of float16 storage (``dump_encoder --feats_dtype float16``) on
   the demo's dumps: the frames' error, whether bf16-computed values survive
   float16, and the trained demo model's continuation loss on test_synth with
   float32, float16 and bf16-rounded frames.
2. The demo's training step with cached frames against encoding on the fly
   (the same batches; wav reading, Whisper tiny.en, the step), and per epoch.
3. A Whisper-small-sized encoder (random weights, d_model 768, 12 layers:
   the compute of openai/whisper-small's) on 12-s utterances with 1 thread (a
   stage-4 job) and ``--num_threads``: audio seconds per second, FLOP/s.
4. LibriSpeech 960 h with Whisper-small, extrapolated: the dump's size, the
   stage-4 CPU time, the per-epoch time of reading the dump, and the compute
   on-the-fly encoding adds to a 7B-LLM training epoch (assumptions printed).
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import kaldiio
import numpy as np
import torch

from espnet_blsp.bin.blsp_inference import Speech2Response
from espnet_blsp.utils.audio import length_sorted_batches, load_speech, pad_batch
from espnet_blsp.utils.dump_size import ark_entry_bytes, human, whisper_frames
from espnet_blsp.utils.kaldi_dir import read_dict, read_kv

# LibriSpeech 960 h (train-clean-100 + train-clean-360 + train-other-500).
LIBRISPEECH_UTTS = 281241
LIBRISPEECH_HOURS = 960.9


def encoder_flops_per_second(d_model: int, layers: int, ffn: int, mels: int = 80, seconds: float = 12.0) -> float:
    """Whisper encoder FLOPs per second of audio for ``seconds``-long utterances
    (50 frames/s; projections, FFN, attention over the utterance, the convs)."""
    frames = 50 * seconds
    per_frame = layers * (4 * d_model**2 + 2 * d_model * ffn + 2 * frames * d_model)
    per_frame += 2 * 3 * mels * d_model + 3 * d_model * d_model  # conv1 (2 mel frames), conv2
    return 2 * per_frame * 50


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def precision(recipe: Path, s2r: Speech2Response, n_test: int) -> None:
    print("== 1. float16 storage of the frames")
    for root in ("dump/encoder", "dump/encoder_layers0-1-2-3"):
        scp = recipe / root / "train_synth/feats.scp"
        if not scp.exists():
            continue
        feats = kaldiio.load_scp(str(scp))
        keys = sorted(feats.keys())[::10]
        x = np.concatenate([feats[k] for k in keys]).astype(np.float32)
        h = x.astype(np.float16).astype(np.float32)
        b = torch.from_numpy(x).bfloat16().float().numpy()
        bh = b.astype(np.float16).astype(np.float32)
        rms = float(np.sqrt((x**2).mean()))
        big = np.abs(x) >= 2**-14
        print(
            f"{root}: {x.shape[0]} frames x {x.shape[1]}, max |x| {np.abs(x).max():.3g} (float16 max 65504); "
            f"float16 error: RMS {np.sqrt(((h - x) ** 2).mean()) / rms:.2e} of the frames' RMS, "
            f"max relative {(np.abs(h - x)[big] / np.abs(x)[big]).max():.2e} (|x| >= 2^-14); "
            f"bf16 rounding alone: RMS {np.sqrt(((b - x) ** 2).mean()) / rms:.2e}; "
            f"bf16 values float16 keeps exactly: {100 * (bh == b).mean():.4f} % (others: |error| <= {np.abs(bh - b).max():.1e})"
        )
    test = recipe / "dump/raw/test_synth"
    scp = read_dict(recipe / "dump/encoder/test_synth/feats.scp")
    refs = read_kv(test / "continuation")[:n_test]
    frames = [kaldiio.load_mat(scp[k]).astype(np.float32) for k, _ in refs]
    losses = {}
    for name, cast in [
        ("float32", lambda f: f),
        ("float16", lambda f: f.astype(np.float16).astype(np.float32)),
        ("bf16-rounded", lambda f: torch.from_numpy(f).bfloat16().float().numpy()),
    ]:
        nll = tokens = 0.0
        for i in range(0, len(refs), 16):
            scores = s2r.response_nll([cast(f) for f in frames[i : i + 16]], [r for _, r in refs[i : i + 16]], "continuation")
            nll += sum(s for s, _ in scores)
            tokens += sum(n for _, n in scores)
        losses[name] = nll / tokens
    print(
        f"trained demo model, continuation loss on {len(refs)} test_synth utterances (nats/token): "
        + ", ".join(f"{k} frames {v:.5f}" for k, v in losses.items())
        + f"; float16 - float32: {losses['float16'] - losses['float32']:+.1e}"
    )


def step_cost(recipe: Path, s2r: Speech2Response, args) -> None:
    print("== 2. demo training step: cached frames vs encoding on the fly")
    raw = recipe / "dump/raw/train_synth"
    wavs = read_dict(raw / "wav.scp")
    feats = read_dict(recipe / "dump/encoder/train_synth/feats.scp")
    conts = dict(read_kv(raw / "continuation"))
    samples = {k: int(v) for k, v in read_kv(raw / "utt2num_samples")}
    keys = [k for k in sorted(conts) if k in feats]
    rng = np.random.default_rng(0)
    keys = sorted(rng.choice(keys, size=args.batch_size * args.steps, replace=False).tolist())
    batches = [[keys[i] for i in b] for b in length_sorted_batches(keys, [samples[k] for k in keys], args.batch_size)]
    model, tok = s2r.model, s2r.model.llm.tokenizer
    model.train()
    model.adapter.requires_grad_(True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    encoder = s2r.waveform_encoder

    def step(x, lengths, batch):
        ids = [tok(conts[k], add_special_tokens=False).input_ids + [tok.eos_token_id] for k in batch]
        response, response_lengths = pad_batch([np.array(i) for i in ids])
        loss = model(x, lengths, response=response.long(), response_lengths=response_lengths)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()

    t = {"read frames": 0.0, "read wav": 0.0, "encode": 0.0, "step": 0.0}
    step(*pad_batch([load_speech(feats[k], "kaldi_ark") for k in batches[0]]), batches[0])  # warm-up
    for batch in batches:
        # Both modes give the step the same frames: the step is timed once,
        # what differs (reading frames, or reading and encoding the audio) apart.
        (x, lengths), s = timed(lambda: pad_batch([load_speech(feats[k], "kaldi_ark") for k in batch]))
        t["read frames"] += s
        (w, wl), s = timed(lambda: pad_batch([load_speech(wavs[k], "sound") for k in batch]))
        t["read wav"] += s
        _, s = timed(encoder, w, wl)
        t["encode"] += s
        _, s = timed(step, x, lengths, batch)
        t["step"] += s
    audio = sum(samples[k] for k in keys) / 16000
    n_epoch = len(read_kv(raw / "utt2num_samples"))
    dump_s = t["read frames"] + t["step"]
    fly_s = t["read wav"] + t["encode"] + t["step"]
    per_epoch = n_epoch / len(keys)
    print(
        f"{len(keys)} utterances ({audio:.0f} s of audio) in {len(batches)} batches of {args.batch_size}: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in t.items())
    )
    print(
        f"per epoch of train_synth ({n_epoch} utterances): cached frames {dump_s * per_epoch:.0f} s, "
        f"on the fly {fly_s * per_epoch:.0f} s ({100 * (fly_s - dump_s) / dump_s:+.1f} %); "
        f"Whisper tiny.en encodes {audio / t['encode']:.0f} s of audio per second"
    )


def whisper_small_rate(args) -> dict:
    print("== 3. a Whisper-small-sized encoder (random weights) on this CPU")
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    from espnet_blsp.encoders.whisper_encoder import WhisperSpeechEncoder

    config = WhisperConfig(
        d_model=768, encoder_layers=12, encoder_attention_heads=12, encoder_ffn_dim=3072,
        decoder_layers=1, decoder_attention_heads=12, decoder_ffn_dim=3072, num_mel_bins=80,
    )
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        WhisperModel(config).save_pretrained(tmp)
        WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp)
        encoder = WhisperSpeechEncoder(tmp)
        rng = np.random.default_rng(0)
        speech = torch.from_numpy(rng.normal(0, 0.1, (args.small_batch, 12 * 16000)).astype(np.float32))
        lengths = torch.full((args.small_batch,), 12 * 16000)
        flops = encoder_flops_per_second(768, 12, 3072) * 12 * args.small_batch
        for threads in sorted({1, args.num_threads}):
            torch.set_num_threads(threads)
            encoder(speech[:1], lengths[:1])  # warm-up
            mel_s = min(
                timed(lambda: encoder.feature_extractor(
                    list(speech.numpy()), sampling_rate=16000, padding="longest", return_tensors="pt"))[1]
                for _ in range(2)
            )
            s = min(timed(encoder, speech, lengths)[1] for _ in range(2))  # the better of 2: others share the CPU
            rates[threads] = 12 * args.small_batch / s
            print(
                f"{threads} thread(s): {args.small_batch} x 12 s in {s:.1f} s = {rates[threads]:.1f} s of audio per second "
                f"({flops / s / 1e9:.0f} GFLOP/s); its log-mel features: {1000 * mel_s / (12 * args.small_batch):.1f} ms "
                "per second of audio"
            )
    torch.set_num_threads(args.num_threads)
    return rates


def extrapolate(rates: dict, args) -> None:
    print("== 4. LibriSpeech 960 h, Whisper-small (768 wide, 1 layer dumped), extrapolated")
    seconds = LIBRISPEECH_HOURS * 3600
    mean = seconds / LIBRISPEECH_UTTS
    frames = whisper_frames(int(mean * 16000))
    for dtype in ("float32", "float16"):
        size = LIBRISPEECH_UTTS * ark_entry_bytes("1001-134707-0000", frames, 768, dtype)
        read = size / (args.read_mb_s * 1e6)
        print(f"dump {dtype}: {human(size)}; reading it once per epoch at {args.read_mb_s:.0f} MB/s: {read / 3600:.1f} h")
    stage4 = seconds / rates[1] / args.nj
    print(
        f"stage 4 (CPU, {args.nj} jobs of 1 thread, {rates[1]:.1f} s of audio per second each, as measured above): "
        f"{stage4 / 3600:.1f} h"
    )
    enc = encoder_flops_per_second(768, 12, 3072, seconds=mean) * seconds
    speech_positions = 50 * mean / 8  # conv_glu: 3 stride-2 layers
    tokens = args.prompt_tokens + speech_positions + args.target_tokens
    llm = 4 * args.llm_params * tokens * LIBRISPEECH_UTTS  # frozen LLM: forward 2N + input-gradient backward 2N
    gpu = args.gpu_tflops * 1e12
    print(
        f"one epoch on a GPU at {args.gpu_tflops:.0f} TFLOP/s (assumed): the LLM {llm / gpu / 3600:.1f} h "
        f"({args.llm_params / 1e9:.1f}B parameters, {tokens:.0f} tokens per utterance: {args.prompt_tokens} prompt + "
        f"{speech_positions:.0f} speech + {args.target_tokens} target); encoding on the fly adds "
        f"{enc / gpu / 60:.0f} min ({100 * enc / llm:.1f} %)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", type=Path, default=Path("egs2/mini_librispeech_synth/blsp"))
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="batches per mode")
    parser.add_argument("--n_test", type=int, default=135, help="test utterances for the loss comparison")
    parser.add_argument("--small_batch", type=int, default=4, help="12-s utterances for the Whisper-small timing")
    parser.add_argument("--nj", type=int, default=8, help="stage-4 jobs (LibriSpeech run.sh: 8)")
    parser.add_argument("--read_mb_s", type=float, default=500.0, help="assumed dump read bandwidth")
    parser.add_argument("--gpu_tflops", type=float, default=125.0, help="assumed sustained GPU rate (A100 bf16 at 40 %%)")
    parser.add_argument("--llm_params", type=float, default=6.5e9, help="non-embedding LLM parameters (Llama-2-7B)")
    parser.add_argument("--prompt_tokens", type=int, default=60)
    parser.add_argument("--target_tokens", type=int, default=55, help="a continuation of < 40 words")
    parser.add_argument("--parts", default="1234", help="which parts to run (3 runs with 4)")
    args = parser.parse_args()
    torch.set_num_threads(args.num_threads)
    print(f"torch {torch.__version__}, {args.num_threads} threads; load average {os.getloadavg()[0]:.1f}")
    if "1" in args.parts or "2" in args.parts:
        exp = args.recipe / "exp/blsp_train_blsp"
        s2r = Speech2Response(exp / "config.yaml", exp / "valid.loss.ave.pth")
    if "1" in args.parts:
        precision(args.recipe, s2r, args.n_test)
    if "2" in args.parts:
        step_cost(args.recipe, s2r, args)
    if "3" in args.parts or "4" in args.parts:
        rates = whisper_small_rate(args)
    if "4" in args.parts:
        extrapolate(rates, args)


if __name__ == "__main__":
    main()
