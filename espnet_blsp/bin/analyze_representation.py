"""Representation analysis: the LLM's hidden states of speech vs. its transcript.

How alike they are under several instructions (BLSP paper, Appendix D style;
definitions in :mod:`espnet_blsp.analysis.representation`).

``python -m espnet_blsp.bin.analyze_representation --train_config exp/blsp/config.yaml \\
    --model_file exp/blsp/valid.loss.ave.pth --speech dump/encoder/test/feats.scp,kaldi_ark \\
    --text dump/raw/test/text --out_dir exp/blsp/representation/test``

Writes ``similarity.tsv`` (layer, cond_a, cond_b, cosine), ``content.tsv``
(layer, task, matched, mismatched, gap), ``heatmap.png`` and ``summary.md``
(the content check's gap at the middle layer and its mean over layers) into ``--out_dir``.
"""

import argparse
import logging
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from espnet2.utils.types import str2bool
from typeguard import typechecked

from espnet_blsp.analysis.representation import (
    POOLS, center, content_check, plot_heatmap, pool_spans, representations, similarity,
)
from espnet_blsp.analysis.summary import GAP_HEADER, gap_cells
from espnet_blsp.bin.blsp_inference import Speech2Response, load_split
from espnet_blsp.llm.prompt import INSTRUCTIONS, PromptSpec
from espnet_blsp.utils.cli import add_num_threads, setup
from espnet_blsp.utils.kaldi_dir import atomic_output, read_kv, read_values, write_text

DEFAULT_INSTRUCTIONS = ["continuation", "transcription", "translation_de", "sentiment"]
Content = Dict[str, Tuple[torch.Tensor, torch.Tensor]]


@typechecked
def task_names(instructions: Sequence[PromptSpec]) -> List[str]:
    """A short unique name per instruction: its registered name, or the
    first words of its text (``Transcribe the speech. <speech>`` ->
    ``transcribe_the_speech``)."""
    names = []
    for i, spec in enumerate(instructions):
        if isinstance(spec, str) and spec in INSTRUCTIONS:
            name = spec
        else:
            words = re.findall(r"[a-z0-9]+", re.sub(r"<\w+>", " ", str(spec)).lower())
            name = "_".join(words[:3]) or f"instruction{i + 1}"
        names.append(name if name not in names else f"{name}_{i + 1}")
    return names


@typechecked
def analyze(
    s2r: Speech2Response,
    keys: Sequence[str],
    speech: Sequence,
    texts: Sequence[str],
    instructions: Sequence[PromptSpec],
    pool: str = "from_slot",
    batch_size: int = 8,
    centered: bool = True,
) -> Tuple[List[str], torch.Tensor, Content]:
    """Similarity matrices and content checks of one model on these utterances.

    Returns:
        Condition names, (layers + 1, C, C) similarities and per task the
        (matched, mismatched) speech-text cosine per layer.
    """
    for key, x in zip(keys, speech):
        s2r.check_input(x, f"utterance {key}")
    tasks = task_names(instructions)
    prompts = {t: s2r.model.make_prompt(spec) for t, spec in zip(tasks, instructions)}
    for prompt in prompts.values():
        pool_spans(prompt, [], pool)  # a bad prompt or pool fails before any work
    speech_rows = [row for i in range(0, len(speech), batch_size) for row in s2r.rows(speech[i : i + batch_size])]
    states = representations(s2r.model.llm, speech_rows, texts, prompts, pool, batch_size)
    if centered:
        states = center(states)
    content = {t: content_check(states[f"speech:{t}"], states[f"text:{t}"]) for t in tasks}
    return list(states), similarity(states), content


@typechecked
def write_outputs(
    out_dir: Path, names: Sequence[str], sim: torch.Tensor, content: Content,
    layers_to_plot: Sequence[int], title: str, header: str,
) -> None:
    """similarity.tsv, content.tsv, heatmap.png and summary.md, each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [f"{layer}\t{a}\t{b}\t{float(sim[layer, i, j]):.6f}" for layer in range(sim.size(0))
            for i, a in enumerate(names) for j, b in enumerate(names)]
    write_text(out_dir / "similarity.tsv", "layer\tcond_a\tcond_b\tcosine\n" + "".join(r + "\n" for r in rows))
    lines = ["layer\ttask\tmatched\tmismatched\tgap\n"]
    for layer in range(sim.size(0)):
        for task, (m, o) in content.items():
            m, o = float(m[layer]), float(o[layer])
            lines.append(f"{layer}\t{task}\t{m:.6f}\t{o:.6f}\t{m - o:.6f}\n")
    write_text(out_dir / "content.tsv", "".join(lines))
    cells = gap_cells(out_dir / "content.tsv")
    write_text(out_dir / "summary.md", f"{header}: cos(speech, own transcript) - cos(speech, another's), "
               f"{GAP_HEADER}\n\n| " + " | ".join(cells) + " |\n" + "|---" * len(cells) + "|\n| "
               + " | ".join(cells.values()) + " |\n")
    with atomic_output(out_dir / "heatmap.png", suffix=".png") as tmp:
        plot_heatmap(tmp, names, sim, content, layers_to_plot, title)


def plot_layers(requested: Optional[Sequence[int]], count: int) -> List[int]:
    """The layers to draw (negative counts from the end; default first, middle, last)."""
    wanted = requested if requested else [0, (count - 1) // 2, count - 1]
    for layer in wanted:
        if not -count <= layer < count:
            raise ValueError(f"--layers_to_plot {layer}: the model has layers 0..{count - 1}")
    return list(dict.fromkeys(layer % count for layer in wanted))


def main(cmd: Optional[List[str]] = None):
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train_config", type=Path, required=True)
    parser.add_argument("--model_file", type=Path, help="omit for the untrained adapter")
    parser.add_argument("--speech", required=True, help="SCP,TYPE: wav.scp,sound or feats.scp,kaldi_ark")
    parser.add_argument("--text", type=Path, required=True, help="uttid -> transcript")
    parser.add_argument("--instructions", nargs="+", default=DEFAULT_INSTRUCTIONS,
                        help="registered names (espnet_blsp.llm.prompt.INSTRUCTIONS) or text with <speech>")
    parser.add_argument("--max_utts", type=int, default=32, help="the scp's first N utterances")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--pool", choices=POOLS, default="from_slot")
    parser.add_argument("--center", type=str2bool, default=True,
                        help="subtract each layer's mean state before the cosines (default true)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the untrained adapter")
    parser.add_argument("--layers_to_plot", type=int, nargs="+", help="default: first, middle, last")
    parser.add_argument("--title", default="", help="label in the figure")
    parser.add_argument("--out_dir", type=Path, required=True)
    add_num_threads(parser)
    args = parser.parse_args(cmd)
    setup(args)
    torch.manual_seed(args.seed)
    scp, _, kind = args.speech.rpartition(",")
    keys = [k for k, _ in read_kv(scp)][: args.max_utts]
    texts = list(read_values(args.text, keys).values())
    keys, speech = load_split(scp, kind, keys)
    s2r = Speech2Response(args.train_config, args.model_file)
    names, sim, content = analyze(
        s2r, keys, speech, texts, args.instructions, args.pool, args.batch_size, args.center
    )
    model = args.model_file.name if args.model_file else "untrained adapter"
    header = f"{args.title or model}: {len(keys)} utterances, pool {args.pool}" + (", centered" if args.center else "")
    write_outputs(args.out_dir, names, sim, content, plot_layers(args.layers_to_plot, sim.size(0)),
                  args.title or model, header)
    logging.info(f"{args.out_dir}: {len(names)} conditions, {sim.size(0)} layers written")


if __name__ == "__main__":
    main()
