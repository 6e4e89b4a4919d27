"""Built-in models (fastdecode.models): callable == session bit for bit, determinism, smoothing
against a slow reference, tokenisation, repetition, and argument errors."""

import doctest
import time

import numpy as np
import pytest

from fastdecode import models
from fastdecode.models import CharModel, NGramModel, ReplayModel, char_model


def _bits(a):
    a = np.ascontiguousarray(a, dtype=np.float32)
    return a.view(np.uint32)


def _assert_bitwise(a, b):
    assert a.shape == b.shape and a.dtype == np.float32 and b.dtype == np.float32
    np.testing.assert_array_equal(_bits(a), _bits(b))


def _last(model, hist, n=1):
    """Logits after the last n tokens of one history, by the plain callable."""
    return model(np.asarray(hist, dtype=np.int64)[None])[0, -n:]


def _exercise(model, rng, batch=4, max_prompt=9):
    """Drive a native session through extend / truncate / select and compare every result with
    the plain callable run on the full history."""
    V = model.vocab_size
    prompts = [rng.integers(0, V, size=rng.integers(1, max_prompt + 1)) for _ in range(batch)]
    sess, last = model.start_session(prompts)
    hist = [list(p) for p in prompts]
    assert sess.vocab_size == V
    assert last.shape == (batch, V) and last.dtype == np.float32
    for b in range(batch):
        _assert_bitwise(last[b], _last(model, hist[b])[0])
    for step in range(6):
        n = [1, 3, 1, 2, 5, 1][step]
        B = len(hist)
        toks = rng.integers(0, V, size=(B, n))
        out = sess.extend(toks)
        assert out.shape == (B, n, V) and out.dtype == np.float32
        for b in range(B):
            hist[b] += toks[b].tolist()
            _assert_bitwise(out[b], _last(model, hist[b], n))
        np.testing.assert_array_equal(sess.lengths, [len(h) for h in hist])
        if step == 1:  # roll back a speculative draft, per-row lengths
            new = np.array([max(1, len(h) - int(rng.integers(0, 4))) for h in hist])
            sess.truncate(new)
            hist = [h[:k] for h, k in zip(hist, new)]
        if step == 2:  # beams: reorder with repeats, drop a row
            rows = np.array([2, 0, 0, 3, 2][:max(1, B)]) % B
            sess.select(rows)
            hist = [list(hist[r]) for r in rows]
        if step == 3:
            k = min(len(h) for h in hist)
            sess.truncate(k)  # one int for every row
            hist = [h[:k] for h in hist]
        np.testing.assert_array_equal(sess.lengths, [len(h) for h in hist])
    # the session still agrees after all that
    toks = rng.integers(0, V, size=(len(hist), 2))
    out = sess.extend(toks)
    for b in range(len(hist)):
        _assert_bitwise(out[b], _last(model, hist[b] + toks[b].tolist(), 2))


# -- callable == session ----------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [
    dict(vocab_size=5, order=1),
    dict(vocab_size=5, order=2),
    dict(vocab_size=7, order=3, seed=3),
    dict(vocab_size=64, order=3),
    dict(vocab_size=11, order=4, n_buckets=50),  # hashed
    dict(vocab_size=1000, order=3, n_buckets=97, temperature=0.7, eos_token_id=999, eos_bias=2.0),
])
def test_ngram_session_equals_callable(kw):
    m = NGramModel(**kw)
    _exercise(m, np.random.default_rng(len(str(kw))))


@pytest.mark.parametrize("order", [1, 2, 5])
def test_char_session_equals_callable(order):
    m = char_model() if order == 5 else CharModel(order=order)
    _exercise(m, np.random.default_rng(order))


@pytest.mark.parametrize("shape", [(7, 13), (4, 5, 13)])
def test_replay_session_equals_callable(shape):
    rng = np.random.default_rng(0)
    m = ReplayModel(rng.standard_normal(shape))
    if len(shape) == 2:
        _exercise(m, rng)
    else:  # a (B, T, V) replay needs exactly B rows in the callable; compare row by row
        prompts = [rng.integers(0, 13, size=k) for k in (3, 1, 6, 2)]
        sess, last = m.start_session(prompts)
        full = [np.concatenate([p, rng.integers(0, 13, size=8 - p.size)]) for p in prompts]
        ref = m(np.stack([f[:8] for f in full]))
        for b, p in enumerate(prompts):
            _assert_bitwise(last[b], ref[b, p.size - 1])
        sess.select(np.array([3, 3, 0, 1]))
        out = sess.extend(np.zeros((4, 2), dtype=np.int64))
        for i, src in enumerate([3, 3, 0, 1]):
            L = prompts[src].size
            _assert_bitwise(out[i], m.logits[src, [(L) % 5, (L + 1) % 5]])


def test_replay_rows_cycle():
    lg = np.arange(3 * 4, dtype=np.float32).reshape(3, 4)
    m = ReplayModel(lg)
    out = m(np.zeros((2, 7), dtype=np.int64))
    np.testing.assert_array_equal(out[1], lg[np.arange(7) % 3])
    sess, last = m.start_session([np.zeros(2, dtype=np.int64)])
    np.testing.assert_array_equal(last[0], lg[1])
    np.testing.assert_array_equal(sess.extend(np.zeros((1, 3), dtype=np.int64))[0], lg[[2, 0, 1]])
    sess.truncate(1)
    np.testing.assert_array_equal(sess.extend(np.zeros((1, 1), dtype=np.int64))[0, 0], lg[1])
    with pytest.raises(ValueError, match="rows"):
        ReplayModel(np.zeros((2, 3, 4)))(np.zeros((3, 1), dtype=np.int64))


# -- NGramModel ------------------------------------------------------------------------------------

def test_ngram_deterministic_and_seeded():
    ids = np.random.default_rng(1).integers(0, 64, size=(3, 20))
    a, b, c = NGramModel(seed=5), NGramModel(seed=5), NGramModel(seed=6)
    _assert_bitwise(a(ids), b(ids))
    assert not np.array_equal(a(ids), c(ids))
    big_a = NGramModel(vocab_size=50257, order=3, seed=1)
    big_b = NGramModel(vocab_size=50257, order=3, seed=1)
    ids = np.random.default_rng(2).integers(0, 50257, size=(2, 6))
    _assert_bitwise(big_a(ids), big_b(ids))


def test_ngram_large_vocab_is_modest():
    m = NGramModel(vocab_size=50257, order=3)
    assert not m.exact and m.table.nbytes <= 32 * 2**20
    sess, last = m.start_session([np.array([50256, 7]), np.array([3])])
    out = sess.extend(np.array([[1, 2], [50000, 4]]))
    _assert_bitwise(out[1], _last(m, [3, 50000, 4], 2))
    assert not m.table.flags.writeable


def test_ngram_contexts_and_start_symbol():
    m = NGramModel(vocab_size=5, order=3)
    assert m.exact and m.table.shape == (36, 5)
    # the first token's logits are row (V, V) = 5 * 6 + 5 = 35, then (V, x0)
    _assert_bitwise(m.logits_for([]), m.table[35])
    _assert_bitwise(m(np.array([[2, 4]]))[0], m.table[[5 * 6 + 2, 2 * 6 + 4]])
    # only the last order - 1 tokens matter
    _assert_bitwise(m.logits_for([0, 1, 2, 3]), m.logits_for([4, 2, 3]))
    p = m.probs([1, 2])
    assert p.dtype == np.float64 and abs(p.sum() - 1) < 1e-12


def test_ngram_exact_enumeration_is_a_distribution():
    # the probability of every length-4 sequence of a tiny model, summed, is 1
    m = NGramModel(vocab_size=5, order=3, seed=2)
    seqs = np.stack(np.meshgrid(*[np.arange(5)] * 4, indexing="ij"), -1).reshape(-1, 4)
    total = sum(np.prod([m.probs(s[:j])[s[j]] for j in range(4)]) for s in seqs)
    assert abs(total - 1.0) < 1e-9


def test_ngram_greedy_cycles():
    m = NGramModel()  # V = 64, order 3
    sess, last = m.start_session([np.array([1, 2, 3])])
    out = [int(last[0].argmax())]
    for _ in range(300):
        out.append(int(sess.extend(np.array([[out[-1]]]))[0, 0].argmax()))
    tail = out[-100:]
    period = next(p for p in range(1, 100) if tail[p:] == tail[:-p])
    assert period < 100


def test_ngram_eos():
    m = NGramModel(vocab_size=32, eos_token_id=31, eos_bias=4.0)
    base = NGramModel(vocab_size=32)
    assert m.eos_token_id == 31 and base.eos_token_id is None
    np.testing.assert_allclose(m.table[:, 31], base.table[:, 31] + 4.0, rtol=1e-6)
    np.testing.assert_array_equal(m.table[:, :31], base.table[:, :31])


# -- CharModel -------------------------------------------------------------------------------------

def test_char_training_is_fast_and_lazy():
    t0 = time.perf_counter()
    m = CharModel()
    assert m._trained is None  # nothing trained yet
    m.table
    assert time.perf_counter() - t0 < 2.0
    assert char_model() is char_model()


def test_char_rows_are_log_probabilities():
    m = char_model()
    p = np.exp(m.table.astype(np.float64))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert (p > 0).all()  # smoothing leaves no token impossible
    assert m.vocab_size == len(m.chars) + 1 and m.eos_token_id == m.vocab_size - 1


def _kn_reference(text, order, discount, history):
    """Interpolated Kneser-Ney as written in the CharModel docstring, by dictionaries."""
    BOS = "<s>"
    EOS = "</s>"
    chars = sorted(set("".join(" ".join(p.split()) for p in text.split("\n\n") if p.strip())))
    vocab = chars + [EOS]
    seqs = [[BOS] + list(" ".join(p.split())) + [EOS] for p in text.split("\n\n") if p.strip()]
    raw = {}
    for s in seqs:
        for i in range(1, len(s)):
            for k in range(1, order + 1):
                if i - k + 1 >= 0:
                    g = tuple(s[i - k + 1:i + 1])
                    raw[g] = raw.get(g, 0) + 1
    adj = {}
    for g, c in raw.items():
        if len(g) == order or g[0] == BOS:
            adj[g] = c
        else:
            adj[g] = sum(1 for h in raw if len(h) == len(g) + 1 and h[1:] == g)
    D = {}
    for k in range(1, order + 1):
        vals = [a for g, a in adj.items() if len(g) == k]
        n1, n2 = vals.count(1), vals.count(2)
        D[k] = discount if discount is not None else (
            min(max(n1 / (n1 + 2 * n2), 0.05), 0.95) if n1 and n2 else 0.5)

    def p(w, h):
        counts = {v: adj.get(h + (v,), 0) for v in vocab}
        tot = sum(counts.values())
        lower = 1 / len(vocab) if not h else None
        if tot == 0:
            return p(w, h[1:])
        d = D[len(h) + 1]
        types = sum(1 for c in counts.values() if c > 0)
        if lower is None:
            lower = p(w, h[1:])
        return max(counts[w] - d, 0) / tot + d * types / tot * lower

    ctx = tuple(([BOS] + list(history))[-(order - 1):]) if order > 1 else ()
    return np.array([p(w, ctx) for w in vocab])


@pytest.mark.parametrize("order,discount", [(2, None), (3, None), (4, 0.6)])
def test_char_matches_kneser_ney_reference(order, discount):
    text = "abracadabra cab\n\nbad abba dab\n\ncadab abc\n\n  a b\n"
    m = CharModel(order=order, text=text, discount=discount)
    for hist in ["", "a", "ab", "abr", "cad", "dd", "bac", "ba", "c c", " "]:
        ref = _kn_reference(text, order, discount, hist)
        np.testing.assert_allclose(m.probs(m.encode(hist)), ref, rtol=2e-6)
        if hist:
            _assert_bitwise(m.logits_for(m.encode(hist)), _last(m, m.encode(hist))[0])
    # a context containing EOS was never seen: it backs off past the EOS
    h = np.append(m.encode("ab"), m.eos_token_id)
    ref = _kn_reference(text, order, discount, ["a", "b", "</s>"])
    np.testing.assert_allclose(m.probs(h), ref, rtol=2e-6)


def test_char_encode_decode():
    m = char_model()
    s = "Alice was beginning to get very tired (of sitting)!"
    ids = m.encode(s)
    assert ids.dtype == np.int64 and m.decode(ids) == s
    assert m.decode(np.append(ids, m.eos_token_id)) == s
    assert m.decode([m.eos_token_id]) == ""
    assert m.encode("").shape == (0,)
    with pytest.raises(ValueError, match="'#'"):
        m.encode("ab#c")
    with pytest.raises(ValueError, match="ids"):
        m.decode([m.vocab_size])


def test_char_greedy_repeats():
    m = char_model()
    sess, last = m.start_session([m.encode("Alice was ")])
    out = [int(last[0].argmax())]
    for _ in range(299):
        out.append(int(sess.extend(np.array([[out[-1]]]))[0, 0].argmax()))
    text = m.decode(out)
    assert len(text) >= 250
    assert any(text.count(text[i:i + 20]) >= 2 for i in range(len(text) - 20))
    assert sum(c.isalpha() for c in text) > 0.6 * len(text)  # English-ish, not punctuation soup


def test_char_deterministic():
    ids = char_model().encode("Down, down, down. ")[None]
    _assert_bitwise(CharModel()(ids), char_model()(ids))


# -- argument errors --------------------------------------------------------------------------------

@pytest.fixture(params=["ngram", "char", "replay"])
def model(request):
    if request.param == "ngram":
        return NGramModel(vocab_size=10)
    if request.param == "char":
        return char_model()
    return ReplayModel(np.zeros((3, 10)))


def test_bad_input_ids(model):
    V = model.vocab_size
    with pytest.raises(ValueError, match="input_ids"):
        model(np.array([[0, V]]))
    with pytest.raises(ValueError, match="input_ids"):
        model(np.array([[-1]]))
    with pytest.raises(ValueError, match="input_ids"):
        model(np.array([0, 1]))  # 1-D
    with pytest.raises(ValueError, match="input_ids"):
        model(np.zeros((1, 0), dtype=np.int64))
    with pytest.raises(TypeError, match="input_ids"):
        model(np.array([[0.5]]))


def test_bad_prompts(model):
    V = model.vocab_size
    with pytest.raises(ValueError, match=r"prompts\[1\]"):
        model.start_session([np.array([1]), np.array([], dtype=np.int64)])
    with pytest.raises(ValueError, match=r"prompts\[0\]"):
        model.start_session([np.array([V])])
    with pytest.raises(ValueError, match=r"prompts\[0\]"):
        model.start_session([np.array([[1, 2]])])


def test_bad_session_calls(model):
    sess, _ = model.start_session([np.array([1, 2, 3]), np.array([4])])
    V = model.vocab_size
    with pytest.raises(ValueError, match="tokens"):
        sess.extend(np.array([[0], [V]]))
    with pytest.raises(ValueError, match="tokens"):
        sess.extend(np.array([0, 1]))
    with pytest.raises(ValueError, match="tokens"):
        sess.extend(np.zeros((3, 1), dtype=np.int64))
    with pytest.raises(ValueError, match="tokens"):
        sess.extend(np.zeros((2, 0), dtype=np.int64))
    with pytest.raises(ValueError, match="lengths"):
        sess.truncate(0)
    with pytest.raises(ValueError, match="lengths"):
        sess.truncate([3, 2])  # row 1 holds one token
    with pytest.raises(ValueError, match="lengths"):
        sess.truncate([1, 1, 1])
    with pytest.raises(ValueError, match="rows"):
        sess.select(np.array([0, 2]))
    with pytest.raises(ValueError, match="rows"):
        sess.select(np.array([-1]))
    with pytest.raises(ValueError, match="rows"):
        sess.select(np.array([[0]]))
    np.testing.assert_array_equal(sess.lengths, [3, 1])  # failed calls changed nothing
    sess.select(np.array([], dtype=np.int64))  # every row finished
    assert sess.extend(np.zeros((0, 2), dtype=np.int64)).shape == (0, 2, V)


def test_bad_constructor_arguments():
    for kw in [dict(vocab_size=0), dict(order=0), dict(scale=0.0), dict(temperature=-1.0),
               dict(eos_token_id=64), dict(n_buckets=0), dict(seed=-1)]:
        with pytest.raises(ValueError, match=next(iter(kw))):
            NGramModel(**kw)
    with pytest.raises(ValueError, match="discount"):
        CharModel(discount=1.5)
    with pytest.raises(ValueError, match="text"):
        CharModel(text="\n\n  \n")
    with pytest.raises(ValueError, match="logits"):
        ReplayModel(np.zeros(4))


def test_docstring_examples():
    assert doctest.testmod(models).failed == 0
