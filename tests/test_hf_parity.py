"""Parity with Hugging Face transformers' own LogitsProcessor classes on the same rows.

Each warper is run on 12 batches of 100 random rows (V drawn in [500, 2000]) cycling through
flat, normal, peaked, Zipf, heavy-tie, -inf and extreme-magnitude rows, four parameter values,
min_tokens_to_keep in {1, 3}, float32 and float16 input (HF gets the float32 upcast, which is what
generate() feeds warpers), a non-default filter_value, plus batches at V = 50,257.

Masks and values must be identical, with the two documented exceptions handled by
conftest.assert_filter_match: ties at a boundary (HF's pick inside a tied group depends on torch's
unstable sort, so only the number kept from the group is compared) and rows whose decision lies
within float32 rounding of the threshold (HF sums probabilities in float32 in a different order;
such rows must fall between the reference masks at slightly perturbed parameters and are limited
to 1% of the rows).
"""

import numpy as np
import pytest

import fastdecode as fd

from conftest import ROW_KINDS, assert_filter_match, kept_mask, make_rows

torch = pytest.importorskip("torch", reason="HF parity needs torch (test extra)")
lp = pytest.importorskip("transformers.generation.logits_process",
                         reason="HF parity needs transformers (test extra)")

N_BATCHES, ROWS = 12, 100

WARPERS = {
    "top_k": (lambda p, mk, fv: lp.TopKLogitsWarper(int(p), filter_value=fv,
                                                    min_tokens_to_keep=mk),
              [1, 5, 50, 400]),
    "top_p": (lambda p, mk, fv: lp.TopPLogitsWarper(p, filter_value=fv, min_tokens_to_keep=mk),
              [0.1, 0.5, 0.9, 0.99]),
    "min_p": (lambda p, mk, fv: lp.MinPLogitsWarper(p, filter_value=fv, min_tokens_to_keep=mk),
              [0.01, 0.05, 0.1, 0.5]),
    "typical_p": (lambda p, mk, fv: lp.TypicalLogitsWarper(p, filter_value=fv,
                                                           min_tokens_to_keep=mk),
                  [0.2, 0.5, 0.9, 0.95]),
    "epsilon_cutoff": (lambda p, mk, fv: lp.EpsilonLogitsWarper(p, filter_value=fv,
                                                                min_tokens_to_keep=mk),
                       [1e-4, 3e-4, 1e-3, 1e-2]),
    "eta_cutoff": (lambda p, mk, fv: lp.EtaLogitsWarper(p, filter_value=fv,
                                                        min_tokens_to_keep=mk),
                   [1e-4, 3e-4, 1e-3, 1e-2]),
}


def batch_config(name, i):
    """Batch i of warper `name`: (row kind, parameter, min_tokens_to_keep, dtype, filter_value)."""
    params = WARPERS[name][1]
    kind = ROW_KINDS[i % len(ROW_KINDS)]
    param = params[(i + i // len(ROW_KINDS)) % len(params)]
    mk = (1, 3)[(i // 2) % 2]
    dtype = np.float16 if i % 3 == 2 else np.float32
    fv = -100.0 if i == 7 else -np.inf
    return kind, param, mk, dtype, fv


def run_and_compare(name, x, param, mk, fv, what):
    """Runs fastdecode and HF on x (float32/float16 NumPy) and compares. Returns borderline rows."""
    x32 = x.astype(np.float32)
    hf = WARPERS[name][0](param, mk, fv)(None, torch.from_numpy(x32.copy())).numpy()
    got = getattr(fd, name)(x, param, min_tokens_to_keep=mk, filter_value=fv)
    assert got.dtype == x.dtype and got.shape == x.shape
    gk = kept_mask(x, got, fv, what="fastdecode")  # kept values bit-exact, others filter_value
    hk = kept_mask(x32, hf, fv, what="HF")
    neg = np.isneginf(x32)  # -inf inputs: both write the same thing (-inf or filter_value)
    np.testing.assert_array_equal(got.astype(np.float32)[neg], hf[neg])
    return assert_filter_match(name, x32, gk, hk, param, mk, allow_tie_choice=True, what=what)


@pytest.mark.parametrize("batch", range(N_BATCHES))
@pytest.mark.parametrize("name", sorted(WARPERS))
def test_warper_parity(name, batch, rng):
    kind, param, mk, dtype, fv = batch_config(name, batch)
    V = int(rng.integers(500, 2001))
    x = make_rows(rng, kind, ROWS, V, dtype=dtype)
    run_and_compare(name, x, param, mk, fv, what=f"{kind} {np.dtype(dtype).name} V={V}")


@pytest.mark.parametrize("name", ["top_k", "top_p", "typical_p", "epsilon_cutoff", "eta_cutoff"])
def test_small_tied_rows_match_hf_exactly(name):
    """On rows of at most 16 tokens torch.sort is stable, so HF's choice inside a tie group is
    determined, and fastdecode must make the same one: masks identical, with no tie allowance.
    (top-p keeps the higher ids of a split tie group; typical's min_tokens_to_keep the lower ids
    of the walk. MinP picks min_tokens_to_keep by torch.topk, which is arbitrary even on short
    rows, so it is not in this test.)"""
    rng = np.random.default_rng(2024)
    params = WARPERS[name][1]
    rows = 0
    for trial in range(600):
        V = int(rng.integers(2, 17))
        x = rng.integers(-2, 3, size=(1, V)).astype(np.float32)  # heavy ties
        if trial % 4 == 0:
            x[0, rng.random(V) < 0.3] = -np.inf
            x[0, rng.integers(V)] = 0.0
        param = params[trial % len(params)] if name != "top_k" else int(rng.integers(1, V + 2))
        if name in ("top_p", "typical_p") and trial % 3 == 0:
            param = float(rng.choice([0.25, 0.5, 0.75]))  # boundaries that land inside ties
        mk = int(rng.integers(1, 4))
        hf = WARPERS[name][0](param, mk, -np.inf)(None, torch.from_numpy(x.copy())).numpy()
        got = getattr(fd, name)(x, param, min_tokens_to_keep=mk)
        np.testing.assert_array_equal(got, hf, err_msg=f"{name} {x.tolist()} param={param} mk={mk}")
        rows += 1
    assert rows == 600


def test_batches_cover_the_matrix():
    """Each warper sees every row kind, every parameter, both min_tokens_to_keep values,
    float16, and a finite filter_value, over >= 1,000 rows."""
    for name in WARPERS:
        cfgs = [batch_config(name, i) for i in range(N_BATCHES)]
        assert {c[0] for c in cfgs} == set(ROW_KINDS)
        assert {c[1] for c in cfgs} == set(WARPERS[name][1])
        assert {c[2] for c in cfgs} == {1, 3}
        assert np.float16 in {c[3] for c in cfgs}
        assert any(c[4] != -np.inf for c in cfgs)
        assert N_BATCHES * ROWS >= 1000


@pytest.mark.parametrize("name", sorted(WARPERS))
def test_warper_parity_gpt2_vocab(name, rng):
    """V = 50,257 (GPT-2): 4 rows per kind x 4 kinds, every parameter, float32 and float16."""
    V = 50257
    for j, kind in enumerate(("normal", "zipf", "peaked", "ties")):
        x = make_rows(rng, kind, 4, V, dtype=np.float16 if j == 3 else np.float32)
        for param in WARPERS[name][1]:
            run_and_compare(name, x, param, 1 + 2 * (j % 2), -np.inf,
                            what=f"{kind} V={V} param={param}")


def test_ramp_and_extremes_from_hf_test_suite():
    """transformers tests/generation/test_logits_process.py edge rows: ramps and huge logits."""
    ramp = np.broadcast_to(np.arange(200, dtype=np.float32) / 10.0 - 5.0, (4, 200)).copy()
    ramp[1] = ramp[1][::-1]
    ramp[2] *= 1e3
    ramp[3, ::2] = -np.inf
    for name, (_, params) in WARPERS.items():
        for p in params:
            for mk in (1, 3):
                run_and_compare(name, ramp, p, mk, -np.inf, what="ramp")


@pytest.mark.parametrize("name", sorted(WARPERS))
def test_logit_gap_beyond_float32_range(name):
    """Finite logits whose difference overflows float32 (z - max = -inf for a finite z): the
    token simply has probability 0 (HF: log_softmax gives -inf, nansum skips it)."""
    huge = np.array([[1e30, 1e30, -1e30, 0.0, 3.0e38, -3.0e38],
                     [3.0e38, -3.0e38, 0.0, 1.0, 2.0, 3.0]], dtype=np.float32)
    for p in WARPERS[name][1]:
        run_and_compare(name, huge, p, 1, -np.inf, what="huge")


# ------------------------------------------------------------------------------------------------
# temperature


@pytest.mark.parametrize("temperature", [0.3, 0.7, 1.0, 1.5, 4.0])
def test_temperature_warper(temperature, rng):
    x = np.concatenate([make_rows(rng, k, 30, 1000) for k in ROW_KINDS])  # 210 rows per T
    hf = lp.TemperatureLogitsWarper(temperature)(None, torch.from_numpy(x.copy()))
    exp = torch.softmax(hf, dim=-1).numpy()
    got = fd.softmax(x, temperature=temperature)
    # HF rounds z / T to float32 before the softmax: a relative error of up to ~1.2e-7 * |z| / T
    # in every probability (|z| ~ 1e3 for the "extreme" rows); both sides must be that close
    # to each other
    scale = np.max(np.abs(np.where(np.isfinite(x), x, 0)), axis=1, keepdims=True) / temperature
    tol = 2e-5 + 3e-7 * scale
    assert np.all(np.abs(got - exp) <= tol * np.abs(exp) + 1e-7)
    exp_log = torch.log_softmax(hf, dim=-1).numpy()
    got_log = fd.log_softmax(x, temperature=temperature)
    fin = np.isfinite(exp_log)
    assert np.array_equal(fin, np.isfinite(got_log))
    tol_b = np.broadcast_to(tol, x.shape)
    assert np.all(np.abs(got_log[fin] - exp_log[fin]) <= 2e-5 * np.abs(exp_log[fin]) + tol_b[fin])


# ------------------------------------------------------------------------------------------------
# penalties and constraints (value equality: HF's bias path turns -0.0 into +0.0)


def _histories(rng, B, T, V, alphabet):
    ids = rng.integers(0, alphabet, (B, T))
    ids[:, ::7] = rng.integers(0, V, (B, len(range(0, T, 7))))
    return ids.astype(np.int64)


def _assert_same_values(got, exp, what):
    got = np.asarray(got, dtype=np.float32)
    exp = np.asarray(exp, dtype=np.float32)
    bad = ~((got == exp) | (np.isnan(got) & np.isnan(exp)))
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {bad.sum()} values differ, e.g. at {i}: {got[i]!r} vs "
                             f"HF {exp[i]!r}")


@pytest.mark.parametrize("penalty", [1.2, 0.8, 1.5, 2.0, 1.3])
def test_repetition_penalty(penalty, rng):
    """CTRL penalty, bit-identical to HF on float32 (the penalty is rounded to float32 and the
    edit is one float32 multiply/divide); 2 batches x 100 rows per penalty, 1,000 in all."""
    for j in range(2):
        V = int(rng.integers(500, 2001))
        x = make_rows(rng, ROW_KINDS[(j + int(penalty * 10)) % len(ROW_KINDS)], 100, V)
        ids = _histories(rng, 100, int(rng.integers(1, 60)), V, alphabet=V)
        pil = int(rng.integers(0, 5)) if j == 1 else None
        proc = lp.RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=pil)
        exp = proc(torch.from_numpy(ids), torch.from_numpy(x.copy())).numpy()
        got = fd.repetition_penalty(x, ids, penalty, prompt_ignore_length=pil)
        _assert_same_values(got, exp, f"penalty={penalty} pil={pil}")
    # float16: HF on float16 tensors does the same float32-rounded arithmetic per element
    x16 = make_rows(rng, "normal", 50, 700, dtype=np.float16)
    ids = _histories(rng, 50, 30, 700, alphabet=700)
    exp = lp.RepetitionPenaltyLogitsProcessor(penalty)(torch.from_numpy(ids),
                                                       torch.from_numpy(x16.copy())).numpy()
    _assert_same_values(fd.repetition_penalty(x16, ids, penalty), exp, "float16")


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_no_repeat_ngram(n, rng):
    """250 rows per n (1,000 in all); small alphabets make repeated n-grams common."""
    for j, alphabet in enumerate((3, 5, 12, 40, 1000)):
        V = 1000
        x = make_rows(rng, "normal", 50, V)
        ids = rng.integers(0, alphabet, (50, int(rng.integers(0, 40)))).astype(np.int64)
        exp = lp.NoRepeatNGramLogitsProcessor(n)(torch.from_numpy(ids),
                                                 torch.from_numpy(x.copy())).numpy()
        got = fd.no_repeat_ngram(x, ids, n)
        _assert_same_values(got, exp, f"n={n} alphabet={alphabet} T={ids.shape[1]}")
        if ids.shape[1] >= n and alphabet <= 5:
            assert np.isneginf(got).any()  # the case is exercised


@pytest.mark.parametrize("seed", range(5))
def test_no_bad_words(seed):
    """200 rows per seed; words of 1-4 tokens over a small alphabet so prefixes match often."""
    rng = np.random.default_rng(100 + seed)
    V = 600
    words = []
    while len(words) < 12:
        w = [int(t) for t in rng.integers(0, 6, int(rng.integers(1, 5)))]
        if w not in words:
            words.append(w)
    words.append([V - 1])
    for j in range(2):
        x = make_rows(rng, ROW_KINDS[j + seed], 100, V)
        ids = rng.integers(0, 6, (100, int(rng.integers(1, 12)))).astype(np.int64)
        exp = lp.NoBadWordsLogitsProcessor(words)(torch.from_numpy(ids),
                                                  torch.from_numpy(x.copy())).numpy()
        got = fd.bad_words(x, ids, words)
        _assert_same_values(got, exp, f"words={words}")
        assert (np.isneginf(got).sum(axis=1) > 1).any()  # multi-token words did match


@pytest.mark.parametrize("V", [500, 2000, 50257])
def test_suppress_tokens(V, rng):
    rows = 500 if V < 50257 else 8  # 1,008 rows in all
    x = make_rows(rng, "normal", rows, V)
    ids = sorted(set(int(t) for t in rng.integers(0, V, 40))) + [0, V - 1]
    exp = lp.SuppressTokensLogitsProcessor(ids)(None, torch.from_numpy(x.copy())).numpy()
    got = fd.suppress_tokens(x, ids)
    _assert_same_values(got, exp, "suppress")
    np.testing.assert_array_equal(got.view(np.uint32)[np.isfinite(got)],
                                  x.view(np.uint32)[np.isfinite(got)])


def test_typical_conformance_row_matches_hf():
    """SPEC 2 asks to check HF's typical rule on {.4, .2, .2, .2}, mass .5: HF keeps every
    token whose |-log p - H| equals the crossing token's, i.e. the three tied .2 tokens."""
    x = np.log(np.array([[0.4, 0.2, 0.2, 0.2]], dtype=np.float32))
    hf = lp.TypicalLogitsWarper(0.5)(None, torch.from_numpy(x.copy())).numpy()
    got = fd.typical_p(x, 0.5)
    np.testing.assert_array_equal(np.isfinite(hf), [[False, True, True, True]])
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(hf))


def test_documented_departures_from_hf():
    """top_p = 1 is a no-op (HF's `cumsum <= 1 - p` still removes tokens whose float32
    probability underflows to 0), and top_k = 0 disables the filter (HF raises)."""
    x = np.array([[0.0, -200.0, 1.0, -np.inf, -1e4]], dtype=np.float32)
    hf = lp.TopPLogitsWarper(1.0)(None, torch.from_numpy(x.copy())).numpy()
    assert np.isneginf(hf[0, 1])  # HF drops the underflowing token
    np.testing.assert_array_equal(fd.top_p(x, 1.0).view(np.uint32), x.view(np.uint32))
    np.testing.assert_array_equal(fd.top_k(x, 0).view(np.uint32), x.view(np.uint32))
    with pytest.raises(ValueError):
        lp.TopKLogitsWarper(0)
