"""Whisper's own transcripts: the ASR half of the Whisper+LLM cascade.

``python -m espnet_blsp.bin.whisper_decode --model exp/whisper \\
    --wav_scp dump/raw/test/wav.scp --output exp/eval/test/cascade/asr_text``
"""

import argparse
from pathlib import Path
from typing import List, Optional

import torch

from espnet_blsp.utils.audio import length_sorted_batches, load_speech
from espnet_blsp.utils.cli import setup
from espnet_blsp.utils.kaldi_dir import read_kv
from espnet_blsp.utils.progress import Progress
from espnet_blsp.utils.resumable import ResumableWriter


def main(cmd: Optional[List[str]] = None):
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="HF Whisper (hub name or dir)")
    parser.add_argument("--wav_scp", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=128)
    args = parser.parse_args(cmd)
    setup(args)
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(args.model)
    model = WhisperForConditionalGeneration.from_pretrained(args.model).eval()
    with ResumableWriter(args.output) as out:
        items = [(k, v) for k, v in read_kv(args.wav_scp) if k not in out.done]
        wavs = [load_speech(v, "sound") for _, v in items]
        progress = Progress(len(items))
        for batch in length_sorted_batches(
            [k for k, _ in items], [len(w) for w in wavs], args.batch_size
        ):
            feats = processor.feature_extractor(
                [wavs[i] for i in batch], sampling_rate=16000, return_tensors="pt"
            ).input_features
            with torch.no_grad():
                ids = model.generate(feats, max_new_tokens=args.max_new_tokens)
            texts = processor.batch_decode(ids, skip_special_tokens=True)
            out.write_batch([(items[i][0], t.strip()) for i, t in zip(batch, texts)])
            progress.update(len(batch))


if __name__ == "__main__":
    main()
