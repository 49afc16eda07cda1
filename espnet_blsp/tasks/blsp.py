"""BLSPTask: where ESPnet's task framework meets our speech-LLM models."""

import argparse
import inspect
from typing import Any, Callable, Collection, Dict, List, Optional, Tuple

import numpy as np
import torch
from espnet2.tasks.abs_task import AbsTask, optim_classes
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.trainer import Trainer
from espnet2.utils.types import str2bool
from typeguard import typechecked

from espnet_blsp.llm.prompt import TEXT_SLOTS
from espnet_blsp.llm.task_mix import build_tasks, choose_task, text_leads
from espnet_blsp.tasks.registry import (
    adapter_choices,
    build_model,
    encoder_choices,
    llm_choices,
    model_choices,
)
from espnet_blsp.utils.text import sentence_case


class PromptPreprocessor:
    """Preprocess: picks each utterance's task and tokenizes its texts once.

    The task's target text (``response``, or e.g. the ``transcript`` for
    transcription) becomes ``response`` ids and its index ``task``; text slot
    data (``transcript``, ``asr_hyp``) become ids tokenized as the prompt
    reads them (with the slot's lead, see ``llm.prompt.Prompt``).

    Args:
        tokenizer_path: Where the LLM's tokenizer lives (its checkpoint).
        gguf_file: GGUF file name, when the LLM is loaded from one.
        model_conf: The model's config (its instruction or tasks).
        train: Draw tasks at random (else by utterance id).
    """

    def __init__(
        self, tokenizer_path: str, gguf_file: Optional[str], model_conf: Dict[str, Any], train: bool
    ):
        self.tokenizer_path = tokenizer_path
        self.gguf_file = gguf_file
        self.model_conf = model_conf
        self.train = train
        self._tokenizer = None  # loaded lazily, once per data-loader worker
        self._tasks = None

    def __call__(self, uid: str, data: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        tasks, leads = self.tasks
        texts = {name: self.text(uid, data, name) for name in ("response",) + TEXT_SLOTS if name in data}
        for name in TEXT_SLOTS:
            if name in texts:
                data[name] = self.ids(leads[name] + texts[name])
        k = choose_task(tasks, uid, self.train)
        target = tasks[k].target
        if target in texts:
            data["response"] = self.ids(texts[target])
        elif self.needs_target:
            raise ValueError(f"utterance {uid}: no {target!r} data, the target of task {k}")
        if len(tasks) > 1:
            data["task"] = np.asarray([k], dtype=np.int64)
        return data

    @property
    def needs_target(self) -> bool:
        """Whether the model's losses read the LLM's answer (not CTC alone)."""
        return self.model_conf.get("ctc_weight", 0.0) < 1

    @staticmethod
    def text(uid: str, data: Dict[str, np.ndarray], name: str) -> str:
        text = str(data[name]).strip()
        if not text:
            raise ValueError(f"utterance {uid}: empty {name}")
        # Transcripts as the LLM read them in step 1.
        return sentence_case(text) if name == "transcript" else text

    def ids(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer(text, add_special_tokens=False).input_ids, dtype=np.int64)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            extra = {"gguf_file": self.gguf_file} if self.gguf_file else {}
            self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path, **extra)
        return self._tokenizer

    @property
    def tasks(self):
        """The model's tasks and the lead of each text slot."""
        if self._tasks is None:
            conf = self.model_conf
            tasks = build_tasks(
                self.tokenizer, conf.get("instruction"), conf.get("tasks"), conf.get("use_chat_template", True)
            )
            self._tasks = tasks, text_leads(tasks)
        return self._tasks


class BLSPTask(AbsTask):
    """Trains a modality adapter (and optionally LoRA) between a frozen speech
    encoder and an LLM."""

    num_optimizers: int = 1
    class_choices_list = [model_choices, encoder_choices, adapter_choices, llm_choices]
    trainer = Trainer

    @classmethod
    @typechecked
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Preprocess related")
        group.add_argument(
            "--use_preprocessor",
            type=str2bool,
            default=True,
            help="Tokenize texts with the LLM's tokenizer and draw each utterance's task",
        )
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)
        # Some trainable parameters may take no part in the loss: the CTC head
        # is trainable in every model (so that checkpoints keep it) but only
        # used when ctc_weight > 0, LoRA weights are idle when ctc_weight = 1.
        # DDP must then look for them, else it fails at the second step.
        parser.set_defaults(unused_parameters=True)

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        if args.collect_stats:
            # Shapes need no model: ESPnet then skips building it (and the LLM).
            args.model_conf = {**args.model_conf, "extract_feats_in_collect_stats": False}
        super().main_worker(args)

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
        # The model's own default prompt (DeSTA2's differs from BLSP's) unless configured.
        model_class = model_choices.get_class(getattr(args, "model", None) or "blsp")
        default = inspect.signature(model_class.__init__).parameters["instruction"].default
        model_conf = {"instruction": default, **args.model_conf}
        return PromptPreprocessor(
            args.llm_conf["model_name_or_path"], args.llm_conf.get("gguf_file"), model_conf, train
        )

    @classmethod
    def required_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return ("speech",)

    @classmethod
    def optional_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        # response: the target (e.g. the LLM's continuation); transcript: the
        # Kaldi text; asr_hyp: an ASR hypothesis. Which are needed depends on
        # the tasks, prompts and losses of model_conf.
        return ("response",) + TEXT_SLOTS

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> AbsESPnetModel:
        return build_model(args)

    @classmethod
    def build_optimizers(
        cls, args: argparse.Namespace, model: torch.nn.Module
    ) -> List[torch.optim.Optimizer]:
        # Only what trains reaches the optimizer: frozen weights need no state.
        optim_class = optim_classes.get(args.optim)
        if optim_class is None:
            raise ValueError(f"--optim must be one of {list(optim_classes)}: {args.optim}")
        params = [p for p in model.parameters() if p.requires_grad]
        return [optim_class(params, **args.optim_conf)]
