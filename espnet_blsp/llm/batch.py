"""LLM input batches: prompt + slot (+ response), and decoding from them."""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

from espnet_blsp.llm.abs_llm import AbsLLM
from espnet_blsp.llm.prompt import Prompt

IGNORE_ID = -100


@dataclass
class LLMBatch:
    """A padded batch of LLM inputs.

    Attributes:
        embeds: (B, L, D) input embeddings, zeros at padding.
        mask: (B, L) 1 for real positions.
        positions: (B, L) position ids counting only real positions.
        labels: (B, L) target ids, IGNORE_ID except on the response and its
            end token.
    """

    embeds: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    labels: torch.Tensor


def embed_ids(llm: AbsLLM, ids: Sequence[int]) -> torch.Tensor:
    """Token ids -> the LLM's input embeddings, on the LLM's device."""
    device = llm.get_device()
    return llm.embed(torch.tensor(list(ids), dtype=torch.long, device=device))


def text_slots(llm: AbsLLM, texts: Sequence[str], prompt: Prompt) -> List[torch.Tensor]:
    """Transcripts -> their token embeddings, to stand in the slot."""
    tok = llm.tokenizer
    return [
        embed_ids(llm, tok(prompt.slot_lead + t, add_special_tokens=False).input_ids)
        for t in texts
    ]


def assemble(
    llm: AbsLLM,
    slots: Sequence[torch.Tensor],
    prompt: Prompt,
    targets: Optional[Sequence[Sequence[int]]] = None,
    left_pad: bool = False,
    with_prefix: bool = True,
) -> LLMBatch:
    """Builds ``prefix + slot + suffix [+ target + end]`` rows.

    Padding goes only at one end of each row (right for training, left for
    generation), and position ids count real positions only. Without
    ``with_prefix`` the rows start at the slot (positions after the prefix),
    for an LLM that reads the shared prefix from its cache.
    """
    prefix = embed_ids(llm, prompt.prefix)
    suffix = embed_ids(llm, prompt.suffix)
    head = [prefix] if with_prefix else []
    offset = 0 if with_prefix else len(prompt.prefix)
    rows, labels = [], []
    for i, slot in enumerate(slots):
        parts = head + [slot.to(prefix.dtype), suffix]
        row_labels = [IGNORE_ID] * sum(p.size(0) for p in parts)
        if targets is not None:
            response = list(targets[i]) + [prompt.end]
            parts.append(embed_ids(llm, response))
            row_labels += response
        rows.append(torch.cat(parts))
        labels.append(row_labels)
    length = max(r.size(0) for r in rows)
    dim, device = prefix.size(-1), prefix.device
    batch = LLMBatch(
        embeds=prefix.new_zeros(len(rows), length, dim),
        mask=torch.zeros(len(rows), length, dtype=torch.long, device=device),
        positions=torch.zeros(len(rows), length, dtype=torch.long, device=device),
        labels=torch.full((len(rows), length), IGNORE_ID, device=device),
    )
    for i, (row, lab) in enumerate(zip(rows, labels)):
        n = row.size(0)
        span = slice(length - n, length) if left_pad else slice(0, n)
        batch.embeds[i, span] = row
        batch.mask[i, span] = 1
        batch.positions[i, span] = torch.arange(offset, offset + n, device=device)
        batch.labels[i, span] = torch.tensor(lab, device=device)
    return batch


def response_nll(
    llm: AbsLLM,
    slots: Sequence[torch.Tensor],
    prompt: Prompt,
    targets: Sequence[Sequence[int]],
):
    """Teacher-forced NLL of each target response after its slot.

    The prompt's prefix is the same for every row and comes before anything
    trainable, so the LLM reads it from a cache instead of recomputing it.

    Returns:
        (N,) NLL per target token (and end token), (N,) the row each belongs
        to, and (N,) whether the argmax prediction was right.
    """
    batch = assemble(llm, slots, prompt, targets, with_prefix=False)
    return token_nll(llm, batch, prefix=prompt.prefix)


def response_logits(
    llm: AbsLLM,
    slots: Sequence[torch.Tensor],
    prompt: Prompt,
    targets: Sequence[Sequence[int]],
):
    """Like :func:`response_nll` but returns :func:`token_logits`' outputs."""
    batch = assemble(llm, slots, prompt, targets, with_prefix=False)
    return token_logits(llm, batch, prefix=prompt.prefix)


@torch.no_grad()
def response_scores(
    llm: AbsLLM, slots: Sequence[torch.Tensor], prompt: Prompt, responses: Sequence[str]
) -> List[Tuple[float, int]]:
    """Summed NLL and token count of each response text after its slot."""
    targets = [llm.tokenizer(r, add_special_tokens=False).input_ids for r in responses]
    nll, rows, _ = response_nll(llm, slots, prompt, targets)
    return [(float(nll[rows == i].sum()), int((rows == i).sum())) for i in range(len(targets))]


def token_logits(llm: AbsLLM, batch: LLMBatch, prefix: Sequence[int] = ()):
    """The LLM's next-token logits at the labelled positions of ``batch``.

    Args:
        prefix: Token ids preceding every row that ``batch`` leaves out.

    Returns:
        (N, V) float logits, (N,) their target ids and (N,) the row each
        belongs to.
    """
    hidden = llm.hidden_states(batch.embeds, batch.mask, batch.positions, prefix)
    target = batch.labels[:, 1:]
    keep = target != IGNORE_ID
    return llm.logits(hidden[:, :-1][keep]), target[keep], keep.nonzero()[:, 0]


def token_nll(llm: AbsLLM, batch: LLMBatch, prefix: Sequence[int] = ()):
    """Per-token NLL of the labelled positions of ``batch``.

    Returns:
        (N,) NLL per labelled token, (N,) the row each belongs to, and (N,)
        whether the argmax prediction was right.
    """
    logits, target, rows = token_logits(llm, batch, prefix)
    nll = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    return nll, rows, logits.argmax(-1) == target


@torch.no_grad()
def generate(
    llm: AbsLLM, slots: Sequence[torch.Tensor], prompt: Prompt, **generate_kwargs
) -> List[str]:
    """Responses to the prompt with each slot filled (greedy unless told)."""
    batch = assemble(llm, slots, prompt, left_pad=True, with_prefix=False)
    tok = llm.tokenizer
    eos = [prompt.end] + ([tok.eos_token_id] if tok.eos_token_id is not None else [])
    ids = llm.generate(
        batch.embeds, batch.mask, prefix=prompt.prefix, eos_token_id=eos, **generate_kwargs
    )
    return [tok.decode(row, skip_special_tokens=True).strip() for row in ids]
