"""Builds the LLM prompt around a speech (or transcript) slot."""

from dataclasses import dataclass
from typing import List

from typeguard import typechecked

SPEECH_SLOT = "<speech>"
CONTINUATION_INSTRUCTION = (
    "Continue the following text in a coherent and engaging style with less "
    "than 40 words. " + SPEECH_SLOT
)
# The BLSP paper's template for LLMs without a chat template.
PAPER_TEMPLATE = "###[Human]:{instruction}\n\n\n###[Assistant]:"


@dataclass
class Prompt:
    """Token ids around the slot.

    Attributes:
        prefix: Ids before the slot (chat header, instruction start).
        suffix: Ids after the slot, up to where the response starts.
        slot_lead: Text glued before a transcript put in the slot (the space
            the instruction had before the slot), so text and speech prompts
            tokenize alike.
        end: Id closing the response (end of turn, or EOS).
    """

    prefix: List[int]
    suffix: List[int]
    slot_lead: str
    end: int


@typechecked
def build_prompt(tokenizer, instruction: str, use_chat_template: bool = True) -> Prompt:
    """Formats ``instruction`` as the LLM's user turn and splits it at the slot.

    Args:
        tokenizer: The LLM's HF tokenizer.
        instruction: Instruction text containing ``<speech>`` exactly once.
        use_chat_template: Use the tokenizer's chat template when it has one;
            otherwise the BLSP paper's ``###[Human]:`` template.

    Returns:
        The prompt's token ids.
    """
    if instruction.count(SPEECH_SLOT) != 1:
        raise ValueError(f"instruction must contain {SPEECH_SLOT} once: {instruction!r}")
    if use_chat_template and tokenizer.chat_template:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": instruction}],
            tokenize=False,
            add_generation_prompt=True,
        )
        end = _end_of_turn(tokenizer)
    else:
        text = PAPER_TEMPLATE.format(instruction=instruction)
        if tokenizer.bos_token:
            text = tokenizer.bos_token + text
        end = tokenizer.eos_token_id
    before, after = text.split(SPEECH_SLOT)
    head = before.rstrip()
    return Prompt(
        prefix=_ids(tokenizer, head),
        suffix=_ids(tokenizer, after),
        slot_lead=before[len(head) :],
        end=end,
    )


def _ids(tokenizer, text: str) -> List[int]:
    # The template already holds every special token it wants.
    return tokenizer(text, add_special_tokens=False).input_ids


def _end_of_turn(tokenizer) -> int:
    """The first token the chat template writes after an assistant reply."""
    marker = "XYZZY"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": marker}],
        tokenize=False,
    )
    tail = text[text.rindex(marker) + len(marker) :]
    ids = _ids(tokenizer, tail.lstrip(" "))
    return ids[0] if ids else tokenizer.eos_token_id
