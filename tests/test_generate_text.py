"""BLSP step 1: batched continuation writing that resumes after a crash."""

import pytest

from espnet_blsp.bin.generate_text import generate_file, load_conf
from espnet_blsp.llm.hf_causal_lm import HFCausalLM
from espnet_blsp.utils.text import sentence_case

TEXTS = {f"utt{i:02d}": "THE QUICK BROWN FOX " * (1 + i % 3) for i in range(10)}


@pytest.fixture(scope="module")
def llm(tiny_llm_dir):
    return HFCausalLM(str(tiny_llm_dir), dtype="float32")


def write_text(path):
    path.write_text("".join(f"{k} {v.strip()}\n" for k, v in sorted(TEXTS.items())))
    return path


def conf():
    c = load_conf(None, {"batch_size": 3, "dtype": "float32"})
    c["generate"]["max_new_tokens"] = 5
    return c


def lines(path):
    return path.read_text().splitlines()


def test_resume_after_crash_neither_loses_nor_duplicates(tmp_path, llm):
    text = write_text(tmp_path / "text")
    full = tmp_path / "full"
    assert generate_file(llm, text, full, conf()) == 10
    reference = dict(l.split(" ", 1) if " " in l else (l, "") for l in lines(full))
    assert sorted(reference) == sorted(TEXTS)

    # A crash after 4 complete lines, in the middle of writing the fifth.
    crashed = tmp_path / "crashed"
    crashed.write_text("\n".join(lines(full)[:4]) + "\n" + lines(full)[4][:7])
    assert generate_file(llm, text, crashed, conf()) == 6
    resumed = lines(crashed)
    keys = [l.split(" ", 1)[0] for l in resumed]
    assert sorted(keys) == sorted(TEXTS) and len(keys) == len(set(keys))
    assert dict(l.split(" ", 1) if " " in l else (l, "") for l in resumed) == reference
    assert generate_file(llm, text, crashed, conf()) == 0  # finished: nothing to do


def test_score_text_writes_nll_per_utterance(tmp_path, llm):
    text = write_text(tmp_path / "text")
    refs = tmp_path / "refs"
    refs.write_text("".join(f"{k} jumps over the dog\n" for k in sorted(TEXTS)[:4]))
    out = tmp_path / "nll"
    assert generate_file(llm, text, out, conf(), score_text=refs) == 4
    # Job outputs are in processing order; the recipe sorts when merging.
    for line in lines(out):
        key, nll, n = line.split()
        assert float(nll) > 0 and int(n) > 1


def test_sentence_case():
    assert sentence_case("THE QUICK FOX") == "The quick fox"
    assert sentence_case("Already fine") == "Already fine"
