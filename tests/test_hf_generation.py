"""fastdecode's loops inside ``model.generate(custom_generate=...)`` (fastdecode.hf.generation):
token-for-token equality with HF's own greedy and beam search on a tiny random Llama and on
SmolLM2; speculative decoding (prompt lookup, early-layer and separate drafts) exact against HF
greedy; contrastive decoding equal to calling contrastive_generate directly; and the settings that
cannot be honoured raising instead of being dropped."""

import os
import warnings

import pytest

torch = pytest.importorskip("torch", reason="torch is in the test extra")
transformers = pytest.importorskip("transformers", reason="transformers is in the test extra")

import fastdecode as fd  # noqa: E402
from fastdecode.hf import HFModel, contrastive, fastdecode_generate, speculative  # noqa: E402
from fastdecode.hf import model as hm  # noqa: E402

V, EOS, PAD = 96, 1, 2


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(1)
    cfg = transformers.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                   bos_token_id=0, eos_token_id=EOS, pad_token_id=PAD)
    m = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        m.lm_head.weight.mul_(6.0)
    return m


def gen(model, ids, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.generate(ids, **kw)


def _batch():
    ids = torch.tensor([[PAD, PAD, 5, 6, 7, 5, 6], [9, 10, 11, 12, 9, 10, 11]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1] * 7])
    return ids, mask


@pytest.mark.parametrize("draft", ["prompt_lookup", 1, 2, "self"])
def test_speculative_custom_generate_equals_hf_greedy(tiny, draft):
    ids, mask = _batch()
    kw = dict(max_new_tokens=25, do_sample=False, eos_token_id=EOS, pad_token_id=PAD)
    for x, m in ((ids[1:], mask[1:]), (ids, mask)):
        ref = gen(tiny, x, attention_mask=m, **kw)
        d = tiny if draft == "self" else draft
        out = gen(tiny, x, attention_mask=m, custom_generate=speculative, draft=d, num_draft_tokens=3, **kw)
        assert out.tolist() == ref.tolist()
    # HF's own prompt lookup (batch 1) agrees too
    ref_pl = gen(tiny, ids[1:], attention_mask=mask[1:], prompt_lookup_num_tokens=3, **kw)
    assert ref_pl.tolist() == gen(tiny, ids[1:], attention_mask=mask[1:], **kw).tolist()


def test_fastdecode_generate_equals_hf_greedy_and_beam(tiny):
    ids, mask = _batch()
    kw = dict(max_new_tokens=20, eos_token_id=EOS, pad_token_id=PAD, attention_mask=mask)
    for extra in (dict(do_sample=False), dict(do_sample=False, repetition_penalty=1.3, no_repeat_ngram_size=3),
                  dict(num_beams=3, do_sample=False, length_penalty=0.8),
                  dict(num_beams=3, do_sample=False, num_return_sequences=2, early_stopping=True)):
        ref = gen(tiny, ids, **kw, **extra)
        out = gen(tiny, ids, custom_generate=fastdecode_generate, **kw, **extra)
        assert out.tolist() == ref.tolist(), extra
    out = gen(tiny, ids, custom_generate=fastdecode_generate, return_dict_in_generate=True,
              **kw, do_sample=False)
    assert out.sequences.tolist() == gen(tiny, ids, **kw, do_sample=False).tolist()


def test_sampling_through_custom_generate_is_seeded(tiny):
    ids, mask = _batch()
    kw = dict(max_new_tokens=15, do_sample=True, top_p=0.9, temperature=0.8, eos_token_id=EOS,
              pad_token_id=PAD, attention_mask=mask)
    a = gen(tiny, ids, custom_generate=fastdecode_generate, fd_seed=[3, 4], **kw)
    b = gen(tiny, ids, custom_generate=fastdecode_generate, fd_seed=[3, 4], **kw)
    assert a.tolist() == b.tolist()
    s = fd.Sampler(temperature=0.8, top_p=0.9, top_k=50)  # HF's default top_k=50 is part of the config
    r = fd.generate(HFModel(tiny), ids.numpy(), attention_mask=mask.numpy(), sampler=s, seed=[3, 4],
                    max_new_tokens=15, eos_token_id=EOS, pad_token_id=PAD)
    assert a.tolist() == r.sequences.tolist()
    c = gen(tiny, ids, custom_generate=speculative, fd_seed=[3, 4], draft=2, **kw)
    assert c.shape[0] == 2
    # num_return_sequences copies of a prompt with a scalar seed: seeds 7, 8, 9 (independent draws)
    one = torch.tensor([[5, 6, 7]])
    d = gen(tiny, one, custom_generate=fastdecode_generate, fd_seed=7, num_return_sequences=3,
            max_new_tokens=15, do_sample=True, eos_token_id=EOS, pad_token_id=PAD)
    r = fd.generate(HFModel(tiny), [[5, 6, 7]] * 3, sampler=fd.Sampler(top_k=50), seed=[7, 8, 9],
                    max_new_tokens=15, eos_token_id=EOS, pad_token_id=PAD)
    assert d.tolist() == r.sequences.tolist() and len({tuple(x) for x in d.tolist()}) > 1


def test_contrastive_custom_generate_equals_direct_call(tiny):
    ids, mask = _batch()
    kw = dict(max_new_tokens=15, do_sample=False, eos_token_id=EOS, pad_token_id=PAD, attention_mask=mask)
    out = gen(tiny, ids, custom_generate=contrastive, amateur=1, alpha=0.1, **kw)
    r = fd.contrastive_generate(HFModel(tiny), HFModel(tiny, num_layers=1), ids.numpy(),
                                attention_mask=mask.numpy(), max_new_tokens=15, eos_token_id=EOS, pad_token_id=PAD)
    assert out.tolist() == r.sequences.tolist()
    out = gen(tiny, ids, custom_generate=contrastive, amateur=None, amateur_context=2, beta=0.5, **kw)
    r = fd.contrastive_generate(HFModel(tiny), None, ids.numpy(), attention_mask=mask.numpy(), amateur_context=2,
                                beta=0.5, max_new_tokens=15, eos_token_id=EOS, pad_token_id=PAD)
    assert out.tolist() == r.sequences.tolist()
    kw.update(num_beams=3)
    out = gen(tiny, ids, custom_generate=contrastive, amateur=1, **kw)
    assert out.shape[0] == 2


def test_unsupported_settings_raise(tiny):
    ids = torch.tensor([[3, 4, 5]])
    from transformers import LogitsProcessorList, StoppingCriteriaList, MaxTimeCriteria
    from transformers.generation.logits_process import ForcedEOSTokenLogitsProcessor

    with pytest.raises(ValueError, match="logits processor ForcedEOSTokenLogitsProcessor"):
        gen(tiny, ids, max_new_tokens=5, custom_generate=speculative,
            logits_processor=LogitsProcessorList([ForcedEOSTokenLogitsProcessor(10, EOS)]))
    with pytest.raises(ValueError, match="stopping criterion MaxTimeCriteria"):
        gen(tiny, ids, max_new_tokens=5, custom_generate=fastdecode_generate,
            stopping_criteria=StoppingCriteriaList([MaxTimeCriteria(10.0)]))
    with pytest.raises(ValueError, match="num_beams"):
        gen(tiny, ids, max_new_tokens=5, num_beams=2, custom_generate=speculative)
    with pytest.raises(TypeError, match="draft"):
        gen(tiny, ids, max_new_tokens=5, custom_generate=speculative, draft=True)


# -- SmolLM2 -------------------------------------------------------------------------------------

QUESTIONS = ["Repeat exactly: the quick brown fox jumps over the lazy dog, the quick brown fox.",
             "List the days of the week, separated by commas.",
             "What is 12 times 12?"]


@pytest.fixture(scope="module")
def smollm2():
    try:
        model, tok = hm.load_smollm2()
    except ImportError as e:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"the SmolLM2 tests must run in CI: {e}")
        pytest.skip(f"SmolLM2 is not installed: {e}")
    ids = [tok(tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                       tokenize=False), add_special_tokens=False).input_ids for q in QUESTIONS]
    return model, tok, ids


@pytest.mark.smollm2
def test_smollm2_speculative_greedy_equals_hf(smollm2):
    model, tok, ids = smollm2
    M = HFModel(model)
    kw = dict(max_new_tokens=20, do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=2)
    for q in range(len(ids)):
        x = torch.tensor([ids[q]])
        ref = gen(model, x, attention_mask=torch.ones_like(x), **kw).tolist()
        if q == 0:  # HF's own assisted generation with prompt lookup agrees with its greedy
            assert gen(model, x, attention_mask=torch.ones_like(x), prompt_lookup_num_tokens=4, **kw).tolist() == ref
        r = fd.speculative_generate(M, fd.PromptLookup(), [ids[q]], max_new_tokens=20, eos_token_id=tok.eos_token_id,
                                    pad_token_id=2, num_draft_tokens=4)
        assert r.sequences.tolist() == ref, tok.decode(r.new_tokens(0))
        if q == 1:  # an early-exit draft (the first 20 of 30 layers), through custom_generate
            out = gen(model, x, attention_mask=torch.ones_like(x), custom_generate=speculative, draft=20, **kw)
            assert out.tolist() == ref
    # a ragged batch, rows accepting different numbers of drafts
    want = fd.generate(M, ids, max_new_tokens=20, eos_token_id=tok.eos_token_id, pad_token_id=2)
    r = fd.speculative_generate(M, "prompt_lookup", ids, max_new_tokens=20, eos_token_id=tok.eos_token_id,
                                pad_token_id=2, num_draft_tokens=4)
    assert (r.sequences == want.sequences).all() and r.stats.acceptance_rate > 0


@pytest.mark.smollm2
def test_smollm2_contrastive_runs_and_each_token_is_the_best_score(smollm2):
    """Contrastive decoding on SmolLM2 with the two amateurs of issue 6 — its first 8 layers, and the
    model itself on the last 4 tokens: every chosen token maximises the contrastive score
    recomputed from full forwards without a cache (within 1e-3: cached and uncached logits differ in
    the last bits), the generation stays inside the plausibility head, and custom_generate equals
    the direct call."""
    import numpy as np

    model, tok, ids = smollm2
    E, A = HFModel(model), HFModel(model, num_layers=8)
    n = 12
    for amateur, kw in ((A, {}), (None, dict(amateur_context=4))):
        r = fd.contrastive_generate(E, amateur, [ids[1]], max_new_tokens=n, eos_token_id=tok.eos_token_id,
                                    pad_token_id=2, **kw)
        new = r.new_tokens(0).tolist()
        assert len(new) == n or (r.finish_reasons[0] == "eos" and new[-1] == tok.eos_token_id and len(new) > 3)
        seq = list(ids[1])
        for t in new:
            x = np.array([seq])
            le = E(x)[0, -1]
            la = (A(x) if amateur is A else E(x[:, -4:]))[0, -1]
            score = fd.contrastive_logits(le, la, alpha=0.1)
            assert np.isfinite(score[t]) and score[t] >= score.max() - 1e-3, (t, int(score.argmax()))
            seq.append(t)
        x = torch.tensor([ids[1]])
        out = gen(model, x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                  eos_token_id=tok.eos_token_id, pad_token_id=2, custom_generate=contrastive,
                  amateur=8 if amateur is A else None, **kw)
        assert out.tolist() == r.sequences.tolist()
