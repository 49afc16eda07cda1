"""Prompt construction around the speech slot."""

import pytest
from transformers import AutoTokenizer

from espnet_blsp.llm.prompt import SPEECH_SLOT, build_prompt


def test_chat_template_prompt_splits_at_slot(tiny_llm_dir):
    tok = AutoTokenizer.from_pretrained(tiny_llm_dir)
    p = build_prompt(tok, "Continue the text. <speech>")
    assert tok.decode(p.prefix) == "<|im_start|>user\nContinue the text."
    assert tok.decode(p.suffix) == "<|im_end|>\n<|im_start|>assistant\n"
    assert p.slot_lead == " "
    assert p.end == tok.convert_tokens_to_ids("<|im_end|>")


def test_paper_template_without_chat_template(tiny_base_llm_dir):
    tok = AutoTokenizer.from_pretrained(tiny_base_llm_dir)
    assert not tok.chat_template
    p = build_prompt(tok, "Transcribe: <speech>")
    assert tok.decode(p.prefix) == "<|endoftext|>###[Human]:Transcribe:"
    assert tok.decode(p.suffix) == "\n\n\n###[Assistant]:"
    assert p.end == tok.eos_token_id


def test_text_slot_tokenizes_like_the_full_prompt(tiny_llm_dir):
    """Text in the slot gives the same ids as the prompt typed out in full."""
    tok = AutoTokenizer.from_pretrained(tiny_llm_dir)
    p = build_prompt(tok, "Continue the text. <speech>")
    slot = tok(p.slot_lead + "the quick fox", add_special_tokens=False).input_ids
    full = tok.apply_chat_template(
        [{"role": "user", "content": "Continue the text. the quick fox"}],
        tokenize=False, add_generation_prompt=True,
    )
    assert p.prefix + slot + p.suffix == tok(full, add_special_tokens=False).input_ids


@pytest.mark.parametrize("bad", ["no slot", f"{SPEECH_SLOT} twice {SPEECH_SLOT}"])
def test_instruction_needs_one_slot(tiny_llm_dir, bad):
    tok = AutoTokenizer.from_pretrained(tiny_llm_dir)
    with pytest.raises(ValueError, match="once"):
        build_prompt(tok, bad)
