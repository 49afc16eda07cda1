"""Closed-set QA: make_qa questions, evaluate_qa outputs, score_qa scores."""

import json

import numpy as np
import pytest
import soundfile
import yaml

from espnet_blsp.bin import evaluate_qa, make_qa, score_qa
from espnet_blsp.bin.make_qa import content_words, make_questions, read_questions
from espnet_blsp.bin.score_qa import named_options, results_tables, score_questions
from espnet_blsp.utils.kaldi_dir import DataDirError, write_kv

UTTS = ["u1", "u2", "u3", "u4"]
SIDE = {
    "text": ["THE QUICK BROWN FOX JUMPS", "she walked to the market", "I AM OK", "BREAD AND BUTTER"],
    "utt2gender": ["f", "male", "F", "m"],
    "utt2accent": ["Scottish", "Received_Pronunciation", "British", "Scottish"],
    "utt2wpm": ["120", "160", "200", "149.9"],
    "utt2snr": ["inf", "20", "0", "10"],
    "utt2c50": ["inf", "10.2", "1.5", "inf"],
    "utt2seen": ["seen", "seen", "unseen", "seen"],
}


def data_dir(tmp_path, **changes):
    d = tmp_path / "data"
    for name, values in {**SIDE, **changes}.items():
        write_kv(d / name, list(zip(UTTS, values)))
    return d


def test_questions_are_golden_and_deterministic(tmp_path):
    qs = {q["id"]: q for q in make_questions(data_dir(tmp_path))}
    assert list(qs) == sorted(qs) and len(qs) == 4 * 8  # no pitch, volume side files
    assert qs["u1_gender"] == {
        "id": "u1_gender", "utt": "u1", "task": "gender", "options": ["female", "male"], "answer": "female",
        "instruction": "What is the gender of the speaker? The answer could be female or male.", "voice": "seen"}
    assert qs["u2_accent"]["instruction"] == ("What is the accent of the speaker? "
                                              "The answer could be british, received pronunciation, or scottish.")
    assert qs["u2_accent"]["answer"] == "received pronunciation" and qs["u3_accent"]["voice"] == "unseen"
    assert [qs[f"u{i}_speed"]["answer"] for i in (1, 2, 3, 4)] == ["slow", "normal", "fast", "slow"]
    assert [qs[f"u{i}_noise"]["answer"] for i in (1, 2, 3, 4)] == ["clean", "noisy", "noisy", "noisy"]
    assert [qs[f"u{i}_snr"]["answer"] for i in (1, 2, 3, 4)] == ["clean", "low", "high", "moderate"]
    assert qs["u1_snr"]["options"] == ["clean", "low", "moderate", "high"]
    assert [qs[f"u{i}_reverb"]["answer"] for i in (1, 2, 3, 4)] == ["dry", "reverberant", "reverberant", "dry"]
    assert qs["u1_reverb"]["instruction"].endswith("The answer could be dry or reverberant.")
    sentences = ["The quick brown fox jumps", "she walked to the market", "I am ok", "Bread and butter"]
    for i, u in enumerate(UTTS):
        stm, term = qs[f"{u}_speech_text_match"], qs[f"{u}_spoken_term"]
        said = stm["instruction"].split('"')[1]
        assert said in sentences and (said == sentences[i]) == (stm["answer"] == "yes")
        word = term["instruction"].split('"')[1]
        assert any(word in content_words(s) for s in sentences)
        assert (word in sentences[i].lower().split()) == (term["answer"] == "yes")
    assert qs["u3_spoken_term"]["answer"] == "no"  # "I am ok" has no content word
    assert content_words("They said: Walked, walked there!") == ["walked"]
    assert make_questions(data_dir(tmp_path)) == list(qs.values())
    answers = [{q["id"]: q["answer"] for q in make_questions(data_dir(tmp_path), seed=s)} for s in range(4)]
    assert len({json.dumps(a) for a in answers}) > 1  # the seed matters


def test_bad_or_missing_side_values_name_the_utterance(tmp_path):
    with pytest.raises(DataDirError, match=r"utt2gender:2: utterance u2: unknown value 'x'"):
        make_questions(data_dir(tmp_path, utt2gender=["f", "x", "f", "m"]))
    with pytest.raises(DataDirError, match=r"utt2seen:3: utterance u3"):
        make_questions(data_dir(tmp_path, utt2seen=["seen", "seen", "maybe", "seen"]))
    d = data_dir(tmp_path)
    write_kv(d / "utt2pitch", [("u1", "low")])
    with pytest.raises(DataDirError, match="utt2pitch: no value for utterance u2"):
        make_questions(d, ["pitch"])


def test_cli_writes_questions_and_keys(tmp_path):
    make_qa.main(["--data_dir", str(data_dir(tmp_path)), "--output", str(tmp_path / "q.jsonl"),
                  "--tasks", "gender,accent", "--keys_output", str(tmp_path / "qids")])
    qs = read_questions(tmp_path / "q.jsonl")
    assert [q["id"] for q in qs] == [f"{u}_{t}" for u in UTTS for t in ("accent", "gender")]
    assert (tmp_path / "qids").read_text().splitlines()[0] == "u1_accent u1"


def q(qid, task, options, answer, voice):
    return {"id": qid, "utt": qid, "task": task, "instruction": "?", "options": options, "answer": answer,
            "voice": voice}


def test_scores_are_golden(tmp_path):
    g, a = ["female", "male"], ["british", "received pronunciation"]
    questions = [q("g1", "gender", g, "female", "seen"), q("g2", "gender", g, "female", "seen"),
                 q("g3", "gender", g, "male", "unseen"), q("a1", "accent", a, "received pronunciation", "unseen"),
                 q("a2", "accent", a, "british", "unseen"), q("y1", "spoken_term", ["yes", "no"], "yes", "seen")]
    d = tmp_path / "sys"
    write_kv(d / "qa_option_nll", [("g1", "1.0 1 2.0 1"), ("g2", "3.0 3 2.0 1"), ("g3", "5.0 1 1.0 1"),
                                   ("a1", "2.0 1 3.0 4"), ("a2", "1.0 1 9.0 4"), ("y1", "0.5 1 0.7 1")])
    write_kv(d / "qa_answer", [("g1", "A female speaker."), ("g2", "male"), ("g3", "Female or male."),
                               ("a1", "Received Pronunciation"), ("a2", "The speaker has a British accent."),
                               ("y1", "<empty>")])
    s = score_questions(questions, d)
    assert s["tasks"]["gender"] == pytest.approx({"n": 3, "option_ll_acc": 200 / 3, "option_ll_norm_acc": 100,
                                                  "option_ll_calib_acc": 100, "answer_acc": 100 / 3, "string_match_acc": 100 / 3,
                                                  "format_rate": 200 / 3, "chance": 50, "majority": 200 / 3})
    assert s["tasks"]["accent"] == pytest.approx({"n": 2, "option_ll_acc": 50, "option_ll_norm_acc": 100,
                                                  "option_ll_calib_acc": 100, "answer_acc": 100, "string_match_acc": 100,
                                                  "format_rate": 100, "chance": 50, "majority": 50})
    assert s["tasks"]["spoken_term"]["answer_acc"] == s["tasks"]["spoken_term"]["format_rate"] == 0
    assert s["macro"]["option_ll_acc"] == pytest.approx((200 / 3 + 50 + 100) / 3)
    assert s["voice"]["seen"]["tasks"]["gender"]["option_ll_acc"] == 50
    assert s["voice"]["unseen"]["n"] == 3
    # Why "British RP" was renamed: the consecutive-words match cannot tell it from "British".
    # A name inside a longer option's name counts for that option only.
    assert named_options("British RP", ["british", "british rp"], str.lower) == [False, True]
    assert named_options("Northern Irish not Irish", ["irish", "northern irish"], str.lower) == [True, True]
    (d / "qa_scores.json").write_text(json.dumps(s))
    write_kv(tmp_path / "other" / "qa_option_nll", [("g1", "1.0 1")])
    with pytest.raises(DataDirError, match="no output for question g2"):
        score_questions(questions, tmp_path / "other")


def test_mentions_are_golden(tmp_path):
    d = tmp_path / "data"
    write_kv(d / "utt2gender", [("u1", "f"), ("u2", "m")])
    write_kv(d / "utt2accent", [("u1", "British_RP"), ("u2", "British")])
    write_kv(d / "utt2pitch", [("u1", "high"), ("u2", "low")])
    write_kv(tmp_path / "description", [("u1", "A woman speaks with a British RP accent in a high-pitched voice."),
                                        ("u2", 'She has a British accent and a high pitch: "he is here".')])
    sys_dir = tmp_path / "eval/test/desta2"
    score_qa.main(["--descriptions", str(tmp_path / "description"), "--data_dir", str(d), "--sys_dir", str(sys_dir)])
    a = json.loads((sys_dir / "mention_scores.json").read_text())["attributes"]
    assert list(a) == ["gender", "accent", "pitch"] and a["gender"] == {"n": 2, "right": 50, "wrong": 50}
    assert a["accent"] == {"n": 2, "right": 100, "wrong": 0}  # "british" inside "british rp" is not named
    assert a["pitch"] == {"n": 2, "right": 50, "wrong": 50}
    assert "| DeSTA2 (Q-Former + transcript) | 50.0 / 50.0 | 100.0 / 0.0 | 50.0 / 50.0 |" in results_tables(
        tmp_path / "eval")


def test_mentions_in_the_demo_examples_wording(tmp_path):
    # conf/describe.yaml's answers: "<attribute> is <value>" in the seed's order.
    d = tmp_path / "data"
    write_kv(d / "utt2pitch", [("u1", "low")])
    write_kv(d / "utt2loudness_db", [("u1", "-40")])  # Low
    write_kv(d / "utt2speed", [("u1", "normal")])
    write_kv(d / "utt2snr", [("u1", "10")])  # Moderate
    write_kv(d / "utt2c50", [("u1", "inf")])  # None
    text = ('A man says "the volume is high." His pitch is low, his volume is low, and his speaking speed is normal. '
            "The noise level is moderate, and the reverberation is none.")
    a = score_qa.mention_scores({"u1": text}, d)["attributes"]
    assert {k: (v["right"], v["wrong"]) for k, v in a.items()} == {
        "speed": (100, 0), "pitch": (100, 0), "volume": (100, 0), "noise": (100, 0), "reverb": (100, 0)}


def test_packed_options_score_as_each_option_alone(tiny_llm_dir):
    import torch

    from espnet_blsp.llm.batch import option_scores, response_scores
    from espnet_blsp.llm.hf_causal_lm import HFCausalLM
    from espnet_blsp.llm.prompt import SPEECH, ask, build_prompt

    llm = HFCausalLM(str(tiny_llm_dir), dtype="float32")
    torch.manual_seed(0)
    prompts = [build_prompt(llm.tokenizer, ask("description", q)) for q in (
        "What is the gender? The answer could be female or male.",
        "Is it noisy? The answer could be clean, noisy, or very noisy indeed.",
    )]
    rows = [{SPEECH: torch.randn(n, llm.hidden_size()), "asr_hyp": torch.tensor(ids)}
            for n, ids in ((5, [11, 12, 13]), (2, [14]), (7, []))]
    row_prompts = [prompts[0], prompts[1], prompts[0]]
    options = [["Female", "Male"], ["Clean", "Noisy", "Very noisy indeed"], ["Received pronunciation", "Male"]]
    packed = option_scores(llm, rows, row_prompts, options)
    for row, prompt, opts, got in zip(rows, row_prompts, options, packed):
        alone = response_scores(llm, [row] * len(opts), prompt, opts)
        assert [n for _, n in got] == [n for _, n in alone]
        assert [s for s, _ in got] == pytest.approx([s for s, _ in alone], abs=1e-4)


def test_evaluate_text_system_resumes_and_tabulates(tmp_path, tiny_llm_dir):
    d = data_dir(tmp_path)
    questions = tmp_path / "q.jsonl"
    make_qa.main(["--data_dir", str(d), "--output", str(questions), "--tasks", "gender", "accent", "spoken_term"])
    out = tmp_path / "eval/test/text_llm"
    cmd = ["--questions", str(questions), "--out_dir", str(out), "--text", str(d / "text"),
           "--llm", str(tiny_llm_dir), "--dtype", "float32", "--batch_size", "5", "--max_new_tokens", "4"]
    evaluate_qa.main(cmd)
    qs = {x["id"]: x for x in read_questions(questions)}
    nll = dict(line.split(" ", 1) for line in (out / "qa_option_nll").read_text().splitlines())
    answers = dict(line.split(" ", 1) for line in (out / "qa_answer").read_text().splitlines())
    assert set(nll) == set(answers) == set(qs)
    for qid, value in nll.items():
        fields = value.split()
        assert len(fields) == 2 * len(qs[qid]["options"]) and all(int(n) >= 2 for n in fields[1::2])
    before = {n: (out / n).read_text() for n in ("qa_option_nll", "qa_answer")}
    (out / "qa_answer").write_text("".join(before["qa_answer"].splitlines(True)[:-1]))  # one lost
    evaluate_qa.main(cmd)
    assert {n: (out / n).read_text() for n in before} == before
    score_qa.main(["--questions", str(questions), "--sys_dir", str(out)])
    table = results_tables(tmp_path / "eval")
    assert "| chance | 50.0 | 33.3 | 50.0 | 44.4 | 33.3 | 33.3 | 44.4 | 44.4 |" in table  # + accent, macro by voice
    assert "| Text+LLM (the seed; upper bound) |" in table


def test_evaluate_speech_system_with_asr_hyp(tmp_path, tiny_whisper_dir, tiny_llm_dir):
    from espnet_blsp.tasks.blsp import BLSPTask

    args = BLSPTask.get_parser().parse_args([
        "--output_dir", str(tmp_path / "exp"),
        "--encoder", "whisper", "--encoder_conf", f"model_name_or_path={tiny_whisper_dir}",
        "--speech_adapter", "conv_glu", "--speech_adapter_conf", "bottleneck_dim=8",
        "--llm", "hf_causal_lm", "--llm_conf", f"model_name_or_path={tiny_llm_dir}",
        "--llm_conf", "dtype=float32", "--model_conf", "instruction=description",
    ])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    rng = np.random.default_rng(0)
    for u in UTTS:
        soundfile.write(tmp_path / f"{u}.wav", rng.normal(0, 0.1, 8000).astype("float32"), 16000)
    write_kv(tmp_path / "wav.scp", [(u, str(tmp_path / f"{u}.wav")) for u in UTTS])
    write_kv(tmp_path / "hyp", [(u, "the fox") for u in UTTS])
    questions = tmp_path / "q.jsonl"
    make_qa.main(["--data_dir", str(data_dir(tmp_path)), "--output", str(questions), "--tasks", "gender", "snr"])
    write_kv(tmp_path / "keys", [(f"{u}_{t}", u) for u in UTTS[:3] for t in ("gender", "snr")])
    cmd = ["--questions", str(questions), "--keys", str(tmp_path / "keys"), "--out_dir", str(tmp_path / "out"),
           "--speech", f"{tmp_path / 'wav.scp'},sound", "--train_config", str(tmp_path / "config.yaml"),
           "--max_new_tokens", "3", "--batch_size", "4"]
    with pytest.raises(SystemExit):  # the training prompt has an <asr_hyp> slot
        evaluate_qa.main(cmd)
    evaluate_qa.main(cmd + ["--asr_hyp", str(tmp_path / "hyp")])
    keys = sorted(f"{u}_{t}" for u in UTTS[:3] for t in ("gender", "snr"))
    nll = dict(x.split(" ", 1) for x in (tmp_path / "out/qa_option_nll").read_text().splitlines())
    assert sorted(nll) == keys and len(nll["u1_snr"].split()) == 8
    answers = (tmp_path / "out/qa_answer").read_text().splitlines()
    assert sorted(x.split()[0] for x in answers) == keys


def test_paired_table_counts_wins_and_losses_against_the_cascade(tmp_path):
    assert score_qa.mcnemar_p(0, 0) == 1.0 and score_qa.mcnemar_p(3, 3) == 1.0
    assert score_qa.mcnemar_p(10, 0) == pytest.approx(2 / 1024)
    assert score_qa.mcnemar_p(45, 21) == pytest.approx(0.0043, abs=1e-4)  # the demo's 3-epoch gender probes
    items = {"g1": ["gender", 1], "g2": ["gender", 1], "g3": ["gender", 0], "p1": ["pitch", 0]}
    cascade = {"g1": ["gender", 0], "g2": ["gender", 1], "g3": ["gender", 1], "p1": ["pitch", 0]}
    for system, its in (("whisper_cascade", cascade), ("desta2", items), ("other", {"g1": ["gender", 1]})):
        d = tmp_path / "eval/test" / system
        d.mkdir(parents=True)
        (d / "qa_scores.json").write_text(json.dumps({"n": len(its), "tasks": {}, "macro": {}, "items": its}))
    table = score_qa.results_tables(tmp_path / "eval")
    paired = table.split("Paired with")[1].split("\n\n")[1]  # the table after its title
    assert paired.startswith("| system | gender | pitch |")
    assert "| DeSTA2 (Q-Former + transcript) | +1/-1 p=1 | +0/-0 p=1 |" in paired
    assert "| other |" not in paired  # other items: no pairs
