"""Training tasks: which prompt each utterance gets and what it must answer.

BLSP trains one task (continuation writing); BLSP-RP mixes continuation and
transcription 9:1. Each utterance of a batch draws its own task, so one batch
mixes prompts and targets::

    model_conf:
      tasks:
        - {instruction: continuation, weight: 0.9}                    # target: response
        - {instruction: transcription, target: transcript, weight: 0.1}
"""

import zlib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from espnet_blsp.llm.prompt import SPEECH, TEXT_SLOTS, Prompt, PromptSpec, build_prompt

TARGETS = ("response",) + TEXT_SLOTS  # data names a task may answer with


@dataclass
class Task:
    """One instruction and its target.

    Attributes:
        spec: The instruction as configured (a registered name, text or turns).
        prompt: It tokenized.
        target: Data name of the target text ("response": e.g. the LLM's
            continuation from step 1; "transcript": transcription).
        weight: Share of the utterances that get this task.
    """

    spec: PromptSpec
    prompt: Prompt
    target: str
    weight: float


def build_tasks(
    tokenizer,
    instruction: Optional[PromptSpec],
    tasks: Optional[List[Dict[str, Any]]],
    use_chat_template: bool,
) -> List[Task]:
    """The configured tasks: ``tasks``, or the single ``instruction`` (answered
    with ``response``), or continuation writing when neither is given."""
    if tasks and instruction is not None:
        raise ValueError("give either instruction or tasks, not both")
    entries = tasks or [{"instruction": instruction or "continuation"}]
    out = []
    for k, entry in enumerate(entries):
        unknown = set(entry) - {"instruction", "target", "weight"}
        if unknown or "instruction" not in entry:
            raise ValueError(f"task {k}: needs instruction (and optional target, weight), got {entry}")
        target = entry.get("target", "response")
        if target not in TARGETS:
            raise ValueError(f"task {k}: target must be one of {TARGETS}, got {target!r}")
        prompt = build_prompt(tokenizer, entry["instruction"], use_chat_template)
        out.append(Task(entry["instruction"], prompt, target, float(entry.get("weight", 1.0))))
    if any(t.weight <= 0 for t in out):
        raise ValueError("task weights must be > 0")
    return out


def text_leads(tasks: List[Task]) -> Dict[str, str]:
    """The lead each text slot is tokenized with (see ``Prompt.leads``).

    A text that fills no slot of any prompt (the transcript, for the CTC and
    KD losses) gets the speech slot's lead: the KD teacher reads it there.
    """
    leads = {name: tasks[0].prompt.lead(SPEECH) for name in TEXT_SLOTS}
    seen: Dict[str, str] = {}
    for task in tasks:
        for slot, lead in zip(task.prompt.slots, task.prompt.leads):
            if slot == SPEECH:
                continue
            if seen.setdefault(slot, lead) != lead:
                raise ValueError(f"<{slot}> follows different spaces in two prompts; make them agree")
            leads[slot] = lead
    return leads


def choose_task(tasks: List[Task], uid: str, train: bool) -> int:
    """Draws an utterance's task by weight: at random in training, by a hash
    of its id otherwise (the same validation set every epoch)."""
    if len(tasks) == 1:
        return 0
    weights = np.array([t.weight for t in tasks])
    cumulative = np.cumsum(weights / weights.sum())
    u = np.random.random() if train else (zlib.crc32(uid.encode()) % 10**6) / 10**6
    return int(min(np.searchsorted(cumulative, u, side="right"), len(tasks) - 1))
