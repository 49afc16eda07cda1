"""DeSTA2Model: descriptive speech-text alignment (arXiv 2409.20007)."""

from typing import Optional

from typeguard import typechecked

from espnet_blsp.adapters.abs_adapter import AbsAdapter
from espnet_blsp.encoders.abs_encoder import AbsSpeechEncoder
from espnet_blsp.llm.abs_llm import AbsLLM
from espnet_blsp.llm.prompt import PromptSpec
from espnet_blsp.models.blsp import BLSPModel


class DeSTA2Model(BLSPModel):
    """The LLM, hearing the speech and then Whisper's transcript, learns to
    answer "What can you hear from the audio?" as it answered about the
    utterance's seed transcript (its words *and* who spoke them how).

    The same machinery as BLSP: frozen encoder and LLM, a trainable adapter
    (DeSTA2's is the Q-Former over several encoder layers), and the LM loss
    on the response and its end token only. What differs is the data (the
    ``response`` is the LLM's description of the seed) and the prompt: an
    ``audio`` chat turn holding ``<speech><asr_hyp>`` before the question
    (``INSTRUCTIONS["description"]``; ../shared/DESTA2.md §2.6).

    Args:
        encoder: Frozen speech encoder (e.g. several Whisper layers).
        adapter: The trainable connector.
        llm: The frozen LLM.
        instruction: The training prompt (default: DeSTA2's).
        use_chat_template: Prompt through the LLM's chat template if any.
        adapter_dtype: Compute dtype of the adapter (``BLSPModel``).
        extract_feats_in_collect_stats: ESPnet flag; shapes need no model.
    """

    @typechecked
    def __init__(
        self,
        encoder: AbsSpeechEncoder,
        adapter: AbsAdapter,
        llm: AbsLLM,
        instruction: Optional[PromptSpec] = "description",
        use_chat_template: bool = True,
        adapter_dtype: str = "float32",
        extract_feats_in_collect_stats: bool = False,
    ):
        super().__init__(
            encoder, adapter, llm, instruction=instruction, use_chat_template=use_chat_template,
            adapter_dtype=adapter_dtype, extract_feats_in_collect_stats=extract_feats_in_collect_stats,
        )
