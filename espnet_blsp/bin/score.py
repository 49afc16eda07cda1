"""Scores one system on one test set, and gathers scores into RESULTS.md.

``python -m espnet_blsp.bin.score --ref_text dump/raw/test/text \\
    --ref_continuation dump/raw/test/continuation --sys_dir exp/eval/test/blsp``

reads ``<sys_dir>/{continuation,asr_text,nll,nll_other,slot_length}``
(whichever exist) and writes ``<sys_dir>/score.json``: continuation agreement
(sacrebleu chrF, BLEU), zero-shot ASR WER (Whisper's English normaliser, then
jiwer), the mean per-token loss of the reference continuation, how much lower
that loss is with the utterance's own input than with another's, and the LLM
positions the input fills.

``python -m espnet_blsp.bin.score --results exp/eval --out RESULTS.md`` makes
the table; ``--compare exp/blsp_a exp/blsp_b --set test`` puts experiments
side by side.
"""

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from typeguard import typechecked

from espnet_blsp.analysis.summary import GAP_HEADER, gap_cells
from espnet_blsp.evaluation.metrics import accuracy, bleu_chrf, wer
from espnet_blsp.evaluation.tasks import EvalTask, load_tasks
from espnet_blsp.utils.cli import setup
from espnet_blsp.utils.kaldi_dir import DataDirError, read_kv

ROW_ORDER = ["text_llm", "whisper_cascade", "blsp_untrained", "desta2_untrained", "train_asr_pretrain", "blsp",
             "train_blsp_rp", "train_blsp_kd", "desta2", "train_desta2_3ep", "train_desta2_no_hyp"]
ROW_NAMES = {
    "text_llm": "Text+LLM (reference transcript; upper bound)",
    "whisper_cascade": "Whisper+LLM cascade",
    "blsp_untrained": "Untrained adapter (random init)",
    "desta2_untrained": "Untrained Q-Former (+transcript)",
    "blsp": "BLSP (trained adapter)",
    "desta2": "DeSTA2 (Q-Former + transcript)",
    # The BLSP paper's baselines and variants (blsp.sh --variant_configs), by config name.
    "train_asr_pretrain": "ASR pretraining (adapter trained to transcribe)",
    "train_blsp_rp": "BLSP-RP (continuation + transcription 9:1)",
    "train_blsp_kd": "BLSP-KD (CIF adapter, KL distillation)",
    # DeSTA2's (desta2.sh --variant_configs).
    "train_desta2_3ep": "DeSTA2, 3 epochs",
    "train_desta2_no_hyp": "DeSTA2 without the transcript (Q-Former alone)",
}


def row_order(systems) -> List[str]:
    """The systems in table order: the known rows first, others after by name."""
    return [s for s in ROW_ORDER if s in systems] + sorted(set(systems) - set(ROW_ORDER))


# What the reference answers, per task the table scores (the column names).
TEXT_LLM_READS = {"continuation": "reference transcript", "description": "the seed"}


def row_names(task: str) -> Dict[str, str]:
    """The systems' row names when they answered ``task`` (what Text+LLM read)."""
    return {**ROW_NAMES, "text_llm": f"Text+LLM ({TEXT_LLM_READS[task]}; upper bound)"}


@typechecked
def paired(ref: Path, hyp: Path) -> Dict[str, List[str]]:
    """Reference and hypothesis lines for the same utterances (hyp may be empty)."""
    refs = dict(read_kv(ref))
    hyps = dict(read_kv(hyp, allow_empty_value=True))
    missing = sorted(set(refs) - set(hyps))
    if missing:
        raise DataDirError(f"{hyp}: no output for utterance {missing[0]} of {ref}")
    keys = sorted(refs)
    return {"ref": [refs[k] for k in keys], "hyp": [hyps[k] for k in keys]}


@typechecked
def score_task(task: EvalTask, sys_dir: Path, ref_dir: Path) -> Dict[str, float]:
    """The task's metric(s) for the answers in ``sys_dir`` against ``ref_dir/<reference>``."""
    p = paired(ref_dir / task.reference, sys_dir / task.output)
    if task.metric == "wer":
        scores = {"wer": wer(p["ref"], p["hyp"])}
    elif task.metric == "bleu":
        scores = bleu_chrf(p["ref"], p["hyp"], task.tokenize)
    else:
        scores = {"accuracy": accuracy(p["ref"], p["hyp"], task.labels)}
    return {**scores, "num_utts": len(p["ref"])}


@typechecked
def score_system(
    sys_dir: Path, ref_text: Path, ref_continuation: Optional[Path], tasks: Sequence[EvalTask] = ()
) -> Dict:
    """All metrics whose inputs exist in ``sys_dir``; each of ``tasks`` under ``tasks``
    (references beside ``ref_text``)."""
    scores: Dict = {}
    if ref_continuation and (sys_dir / "continuation").exists():
        p = paired(ref_continuation, sys_dir / "continuation")
        agreement = bleu_chrf(p["ref"], p["hyp"])
        scores["cont_chrf"], scores["cont_bleu"] = agreement["chrf"], agreement["bleu"]
        scores["num_utts"] = len(p["ref"])
    if (sys_dir / "asr_text").exists():
        p = paired(ref_text, sys_dir / "asr_text")
        scores["asr_wer"] = wer(p["ref"], p["hyp"])
        scores["num_utts"] = len(p["ref"])
    if (sys_dir / "nll").exists():
        scores["cont_nll"] = mean_nll(sys_dir / "nll")
        if (sys_dir / "nll_other").exists():
            scores["input_gain"] = mean_nll(sys_dir / "nll_other") - scores["cont_nll"]
    if (sys_dir / "slot_length").exists():
        lengths = [int(v) for _, v in read_kv(sys_dir / "slot_length")]
        scores["positions"] = sum(lengths) / max(len(lengths), 1)
    done = [t for t in tasks if (sys_dir / t.output).exists()]
    if done:
        scores["tasks"] = {t.name: {"metric": t.metric, **score_task(t, sys_dir, ref_text.parent)} for t in done}
    return scores


@typechecked
def mean_nll(path: Path) -> float:
    """Mean per-token NLL from ``uttid summed_nll num_tokens`` lines."""
    total = count = 0.0
    for _, value in read_kv(path):
        s, n = value.split()
        total, count = total + float(s), count + int(n)
    return total / max(count, 1)


@typechecked
def gather(results_dir: Path, variants: Sequence[Path] = ()) -> Dict[str, Dict[str, Dict]]:
    """Scores by test set and system: ``<results_dir>/<set>/<system>/score.json``,
    and the trained adapter (``<set>/blsp``) of each variant experiment's eval
    dir, as the system named by its experiment (``exp/blsp_train_asr_pretrain/eval``:
    ``train_asr_pretrain``)."""
    found: Dict[str, Dict[str, Dict]] = {}
    for path in sorted(results_dir.glob("*/*/score.json")):
        found.setdefault(path.parent.parent.name, {})[path.parent.name] = json.loads(path.read_text())
    for eval_dir in variants:
        name = eval_dir.resolve().parent.name.split("_", 1)[-1]
        for path in sorted(eval_dir.glob("*/blsp/score.json")):
            found.setdefault(path.parent.parent.name, {})[name] = json.loads(path.read_text())
    return found


@typechecked
def results_table(results_dir: Path, task: str = "continuation", variants: Sequence[Path] = ()) -> str:
    """Markdown tables, one per test set, from :func:`gather`'s scores.

    Args:
        task: What the systems answered (``continuation`` or ``description``):
            the column names, and what the Text+LLM row read.
        variants: Eval dirs of variant experiments (rows of their trained adapter).
    """
    lines = []
    for dset, systems in sorted(gather(results_dir, variants).items()):
        n = max(int(s.get("num_utts", 0)) for s in systems.values())
        lines += [
            f"### {dset} ({n} utterances)",
            "",
            f"| system | {task} chrF ↑ | {task} BLEU ↑ | ASR WER % ↓ | {task} loss ↓ "
            "| loss drop from own input ↑ |",
            "|---|---|---|---|---|---|",
        ]
        names = row_names(task)
        order = row_order(systems)
        for name in order:
            s = systems[name]
            cells = [
                f"{s[k]:.2f}" if k in s else "–"
                for k in ("cont_chrf", "cont_bleu", "asr_wer", "cont_nll", "input_gain")
            ]
            lines.append(f"| {names.get(name, name)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


TASK_TABLES = (("wer", "WER % ↓"), ("bleu", "BLEU ↑"), ("chrf", "chrF ↑"), ("accuracy", "accuracy % ↑"))


@typechecked
def task_tables(results_dir: Path, variants: Sequence[Path] = (), answered: str = "continuation") -> str:
    """The paper's Table 1 shape: per metric, systems × (test set, task), from
    the ``tasks`` of :func:`gather`'s scores; "" when no system has task scores.

    Args:
        answered: What the systems' main answers were (the Text+LLM row's name).
    """
    cells: Dict[str, Dict[str, Dict[str, float]]] = {}  # metric -> system -> column -> value
    for dset, systems in gather(results_dir, variants).items():
        for system, scores in systems.items():
            for task, s in scores.get("tasks", {}).items():
                for metric, _ in TASK_TABLES:
                    if metric in s:
                        column = f"{dset} ({task}, {int(s['num_utts'])})"
                        cells.setdefault(metric, {}).setdefault(system, {})[column] = s[metric]
    lines = []
    for metric, title in TASK_TABLES:
        if metric not in cells:
            continue
        systems = cells[metric]
        columns = sorted({c for row in systems.values() for c in row})
        order = row_order(systems)
        lines += [f"### {title}", "", "| system | " + " | ".join(columns) + " |"]
        lines.append("|---" * (len(columns) + 1) + "|")
        for name in order:
            row = [f"{systems[name][c]:.2f}" if c in systems[name] else "–" for c in columns]
            lines.append(f"| {row_names(answered).get(name, name)} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


@typechecked
def representation_section(root: Path) -> str:
    """RESULTS.md's representation analysis (espnet_blsp.bin.analyze_representation):
    per test set, systems × tasks, how much closer the LLM's states of the
    speech are to its own transcript's than to another utterance's, and each
    system's heatmap; "" when ``root`` (``<exp>/representation``) holds none."""
    lines = []
    for set_dir in sorted(p for p in root.glob("*") if p.is_dir()):
        rows = {p.parent.name: gap_cells(p) for p in set_dir.glob("*/content.tsv")}
        if not rows:
            continue
        tasks = list(dict.fromkeys(t for cells in rows.values() for t in cells))
        lines += [
            f"### {set_dir.name}: cos(speech, own transcript) - cos(speech, another's transcript), {GAP_HEADER}",
            "",
            "| system | " + " | ".join(tasks) + " |",
            "|---" * (len(tasks) + 1) + "|",
        ]
        for name in row_order(rows):
            lines.append(f"| {ROW_NAMES.get(name, name)} | " + " | ".join(rows[name].get(t, "–") for t in tasks) + " |")
        lines += ["", "The LLM's hidden states mean-pooled from the slot to the prompt's end and centered "
                  "(espnet_blsp/analysis/representation.py). Heatmaps (the similarity of every "
                  "(modality, task) pair at the first, middle and last layer, and the speech-transcript "
                  "similarity per layer): "
                  + ", ".join(f"[{name}]({set_dir / name / 'heatmap.png'})" for name in row_order(rows)), ""]
    return "\n".join(lines)


@typechecked
def compare_table(exps: List[Path], dset: str, system: str = "blsp") -> str:
    """A markdown table of trained experiments side by side on one test set:
    the results columns plus trainable parameters (from ``train.log``), the
    training's wall-clock seconds and the LLM positions the speech fills."""
    lines = [
        f"| {dset} | continuation chrF ↑ | continuation BLEU ↑ | ASR WER % ↓ | continuation loss ↓ "
        "| loss drop from own input ↑ | trainable parameters | training seconds | LLM positions per utterance |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for exp in exps:
        score = exp / "eval" / dset / system / "score.json"
        if not score.exists():
            raise FileNotFoundError(f"{score}: no scores (run stages 7-8 of {exp.name} first)")
        s = json.loads(score.read_text())
        cells = [f"{s[k]:.2f}" if k in s else "–" for k in ("cont_chrf", "cont_bleu", "asr_wer", "cont_nll", "input_gain")]
        params = re.findall(r"Trainable parameters: ([\d,]+)", (exp / "train.log").read_text())
        seconds = exp / "train_seconds"
        cells += [
            params[-1] if params else "–",
            seconds.read_text().strip() if seconds.exists() else "–",
            f"{s['positions']:.1f}" if "positions" in s else "–",
        ]
        lines.append(f"| {exp.name.removeprefix('blsp_')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(cmd: Optional[List[str]] = None):
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sys_dir", type=Path, help="score this system dir")
    parser.add_argument("--ref_text", type=Path, help="reference transcripts")
    parser.add_argument("--ref_continuation", type=Path, help="Text+LLM continuations")
    parser.add_argument("--eval_config", type=Path, help="the tasks of each test set (evaluation/tasks.py)")
    parser.add_argument("--test_set", default="", help="--sys_dir's test set name in --eval_config")
    parser.add_argument("--results", type=Path, help="make the table from this dir")
    parser.add_argument("--task", choices=sorted(TEXT_LLM_READS), default="continuation",
                        help="what --results' systems answered (column names)")
    parser.add_argument("--out", type=Path, help="markdown output (with --results or --compare)")
    parser.add_argument("--compare", type=Path, nargs="+", help="experiment dirs to tabulate side by side")
    parser.add_argument("--set", help="the test set of --compare")
    parser.add_argument("--variants", type=Path, nargs="+", default=[],
                        help="with --results: eval dirs of variant experiments, their trained adapter a row each")
    parser.add_argument("--representation", type=Path,
                        help="with --results: <exp>/representation, for the representation analysis section")
    args = parser.parse_args(cmd)
    setup(args)
    if args.sys_dir:
        # Without a config the only task is the ASR the main table already shows.
        tasks = load_tasks(args.eval_config, args.test_set) if args.eval_config else []
        scores = score_system(args.sys_dir, args.ref_text, args.ref_continuation, tasks)
        (args.sys_dir / "score.json").write_text(json.dumps(scores, indent=1) + "\n")
        logging.info(f"{args.sys_dir}: {scores}")
    if args.results or args.compare:
        if args.results:
            table = results_table(args.results, args.task, args.variants)
            by_task = task_tables(args.results, args.variants, args.task)
            if by_task:
                table += "\n## Tasks (the paper's Table 1)\n\n" + by_task
            analysis = representation_section(args.representation) if args.representation else ""
            if analysis:
                table += "\n## Representation analysis (the paper's Appendix D)\n\n" + analysis
        else:
            table = compare_table(args.compare, args.set)
        print(table)
        if args.out:
            args.out.write_text(table)


if __name__ == "__main__":
    main()
