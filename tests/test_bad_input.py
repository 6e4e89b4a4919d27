"""Argument matrix: every bad input raises ValueError/TypeError whose message names the argument
(and the row, where one row is at fault); never a crash, never a silent answer."""

import numpy as np
import pytest

import fastdecode as fd

from conftest import needs_torch, torch

X = np.random.default_rng(0).normal(size=(3, 40)).astype(np.float32)
IDS = np.random.default_rng(1).integers(0, 40, (3, 8))


def _with(x, r, c, v):
    y = x.copy()
    y[r, c] = v
    return y


NAN = _with(X, 1, 3, np.nan)
PINF = _with(X, 2, 5, np.inf)
NEG = X.copy()
NEG[1] = -np.inf
BAD_IDS = _with(IDS, 2, 4, 40)
NEG_IDS = _with(IDS, 2, 1, -7)

FILTER_CALLS = {
    "top_k": lambda x: fd.top_k(x, 3),
    "top_p": lambda x: fd.top_p(x, 0.5),
    "min_p": lambda x: fd.min_p(x, 0.1),
    "typical_p": lambda x: fd.typical_p(x, 0.5),
    "epsilon_cutoff": lambda x: fd.epsilon_cutoff(x, 1e-3),
    "eta_cutoff": lambda x: fd.eta_cutoff(x, 1e-3),
    "top_n_sigma": lambda x: fd.top_n_sigma(x, 1.0),
    "softmax": lambda x: fd.softmax(x),
    "log_softmax": lambda x: fd.log_softmax(x, temperature=0.5),
    "entropy": lambda x: fd.entropy(x),
    "varentropy": lambda x: fd.varentropy(x),
    "argmax": lambda x: fd.argmax(x),
    "sample": lambda x: fd.sample(x, seed=1),
    "sample_greedy": lambda x: fd.sample(x, temperature=0.0, seed=1),
    "sample_filtered": lambda x: fd.sample(x, top_k=5, top_p=0.9, seed=1),
    "Sampler": lambda x: fd.Sampler(top_k=5, seed=1)(x),
}

PICKERS = ("softmax", "log_softmax", "entropy", "varentropy", "argmax", "sample",
           "sample_greedy", "sample_filtered", "Sampler")


@pytest.mark.parametrize("op", sorted(FILTER_CALLS))
@pytest.mark.parametrize("data,row,what", [(NAN, 1, "NaN"), (PINF, 2, r"\+inf")])
def test_nan_and_posinf_logits(op, data, row, what):
    before = data.copy()
    with pytest.raises(ValueError, match=rf"logits.*row {row}.*{what}"):
        FILTER_CALLS[op](data)
    np.testing.assert_array_equal(data, before)  # out=None: the input is untouched on error


@pytest.mark.parametrize("op", PICKERS)
def test_all_neg_inf_row_where_a_token_is_needed(op):
    with pytest.raises(ValueError, match=r"logits.*row 1"):
        FILTER_CALLS[op](NEG)


def test_sample_row_emptied_by_penalties_raises():
    """A Sampler whose suppress list removes every token of a row must not pick anything."""
    s = fd.Sampler(suppress_tokens=list(range(40)), seed=1)
    with pytest.raises(ValueError, match=r"logits.*row 0"):
        s(X)


BAD = [
    # (id, call, exception, message regex)
    ("int_logits", lambda: fd.top_k(X.astype(np.int32), 2), TypeError, "logits"),
    ("bool_logits", lambda: fd.softmax(X > 0), TypeError, "logits"),
    ("complex_logits", lambda: fd.softmax(X.astype(np.complex64)), TypeError, "logits"),
    ("str_logits", lambda: fd.argmax("abc"), TypeError, "logits"),
    ("int_logits_sample", lambda: fd.sample(np.ones((2, 4), np.int64), seed=1), TypeError,
     "logits"),
    ("ndim0", lambda: fd.softmax(np.float32(1.0)), ValueError, "logits"),
    ("ndim3", lambda: fd.top_p(X[None], 0.5), ValueError, "logits"),
    ("ndim3_sample", lambda: fd.sample(X[None], seed=1), ValueError, "logits"),
    ("vocab0", lambda: fd.softmax(X[:, :0]), ValueError, "logits"),
    ("top_k_neg", lambda: fd.top_k(X, -1), ValueError, r"\bk\b"),
    ("top_k_frac", lambda: fd.top_k(X, 2.5), ValueError, r"\bk\b"),
    ("top_k_str", lambda: fd.top_k(X, "3"), TypeError, r"\bk\b"),
    ("top_k_row", lambda: fd.top_k(X, [1, -2, 3]), ValueError, r"\bk\b.*row 1"),
    ("top_k_len", lambda: fd.top_k(X, [1, 2]), ValueError, r"\bk\b"),
    ("top_k_2d", lambda: fd.top_k(X, np.ones((3, 1))), ValueError, r"\bk\b"),
    ("top_p_hi", lambda: fd.top_p(X, 1.5), ValueError, r"\bp\b"),
    ("top_p_neg", lambda: fd.top_p(X, -0.1), ValueError, r"\bp\b"),
    ("top_p_nan", lambda: fd.top_p(X, np.nan), ValueError, r"\bp\b"),
    ("top_p_row", lambda: fd.top_p(X, [0.5, 0.5, 2.0]), ValueError, r"\bp\b.*row 2"),
    ("min_p_hi", lambda: fd.min_p(X, 1.01), ValueError, r"\bp\b"),
    ("typical_hi", lambda: fd.typical_p(X, 1.1), ValueError, "mass"),
    ("epsilon_one", lambda: fd.epsilon_cutoff(X, 1.0), ValueError, "epsilon"),
    ("eta_neg", lambda: fd.eta_cutoff(X, -0.1), ValueError, "epsilon"),
    ("sigma_nan", lambda: fd.top_n_sigma(X, np.nan), ValueError, r"\bn\b"),
    ("min_keep_0", lambda: fd.top_p(X, 0.5, min_tokens_to_keep=0), ValueError,
     "min_tokens_to_keep"),
    ("min_keep_row", lambda: fd.top_k(X, 2, min_tokens_to_keep=[1, 1, 0]), ValueError,
     "min_tokens_to_keep.*row 2"),
    ("filter_value_nan", lambda: fd.top_k(X, 2, filter_value=np.nan), ValueError,
     "filter_value"),
    ("filter_value_str", lambda: fd.top_k(X, 2, filter_value="x"), TypeError, "filter_value"),
    ("temperature_neg", lambda: fd.softmax(X, temperature=-1.0), ValueError, "temperature"),
    ("temperature_nan", lambda: fd.log_softmax(X, temperature=np.nan), ValueError,
     "temperature"),
    ("temperature_inf", lambda: fd.softmax(X, temperature=np.inf), ValueError, "temperature"),
    ("temperature_row", lambda: fd.sample(X, temperature=[1, 1, -1], seed=1), ValueError,
     "temperature.*row 2"),
    ("temperature_len", lambda: fd.sample(X, temperature=[1.0, 1.0], seed=1), ValueError,
     "temperature"),
    ("sample_top_k", lambda: fd.sample(X, top_k=-1, seed=1), ValueError, "top_k"),
    ("sample_top_p", lambda: fd.sample(X, top_p=1.5, seed=1), ValueError, "top_p"),
    ("sample_top_p_row", lambda: fd.sample(X, top_p=[0.5, -1, 0.5], seed=1), ValueError,
     "top_p.*row 1"),
    ("sample_min_p", lambda: fd.sample(X, min_p=-0.1, seed=1), ValueError, "min_p"),
    ("sample_typical", lambda: fd.sample(X, typical_p=2.0, seed=1), ValueError, "typical_p"),
    ("sample_epsilon", lambda: fd.sample(X, epsilon_cutoff=1.0, seed=1), ValueError,
     "epsilon_cutoff"),
    ("sample_eta", lambda: fd.sample(X, eta_cutoff=-1e-3, seed=1), ValueError, "eta_cutoff"),
    ("sample_sigma", lambda: fd.sample(X, top_n_sigma=np.nan, seed=1), ValueError,
     "top_n_sigma"),
    ("sample_order", lambda: fd.sample(X, order="beam", seed=1), ValueError, "order"),
    ("seed_neg", lambda: fd.sample(X, seed=-1), ValueError, "seed"),
    ("seed_big", lambda: fd.sample(X, seed=2**64), ValueError, "seed"),
    ("seed_float", lambda: fd.sample(X, seed=1.5), TypeError, "seed"),
    ("seed_len", lambda: fd.sample(X, seed=np.arange(2)), ValueError, "seed"),
    ("seed_row", lambda: fd.sample(X, seed=np.array([1, -1, 2])), ValueError, "seed.*row 1"),
    ("position_neg", lambda: fd.sample(X, seed=1, position=-1), ValueError, "position"),
    ("position_len", lambda: fd.sample(X, seed=1, position=[1, 2]), ValueError, "position"),
    ("uniforms_one", lambda: fd.sample(X, uniforms=[0.5, 1.0, 0.1]), ValueError,
     "uniforms.*row 1"),
    ("penalty_zero", lambda: fd.repetition_penalty(X, IDS, 0.0), ValueError, "penalty"),
    ("penalty_neg", lambda: fd.repetition_penalty(X, IDS, -1.2), ValueError, "penalty"),
    ("penalty_row", lambda: fd.repetition_penalty(X, IDS, [1.0, 0.0, 2.0]), ValueError,
     "penalty.*row 1"),
    ("penalty_inf", lambda: fd.repetition_penalty(X, IDS, np.inf), ValueError, "penalty"),
    ("ids_hi", lambda: fd.repetition_penalty(X, BAD_IDS, 1.2), ValueError, "input_ids.*row 2"),
    ("ids_neg", lambda: fd.presence_frequency_penalty(X, NEG_IDS, presence=1.0), ValueError,
     "input_ids.*row 2"),
    ("ids_hi_ngram", lambda: fd.no_repeat_ngram(X, BAD_IDS, 2), ValueError, "input_ids.*row 2"),
    ("ids_hi_bad_words", lambda: fd.bad_words(X, BAD_IDS, [[1]]), ValueError,
     "input_ids.*row 2"),
    ("ids_batch", lambda: fd.repetition_penalty(X, IDS[:2], 1.2), ValueError, "input_ids"),
    ("ids_batch_1d", lambda: fd.no_repeat_ngram(X, IDS[0], 2), ValueError, "input_ids"),
    ("ids_float", lambda: fd.repetition_penalty(X, IDS.astype(float), 1.2), TypeError,
     "input_ids"),
    ("ids_3d", lambda: fd.bad_words(X, IDS[None], [[1]]), ValueError, "input_ids"),
    ("lengths_hi", lambda: fd.repetition_penalty(X, IDS, 1.2, lengths=[8, 9, 1]), ValueError,
     "lengths.*row 1"),
    ("lengths_neg", lambda: fd.no_repeat_ngram(X, IDS, 2, lengths=[8, 1, -1]), ValueError,
     "lengths.*row 2"),
    ("lengths_len", lambda: fd.bad_words(X, IDS, [[1]], lengths=[8, 8]), ValueError,
     "lengths"),
    ("prompt_ignore_neg", lambda: fd.repetition_penalty(X, IDS, 1.2, prompt_ignore_length=-1),
     ValueError, "prompt_ignore_length"),
    ("last_n_neg", lambda: fd.repetition_penalty(X, IDS, 1.2, last_n=-1), ValueError,
     "last_n"),
    ("prompt_lengths_row", lambda: fd.presence_frequency_penalty(
        X, IDS, presence=1.0, prompt_lengths=[0, -1, 0]), ValueError, "prompt_lengths.*row 1"),
    ("presence_nan", lambda: fd.presence_frequency_penalty(X, IDS, presence=np.nan), ValueError,
     "presence"),
    ("frequency_inf", lambda: fd.presence_frequency_penalty(X, IDS, frequency=np.inf),
     ValueError, "frequency"),
    ("ngram_zero", lambda: fd.no_repeat_ngram(X, IDS, 0), ValueError, r"\bn\b"),
    ("bias_id_hi", lambda: fd.logit_bias(X, {40: 1.0}), ValueError, "bias"),
    ("bias_id_neg", lambda: fd.logit_bias(X, {-1: 1.0}), ValueError, "bias"),
    ("bias_nan", lambda: fd.logit_bias(X, {1: np.nan}), ValueError, "bias"),
    ("bias_type", lambda: fd.logit_bias(X, [1, 2]), TypeError, "bias"),
    ("suppress_id", lambda: fd.suppress_tokens(X, [3, 40]), ValueError, "ids"),
    ("suppress_float", lambda: fd.suppress_tokens(X, [1.5]), TypeError, "ids"),
    ("allowed_id", lambda: fd.allowed_tokens(X, [40]), ValueError, "ids"),
    ("allowed_float", lambda: fd.allowed_tokens(X, [1.5]), TypeError, "ids"),
    ("bitmask_dtype", lambda: fd.allowed_tokens_bitmask(X, np.ones(2, np.int64)), TypeError,
     "bitmask"),
    ("bitmask_short", lambda: fd.allowed_tokens_bitmask(X, np.ones(1, np.int32)), ValueError,
     "bitmask"),
    ("bitmask_rows", lambda: fd.allowed_tokens_bitmask(X, np.ones((2, 2), np.int32)),
     ValueError, "bitmask"),
    ("bad_words_empty", lambda: fd.bad_words(X, IDS, [[]]), ValueError, "bad_words_ids"),
    ("bad_words_id", lambda: fd.bad_words(X, IDS, [[1, 40]]), ValueError, "bad_words_ids"),
    ("bad_words_str", lambda: fd.bad_words(X, IDS, "abc"), TypeError, "bad_words_ids"),
    ("out_dtype", lambda: fd.top_k(X, 2, out=np.empty((3, 40), np.float64)), TypeError, "out"),
    ("out_shape", lambda: fd.top_k(X, 2, out=np.empty((3, 41), np.float32)), ValueError,
     "out"),
    ("out_readonly", lambda: fd.top_k(X, 2, out=np.broadcast_to(np.float32(0), (3, 40))),
     ValueError, "out"),
    ("out_list", lambda: fd.top_p(X, 0.5, out=[0.0] * 40), TypeError, "out"),
    ("softmax_out_f16", lambda: fd.softmax(X.astype(np.float16), out=X.astype(np.float16)),
     TypeError, "out"),
    ("penalty_out_dtype", lambda: fd.repetition_penalty(X, IDS, 1.2, out=X.astype(np.float64)),
     TypeError, "out"),
    ("Sampler_top_p", lambda: fd.Sampler(top_p=2.0), ValueError, "top_p"),
    ("Sampler_temperature", lambda: fd.Sampler(temperature=-1.0), ValueError, "temperature"),
    ("Sampler_penalty", lambda: fd.Sampler(repetition_penalty=0.0), ValueError,
     "repetition_penalty"),
    ("Sampler_order", lambda: fd.Sampler(order="x"), ValueError, "order"),
    ("Sampler_seed", lambda: fd.Sampler(seed=-3), ValueError, "seed"),
    ("Sampler_no_ids", lambda: fd.Sampler(repetition_penalty=1.2, seed=1)(X), ValueError,
     "input_ids"),
    ("Sampler_ids_hi", lambda: fd.Sampler(repetition_penalty=1.2, seed=1)(X, BAD_IDS),
     ValueError, "input_ids.*row 2"),
    ("Sampler_nan", lambda: fd.Sampler(seed=1)(NAN), ValueError, "logits.*row 1"),
]


@pytest.mark.parametrize("call,exc,match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("op", ["repetition_penalty", "bad_words", "top_p", "sample"])
def test_error_leaves_input_untouched(op):
    """A failure in a late row must not have written earlier rows of the caller's array."""
    x = X.copy()
    before = x.copy()
    with pytest.raises(ValueError):
        if op == "repetition_penalty":
            fd.repetition_penalty(x, BAD_IDS, 1.5)
        elif op == "bad_words":
            fd.bad_words(x, BAD_IDS, [[1]])
        elif op == "top_p":
            y = x.copy()
            y[2, 0] = np.nan
            x = y
            before = y.copy()
            fd.top_p(x, 0.1)
        else:
            fd.sample(x, top_p=[0.5, 0.5, 3.0], seed=1)
    np.testing.assert_array_equal(x, before)


@needs_torch
def test_torch_bad_inputs():
    t = torch.from_numpy(X.copy())
    with pytest.raises(TypeError, match="logits"):
        fd.top_k(torch.ones((2, 3), dtype=torch.int64), 1)
    with pytest.raises(TypeError, match="logits"):
        fd.softmax(torch.ones((2, 3), dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"logits.*row 1"):
        fd.sample(torch.from_numpy(NAN.copy()), seed=1)
    with pytest.raises(TypeError, match="out"):
        fd.top_k(t, 2, out=torch.empty((3, 40), dtype=torch.float16))
    with pytest.raises(ValueError, match="input_ids.*row 2"):
        fd.repetition_penalty(t, torch.from_numpy(BAD_IDS), 1.2)


# ------------------------------------------------------------------------------------------------
# in-place calls: an error is raised before anything is written


def _nan_late(rng, dtype=np.float32):
    x = rng.normal(size=(6, 300)).astype(dtype)
    x[4, 17] = np.nan  # rows 0-3 would be written before row 4 is reached
    return x


IN_PLACE = {
    "top_k": lambda x: fd.top_k(x, 5, out=x),
    "top_p": lambda x: fd.top_p(x, 0.5, out=x),
    "min_p": lambda x: fd.min_p(x, 0.2, out=x),
    "typical_p": lambda x: fd.typical_p(x, 0.5, out=x),
    "epsilon_cutoff": lambda x: fd.epsilon_cutoff(x, 0.01, out=x),
    "eta_cutoff": lambda x: fd.eta_cutoff(x, 0.01, out=x),
    "top_n_sigma": lambda x: fd.top_n_sigma(x, 1.0, out=x),
    "softmax": lambda x: fd.softmax(x, out=x),
    "log_softmax": lambda x: fd.log_softmax(x, out=x),
}


@pytest.mark.parametrize("name", sorted(IN_PLACE))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_error_leaves_out_untouched(name, dtype):
    x = _nan_late(np.random.default_rng(0), dtype)
    before = x.copy()
    with pytest.raises(ValueError, match=r"logits row 4 contains NaN \(column 17\)"):
        IN_PLACE[name](x)
    np.testing.assert_array_equal(x, before)


def test_in_place_penalty_errors_leave_out_untouched():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 50)).astype(np.float32)
    ids = rng.integers(0, 50, size=(4, 8))
    ids[3, 5] = 50  # out of range in the last row only
    calls = [
        lambda: fd.repetition_penalty(x, ids, 1.3, out=x),
        lambda: fd.presence_frequency_penalty(x, ids, presence=0.5, out=x),
        lambda: fd.no_repeat_ngram(x, ids, 2, out=x),
        lambda: fd.bad_words(x, ids, [[1], [2, 3]], out=x),
    ]
    before = x.copy()
    for call in calls:
        with pytest.raises(ValueError, match=r"input_ids row 3, position 5"):
            call()
        np.testing.assert_array_equal(x, before)
    out = np.full_like(x, 7.0)
    with pytest.raises(ValueError, match="penalty"):
        fd.repetition_penalty(x, ids, -1.0, out=out)
    with pytest.raises(TypeError, match="ids"):
        fd.suppress_tokens(x, [1.5], out=out)
    with pytest.raises(ValueError, match="bias"):
        fd.logit_bias(x, {3: float("inf")}, out=out)
    assert (out == 7.0).all()  # a separate out= is not written either
