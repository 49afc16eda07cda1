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


def test_evaluate_scores_each_continuation_after_another_utterances_input(tmp_path, tiny_llm_dir):
    """With one transcript for all, the next utterance's continuation after
    this input is scored exactly as after its own."""
    from espnet_blsp.bin.evaluate import main

    keys = ["u1", "u2", "u3"]
    (tmp_path / "text").write_text("".join(f"{k} THE QUICK BROWN FOX\n" for k in keys))
    conts = {"u1": "jumps over the dog", "u2": "runs away", "u3": "sleeps all day long now"}
    (tmp_path / "cont").write_text("".join(f"{k} {v}\n" for k, v in conts.items()))
    (tmp_path / "gen.yaml").write_text("batch_size: 2\ndtype: float32\ngenerate: {max_new_tokens: 3}\n")
    out = tmp_path / "out"
    main([
        "--out_dir", str(out), "--keys", str(tmp_path / "cont"), "--ref_continuation", str(tmp_path / "cont"),
        "--text", str(tmp_path / "text"), "--llm", str(tiny_llm_dir), "--continuation_from", str(tmp_path / "cont"),
        "--config", str(tmp_path / "gen.yaml"),
    ])
    own = {k: v.split() for k, v in (line.split(" ", 1) for line in lines(out / "nll"))}
    other = {k: v.split() for k, v in (line.split(" ", 1) for line in lines(out / "nll_other"))}
    assert other["u1"] == own["u2"] and other["u2"] == own["u3"] and other["u3"] == own["u1"]
    assert own["u1"] != own["u2"]


def test_sentence_case():
    assert sentence_case("THE QUICK FOX") == "The quick fox"
    assert sentence_case("Already fine") == "Already fine"
