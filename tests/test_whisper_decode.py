"""whisper_decode: batched, resumable, long-form past 30 s, [BLANK_AUDIO], bad input named."""

import json
import logging

import numpy as np
import pytest
import soundfile
from transformers import AutoTokenizer, WhisperForConditionalGeneration

import tiny_models
from espnet_blsp.bin import whisper_decode
from espnet_blsp.utils.kaldi_dir import DataDirError

SECONDS = {"a_short": 1.0, "b_short": 2.5, "c_long": 41.0, "d_short": 4.0}


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    """The tiny random Whisper plus a tokenizer and a timestamp range (long-form needs them)."""
    d = tiny_models.make_whisper(tmp_path_factory.mktemp("whisper_ts"))
    tiny_models.make_tokenizer().save_pretrained(d)
    conf = json.loads((d / "generation_config.json").read_text())
    conf["no_timestamps_token_id"] = 50  # ids 51..99 are then timestamps
    del conf["_from_model_config"]  # else the loader rebuilds it from config.json
    (d / "generation_config.json").write_text(json.dumps(conf))
    return d


@pytest.fixture
def calls(monkeypatch):
    """(input features shape, return_timestamps, output length) of each generate()."""
    seen, original = [], WhisperForConditionalGeneration.generate

    def spy(self, input_features, **kwargs):
        ids = original(self, input_features, **kwargs)
        seen.append((tuple(input_features.shape), kwargs.get("return_timestamps"), ids.shape[-1]))
        return ids

    monkeypatch.setattr(WhisperForConditionalGeneration, "generate", spy)
    return seen


def write_scp(tmp_path, seconds, rate=16000):
    rng, lines = np.random.default_rng(0), []
    for key, sec in sorted(seconds.items()):
        path = tmp_path / f"{key}.wav"
        soundfile.write(path, 0.1 * rng.standard_normal(int(sec * rate)), rate)
        lines.append(f"{key} {path}\n")
    (tmp_path / "wav.scp").write_text("".join(lines))
    return tmp_path / "wav.scp"


def run(whisper, scp, out):
    whisper_decode.main([
        "--model", str(whisper), "--wav_scp", str(scp), "--output", str(out),
        "--batch_size", "2", "--max_new_tokens", "4", "--num_threads", "1",
    ])


def read_out(out):
    return [line.split(" ", 1) for line in out.read_text().splitlines()]


def test_all_keys_long_form_and_resume(tmp_path, whisper, calls, caplog):
    caplog.set_level(logging.INFO)
    scp, out = write_scp(tmp_path, SECONDS), tmp_path / "asr_text"
    run(whisper, scp, out)
    rows = read_out(out)
    assert sorted(k for k, _ in rows) == sorted(SECONDS)  # each key once
    assert all(len(r) == 2 and r[1].strip() for r in rows)
    # Longest first. The 41 s utterance reaches generate() whole (4100 frames,
    # not cut to 3000) with timestamps: the long-form path, whose 4-token cap
    # is per 30 s window, hence more than 4 tokens in all.
    (long_shape, long_ts, long_len), *short = calls
    assert long_shape == (1, 80, 4100) and long_ts is True and long_len > 4
    assert [(s, ts) for s, ts, _ in short] == [((2, 80, 3000), None), ((1, 80, 3000), None)]

    # A rerun decodes only the batch whose line was lost, as first planned
    # (b_short beside d_short: the same padding, the same answer), and
    # writes only that line.
    out.write_text("".join(f"{k} {v}\n" for k, v in rows if k != "b_short"))
    calls.clear()
    run(whisper, scp, out)
    assert [s for s, _, _ in calls] == [(2, 80, 3000)]
    assert "3 utterances already in" in caplog.text
    assert sorted(read_out(out)) == sorted(rows)
    run(whisper, scp, out)  # complete: nothing left to decode
    assert len(calls) == 1


def test_empty_transcript_becomes_blank_audio(tmp_path, whisper, monkeypatch, caplog):
    tokenizer_class = type(AutoTokenizer.from_pretrained(whisper))
    monkeypatch.setattr(tokenizer_class, "batch_decode", lambda self, ids, **kw: [" "] * len(ids))
    scp, out = write_scp(tmp_path, {"a": 1.0, "b": 2.0}), tmp_path / "asr_text"
    run(whisper, scp, out)
    assert dict(read_out(out)) == {"a": "[BLANK_AUDIO]", "b": "[BLANK_AUDIO]"}
    assert "b: empty transcript" in caplog.text and "2 of 2 utterances" in caplog.text


@pytest.mark.parametrize("bad", ["8kHz", "stereo", "unreadable"])
def test_bad_audio_names_file_line_and_utterance(tmp_path, whisper, calls, bad):
    scp = write_scp(tmp_path, {"a": 1.0, "b": 1.0, "c": 1.0})
    wav = tmp_path / "b.wav"
    if bad == "unreadable":
        wav.write_text("not audio")
    else:
        rate, shape = (8000, (8000,)) if bad == "8kHz" else (16000, (16000, 2))
        soundfile.write(wav, np.zeros(shape), rate)
    with pytest.raises(DataDirError, match=f"{scp}:2: utterance b"):
        run(whisper, scp, tmp_path / "asr_text")
    assert calls == []  # checked before any decoding
