"""Recipe stage: the LLM answers an instruction about each transcript.

BLSP step 1 (the continuation targets), and the text rows of the results
(the LLM reading the reference or a Whisper transcript)::

    python -m espnet_blsp.bin.generate_text --llm exp/llm --config conf/continuation.yaml \\
        --text dump/raw/train/text --output dump/raw/train/continuation

Batched with left padding over length-sorted inputs, greedy by default, and
resumable: a restarted job continues after the last complete batch (and
starts over if the LLM, input or settings changed).
"""

import argparse
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml
from typeguard import typechecked

from espnet_blsp.llm.batch import text_rows
from espnet_blsp.llm.hf_causal_lm import HFCausalLM
from espnet_blsp.llm.prompt import build_prompt
from espnet_blsp.llm.respond import respond
from espnet_blsp.utils.cli import add_num_threads, setup
from espnet_blsp.utils.kaldi_dir import read_kv
from espnet_blsp.utils.stamp import beside, reset_if_stale, stamp_of
from espnet_blsp.utils.text import sentence_case

DEFAULTS: Dict[str, Any] = {
    "instruction": "continuation",  # a name in llm.prompt.INSTRUCTIONS, or text
    "use_chat_template": True,
    "dtype": "auto",
    "batch_size": 16,
    "sentence_case": True,
    "generate": {"max_new_tokens": 64, "do_sample": False},
}


@typechecked
def generate_file(
    llm: HFCausalLM,
    text: Path,
    output: Path,
    conf: Dict[str, Any],
    score_text: Optional[Path] = None,
) -> int:
    """Writes ``uttid response`` lines for every transcript not yet done.

    With ``score_text`` (uttid -> response), writes ``uttid nll_sum ntokens``
    instead: the teacher-forced loss of that response given the transcript.

    Returns:
        The number of utterances processed by this call.
    """
    prompt = build_prompt(llm.tokenizer, conf["instruction"], conf["use_chat_template"])
    keys, texts = read_texts(text, conf)
    return respond(
        llm, prompt, keys, [len(t) for t in texts],
        lambda idx: text_rows(llm, [texts[i] for i in idx], prompt),
        output, conf["batch_size"], conf["generate"],
        references=dict(read_kv(score_text)) if score_text else None,
    )


def read_texts(text: Path, conf: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """The utterance ids of a Kaldi text file and their texts as the LLM reads them."""
    items = read_kv(text)
    return [k for k, _ in items], [sentence_case(v) if conf["sentence_case"] else v for _, v in items]


def load_conf(path: Optional[Path], overrides: Dict[str, Any]) -> Dict[str, Any]:
    """Defaults <- YAML file <- command-line overrides."""
    conf = {**DEFAULTS, "generate": dict(DEFAULTS["generate"])}
    if path is not None:
        loaded = yaml.safe_load(path.read_text()) or {}
        conf.update({k: v for k, v in loaded.items() if k != "generate"})
        conf["generate"].update(loaded.get("generate", {}))
    conf.update({k: v for k, v in overrides.items() if v is not None})
    return conf


def main(cmd: Optional[List[str]] = None):
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llm", required=True, help="HF causal LM (hub name or dir)")
    parser.add_argument("--text", type=Path, required=True, help="Kaldi text file")
    parser.add_argument("--output", type=Path, required=True, help="uttid -> response")
    parser.add_argument("--config", type=Path, help="YAML: instruction, batch_size, generate")
    parser.add_argument("--instruction", help="overrides the config: a registered name, or text with <speech>")
    parser.add_argument("--batch_size", type=int)
    parser.add_argument("--score_text", type=Path, help="write the NLL of these responses")
    add_num_threads(parser)
    args = parser.parse_args(cmd)
    setup(args)
    conf = load_conf(args.config, {"instruction": args.instruction, "batch_size": args.batch_size})
    # Answers made by another LLM, input or generation setting are not resumed.
    settings = {"llm": args.llm, "text": args.text, "score_text": args.score_text, "conf": conf}
    reset_if_stale(beside(args.output), stamp_of(settings), [args.output])
    llm = HFCausalLM(args.llm, dtype=conf["dtype"])
    n = generate_file(llm, args.text, args.output, conf, args.score_text)
    logging.info(f"{args.output}: {n} utterances done")


if __name__ == "__main__":
    main()
