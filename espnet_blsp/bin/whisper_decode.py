"""Whisper's own transcripts of every utterance of a wav.scp.

They serve the ASR half of the Whisper+LLM cascade (test sets) and DeSTA2,
whose LLM reads Whisper's transcript after the speech embeddings, so every set
(train, dev, test) needs one::

    python -m espnet_blsp.bin.whisper_decode --model exp/whisper \\
        --wav_scp dump/raw/train/wav.scp --output dump/raw/train/whisper_text

Memory-bounded (each file is checked and measured first, then read one batch
at a time), batched over length-sorted utterances, longest first, and
resumable: a restarted job skips the utterances already written, batching
the rest as an uninterrupted run would (and starts over if the model or input
changed). Audio over 30 s goes through transformers' long-form sequential
decoding, not cut at 30 s.
"""

import argparse
import logging
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from espnet_blsp.bin.format_data import num_samples
from espnet_blsp.utils.audio import length_sorted_batches, load_speech
from espnet_blsp.utils.cli import add_num_threads, setup
from espnet_blsp.utils.dtype import resolve_dtype
from espnet_blsp.utils.kaldi_dir import DataDirError, read_kv
from espnet_blsp.utils.progress import Progress
from espnet_blsp.utils.resumable import ResumableWriter, batches_to_do
from espnet_blsp.utils.stamp import beside, reset_if_stale, stamp_of

BLANK = "[BLANK_AUDIO]"  # Whisper's own marker; Kaldi readers reject an empty value
RATE = 16000
Entry = Tuple[int, str, str, int]  # wav.scp line, utterance id, path, samples


def scan(wav_scp: Path) -> List[Entry]:
    """The wav.scp entries and their lengths, every file decoded once.

    Raises:
        DataDirError: Naming the file, line and utterance of an unreadable,
            non-16 kHz or non-mono recording (``format_data.num_samples``'s
            checks), before any decoding starts.
    """
    pairs = read_kv(wav_scp)
    return [(lineno, key, path, num_samples(wav_scp, lineno, key, path)) for lineno, (key, path) in enumerate(pairs, 1)]


def make_batches(entries: List[Entry], n_samples: int, batch_size: int) -> List[List[Entry]]:
    """Batches, longest first: audio over ``n_samples`` (30 s), then the rest.

    Long audio goes one utterance at a time, as its features grow with its
    length; the rest in length-sorted batches of ``batch_size``.
    """
    long = sorted((e for e in entries if e[3] > n_samples), key=lambda e: -e[3])
    short = [e for e in entries if e[3] <= n_samples]
    sizes = [e[3] for e in short]
    return [[e] for e in long] + [
        [short[i] for i in b] for b in length_sorted_batches(short, sizes, batch_size)
    ]


def transcribe(model, feature_extractor, tokenizer, wavs, generate_kwargs) -> List[str]:
    """Transcripts of a batch of waveforms: all up to 30 s, or all longer."""
    if max(len(w) for w in wavs) > feature_extractor.n_samples:
        # Every frame, not the first 30 s: generate() then slides its 30 s
        # window along them, seeking by the predicted timestamps (transformers'
        # long-form algorithm); the mask marks where each utterance ends.
        feats = feature_extractor(
            wavs, sampling_rate=RATE, truncation=False, padding="longest",
            return_attention_mask=True, return_tensors="pt",
        )
        extra = {"return_timestamps": True, "attention_mask": feats.attention_mask.to(model.device)}
    else:
        feats = feature_extractor(wavs, sampling_rate=RATE, return_tensors="pt")
        extra = {}
    with torch.no_grad():
        ids = model.generate(feats.input_features.to(model.device, model.dtype), **extra, **generate_kwargs)
    return tokenizer.batch_decode(ids, skip_special_tokens=True)


def read_batch(wav_scp: Path, entries: List[Entry]) -> List[np.ndarray]:
    """The waveforms of ``entries``; a failure names the wav.scp line."""
    wavs = []
    for lineno, key, path, _ in entries:
        try:
            wavs.append(load_speech(path, "sound"))
        except Exception as e:
            raise DataDirError(f"{wav_scp}:{lineno}: utterance {key}: {e}") from e
    return wavs


def main(cmd: Optional[List[str]] = None):
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="HF Whisper (hub name or dir)")
    parser.add_argument("--wav_scp", type=Path, required=True, help="16 kHz mono audio files")
    parser.add_argument("--output", type=Path, required=True, help="uttid -> transcript")
    parser.add_argument("--batch_size", type=int, default=8, help="for audio up to 30 s")
    parser.add_argument("--max_new_tokens", type=int, default=128, help="per 30 s window")
    parser.add_argument("--language", help="e.g. en (multilingual models; default: detect)")
    parser.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype", default="auto",
        help="float32, bfloat16 or auto: bfloat16 where the hardware computes it natively (2.3x faster "
        "on an AMX CPU; WER on the DeSTA2 demo's sets moved both ways: bench/README.md)",
    )
    add_num_threads(parser)
    args = parser.parse_args(cmd)
    setup(args)
    from transformers import AutoTokenizer, WhisperFeatureExtractor, WhisperForConditionalGeneration

    feature_extractor = WhisperFeatureExtractor.from_pretrained(args.model)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = WhisperForConditionalGeneration.from_pretrained(args.model, dtype=resolve_dtype(args.dtype))
    model = model.to(args.device).eval()
    # Whisper's decoder holds max_target_positions ids, its start tokens included:
    # half of them is its own default limit (224 of 448).
    limit = model.config.max_target_positions // 2
    if args.max_new_tokens > limit:
        logging.warning(f"--max_new_tokens {args.max_new_tokens} > {limit} for this Whisper; using {limit}")
    generate_kwargs = {"max_new_tokens": min(args.max_new_tokens, limit)}
    # English-only (.en) models raise on any language or task argument.
    if getattr(model.generation_config, "is_multilingual", False):
        generate_kwargs.update(language=args.language, task=args.task)
    elif args.language or args.task != "transcribe":
        logging.warning(f"{args.model} is not multilingual: --language and --task ignored")

    reset_if_stale(beside(args.output), stamp_of(vars(args), ignore=("output", "num_threads")), [args.output])
    with ResumableWriter(args.output) as out:
        entries = scan(args.wav_scp)
        todo = sum(e[1] not in out.done for e in entries)
        logging.info(f"{len(entries) - todo} utterances already in {args.output}, {todo} to decode")
        progress, start, seconds, blank = Progress(todo), time.time(), 0.0, 0
        plan = make_batches(entries, feature_extractor.n_samples, args.batch_size)
        for batch, missing in batches_to_do(plan, lambda e: e[1] in out.done):
            wavs = read_batch(args.wav_scp, batch)
            texts = transcribe(model, feature_extractor, tokenizer, wavs, generate_kwargs)
            pairs = []
            for k in missing:
                key, text = batch[k][1], texts[k]
                if not text.split():  # silence or noise: Whisper said nothing
                    logging.warning(f"{key}: empty transcript, writing {BLANK}")
                    text, blank = BLANK, blank + 1
                pairs.append((key, text))
            out.write_batch(pairs)
            seconds += sum(batch[k][3] for k in missing) / RATE
            progress.update(len(missing), f"{seconds / max(time.time() - start, 1e-9):.1f} audio s/s")
    if blank:
        logging.warning(f"{blank} of {todo} utterances had an empty transcript: {BLANK}")
    logging.info(f"{args.output}: {todo} utterances decoded")


if __name__ == "__main__":
    main()
