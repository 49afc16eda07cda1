"""Task-aware evaluation: the eval config, the metrics, evaluate's task answers,
score's per-task scores and the paper's Table 1 shape."""

import json
import os

import pytest

from espnet_blsp.bin import evaluate, score
from espnet_blsp.evaluation.metrics import accuracy, answer_label, bleu_chrf
from espnet_blsp.evaluation.tasks import ASR, load_tasks
from espnet_blsp.utils.kaldi_dir import read_kv, write_kv

CONFIG = """\
tasks:
  asr: {reference: text, metric: wer}
  st_de: {instruction: translation_de, reference: text.de, metric: bleu}
  st_ja: {instruction: translation_ja, reference: text.ja, metric: bleu, tokenize: ja-mecab}
  sentiment: {instruction: sentiment, reference: utt2sentiment, metric: accuracy,
              labels: [negative, neutral, positive]}
test_sets:
  test_covost: [asr, st_de]
  test_slue: [sentiment]
"""


def test_config_gives_each_set_its_tasks(tmp_path):
    conf = tmp_path / "eval.yaml"
    conf.write_text(CONFIG)
    assert [t.name for t in load_tasks(conf, "test_covost")] == ["asr", "st_de"]
    assert [t.output for t in load_tasks(conf, "test_slue")] == ["sentiment_text"]
    assert load_tasks(conf, "test_clean")[0].name == "asr"  # not listed: ASR
    assert load_tasks(None, "anything") == [ASR]


@pytest.mark.parametrize("bad, message", [
    ("tasks: {x: {instruction: sentiment, reference: r, metric: f1}}", r"tasks.x: metric 'f1' is not one of"),
    ("tasks: {x: {reference: r, metric: wer}}", r"tasks.x: needs an instruction"),
    ("tasks: {x: {instruction: say hi, reference: r, metric: wer}}", r"neither a registered name nor has <speech>"),
    ("tasks: {x: {instruction: sentiment, reference: r, metric: wer, prompt: 1}}", r"tasks.x: .*prompt"),
    ("test_sets: {test_slue: [nope]}", r"test_sets.test_slue names task 'nope'"),
    ("sets: {}", r"unknown top-level key"),
])
def test_config_errors_name_the_file_and_entry(tmp_path, bad, message):
    conf = tmp_path / "eval.yaml"
    conf.write_text(bad)
    with pytest.raises(ValueError, match=message):
        load_tasks(conf, "test_slue")


def test_an_asked_task_keeps_the_systems_own_prompt(tmp_path):
    from espnet_blsp.llm.prompt import INSTRUCTIONS

    conf = tmp_path / "eval.yaml"
    conf.write_text("tasks:\n  continuation: {instruction: continuation, ask: true, reference: continuation, "
                    "metric: bleu}\ntest_sets: {test_aug: [asr, continuation]}\n")
    asr, cont = load_tasks(conf, "test_aug")
    question = "Continue the following text in a coherent and engaging style with less than 40 words."
    # DeSTA2's audio turn (speech, then Whisper's transcript) stays; the question is the task's.
    assert cont.spec("description", "transcription") == [INSTRUCTIONS["description"][0],
                                                         {"role": "user", "content": question}]
    assert cont.spec("describe_seed", "transcription") == f"<speech>\n{question}"
    assert cont.spec("continuation", "transcription") == f"{question} <speech>"  # BLSP's own
    examples = [{"role": "user", "content": "seed A\nWhat can you hear from the audio?"},
                {"role": "assistant", "content": "The speaker is female."},
                {"role": "user", "content": "<speech>\nWhat can you hear from the audio?"}]
    assert cont.spec(examples, "transcription") == [{"role": "user", "content": f"<speech>\n{question}"}]
    assert asr.spec("description", "transcription") == INSTRUCTIONS["transcription"]  # not asked
    conf.write_text("tasks: {x: {instruction: description, ask: true, reference: r, metric: bleu}}")
    with pytest.raises(ValueError, match="ask: true needs a one-turn instruction"):
        load_tasks(conf, "test_aug")


def test_answers_are_matched_to_labels_after_normalising():
    labels = ["alarm_set", "alarm_query", "weather_query"]
    assert answer_label("Alarm set.", labels) == "alarm_set"
    assert answer_label("The intent is weather_query", labels) == "weather_query"
    assert answer_label("alarm set or alarm query", labels) is None  # two: not an answer
    assert answer_label("I don't know", labels) is None
    assert accuracy(["positive", "negative", "neutral", "neutral"],
                    ["Positive!", "It sounds negative.", "positive or neutral", "negative"]) == 50.0


def test_japanese_and_chinese_bleu_need_their_tokenizers():
    ref, hyp = ["私は東京の大学で勉強しています。"], ["私は大阪の大学で勉強しています。"]
    assert bleu_chrf(ref, hyp, "13a")["bleu"] == 0.0  # one "word" to 13a, and it differs
    assert 30 < bleu_chrf(ref, hyp, "ja-mecab")["bleu"] < 100
    assert 30 < bleu_chrf(["我在北京大学学习。"], ["我在上海大学学习。"], "zh")["bleu"] < 100


def test_evaluate_answers_each_task_and_adding_one_redoes_nothing_else(tmp_path, tiny_llm_dir):
    keys = ["u1", "u2"]
    write_kv(tmp_path / "text", [(k, "THE QUICK BROWN FOX") for k in keys])
    write_kv(tmp_path / "cont", [("u1", "jumps over"), ("u2", "runs away")])
    (tmp_path / "gen.yaml").write_text("batch_size: 2\ndtype: float32\ngenerate: {max_new_tokens: 3}\n")
    conf = tmp_path / "eval.yaml"
    conf.write_text(CONFIG.replace("test_covost: [asr, st_de]", "test_covost: [asr]"))
    out = tmp_path / "out"
    cmd = [
        "--out_dir", str(out), "--keys", str(tmp_path / "cont"), "--ref_continuation", str(tmp_path / "cont"),
        "--text", str(tmp_path / "text"), "--llm", str(tiny_llm_dir), "--config", str(tmp_path / "gen.yaml"),
        "--eval_config", str(conf), "--test_set", "test_covost",
    ]
    evaluate.main(cmd)
    assert not (out / "st_de_text").exists()
    before = {f: os.stat(out / f).st_mtime_ns for f in ("continuation", "asr_text", "nll")}
    conf.write_text(CONFIG)  # st_de added
    evaluate.main(cmd)
    assert [k for k, _ in read_kv(out / "st_de_text", allow_empty_value=True)] == keys
    assert {f: os.stat(out / f).st_mtime_ns for f in before} == before

    # Scores: each task under "tasks", and the Table 1 shape across systems.
    write_kv(tmp_path / "text.de", [("u1", "Der schnelle Fuchs"), ("u2", "Der schnelle Fuchs")])
    score.main(["--sys_dir", str(out), "--ref_text", str(tmp_path / "text"),
                "--ref_continuation", str(tmp_path / "cont"), "--eval_config", str(conf), "--test_set", "test_covost"])
    scores = json.loads((out / "score.json").read_text())
    assert set(scores["tasks"]) == {"asr", "st_de"}
    assert scores["tasks"]["st_de"]["metric"] == "bleu" and scores["tasks"]["st_de"]["num_utts"] == 2
    assert scores["tasks"]["asr"]["wer"] == pytest.approx(scores["asr_wer"])


def test_task_tables_are_systems_by_test_sets(tmp_path):
    for dset, system, tasks in [
        ("test_clean", "blsp", {"asr": {"metric": "wer", "wer": 12.5, "num_utts": 10}}),
        ("test_covost", "blsp", {"st_de": {"metric": "bleu", "bleu": 20.0, "chrf": 45.0, "num_utts": 4}}),
        ("test_covost", "whisper_cascade", {"st_de": {"metric": "bleu", "bleu": 25.0, "chrf": 50.0, "num_utts": 4}}),
    ]:
        (tmp_path / dset / system).mkdir(parents=True)
        (tmp_path / dset / system / "score.json").write_text(json.dumps({"tasks": tasks}))
    table = score.task_tables(tmp_path)
    assert "### WER % ↓\n\n| system | test_clean (asr, 10) |" in table
    assert "| Whisper+LLM cascade | 25.00 |\n| BLSP (trained adapter) | 20.00 |" in table
    assert "### chrF ↑" in table and "accuracy" not in table
    # Variant experiments (blsp.sh --variant_configs): their trained adapter is a
    # row, named by the experiment, in the paper's order.
    variant = tmp_path / "exp/blsp_train_asr_pretrain/eval"
    (variant / "test_clean/blsp").mkdir(parents=True)
    (variant / "test_clean/blsp/score.json").write_text(json.dumps(
        {"num_utts": 10, "asr_wer": 9.0, "tasks": {"asr": {"metric": "wer", "wer": 9.0, "num_utts": 10}}}))
    (variant / "test_clean/blsp_untrained").mkdir()  # only the trained adapter counts
    (variant / "test_clean/blsp_untrained/score.json").write_text(json.dumps({"num_utts": 10, "asr_wer": 99.0}))
    table = score.task_tables(tmp_path, [variant])
    assert "| ASR pretraining (adapter trained to transcribe) | 9.00 |\n| BLSP (trained adapter) | 12.50 |" in table
    assert "| ASR pretraining (adapter trained to transcribe) | – | – | 9.00 | – | – |" in score.results_table(
        tmp_path, variants=[variant])
