"""Recipe check: the training prompt is the one the targets were written with.

``python -m espnet_blsp.bin.check_instruction --generation_config conf/continuation.yaml \\
    --train_config conf/train_blsp.yaml``

BLSP's targets are the LLM's answers to an instruction about the transcript
(stage 3); training must ask the same instruction about the speech, or the
adapter learns to answer another question. Every training task answered with
``response`` must use the generation config's instruction and chat-template
setting; the check fails naming both otherwise.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import yaml

from espnet_blsp.bin.generate_text import load_conf
from espnet_blsp.llm.prompt import resolve_instruction


def mismatches(generation_config: Path, train_config: Path) -> List[str]:
    """What differs between how the targets were made and how they are used."""
    gen = load_conf(generation_config, {})
    model_conf = (yaml.safe_load(train_config.read_text()) or {}).get("model_conf") or {}
    tasks = model_conf.get("tasks") or [{"instruction": model_conf.get("instruction") or "continuation"}]
    wanted = resolve_instruction(gen["instruction"])
    found = []
    for k, task in enumerate(tasks):
        if task.get("target", "response") != "response":
            continue
        used = resolve_instruction(task["instruction"])
        if used != wanted:
            found.append(f"{train_config} task {k} asks {used!r}, but {generation_config} made the targets with {wanted!r}")
    if model_conf.get("use_chat_template", True) != gen["use_chat_template"]:
        found.append(f"{train_config} and {generation_config} disagree on use_chat_template")
    return found


def main(cmd: Optional[List[str]] = None):
    """CLI entry point: exit 1 with the differences, if any."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generation_config", type=Path, required=True)
    parser.add_argument("--train_config", type=Path, nargs="+", required=True)
    args = parser.parse_args(cmd)
    problems = [p for config in args.train_config for p in mismatches(args.generation_config, config)]
    for p in problems:
        print(f"check_instruction: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
