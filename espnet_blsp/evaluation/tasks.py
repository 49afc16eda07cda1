"""Which tasks each test set is evaluated on: the recipe's ``conf/eval_tasks.yaml``.

::

    tasks:
      asr: {reference: text, metric: wer}        # instruction: blsp.sh's --asr_instruction
      st_de: {instruction: translation_de, reference: text.de, metric: bleu}
      st_ja: {instruction: translation_ja, reference: text.ja, metric: bleu, tokenize: ja-mecab}
      sentiment: {instruction: sentiment, reference: utt2sentiment, metric: accuracy,
                  labels: [negative, neutral, positive]}
      continuation: {instruction: continuation, ask: true, reference: continuation, metric: bleu}
    test_sets:
      test_clean: [asr]
      test_covost2_en_de: [st_de]

``instruction`` is a name in ``espnet_blsp.llm.prompt.INSTRUCTIONS`` or text
with ``<speech>``; with ``ask: true`` its words are asked inside each
system's own prompt instead (``espnet_blsp.llm.prompt.ask``: DeSTA2 keeps
its audio turn with speech and transcript, a Text+LLM system its text), so
a model is tried on another method's task as it was trained to listen.
``reference`` is a file of the formatted test set
(``dump/raw/<set>/<reference>``); ``metric`` one of ``wer``, ``bleu`` (BLEU
and chrF, sacrebleu ``tokenize``, default 13a) and ``accuracy`` (``labels``
default to those among the references). A set the config does not list, or
any set without a config, is evaluated on ``asr``. The answers of task
``<name>`` go to ``<system dir>/<name>_text`` (``asr_text`` for ASR).

``python -m espnet_blsp.evaluation.tasks --config conf/eval_tasks.yaml --set test_clean``
prints the set's output file names (for the recipe's job merging).
"""

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import yaml
from typeguard import typechecked

from espnet_blsp.llm.prompt import SPEECH, PromptSpec, ask_instruction, resolve_instruction

METRICS = ("wer", "bleu", "accuracy")
TOKENIZERS = ("13a", "ja-mecab", "zh", "intl", "char", "none")


@dataclass
class EvalTask:
    """One task of a test set (see the module docstring)."""

    name: str
    reference: str
    metric: str
    instruction: Optional[str] = None  # None: the recipe's ASR instruction
    tokenize: str = "13a"
    labels: Optional[List[str]] = None
    ask: bool = False

    def spec(self, base: PromptSpec, asr_instruction: PromptSpec) -> PromptSpec:
        """The prompt this task's answers are made with, for a system whose
        own prompt is ``base``."""
        instruction = self.instruction or asr_instruction
        return ask_instruction(base, instruction) if self.ask else resolve_instruction(instruction)

    @property
    def output(self) -> str:
        """The system dir's file with the answers."""
        return f"{self.name}_text"


ASR = EvalTask(name="asr", reference="text", metric="wer")


@typechecked
def load_tasks(config: Optional[Path], test_set: str) -> List[EvalTask]:
    """The tasks of ``test_set`` in ``config`` (ASR alone without either).

    Raises:
        ValueError: Naming the config file and the entry that is wrong.
    """
    if config is None:
        return [ASR]
    conf = yaml.safe_load(config.read_text()) or {}
    unknown = set(conf) - {"tasks", "test_sets"}
    if unknown:
        raise ValueError(f"{config}: unknown top-level key(s) {sorted(unknown)}; expected tasks, test_sets")
    tasks = {name: _task(config, name, spec) for name, spec in (conf.get("tasks") or {}).items()}
    names = (conf.get("test_sets") or {}).get(test_set)
    if names is None:
        return [tasks.get("asr", ASR)]
    if not isinstance(names, list) or not names:
        raise ValueError(f"{config}: test_sets.{test_set} must be a non-empty list of task names")
    for name in names:
        if name not in tasks and name != "asr":
            raise ValueError(f"{config}: test_sets.{test_set} names task {name!r}, not under tasks: {sorted(tasks)}")
    return [tasks.get(name, ASR) for name in names]


def _task(config: Path, name: str, spec) -> EvalTask:
    where = f"{config}: tasks.{name}"
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be a mapping")
    try:
        task = EvalTask(name=name, **spec)
    except TypeError as e:
        raise ValueError(f"{where}: {e}")
    if task.metric not in METRICS:
        raise ValueError(f"{where}: metric {task.metric!r} is not one of {METRICS}")
    if task.tokenize not in TOKENIZERS:
        raise ValueError(f"{where}: tokenize {task.tokenize!r} is not one of {TOKENIZERS}")
    if task.instruction is None and name != "asr":
        raise ValueError(f"{where}: needs an instruction (only asr defaults to the recipe's)")
    if task.ask and not isinstance(resolve_instruction(task.instruction or ""), str):
        raise ValueError(f"{where}: ask: true needs a one-turn instruction")
    if task.instruction is not None and f"<{SPEECH}>" not in resolve_instruction(task.instruction):
        raise ValueError(f"{where}: instruction {task.instruction!r} is neither a registered name nor has <speech>")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"{where}: task names are letters, digits, '_' and '-'")
    return task


@typechecked
def output_names(tasks: Sequence[EvalTask]) -> List[str]:
    """The answer files of ``tasks``."""
    return [t.output for t in tasks]


def main(cmd=None):
    """CLI: print a test set's answer files."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path)
    parser.add_argument("--set", required=True)
    args = parser.parse_args(cmd)
    print(" ".join(output_names(load_tasks(args.config, args.set))))


if __name__ == "__main__":
    main()
