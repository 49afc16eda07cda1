"""Tiny random HF checkpoints built from configs: no downloads, seconds to make."""

from pathlib import Path

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "continue the following text in a coherent and engaging style with less than words",
    "the quick brown fox jumps over the lazy dog while the cat sleeps",
    "transcribe the speech what can you hear from the audio",
    "she walked to the market in the morning and bought fresh bread",
]


def make_tokenizer(chat_template: bool = True):
    """A byte-level BPE tokenizer trained on a few sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 5, trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>" if chat_template else "<|endoftext|>",
        bos_token=None if chat_template else "<|endoftext|>",
    )
    if chat_template:
        hf.chat_template = CHATML
    return hf


def make_llm(out_dir: Path, chat_template: bool = True, seed: int = 0, model_type: str = "llama") -> Path:
    """A 2-layer random causal LM (Llama unless told, e.g. "qwen2") with its
    tokenizer, saved as an HF checkpoint."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    tok = make_tokenizer(chat_template)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=512,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        tie_word_embeddings=True,
        initializer_range=0.2,  # a responsive random LLM, so losses can move
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def make_whisper(out_dir: Path, seed: int = 0) -> Path:
    """A 1-layer random Whisper with the standard 80-mel feature extractor and a tokenizer."""
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=100,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=64,
        decoder_start_token_id=1,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    WhisperForConditionalGeneration(config).save_pretrained(out_dir)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(out_dir)
    make_tokenizer().save_pretrained(out_dir)  # whisper_decode's (ids < 100 decode as any)
    return out_dir
