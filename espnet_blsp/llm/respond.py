"""The LLM's answers for a whole set of utterances, resumably written out."""

import logging
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from espnet_blsp.llm.abs_llm import AbsLLM
from espnet_blsp.llm.batch import Row, generate, response_scores
from espnet_blsp.llm.prompt import Prompt
from espnet_blsp.utils.audio import length_sorted_batches
from espnet_blsp.utils.progress import Progress
from espnet_blsp.utils.resumable import ResumableWriter, batches_to_do

# What fills the prompt's slots for the utterances at these indices.
RowMaker = Callable[[List[int]], List[Row]]


@torch.no_grad()
def respond(
    llm: AbsLLM,
    prompt: Prompt,
    keys: Sequence[str],
    sizes: Sequence[int],
    make_rows: RowMaker,
    output: Path,
    batch_size: int,
    generate_kwargs: Dict,
    references: Optional[Dict[str, str]] = None,
) -> int:
    """Writes ``uttid response`` for every utterance not yet in ``output``.

    With ``references`` (uttid -> response) it writes ``uttid nll_sum ntokens``
    instead: the teacher-forced loss of that response after the slot. Batches
    hold utterances of similar ``sizes``, longest first, and each finished
    batch is made durable, so a rerun continues where a crash stopped, with
    the same batches (``batches_to_do``).

    Returns:
        The number of utterances processed by this call.
    """
    with ResumableWriter(output) as out:
        wanted = [i for i, k in enumerate(keys) if references is None or k in references]
        if references is not None and len(wanted) < len(keys):
            unscored = [k for k in keys if k not in references]
            logging.warning(f"{output}: {len(unscored)} utterances have no reference, e.g. {unscored[0]}")
        plan = length_sorted_batches(wanted, [sizes[i] for i in wanted], batch_size)
        plan = [[wanted[j] for j in b] for b in plan]
        todo = sum(keys[i] not in out.done for i in wanted)
        if todo < len(wanted):
            logging.info(f"{output}: {len(wanted) - todo} utterances already done")
        progress = Progress(todo)
        for batch, missing in batches_to_do(plan, lambda i: keys[i] in out.done):
            rows = make_rows(batch)
            if references is None:
                values = generate(llm, rows, prompt, **generate_kwargs)
                for i, v in zip(batch, values):
                    if not v:
                        logging.warning(f"{output}: utterance {keys[i]}: empty response")
            else:
                scores = response_scores(llm, rows, prompt, [references[keys[i]] for i in batch])
                values = [f"{s:.4f} {n}" for s, n in scores]
            out.write_batch([(keys[batch[k]], values[k]) for k in missing])
            progress.update(len(missing))
    return todo
