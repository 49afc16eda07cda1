"""Recipe stage: one system answers (a split of) the closed-set questions.

Writes two resumable Kaldi-style files into ``--out_dir``::

    qa_option_nll   qid s1 n1 s2 n2 ...   per option (the file's order): summed
                                          teacher-forced NLL and token count of
                                          the response "Option" + end of turn
    qa_answer       qid answer            the greedy answer (``<empty>`` if none)

Lines are in processing order (grouped by utterance), not sorted. Each
question's prompt is ``ask(base, instruction)``: the question put into the
system's prompt (``espnet_blsp.llm.prompt.ask``). The LLM either reads text
where the speech would be (``--text``; ``--prompt`` gives the base, with only
the ``<speech>`` slot)::

    python -m espnet_blsp.bin.evaluate_qa --questions qa/test/questions.jsonl --keys qa/test/split/qids.1 \\
        --out_dir exp/.../eval/test/text_llm --text dump/raw/test/seed --llm exp/llm --prompt describe_seed

or hears speech with a trained (or, without ``--model_file``, untrained)
model, whose training prompt is the base; ``--asr_hyp`` fills its
``<asr_hyp>`` slot (DeSTA2's Whisper transcript)::

    python -m espnet_blsp.bin.evaluate_qa --questions qa/test/questions.jsonl --out_dir exp/.../eval/test/desta \\
        --speech dump/raw/test/wav.scp,sound --train_config exp/desta/config.yaml \\
        --model_file exp/desta/valid.loss.ave.pth --asr_hyp dump/raw/test/whisper_text

Each batch holds ``--batch_size`` questions: their options are scored in one
LLM call (packed after one copy of each question's prompt) and their answers
generated in another. A rerun skips the questions
already in each file.

Description probes (``make_probe``) go through the same command: only
``qa_option_nll`` is written, each option's NLL being that of its
continuation of the reference description (no end of turn), and a batch
holds ``--batch_size`` utterances with all their probes.
"""

import argparse
import itertools
import logging
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from espnet_blsp.bin.make_qa import read_questions
from espnet_blsp.llm.abs_llm import AbsLLM
from espnet_blsp.llm.batch import Row, branch_scores, generate, option_scores, text_rows
from espnet_blsp.llm.prompt import SPEECH, Prompt, PromptSpec, ask, build_prompt, token_ids
from espnet_blsp.utils.cli import add_num_threads, setup
from espnet_blsp.utils.kaldi_dir import read_kv, read_values
from espnet_blsp.utils.progress import Progress
from espnet_blsp.utils.resumable import ResumableWriter, batches_to_do, done_keys
from espnet_blsp.utils.stamp import reset_if_stale, stamp_of
from espnet_blsp.utils.text import sentence_case

OPTION_NLL, ANSWER = "qa_option_nll", "qa_answer"
EMPTY = "<empty>"  # Kaldi values cannot be empty

RowsFor = Callable[[Sequence[Dict]], List[Row]]


def response_text(option: str) -> str:
    """The response scored for an option: it capitalised (``Received pronunciation``)."""
    return option[:1].upper() + option[1:]


class PromptCache:
    """Each distinct question's prompt, built once.

    Args:
        make_prompt: Prompt spec -> tokenized prompt (the LLM's template).
        base: The system's prompt (a name, text or turns) the questions go into.
        slots: The slots the prompts may have (what the system can fill).
    """

    def __init__(self, make_prompt: Callable[[PromptSpec], Prompt], base: PromptSpec, slots: Sequence[str]):
        self.make_prompt, self.base, self.slots = make_prompt, base, set(slots)
        self._prompts: Dict[str, Prompt] = {}

    def __call__(self, instruction: str) -> Prompt:
        if instruction not in self._prompts:
            prompt = self.make_prompt(ask(self.base, instruction))
            unfilled = set(prompt.slots) - self.slots
            if unfilled:
                raise ValueError(f"prompt {self.base!r} has slots {sorted(unfilled)} nothing fills")
            self._prompts[instruction] = prompt
        return self._prompts[instruction]


@torch.no_grad()
def answer_questions(
    llm: AbsLLM,
    questions: Sequence[Dict],
    prompt_for: Callable[[str], Prompt],
    rows_for: RowsFor,
    out_dir: Path,
    batch_size: int,
    generate_kwargs: Dict,
) -> int:
    """Writes ``qa_option_nll`` and ``qa_answer`` lines for the questions not yet done.

    Args:
        llm: The LLM (of the model, for speech).
        questions: As ``make_qa`` writes them.
        prompt_for: A question's instruction -> its prompt.
        rows_for: Questions -> what fills each one's slots.
        batch_size: Questions per LLM call (option scoring: their options).
        generate_kwargs: For the answers (e.g. ``max_new_tokens``).

    Returns:
        The number of questions processed by this call.
    """
    with ResumableWriter(out_dir / OPTION_NLL) as nll_out, ResumableWriter(out_dir / ANSWER) as ans_out:
        def finished(q: Dict) -> bool:
            return q["id"] in nll_out.done and q["id"] in ans_out.done

        todo = sum(not finished(q) for q in questions)
        if todo < len(questions):
            logging.info(f"{out_dir}: {len(questions) - todo} of {len(questions)} questions already done")
        # Questions of one utterance together: its speech is encoded once per batch.
        ordered = sorted(questions, key=lambda q: (q["utt"], q["id"]))
        plan = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
        progress = Progress(todo, what="questions")
        for batch, missing in batches_to_do(plan, finished):
            rows = rows_for(batch)
            prompts = [prompt_for(q["instruction"]) for q in batch]
            if any(q["id"] not in nll_out.done for q in batch):
                # A question's options packed after one copy of its prompt.
                options = [[response_text(o) for o in q["options"]] for q in batch]
                scores = option_scores(llm, rows, prompts, options)
                lines = [(q["id"], " ".join(f"{s:.4f} {n}" for s, n in sc)) for q, sc in zip(batch, scores)]
                nll_out.write_batch([(i, v) for i, v in lines if i not in nll_out.done])
            if any(q["id"] not in ans_out.done for q in batch):
                answers = generate(llm, rows, prompts, **generate_kwargs)
                ans_out.write_batch([(q["id"], " ".join(a.split()) or EMPTY)
                                     for q, a in zip(batch, answers) if q["id"] not in ans_out.done])
            progress.update(len(missing))
    return todo


def probe_branches(tokenizer, probes: Sequence[Dict]) -> Tuple[List[int], List[Tuple[int, List[int]]]]:
    """One utterance's probes as one stem (its reference's longest context)
    and per probe, per option, a branch (``llm.batch.branch_scores``).

    The stem is tokenized piecewise, cut where each probe's context ends, so
    every context is a run of whole tokens.

    Raises:
        ValueError: Contexts that are not prefixes of one text.
    """
    stem_text = max((p["context"] for p in probes), key=len)
    if any(not stem_text.startswith(p["context"]) for p in probes):
        raise ValueError(f"utterance {probes[0]['utt']}: the probes' contexts are not of one reference")
    cuts = sorted({len(p["context"]) for p in probes})
    stem, ends = [], {}
    for a, b in zip([0] + cuts, cuts):
        stem += token_ids(tokenizer, stem_text[a:b])
        ends[b] = len(stem)
    branches = [(ends[len(p["context"])], token_ids(tokenizer, c)) for p in probes for c in p["continuations"]]
    return stem, branches


@torch.no_grad()
def answer_probes(
    llm: AbsLLM,
    probes: Sequence[Dict],
    prompt_for: Callable[[str], Prompt],
    rows_for: RowsFor,
    out_dir: Path,
    batch_size: int,
) -> int:
    """Writes ``qa_option_nll`` lines for the probes (``make_probe``) not yet done.

    Each utterance's prompt is followed once by its reference description
    as far as its probes read it, and each probe's continuations branch off
    where its context ends (scored without the end of turn: the description
    goes on).

    Args:
        batch_size: Utterances per LLM call.

    Returns:
        The number of probes scored by this call.
    """
    groups: Dict[str, List[Dict]] = {}
    for p in sorted(probes, key=lambda p: (p["utt"], p["id"])):
        groups.setdefault(p["utt"], []).append(p)
    plan = list(groups.values())
    plan = [plan[i : i + batch_size] for i in range(0, len(plan), batch_size)]
    with ResumableWriter(out_dir / OPTION_NLL) as out:
        todo = sum(p["id"] not in out.done for p in probes)
        progress = Progress(todo, what="probes")
        for batch, _ in batches_to_do(plan, lambda g: all(p["id"] in out.done for p in g)):
            rows = rows_for([g[0] for g in batch])
            prompts = [prompt_for(g[0]["instruction"]) for g in batch]
            stems, branches = zip(*(probe_branches(llm.tokenizer, g) for g in batch))
            lines = []
            for group, scores in zip(batch, branch_scores(llm, rows, prompts, stems, branches)):
                scores = iter(scores)
                for p in group:
                    value = " ".join(f"{s:.4f} {n}" for s, n in itertools.islice(scores, len(p["continuations"])))
                    if p["id"] not in out.done:
                        lines.append((p["id"], value))
            out.write_batch(lines)
            progress.update(len(lines))
    return todo


def text_system(llm: AbsLLM, texts: Dict[str, str], spec: PromptSpec):
    """Prompts and rows for an LLM that reads ``texts`` where the speech would be."""
    prompt_for = PromptCache(lambda s: build_prompt(llm.tokenizer, s), spec, [SPEECH])

    def rows_for(batch: Sequence[Dict]) -> List[Row]:
        return [text_rows(llm, [texts[q["utt"]]], prompt_for(q["instruction"]))[0] for q in batch]

    return prompt_for, rows_for


def speech_system(s2r, speech: Dict[str, np.ndarray], asr_hyp: Optional[Dict[str, str]]):
    """Prompts and rows for a model hearing ``speech`` (and reading ``asr_hyp``)."""
    slots = [SPEECH] + (["asr_hyp"] if asr_hyp is not None else [])
    prompt_for = PromptCache(s2r.model.make_prompt, s2r.model.tasks[0].spec, slots)
    cache: Dict[str, Row] = {}  # the last batch's utterances

    def rows_for(batch: Sequence[Dict]) -> List[Row]:
        nonlocal cache
        utts = list(dict.fromkeys(q["utt"] for q in batch))
        new = [u for u in utts if u not in cache]
        if new:
            texts = {"asr_hyp": [asr_hyp[u] for u in new]} if asr_hyp is not None else None
            cache.update(zip(new, s2r.rows([speech[u] for u in new], texts)))
        cache = {u: cache[u] for u in utts}
        return [cache[q["utt"]] for q in batch]

    return prompt_for, rows_for


def main(cmd: Optional[List[str]] = None):
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=Path, required=True,
                        help="questions.jsonl from make_qa, or probes.jsonl from make_probe")
    parser.add_argument("--keys", type=Path, help="only these question ids (first column; a job's split)")
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument("--batch_size", type=int, default=8, help="questions (probes: utterances) per LLM call")
    parser.add_argument("--max_new_tokens", type=int, default=24)
    text = parser.add_argument_group("the LLM reads text")
    text.add_argument("--text", type=Path, help="uttid -> text read in the <speech> slot (seed, transcript)")
    text.add_argument("--llm", help="HF causal LM")
    text.add_argument("--prompt", default="describe_seed", help="a name in INSTRUCTIONS or text with <speech>")
    text.add_argument("--dtype", default="auto")
    speech = parser.add_argument_group("the LLM hears speech")
    speech.add_argument("--speech", help="SCP,TYPE: wav.scp,sound or feats.scp,kaldi_ark")
    speech.add_argument("--train_config", type=Path)
    speech.add_argument("--model_file", type=Path, help="omit for the untrained adapter")
    speech.add_argument("--asr_hyp", type=Path, help="uttid -> transcript for the <asr_hyp> slot")
    speech.add_argument("--seed", type=int, default=0, help="seeds the untrained adapter")
    add_num_threads(parser)
    args = parser.parse_args(cmd)
    setup(args)
    if (args.text is None) == (args.speech is None):
        parser.error("give exactly one of --text and --speech")
    keys = [k for k, _ in read_kv(args.keys, allow_empty_value=True)] if args.keys else None
    questions = read_questions(args.questions, keys)
    probes = any("context" in q for q in questions)
    if probes and not all("context" in q and "continuations" in q for q in questions):
        parser.error(f"{args.questions}: mixes probes (context, continuations) and questions")
    outputs = [args.out_dir / OPTION_NLL] + ([] if probes else [args.out_dir / ANSWER])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    reset_if_stale(
        args.out_dir / ".evaluate_qa.stamp", stamp_of(vars(args), ignore=("out_dir", "num_threads")), outputs
    )
    done = set.intersection(*(done_keys(o) for o in outputs))
    if all(q["id"] in done for q in questions):
        logging.info(f"{args.out_dir}: all {len(questions)} questions already done")
        return
    # All inputs: a batch still to do may hold questions already answered.
    utts = sorted({q["utt"] for q in questions})
    generate_kwargs = {"max_new_tokens": args.max_new_tokens, "do_sample": False}

    if args.text:
        from espnet_blsp.llm.hf_causal_lm import HFCausalLM

        llm = HFCausalLM(args.llm, dtype=args.dtype)
        texts = {u: sentence_case(t) for u, t in read_values(args.text, utts, allow_empty_value=True).items()}
        prompt_for, rows_for = text_system(llm, texts, args.prompt)
    else:
        from espnet_blsp.bin.blsp_inference import Speech2Response, load_split

        torch.manual_seed(args.seed)
        s2r = Speech2Response(args.train_config, args.model_file)
        llm = s2r.model.llm
        has_hyp = "asr_hyp" in s2r.model.prompt.slots
        if has_hyp and args.asr_hyp is None:
            parser.error(f"{args.train_config}: the training prompt has an <asr_hyp> slot: give --asr_hyp")
        if args.asr_hyp is not None and not has_hyp:
            logging.warning(f"{args.train_config}: no <asr_hyp> slot in the training prompt; --asr_hyp unused")
        scp, kind = args.speech.split(",")
        loaded = dict(zip(*load_split(scp, kind, utts))) if utts else {}  # once per utterance
        hyps = read_values(args.asr_hyp, utts, allow_empty_value=True) if has_hyp else None
        prompt_for, rows_for = speech_system(s2r, loaded, hyps)

    if probes:
        n = answer_probes(llm, questions, prompt_for, rows_for, args.out_dir, args.batch_size)
    else:
        n = answer_questions(llm, questions, prompt_for, rows_for, args.out_dir, args.batch_size, generate_kwargs)
    logging.info(f"{args.out_dir}: {n} {'probes' if probes else 'questions'} answered")


if __name__ == "__main__":
    main()
