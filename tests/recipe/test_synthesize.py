"""Tests of the synthetic mini LibriSpeech corpus (local/synthesize.py)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[2] / "egs2" / "mini_librispeech_synth" / "blsp"
SCRIPT = RECIPE / "local" / "synthesize.py"
SENTENCES = RECIPE / "local" / "sentences"
SUBSETS = {"train-synth": 1, "dev-synth": 2, "test-synth": 3}
VOICES_HEADER = ["uttid", "engine", "voice", "accent", "gender", "speed", "pitch"]

needs_tts = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox are needed to synthesize",
)


def _read_sentences(name):
    return [line.rstrip("\n") for line in (SENTENCES / f"{name}.txt").open(encoding="utf-8")]


def test_sentence_files_sizes_and_disjoint():
    sizes = {"train": 1150, "dev": 80, "test": 120}
    seen = {}
    for name, minimum in sizes.items():
        lines = _read_sentences(name)
        assert len(lines) >= minimum, name
        for line in lines:
            assert line == line.strip() and line, (name, line)
            assert re.fullmatch(r"[A-Za-z ,.'?]+", line), (name, line)
            assert 6 <= len(line.split()) <= 20, (name, line)
            key = " ".join(re.sub(r"[^a-z' ]", " ", line.lower()).split())
            assert key not in seen, f"duplicate: {line!r} in {name} and {seen[key]}"
            seen[key] = name


def _synth(out_root, *extra):
    cmd = [
        sys.executable, str(SCRIPT), "--out_root", str(out_root),
        "--max_utts_per_subset", "3", "--nj", "2", *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _read_voices(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return header, [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def _parse_speakers(path):
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(";") or not line.strip():
            continue
        spk, sex, subset, minutes, name = [f.strip() for f in line.split("|", 4)]
        rows[spk] = (sex, subset, float(minutes), name)
    return rows


@needs_tts
def test_synthesize_layout_and_resume(tmp_path):
    sf = pytest.importorskip("soundfile")
    out = tmp_path / "LibriSpeech"
    _synth(out)

    speakers = _parse_speakers(out / "SPEAKERS.TXT")
    assert speakers
    for sex, subset, minutes, name in speakers.values():
        assert sex in ("M", "F") and subset in SUBSETS and minutes > 0 and name

    all_utts = {}
    voices_by_subset = {}
    for subset, chapter in SUBSETS.items():
        flacs = sorted((out / subset).glob("*/*/*.flac"))
        assert len(flacs) == 3, subset
        trans = {}
        for tfile in (out / subset).glob("*/*/*.trans.txt"):
            spk, chap = tfile.parent.parent.name, tfile.parent.name
            assert tfile.name == f"{spk}-{chap}.trans.txt"
            assert chap == str(chapter)
            for line in tfile.read_text(encoding="utf-8").splitlines():
                uttid, text = line.split(" ", 1)
                assert uttid.startswith(f"{spk}-{chap}-")
                assert re.fullmatch(r"[A-Z' ]+", text) and text == text.upper()
                trans[uttid] = text
        for flac in flacs:
            spk, chap = flac.parent.parent.name, flac.parent.name
            assert re.fullmatch(rf"{spk}-{chap}-\d{{4}}\.flac", flac.name)
            info = sf.info(str(flac))
            assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
            assert info.subtype == "PCM_16" and info.frames > 16000 * 0.5
            assert flac.stem in trans
            assert spk in speakers
        assert set(trans) == {f.stem for f in flacs}
        assert not set(trans) & set(all_utts), "utterance ids must be unique"
        all_utts.update(trans)

        header, rows = _read_voices(out / subset / "VOICES.tsv")
        assert header[: len(VOICES_HEADER)] == VOICES_HEADER
        assert sorted(r["uttid"] for r in rows) == sorted(trans)
        for r in rows:
            assert r["gender"] in ("male", "female")
            assert r["speed"] in ("slow", "normal", "fast")
            assert r["pitch"] in ("low", "normal", "high")
            assert r["accent"] and r["engine"] and r["voice"]
            sex = speakers[r["uttid"].split("-")[0]][0]
            assert sex == ("F" if r["gender"] == "female" else "M")
        voices_by_subset[subset] = rows

    def voices(subset):
        return {(r["engine"], r["voice"]) for r in voices_by_subset[subset]}

    test_only = voices("test-synth") - voices("train-synth") - voices("dev-synth")
    assert len(test_only) >= 2, "test must contain voices unheard in train/dev"
    test_only_spk = {s for s, v in speakers.items() if v[1] == "test-synth"}
    train_spk = {r["uttid"].split("-")[0] for r in voices_by_subset["train-synth"]}
    assert test_only_spk and not test_only_spk & train_spk

    # resume: nothing is synthesized again and no flac is rewritten
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")}
    log = _synth(out)
    assert "0 to synthesize" in log and "all done: 0 utterances" in log
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")} == mtimes

    # a missing or broken flac is redone, and only that one
    victim = sorted(mtimes)[0]
    victim.write_bytes(b"not a flac")
    log = _synth(out)
    assert "all done: 1 utterances" in log
    assert sf.info(str(victim)).samplerate == 16000
