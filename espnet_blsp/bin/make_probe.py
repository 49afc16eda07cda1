"""Recipe stage: description probes, closed-set questions in the trained answer format.

The closed-set questions (``make_qa``) ask a small LLM a question it was
never taught to answer from speech; with SmolLM2-135M every system, the LLM
reading the seed included, stays at chance on them. A probe asks instead
where DeSTA2 was taught: inside the description. The reference description
(the LLM's answer to "What can you hear from the audio?" about the seed) is
read up to where it first names an attribute's value ("The audio features
a| female speaker ..."), and each value's phrase is scored as the next
words, given the system's own input::

    python -m espnet_blsp.bin.make_probe --data_dir dump/raw/test_synth_aug \\
        --reference dump/raw/test_synth_aug/description --output qa/test_synth_aug/probes.jsonl

writes one JSON line per (utterance, attribute named in its reference),
read by ``evaluate_qa`` and ``score_qa`` like a question::

    {"id": "1005-3-0007_gender", "utt": "1005-3-0007", "task": "gender",
     "instruction": "What can you hear from the audio?",
     "context": "The audio features a", "continuations": [" female", " male"],
     "options": ["female", "male"], "answer": "female", "voice": "seen"}

The answer is the side files' value, whatever value the reference named.
Each value's phrase is the one most like the phrase the reference used (the
most words shared, then the same place in ``Attribute.mentions``: "she" ->
"he"), with its capitalisation and the article before it fitted ("with| a
Welsh accent", "with| an Irish accent": the reference's article would give
its value away). Attributes: those of the mention scores
(gender, accent, speed, pitch, volume, noise, reverb) the dir has; an
utterance whose reference names none of an attribute's values gets no probe
of it. Quoted text (the transcript a description quotes) is not searched.
"""

import argparse
import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from typeguard import typechecked

from espnet_blsp.bin.make_qa import read_seen
from espnet_blsp.bin.make_seed import read_attribute
from espnet_blsp.data.attributes import ATTRIBUTES
from espnet_blsp.llm.prompt import DESCRIPTION_QUESTION
from espnet_blsp.utils.cli import setup
from espnet_blsp.utils.kaldi_dir import DataDirError, read_kv, write_text

PROBE_ATTRIBUTES = ("gender", "accent", "speed", "pitch", "volume", "noise", "reverb")
QUOTED = re.compile(r'"[^"]*"|“[^”]*”')

# (start, end, value, phrase) of a phrase found in a text
Mention = Tuple[int, int, str, str]


def phrase_pattern(phrase: str) -> re.Pattern:
    """Whole words, any case, a space or hyphen between them (``high-pitched``)."""
    words = r"[\s-]+".join(re.escape(w) for w in re.split(r"[\s-]+", phrase))
    return re.compile(rf"(?<![\w-]){words}(?![\w-])", re.IGNORECASE)


def mentions(text: str, phrases: Dict[str, Sequence[str]]) -> List[Mention]:
    """Every phrase of any value in ``text`` outside quotes, in order; where
    phrases overlap, the earliest (then longest, then spelt as found) wins."""
    quoted = [m.span() for m in QUOTED.finditer(text)]
    found = sorted(
        (m.start(), -m.end(), m.group().lower() != phrase.lower(), value, phrase)
        for value, ps in phrases.items() for phrase in ps for m in phrase_pattern(phrase).finditer(text)
        if not any(a <= m.start() < b for a, b in quoted)
    )
    out, end = [], 0
    for start, neg_end, _, value, phrase in found:
        if start >= end:
            out.append((start, -neg_end, value, phrase))
            end = -neg_end
    return out


def first_mention(text: str, phrases: Dict[str, Sequence[str]]) -> Optional[Mention]:
    """The first of :func:`mentions`, or None."""
    found = mentions(text, phrases)
    return found[0] if found else None


ValuePhrases = Tuple[Dict[str, str], Dict[str, Tuple[str, ...]]]  # uttid -> value, value -> its phrases


def value_phrases(data_dir: Path, name: str, utts: Sequence[str]) -> Optional[ValuePhrases]:
    """Each utterance's value of attribute ``name`` (its word) and each value's
    phrases, or None when ``data_dir`` has no side file of it.

    Raises:
        DataDirError: A side file missing an utterance or holding an unknown value.
    """
    attribute = ATTRIBUTES[name]
    if attribute.file_in(data_dir) is None:
        return None
    values = {u: attribute.word(f, v) for u, (f, v) in read_attribute(data_dir, name, utts).items()}
    vocabulary = list(attribute.words or sorted(set(values.values())))
    # An open set's values are names, written as the labels have them ("New York").
    return values, {w: attribute.phrases(w) if attribute.words else (w,) for w in vocabulary}


def parallel_phrase(used: str, index: int, candidates: Sequence[str]) -> str:
    """The candidate most like ``used`` (``index``-th of its value's phrases):
    most words shared, then the same index, then the first."""
    words = set(re.split(r"[\s-]+", used.lower()))

    def rank(k: int):
        shared = len(words & set(re.split(r"[\s-]+", candidates[k].lower())))
        return -shared, k != index, k

    return candidates[min(range(len(candidates)), key=rank)]


def continuation_texts(text: str, start: int, phrases: Sequence[str]) -> Tuple[int, List[str]]:
    """Where the context ends, and each phrase written as ``text`` would go on
    from there in its place at ``start``.

    The space before the phrase goes with it (the tokenizer glues it to the
    word), and so does an article right before it, fitted to each phrase
    ("with a| Welsh", "with an| Irish" would give the answer away); the
    phrase takes the capital of the word it replaces.
    """
    cut = len(text[:start].rstrip())
    article = re.search(r"(?<![\w-])(an?)$", text[:cut], re.IGNORECASE)
    head = ""
    if article:
        cut = len(text[: article.start()].rstrip())
        head = text[cut : article.start()]
    out = []
    for p in phrases:
        if text[start].isupper():
            p = p[:1].upper() + p[1:]
        if article:
            a = "an" if p[:1].lower() in "aeiou" else "a"
            p = head + (a.capitalize() if article.group(1)[0].isupper() else a) + text[article.end() : start] + p
        else:
            p = text[cut:start] + p
        out.append(p)
    return cut, out


@typechecked
def make_probes(data_dir: Path, reference: Dict[str, str], attributes: Sequence[str] = PROBE_ATTRIBUTES) -> List[Dict]:
    """The probes of ``data_dir``'s utterances (see the module docstring), sorted by id.

    Args:
        data_dir: A data dir with ``text`` and side files.
        reference: uttid -> the reference description.
        attributes: Names in ``ATTRIBUTES`` with closed or set-wide vocabularies.

    Raises:
        DataDirError: An utterance without a reference (or an empty one), a
            missing side file or value (naming the file and utterance).
    """
    utts = [u for u, _ in read_kv(data_dir / "text")]
    for u in utts:
        if not reference.get(u, "").strip():
            raise DataDirError(f"{data_dir}: utterance {u}: no reference description (or an empty one)")
    seen = read_seen(data_dir / "utt2seen") if (data_dir / "utt2seen").is_file() else {}
    probes = []
    for name in attributes:
        found = value_phrases(data_dir, name, utts)
        if found is None:
            continue
        values, phrases = found
        vocabulary = list(phrases)
        if len(vocabulary) < 2:
            logging.warning(f"{data_dir}: only {vocabulary} for {name}; no probes")
            continue
        for u in utts:
            text = reference[u]
            mention = first_mention(text, phrases)
            if mention is None:
                continue
            start, _, used_value, used = mention
            index = phrases[used_value].index(used)
            cut, continuations = continuation_texts(
                text, start, [used if w == used_value else parallel_phrase(used, index, phrases[w]) for w in vocabulary]
            )
            probe = {"id": f"{u}_{name}", "utt": u, "task": name, "instruction": DESCRIPTION_QUESTION,
                     "context": text[:cut], "continuations": continuations,
                     "options": [w.lower() for w in vocabulary], "answer": values[u].lower()}
            if u in seen:
                probe["voice"] = seen[u]
            probes.append(probe)
    return sorted(probes, key=lambda p: p["id"].encode())


def main(cmd: Optional[List[str]] = None):
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True)
    parser.add_argument("--reference", type=Path, required=True, help="uttid -> reference description")
    parser.add_argument("--output", type=Path, required=True, help="probes.jsonl")
    parser.add_argument("--attributes", nargs="+", default=list(PROBE_ATTRIBUTES))
    args = parser.parse_args(cmd)
    setup(args)
    reference = dict(read_kv(args.reference, allow_empty_value=True))
    probes = make_probes(args.data_dir, reference, args.attributes)
    write_text(args.output, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in probes))
    logging.info(f"{args.output}: {len(probes)} probes {dict(Counter(p['task'] for p in probes))}")


if __name__ == "__main__":
    main()
