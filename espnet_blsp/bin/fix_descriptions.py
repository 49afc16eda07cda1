"""Recipe stage: training descriptions that name each attribute's true value.

DeSTA2 trusts its LLM to restate the seed's metadata; Llama-3-8B does. The
demo's SmolLM2-135M often does not: of its 1223 training descriptions, 48.7 %
name the seed's volume and 51.1 % another one, 45.3 % / 54.6 % for
reverberation (speed 69.7 / 17.7, pitch 82.8 / 16.9; gender, accent and noise
are right in 89-100 %). Trained on them, a model can only learn the LLM's
guesses. This step keeps each description as the LLM wrote it and replaces
every phrase naming a wrong value of an attribute the data dir labels by the
true value's phrase most like it ("the volume is high" -> "the volume is
low", with the article and capital fitted as ``make_probe`` fits them)::

    python -m espnet_blsp.bin.fix_descriptions --data_dir dump/raw/train_synth_aug \\
        --input dump/raw/train_synth_aug/description_llm --output dump/raw/train_synth_aug/description

Quoted text (the transcript) is left alone. A deviation from DeSTA2, for
small LLMs: the recipe applies it to the training and validation targets
only (``desta2.sh --fix_targets true``), never to a test set's reference.
"""

import argparse
import logging
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from typeguard import typechecked

from espnet_blsp.bin.make_probe import PROBE_ATTRIBUTES, continuation_texts, mentions, parallel_phrase, value_phrases
from espnet_blsp.utils.cli import setup
from espnet_blsp.utils.kaldi_dir import DataDirError, read_kv, write_text


def fix_text(text: str, phrases: Dict[str, Sequence[str]], right: str) -> Tuple[str, int]:
    """``text`` with every mention of a value other than ``right`` replaced
    by ``right``'s parallel phrase; and how many were replaced."""
    wrong = [m for m in mentions(text, phrases) if m[2] != right]
    for start, end, value, used in reversed(wrong):  # from the end: earlier offsets hold
        phrase = parallel_phrase(used, phrases[value].index(used), phrases[right])
        cut, (replacement,) = continuation_texts(text, start, [phrase])
        text = text[:cut] + replacement + text[end:]
    return text, len(wrong)


@typechecked
def fix_descriptions(
    data_dir: Path, descriptions: Dict[str, str], attributes: Sequence[str] = PROBE_ATTRIBUTES
) -> Tuple[Dict[str, str], Dict[str, Counter]]:
    """The fixed descriptions, and per attribute how many descriptions were
    fixed, already right (named only the true value) or named none.

    Raises:
        DataDirError: A description missing for an utterance of ``data_dir``,
            or a side file missing one (naming the file and utterance).
    """
    utts = [u for u, _ in read_kv(data_dir / "text")]
    for u in utts:
        if not descriptions.get(u, "").strip():
            raise DataDirError(f"{data_dir}: utterance {u}: no description (or an empty one)")
    fixed = {u: descriptions[u] for u in utts}
    counts = {}
    for name in attributes:
        found = value_phrases(data_dir, name, utts)
        if found is None:
            continue
        values, phrases = found
        counts[name] = Counter()
        for u in utts:
            if not mentions(fixed[u], phrases):
                counts[name]["none"] += 1
                continue
            fixed[u], n = fix_text(fixed[u], phrases, values[u])
            counts[name]["fixed" if n else "right"] += 1
    return fixed, counts


def main(cmd: Optional[List[str]] = None):
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True, help="with the side files")
    parser.add_argument("--input", type=Path, required=True, help="uttid -> the LLM's description")
    parser.add_argument("--output", type=Path, required=True, help="uttid -> fixed description")
    parser.add_argument("--attributes", nargs="+", default=list(PROBE_ATTRIBUTES))
    args = parser.parse_args(cmd)
    setup(args)
    descriptions = dict(read_kv(args.input, allow_empty_value=True))
    fixed, counts = fix_descriptions(args.data_dir, descriptions, args.attributes)
    write_text(args.output, "".join(f"{u} {t}\n" for u, t in fixed.items()))
    for name, c in counts.items():
        logging.info(f"{args.output}: {name}: {c['fixed']} fixed, {c['right']} right, {c['none']} name none")


if __name__ == "__main__":
    main()
