"""Judge-free scores of closed-set questions and descriptions, and their tables.

Closed-set questions (``make_qa``) answered by one system (``evaluate_qa``)::

    python -m espnet_blsp.bin.score_qa --questions qa/test/questions.jsonl --sys_dir exp/eval/test/desta

reads ``<sys_dir>/{qa_option_nll,qa_answer}`` (whichever exist) and writes
``<sys_dir>/qa_scores.json``: per task, and their macro average, all in %
(../shared/DESTA2.md §4.5):

- ``option_ll_acc``: the option with the lowest summed NLL is the answer;
  ``option_ll_norm_acc``: the lowest NLL per token;
  ``option_ll_calib_acc``: the lowest NLL minus that option's mean NLL over
  the task's questions with the same options (contextual calibration, from
  the outputs alone, no labels: an LLM's fixed preference for one option,
  "male" for every speaker, cancels, and what the input adds is left).
- ``answer_acc``: DeSTA2's consecutive-words match of the generated answer.
  Answer and options go through Whisper's English normaliser (as ``score``
  uses it; DeSTA2 used the basic normaliser); an option matches if its words
  occur contiguously in the answer's words. Correct iff the right option
  matches and no other does ("a female speaker" names female, not male).
- ``string_match_acc``: MMAU's ``string_match``, as in its evaluation.py:
  words = the set of ``\\b\\w+\\b`` runs of the lower-cased text (no
  normaliser); correct iff the answer is not empty, every word of the right
  option is in it, and none of the words of a wrong option that the right
  option lacks is.
- ``format_rate``: the answer names exactly one option (consecutive words).
- ``chance``: 1 / number of options; ``majority``: always answering the
  task's most frequent answer (the floor where values are not balanced).

Each also per ``voice`` (seen/unseen), where the questions have it. With
option NLLs, ``items`` holds each question's task and calibrated right (1)
or wrong (0), for the tables' paired test: per task, each system against the
Whisper+LLM cascade on the same items, the items only one of the two got
right (+won / -lost) and the exact two-sided McNemar p.
Description probes (``make_probe``) are scored alike, from the
``qa_option_nll`` that ``evaluate_qa`` wrote into ``<sys_dir>/probe``
(``--questions probes.jsonl --sys_dir <sys_dir>/probe``).

Descriptions ("What can you hear from the audio?") against the side files::

    python -m espnet_blsp.bin.score_qa --descriptions exp/eval/test/desta/description \\
        --data_dir dump/raw/test --sys_dir exp/eval/test/desta

writes ``<sys_dir>/mention_scores.json``: per attribute (gender, accent,
speed, pitch, volume, noise, reverb; those the dir has) the % of
descriptions naming the right value (``right``) and a wrong one (``wrong``).
A value is named when one of its phrases (``Attribute.phrases``; accents:
the set's accent names) occurs as whole words in the normalised description;
a phrase inside a longer phrase of another value does not count ("British
RP" names British RP, not British), nor does quoted text (the transcript a
description quotes: 'A man says "she ..."' names no woman).

``python -m espnet_blsp.bin.score_qa --results exp/eval [--out QA.md]`` prints
markdown tables of ``<set>/<system>/{qa_scores,mention_scores}.json``.
"""

import argparse
import json
import logging
import math
import re
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from typeguard import typechecked

from espnet_blsp.bin.evaluate_qa import ANSWER, EMPTY, OPTION_NLL
from espnet_blsp.bin.make_probe import PROBE_ATTRIBUTES, QUOTED
from espnet_blsp.bin.make_qa import TASKS, read_questions, read_seen
from espnet_blsp.bin.make_seed import read_attribute
from espnet_blsp.bin.score import ROW_NAMES, row_order
from espnet_blsp.evaluation.metrics import whisper_english_normalizer
from espnet_blsp.data.attributes import ATTRIBUTES
from espnet_blsp.utils.cli import setup
from espnet_blsp.utils.kaldi_dir import DataDirError, write_text

MENTION_ATTRIBUTES = PROBE_ATTRIBUTES
PROBE_DIR = "probe"  # a system's eval dir holds its probes' scores here
METRICS = ("option_ll_acc", "option_ll_norm_acc", "option_ll_calib_acc", "answer_acc", "string_match_acc",
           "format_rate", "chance", "majority")
# Rows in the order of ../shared/DESTA2.md §6.5; other systems follow, sorted.
SYSTEM_NAMES = {**ROW_NAMES, "text_llm": "Text+LLM (the seed; upper bound)"}
Normalizer = Callable[[str], str]


@typechecked
def read_outputs(path: Path) -> Dict[str, str]:
    """``key value`` lines in any order (resumable outputs), values possibly empty.

    Raises:
        DataDirError: On a duplicate key.
    """
    out: Dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            key, _, value = line.rstrip("\n").partition(" ")
            if key in out:
                raise DataDirError(f"{path}:{lineno}: question {key} is duplicate")
            out[key] = value.strip()
    return out


def spans(words: Sequence[str], phrase: Sequence[str]) -> List[Tuple[int, int]]:
    """Where ``phrase`` occurs in ``words`` as consecutive words: (start, end)."""
    k = len(phrase)
    return [(i, i + k) for i in range(len(words) - k + 1) if k and list(words[i : i + k]) == list(phrase)]


def named(words: Sequence[str], phrases: Dict[str, List[List[str]]]) -> set:
    """The names (keys of ``phrases``) whose phrases occur in ``words``; a phrase
    inside a longer phrase of another name counts for that one only ("Irish"
    in "Northern Irish")."""
    found = [(s, w) for w, ps in phrases.items() for p in ps for s in spans(words, p)]
    return {w for s, w in found
            if not any(w2 != w and s2[0] <= s[0] and s[1] <= s2[1] and s2[1] - s2[0] > s[1] - s[0]
                       for s2, w2 in found)}


def named_options(answer: str, options: Sequence[str], norm: Normalizer) -> List[bool]:
    """Per option, whether the answer names it: DeSTA2's consecutive-words match."""
    kept = named(norm(answer).split(), {o: [norm(o).split()] for o in options})
    return [o in kept for o in options]


def string_match(answer: str, prediction: str, choices: Sequence[str]) -> bool:
    """MMAU's ``string_match`` (see the module docstring)."""

    def tokens(text: str) -> set:
        return set(re.findall(r"\b\w+\b", text.lower()))

    pred, right = tokens(prediction), tokens(answer)
    if not pred:
        return False
    wrong = set()
    for choice in choices:
        if tokens(choice) != right:
            wrong |= tokens(choice) - right
    return right <= pred and pred.isdisjoint(wrong)


def _parse_nll(path: Path, qid: str, value: str, n_options: int) -> List[Tuple[float, int]]:
    fields = value.split()
    if len(fields) != 2 * n_options:
        raise DataDirError(f"{path}: question {qid}: {len(fields)} fields for {n_options} options")
    return [(float(fields[2 * k]), int(fields[2 * k + 1])) for k in range(n_options)]


def _argmin(values: Sequence[float]) -> int:
    return min(range(len(values)), key=lambda k: values[k])


def _mean(values: Sequence[float]) -> float:
    return 100.0 * sum(values) / len(values)


def _summary(records: List[Dict]) -> Dict:
    """Per task and macro-averaged %, for per-question records of 0/1 values."""
    tasks: Dict[str, Dict] = {}
    for task in list(TASKS) + sorted({r["task"] for r in records} - set(TASKS)):
        rs = [r for r in records if r["task"] == task]
        if rs:
            tasks[task] = {"n": len(rs), **{m: _mean([r[m] for r in rs]) for m in METRICS if m in rs[0]}}
    macro = {m: sum(t[m] for t in tasks.values()) / len(tasks)
             for m in METRICS if tasks and all(m in t for t in tasks.values())}
    return {"n": len(records), "tasks": tasks, "macro": macro}


@typechecked
def score_questions(questions: List[Dict], sys_dir: Path, norm: Optional[Normalizer] = None) -> Dict:
    """The ``qa_scores.json`` contents (see the module docstring).

    Raises:
        DataDirError: No output at all, or a question without one.
    """
    outputs = {n: read_outputs(sys_dir / n) for n in (OPTION_NLL, ANSWER) if (sys_dir / n).exists()}
    if not outputs:
        raise DataDirError(f"{sys_dir}: neither {OPTION_NLL} nor {ANSWER}")
    for name, values in outputs.items():
        missing = [q["id"] for q in questions if q["id"] not in values]
        if missing:
            raise DataDirError(f"{sys_dir / name}: no output for question {missing[0]}")
    norm = norm or whisper_english_normalizer()
    if OPTION_NLL in outputs:
        nlls = {q["id"]: _parse_nll(sys_dir / OPTION_NLL, q["id"], outputs[OPTION_NLL][q["id"]], len(q["options"]))
                for q in questions}
        by_options: Dict[Tuple, List[List[float]]] = {}  # (task, options) -> each item's option NLLs
        for q in questions:
            by_options.setdefault((q["task"], tuple(q["options"])), []).append([s for s, _ in nlls[q["id"]]])
        means = {key: [sum(column) / len(items) for column in zip(*items)] for key, items in by_options.items()}
    answers = {t: Counter(q["answer"] for q in questions if q["task"] == t) for t in {q["task"] for q in questions}}
    majority = {t: max(sorted(a), key=a.get) for t, a in answers.items()}
    records = []
    for q in questions:
        options, right = q["options"], q["options"].index(q["answer"])
        r = {"task": q["task"], "voice": q.get("voice"), "chance": 1.0 / len(options),
             "majority": float(q["answer"] == majority[q["task"]])}
        if OPTION_NLL in outputs:
            nll, mean = nlls[q["id"]], means[q["task"], tuple(options)]
            r["option_ll_acc"] = float(_argmin([s for s, _ in nll]) == right)
            r["option_ll_norm_acc"] = float(_argmin([s / max(n, 1) for s, n in nll]) == right)
            r["option_ll_calib_acc"] = float(_argmin([s - m for (s, _), m in zip(nll, mean)]) == right)
        if ANSWER in outputs:
            answer = outputs[ANSWER][q["id"]]
            answer = "" if answer == EMPTY else answer
            named = named_options(answer, options, norm)
            r["answer_acc"] = float(named[right] and sum(named) == 1)
            r["string_match_acc"] = float(string_match(q["answer"], answer, options))
            r["format_rate"] = float(sum(named) == 1)
        records.append(r)
    scores = _summary(records)
    if OPTION_NLL in outputs:
        scores["items"] = {q["id"]: [q["task"], int(r["option_ll_calib_acc"])] for q, r in zip(questions, records)}
    voices = sorted({r["voice"] for r in records if r["voice"]})
    if voices:
        scores["voice"] = {v: _summary([r for r in records if r["voice"] == v]) for v in voices}
    return scores


@typechecked
def mention_scores(descriptions: Dict[str, str], data_dir: Path, norm: Optional[Normalizer] = None) -> Dict:
    """The ``mention_scores.json`` contents (see the module docstring)."""
    norm = norm or whisper_english_normalizer()
    utts = sorted(descriptions)
    # Quoted speech ("she walked to ...") says nothing about the speaker.
    words = {u: norm(QUOTED.sub(" ", descriptions[u])).split() for u in utts}
    seen = read_seen(data_dir / "utt2seen") if (data_dir / "utt2seen").is_file() else {}
    records = {u: {} for u in utts}
    for name in MENTION_ATTRIBUTES:
        attribute = ATTRIBUTES[name]
        if attribute.file_in(data_dir) is None:
            continue
        values = {u: attribute.word(f, v) for u, (f, v) in read_attribute(data_dir, name, utts).items()}
        vocabulary = attribute.words or sorted(set(values.values()))
        phrases = {w: [norm(p).split() for p in attribute.phrases(w)] for w in vocabulary}
        for u in utts:
            kept = named(words[u], phrases)
            records[u][name] = (float(values[u] in kept), float(bool(kept - {values[u]})))

    def summary(us: List[str]) -> Dict:
        out = {}
        for name in MENTION_ATTRIBUTES:
            rs = [records[u][name] for u in us if name in records[u]]
            if rs:
                out[name] = {"n": len(rs), "right": _mean([a for a, _ in rs]), "wrong": _mean([b for _, b in rs])}
        return {"n": len(us), "attributes": out}

    scores = summary(utts)
    voices = sorted({seen[u] for u in utts if u in seen})
    if voices:
        scores["voice"] = {v: summary([u for u in utts if seen.get(u) == v]) for v in voices}
    return scores


def _cell(d: Dict, *keys: str) -> str:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return "–"
        d = d[k]
    return f"{d:.1f}"


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _accuracy_table(scores: Dict[str, Dict], metric: str) -> List[str]:
    """Chance and each system's ``metric`` per task, macro-averaged, and
    (accent and macro) per voice."""
    tasks = [t for t in list(TASKS) + sorted({t for s in scores.values() for t in s["tasks"]} - set(TASKS))
             if any(t in s["tasks"] for s in scores.values())]
    voices = sorted({v for s in scores.values() for v in s.get("voice", {})})
    # Accent and the macro average also per voice (seen in training or not).
    extra = [(v, t) for t in ("accent", "macro") if t == "macro" or t in tasks for v in voices]

    def cells(s: Dict, metric: str) -> List[str]:
        out = [_cell(s, "tasks", t, metric) for t in tasks] + [_cell(s, "macro", metric)]
        return out + [_cell(s, "voice", v, *(("macro",) if t == "macro" else ("tasks", t)), metric)
                      for v, t in extra]

    header = ["system"] + tasks + ["macro"] + [f"{t} ({v})" for v, t in extra]
    first = next(iter(scores.values()))
    rows = [["chance"] + cells(first, "chance"), ["majority answer"] + cells(first, "majority")]
    rows += [[SYSTEM_NAMES.get(s, s)] + cells(scores[s], metric) for s in row_order(scores)]
    return _table(header, rows)


def mcnemar_p(won: int, lost: int) -> float:
    """Exact two-sided McNemar p of ``won`` vs ``lost`` discordant pairs."""
    n = won + lost
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(won, lost) + 1)) / 2**n) if n else 1.0


def _paired_table(scores: Dict[str, Dict], baseline: str) -> List[str]:
    """Per task, each system against ``baseline`` on the same items
    (calibrated): "+won/-lost p"; a task whose items differ is left out."""
    base = scores[baseline]["items"]
    tasks = [t for t in list(TASKS) + sorted({t for t, _ in base.values()} - set(TASKS))
             if any(task == t for task, _ in base.values())]
    rows = []
    for s in row_order(scores):
        items = scores[s].get("items")
        if s == baseline or items is None or set(items) != set(base):
            continue
        cells = []
        for t in tasks:
            pairs = [(right, base[i][1]) for i, (task, right) in items.items() if task == t]
            won, lost = sum(a > b for a, b in pairs), sum(a < b for a, b in pairs)
            cells.append(f"+{won}/-{lost} p={mcnemar_p(won, lost):.2g}")
        rows.append([SYSTEM_NAMES.get(s, s)] + cells)
    return _table(["system"] + tasks, rows)


def _paired_lines(scores: Dict[str, Dict], baseline: str = "whisper_cascade") -> List[str]:
    if baseline not in scores or "items" not in scores[baseline]:
        return []
    return [f"Paired with {SYSTEM_NAMES.get(baseline, baseline)} on the same items (calibrated): "
            "items only the system got right (+) / only the cascade (-), exact McNemar p", ""] + \
        _paired_table(scores, baseline) + [""]


@typechecked
def results_tables(results_dir: Path) -> str:
    """Markdown tables per test set: option-LL accuracy per task, generated
    answers (macro), description probes, and attribute mentions in descriptions."""
    lines = []
    for set_dir in sorted(p for p in results_dir.iterdir() if p.is_dir()):
        qa = {p.parent.name: json.loads(p.read_text()) for p in set_dir.glob("*/qa_scores.json")}
        probes = {p.parent.parent.name: json.loads(p.read_text()) for p in set_dir.glob(f"*/{PROBE_DIR}/qa_scores.json")}
        mentions = {p.parent.name: json.loads(p.read_text()) for p in set_dir.glob("*/mention_scores.json")}
        if not qa and not probes and not mentions:
            continue
        lines += [f"### {set_dir.name}", ""]
        if qa:
            n = max(s["n"] for s in qa.values())
            lines += [f"Closed-set QA, option log-likelihood accuracy % ({n} questions)", ""]
            lines += _accuracy_table(qa, "option_ll_acc") + [""]
            lines += ["The same, calibrated (each option's NLL less its mean over the task's questions)", ""]
            lines += _accuracy_table(qa, "option_ll_calib_acc") + [""]
            lines += _paired_lines(qa)
            first = next(iter(qa.values()))
            gen = ["answer_acc", "string_match_acc", "format_rate"]
            rows = [["chance", _cell(first, "macro", "chance"), _cell(first, "macro", "chance"), "–"]]
            rows += [[SYSTEM_NAMES.get(s, s)] + [_cell(qa[s], "macro", m) for m in gen] for s in row_order(qa)]
            lines += ["Generated answers, macro average over tasks %", ""]
            lines += _table(["system", "consecutive-words acc", "MMAU string-match acc", "format rate"], rows)
            lines += [""]
        if probes:
            n = max(s["n"] for s in probes.values())
            counts = ", ".join(f"{t} {v['n']}" for t, v in next(iter(probes.values()))["tasks"].items())
            lines += [f"Description probes: accuracy % of the value whose phrase is likeliest where the reference "
                      f"description names it ({n} probes: {counts})", ""]
            lines += _accuracy_table(probes, "option_ll_acc") + [""]
            lines += ["The same, calibrated (each value's NLL less its mean over the attribute's probes)", ""]
            lines += _accuracy_table(probes, "option_ll_calib_acc") + [""]
            lines += _paired_lines(probes)
        if mentions:
            names = [a for a in MENTION_ATTRIBUTES if any(a in m["attributes"] for m in mentions.values())]
            rows = [[SYSTEM_NAMES.get(s, s)]
                    + [" / ".join(_cell(mentions[s], "attributes", a, k) for k in ("right", "wrong")) for a in names]
                    for s in row_order(mentions)]
            lines += ["Descriptions: % naming the right value / a wrong value", ""]
            lines += _table(["system"] + names, rows) + [""]
    return "\n".join(lines)


def main(cmd: Optional[List[str]] = None):
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sys_dir", type=Path, help="a system's eval dir: the scores go here")
    parser.add_argument("--questions", type=Path, help="questions.jsonl: score qa_option_nll, qa_answer")
    parser.add_argument("--descriptions", type=Path, help="uttid -> description: score attribute mentions")
    parser.add_argument("--data_dir", type=Path, help="the side files of --descriptions")
    parser.add_argument("--results", type=Path, help="print the tables of this eval dir")
    parser.add_argument("--out", type=Path, help="also write the tables here")
    args = parser.parse_args(cmd)
    setup(args)
    if (args.questions or args.descriptions) and not args.sys_dir:
        parser.error("--questions and --descriptions need --sys_dir")
    if args.descriptions and not args.data_dir:
        parser.error("--descriptions needs --data_dir")
    if not (args.questions or args.descriptions or args.results):
        parser.error("give --questions, --descriptions or --results")
    norm = whisper_english_normalizer() if args.questions or args.descriptions else None
    if args.questions:
        scores = score_questions(read_questions(args.questions), args.sys_dir, norm)
        write_text(args.sys_dir / "qa_scores.json", json.dumps(scores, indent=1) + "\n")
        logging.info(f"{args.sys_dir}/qa_scores.json: macro {scores['macro']}")
    if args.descriptions:
        descriptions = {k: "" if v == EMPTY else v for k, v in read_outputs(args.descriptions).items()}
        scores = mention_scores(descriptions, args.data_dir, norm)
        write_text(args.sys_dir / "mention_scores.json", json.dumps(scores, indent=1) + "\n")
        logging.info(f"{args.sys_dir}/mention_scores.json: {scores['attributes']}")
    if args.results:
        tables = results_tables(args.results)
        print(tables)
        if args.out:
            write_text(args.out, tables)


if __name__ == "__main__":
    main()
