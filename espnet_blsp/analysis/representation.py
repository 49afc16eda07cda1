"""Does the LLM represent speech as it represents the transcript? (BLSP
paper, Appendix D style.)

Definitions:
    Condition: a (modality, task) pair, named ``speech:<task>`` or
        ``text:<task>``. Both modalities get the same prompt (the task's
        instruction); its ``<speech>`` slot holds the adapter's outputs
        (speech) or the transcript's tokens, tokenized as
        :func:`espnet_blsp.llm.batch.text_rows` puts them there (text: the
        Text+LLM path).
    Representation h[l, u, c]: layer l's hidden states of utterance u under
        condition c, run through the model's own LLM (LoRA included, eval
        mode, no grad), mean-pooled over the positions from the start of the
        slot to the end of the prompt (``pool="from_slot"``: the input and the
        prompt tokens after it, which read it; the instruction before the
        slot is the same in both modalities and would only inflate
        similarity), or over all the prompt's positions (``pool="all"``).
        Layers run from the embeddings' output (layer 0) to the last layer,
        as HF's ``hidden_states`` gives them.
    Centering (``center``, the default): before any cosine, each layer's
        mean over all utterances and conditions is subtracted. An LLM's
        hidden states share a large common direction (on the demo every
        pair of middle-layer states has cosine ~0.9, speech or text, same
        utterance or not), which would otherwise swamp the differences
        asked about.
    Similarity S[l, c1, c2]: the mean over utterances u of
        cos(h[l, u, c1], h[l, u, c2]) (the same utterance in both).
    Content check, per layer and task: matched = mean of
        cos(speech_u, text_u); mismatched = mean of cos(speech_u, text_v)
        over all pairs v != u. Their gap says whether the speech
        representation carries the utterance's content rather than just
        "speech-ness".
"""

import logging
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from typeguard import typechecked

from espnet_blsp.llm.batch import Row, assemble, text_rows
from espnet_blsp.llm.hf_causal_lm import HFCausalLM
from espnet_blsp.llm.prompt import SPEECH, Prompt

MODALITIES = ("speech", "text")
POOLS = ("from_slot", "all")
Span = Tuple[int, int]


@typechecked
def pool_spans(prompt: Prompt, slot_lengths: Sequence[int], pool: str = "from_slot") -> List[Span]:
    """Per row of ``assemble(llm, rows, prompt)`` (right padded, nothing
    cached), the positions ``[start, end)`` that :func:`mean_pool` averages.

    Args:
        prompt: A prompt whose only slot is ``<speech>``.
        slot_lengths: Each row's slot length (speech frames or text tokens).
        pool: ``from_slot`` (slot start to prompt end) or ``all``.
    """
    if prompt.slots != [SPEECH]:
        raise ValueError(f"the analysis needs prompts with one <{SPEECH}> slot only, not {prompt.slots}")
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    before, after = len(prompt.segments[0]), len(prompt.segments[1])
    start = before if pool == "from_slot" else 0
    return [(start, before + n + after) for n in slot_lengths]


@typechecked
def mean_pool(hidden: torch.Tensor, spans: Sequence[Span]) -> torch.Tensor:
    """(B, L, D) hidden states -> (B, D) float32 means over each row's span."""
    pos = torch.arange(hidden.size(1), device=hidden.device)
    start, end = torch.tensor(spans, device=hidden.device).unbind(-1)
    keep = ((pos >= start[:, None]) & (pos < end[:, None])).unsqueeze(-1).float()
    return (hidden.float() * keep).sum(1) / keep.sum(1)


@torch.no_grad()
@typechecked
def layer_states(
    llm: HFCausalLM, rows: Sequence[Row], prompt: Prompt, pool: str = "from_slot", batch_size: int = 8
) -> torch.Tensor:
    """Pooled hidden states of every layer: (layers + 1, N, D) float32 on CPU.

    Args:
        rows: What fills each utterance's ``<speech>`` slot (embeddings or ids).
        prompt: The instruction around the slot.
    """
    llm.eval()  # LoRA dropout off
    body = llm.hf_model().base_model  # LoRA layers in place; no vocabulary projection needed
    out = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        spans = pool_spans(prompt, [r[SPEECH].size(0) for r in chunk], pool)
        batch = assemble(llm, chunk, prompt)  # right padding, positions from 0
        if [e for _, e in spans] != batch.mask.sum(1).tolist():
            raise RuntimeError("pooling spans disagree with the batch's row lengths")
        hidden = body(
            inputs_embeds=batch.embeds.to(llm.dtype), attention_mask=batch.mask,
            position_ids=batch.positions, output_hidden_states=True, use_cache=False,
        ).hidden_states
        out.append(torch.stack([mean_pool(h, spans) for h in hidden]).cpu())
    return torch.cat(out, dim=1)


@typechecked
def representations(
    llm: HFCausalLM,
    speech_rows: Sequence[Row],
    texts: Sequence[str],
    prompts: Dict[str, Prompt],
    pool: str = "from_slot",
    batch_size: int = 8,
) -> Dict[str, torch.Tensor]:
    """Each condition's :func:`layer_states`, speech conditions first.

    Args:
        speech_rows: Per utterance, ``{"speech": adapter outputs}``.
        texts: Per utterance, its transcript (same order).
        prompts: Per task name, its prompt.

    Returns:
        ``{"speech:<task>" | "text:<task>": (layers + 1, N, D)}``.
    """
    if len(speech_rows) != len(texts):
        raise ValueError(f"{len(speech_rows)} speech rows but {len(texts)} transcripts")
    states = {}
    for modality in MODALITIES:
        for task, prompt in prompts.items():
            rows = speech_rows if modality == "speech" else text_rows(llm, texts, prompt)
            start = time.perf_counter()
            states[f"{modality}:{task}"] = layer_states(llm, rows, prompt, pool, batch_size)
            rate = len(rows) / max(time.perf_counter() - start, 1e-9)
            logging.info(f"{modality}:{task}: {len(rows)} utterances, {rate:.1f} utterances/s")
    return states


@typechecked
def center(states: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``states`` minus each layer's mean over all conditions and utterances."""
    mean = torch.stack(list(states.values())).mean(dim=(0, 2), keepdim=True)[0]  # (layers, 1, D)
    return {name: x - mean for name, x in states.items()}


@typechecked
def similarity(states: Dict[str, torch.Tensor]) -> torch.Tensor:
    """(layers + 1, C, C): S[l, a, b] = mean over utterances of the cosine of
    conditions a and b (in ``states``' order) for the same utterance."""
    x = F.normalize(torch.stack(list(states.values())), dim=-1)  # (C, layers, N, D)
    return torch.einsum("alnd,blnd->lab", x, x) / x.size(2)


@typechecked
def content_check(speech: torch.Tensor, text: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per layer, the mean speech-text cosine of the same utterance (matched)
    and of all pairs of different utterances (mismatched).

    Args:
        speech, text: (layers + 1, N, D) states of one task, N >= 2.
    """
    n = speech.size(1)
    if n < 2:
        raise ValueError(f"the content check needs at least 2 utterances, got {n}")
    cos = F.normalize(speech, dim=-1) @ F.normalize(text, dim=-1).transpose(1, 2)  # (layers, N, N)
    matched = cos.diagonal(dim1=1, dim2=2).mean(-1)
    mismatched = (cos.sum((1, 2)) - matched * n) / (n * (n - 1))
    return matched, mismatched


@typechecked
def plot_heatmap(
    path: Union[str, Path],
    names: Sequence[str],
    sim: torch.Tensor,
    content: Dict[str, Tuple[torch.Tensor, torch.Tensor]],
    layers: Sequence[int],
    title: str = "",
) -> None:
    """One heatmap of ``sim`` per layer in ``layers`` (values annotated),
    then matched (solid) and mismatched (dashed) speech-text cosine per
    layer and task; saved as PNG to ``path`` (written as given: callers make
    it atomic)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; files only
    import matplotlib.pyplot as plt

    c = len(names)
    size = 1.2 + 0.55 * c
    fig, axes = plt.subplots(1, len(layers) + 1, figsize=((size + 1) * (len(layers) + 1), size + 1.5))
    low = min(0.0, float(sim.min()))
    for ax, layer in zip(axes, layers):
        im = ax.imshow(sim[layer].numpy(), vmin=low, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(c), names, rotation=90, fontsize=7)
        ax.set_yticks(range(c), names, fontsize=7)
        for a in range(c):
            for b in range(c):
                value = float(sim[layer, a, b])
                ax.text(b, a, f"{value:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if value > (low + 1) / 2 else "white")
        ax.set_title(f"layer {layer}", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax = axes[-1]
    for k, (task, (matched, mismatched)) in enumerate(content.items()):
        color = f"C{k}"
        ax.plot(matched.numpy(), color=color, label=f"{task} matched")
        ax.plot(mismatched.numpy(), color=color, linestyle="--", label=f"{task} mismatched")
    ax.set_xticks(range(0, sim.size(0), max(1, sim.size(0) // 10)))
    ax.set_xlabel("layer")
    ax.set_ylabel("cos(speech, text)")
    ax.set_title("speech vs. text, same / other utterance", fontsize=9)
    ax.legend(fontsize=6)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
