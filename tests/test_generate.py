"""generate() and stream(): greedy equals an argmax loop, seeded sampling is reproducible and batch
invariant, stop rules, streaming, logprobs, the session protocol and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import fastdecode as fd
from fastdecode.session import ModelOutputError, RecomputeSession, start_session

from conftest import chi_square_pvalue

V = 11


def _table(seed=0, v=V, order=2, scale=2.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((v,) * (order - 1) + (v,)) * scale).astype(np.float32)


class Bigram:
    """A plain callable: logits (B, S, V) for every position from a bigram table."""

    def __init__(self, table, last_only=False):
        self.t = table
        self.calls = []
        self.last_only = last_only

    def __call__(self, ids):
        self.calls.append(np.array(ids))
        y = self.t[ids]
        return y[:, -1] if self.last_only else y


class Trigram:
    def __init__(self, table):
        self.t = table

    def __call__(self, ids):
        prev = np.concatenate([np.zeros((ids.shape[0], 1), np.int64), ids[:, :-1]], axis=1)
        return self.t[prev, ids]


class CachedBigram:
    """A stateful model: its session keeps only the last token of every row."""

    def __init__(self, table):
        self.t = table
        self.vocab_size = table.shape[1]
        self.extend_rows = []

    def start_session(self, prompts):
        s = _BigramSession(self, [p[-1] for p in prompts], [p.size for p in prompts])
        return s, self.t[np.array([p[-1] for p in prompts])]


class _BigramSession:
    def __init__(self, m, last, lengths):
        self.m = m
        self.vocab_size = m.vocab_size
        self.hist = [[int(t)] for t in last]
        self._len = np.array(lengths, np.int64)

    @property
    def lengths(self):
        return self._len

    def extend(self, tokens):
        self.m.extend_rows.append(tokens.shape[0])
        for b in range(tokens.shape[0]):
            self.hist[b].extend(int(t) for t in tokens[b])
        self._len = self._len + tokens.shape[1]
        return self.m.t[tokens]

    def truncate(self, lengths):
        raise NotImplementedError

    def select(self, rows):
        self.hist = [list(self.hist[r]) for r in rows]
        self._len = self._len[rows]


def argmax_loop(logits_fn, prompt, n, eos=()):
    s = list(prompt)
    for _ in range(n):
        t = int(np.argmax(logits_fn(np.array([s]))[0, -1]))
        s.append(t)
        if t in eos:
            break
    return s


PROMPTS = [[1, 2, 3], [4], [7, 7, 0, 9, 2]]


# -- greedy ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_kind", ["full", "last", "trigram", "cached"])
def test_greedy_equals_argmax_loop(model_kind):
    t2, t3 = _table(0), _table(1, order=3)
    model = {"full": Bigram(t2), "last": Bigram(t2, last_only=True), "trigram": Trigram(t3),
             "cached": CachedBigram(t2)}[model_kind]
    ref_fn = Trigram(t3) if model_kind == "trigram" else Bigram(t2)
    r = fd.generate(model, PROMPTS, max_new_tokens=12)
    for b, p in enumerate(PROMPTS):
        expect = argmax_loop(ref_fn, p, 12)
        assert r.sequence(b).tolist() == expect
        assert r.sequences[b, :len(expect)].tolist() == expect
    assert r.lengths.tolist() == [len(p) + 12 for p in PROMPTS]
    assert r.finish_reasons == ["length"] * 3
    assert r.sequences.shape == (3, 5 + 12)


def test_greedy_left_padding_and_lengths_layouts():
    model = Bigram(_table(2))
    S = 5
    ids = np.full((3, S), 10, np.int64)
    mask = np.zeros((3, S), np.int64)
    for b, p in enumerate(PROMPTS):
        ids[b, S - len(p):] = p
        mask[b, S - len(p):] = 1
    r_left = fd.generate(model, ids, attention_mask=mask, max_new_tokens=6)
    r_list = fd.generate(model, PROMPTS, max_new_tokens=6)
    right = np.full((3, S), 10, np.int64)
    for b, p in enumerate(PROMPTS):
        right[b, :len(p)] = p
    r_right = fd.generate(model, right, lengths=[len(p) for p in PROMPTS], max_new_tokens=6)
    for b in range(3):
        assert r_left.sequence(b).tolist() == r_list.sequence(b).tolist() == r_right.sequence(b).tolist()
        assert r_left.sequences[b, :S].tolist() == ids[b].tolist()  # the input kept as given
        assert r_left.offsets[b] == S - len(PROMPTS[b])
    assert (r_left.sequences[:, S:] == r_list.new_tokens(0)[None, :] if False else True)
    assert r_left.sequences[:, S:].tolist() == [r_list.new_tokens(b).tolist() for b in range(3)]
    # the model never saw the pad id 10 (padding is not fed to plain callables)
    assert all((c != 10).all() for c in model.calls)


def test_equal_length_rows_share_one_model_call():
    model = Bigram(_table(3))
    fd.generate(model, np.array([[1, 2], [3, 4], [5, 6]]), max_new_tokens=4)
    assert [c.shape[0] for c in model.calls] == [3] * 4


def test_torch_module_model():
    torch = pytest.importorskip("torch", reason="torch is in the test extra")
    t = torch.from_numpy(_table(4))

    class M(torch.nn.Module):
        def forward(self, ids):
            assert isinstance(ids, torch.Tensor)
            return t[ids].to(torch.bfloat16).float()

    r = fd.generate(M(), PROMPTS, max_new_tokens=5)
    for b, p in enumerate(PROMPTS):
        assert r.sequence(b).tolist() == argmax_loop(Bigram(t.numpy()), p, 5)


# -- sampling -------------------------------------------------------------------------------------

def test_sampling_reproducible_and_batch_invariant():
    model = Trigram(_table(5, order=3, scale=1.0))
    smp = fd.Sampler(temperature=0.9, top_k=6, top_p=0.95)
    seeds = [11, 12, 13]
    a = fd.generate(model, PROMPTS, max_new_tokens=15, sampler=smp, seed=seeds)
    b = fd.generate(model, PROMPTS, max_new_tokens=15, sampler=smp, seed=seeds)
    assert np.array_equal(a.sequences, b.sequences)
    for i, p in enumerate(PROMPTS):
        alone = fd.generate(model, [p], max_new_tokens=15, sampler=smp, seed=seeds[i])
        assert alone.sequence(0).tolist() == a.sequence(i).tolist()
    # reversed batch order, same per-row seeds
    rev = fd.generate(model, PROMPTS[::-1], max_new_tokens=15, sampler=smp, seed=seeds[::-1])
    for i in range(3):
        assert rev.sequence(2 - i).tolist() == a.sequence(i).tolist()
    # a shared scalar seed: each row equals its solo run with that seed
    s = fd.generate(model, PROMPTS, max_new_tokens=15, sampler=smp, seed=99)
    for i, p in enumerate(PROMPTS):
        assert fd.generate(model, [p], max_new_tokens=15, sampler=smp, seed=99).sequence(0).tolist() == \
            s.sequence(i).tolist()
    # the sampler's own seed is used when generate gets none
    c = fd.generate(model, PROMPTS, max_new_tokens=15, sampler=fd.Sampler(temperature=0.9, top_k=6, top_p=0.95, seed=99))
    assert np.array_equal(c.sequences, s.sequences)
    # different seeds give different samples
    d = fd.generate(model, PROMPTS, max_new_tokens=15, sampler=smp, seed=[1, 2, 3])
    assert not np.array_equal(d.sequences, a.sequences)


def test_sampling_two_step_distribution_is_exact():
    """Joint distribution of the first two sampled tokens over many seeds vs the exact one."""
    table = _table(6, scale=1.0)
    model = Bigram(table)
    n = 20_000
    smp = fd.Sampler(temperature=0.8, top_k=5)
    r = fd.generate(model, np.tile([[3]], (n, 1)), max_new_tokens=2, sampler=smp, seed=np.arange(n))
    first, second = r.sequences[:, 1], r.sequences[:, 2]
    from fastdecode import _reference as R

    p1 = R.sample_distribution(table[3], temperature=0.8, top_k=5)
    p2 = R.sample_distribution(table, temperature=0.8, top_k=5)
    joint = p1[:, None] * p2
    counts = np.zeros((V, V))
    np.add.at(counts, (first, second), 1)
    mask = joint.ravel() > 0
    assert counts.ravel()[~mask].sum() == 0
    assert chi_square_pvalue(counts.ravel()[mask], joint.ravel()[mask]) > 1e-4


def test_greedy_sampler_with_penalties_equals_manual_loop():
    table = _table(7, scale=1.0)
    model = Bigram(table)
    smp = fd.Sampler(temperature=0, repetition_penalty=1.8, no_repeat_ngram_size=2)
    r = fd.generate(model, PROMPTS, max_new_tokens=10, sampler=smp)
    for b, p in enumerate(PROMPTS):
        s = list(p)
        for _ in range(10):
            x = table[s[-1]][None].copy()
            x = fd.repetition_penalty(x, np.array([s]), 1.8)
            x = fd.no_repeat_ngram(x, np.array([s]), 2)
            s.append(int(np.argmax(x[0])))
        assert r.sequence(b).tolist() == s


# -- stopping -------------------------------------------------------------------------------------

def _forced(seq_by_row):
    """A model that emits the given token sequences (one-hot logits), then token 0 forever."""

    class Forced:
        vocab_size = V

        def __call__(self, ids):
            B, S = ids.shape
            y = np.zeros((B, V), np.float32)
            for b in range(B):
                key = tuple(ids[b])
                for p, seq in seq_by_row:
                    if key[:len(p)] == tuple(p):
                        k = S - len(p)
                        y[b, seq[k] if k < len(seq) else 0] = 5.0
            return y

    return Forced()


def test_multiple_eos_and_padding():
    m = _forced([((1,), [4, 5, 6, 9, 3]), ((2,), [3, 3]), ((8, 8), [5, 9, 6])])
    r = fd.generate(m, [[1], [2], [8, 8]], max_new_tokens=6, eos_token_id=[9, 3], pad_token_id=10)
    assert r.finish_reasons == ["eos", "eos", "eos"]
    assert r.stop_reasons == [9, 3, 9]
    assert r.lengths.tolist() == [5, 2, 4]
    # width: the longest prompt (2) + the most new tokens (4)
    assert r.sequences.tolist() == [[1, 4, 5, 6, 9, 10], [2, 3, 10, 10, 10, 10], [8, 8, 5, 9, 10, 10]]
    # default pad is the first EOS id (sorted)
    r = fd.generate(m, [[1], [2]], max_new_tokens=6, eos_token_id=[9, 3])
    assert r.sequences[1].tolist() == [2, 3, 3, 3, 3]  # pad = 3


def test_finished_rows_stop_costing_model_time():
    m = CachedBigram(np.eye(V, dtype=np.float32)[[1, 2, 9, 4, 5, 6, 7, 8, 10, 10, 0]] * 5)
    # row 0: 1 -> 2 -> 9 (eos) ; row 1: 4 -> 5 -> 6 -> 7 -> ...
    r = fd.generate(m, [[0], [3]], max_new_tokens=6, eos_token_id=9)
    assert r.finish_reasons == ["eos", "length"]
    assert r.sequence(0).tolist() == [0, 1, 2, 9]
    assert m.extend_rows == [2, 2, 1, 1, 1]


def test_min_new_tokens_masks_eos():
    table = _table(8)
    eos = [int(np.argmax(table[5])), 2]  # EOS would be chosen right away from token 5
    model = Bigram(table)
    r = fd.generate(model, [[5]], max_new_tokens=8, eos_token_id=eos, min_new_tokens=4)
    s = [5]
    for i in range(8):
        x = table[s[-1]].copy()
        if i < 4:
            x[eos] = -np.inf
        t = int(np.argmax(x))
        s.append(t)
        if t in eos:
            break
    assert r.sequence(0).tolist() == s
    assert not set(r.new_tokens(0)[:4].tolist()) & set(eos)
    r0 = fd.generate(model, [[5]], max_new_tokens=8, eos_token_id=eos)
    assert r0.lengths[0] == 2 and r0.finish_reasons == ["eos"]


def test_stop_token_sequences():
    m = _forced([((1,), [4, 5, 6, 7, 8]), ((2,), [6, 7, 6, 7])])
    r = fd.generate(m, [[1], [2]], max_new_tokens=6, stop=[[6, 7], 0], pad_token_id=10)
    assert r.finish_reasons == ["stop", "stop"]
    assert r.stop_reasons == [(6, 7), (6, 7)]
    assert r.sequences.tolist() == [[1, 4, 5], [2, 10, 10]]
    r = fd.generate(m, [[1], [2]], max_new_tokens=6, stop=[[6, 7]], include_stop_str_in_output=True)
    assert r.sequence(0).tolist() == [1, 4, 5, 6, 7] and r.sequence(1).tolist() == [2, 6, 7]
    # a stop sequence is matched in the generated tokens only, not in the prompt
    r = fd.generate(m, [[2]], max_new_tokens=1, stop=[[2, 6]])
    assert r.finish_reasons == ["length"]


PIECES = ["He", "llo", " wo", "rld", "!", " St", "op", "!", "x", "y", "STOP"]


def _decode(ids):
    return "".join(PIECES[i] for i in ids)


def test_stop_string_spanning_tokens_is_cut():
    m = _forced([((0,), [1, 2, 3, 5, 6, 4, 8])])
    r = fd.generate(m, [[0]], max_new_tokens=7, decode=_decode, stop=["Stop"])
    assert r.finish_reasons == ["stop"] and r.stop_reasons == ["Stop"]
    assert r.texts == ["llo world "]
    assert r.new_tokens(0).tolist() == [1, 2, 3]  # " St" and "op" carry the stop string
    # a stop string starting inside a token: the text is cut exactly, the token is dropped
    r = fd.generate(m, [[0]], max_new_tokens=7, decode=_decode, stop=["ld Sto"])
    assert r.texts == ["llo wor"] and r.new_tokens(0).tolist() == [1, 2]
    r = fd.generate(m, [[0]], max_new_tokens=7, decode=_decode, stop=["Stop"], include_stop_str_in_output=True)
    assert r.texts == ["llo world Stop"] and r.new_tokens(0).tolist() == [1, 2, 3, 5, 6]
    # the earliest of several stop strings wins
    r = fd.generate(m, [[0]], max_new_tokens=7, decode=_decode, stop=["op!", "o w"])
    assert r.texts == ["ll"] and r.stop_reasons == ["o w"]
    r = fd.generate(m, [[0]], max_new_tokens=7, decode=_decode, stop=["never"])
    assert r.finish_reasons == ["length"] and r.texts == ["llo world Stop!x"]


def test_stream_holds_back_possible_stop_strings():
    m = _forced([((0,), [1, 2, 3, 5, 6, 4, 8])])
    st = fd.stream(m, [[0]], max_new_tokens=7, decode=_decode, stop=["Stop"])
    pieces = [ev.text for ev in st]
    assert "".join(pieces) == "llo world " == st.result.texts[0]
    assert pieces[:4] == ["llo", " wo", "rld", " "]  # "St" held back: it may start "Stop"
    st = fd.stream(m, [[0]], max_new_tokens=7, decode=_decode, stop=["Stox"])
    assert "".join(st.text()) == "llo world Stop!x"


def test_streamer_callback_and_hf_style_streamer():
    model = Bigram(_table(9))
    events = []
    r = fd.generate(model, PROMPTS, max_new_tokens=5, eos_token_id=4, streamer=events.append)
    for b in range(3):
        got = [int(ev.tokens[list(ev.rows).index(b)]) for ev in events if b in ev.rows]
        assert got == r.new_tokens(b).tolist()
    assert {b for ev in events for b in ev.finished} == {0, 1, 2}

    class HFLike:
        def __init__(self):
            self.puts, self.ended = [], False

        def put(self, v):
            self.puts.append(np.array(v))

        def end(self):
            self.ended = True

    s = HFLike()
    r = fd.generate(model, [PROMPTS[0]], max_new_tokens=5, streamer=s)
    assert s.ended and s.puts[0].tolist() == [PROMPTS[0]]
    assert [int(p[0]) for p in s.puts[1:]] == r.new_tokens(0).tolist()


def test_hf_text_streamer_works():
    transformers = pytest.importorskip("transformers", reason="transformers is in the test extra")
    import io
    import contextlib

    class Tok:
        def decode(self, ids, **kw):
            return _decode(ids)

    m = _forced([((0,), [1, 2, 3, 5, 6, 4, 8])])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fd.generate(m, [[0]], max_new_tokens=7, streamer=transformers.TextStreamer(Tok(), skip_prompt=True))
    assert buf.getvalue().strip() == "llo world Stop!x"


def test_stream_result_equals_generate():
    model = Trigram(_table(10, order=3, scale=1.0))
    kw = dict(max_new_tokens=9, sampler=fd.Sampler(top_p=0.9), seed=[1, 2, 3], eos_token_id=5)
    st = fd.stream(model, PROMPTS, **kw)
    n = sum(1 for _ in st)
    r = fd.generate(model, PROMPTS, **kw)
    assert np.array_equal(st.result.sequences, r.sequences) and n == int(r.num_new_tokens.max())


# -- logprobs -------------------------------------------------------------------------------------

def test_raw_logprobs_and_top_alternatives():
    table = _table(11)
    model = Bigram(table)
    r = fd.generate(model, PROMPTS, max_new_tokens=4, sampler=fd.Sampler(top_k=3), seed=[1, 2, 3],
                    logprobs=3, eos_token_id=6)
    lsm = np.asarray(fd.log_softmax(table))
    for b in range(3):
        seq = r.sequence(b)
        n = len(seq) - len(PROMPTS[b])
        for j in range(n):
            prev, tok = seq[len(PROMPTS[b]) + j - 1], seq[len(PROMPTS[b]) + j]
            assert r.token_logprobs[b, j] == pytest.approx(lsm[prev, tok], abs=1e-6)
            order = np.argsort(-lsm[prev], kind="stable")[:3]
            assert r.top_ids[b, j].tolist() == order.tolist()
            np.testing.assert_allclose(r.top_logprobs[b, j], lsm[prev, order], atol=1e-6)
        assert np.isnan(r.token_logprobs[b, n:]).all()


def test_processed_logprobs_are_the_sampling_distribution():
    table = _table(12)
    model = Bigram(table)
    smp = fd.Sampler(temperature=0.7, top_k=4)
    r = fd.generate(model, [[3]], max_new_tokens=3, sampler=smp, seed=5, logprobs=2,
                    logprobs_mode="processed")
    from fastdecode import _reference as R

    seq = r.sequence(0)
    for j in range(3):
        p = R.sample_distribution(table[seq[j]], temperature=0.7, top_k=4)
        assert r.token_logprobs[0, j] == pytest.approx(np.log(p[seq[j + 1]]), abs=1e-5)
        top = np.argsort(-p, kind="stable")[:2]
        assert r.top_ids[0, j].tolist() == top.tolist()
    g = fd.generate(model, [[3]], max_new_tokens=2, logprobs=True, logprobs_mode="processed")
    assert g.token_logprobs.tolist() == [[0.0, 0.0]] and g.top_ids is None


# -- the session protocol -------------------------------------------------------------------------

def test_recompute_session_extend_truncate_select():
    t3 = _table(13, order=3)
    model = Trigram(t3)
    s, last = start_session(model, [np.array([1, 2]), np.array([3, 4, 5])])
    assert isinstance(s, RecomputeSession) and s.vocab_size == V
    np.testing.assert_array_equal(last, np.stack([t3[1, 2], t3[4, 5]]))
    y = s.extend(np.array([[6, 7], [8, 9]]))
    assert y.shape == (2, 2, V)
    np.testing.assert_array_equal(y[0], t3[[2, 6], [6, 7]])
    np.testing.assert_array_equal(y[1], t3[[5, 8], [8, 9]])
    assert s.lengths.tolist() == [4, 5]
    s.truncate([3, 4])
    y = s.extend(np.array([[1], [1]]))
    np.testing.assert_array_equal(y[:, 0], t3[[6, 8], [1, 1]])
    s.select(np.array([1, 1, 0]))
    assert s.lengths.tolist() == [5, 5, 4]
    y = s.extend(np.array([[2], [3], [4]]))
    np.testing.assert_array_equal(y[:, 0], t3[[1, 1, 1], [2, 3, 4]])
    with pytest.raises(ValueError, match="lengths"):
        s.truncate([0, 1, 1])
    with pytest.raises(ValueError, match="rows"):
        s.select(np.array([3]))
    with pytest.raises(ValueError, match="tokens"):
        s.extend(np.array([[1, 2]]))


# -- bad input ------------------------------------------------------------------------------------

def test_bad_arguments_name_the_problem():
    model = Bigram(_table(0))
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        fd.generate(model, [[1], []], max_new_tokens=3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        fd.generate(model, [[1]], max_new_tokens=-1)
    with pytest.raises(TypeError, match="max_new_tokens"):
        fd.generate(model, [[1]], max_new_tokens=2.5)
    with pytest.raises(ValueError, match="min_new_tokens"):
        fd.generate(model, [[1]], max_new_tokens=3, min_new_tokens=-2)
    with pytest.raises(ValueError, match="negative token id"):
        fd.generate(model, [[1, -3]], max_new_tokens=3)
    with pytest.raises(ValueError, match="vocabulary of 11"):
        fd.generate(_forced([]), [[1, 11]], max_new_tokens=3)
    with pytest.raises(ValueError, match="decode"):
        fd.generate(model, [[1]], max_new_tokens=3, stop=["x"])
    with pytest.raises(ValueError, match="seed"):
        fd.generate(model, [[1], [2]], max_new_tokens=3, sampler=fd.Sampler(), seed=[1, 2, 3])
    with pytest.raises(ValueError, match="eos_token_id"):
        fd.generate(model, [[1]], max_new_tokens=3, eos_token_id=50)
    with pytest.raises(ValueError, match="attention_mask"):
        fd.generate(model, np.ones((2, 3), np.int64), attention_mask=[[0, 1, 1], [1, 1, 0]], max_new_tokens=2)
    with pytest.raises(ValueError, match="attention_mask row 0"):
        fd.generate(model, np.ones((1, 3), np.int64), attention_mask=[[1, 0, 1]], max_new_tokens=2)
    with pytest.raises(TypeError, match="sampler"):
        fd.generate(model, [[1]], max_new_tokens=3, sampler="greedy")
    with pytest.raises(TypeError, match="input_ids"):
        fd.generate(model, np.ones((1, 3)) * 0.5, max_new_tokens=3)
    with pytest.raises(ValueError, match="logprobs_mode"):
        fd.generate(model, [[1]], max_new_tokens=3, logprobs=True, logprobs_mode="x")
    fresh = Bigram(_table(0))
    r = fd.generate(fresh, [[1, 2]], max_new_tokens=0)
    assert r.sequences.tolist() == [[1, 2]] and r.finish_reasons == ["length"] and not fresh.calls


def test_models_returning_garbage_raise_model_output_error():
    with pytest.raises(ModelOutputError, match="shape"):
        fd.generate(lambda ids: np.zeros((ids.shape[0] + 1, V), np.float32), [[1]], max_new_tokens=2)
    with pytest.raises(ModelOutputError, match="dtype"):
        fd.generate(lambda ids: np.zeros((ids.shape[0], V), np.int64), [[1]], max_new_tokens=2)
    with pytest.raises(ModelOutputError, match="vocabulary size changed"):
        fd.generate(lambda ids: np.zeros((ids.shape[0], V + ids.shape[1]), np.float32), [[1]], max_new_tokens=3)
    with pytest.raises(ValueError, match="NaN|nan"):
        fd.generate(lambda ids: np.full((ids.shape[0], V), np.nan, np.float32), [[1]], max_new_tokens=2)

    class BadSession(CachedBigram):
        def start_session(self, prompts):
            s, last = super().start_session(prompts)
            s.extend = lambda tokens: np.zeros((tokens.shape[0], 1, V + 1), np.float32)
            return s, last

    with pytest.raises(ModelOutputError, match="session.extend"):
        fd.generate(BadSession(_table(0)), [[1]], max_new_tokens=3)
    with pytest.raises(TypeError, match="callable"):
        fd.generate(42, [[1]], max_new_tokens=3)


# -- the built-in models --------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["session", "callable"])
def test_greedy_on_builtin_models_equals_argmax_loop(form):
    from fastdecode.models import NGramModel, char_model

    cm = char_model()
    cases = [(NGramModel(vocab_size=50, order=3, seed=3), [[1, 2, 3], [7], [4, 4, 4, 4]], 20),
             (cm, [cm.encode("Alice was "), cm.encode("The "), cm.encode("D")], 40)]
    for m, prompts, n in cases:
        model = m if form == "session" else (lambda ids, m=m: m(ids))
        r = fd.generate(model, prompts, max_new_tokens=n)
        for b, p in enumerate(prompts):
            s = list(p)
            for _ in range(n):
                s.append(int(np.argmax(m(np.array([s]))[0, -1])))
            assert r.sequence(b).tolist() == s


def test_char_model_text_generation_with_stop_string():
    from fastdecode.models import char_model

    m = char_model()
    prompt = m.encode("Alice was ")
    full = fd.generate(m, [prompt], max_new_tokens=80, decode=m.decode).texts[0]
    i = full.find("sister")
    assert i > 0
    r = fd.generate(m, [prompt], max_new_tokens=80, decode=m.decode, stop=["sister"])
    assert r.texts == [full[:i]] and r.finish_reasons == ["stop"]
    assert m.decode(r.new_tokens(0)) == full[:i]  # one char per token: the cut is exact
    st = fd.stream(m, [prompt], max_new_tokens=80, decode=m.decode, stop=["sister"])
    assert "".join(st.text()) == full[:i]
    # sampling ends at EOS for some seeds; every row is padded after its end
    smp = fd.Sampler(temperature=1.0)
    r = fd.generate(m, [prompt] * 8, max_new_tokens=300, sampler=smp, seed=np.arange(8),
                    eos_token_id=m.eos_token_id, decode=m.decode)
    for b in range(8):
        assert (r.sequences[b, r.lengths[b]:] == m.eos_token_id).all()
        if r.finish_reasons[b] == "eos":
            assert r.sequence(b)[-1] == m.eos_token_id
        else:
            assert r.finish_reasons[b] == "length" and r.num_new_tokens[b] == 300


def test_per_row_sampler_parameters_follow_their_rows():
    """Per-row temperatures/penalties stay with their row when other rows finish early."""
    model = Trigram(_table(14, order=3, scale=1.0))
    prompts = [[1, 2], [3], [4, 5, 6]]
    smp = fd.Sampler(temperature=[0.0, 1.0, 0.5], top_k=[0, 3, 5], repetition_penalty=[1.0, 1.5, 1.2])
    r = fd.generate(model, prompts, max_new_tokens=12, sampler=smp, seed=[7, 8, 9], eos_token_id=[0, 1])
    assert len(set(r.num_new_tokens.tolist())) > 1  # rows end at different steps
    for b, p in enumerate(prompts):
        solo = fd.Sampler(temperature=[0.0, 1.0, 0.5][b], top_k=[0, 3, 5][b],
                          repetition_penalty=[1.0, 1.5, 1.2][b])
        alone = fd.generate(model, [p], max_new_tokens=12, sampler=solo, seed=[7, 8, 9][b], eos_token_id=[0, 1])
        assert alone.sequence(0).tolist() == r.sequence(b).tolist()
    with pytest.raises(ValueError, match="per-row parameters for 3 rows"):
        fd.generate(model, prompts[:2], max_new_tokens=2, sampler=smp)


def test_model_raising_midway_keeps_the_partial_result():
    table = _table(15)

    class Flaky:
        def __init__(self, fail_at):
            self.n, self.fail_at = 0, fail_at

        def __call__(self, ids):
            self.n += 1
            if self.n == self.fail_at:
                raise RuntimeError("model crashed")
            return table[ids]

    with pytest.raises(RuntimeError, match="model crashed") as ei:
        fd.generate(Flaky(4), PROMPTS[:1], max_new_tokens=10)
    part = ei.value.partial_result
    full = fd.generate(Bigram(table), PROMPTS[:1], max_new_tokens=10)
    assert part.num_new_tokens.tolist() == [3] and part.finish_reasons == [None]
    assert part.sequence(0).tolist() == full.sequence(0)[:len(PROMPTS[0]) + 3].tolist()
    st = fd.stream(Flaky(3), PROMPTS[:1], max_new_tokens=10)
    with pytest.raises(RuntimeError):
        for _ in st:
            pass
    assert st.result.num_new_tokens.tolist() == [2]


def test_keyboard_interrupt_inside_the_model_while_streaming():
    table = _table(16)
    calls = []

    def model(ids):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return table[ids]

    st = fd.stream(model, PROMPTS, max_new_tokens=50)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for ev in st:
            seen.append(ev.tokens.copy())
    # rows of different lengths are called separately: 3 calls for the prompts, the 6th call is
    # the second step's, after one token per row was streamed
    assert len(seen) == 1 and st.result.num_new_tokens.tolist() == [1, 1, 1]
    assert st.result.finish_reasons == [None, None, None]
    full = fd.generate(Bigram(table), PROMPTS, max_new_tokens=1)
    assert np.array_equal(st.result.sequences, full.sequences)


def test_greedy_on_a_transformers_model_equals_hf_generate():
    torch = pytest.importorskip("torch", reason="torch is in the test extra")
    transformers = pytest.importorskip("transformers", reason="transformers is in the test extra")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                   bos_token_id=0, eos_token_id=1, pad_token_id=2)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    prompts = torch.tensor([[5, 17, 33, 8], [40, 41, 42, 43]])
    with torch.no_grad():
        ref = hf.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=15,
                          do_sample=False, eos_token_id=None, pad_token_id=2)

        def model(ids):  # plain callables get NumPy ids; the output's .logits tensor is unwrapped
            return hf(torch.from_numpy(ids))

        r = fd.generate(hf, prompts, max_new_tokens=15)  # a torch.nn.Module is given torch ids
        r2 = fd.generate(model, prompts.numpy(), max_new_tokens=15)
    assert r.sequences.tolist() == ref.tolist() == r2.sequences.tolist()


def test_tokenizer_output_mapping_is_accepted():
    model = Bigram(_table(17))
    S = 5
    ids = np.full((3, S), 10, np.int64)
    mask = np.zeros((3, S), np.int64)
    for b, p in enumerate(PROMPTS):
        ids[b, S - len(p):] = p
        mask[b, S - len(p):] = 1
    a = fd.generate(model, {"input_ids": ids, "attention_mask": mask}, max_new_tokens=4)
    b = fd.generate(model, ids, attention_mask=mask, max_new_tokens=4)
    assert np.array_equal(a.sequences, b.sequences) and a.offsets.tolist() == [2, 4, 0]
    c = fd.generate(model, {"input_ids": np.array([[1, 2, 3]])}, max_new_tokens=2)
    assert c.sequence(0).tolist() == argmax_loop(model, [1, 2, 3], 2)
