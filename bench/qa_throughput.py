"""Closed-set question throughput: options packed after one prompt against one row per option.

    python bench/qa_throughput.py --exp egs2/mini_librispeech_synth/desta2/exp/desta2_train_desta2 \\
        --questions egs2/mini_librispeech_synth/desta2/dump/qa/test_synth_aug/questions.jsonl \\
        --feats egs2/mini_librispeech_synth/desta2/dump/encoder_layers0-1-2-3/test_synth_aug/feats.scp \\
        --asr_hyp egs2/mini_librispeech_synth/desta2/dump/raw/test_synth_aug/asr_hyp

Takes the questions of the first ``--utts`` utterances and times, in
evaluate_qa's batches, the three parts of answering them: scoring the options
one row per option (evaluate_qa before packing), scoring them packed
(``option_scores``, what evaluate_qa runs), and generating the answers. Prints
questions/s for each and the largest difference between the two scorings.
"""

import argparse
import time
from pathlib import Path

import torch

from espnet_blsp.bin.blsp_inference import Speech2Response, load_split
from espnet_blsp.bin.evaluate_qa import response_text, speech_system
from espnet_blsp.bin.make_qa import read_questions
from espnet_blsp.llm.batch import generate, option_scores, response_scores
from espnet_blsp.utils.kaldi_dir import read_values


def one_row_per_option(llm, rows, prompts, options):
    """Per question, per option, (NLL, tokens): each option its own row."""
    flat = [(k, o) for k, opts in enumerate(options) for o in opts]
    scores = iter(response_scores(llm, [rows[k] for k, _ in flat], [prompts[k] for k, _ in flat], [o for _, o in flat]))
    return [[next(scores) for _ in opts] for opts in options]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exp", type=Path, required=True, help="trained exp dir (config.yaml, valid.loss.ave.pth)")
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--feats", type=Path, required=True, help="the dumped encoder frames of the test set")
    parser.add_argument("--asr_hyp", type=Path, help="for a prompt with an <asr_hyp> slot")
    parser.add_argument("--utts", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=8, help="questions per LLM call")
    parser.add_argument("--num_threads", type=int, default=1, help="as one recipe job runs")
    args = parser.parse_args()
    torch.set_num_threads(args.num_threads)

    questions = read_questions(args.questions)
    utts = sorted({q["utt"] for q in questions})[: args.utts]
    questions = sorted((q for q in questions if q["utt"] in utts), key=lambda q: (q["utt"], q["id"]))
    s2r = Speech2Response(args.exp / "config.yaml", args.exp / "valid.loss.ave.pth")
    llm = s2r.model.llm
    speech = dict(zip(*load_split(str(args.feats), "kaldi_ark", utts)))
    hyps = read_values(args.asr_hyp, utts, allow_empty_value=True) if args.asr_hyp else None
    prompt_for, rows_for = speech_system(s2r, speech, hyps)
    batches = [questions[i : i + args.batch_size] for i in range(0, len(questions), args.batch_size)]
    inputs = []
    for batch in batches:
        options = [[response_text(o) for o in q["options"]] for q in batch]
        inputs.append((rows_for(batch), [prompt_for(q["instruction"]) for q in batch], options))
    n_options = sum(len(q["options"]) for q in questions)
    print(f"{len(questions)} questions ({n_options} options) of {len(utts)} utterances, batches of "
          f"{args.batch_size}; {llm.dtype}, {args.num_threads} thread(s)")

    def timed(name, fn):
        option_scores(llm, *inputs[0])  # warm-up
        start = time.time()
        out = [fn(*x) for x in inputs]
        seconds = time.time() - start
        print(f"{name:28s}: {len(questions) / seconds:6.2f} questions/s ({seconds:.1f} s)")
        return out

    with torch.no_grad():
        old = timed("options, one row each", lambda r, p, o: one_row_per_option(llm, r, p, o))
        new = timed("options packed", lambda r, p, o: option_scores(llm, r, p, o))
        timed("answers (24 new tokens)", lambda r, p, o: generate(llm, r, p, max_new_tokens=24, do_sample=False))
    diff = max(abs(a[0] - b[0]) for x, y in zip(old, new) for qa, qb in zip(x, y) for a, b in zip(qa, qb))
    print(f"largest NLL difference between the scorings: {diff:.2e}")


if __name__ == "__main__":
    main()
