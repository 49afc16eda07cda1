"""BLSPModel: batch assembly, frozen parts, a training step, checkpoints."""

import pytest
import torch

from espnet_blsp.adapters.conv_glu_adapter import ConvGLUAdapter
from espnet_blsp.adapters.ctc_compress import compress_runs
from espnet_blsp.encoders.whisper_encoder import WhisperSpeechEncoder
from espnet_blsp.llm.batch import IGNORE_ID, assemble, response_logits, text_rows, token_logits
from espnet_blsp.llm.hf_causal_lm import HFCausalLM
from espnet_blsp.models.blsp import BLSPModel, unpad


def build_model(whisper_dir, llm_dir, **model_conf) -> BLSPModel:
    torch.manual_seed(0)
    encoder = WhisperSpeechEncoder(str(whisper_dir))
    llm = HFCausalLM(str(llm_dir), dtype="float32")
    adapter = ConvGLUAdapter(encoder.output_size(), llm.hidden_size(), bottleneck_dim=8)
    return BLSPModel(encoder, adapter, llm, **model_conf)


@pytest.fixture(scope="module")
def model(tiny_whisper_dir, tiny_llm_dir):
    return build_model(tiny_whisper_dir, tiny_llm_dir)


def speech_batch(lengths):
    g = torch.Generator().manual_seed(1)
    speech = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        speech[i, :n] = 0.1 * torch.randn(n, generator=g)
    return speech, torch.tensor(lengths)


def aux_loss_batch():
    """Speech, targets and transcripts of two utterances, padded."""
    speech, lengths = speech_batch([16000, 12000])
    text, text_lengths = torch.tensor([[20, 21], [22, -1]]), torch.tensor([2, 1])
    transcript, tlen = torch.tensor([[30, 31, 32], [33, 34, -1]]), torch.tensor([3, 2])
    return speech, lengths, text, text_lengths, transcript, tlen


def test_assembled_batch_places_speech_and_labels(model):
    prompt = model.prompt
    slots = [torch.randn(3, 32), torch.randn(5, 32)]
    targets = [[10, 11], [12]]
    batch = assemble(model.llm, [{"speech": s} for s in slots], prompt, targets)
    n_pre, n_suf = len(prompt.prefix), len(prompt.segments[1])
    for i, (slot, tgt) in enumerate(zip(slots, targets)):
        n = n_pre + slot.size(0) + n_suf + len(tgt) + 1
        assert batch.mask[i, :n].all() and not batch.mask[i, n:].any()  # right pad only
        assert batch.positions[i, :n].tolist() == list(range(n))
        torch.testing.assert_close(batch.embeds[i, n_pre : n_pre + slot.size(0)], slot)
        labelled = batch.labels[i][batch.labels[i] != IGNORE_ID].tolist()
        assert labelled == tgt + [prompt.end]
        assert (batch.labels[i, : n - len(tgt) - 1] == IGNORE_ID).all()
    left = assemble(model.llm, [{"speech": s} for s in slots], prompt, left_pad=True)
    n0 = n_pre + 3 + n_suf
    assert not left.mask[0, :-n0].any() and left.mask[0, -n0:].all()
    assert left.positions[0, -n0:].tolist() == list(range(n0))


def test_adapter_lengths_match_conv_arithmetic():
    adapter = ConvGLUAdapter(16, 32, bottleneck_dim=8)
    for n in [1, 7, 8, 9, 50, 1500]:
        out, lengths = adapter(torch.randn(1, n, 16), torch.tensor([n]))
        assert out.shape == (1, lengths.item(), 32)
        expected = n
        for _ in range(3):
            expected = (expected - 1) // 2 + 1
        assert lengths.item() == expected
    assert adapter(torch.randn(1, 1500, 16), torch.tensor([1500]))[1].item() == 188


def test_adapter_ignores_padding():
    adapter = ConvGLUAdapter(16, 32, bottleneck_dim=8)
    x = torch.randn(1, 40, 16)
    alone, n = adapter(x, torch.tensor([40]))
    padded = torch.cat([x, 100 * torch.randn(1, 24, 16)], dim=1)
    out, m = adapter(padded, torch.tensor([40]))
    assert n.item() == m.item()
    torch.testing.assert_close(out[:, : n.item()], alone)


def test_encoder_trims_and_handles_long_audio(model):
    speech, lengths = speech_batch([16000, 8000])
    frames, flen = model.encoder(speech, lengths)
    assert flen.tolist() == [50, 25]
    long_speech, long_len = speech_batch([16000 * 31])
    _, llen = model.encoder(long_speech, long_len)
    assert llen.tolist() == [1500 + 50]


def test_step_trains_only_the_adapter_and_loss_falls(model):
    frozen = {k: v.clone() for k, v in model.named_parameters() if not v.requires_grad}
    trainable = [p for p in model.parameters() if p.requires_grad]
    trains = {k.split(".")[0] for k, p in model.named_parameters() if p.requires_grad}
    assert trains == {"adapter", "ctc"}  # the adapter and its CTC head
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    speech, lengths = speech_batch([8000, 12000])
    text = torch.tensor([[20, 21, 22], [23, 24, -1]])
    text_lengths = torch.tensor([3, 2])
    losses = []
    model.train()
    assert not model.llm.training and not model.encoder.training
    for _ in range(10):
        loss, stats, weight = model(speech, lengths, text, text_lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8
    assert weight.item() == 2 and set(stats) == {"loss", "lm_loss", "acc", "ppl"}
    for k, v in model.named_parameters():
        if not v.requires_grad:
            assert v.grad is None
            torch.testing.assert_close(v, frozen[k])


def test_checkpoint_holds_only_the_adapter(model, tiny_whisper_dir, tiny_llm_dir):
    state = model.state_dict()
    assert state and all(k.startswith(("adapter.", "ctc.")) for k in state)
    encoder = WhisperSpeechEncoder(str(tiny_whisper_dir))
    llm = HFCausalLM(str(tiny_llm_dir), dtype="float32")
    adapter = ConvGLUAdapter(encoder.output_size(), llm.hidden_size(), bottleneck_dim=8)
    fresh = BLSPModel(encoder, adapter, llm)
    fresh.load_state_dict(state)  # strict: frozen keys are not required
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, state[k])
    with pytest.raises(RuntimeError, match="adapter"):
        fresh.load_state_dict({})


def test_frozen_llm_keeps_bf16_under_trainer_cast(tiny_whisper_dir, tiny_llm_dir):
    encoder = WhisperSpeechEncoder(str(tiny_whisper_dir))
    llm = HFCausalLM(str(tiny_llm_dir), dtype="bfloat16")
    adapter = ConvGLUAdapter(encoder.output_size(), llm.hidden_size(), bottleneck_dim=8)
    model = BLSPModel(encoder, adapter, llm).to(dtype=torch.float32)
    assert llm.dtype == torch.bfloat16
    assert next(model.adapter.parameters()).dtype == torch.float32
    speech, lengths = speech_batch([8000])
    loss, _, _ = model(speech, lengths, torch.tensor([[20, 21]]), torch.tensor([2]))
    loss.backward()
    assert all(p.grad is not None for p in model.adapter.parameters())


def test_text_and_speech_generation(model):
    prompt = model.make_prompt("Transcribe the speech. <speech>")
    texts = model.generate(text_rows(model.llm, ["the quick fox", "a"], prompt), prompt, max_new_tokens=5, do_sample=False)
    speech, lengths = speech_batch([8000, 16000])
    with torch.no_grad():
        rows = [{"speech": s} for s in model.speech_slots(speech, lengths)]
    outs = model.generate(rows, prompt, max_new_tokens=5, do_sample=False)
    assert len(texts) == 2 and len(outs) == 2 and all(isinstance(t, str) for t in texts + outs)
    # Left padding must not change a row's greedy output.
    single = model.generate(rows[:1], prompt, max_new_tokens=5, do_sample=False)
    assert single[0] == outs[0]


def test_generation_from_the_prefix_cache_matches_full_prompts(model):
    prompt = model.make_prompt("Continue this. <speech>")
    rows = text_rows(model.llm, ["the quick brown fox", "a", "jumps over the dog"], prompt)
    kwargs = dict(max_new_tokens=8, do_sample=False, eos_token_id=[prompt.end])
    full = assemble(model.llm, rows, prompt, left_pad=True)
    expected = model.llm.generate(full.embeds, full.mask, **kwargs)
    rest = assemble(model.llm, rows, prompt, left_pad=True, cached=prompt.prefix)
    cached = model.llm.generate(rest.embeds, rest.mask, prefix=prompt.prefix, **kwargs)
    assert cached == expected and any(len(ids) > 1 for ids in cached)


def test_unpadded_encoder_is_batch_invariant(tiny_whisper_dir):
    encoder = WhisperSpeechEncoder(str(tiny_whisper_dir))
    speech, lengths = speech_batch([16000, 5000, 9600])
    frames, flen = encoder(speech, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone, alen = encoder(speech[i : i + 1, :n], lengths[i : i + 1])
        assert alen.item() == flen[i].item()
        torch.testing.assert_close(frames[i, : flen[i]], alone[0], atol=1e-5, rtol=1e-4)


def test_padded_encoder_matches_hf_whisper(tiny_whisper_dir):
    from transformers import WhisperFeatureExtractor, WhisperModel

    encoder = WhisperSpeechEncoder(str(tiny_whisper_dir), pad_to_30s=True)
    speech, lengths = speech_batch([16000])
    frames, flen = encoder(speech, lengths)
    fe = WhisperFeatureExtractor.from_pretrained(tiny_whisper_dir)
    mel = fe(speech[0].numpy(), sampling_rate=16000, return_tensors="pt").input_features
    ref = WhisperModel.from_pretrained(tiny_whisper_dir).encoder(mel).last_hidden_state
    torch.testing.assert_close(frames[0], ref[0, :50])


def test_prefix_cache_gives_the_same_loss_and_gradients(model):
    speech, lengths = speech_batch([8000, 12000])
    targets = [[20, 21, 22], [23, 24]]

    def loss_and_grads(cached: bool):
        model.adapter.zero_grad()
        slots = [{"speech": s} for s in model.speech_slots(speech, lengths)]
        if cached:
            logits, target, rows = response_logits(model.llm, slots, model.prompt, targets)
        else:
            logits, target, rows = token_logits(model.llm, assemble(model.llm, slots, model.prompt, targets))
        nll = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        nll.sum().backward()
        return nll.detach(), rows, [p.grad.clone() for p in model.adapter.parameters()]

    full, full_rows, full_grads = loss_and_grads(False)
    cached, cached_rows, cached_grads = loss_and_grads(True)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-4)
    assert cached_rows.tolist() == full_rows.tolist() == [0, 0, 0, 0, 1, 1, 1]
    for a, b in zip(cached_grads, full_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-3)


def test_auxiliary_ctc_loss_trains_the_adapter(tiny_whisper_dir, tiny_llm_dir):
    model = build_model(tiny_whisper_dir, tiny_llm_dir, ctc_weight=0.5)
    speech, lengths, text, text_lengths, transcript, tlen = aux_loss_batch()
    with pytest.raises(ValueError, match="transcript"):
        model(speech, lengths, text, text_lengths)
    loss, stats, _ = model(speech, lengths, text, text_lengths, transcript, tlen)
    assert {"lm_loss", "ctc_loss"} <= set(stats)
    torch.testing.assert_close(loss.detach(), 0.5 * stats["lm_loss"] + 0.5 * stats["ctc_loss"])
    loss.backward()
    assert all(p.grad is not None for p in model.adapter.parameters())


def test_ctc_prealignment_trains_the_adapter_without_running_the_llm(
    tiny_whisper_dir, tiny_llm_dir, monkeypatch
):
    model = build_model(tiny_whisper_dir, tiny_llm_dir, ctc_weight=1.0, ctc_negatives=20)
    speech, lengths, text, text_lengths, transcript, tlen = aux_loss_batch()
    monkeypatch.setattr(model.llm, "hidden_states", None)  # calling the LLM would fail
    loss, stats, _ = model(speech, lengths, text, text_lengths, transcript, tlen)
    assert set(stats) == {"ctc_loss", "loss"} and loss > 0
    loss.backward()
    assert all(p.grad is not None for p in model.adapter.parameters())
    assert model.ctc.blank.grad is not None and model.ctc.scale.grad is not None


def test_sampled_ctc_equals_full_vocabulary_ctc_over_the_sampled_tokens(tiny_whisper_dir, tiny_llm_dir):
    """With every token sampled, the sampled softmax is the full one."""
    model = build_model(tiny_whisper_dir, tiny_llm_dir, ctc_weight=1.0, ctc_negatives=0)
    speech, lengths, _, _, transcript, tlen = aux_loss_batch()
    frames = model.speech_frames(speech, lengths)
    table, tokens = model.llm.embedding_table(), unpad(transcript, tlen)
    full = model.ctc(frames, tokens, table)
    model.ctc.negatives = 100 * table.size(0)
    torch.testing.assert_close(model.ctc(frames, tokens, table), full)


def test_ctc_compression_averages_runs_and_drops_blanks():
    frames = torch.arange(7.0)[:, None].repeat(1, 2)
    best = torch.tensor([0, 5, 5, 0, 5, 3, 3])  # blank, run of 5, blank, 5, run of 3
    out = compress_runs(frames, best)
    torch.testing.assert_close(out, torch.tensor([[1.5, 1.5], [4.0, 4.0], [5.5, 5.5]]))
    torch.testing.assert_close(compress_runs(frames, torch.zeros(7, dtype=torch.long)), frames)


def test_compressed_slots_follow_the_ctc_argmax(tiny_whisper_dir, tiny_llm_dir):
    model = build_model(tiny_whisper_dir, tiny_llm_dir, ctc_compress=True)
    speech, lengths = speech_batch([16000, 12000])
    frames = model.speech_frames(speech, lengths)
    # A blank that wins on the first frame (frames of equal norm) but not the second.
    f0 = frames[0].detach()
    model.ctc.blank.data = 1e3 * (f0[0] - f0[1])
    slots = model.speech_slots(speech, lengths)
    table = model.llm.embedding_table()
    for i, (f, s) in enumerate(zip(frames, slots)):
        best = model.ctc.logits(f, table).argmax(-1)
        torch.testing.assert_close(s, compress_runs(f, best))
        if i == 0:
            assert best[0] == 0 and best[1] != 0 and s.size(0) < f.size(0)


def test_distillation_loss_vanishes_when_speech_reads_as_the_transcript(
    tiny_whisper_dir, tiny_llm_dir, monkeypatch
):
    model = build_model(tiny_whisper_dir, tiny_llm_dir, kd_weight=0.7)
    speech, lengths, text, text_lengths, transcript, tlen = aux_loss_batch()
    loss, stats, _ = model(speech, lengths, text, text_lengths, transcript, tlen)
    assert stats["kd_loss"] > 0.01
    torch.testing.assert_close(loss.detach(), 0.3 * stats["lm_loss"] + 0.7 * stats["kd_loss"])
    loss.backward()
    assert all(p.grad is not None for p in model.adapter.parameters())

    # A student whose slots are the transcript's own embeddings is the teacher.
    monkeypatch.setattr(model, "to_slots", lambda _: [model.llm.embed(t) for t in unpad(transcript, tlen)])
    _, stats, _ = model(speech, lengths, text, text_lengths, transcript, tlen)
    assert stats["kd_loss"].abs() < 1e-5
    with pytest.raises(ValueError, match="<= 1"):
        BLSPModel(model.encoder, model.adapter, model.llm, ctc_weight=0.5, kd_weight=0.6)


def test_encoder_rejects_empty_audio_and_ignores_a_sliver_past_30s(model):
    with pytest.raises(ValueError, match="too short"):
        model.encoder(torch.zeros(1, 100), torch.tensor([100]))
    speech, lengths = speech_batch([16000 * 30 + 50])
    _, n = model.encoder(speech, lengths)
    assert n.tolist() == [1500]


def test_mixed_tasks_in_one_batch_score_as_each_alone(tiny_whisper_dir, tiny_llm_dir):
    """Rows with different prompts (task mixing) share only the common prefix
    from the cache, and each row's loss is what its prompt alone gives."""
    tasks = [{"instruction": "continuation"}, {"instruction": "transcription", "target": "transcript"}]
    model = build_model(tiny_whisper_dir, tiny_llm_dir, tasks=tasks)
    speech, lengths = speech_batch([8000, 12000])
    rows = [{"speech": s} for s in model.speech_slots(speech, lengths)]
    targets = [[20, 21, 22], [23, 24]]
    prompts = model.row_prompts(torch.tensor([[0], [1]]), 2)
    assert prompts[0] is not prompts[1]
    mixed, target, row = response_logits(model.llm, rows, prompts, targets)
    for i in range(2):
        alone, _, _ = response_logits(model.llm, rows[i : i + 1], prompts[i], targets[i : i + 1])
        torch.testing.assert_close(mixed[row == i], alone, atol=1e-4, rtol=1e-4)
    # The model's forward takes each utterance's task index.
    loss, _, _ = model(speech, lengths, torch.tensor([[20, 21, 22], [23, 24, -1]]), torch.tensor([3, 2]),
                       task=torch.tensor([[0], [1]]), task_lengths=torch.tensor([1, 1]))
    expected = torch.nn.functional.cross_entropy(mixed, target)
    torch.testing.assert_close(loss.detach().reshape(()), expected.detach(), atol=1e-4, rtol=1e-4)


def test_text_slots_fill_from_their_data(tiny_whisper_dir, tiny_llm_dir):
    """A prompt with speech and an ASR hypothesis reads the hypothesis ids."""
    turns = [{"role": "audio", "content": "<speech><asr_hyp>"}, {"role": "user", "content": "What can you hear?"}]
    model = build_model(tiny_whisper_dir, tiny_llm_dir, instruction=turns)
    speech, lengths = speech_batch([8000, 12000])
    response, rlen = torch.tensor([[20, 21], [22, -1]]), torch.tensor([2, 1])
    with pytest.raises(ValueError, match="asr_hyp"):
        model(speech, lengths, response, rlen)
    hyp, hlen = torch.tensor([[30, 31, 32], [33, -1, -1]]), torch.tensor([3, 1])
    loss, _, _ = model(speech, lengths, response, rlen, asr_hyp=hyp, asr_hyp_lengths=hlen)
    other, _, _ = model(speech, lengths, response, rlen, asr_hyp=hyp.flip(0), asr_hyp_lengths=hlen.flip(0))
    assert loss.item() != pytest.approx(other.item())  # the hypothesis is read
    frames = model.speech_slots(speech, lengths)
    batch = assemble(model.llm, [{"speech": f, "asr_hyp": h} for f, h in zip(frames, unpad(hyp, hlen))],
                     model.prompt, [[20, 21], [22]])
    n0 = len(model.prompt.segments[0])
    torch.testing.assert_close(batch.embeds[0, n0 + frames[0].size(0) :][:3], model.llm.embed(hyp[0]))


def test_encoder_hands_over_chosen_layers(tiny_whisper_dir):
    """layers=[k]: layer k's output before the final LayerNorm; several are
    concatenated on the feature axis; the default is the final output."""
    final = WhisperSpeechEncoder(str(tiny_whisper_dir))
    tapped = WhisperSpeechEncoder(str(tiny_whisper_dir), layers=[0, 0])
    assert tapped.output_size() == 2 * final.output_size() and tapped.num_layers() == 2
    speech, lengths = speech_batch([16000, 8000])
    out, n = final(speech, lengths)
    taps, m = tapped(speech, lengths)
    assert n.tolist() == m.tolist()
    d = final.output_size()
    torch.testing.assert_close(taps[..., :d], taps[..., d:])
    with torch.no_grad():
        normed = tapped.encoder.layer_norm(taps[..., :d])
    torch.testing.assert_close(normed[0, : n[0]], out[0, : n[0]])
    with pytest.raises(ValueError, match="layers"):
        WhisperSpeechEncoder(str(tiny_whisper_dir), layers=[1])


def test_auto_dtype_follows_the_hardware(monkeypatch):
    from espnet_blsp.utils import dtype as dt

    assert dt.resolve_dtype("float32") == torch.float32
    monkeypatch.setattr(dt, "native_bf16", lambda: True)
    assert dt.resolve_dtype("auto") == torch.bfloat16
    monkeypatch.setattr(dt, "native_bf16", lambda: False)
    assert dt.resolve_dtype("auto") == torch.float32
    with pytest.raises(ValueError, match="unknown dtype"):
        dt.resolve_dtype("float33")


def test_training_attention_gives_the_same_loss_and_gradients(tiny_whisper_dir, tiny_llm_dir):
    # The CPU demos train with train_attn_implementation: eager (SDPA's CPU backward is slower).
    speech, lengths = speech_batch([8000, 12000])
    text, text_lengths = torch.tensor([[20, 21, 22], [23, 24, -1]]), torch.tensor([3, 2])
    results = []
    for train_attn in (None, "eager"):
        torch.manual_seed(0)
        encoder = WhisperSpeechEncoder(str(tiny_whisper_dir))
        llm = HFCausalLM(str(tiny_llm_dir), dtype="float32", train_attn_implementation=train_attn)
        adapter = ConvGLUAdapter(encoder.output_size(), llm.hidden_size(), bottleneck_dim=8)
        model = BLSPModel(encoder, adapter, llm).train()
        seen = []
        llm.hf_model().model.layers[0].self_attn.register_forward_pre_hook(
            lambda m, a: seen.append(m.config._attn_implementation)
        )
        loss, _, _ = model(speech, lengths, text, text_lengths)
        loss.backward()
        with torch.no_grad():
            model(speech, lengths, text, text_lengths)
        # One training forward attends with it; the prompt-prefix cache and scoring keep SDPA.
        assert seen.count("eager") == (1 if train_attn else 0) and seen[-1] == "sdpa"
        results.append((loss.detach(), [p.grad for p in model.adapter.parameters()]))
    (sdpa_loss, sdpa_grads), (eager_loss, eager_grads) = results
    torch.testing.assert_close(eager_loss, sdpa_loss, atol=1e-5, rtol=1e-5)
    for a, b in zip(eager_grads, sdpa_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-3)
    with pytest.raises(ValueError, match="cannot be combined"):
        HFCausalLM(str(tiny_llm_dir), train_attn_implementation="eager", gradient_checkpointing=True)


def test_bf16_adapter_keeps_float32_weights_and_the_loss(tiny_whisper_dir, tiny_llm_dir):
    speech, lengths = speech_batch([8000, 12000])
    text, text_lengths = torch.tensor([[20, 21, 22], [23, 24, -1]]), torch.tensor([3, 2])
    losses = {}
    for dtype in ("float32", "bfloat16"):
        model = build_model(tiny_whisper_dir, tiny_llm_dir, adapter_dtype=dtype).train()
        assert all(f.dtype == torch.float32 for f in model.speech_frames(speech, lengths))
        loss, _, _ = model(speech, lengths, text, text_lengths)
        loss.backward()
        grads = [p.grad for p in model.adapter.parameters()]
        assert all(g is not None and g.dtype == torch.float32 and g.abs().sum() > 0 for g in grads)
        assert all(p.dtype == torch.float32 for p in model.adapter.parameters())
        losses[dtype] = loss.item()
    # bf16 keeps ~3 significant digits of each matmul: the loss moves by far less than a step does.
    assert abs(losses["bfloat16"] - losses["float32"]) < 0.01 * losses["float32"]
