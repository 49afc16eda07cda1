"""Description probes: make_probe items, branch scoring, evaluate_qa and score_qa on them."""

import json

import pytest

from espnet_blsp.bin import evaluate_qa, make_probe, score_qa
from espnet_blsp.bin.make_probe import continuation_texts, first_mention, make_probes, parallel_phrase
from espnet_blsp.bin.score_qa import results_tables
from espnet_blsp.utils.kaldi_dir import DataDirError, write_kv

UTTS = ["u1", "u2", "u3"]
SIDE = {
    "text": ["THE FOX", "SHE WALKED", "I AM OK"],
    "utt2gender": ["f", "m", "m"],
    "utt2accent": ["New_York", "Scottish", "Scottish"],
    "utt2pitch": ["low", "high", "normal"],
    "utt2snr": ["inf", "20", "0"],
    "utt2seen": ["seen", "seen", "unseen"],
}
REFERENCE = {
    "u1": 'Someone says "she is here." She speaks with a high-pitched voice and no background noise.',
    "u2": "The audio features a male speaker from new york with a low pitch.",
    "u3": "Someone talks.",
}


def data_dir(tmp_path):
    d = tmp_path / "data"
    for name, values in SIDE.items():
        write_kv(d / name, list(zip(UTTS, values)))
    return d


def test_first_mention_skips_quotes_and_prefers_the_longest():
    phrases = {"Female": ("female", "she"), "Male": ("male", "man", "he")}
    assert first_mention('A "she" and then she', phrases) == (17, 20, "Female", "she")
    assert first_mention("a female, the male", phrases)[2:] == ("Female", "female")
    assert first_mention("nothing here", phrases) is None  # "he" inside "here" is no word
    levels = {"High": ("high pitch", "high-pitched"), "Low": ("low pitch",)}
    assert first_mention("a High-Pitched voice", levels) == (2, 14, "High", "high-pitched")
    assert parallel_phrase("she", 1, ("female", "he", "his")) == "he"
    assert parallel_phrase("no background noise", 2, ("low noise", "low background noise")) == "low background noise"


def test_probes_follow_the_reference_and_answer_from_side_files(tmp_path):
    probes = {p["id"]: p for p in make_probes(data_dir(tmp_path), REFERENCE)}
    assert sorted(probes) == ["u1_gender", "u1_noise", "u1_pitch", "u2_accent", "u2_gender", "u2_pitch"]  # u3: none
    assert probes["u2_accent"]["continuations"] == [" New York", " Scottish"]  # names keep their case
    assert probes["u2_accent"]["answer"] == "scottish"
    g = probes["u1_gender"]
    assert g == {"id": "u1_gender", "utt": "u1", "task": "gender", "instruction": "What can you hear from the audio?",
                 "context": 'Someone says "she is here."', "continuations": [" She", " He"],
                 "options": ["female", "male"], "answer": "female", "voice": "seen"}
    assert probes["u1_pitch"]["continuations"] == [" a low-pitched", " a normal-pitched", " a high-pitched"]
    assert probes["u1_pitch"]["answer"] == "low"  # the side file's, not the reference's
    assert probes["u1_noise"]["options"] == ["clean", "low", "moderate", "high"]
    assert probes["u1_noise"]["continuations"][0] == " no background noise"
    assert probes["u2_pitch"]["context"] == "The audio features a male speaker from new york with"
    assert probes["u2_pitch"]["continuations"] == [" a low pitch", " a normal pitch", " a high pitch"]
    assert probes["u2_gender"]["context"] == "The audio features"
    assert continuation_texts("An Irish voice", 3, ["Irish", "welsh"]) == (0, ["An Irish", "A Welsh"])
    with pytest.raises(DataDirError, match="u3: no reference"):
        make_probes(data_dir(tmp_path), {**REFERENCE, "u3": " "})


def test_branches_score_as_each_continuation_alone(tiny_llm_dir):
    import torch

    from espnet_blsp.llm.batch import branch_scores, response_logits
    from espnet_blsp.llm.hf_causal_lm import HFCausalLM
    from espnet_blsp.llm.prompt import SPEECH, Prompt, build_prompt

    llm = HFCausalLM(str(tiny_llm_dir), dtype="float32")
    torch.manual_seed(0)
    prompt = build_prompt(llm.tokenizer, "description")
    rows = [{SPEECH: torch.randn(n, llm.hidden_size()), "asr_hyp": torch.tensor(ids)} for n, ids in ((5, [11, 12]), (2, []))]
    stems = [[30, 31, 32, 33], []]
    branches = [[(0, [40, 41]), (3, [42]), (4, [43, 44, 45]), (3, [46, 47])], [(0, [48, 49, 50])]]

    def alone(row, k, stem, ids):
        longer = Prompt(prompt.segments[:-1] + [prompt.segments[-1] + stem[:k]], prompt.slots, prompt.leads, prompt.end)
        logits, target, _ = response_logits(llm, [row], longer, [ids])
        return float(torch.nn.functional.cross_entropy(logits, target, reduction="none")[:-1].sum())  # no end id

    packed = branch_scores(llm, rows, prompt, stems, branches)
    for row, stem, bs, got in zip(rows, stems, branches, packed):
        assert [n for _, n in got] == [len(ids) for _, ids in bs]
        assert [s for s, _ in got] == pytest.approx([alone(row, k, stem, ids) for k, ids in bs], abs=1e-4)
    with pytest.raises(ValueError, match="outside its stem"):
        branch_scores(llm, rows[:1], prompt, [[1]], [[(2, [3])]])


def test_evaluate_probes_resumes_and_tabulates(tmp_path, tiny_llm_dir):
    d = data_dir(tmp_path)
    write_kv(d / "description", sorted(REFERENCE.items()))
    probes = tmp_path / "probes.jsonl"
    make_probe.main(["--data_dir", str(d), "--reference", str(d / "description"), "--output", str(probes)])
    items = {p["id"]: p for p in map(json.loads, probes.read_text().splitlines())}
    out = tmp_path / "eval/test/text_llm/probe"
    cmd = ["--questions", str(probes), "--out_dir", str(out), "--text", str(d / "text"),
           "--llm", str(tiny_llm_dir), "--dtype", "float32", "--batch_size", "1"]
    evaluate_qa.main(cmd)
    assert not (out / "qa_answer").exists()
    nll = dict(line.split(" ", 1) for line in (out / "qa_option_nll").read_text().splitlines())
    assert set(nll) == set(items)
    for pid, value in nll.items():
        assert len(value.split()) == 2 * len(items[pid]["options"])
    before = (out / "qa_option_nll").read_text()
    (out / "qa_option_nll").write_text("".join(before.splitlines(True)[:-2]))  # two of u2's probes lost
    evaluate_qa.main(cmd)
    assert sorted((out / "qa_option_nll").read_text().splitlines()) == sorted(before.splitlines())
    score_qa.main(["--questions", str(probes), "--sys_dir", str(out)])
    table = results_tables(tmp_path / "eval")
    assert "Description probes" in table and "| chance | 50.0 | 50.0 | 33.3 | 25.0 |" in table  # + accent
