"""CTranslate2 Whisper variables -> ``WhisperForConditionalGeneration`` parameters."""

import logging
import re
from typing import Dict

import torch
from typeguard import typechecked

from espnet_blsp.convert.common import ConversionError
from espnet_blsp.convert.ct2_model_bin import Ct2Model

# ctranslate2.specs.common_spec.Activation.GELU (exact erf GELU, as in Whisper).
_CT2_ACTIVATION_GELU = 3
# Heads of the released Whisper sizes, used only if model.bin lacks num_heads.
_HEADS_BY_D_MODEL = {384: 6, 512: 8, 768: 12, 1024: 16, 1280: 20}

logger = logging.getLogger(__name__)


class _Source:
    """Hands out CT2 variables as float32 tensors and records which were used."""

    def __init__(self, model: Ct2Model):
        self.model = model
        self.used = set()

    def scalar(self, name: str) -> int:
        real = self.model.resolve(name)
        self.used.add(real)
        return int(self.model.variables[real].item())

    def tensor(self, name: str):
        """The dequantized float32 tensor behind CT2 variable ``name``."""
        real = self.model.resolve(name)
        if real not in self.model.variables:
            raise ConversionError(f"CT2 variable {name!r} is missing from model.bin")
        self.used.add(real)
        kind = self.model.torch_dtypes[real]
        t = self.tensor_raw(real)
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
        """The stored tensor of variable ``real`` as is (bfloat16 bits viewed as bfloat16)."""
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


@typechecked
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


@typechecked
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

