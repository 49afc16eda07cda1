"""Stale work is never reused: stamps, and the tools that resume by them."""

import logging

import pytest

from espnet_blsp.bin import generate_text
from espnet_blsp.llm.batch import text_rows
from espnet_blsp.llm.hf_causal_lm import HFCausalLM
from espnet_blsp.llm.prompt import build_prompt
from espnet_blsp.llm.respond import respond
from espnet_blsp.utils import stamp
from espnet_blsp.utils.stamp import describe, fingerprint, reset_if_stale, stamp_of


def test_fingerprint_follows_content_and_big_files_by_size_and_mtime(tmp_path, monkeypatch):
    f = tmp_path / "conf.yaml"
    f.write_text("max_new_tokens: 48\n")
    before = fingerprint(f)
    f.write_text("max_new_tokens: 8\n")
    assert fingerprint(f) != before
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    dir_before = fingerprint(d)
    (d / "weights.bin").write_bytes(b"x" * 100)
    assert fingerprint(d) != dir_before
    monkeypatch.setattr(stamp, "HASHED_BYTES", 10)  # weights: known by size and mtime
    assert fingerprint(d / "weights.bin").startswith("size=100,mtime=")


def test_describe_names_the_paths_inside_a_word(tmp_path):
    scp = tmp_path / "feats.scp"
    scp.write_text("a x.ark:1\n")
    line = describe(f"{scp},kaldi_ark")
    assert line.startswith(f"{scp},kaldi_ark [{scp}=") and fingerprint(scp) in line
    assert describe("max_new_tokens=8") == "max_new_tokens=8"  # no such file: the text alone
    assert stamp_of({"b": 1, "a": {"y": None, "x": "v"}, "out": "o"}, ignore=["out"]) == ["a.x: v", "b: 1"]


def test_reset_if_stale_says_what_changed_and_starts_over(tmp_path, caplog):
    out, mark = tmp_path / "out", tmp_path / ".out.stamp"
    assert not reset_if_stale(mark, ["max_new_tokens: 48"], [out])  # nothing made yet
    out.write_text("u1 old answer\n")
    assert not reset_if_stale(mark, ["max_new_tokens: 48"], [out])  # same settings: resume
    assert out.exists()
    with caplog.at_level(logging.WARNING):
        assert reset_if_stale(mark, ["max_new_tokens: 8"], [out])
    assert not out.exists() and "- max_new_tokens: 48; + max_new_tokens: 8" in caplog.text
    out.write_text("u1 made before stamps\n")
    mark.unlink()
    assert reset_if_stale(mark, ["max_new_tokens: 8"], [out])  # unknown origin: not trusted


def test_shell_check_and_write(tmp_path, capsys):
    conf, marker = tmp_path / "c.yaml", tmp_path / ".done"
    conf.write_text("a: 1\n")
    assert stamp.main(["check", str(marker), str(conf), "--nj", "4"]) == 1  # never done
    assert stamp.main(["write", str(marker), str(conf), "--nj", "4"]) == 0
    assert stamp.main(["check", str(marker), str(conf), "--nj", "4"]) == 0
    conf.write_text("a: 2\n")
    assert stamp.main(["check", str(marker), str(conf), "--nj", "4"]) == 1
    assert f"- {conf} [{conf}=" in capsys.readouterr().err
    marker.write_text("")  # a marker made before markers held stamps
    assert stamp.main(["check", str(marker), str(conf), "--nj", "4"]) == 1
    assert "no record of what made it" in capsys.readouterr().err


TEXTS = {f"utt{i:02d}": "the quick brown fox " * (1 + i % 4) for i in range(8)}


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "text"
    path.write_text("".join(f"{k} {v.strip()}\n" for k, v in sorted(TEXTS.items())))
    return path


def read(path):
    return dict(line.split(" ", 1) if " " in line else (line, "") for line in path.read_text().splitlines())


def test_generate_text_starts_over_when_settings_change(tmp_path, tiny_llm_dir, text, caplog):
    out, conf = tmp_path / "continuation", tmp_path / "gen.yaml"

    def run(max_new_tokens):
        conf.write_text(f"batch_size: 3\ndtype: float32\ngenerate: {{max_new_tokens: {max_new_tokens}}}\n")
        generate_text.main(["--llm", str(tiny_llm_dir), "--config", str(conf), "--text", str(text), "--output", str(out)])
        return read(out)

    long = run(6)
    assert run(6) == long  # unchanged: all reused
    with caplog.at_level(logging.WARNING):
        short = run(2)  # the reproduced case: max_new_tokens 48 -> 8 reused the old answers
    assert "generate.max_new_tokens" in caplog.text and "starting over" in caplog.text
    assert sorted(short) == sorted(TEXTS)
    assert all(len(short[k].split()) < len(long[k].split()) for k in TEXTS if len(long[k].split()) > 3)


def test_resume_runs_the_planned_batch_and_writes_only_what_was_lost(tmp_path, tiny_llm_dir, text):
    """Answers depend on which utterances share a batch (padding): a resumed run
    must batch every utterance as the uninterrupted run did."""
    llm = HFCausalLM(str(tiny_llm_dir), dtype="float32")
    prompt = build_prompt(llm.tokenizer, "continuation", True)
    keys, texts = list(TEXTS), [TEXTS[k] for k in TEXTS]
    calls = []

    def make_rows(idx):
        calls.append([keys[i] for i in idx])
        return text_rows(llm, [texts[i] for i in idx], prompt)

    def run(out):
        calls.clear()
        respond(llm, prompt, keys, [len(t) for t in texts], make_rows, out, 3, {"max_new_tokens": 4})
        return list(calls)

    full = tmp_path / "full"
    plan = run(full)
    lost = plan[1][0]
    crashed = tmp_path / "crashed"
    crashed.write_text("".join(f"{line}\n" for line in full.read_text().splitlines() if line.split(" ")[0] != lost))
    assert run(crashed) == [plan[1]]  # the whole planned batch, not the lost utterance alone
    assert read(crashed) == read(full)
    assert sorted(crashed.read_text().splitlines()) == sorted(full.read_text().splitlines())
