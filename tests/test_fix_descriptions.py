"""fix_descriptions: training descriptions that name each attribute's true value."""

import pytest

from espnet_blsp.bin import fix_descriptions
from espnet_blsp.bin.fix_descriptions import fix_text
from espnet_blsp.utils.kaldi_dir import DataDirError, read_kv, write_kv
from tests.test_probe import SIDE, UTTS, data_dir

DESCRIPTIONS = {
    # u1 (f, low pitch, clean): wrong gender twice, wrong pitch with its article; the quote stays
    "u1": 'A man says "he is here." He speaks with a high-pitched voice and no background noise.',
    # u2 (m, Scottish, high pitch, SNR 20 = low noise): wrong accent and pitch, capital kept
    "u2": "The speaker is male, from New York. High pitch, and a low level of noise.",
    "u3": "Someone talks.",  # names nothing: left as it is
}


def test_wrong_values_take_the_true_values_phrase():
    phrases = {"Female": ("female", "woman", "she"), "Male": ("male", "man", "he")}
    assert fix_text('A man says "he is" and he goes', phrases, "Female") == ('A woman says "he is" and she goes', 2)
    assert fix_text("The female speaker", phrases, "Female") == ("The female speaker", 0)


def test_fixed_file_names_true_values_and_keeps_the_rest(tmp_path):
    d = data_dir(tmp_path)
    write_kv(tmp_path / "llm", list(DESCRIPTIONS.items()))
    fix_descriptions.main(["--data_dir", str(d), "--input", str(tmp_path / "llm"), "--output", str(tmp_path / "out")])
    out = dict(read_kv(tmp_path / "out"))
    assert out["u1"] == 'A woman says "he is here." She speaks with a low-pitched voice and no background noise.'
    assert out["u2"] == "The speaker is male, from Scottish. High pitch, and a low level of noise."
    assert out["u3"] == "Someone talks."


def test_a_missing_description_names_the_utterance(tmp_path):
    with pytest.raises(DataDirError, match="utterance u3"):
        fix_descriptions.fix_descriptions(data_dir(tmp_path), {"u1": "x", "u2": "y"})
