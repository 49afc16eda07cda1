"""BLSPTask: where ESPnet's task framework meets the BLSP model."""

import argparse
import logging
from typing import Callable, Collection, Dict, List, Optional, Tuple

import numpy as np
import torch
from espnet2.tasks.abs_task import AbsTask, optim_classes
from espnet2.train.class_choices import ClassChoices
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.trainer import Trainer
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import str2bool
from typeguard import typechecked

from espnet_blsp.adapters.abs_adapter import AbsAdapter
from espnet_blsp.adapters.conv_glu_adapter import ConvGLUAdapter
from espnet_blsp.encoders.abs_encoder import AbsSpeechEncoder
from espnet_blsp.encoders.precomputed_encoder import PrecomputedEncoder
from espnet_blsp.encoders.whisper_encoder import WhisperSpeechEncoder
from espnet_blsp.llm.abs_llm import AbsLLM
from espnet_blsp.llm.hf_causal_lm import HFCausalLM
from espnet_blsp.models.blsp import BLSPModel
from espnet_blsp.utils.text import sentence_case

encoder_choices = ClassChoices(
    "encoder",
    classes=dict(whisper=WhisperSpeechEncoder, precomputed=PrecomputedEncoder),
    type_check=AbsSpeechEncoder,
    default="whisper",
)
# "--adapter" is taken by ESPnet's LoRA/Houlsby fine-tuning options.
adapter_choices = ClassChoices(
    "speech_adapter",
    classes=dict(conv_glu=ConvGLUAdapter),
    type_check=AbsAdapter,
    default="conv_glu",
)
llm_choices = ClassChoices(
    "llm",
    classes=dict(hf_causal_lm=HFCausalLM),
    type_check=AbsLLM,
    default="hf_causal_lm",
)


class ResponseTokenizer:
    """Preprocess: the target response (and transcript) -> the LLM's token ids.

    Args:
        tokenizer_path: Where the LLM's tokenizer lives (its checkpoint).
        gguf_file: GGUF file name, when the LLM is loaded from one.
    """

    def __init__(self, tokenizer_path: str, gguf_file: Optional[str] = None):
        self.tokenizer_path = tokenizer_path
        self.gguf_file = gguf_file
        self._tokenizer = None  # loaded lazily, once per data-loader worker

    def __call__(self, uid: str, data: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        for name in ("text", "transcript"):
            if name in data:
                text = str(data[name]).strip()
                if not text:
                    raise ValueError(f"utterance {uid}: empty {name}")
                if name == "transcript":
                    text = sentence_case(text)  # as the LLM read it in step 1
                ids = self.tokenizer(text, add_special_tokens=False).input_ids
                data[name] = np.asarray(ids, dtype=np.int64)
        return data

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            extra = {"gguf_file": self.gguf_file} if self.gguf_file else {}
            self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path, **extra)
        return self._tokenizer


class BLSPTask(AbsTask):
    """Trains a modality adapter between a frozen speech encoder and LLM."""

    num_optimizers: int = 1
    class_choices_list = [encoder_choices, adapter_choices, llm_choices]
    trainer = Trainer

    @classmethod
    @typechecked
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        group.add_argument(
            "--model_conf",
            action=NestedDictAction,
            default=get_default_kwargs(BLSPModel),
            help="Keyword arguments of BLSPModel (instruction, ...)",
        )
        group = parser.add_argument_group(description="Preprocess related")
        group.add_argument(
            "--use_preprocessor",
            type=str2bool,
            default=True,
            help="Tokenize the target text with the LLM's tokenizer",
        )
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    @classmethod
    @typechecked
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]],
        Tuple[List[str], Dict[str, torch.Tensor]],
    ]:
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=-1)

    @classmethod
    @typechecked
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.array]], Dict[str, np.ndarray]]]:
        if not args.use_preprocessor:
            return None
        return ResponseTokenizer(
            args.llm_conf["model_name_or_path"], args.llm_conf.get("gguf_file")
        )

    @classmethod
    def required_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return ("speech",) if inference else ("speech", "text")

    @classmethod
    def optional_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        # The transcript, for the auxiliary CTC and KD losses (model_conf.ctc_weight, kd_weight).
        return ("transcript",)

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> BLSPModel:
        encoder = encoder_choices.get_class(args.encoder)(**args.encoder_conf)
        llm = llm_choices.get_class(args.llm)(**args.llm_conf)
        adapter_conf = dict(args.speech_adapter_conf)
        if adapter_conf.get("output_scale") == "llm":
            # Start speech embeddings at the scale of the LLM's token embeddings.
            adapter_conf["output_scale"] = llm.embedding_std()
        adapter = adapter_choices.get_class(args.speech_adapter)(
            input_size=encoder.output_size(),
            output_size=llm.hidden_size(),
            **adapter_conf,
        )
        model = BLSPModel(encoder=encoder, adapter=adapter, llm=llm, **args.model_conf)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logging.info(f"Trainable parameters: {trainable:,} (the adapter and its CTC head)")
        return model

    @classmethod
    def build_optimizers(
        cls, args: argparse.Namespace, model: torch.nn.Module
    ) -> List[torch.optim.Optimizer]:
        # Only the adapter reaches the optimizer: frozen weights need no state.
        optim_class = optim_classes.get(args.optim)
        if optim_class is None:
            raise ValueError(f"--optim must be one of {list(optim_classes)}: {args.optim}")
        params = [p for p in model.parameters() if p.requires_grad]
        return [optim_class(params, **args.optim_conf)]
