"""Text generation throughput: the shared-prefix greedy decoder against HF generate.

    python bench/generate_throughput.py --llm egs2/mini_librispeech_synth/blsp/exp/models/smollm2-135m-instruct \\
        --config egs2/mini_librispeech_synth/desta2/conf/describe.yaml \\
        --text egs2/mini_librispeech_synth/desta2/dump/raw/dev_synth_aug/seed

Runs generate_text's batching (length-sorted batches, the config's prompt and
generation settings) over the first ``--limit`` utterances of ``--text``, once
per decoder and batch size, and prints utterances/s, generated tokens/s, the
prefix and row lengths, and whether both decoders wrote the same answers.
"""

import argparse
import time
from pathlib import Path

import torch

from espnet_blsp.bin.generate_text import load_conf, read_texts
from espnet_blsp.llm import greedy
from espnet_blsp.llm.batch import generate, text_rows
from espnet_blsp.llm.hf_causal_lm import HFCausalLM
from espnet_blsp.llm.prompt import build_prompt
from espnet_blsp.utils.audio import length_sorted_batches


def run(llm, prompt, texts, batch_size, generate_kwargs):
    """(answers, seconds) for all texts."""
    answers = [""] * len(texts)
    start = time.time()
    for batch in length_sorted_batches(list(range(len(texts))), [len(t) for t in texts], batch_size):
        rows = text_rows(llm, [texts[i] for i in batch], prompt)
        for i, a in zip(batch, generate(llm, rows, prompt, **generate_kwargs)):
            answers[i] = a
    return answers, time.time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llm", required=True)
    parser.add_argument("--config", type=Path, help="generate_text YAML")
    parser.add_argument("--text", type=Path, required=True, help="Kaldi text file")
    parser.add_argument("--limit", type=int, default=64, help="utterances")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--num_threads", type=int, default=1, help="as one recipe job runs")
    args = parser.parse_args()
    torch.set_num_threads(args.num_threads)

    conf = load_conf(args.config, {})
    llm = HFCausalLM(args.llm, dtype=conf["dtype"])
    prompt = build_prompt(llm.tokenizer, conf["instruction"], conf["use_chat_template"])
    texts = read_texts(args.text, conf)[1][: args.limit]
    rows = text_rows(llm, texts, prompt)
    print(f"{len(texts)} utterances; prefix {len(prompt.prefix)} tokens, rows {sum(len(r['speech']) for r in rows) / len(rows):.0f} "
          f"tokens on average; {llm.dtype}, {args.num_threads} thread(s); generate {conf['generate']}")
    run(llm, prompt, texts[:2], 2, conf["generate"])  # warm-up
    for batch_size in args.batch_sizes:
        results = {}
        for name in ("greedy", "hf"):
            handles = greedy.handles
            if name == "hf":
                greedy.handles = lambda model, kwargs: False
            try:
                answers, seconds = run(llm, prompt, texts, batch_size, conf["generate"])
            finally:
                greedy.handles = handles
            tokens = sum(len(llm.tokenizer(a, add_special_tokens=False).input_ids) + 1 for a in answers)
            results[name] = answers
            print(f"batch {batch_size:3d} {name:6s}: {len(texts) / seconds:6.2f} utt/s {tokens / seconds:7.1f} tok/s")
        same = sum(a == b for a, b in zip(results["greedy"], results["hf"]))
        print(f"batch {batch_size:3d}: {same} of {len(texts)} answers the same")


if __name__ == "__main__":
    main()
