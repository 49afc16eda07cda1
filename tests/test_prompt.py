"""Prompts with named slots, registered instructions and task mixing."""

import numpy as np
import pytest
import yaml
from transformers import AutoTokenizer

from espnet_blsp.bin.check_instruction import mismatches
from espnet_blsp.llm.prompt import INSTRUCTIONS, build_prompt, shared_prefix
from espnet_blsp.llm.task_mix import build_tasks, choose_task, text_leads


@pytest.fixture(scope="module")
def tok(tiny_llm_dir):
    return AutoTokenizer.from_pretrained(tiny_llm_dir)


def test_chat_template_prompt_splits_at_slot(tok):
    p = build_prompt(tok, "Continue the text. <speech>")
    assert p.slots == ["speech"] and len(p.segments) == 2
    assert tok.decode(p.prefix) == "<|im_start|>user\nContinue the text."
    assert tok.decode(p.segments[1]) == "<|im_end|>\n<|im_start|>assistant\n"
    assert p.lead("speech") == " "
    assert p.end == tok.convert_tokens_to_ids("<|im_end|>")


def test_paper_template_without_chat_template(tiny_base_llm_dir):
    tok = AutoTokenizer.from_pretrained(tiny_base_llm_dir)
    assert not tok.chat_template
    p = build_prompt(tok, "Transcribe: <speech>")
    assert tok.decode(p.prefix) == "<|endoftext|>###[Human]:Transcribe:"
    assert tok.decode(p.segments[1]) == "\n\n\n###[Assistant]:"
    assert p.end == tok.eos_token_id


def test_text_slot_tokenizes_like_the_full_prompt(tok):
    """Text in the slot gives the same ids as the prompt typed out in full."""
    p = build_prompt(tok, "Continue the text. <speech>")
    slot = tok(p.lead("speech") + "the quick fox", add_special_tokens=False).input_ids
    full = tok.apply_chat_template(
        [{"role": "user", "content": "Continue the text. the quick fox"}],
        tokenize=False, add_generation_prompt=True,
    )
    assert p.prefix + slot + p.segments[1] == tok(full, add_special_tokens=False).input_ids


def test_slots_in_chat_turns_keep_the_template_newlines(tok):
    """DeSTA2's layout: speech then a transcript in an audio turn of their own."""
    turns = [
        {"role": "audio", "content": "<speech><asr_hyp>"},
        {"role": "user", "content": "What can you hear from the audio?"},
    ]
    p = build_prompt(tok, turns)
    assert p.slots == ["speech", "asr_hyp"] and p.leads == ["", ""]
    assert tok.decode(p.segments[0]) == "<|im_start|>audio\n"  # the newline stays before the speech
    assert p.segments[1] == []
    assert tok.decode(p.segments[2]).startswith("<|im_end|>\n<|im_start|>user\nWhat can you hear")


@pytest.mark.parametrize("bad", ["no slot", "<speech> twice <speech>", "<speech> <transcript> <transcript>"])
def test_prompt_needs_one_speech_slot_and_no_repeats(tok, bad):
    with pytest.raises(ValueError, match="once|twice"):
        build_prompt(tok, bad)


def test_registered_instructions_resolve_by_name(tok):
    assert build_prompt(tok, "continuation").segments == build_prompt(tok, INSTRUCTIONS["continuation"]).segments


def test_shared_prefix_is_the_common_start(tok):
    a, b = build_prompt(tok, "continuation"), build_prompt(tok, "transcription")
    common = shared_prefix([a, b])
    assert common == a.prefix[: len(common)] == b.prefix[: len(common)]
    assert 0 < len(common) < min(len(a.prefix), len(b.prefix))
    assert shared_prefix([a, a]) == a.prefix


def test_task_mix_draws_by_weight_and_is_fixed_outside_training(tok):
    tasks = build_tasks(tok, None, [
        {"instruction": "continuation", "weight": 0.9},
        {"instruction": "transcription", "target": "transcript", "weight": 0.1},
    ], True)
    np.random.seed(0)
    drawn = [choose_task(tasks, f"u{i}", train=True) for i in range(2000)]
    assert 0.06 < np.mean(drawn) < 0.14
    valid = [choose_task(tasks, f"u{i}", train=False) for i in range(2000)]
    assert valid == [choose_task(tasks, f"u{i}", train=False) for i in range(2000)]
    assert 0.06 < np.mean(valid) < 0.14
    assert text_leads(tasks)["transcript"] == " "  # as the speech slot's (the KD teacher reads it there)
    with pytest.raises(ValueError, match="target"):
        build_tasks(tok, None, [{"instruction": "continuation", "target": "nothing"}], True)
    with pytest.raises(ValueError, match="either"):
        build_tasks(tok, "continuation", [{"instruction": "continuation"}], True)


def test_check_instruction_names_both_configs(tmp_path):
    gen = tmp_path / "continuation.yaml"
    gen.write_text(yaml.safe_dump({"instruction": "continuation"}))
    same = tmp_path / "same.yaml"
    same.write_text(yaml.safe_dump({"model_conf": {"instruction": INSTRUCTIONS["continuation"]}}))
    default = tmp_path / "default.yaml"
    default.write_text(yaml.safe_dump({"model_conf": {"ctc_weight": 1.0}}))
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(yaml.safe_dump({"model_conf": {"tasks": [
        {"instruction": "continuation"}, {"instruction": "transcription", "target": "transcript"}]}}))
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"model_conf": {"instruction": "Say more. <speech>"}}))
    assert mismatches(gen, same) == mismatches(gen, default) == mismatches(gen, mixed) == []
    (problem,) = mismatches(gen, other)
    assert "other.yaml" in problem and "continuation.yaml" in problem and "Say more" in problem
