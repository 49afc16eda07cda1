"""LLM input batches: prompts with their slots filled (+ response), and
decoding from them."""

import itertools
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from espnet_blsp.llm.abs_llm import AbsLLM
from espnet_blsp.llm.prompt import SPEECH, Prompt, shared_prefix, token_ids

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


# What fills each slot of one utterance's prompt: (n, D) embeddings (the
# speech) or (n,) token ids (text tokenized by the preprocessor).
Row = Dict[str, torch.Tensor]
Prompts = Union[Prompt, Sequence[Prompt]]


def embed_ids(llm: AbsLLM, ids: Union[Sequence[int], torch.Tensor]) -> torch.Tensor:
    """Token ids -> the LLM's input embeddings, on the LLM's device."""
    device = llm.get_device()
    return llm.embed(torch.as_tensor(ids, dtype=torch.long).to(device))


def text_rows(llm: AbsLLM, texts: Sequence[str], prompt: Prompt, slot: str = SPEECH) -> List[Row]:
    """Texts tokenized to stand in ``slot`` (the Text+LLM path: the transcript
    where the speech would be), as the full prompt typed out would read."""
    tok, lead = llm.tokenizer, prompt.lead(slot)
    return [{slot: torch.tensor(tok(lead + t, add_special_tokens=False).input_ids)} for t in texts]


def per_row(prompts: Prompts, n: int) -> List[Prompt]:
    """One prompt for every row, or the rows' own."""
    if isinstance(prompts, Prompt):
        return [prompts] * n
    if len(prompts) != n:
        raise ValueError(f"{len(prompts)} prompts for {n} rows")
    return list(prompts)


def assemble(
    llm: AbsLLM,
    rows: Sequence[Row],
    prompts: Prompts,
    targets: Optional[Sequence[Sequence[int]]] = None,
    left_pad: bool = False,
    cached: Sequence[int] = (),
) -> LLMBatch:
    """Builds ``segment slot segment ... [response end]`` rows.

    Padding goes only at one end of each row (right for training, left for
    generation), and position ids count real positions only.

    Args:
        rows: What fills each row's slots, by slot name.
        prompts: One prompt for all rows, or one per row (task mixing).
        targets: Response ids per row; labelled, with the prompt's end id.
        cached: Ids every prompt starts with that the LLM reads from its
            cache: rows start after them (positions too).
    """
    prompts = per_row(prompts, len(rows))
    segments = {}  # the embedded text around the slots, once per distinct prompt
    for p in prompts:
        if id(p) not in segments:
            ids = [p.segments[0][len(cached) :]] + p.segments[1:]
            segments[id(p)] = [embed_ids(llm, s) for s in ids]
    dtype = segments[id(prompts[0])][0].dtype
    parts_of, labels = [], []
    for i, (row, p) in enumerate(zip(rows, prompts)):
        segs = segments[id(p)]
        parts = [segs[0]]
        for k, name in enumerate(p.slots):
            if name not in row:
                raise ValueError(f"row {i}: nothing fills the prompt's <{name}> slot")
            value = row[name]
            parts += [value.to(dtype) if value.is_floating_point() else embed_ids(llm, value), segs[k + 1]]
        row_labels = [IGNORE_ID] * sum(x.size(0) for x in parts)
        if targets is not None:
            response = list(targets[i]) + [p.end]
            parts.append(embed_ids(llm, response))
            row_labels += response
        parts_of.append(torch.cat(parts))
        labels.append(row_labels)
    length = max(r.size(0) for r in parts_of)
    first = parts_of[0]
    device, offset = first.device, len(cached)
    batch = LLMBatch(
        embeds=first.new_zeros(len(rows), length, first.size(-1)),
        mask=torch.zeros(len(rows), length, dtype=torch.long, device=device),
        positions=torch.zeros(len(rows), length, dtype=torch.long, device=device),
        labels=torch.full((len(rows), length), IGNORE_ID, device=device),
    )
    for i, (row, lab) in enumerate(zip(parts_of, labels)):
        n = row.size(0)
        span = slice(length - n, length) if left_pad else slice(0, n)
        batch.embeds[i, span] = row
        batch.mask[i, span] = 1
        batch.positions[i, span] = torch.arange(offset, offset + n, device=device)
        batch.labels[i, span] = torch.tensor(lab, device=device)
    return batch


def response_logits(
    llm: AbsLLM,
    rows: Sequence[Row],
    prompts: Prompts,
    targets: Sequence[Sequence[int]],
):
    """Teacher-forced logits of each target response after its prompt.

    The ids all prompts start with come before anything trainable, so the
    LLM reads them from a cache instead of recomputing them.

    Returns:
        :func:`token_logits`' outputs.
    """
    cached = shared_prefix(per_row(prompts, len(rows)))
    batch = assemble(llm, rows, prompts, targets, cached=cached)
    return token_logits(llm, batch, prefix=cached)


@torch.no_grad()
def response_scores(
    llm: AbsLLM, rows: Sequence[Row], prompt: Prompt, responses: Sequence[str]
) -> List[Tuple[float, int]]:
    """Summed NLL and token count of each response text after its prompt."""
    targets = [llm.tokenizer(r, add_special_tokens=False).input_ids for r in responses]
    logits, target, row = response_logits(llm, rows, prompt, targets)
    nll = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    return [(float(nll[row == i].sum()), int((row == i).sum())) for i in range(len(targets))]


@torch.no_grad()
def option_scores(
    llm: AbsLLM, rows: Sequence[Row], prompts: Prompts, options: Sequence[Sequence[str]]
) -> List[List[Tuple[float, int]]]:
    """Summed NLL and token count of each option as the response to its row's prompt.

    A row's options are packed after one copy of its prompt (closed-set
    questions: "female", "male"): see :func:`branch_scores`.

    Args:
        options: Per row, its option texts (each answered + the prompt's end id).

    Returns:
        Per row, per option, (summed NLL, tokens).
    """
    prompts = per_row(prompts, len(rows))
    branches = [[(0, token_ids(llm.tokenizer, o) + [p.end]) for o in opts] for opts, p in zip(options, prompts)]
    return branch_scores(llm, rows, prompts, [[] for _ in rows], branches)


@torch.no_grad()
def branch_scores(
    llm: AbsLLM,
    rows: Sequence[Row],
    prompts: Prompts,
    stems: Sequence[Sequence[int]],
    branches: Sequence[Sequence[Tuple[int, Sequence[int]]]],
) -> List[List[Tuple[float, int]]]:
    """Summed NLL and token count of token runs that branch off a shared text.

    Each row reads its prompt, then its stem (ids not scored: e.g. a
    reference response), then its branches packed one after another. A
    branch ``(k, ids)`` attends to the prompt, the stem's first ``k`` ids and
    itself only, and its positions go on from there, so it is scored as if
    it alone followed ``prompt + stem[:k]`` (:func:`response_scores`), for
    one copy of the prompt and stem instead of one per branch.

    Args:
        stems: Per row, the ids its branches start from.
        branches: Per row, ``(k, ids)``: score ``ids`` after ``stem[:k]``.

    Returns:
        Per row, per branch, (summed NLL, tokens).
    """
    prompts = per_row(prompts, len(rows))
    cached = shared_prefix(prompts)
    base = assemble(llm, rows, prompts, cached=cached)
    lengths = base.mask.sum(1).tolist()
    for i, (stem, bs) in enumerate(zip(stems, branches)):
        if any(not 0 <= k <= len(stem) or not ids for k, ids in bs):
            raise ValueError(f"row {i}: a branch is empty or starts outside its stem of {len(stem)} ids")
    length = max(n + len(s) + sum(len(ids) for _, ids in b) for n, s, b in zip(lengths, stems, branches))
    batch, device = len(rows), base.embeds.device
    embeds = base.embeds.new_zeros(batch, length, base.embeds.size(-1))
    positions = torch.zeros(batch, length, dtype=torch.long, device=device)
    # Which keys each query sees; a padding query sees itself (finite, unread).
    allowed = torch.eye(length, dtype=torch.bool, device=device).repeat(batch, 1, 1)
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    reader, target = [], []  # per scored token, in branch order: the position predicting it, and its id
    for i, (n, stem, row_branches) in enumerate(zip(lengths, stems, branches)):
        embeds[i, :n], positions[i, :n] = base.embeds[i, :n], base.positions[i, :n]
        m = n + len(stem)  # prompt and stem: one causal run
        if stem:
            embeds[i, n:m] = embed_ids(llm, stem)
            positions[i, n:m] = torch.arange(len(stem), device=device) + len(cached) + n
        allowed[i, :m, :m] = causal[:m, :m]
        start = m
        for k, ids in row_branches:
            span = slice(start, start + len(ids))
            embeds[i, span] = embed_ids(llm, ids)
            positions[i, span] = torch.arange(len(ids), device=device) + len(cached) + n + k
            allowed[i, span, : n + k] = True
            allowed[i, span, span] = causal[: len(ids), : len(ids)]
            reader += [(i, n + k - 1)] + [(i, j) for j in range(start, start + len(ids) - 1)]
            target += ids
            start += len(ids)
    # The shared prefix comes from the cache and every position sees it.
    mask = torch.cat([allowed.new_ones(batch, length, len(cached)), allowed], dim=-1)[:, None]
    hidden = llm.hidden_states(embeds, mask, positions, cached)
    index = torch.tensor(reader, device=device)
    logits = llm.logits(hidden[index[:, 0], index[:, 1]])
    nll = torch.nn.functional.cross_entropy(logits, torch.tensor(target, device=device), reduction="none")
    nll = iter(nll.tolist())  # in branch order: each branch's tokens in turn
    return [[(sum(itertools.islice(nll, len(ids))), len(ids)) for _, ids in b] for b in branches]


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


@torch.no_grad()
def generate(llm: AbsLLM, rows: Sequence[Row], prompts: Prompts, **generate_kwargs) -> List[str]:
    """Responses to the prompts with their slots filled (greedy unless told)."""
    prompts = per_row(prompts, len(rows))
    cached = shared_prefix(prompts)
    batch = assemble(llm, rows, prompts, left_pad=True, cached=cached)
    tok = llm.tokenizer
    eos = sorted({p.end for p in prompts} | ({tok.eos_token_id} - {None}))
    ids = llm.generate(batch.embeds, batch.mask, prefix=cached, eos_token_id=eos, **generate_kwargs)
    return [tok.decode(row, skip_special_tokens=True).strip() for row in ids]
