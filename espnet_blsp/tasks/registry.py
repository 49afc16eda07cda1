"""The model registry: which encoder, adapter, LLM and model class a config
names, and how a model is built from a config.

Light on purpose: it imports none of ESPnet's task and trainer modules (their
imports take ~10 s, g2p_en and wav2vec2 included), so jobs that only build a
model or an encoder (dump_encoder, evaluate, Speech2Response) start fast.
``BLSPTask`` (tasks/blsp.py) trains with the same registry.
"""

import argparse
import logging
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import torch
import yaml
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices
from typeguard import typechecked

from espnet_blsp.adapters.abs_adapter import AbsAdapter
from espnet_blsp.adapters.cif_adapter import CIFAdapter
from espnet_blsp.adapters.conv_glu_adapter import ConvGLUAdapter
from espnet_blsp.adapters.qformer_adapter import QFormerAdapter
from espnet_blsp.adapters.stack_swiglu_adapter import StackSwiGLUAdapter
from espnet_blsp.encoders.abs_encoder import AbsSpeechEncoder
from espnet_blsp.encoders.precomputed_encoder import PrecomputedEncoder
from espnet_blsp.encoders.whisper_encoder import WhisperSpeechEncoder
from espnet_blsp.llm.abs_llm import AbsLLM
from espnet_blsp.llm.hf_causal_lm import HFCausalLM
from espnet_blsp.models.blsp import BLSPModel
from espnet_blsp.models.desta2 import DeSTA2Model

model_choices = ClassChoices(
    "model",
    classes=dict(blsp=BLSPModel, desta2=DeSTA2Model),
    type_check=AbsESPnetModel,
    default="blsp",
)
encoder_choices = ClassChoices(
    "encoder",
    classes=dict(whisper=WhisperSpeechEncoder, precomputed=PrecomputedEncoder),
    type_check=AbsSpeechEncoder,
    default="whisper",
)
# "--adapter" is taken by ESPnet's LoRA/Houlsby fine-tuning options.
adapter_choices = ClassChoices(
    "speech_adapter",
    classes=dict(
        conv_glu=ConvGLUAdapter,
        stack_swiglu=StackSwiGLUAdapter,
        qformer=QFormerAdapter,
        cif=CIFAdapter,
    ),
    type_check=AbsAdapter,
    default="conv_glu",
)
llm_choices = ClassChoices(
    "llm",
    classes=dict(hf_causal_lm=HFCausalLM),
    type_check=AbsLLM,
    default="hf_causal_lm",
)


@typechecked
def build_model(args: argparse.Namespace) -> AbsESPnetModel:
    """The model a training config describes (its paths made absolute)."""
    resolve_paths(args)
    encoder = encoder_choices.get_class(args.encoder)(**args.encoder_conf)
    llm = llm_choices.get_class(args.llm)(**args.llm_conf)
    adapter_conf = dict(args.speech_adapter_conf)
    if adapter_conf.get("output_scale") == "llm":
        # Start speech embeddings at the scale of the LLM's token embeddings.
        adapter_conf["output_scale"] = llm.embedding_std()
    adapter = adapter_choices.get_class(args.speech_adapter)(
        input_size=encoder.output_size(),
        output_size=llm.hidden_size(),
        input_layers=encoder.num_layers(),
        **adapter_conf,
    )
    model_class = model_choices.get_class(getattr(args, "model", None) or "blsp")
    model = model_class(encoder=encoder, adapter=adapter, llm=llm, **args.model_conf)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logging.info(f"Trainable parameters: {trainable:,}")
    return model


@typechecked
def build_model_from_config(
    config_file: Union[Path, str], device: str = "cpu"
) -> Tuple[AbsESPnetModel, argparse.Namespace]:
    """The model of a training run's ``config.yaml``, with its initial
    weights (what ``AbsTask.build_model_from_file`` does without a model file,
    without importing ESPnet's task modules)."""
    with open(config_file, encoding="utf-8") as f:
        args = argparse.Namespace(**yaml.safe_load(f))
    if getattr(args, "use_adapter", False):
        raise ValueError(f"{config_file}: ESPnet's --use_adapter is not supported; use llm_conf.lora")
    return build_model(args).to(device), args


def resolve_paths(args: argparse.Namespace) -> None:
    """Makes the config self-contained and loadable from any directory.

    Local model paths become absolute (a hub name stays as it is), and a
    precomputed encoder's ``dumped_from`` given as the path of a dump's
    ``encoder.yaml`` is replaced by its content. ESPnet writes config.yaml
    after building the model, so the saved config has the resolved values.
    """
    absolute_model_path(args.llm_conf, "llm_conf")
    absolute_model_path(args.encoder_conf, "encoder_conf")
    source = args.encoder_conf.get("dumped_from")
    if args.encoder == "precomputed" and isinstance(source, str):
        asked = args.encoder_conf
        args.encoder_conf = read_dump_record(Path(source))
        made = args.encoder_conf["dumped_from"]["encoder_conf"]
        for key, value in asked.items():
            # Paths and compute dtype may differ; what the frames hold may not.
            if key not in ("dumped_from", "model_name_or_path", "dtype") and made.get(key) != value:
                raise ValueError(f"encoder_conf.{key}={value!r}, but {source} was dumped with {made.get(key)!r}")


def absolute_model_path(conf: Dict[str, Any], name: str) -> None:
    """Makes ``conf["model_name_or_path"]`` absolute if it is a local path (a
    hub name stays), naming ``name`` when a path does not exist."""
    path = conf.get("model_name_or_path")
    if path and Path(path).exists():
        conf["model_name_or_path"] = str(Path(path).resolve())
    elif path and path.startswith(("/", ".", "~")):  # a path, not a hub name
        raise FileNotFoundError(f"{name}.model_name_or_path: {path} does not exist")


def read_dump_record(path: Path) -> Dict[str, Any]:
    """A precomputed encoder's settings from a dump's ``encoder.yaml``."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such encoder dump record (written by espnet_blsp.bin.dump_encoder)")
    record = yaml.safe_load(path.read_text())
    return {
        "output_size": record["output_size"],
        "num_layers": record["num_layers"],
        "dumped_from": {"encoder": record["encoder"], "encoder_conf": record["encoder_conf"]},
    }


def build_encoder(spec: Dict[str, Any]) -> AbsSpeechEncoder:
    """An encoder from ``{"encoder": name, "encoder_conf": {...}}``."""
    return encoder_choices.get_class(spec["encoder"])(**spec["encoder_conf"])
