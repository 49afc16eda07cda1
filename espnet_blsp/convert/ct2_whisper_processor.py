"""Tokenizer, feature extractor and generation config for a CTranslate2 Whisper dir."""

import json
import re
from pathlib import Path

from typeguard import typechecked

from espnet_blsp.convert.common import ConversionError

# Whisper's special tokens that are not languages (in vocabulary order).
_NON_LANGUAGE_SPECIALS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|nospeech|>",
    "<|notimestamps|>",
)
_LANGUAGE_TOKEN = re.compile(r"^<\|[a-z]{2,3}(_[a-z]+)?\|>$")



@typechecked
def build_tokenizer(ct2_dir: Path, vocab_size: int):
    """A ``WhisperTokenizer`` (fast) from the CT2 dir's ``tokenizer.json``.

    Timestamp tokens ``<|0.00|>`` ... are added (not special) when the file
    lacks them, so the tokenizer covers the model's whole vocabulary.

    Args:
        ct2_dir: The CT2 model directory.
        vocab_size: Rows of the model's embedding matrix.

    Returns:
        The tokenizer.
    """
    from tokenizers import AddedToken, Tokenizer
    from transformers import WhisperTokenizer

    path = ct2_dir / "tokenizer.json"
    if not path.is_file():
        raise ConversionError(
            f"{path} not found: a CT2 dir with only vocabulary.* lacks the BPE merges "
            "needed to rebuild Whisper's tokenizer"
        )
    tok = Tokenizer.from_file(str(path))
    n = tok.get_vocab_size(with_added_tokens=True)
    if n < vocab_size:
        if tok.token_to_id("<|notimestamps|>") != n - 1:
            raise ConversionError(
                f"{path} has {n} tokens, the model {vocab_size}, and the last token is not "
                "<|notimestamps|>: cannot tell what the missing tokens are"
            )
        tok.add_tokens([AddedToken("<|%.2f|>" % (i * 0.02), special=False, normalized=False)
                        for i in range(vocab_size - n)])
    n = tok.get_vocab_size(with_added_tokens=True)
    if n != vocab_size:
        raise ConversionError(f"{path} has {n} tokens but the model's vocabulary is {vocab_size}")
    _check_vocabulary_file(ct2_dir, tok)
    specials = [t.content for _, t in sorted(tok.get_added_tokens_decoder().items()) if t.special]
    return WhisperTokenizer(
        tokenizer_object=tok,
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        additional_special_tokens=[s for s in specials if s != "<|endoftext|>"],
    )


def _check_vocabulary_file(ct2_dir: Path, tok) -> None:
    """If the CT2 dir has ``vocabulary.txt``/``.json``, its ids must match the tokenizer."""
    if (ct2_dir / "vocabulary.json").is_file():
        tokens = json.loads((ct2_dir / "vocabulary.json").read_text(encoding="utf-8"))
    elif (ct2_dir / "vocabulary.txt").is_file():
        tokens = (ct2_dir / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
    else:
        return
    vocab = tok.get_vocab(with_added_tokens=True)
    by_id = {i: t for t, i in vocab.items()}
    if len(tokens) != len(by_id):
        raise ConversionError(f"vocabulary file has {len(tokens)} tokens, tokenizer.json {len(by_id)}")
    bad = [i for i, t in enumerate(tokens) if by_id.get(i) != t]
    if bad:
        i = bad[0]
        raise ConversionError(
            f"vocabulary file and tokenizer.json disagree at {len(bad)} ids, first {i}: "
            f"{tokens[i]!r} vs {by_id.get(i)!r}"
        )


@typechecked
def build_generation_config(tokenizer, ct2_config: dict, dims: dict):
    """Generation settings that make ``generate`` transcribe (English) speech.

    English-only models (vocabulary 51864) are prompted with
    ``<|startoftranscript|><|notimestamps|>``; multilingual ones with
    ``<|startoftranscript|><|en|><|transcribe|><|notimestamps|>`` by default
    (``language``/``task`` can be overridden at ``generate`` time).

    Args:
        tokenizer: The converted tokenizer.
        ct2_config: The CT2 ``config.json`` contents.
        dims: Architecture sizes from :func:`infer_whisper_dims`.

    Returns:
        A ``transformers.GenerationConfig``.
    """
    from transformers import GenerationConfig

    def tid(token: str) -> int:
        i = tokenizer.convert_tokens_to_ids(token)
        if i is None or i == tokenizer.unk_token_id and token != tokenizer.unk_token:
            raise ConversionError(f"tokenizer has no {token}")
        return i

    eot, sot = tid("<|endoftext|>"), tid("<|startoftranscript|>")
    multilingual = dims["vocab_size"] >= 51865
    decoder_layers, heads = dims["decoder_layers"], dims["decoder_attention_heads"]
    alignment_heads = ct2_config.get("alignment_heads") or [
        [layer, head] for layer in range(decoder_layers // 2, decoder_layers) for head in range(heads)
    ]
    gen = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=dims["max_target_positions"],
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
        no_timestamps_token_id=tid("<|notimestamps|>"),
        prev_sot_token_id=tid("<|startofprev|>"),
        max_initial_timestamp_index=50,
        return_timestamps=False,
        is_multilingual=multilingual,
        alignment_heads=[list(pair) for pair in alignment_heads],
    )
    if multilingual:
        lang_ids = ct2_config.get("lang_ids") or [
            tokenizer.convert_tokens_to_ids(t)
            for t in tokenizer.all_special_tokens
            if _LANGUAGE_TOKEN.match(t) and t not in _NON_LANGUAGE_SPECIALS
        ]
        gen.lang_to_id = {tokenizer.convert_ids_to_tokens(i): int(i) for i in lang_ids}
        gen.task_to_id = {"transcribe": tid("<|transcribe|>"), "translate": tid("<|translate|>")}
        gen.language = "en"
        gen.task = "transcribe"
    return gen


@typechecked
def build_feature_extractor(ct2_dir: Path, n_mels: int):
    """The CT2 dir's ``preprocessor_config.json``, or Whisper's standard one."""
    from transformers import WhisperFeatureExtractor

    if (ct2_dir / "preprocessor_config.json").is_file():
        fe = WhisperFeatureExtractor.from_pretrained(str(ct2_dir))
    else:
        fe = WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=16000)
    if fe.feature_size != n_mels:
        raise ConversionError(f"feature extractor has {fe.feature_size} mels, conv1 expects {n_mels}")
    return fe

