"""The representation analysis: pooling spans, the similarity matrix, the
content check and the CLI's outputs."""

import numpy as np
import pytest
import soundfile
import torch

from test_load_checks import write_config

from espnet_blsp.analysis.representation import (
    center, content_check, layer_states, mean_pool, pool_spans, representations, similarity,
)
from espnet_blsp.bin import analyze_representation, score
from espnet_blsp.llm.batch import assemble, embed_ids, text_rows
from espnet_blsp.llm.hf_causal_lm import HFCausalLM
from espnet_blsp.llm.prompt import SPEECH, Prompt, build_prompt
from espnet_blsp.utils.kaldi_dir import DataDirError, write_kv

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "she walked to the market in the morning",
    "what can you hear from the audio",
]
TASKS = ["continuation", "transcription"]


@pytest.fixture(scope="module")
def llm(tiny_llm_dir):
    return HFCausalLM(str(tiny_llm_dir), dtype="float32").eval()


def test_pooling_takes_the_slot_to_the_prompt_end_of_each_row():
    prompt = Prompt(segments=[[1, 2, 3], [4, 5]], slots=[SPEECH], leads=[" "], end=0)
    spans = pool_spans(prompt, [2, 4])
    assert spans == [(3, 7), (3, 9)] and pool_spans(prompt, [2], "all") == [(0, 7)]
    hidden = torch.arange(2 * 10, dtype=torch.float).reshape(2, 10, 1)  # value = 10 * row + position
    assert mean_pool(hidden, spans)[:, 0].tolist() == [np.mean(range(3, 7)), 10 + np.mean(range(3, 9))]
    with pytest.raises(ValueError, match="pool must be one of"):
        pool_spans(prompt, [2], "first")


def test_spans_match_the_assembled_rows(llm):
    prompt = build_prompt(llm.tokenizer, "continuation")
    rows = text_rows(llm, TEXTS, prompt)
    mask = assemble(llm, rows, prompt).mask
    for (start, end), row, m in zip(pool_spans(prompt, [r[SPEECH].numel() for r in rows]), rows, mask):
        assert end == int(m.sum()) and start == len(prompt.segments[0])
        assert end - start == row[SPEECH].numel() + len(prompt.segments[1])


def fake_speech(llm, prompt):
    """Speech rows whose slot holds the transcript's own embeddings."""
    return [{SPEECH: embed_ids(llm, r[SPEECH])} for r in text_rows(llm, TEXTS, prompt)]


def test_matrix_shape_diagonal_symmetry_and_the_text_as_speech_sanity_check(llm):
    prompts = {t: build_prompt(llm.tokenizer, t) for t in TASKS}
    assert len({p.leads[0] for p in prompts.values()}) == 1  # so one fake fits every task
    states = representations(llm, fake_speech(llm, prompts["continuation"]), TEXTS, prompts, batch_size=2)
    assert list(states) == ["speech:continuation", "speech:transcription", "text:continuation", "text:transcription"]
    sim = similarity(states)
    layers = llm.hf_model().config.num_hidden_layers + 1
    assert sim.shape == (layers, 4, 4)
    torch.testing.assert_close(sim.diagonal(dim1=1, dim2=2), torch.ones(layers, 4))
    torch.testing.assert_close(sim, sim.transpose(1, 2))
    centered = center(states)
    mean = torch.stack(list(centered.values())).mean(dim=(0, 2))
    torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-4, rtol=0)
    for task in TASKS:
        for s in (states, centered):
            matched, mismatched = content_check(s[f"speech:{task}"], s[f"text:{task}"])
            torch.testing.assert_close(matched, torch.ones(layers))
            assert (matched > mismatched + 1e-3).all()
    # Batching and padding do not change a row's pooled states.
    rows = text_rows(llm, TEXTS, prompts["transcription"])
    torch.testing.assert_close(layer_states(llm, rows, prompts["transcription"], batch_size=1),
                               states["text:transcription"], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="at least 2 utterances"):
        content_check(states["speech:continuation"][:, :1], states["text:continuation"][:, :1])


def test_real_speech_is_not_its_transcript(llm):
    prompt = build_prompt(llm.tokenizer, "continuation")
    torch.manual_seed(0)
    speech = [{SPEECH: torch.randn(5 + i, llm.hidden_size())} for i in range(len(TEXTS))]
    states = representations(llm, speech, TEXTS, {"c": prompt}, pool="all")
    matched, _ = content_check(states["speech:c"], states["text:c"])
    assert (matched[0] < 0.99).all()  # the check can fail


def test_cli_writes_tables_heatmap_and_summary(tmp_path, tiny_whisper_dir, tiny_llm_dir):
    config, _ = write_config(tmp_path, tiny_whisper_dir, tiny_llm_dir)
    rng = np.random.default_rng(0)
    utts = ["u1", "u2", "u3", "u4"]
    for u in utts:
        soundfile.write(tmp_path / f"{u}.wav", rng.normal(0, 0.1, 8000).astype("float32"), 16000)
    write_kv(tmp_path / "wav.scp", [(u, str(tmp_path / f"{u}.wav")) for u in utts])
    write_kv(tmp_path / "text", list(zip(utts[:3], TEXTS)))
    out = tmp_path / "out"
    cmd = ["--train_config", str(config), "--speech", f"{tmp_path / 'wav.scp'},sound",
           "--text", str(tmp_path / "text"), "--out_dir", str(out), "--batch_size", "2",
           "--instructions", "continuation", "Transcribe the speech. <speech>"]
    with pytest.raises(DataDirError, match=r"text: no value for utterance u4"):
        analyze_representation.main(cmd)
    analyze_representation.main(cmd + ["--max_utts", "3", "--title", "tiny"])
    assert sorted(p.name for p in out.iterdir()) == ["content.tsv", "heatmap.png", "similarity.tsv", "summary.md"]
    assert (out / "heatmap.png").read_bytes().startswith(b"\x89PNG")
    sim = (out / "similarity.tsv").read_text().splitlines()
    assert sim[0] == "layer\tcond_a\tcond_b\tcosine" and len(sim) == 1 + 3 * 4 * 4
    assert "0\tspeech:continuation\ttext:transcribe_the_speech\t" in sim[4]
    content = (out / "content.tsv").read_text().splitlines()
    assert content[0] == "layer\ttask\tmatched\tmismatched\tgap" and len(content) == 1 + 3 * 2
    summary = (out / "summary.md").read_text()
    gaps = {}
    for line in content[1:]:
        gaps.setdefault(line.split("\t")[1], []).append(float(line.split("\t")[4]))
    cells = {t: f"{g[1]:+.3f} ({sum(g) / 3:+.3f})" for t, g in gaps.items()}  # 3 layers: the middle is 1
    assert f"| continuation | transcribe_the_speech |\n|---|---|\n| {cells['continuation']} |" in summary
    # RESULTS.md's section: systems x tasks at the last layer, and the heatmap linked.
    (tmp_path / "representation/test").mkdir(parents=True)
    out.rename(tmp_path / "representation/test/blsp")
    section = score.representation_section(tmp_path / "representation")
    assert "| system | continuation | transcribe_the_speech |" in section
    assert f"| BLSP (trained adapter) | {cells['continuation']} | {cells['transcribe_the_speech']} |" in section
    assert f"[blsp]({tmp_path}/representation/test/blsp/heatmap.png)" in section
    assert score.representation_section(tmp_path / "nothing") == ""
