"""Prompts with named slots (``<speech>``, ``<transcript>``, ...) in chat turns.

A prompt is written as one user instruction (a string) or as a list of chat
turns; each slot names what stands there: ``<speech>`` the adapter's
embeddings, any other slot the tokens of the data of that name (e.g. an ASR
hypothesis). The text between slots is tokenized here, once.
"""

import re
from dataclasses import dataclass
from typing import Dict, List, Sequence, Union

from typeguard import typechecked

SPEECH = "speech"
# Data that can fill a slot: the speech, or text tokenized by the preprocessor.
TEXT_SLOTS = ("transcript", "asr_hyp")
SLOT_PATTERN = re.compile(r"<(%s)>" % "|".join((SPEECH,) + TEXT_SLOTS))

Turns = List[Dict[str, str]]
PromptSpec = Union[str, Turns]

# DeSTA2 (arXiv 2409.20007) asks one question of every utterance.
DESCRIPTION_QUESTION = "What can you hear from the audio?"
# The one source of each instruction; configs name them (``instruction: continuation``).
INSTRUCTIONS: Dict[str, PromptSpec] = {
    # BLSP step 1 and training (arXiv 2309.00916).
    "continuation": "Continue the following text in a coherent and engaging style "
    "with less than 40 words. <speech>",
    "transcription": "Transcribe the following speech into text. <speech>",
    # DeSTA2's step 1: the LLM reads the seed transcript (metadata as text)
    # where the speech will be (../shared/DESTA2.md §1.2).
    "describe_seed": f"<{SPEECH}>\n{DESCRIPTION_QUESTION}",
    # DeSTA2's training: an "audio" turn with the speech and then Whisper's
    # transcript, before the question (§2.6).
    "description": [
        {"role": "audio", "content": f"<{SPEECH}><asr_hyp>"},
        {"role": "user", "content": DESCRIPTION_QUESTION},
    ],
    # Spoken language understanding, answered with a label (evaluation/tasks.py
    # scores it by accuracy after normalising the answer).
    "intent": "What does the speaker of the following audio want? Answer with the intent "
    "as scenario_action, such as alarm_set or weather_query. <speech>",
    "sentiment": "What is the sentiment of the speaker of the following audio? "
    "Answer with one word: positive, negative or neutral. <speech>",
}
# Speech translation: BLSP's released instruction ("Please translate the
# following audio into German text."), one per target language code.
TRANSLATION_LANGUAGES = {
    "ca": "Catalan", "de": "German", "es": "Spanish", "et": "Estonian", "fa": "Persian",
    "fr": "French", "id": "Indonesian", "it": "Italian", "ja": "Japanese", "nl": "Dutch",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sv-SE": "Swedish", "tr": "Turkish",
    "zh-CN": "Chinese",
}
INSTRUCTIONS.update({
    f"translation_{code}": f"Please translate the following audio into {name} text. <{SPEECH}>"
    for code, name in TRANSLATION_LANGUAGES.items()
})
# The BLSP paper's template for LLMs without a chat template.
PAPER_TEMPLATE = "###[Human]:{instruction}\n\n\n###[Assistant]:"


@dataclass
class Prompt:
    """A tokenized prompt: text segments around named slots.

    The LLM reads ``segments[0] slot[0] segments[1] ... slot[-1] segments[-1]``
    and then the response.

    Attributes:
        segments: Token ids of the text around the slots (one more than slots).
        slots: Slot names in order.
        leads: Per slot, the spaces the template had right before it: text
            in that slot is tokenized with them glued on (``lead + text``),
            as the full prompt typed out would be, while speech goes right
            after the segment.
        end: Id closing the response (end of turn, or EOS).
    """

    segments: List[List[int]]
    slots: List[str]
    leads: List[str]
    end: int

    @property
    def prefix(self) -> List[int]:
        """Ids before the first slot: the same for every utterance."""
        return self.segments[0]

    def lead(self, slot: str) -> str:
        """The lead of ``slot`` (see ``leads``)."""
        return self.leads[self.slots.index(slot)]


def resolve_instruction(spec: PromptSpec) -> PromptSpec:
    """A registered instruction's text for its name; anything else as given."""
    if isinstance(spec, str):
        return INSTRUCTIONS.get(spec, spec)
    return spec


@typechecked
def build_prompt(tokenizer, spec: PromptSpec, use_chat_template: bool = True) -> Prompt:
    """Formats a prompt with the LLM's chat template and splits it at its slots.

    Args:
        tokenizer: The LLM's HF tokenizer.
        spec: An instruction (a name from ``INSTRUCTIONS`` or text: one user
            turn) or chat turns ``[{"role": ..., "content": ...}, ...]``
            (e.g. DeSTA2's ``audio`` turn with ``<speech><asr_hyp>`` before
            the user turn). ``<speech>`` must occur exactly once.
        use_chat_template: Use the tokenizer's chat template when it has one;
            otherwise the BLSP paper's ``###[Human]:`` template, with the
            turns' contents joined by newlines.

    Returns:
        The prompt's token ids and slots.
    """
    spec = resolve_instruction(spec)
    turns = [{"role": "user", "content": spec}] if isinstance(spec, str) else spec
    text = "\n".join(t["content"] for t in turns)
    if text.count(f"<{SPEECH}>") != 1:
        raise ValueError(f"a prompt must contain <{SPEECH}> once: {spec!r}")
    if use_chat_template and tokenizer.chat_template:
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        end = _end_of_turn(tokenizer)
    else:
        text = PAPER_TEMPLATE.format(instruction=text)
        if tokenizer.bos_token:
            text = tokenizer.bos_token + text
        end = tokenizer.eos_token_id
    pieces = SLOT_PATTERN.split(text)  # text, slot, text, slot, ..., text
    texts, slots = pieces[0::2], pieces[1::2]
    if len(set(slots)) != len(slots):
        raise ValueError(f"a slot occurs twice in {spec!r}")
    segments, leads = [], []
    for before in texts[:-1]:
        # A space before a slot belongs to the text that fills it (BPE glues
        # it to the next word); newlines belong to the template.
        head = before.rstrip(" ")
        segments.append(token_ids(tokenizer, head))
        leads.append(before[len(head) :])
    segments.append(token_ids(tokenizer, texts[-1]))
    return Prompt(segments=segments, slots=slots, leads=leads, end=end)


def token_ids(tokenizer, text: str) -> List[int]:
    """``text``'s ids without special tokens (a template already holds every one it wants)."""
    return tokenizer(text, add_special_tokens=False).input_ids if text else []


def _end_of_turn(tokenizer) -> int:
    """The first token the chat template writes after an assistant reply."""
    marker = "XYZZY"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": marker}],
        tokenize=False,
    )
    tail = text[text.rindex(marker) + len(marker) :]
    ids = token_ids(tokenizer, tail.lstrip(" "))
    return ids[0] if ids else tokenizer.eos_token_id


def shared_prefix(prompts: Sequence[Prompt]) -> List[int]:
    """The longest run of ids every prompt starts with (read from the KV cache)."""
    first = prompts[0].prefix
    n = len(first)
    for p in prompts[1:]:
        n = next((i for i, (a, b) in enumerate(zip(first[:n], p.prefix)) if a != b), min(n, len(p.prefix)))
    return first[:n]



def ask(spec: PromptSpec, question: str) -> PromptSpec:
    """A prompt asking ``question`` about the input the way ``spec`` presents it.

    The last user turn is changed: DeSTA2's question in it is replaced (the
    seed or speech before it stays); a turn with no slot (after DeSTA2's
    ``audio`` turn) becomes the question; any other instruction (BLSP's)
    becomes the question followed by the speech, as BLSP's transcription
    instruction reads. Earlier turns (e.g. examples) stay as they are.

    Args:
        spec: A prompt (name, text or turns) with one ``<speech>`` slot.
        question: E.g. "What is the gender of the speaker? The answer could be female or male."
    """
    spec = resolve_instruction(spec)
    turns = [{"role": "user", "content": spec}] if isinstance(spec, str) else [dict(t) for t in spec]
    users = [k for k, t in enumerate(turns) if t["role"] == "user"]
    if not users:
        raise ValueError(f"no user turn to ask in: {spec!r}")
    last = users[-1]
    content = turns[last]["content"]
    if DESCRIPTION_QUESTION in content:
        content = content.replace(DESCRIPTION_QUESTION, question)
    elif SLOT_PATTERN.search(content):
        content = f"{question} <{SPEECH}>"
    else:
        content = question
    turns[last]["content"] = content
    return content if isinstance(spec, str) else turns


def ask_instruction(spec: PromptSpec, instruction: PromptSpec) -> PromptSpec:
    """:func:`ask` with a one-turn instruction's words (a registered name or
    text; its ``<speech>`` dropped): another task put to a system in its own
    prompt ("continuation" asked of DeSTA2 keeps its audio turn). Worked
    examples of the system's own task (user and assistant turns before the
    last user turn) are dropped: they would show the other task's answers.

    Raises:
        ValueError: ``instruction`` is chat turns.
    """
    text = resolve_instruction(instruction)
    if not isinstance(text, str):
        raise ValueError(f"only a one-turn instruction can be asked in another prompt: {instruction!r}")
    asked = ask(spec, " ".join(text.replace(f"<{SPEECH}>", " ").split()))
    if isinstance(asked, str):
        return asked
    last = max(k for k, t in enumerate(asked) if t["role"] == "user")
    return [t for k, t in enumerate(asked) if k == last or t["role"] not in ("user", "assistant")]
