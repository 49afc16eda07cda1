"""Paralinguistic attributes: side files -> the words DeSTA2's seeds and questions use.

One table for the seed transcripts (``bin/make_seed``), the closed-set
questions (``bin/make_qa``) and the description scoring: each attribute
names its Kaldi side files, how a value there becomes a word, and the words
a description may use for it.

Continuous values become words by the thresholds below. They are ours,
chosen so that the demo corpus's constructions (``local/augment.py``) fall
clearly inside one bin; DeSTA2 released none (../shared/DESTA2.md §1.5):

============  =================  ==============================================
attribute     side file          words
============  =================  ==============================================
speed         utt2wpm            Slow < 150 wpm <= Normal < 175 wpm <= Fast
volume        utt2loudness_db    Low < -35 dBFS <= Normal < -23 dBFS <= High
noise         utt2snr            High < 5 dB <= Moderate < 15 dB <= Low < 30 dB
                                 <= Clean (``inf``: no noise added)
reverb        utt2c50            High < 5 dB <= Low < 20 dB <= None (``inf``: dry)
============  =================  ==============================================

A side file of words (``utt2speed``, ``utt2volume``, ...) is used as it is
when present, so a corpus with its own labels needs no numbers.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

SPEED_WPM = (150.0, 175.0)
LOUDNESS_DB = (-35.0, -23.0)
SNR_DB = (5.0, 15.0, 30.0)
C50_DB = (5.0, 20.0)


class LabelError(ValueError):
    """A side-file value no rule can turn into a word."""


def _bin(value: float, edges: Sequence[float], words: Sequence[str]) -> str:
    """``words[i]`` for the i-th interval of ``edges`` (left-closed); ``inf``
    (an absent condition: no noise, a dry room) is the top bin."""
    if math.isnan(value) or value == -math.inf:
        raise LabelError(f"not a level: {value}")
    return words[sum(value >= e for e in edges)]


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise LabelError(f"not a number: {value!r}") from None


def _word(choices: Dict[str, str]) -> Callable[[str], str]:
    """A rule mapping label spellings (any case) to one word."""

    def rule(value: str) -> str:
        word = choices.get(value.lower())
        if word is None:
            raise LabelError(f"unknown value {value!r}; known: {sorted(set(choices.values()))}")
        return word

    return rule


def _title(value: str) -> str:
    """Open-set labels (accents): underscores were spaces."""
    return value.replace("_", " ")


def _snr_word(value: str) -> str:
    snr = _number(value)
    return _bin(snr, SNR_DB, ("High", "Moderate", "Low", "Clean"))


def _noise_value(value: str) -> str:
    """DeSTA2's wording: ``Moderate (Signal-to-Noise Ratio: 10dB)``."""
    word = _snr_word(value)
    return word if word == "Clean" else f"{word} (Signal-to-Noise Ratio: {_number(value):.0f}dB)"


def _level_phrases(nouns: Sequence[str], low: Sequence[str] = (), high: Sequence[str] = ()):
    """Phrases naming a Low/Normal/High level of something: ``high pitch``,
    ``high-pitched``, ``pitch is high``."""
    out = {}
    for word, extra in (("Low", low), ("Normal", ()), ("High", high)):
        w = word.lower()
        out[word] = tuple(f"{w}{sep}{n}" for n in nouns for sep in (" ", "-")) + (f"{nouns[0]} is {w}",) + tuple(extra)
    return out


LEVELS = {"low": "Low", "normal": "Normal", "medium": "Normal", "high": "High"}


@dataclass(frozen=True)
class Attribute:
    """One attribute: where its labels live and how they read.

    Attributes:
        name: Our name (``--attributes`` of make_seed).
        label: Its name in the seed transcript (``Speaking speed``).
        word_file: Side file of words, used as they are (after ``from_word``).
        from_word: Word-file value -> the seed's word.
        number_file: Side file of numbers, binned by ``from_number``.
        from_number: Number-file value -> the seed's word.
        seed_value: Side-file value -> the seed's text, when it says more
            than the word (the SNR in dB).
        words: The closed vocabulary (empty: open, e.g. accents).
        mentions: Per word, the words that name it in a description.
    """

    name: str
    label: str
    word_file: Optional[str] = None
    from_word: Callable[[str], str] = _title
    number_file: Optional[str] = None
    from_number: Optional[Callable[[str], str]] = None
    seed_value: Optional[Callable[[str], str]] = None
    words: Tuple[str, ...] = ()
    mentions: Dict[str, Tuple[str, ...]] = field(default_factory=dict)

    def phrases(self, word: str) -> Tuple[str, ...]:
        """Phrases that name ``word`` in a description (open sets: the word)."""
        return self.mentions.get(word, (word.lower(),))

    def files(self) -> Tuple[str, ...]:
        """The side files that can give it, preferred first."""
        return tuple(f for f in (self.word_file, self.number_file) if f)

    def file_in(self, data_dir: Path) -> Optional[Path]:
        """The side file of ``data_dir`` that gives it (preferred first), if any."""
        return next((data_dir / f for f in self.files() if (data_dir / f).is_file()), None)

    def word(self, file: str, value: str) -> str:
        """The word for ``value`` read from side file ``file``."""
        return self.from_word(value) if file == self.word_file else self.from_number(value)

    def seed_text(self, file: str, value: str) -> str:
        """What the seed transcript says after ``label:``."""
        if file == self.number_file and self.seed_value is not None:
            return self.seed_value(value)
        return self.word(file, value)


ATTRIBUTES: Dict[str, Attribute] = {
    a.name: a
    for a in [
        Attribute(
            "gender", "Gender", word_file="utt2gender",
            from_word=_word({"f": "Female", "female": "Female", "m": "Male", "male": "Male"}),
            words=("Female", "Male"),
            mentions={"Female": ("female", "woman", "girl", "she", "her", "lady"),
                      "Male": ("male", "man", "boy", "he", "his", "him", "gentleman")},
        ),
        Attribute("age", "Age", number_file="utt2age", from_number=lambda v: f"{_number(v):.0f}"),
        Attribute("accent", "Accent", word_file="utt2accent"),
        Attribute("emotion", "Emotion", word_file="utt2emotion"),
        Attribute(
            "pitch", "Pitch", word_file="utt2pitch", from_word=_word(LEVELS),
            words=("Low", "Normal", "High"),
            mentions=_level_phrases(("pitch", "pitched", "tone"), low=("deep voice",)),
        ),
        Attribute(
            "volume", "Volume", word_file="utt2volume", from_word=_word(LEVELS),
            number_file="utt2loudness_db",
            from_number=lambda v: _bin(_number(v), LOUDNESS_DB, ("Low", "Normal", "High")),
            words=("Low", "Normal", "High"),
            mentions=_level_phrases(
                ("volume",), low=("quiet voice", "quietly", "soft voice", "softly"), high=("loud voice", "loudly")
            ),
        ),
        Attribute(
            "speed", "Speaking speed", word_file="utt2speed",
            from_word=_word({"slow": "Slow", "normal": "Normal", "medium": "Normal", "fast": "Fast"}),
            number_file="utt2wpm",
            from_number=lambda v: _bin(_number(v), SPEED_WPM, ("Slow", "Normal", "Fast")),
            words=("Slow", "Normal", "Fast"),
            mentions={"Slow": ("slow", "slowly", "speed is slow"),
                      "Normal": ("normal speed", "normal pace", "moderate speed", "moderate pace",
                                 "normal speaking speed", "average speed", "steady pace", "speed is normal"),
                      "Fast": ("fast", "quick", "quickly", "rapid", "rapidly", "speed is fast")},
        ),
        Attribute(
            "noise", "Noise level", number_file="utt2snr", from_number=_snr_word, seed_value=_noise_value,
            words=("Clean", "Low", "Moderate", "High"),
            mentions={"Clean": ("clean", "no noise", "no background noise", "noise level is clean"),
                      "Low": ("low noise", "low background noise", "slight noise", "slight background noise",
                              "little noise", "low level of noise", "noise level is low"),
                      "Moderate": ("moderate noise", "moderate background noise", "moderate level of noise",
                                   "some noise", "some background noise", "noise level is moderate"),
                      "High": ("high noise", "high background noise", "loud noise", "loud background noise",
                               "heavy noise", "heavy background noise", "very noisy", "high level of noise",
                               "noise level is high")},
        ),
        Attribute(
            "reverb", "Reverberation", number_file="utt2c50",
            from_number=lambda v: _bin(_number(v), C50_DB, ("High", "Low", "None")),
            words=("None", "Low", "High"),
            mentions={"None": ("no reverberation", "no echo", "dry", "reverberation is none"),
                      "Low": ("low reverberation", "slight reverberation", "slight echo", "some reverberation",
                              "reverberation is low"),
                      "High": ("high reverberation", "strong reverberation", "strong echo", "reverberant",
                               "reverberation is high")},
        ),
    ]
}
# The seed's order; DeSTA2's examples start with gender and end with duration.
SEED_ORDER = ("gender", "age", "accent", "emotion", "pitch", "volume", "speed", "noise", "reverb")


def duration_seconds(num_samples: int, rate: int = 16000) -> int:
    """An utterance's duration in whole seconds (half up), at least 1."""
    return max(1, int(num_samples / rate + 0.5))


def timestamp(seconds: int) -> str:
    """``00:00:03`` (HH:MM:SS)."""
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

