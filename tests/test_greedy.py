"""The shared-prefix greedy decoder gives HF generate's tokens."""

import pytest

import tiny_models
from espnet_blsp.llm import greedy
from espnet_blsp.llm.batch import assemble, text_rows
from espnet_blsp.llm.hf_causal_lm import HFCausalLM
from espnet_blsp.llm.prompt import Prompt, build_prompt, shared_prefix

TEXTS = ["the quick brown fox", "she walked", "the cat sleeps while the dog jumps over the lazy fox", "bread"]


def both(llm, prompt, monkeypatch, **kwargs):
    """(this decoder's ids, HF generate's ids) for TEXTS in the prompt."""
    cached = shared_prefix([prompt])
    batch = assemble(llm, text_rows(llm, TEXTS, prompt), prompt, left_pad=True, cached=cached)
    ours = llm.generate(batch.embeds, batch.mask, prefix=cached, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(greedy, "handles", lambda model, kw: False)
        theirs = llm.generate(batch.embeds, batch.mask, prefix=cached, **kwargs)
    return ours, theirs


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "qwen3"])
def test_same_tokens_as_hf_generate(tmp_path, monkeypatch, model_type):
    llm = HFCausalLM(str(tiny_models.make_llm(tmp_path, model_type=model_type, seed=3)), dtype="float32")
    assert greedy.handles(llm.hf_model(), {"max_new_tokens": 5, "do_sample": False})
    with_prefix = build_prompt(llm.tokenizer, "continuation", True)
    bare = Prompt(segments=[[], with_prefix.segments[-1]], slots=["speech"], leads=[""], end=with_prefix.end)
    for prompt in [with_prefix, bare]:
        ours, theirs = both(llm, prompt, monkeypatch, max_new_tokens=12, do_sample=False, eos_token_id=-1)
        assert ours == theirs and {len(o) for o in ours} == {12}
        # Rows that end early (an end token each meets at different steps)
        # are dropped from the batch; the others go on unchanged.
        ends = sorted({row[k] for row, k in zip(ours, (1, 3, 5, 7))})
        ours, theirs = both(llm, prompt, monkeypatch, max_new_tokens=12, do_sample=False, eos_token_id=ends)
        assert ours == theirs
        assert len({len(o) for o in ours}) > 1  # the rows did end at different steps


def test_other_settings_go_to_hf_generate(tiny_llm_dir):
    model = HFCausalLM(str(tiny_llm_dir), dtype="float32").hf_model()
    greedy_kwargs = {"max_new_tokens": 5, "do_sample": False}
    assert greedy.handles(model, greedy_kwargs)
    assert not greedy.handles(model, {"max_new_tokens": 5, "do_sample": True})
    assert not greedy.handles(model, {"max_new_tokens": 5, "num_beams": 2})
    assert not greedy.handles(model, {"max_new_tokens": 5, "repetition_penalty": 1.2})
    assert not greedy.handles(model, {"do_sample": False})  # HF's length default: max_length
    # The model's own defaults count as HF generate applies them.
    model.generation_config.repetition_penalty = 1.05  # as Qwen2.5-Instruct ships
    assert not greedy.handles(model, greedy_kwargs)
    model.generation_config.repetition_penalty = None
    model.generation_config.num_beams = 4
    assert not greedy.handles(model, greedy_kwargs)
    assert greedy.handles(model, {**greedy_kwargs, "num_beams": 1})
    model.generation_config.num_beams = None
    model.config.model_type = "gemma2"  # soft-capped attention: not this decoder's
    assert not greedy.handles(model, greedy_kwargs)


@pytest.mark.parametrize("kwargs", [{"num_beams": 2}, {"num_beams": 3, "num_return_sequences": 3}])
def test_beam_search_reads_the_prompt_prefix_from_the_cache(tiny_llm_dir, kwargs):
    llm = HFCausalLM(str(tiny_llm_dir), dtype="float32")
    prompt = build_prompt(llm.tokenizer, "continuation", True)
    rows = text_rows(llm, TEXTS, prompt)
    settings = dict(max_new_tokens=6, do_sample=False, eos_token_id=-1, **kwargs)
    cached = shared_prefix([prompt])
    batch = assemble(llm, rows, prompt, left_pad=True, cached=cached)
    full = assemble(llm, rows, prompt, left_pad=True)  # the prefix computed with each row
    assert len(cached) > 0
    assert llm.generate(batch.embeds, batch.mask, prefix=cached, **settings) == llm.generate(
        full.embeds, full.mask, **settings)
