"""Whisper's transcripts (``bin/whisper_decode``) in float32 and bfloat16: time and WER.

    PYTHONPATH=. tools/venv/bin/python bench/whisper_decode_dtype.py \\
        --model egs2/mini_librispeech_synth/blsp/exp/models/whisper-tiny.en \\
        --data_dir egs2/mini_librispeech_synth/desta2/dump/raw/dev_synth_aug --utts 48

Decodes the first ``--utts`` utterances of the data dir's wav.scp with each
dtype, batches as the recipe makes them, one thread (as each recipe job), and
prints seconds, utterances/s and the WER against ``text`` (Whisper's English
normaliser), and how many transcripts the two dtypes agree on.
"""

import argparse
import time
from pathlib import Path

import jiwer
import torch
from transformers import AutoTokenizer, WhisperFeatureExtractor, WhisperForConditionalGeneration

from espnet_blsp.bin import whisper_decode
from espnet_blsp.evaluation.metrics import whisper_english_normalizer
from espnet_blsp.utils.kaldi_dir import read_kv


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data_dir", type=Path, required=True)
    parser.add_argument("--utts", type=int, default=48)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.num_threads)
    scp = Path("/tmp/whisper_decode_dtype.scp")
    scp.write_text("".join(f"{k} {v}\n" for k, v in read_kv(args.data_dir / "wav.scp")[: args.utts]))
    refs = dict(read_kv(args.data_dir / "text"))
    norm = whisper_english_normalizer()
    features = WhisperFeatureExtractor.from_pretrained(args.model)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    entries = whisper_decode.scan(scp)
    plan = whisper_decode.make_batches(entries, features.n_samples, args.batch_size)
    hyps = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = WhisperForConditionalGeneration.from_pretrained(args.model, dtype=dtype).eval()
        start, out = time.perf_counter(), {}
        for batch in plan:
            wavs = whisper_decode.read_batch(scp, batch)
            texts = whisper_decode.transcribe(model, features, tokenizer, wavs, {"max_new_tokens": 128})
            out.update((e[1], t) for e, t in zip(batch, texts))
        seconds = time.perf_counter() - start
        keys = sorted(out)
        wer = jiwer.wer([norm(refs[k]) for k in keys], [norm(out[k]) or "-" for k in keys])
        print(f"{str(dtype):15s} {seconds:6.1f} s  {len(keys) / seconds:5.2f} utt/s  WER {100 * wer:.1f} %")
        hyps[dtype] = out
    same = sum(hyps[torch.float32][k] == hyps[torch.bfloat16][k] for k in hyps[torch.float32])
    print(f"same transcript in both dtypes: {same} of {len(hyps[torch.float32])}")


if __name__ == "__main__":
    main()
