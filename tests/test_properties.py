"""Property-based tests (hypothesis) over every public kernel and loop in ``fastdecode.__all__``.

Each property draws random inputs -- B from 0 to 4 (B = 0 included), V from 1 to 130 (block
boundaries 32/64 included), float32/float64/float16/bfloat16 (uint16 bits with
``dtype="bfloat16"``), nine layouts (contiguous, row-strided ``x[:, 2:2+V]``, ``x[::2]``,
``(B, S, V)[:, -1, :]``, negative row stride, negative and non-unit inner stride (copied by the
Python layer), Fortran order, read-only), 1-D rows, NaN / +-inf / +-1e30 / +-3e38 / denormals /
+-1e300 placed anywhere, all -inf rows, parameter edges and invalid values, random token
histories (ids out of range, empty, ``lengths`` / ``prompt_lengths`` / ``last_n`` windows) and
``out=`` (none, separate, the input itself, wrong dtype, wrong shape) -- and checks:

* the call returns the result of its NumPy twin in ``fastdecode._reference`` under the rules of
  ``test_reference_parity.py`` (filters: exact keep masks, kept values bit for bit, the documented
  borderline bracket of ``conftest.assert_filter_match``; penalties/constraints: bit for bit
  after one rounding to the storage dtype; probabilities: float tolerance that grows with the
  row's magnitude, since the core computes in float32; ``beam_step``: bit for bit given the core's
  log-softmax; ``sample``: the inverse-CDF pick of the reference for explicit ``uniforms``, a
  token of non-zero reference probability otherwise, with a bracket for rows within rounding of a
  filter threshold), or raises ``ValueError``/``TypeError``;
* fastdecode raised <=> the reference raised; when both name the same argument the exception
  types agree; where the reference cannot tell (``out=``, ``seed``, ``position``,
  ``filter_value``, ``uniforms`` range, documented deviations) the expected exception comes from
  a small oracle, and every fastdecode message names an argument of the call;
* never any other exception (hypothesis reports it), never a crash;
* the input buffer (the whole array a view lives in) is byte-for-byte unchanged unless it was
  passed as ``out=``; an in-place call that raises leaves it unchanged too.

B = 0 returns empty results everywhere (``(0, V)`` logits, ``(0,)`` tokens, ``(0, k)`` beam
steps), per-row parameter arrays of length 0 included, except ``beam_step`` without
``group_size``, which raises ``ValueError`` by design; a bad scalar parameter raises (naming it)
even when there are no rows.

Where the core's documented behaviour is not modelled by the twin, the test adapts the twin's
input rather than loosening the check: finite float64 beyond the float32 range saturates to
+-FLT_MAX for decisions (csrc/core/dtype.c); argmax decides on float32-rounded values (fd.h);
``sample`` is greedy where max / T overflows float32 (csrc/core/sample.c), i.e. T = 0 for the
twin; probabilities below -FLT_MAX are -inf in float32. And an oracle supplies what the twin
does not check: ``logit_bias`` +inf (also once rounded to float32), the ``bad_words`` history,
integral ``n``, (1, W) bitmask rows, ``input_ids`` required by history penalties, ``lengths``
as the Sampler's default position. Three defects the properties found are pinned by regression
tests: ``test_typical_mass_one_keeps_everything``, ``test_sampler_rejects_nan_under_constraints``,
``test_beam_search_checks_ids_without_steps``.

Loops (``generate``, ``stream``, ``beam_search``) run on random small ``NGramModel``s with
ragged prompts (valid and invalid: none, empty, negative ids, ids >= V), ``max_new_tokens`` from
-1 to 6, random EOS / stop / min new tokens / sampler / seeds, and check the result invariants:
shapes, lengths, prompts kept, padding after each row's end, finish reasons consistent with the
rule that fired (no EOS before ``min_new_tokens``, no stop sequence missed), greedy equals an
argmax loop, every row equals its solo run with its seed, ``stream`` equals ``generate``; beam
results are sorted best first, scores equal the sum of the tokens' log-probabilities over
``len ** length_penalty``, n-gram blocking holds, every prompt equals its solo search.

Examples per property (fixed profile ``fastdecode-properties``: ``derandomize=True``, no
database, no deadline, so CI is deterministic; ``FASTDECODE_PROPERTY_SCALE=20`` multiplies the
counts for a deeper local run):

    test_softmax_family ............ 400     test_sample ...................... 600
    test_entropy_argmax ............ 400     test_sampler ..................... 360
    test_filters .................. 1200     test_beam_step ................... 450
    test_history_penalties ......... 700     test_generate .................... 150
    test_vocab_constraints ......... 600     test_stream_equals_generate ...... 60
    test_pack_bitmask .............. 200     test_beam_search ................. 100

About 5,200 examples, ~17 s in a normal build on the 2-core development machine.
"""

import math
import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import fastdecode as fd
from fastdecode import _reference as ref
from fastdecode.models import NGramModel

from _strategies import (DTYPES, f32_to_bf16, from_storage, histories, logits_cases,
                         per_row_or_scalar, round_storage, same_storage, storage_bits)
from conftest import assert_filter_match

settings.register_profile(
    "fastdecode-properties", derandomize=True, database=None, deadline=None, print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much])
_PROFILE = settings.get_profile("fastdecode-properties")


def examples(n):
    """The profile with n examples (times FASTDECODE_PROPERTY_SCALE, for deeper local runs)."""
    return settings(_PROFILE, max_examples=int(n * float(os.environ.get(
        "FASTDECODE_PROPERTY_SCALE", "1"))))


ERRORS = (ValueError, TypeError)
EPS32 = 2.0 ** -24

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


# ------------------------------------------------------------------------------------------------
# outcome helpers


def outcome(fn):
    """(result, None) or (None, the ValueError/TypeError raised). Anything else propagates."""
    try:
        return fn(), None
    except ERRORS as e:
        return None, e


def _named(e, names):
    """The argument of `names` that the message of `e` mentions first (None if none)."""
    msg = str(e)
    hits = [(m.start(), n) for n in names for m in [re.search(rf"(?<![A-Za-z_]){re.escape(n)}"
                                                              rf"(?![A-Za-z])", msg)] if m]
    return min(hits)[1] if hits else None


def assert_names_argument(e, names, what=""):
    assert _named(e, names) is not None, f"{what}: {e!r} names none of the arguments {names}"


def agree(gerr, rerr, names, what=""):
    """fastdecode raised <=> the reference (or oracle) raised; the message names an argument; the
    exception types agree when both messages blame the same argument."""
    assert (gerr is None) == (rerr is None), (
        f"{what}: fastdecode {'raised ' + repr(gerr) if gerr else 'returned'}, reference "
        f"{'raised ' + repr(rerr) if rerr else 'returned'}")
    if gerr is None:
        return
    assert_names_argument(gerr, names, what)
    a, b = _named(gerr, names), _named(rerr, names)
    if a is not None and a == b:
        assert type(gerr) is type(rerr), f"{what}: {gerr!r} vs reference {rerr!r}"


def want_storage_dtype(case):
    return np.dtype(np.uint16) if case.dtype == "bfloat16" else np.dtype(case.dtype)


def out_problem(o, want, shape):
    """The exception fastdecode must raise for out=o (None when o is acceptable)."""
    if o.dtype != want:
        return TypeError
    if o.shape != shape or not o.flags.writeable:
        return ValueError
    o2 = o.reshape(1, -1) if o.ndim == 1 else o
    n, v = o2.shape
    isz = o2.dtype.itemsize
    if n and v > 1 and o2.strides[1] != isz:
        return ValueError
    if n > 1 and (o2.strides[0] % isz or o2.strides[0] < v * isz):
        return ValueError
    return None


def draw_out(draw, case, want):
    mode = draw(st.sampled_from(["none"] * 4 + ["separate", "inplace"] * 2
                                + ["bad_dtype", "bad_shape"]))
    shape = case.vals.shape
    if mode == "none":
        return None
    if mode == "separate":
        return np.full(shape, 7, dtype=want)
    if mode == "inplace":
        return case.x
    if mode == "bad_dtype":
        return np.zeros(shape, dtype=np.float64 if want != np.float64 else np.float32)
    return np.zeros(shape[:-1] + (shape[-1] + 1,), dtype=want)


def run_op(case, out, fd_call, ref_call, names, *, want, oracle=None, what=""):
    """Runs fd_call(out) and ref_call(); checks the raise agreement, out= identity and that the
    input buffer is unchanged. Returns (got, expected) or None when the call raised.

    oracle: (exception type, argument) that fastdecode must raise where the reference cannot tell
    or differs by design (None: follow the reference)."""
    got, gerr = outcome(lambda: fd_call(out))
    event(f"{what}: {'raised' if gerr else 'returned'}")  # --hypothesis-show-statistics
    problem = out_problem(out, want, case.vals.shape) if out is not None else None
    inplace = out is case.x
    if problem is not None:
        assert gerr is not None, f"{what}: out= of dtype {out.dtype}, shape {out.shape}, " \
                                 f"strides {out.strides} was accepted"
        assert_names_argument(gerr, names + ("out",), what)
        assert case.unchanged(), f"{what}: the input was modified by a call that raised"
        return None
    exp, rerr = outcome(ref_call)
    if oracle is not None:
        rerr = oracle[0](f"{oracle[1]} (oracle)")
    if case.B == 0 and gerr is None and rerr is not None and _named(rerr, names) is None:
        return None  # the twin's NumPy code fails on an empty batch; fastdecode returns nothing
    if case.B == 0 and gerr is not None and rerr is None:
        # no rows: the twin checks only the values it broadcasts to rows, fastdecode checks
        # every parameter it is given; a bad parameter may raise (naming it) on an empty batch
        assert _named(gerr, names) not in (None, "logits"), f"{what}: B = 0 raised {gerr!r}"
        assert case.unchanged()
        return None
    agree(gerr, rerr, names + ("out",), what)
    if gerr is not None or not inplace:
        assert case.unchanged(), f"{what}: the input buffer was modified"
    if gerr is not None:
        return None
    if out is not None:
        assert got is out, f"{what}: out= was not returned"
    return got, exp


# ------------------------------------------------------------------------------------------------
# softmax, log_softmax, entropy, varentropy, argmax


TEMPS = [0.0, 1e-30, 1e-3, 0.5, 1.0, 2.0, 1e30]
BAD_TEMPS = [-1.0, np.nan, np.inf]


_FLT_MAX = float(np.finfo(np.float32).max)


def saturated(vals):
    """The values the core decides on: finite float64 beyond the float32 range saturates to
    +-FLT_MAX (csrc/core/dtype.c); the twin would round it to +-inf."""
    if vals.dtype != np.float64:
        return vals
    return np.where(np.isfinite(vals), np.clip(vals, -_FLT_MAX, _FLT_MAX), vals)


def _row_scale(vals):
    """Largest finite |logit| of each row (0 for rows with none)."""
    v = np.atleast_2d(np.asarray(vals, dtype=np.float64))
    a = np.where(np.isfinite(v), np.abs(v), 0.0)
    return a.max(axis=1) if v.shape[1] else np.zeros(v.shape[0])


@examples(400)
@given(st.data())
def test_softmax_family(data):
    case = data.draw(logits_cases())
    log = data.draw(st.booleans())
    t = per_row_or_scalar(data.draw, TEMPS, case.B,
                          invalid=BAD_TEMPS if data.draw(st.integers(0, 4)) == 0 else ())
    want = np.dtype(np.float64 if case.dtype == "float64" else np.float32)
    out = draw_out(data.draw, case, want)
    name = "log_softmax" if log else "softmax"
    res = run_op(case, out,
                 lambda o: getattr(fd, name)(case.x, temperature=t, out=o, **case.kw),
                 lambda: getattr(ref, name)(saturated(case.vals), temperature=t),
                 ("logits", "temperature", "dtype"), want=want, what=name)
    if res is None:
        return
    got, exp = res
    g = np.asarray(got)
    assert g.dtype == want and g.shape == case.vals.shape
    g2, e2 = np.atleast_2d(g), np.atleast_2d(exp)
    tt = np.broadcast_to(np.asarray(t, dtype=np.float64), (g2.shape[0],))
    scale = _row_scale(saturated(case.vals))
    for r in range(g2.shape[0]):
        fin = np.isfinite(e2[r])
        # the core divides and exponentiates in float32: an error of a few float32 ulps of the
        # row's largest |z / T| (the float64 rounding of float64 input included)
        s = scale[r] / tt[r] if tt[r] > 0 else 0.0
        if s > 1e307:  # z / T overflows float64 in the twin (NaN); the core's answer is sane
            fin_g = np.isfinite(g2[r])
            if log:
                assert not np.isnan(g2[r]).any() and (g2[r] <= 0).all()
                assert abs(g2[r].max()) <= 1e-4, g2[r]
            else:
                assert fin_g.all() and (g2[r] >= 0).all() and abs(g2[r].sum() - 1) <= 1e-5
            continue
        if log:
            # beyond the float32 range (the value, or z - max on a row spanning more than
            # FLT_MAX) the core's float32 log-probability saturates or is -inf
            zr = np.atleast_2d(saturated(case.vals))[r].astype(np.float64)
            with np.errstate(invalid="ignore"):
                big = (e2[r] < -_FLT_MAX) | (np.nanmax(np.where(np.isfinite(zr), zr, np.nan))
                                             - zr > _FLT_MAX)
            gb, eb = g2[r][big], e2[r][big]
            assert (np.isneginf(gb) | (gb <= -0.999 * _FLT_MAX)
                    | np.isclose(gb, eb, rtol=1e-5)).all(), (r, g2[r], e2[r])
            fin &= ~big
            assert np.array_equal(fin[~big], np.isfinite(g2[r])[~big]), (r, g2[r], e2[r])
            np.testing.assert_allclose(g2[r][fin], e2[r][fin], rtol=2e-5,
                                       atol=1e-4 + 8 * EPS32 * s, err_msg=f"row {r}")
        else:
            tol = 2e-5 + 8 * EPS32 * s
            np.testing.assert_allclose(g2[r], e2[r], rtol=tol, atol=2e-6 + tol * e2[r].max(),
                                       err_msg=f"row {r}")


@examples(400)
@given(st.data())
def test_entropy_argmax(data):
    case = data.draw(logits_cases())
    which = data.draw(st.sampled_from(["entropy", "varentropy", "argmax"]))
    # argmax: the core decides on float64 input rounded to float32 (fd.h, "Data model"), so the
    # twin is the reference argmax of the float32-rounded values (see test_argmax_float64_ties)
    # (finite float64 beyond the float32 range saturates to +-FLT_MAX, csrc/core/dtype.c)
    rv = saturated(case.vals).astype(np.float32) if which == "argmax" else saturated(case.vals)
    res = run_op(case, None, lambda o: getattr(fd, which)(case.x, **case.kw),
                 lambda: getattr(ref, which)(rv), ("logits", "dtype"), want=None, what=which)
    if res is None:
        return
    got, exp = res
    g = np.asarray(got)
    assert g.shape == case.vals.shape[:-1]
    if which == "argmax":
        assert g.dtype == np.int64
        np.testing.assert_array_equal(g, exp)
        return
    assert g.dtype == np.float64
    s = _row_scale(rv)
    if case.one_d:
        s = s[0]
    # float32 logits (float64 rounded) and float32 exponentials: an error of a few ulps of the
    # row's largest |z|, times the spread of the surprisal
    h = np.asarray(ref.entropy(rv))
    if which == "entropy":
        tol = 1e-6 + 1e-5 * np.abs(exp) + 64 * EPS32 * s * (1 + h)
    else:
        tol = 1e-6 + 1e-4 * np.abs(exp) + 64 * EPS32 * s * (1 + h) ** 2
    assert np.all(np.abs(g - exp) <= tol), (which, g, exp, tol)


def test_argmax_float64_ties():
    """float64 values that differ only below float32 precision tie (first index wins): the core
    rounds float64 to float32 for its decisions (fd.h). NumPy's argmax picks the larger one."""
    x = np.array([[1.0, 1.0 + 1e-12, 0.5]])
    assert int(fd.argmax(x)[0]) == 0


# ------------------------------------------------------------------------------------------------
# the seven filters


FILTER_PARAMS = {
    "top_k": ([0, 1, 2, 3, 5, 40, 3.0, 2**40], [-1, 2.5, np.nan, np.inf]),
    "top_p": ([0.0, 1e-9, 0.3, 0.5, 0.9, 0.999, 1.0], [-0.1, 1.5, np.nan, np.inf]),
    "min_p": ([0.0, 1e-9, 0.05, 0.5, 0.99, 1.0], [-0.1, 1.01, np.nan]),
    # mass = 1 is left out: see test_typical_mass_one_keeps_everything
    "typical_p": ([0.0, 0.2, 0.5, 0.9, 0.999], [-1.0, 2.0, np.nan]),
    "epsilon_cutoff": ([0.0, 1e-9, 1e-3, 0.1, 0.5, 0.999], [1.0, -1e-3, np.nan]),
    "eta_cutoff": ([0.0, 1e-9, 1e-3, 0.1, 0.5, 0.999], [1.0, -1e-3, np.nan]),
    "top_n_sigma": ([-1.0, 0.0, 0.1, 1.0, 3.0, 1e30], [np.inf, -np.inf, np.nan]),
}
FILTER_ARG = {"top_k": "k", "top_p": "p", "min_p": "p", "typical_p": "mass",
              "epsilon_cutoff": "epsilon", "eta_cutoff": "epsilon", "top_n_sigma": "n"}
FILTER_VALUES = [-np.inf, -np.inf, -8192.0, 0.0, -1.0]


def _filter_value_problem(fv):
    if isinstance(fv, str):
        return TypeError, "filter_value"
    return (ValueError, "filter_value") if isinstance(fv, float) and math.isnan(fv) else None


def check_filter_output(kind, case, got, exp_keep, param, mk, fv):
    """Every element is the input's (bit for bit) or filter_value in the storage dtype, and the
    kept set is the reference's (conftest.assert_filter_match, no tie choice, at most 2
    borderline rows)."""
    g = np.asarray(got)
    assert g.dtype == want_storage_dtype(case) and g.shape == case.vals.shape
    xs = case.storage
    same = same_storage(g, xs, case.dtype)
    fvs = round_storage(np.full(g.shape, fv, dtype=np.float64), case.dtype)
    is_fv = storage_bits(g) == storage_bits(fvs)
    bad = ~(same | is_fv)
    assert not bad.any(), f"{kind}: elements neither kept nor filter_value at {np.argwhere(bad)[:5]}"
    keep = same.copy()
    amb = storage_bits(xs) == storage_bits(fvs)  # input equal to filter_value: can't tell
    keep[amb] = exp_keep[amb]
    assert_filter_match(kind, saturated(case.vals), keep, exp_keep, param, mk,
                        allow_tie_choice=False,
                        max_borderline_frac=0.0, what=f"{case.dtype}/{case.layout}")


def test_typical_mass_one_keeps_everything():
    """mass = 1 is a no-op, as top_p(1) (the walk used to drop tokens whose probability underflows)."""
    x = np.array([0.0, -200.0], np.float32)
    np.testing.assert_array_equal(fd.typical_p(x, 1.0), x)


@examples(1200)
@given(st.data())
def test_filters(data):
    case = data.draw(logits_cases())
    kind = data.draw(st.sampled_from(sorted(FILTER_PARAMS)))
    good, bad = FILTER_PARAMS[kind]
    param = per_row_or_scalar(data.draw, good, case.B,
                              invalid=bad if data.draw(st.integers(0, 4)) == 0 else ())
    V = case.V
    mk = per_row_or_scalar(data.draw, [1, 1, 2, 3, V, V + 5, 10**9], case.B,
                           invalid=[0, -1, 2.5] if data.draw(st.integers(0, 5)) == 0 else ())
    fv = data.draw(st.sampled_from(FILTER_VALUES + ([np.nan, "abc"] if data.draw(
        st.integers(0, 9)) == 0 else [])))
    want = want_storage_dtype(case)
    out = draw_out(data.draw, case, want)
    res = run_op(case, out,
                 lambda o: getattr(fd, kind)(case.x, param, min_tokens_to_keep=mk,
                                             filter_value=fv, out=o, **case.kw),
                 lambda: ref.filter_mask(kind, saturated(case.vals), param,
                                         min_tokens_to_keep=mk),
                 ("logits", FILTER_ARG[kind], "min_tokens_to_keep", "filter_value", "dtype"),
                 want=want, oracle=_filter_value_problem(fv), what=kind)
    if res is not None:
        check_filter_output(kind, case, res[0], np.asarray(res[1]), param, mk, fv)


# ------------------------------------------------------------------------------------------------
# penalties and constraints


def check_edit_output(case, got, exp, what):
    """Bit for bit (NaN = NaN) after one rounding of the reference result to the storage dtype."""
    g = np.asarray(got)
    assert g.dtype == want_storage_dtype(case) and g.shape == case.vals.shape, what
    e = round_storage(exp, case.dtype)
    ok = same_storage(g, e, case.dtype)
    assert ok.all(), (f"{what}: {np.size(ok) - ok.sum()} elements differ, e.g. at "
                      f"{np.argwhere(~ok)[:3].tolist()}: {from_storage(g, case.dtype)[~ok][:3]} "
                      f"vs {from_storage(e, case.dtype)[~ok][:3]}")


def _history_window_problem(ids, lengths, V):
    """bad_words: an id outside [0, V) in the counted history raises (README: out-of-range ids
    in histories raise); the twin does not check the history of bad_words."""
    ids2 = np.atleast_2d(ids)
    if ids2.dtype.kind not in "iu" or ids2.shape[1] == 0:
        return None
    T = ids2.shape[1]
    if lengths is None:
        end = np.full(ids2.shape[0], T)
    else:
        end = np.broadcast_to(np.asarray(lengths), ids2.shape[:1])
        if end.dtype.kind not in "iu" or (end < 0).any() or (end > T).any():
            return None  # the lengths error comes first, from both
    pos = np.arange(T)[None, :]
    bad = ((ids2 < 0) | (ids2 >= V)) & (pos < end[:, None])
    return (ValueError, "input_ids") if bad.any() else None


HISTORY_OPS = ("repetition_penalty", "presence_frequency_penalty", "no_repeat_ngram", "bad_words")


@examples(700)
@given(st.data())
def test_history_penalties(data):
    case = data.draw(logits_cases(specials=data.draw(st.booleans())))
    B, V = case.B, case.V
    op = data.draw(st.sampled_from(HISTORY_OPS))
    ids, lengths = data.draw(histories(B, V))
    if case.one_d and data.draw(st.booleans()):
        ids = ids[0]  # a 1-D history for a 1-D row
        lengths = None if lengths is None or np.ndim(lengths) else lengths
    T = ids.shape[-1]
    bad = (lambda values: values) if data.draw(st.integers(0, 4)) == 0 else (lambda values: [])
    window = lambda: per_row_or_scalar(data.draw, [0, 1, 2, T, T + 3], B, invalid=bad([-1]))  # noqa
    kw, names = {}, ["logits", "input_ids", "lengths", "dtype", "filter_value"]
    oracle = None
    if op == "repetition_penalty":
        kw["penalty"] = per_row_or_scalar(data.draw, [1.0, 1.3, 0.5, 2.0, 1e-30, 1e30], B,
                                          invalid=bad([0.0, -1.0, np.inf, np.nan]))
        for name in ("prompt_ignore_length", "last_n"):
            if data.draw(st.booleans()):
                kw[name] = window()
        names += ["penalty", "prompt_ignore_length", "last_n"]
        fd_call = lambda o: fd.repetition_penalty(case.x, ids, kw["penalty"], lengths=lengths,  # noqa
                                                  out=o, **{k: v for k, v in kw.items()
                                                            if k != "penalty"}, **case.kw)
        ref_call = lambda: ref.repetition_penalty(case.vals, ids, kw["penalty"], lengths=lengths,  # noqa
                                                  **{k: v for k, v in kw.items() if k != "penalty"})
    elif op == "presence_frequency_penalty":
        for name in ("presence", "frequency"):
            kw[name] = per_row_or_scalar(data.draw, [0.0, 0.5, -0.5, 2.0, 1e30], B,
                                         invalid=bad([np.inf, np.nan]))
        for name in ("prompt_lengths", "last_n"):
            if data.draw(st.booleans()):
                kw[name] = window()
        names += ["presence", "frequency", "prompt_lengths", "last_n"]
        fd_call = lambda o: fd.presence_frequency_penalty(case.x, ids, lengths=lengths, out=o,  # noqa
                                                          **kw, **case.kw)
        ref_call = lambda: ref.presence_frequency_penalty(case.vals, ids, lengths=lengths, **kw)  # noqa
    elif op == "no_repeat_ngram":
        n = data.draw(st.sampled_from([1, 2, 3, 4, 9] + bad([0, -1, 2.5])))
        fv = data.draw(st.sampled_from(FILTER_VALUES))
        names += ["n"]
        if n != int(n):
            oracle = ValueError, "n"  # the twin truncates int(n)
        fd_call = lambda o: fd.no_repeat_ngram(case.x, ids, n, lengths=lengths, filter_value=fv,  # noqa
                                               out=o, **case.kw)
        ref_call = lambda: ref.no_repeat_ngram(case.vals, ids, n, lengths=lengths,  # noqa
                                               filter_value=fv)
    else:
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        words = [list(rng.integers(0, V, rng.integers(1, 4))) for _ in range(data.draw(
            st.integers(0, 4)))]
        if words and data.draw(st.integers(0, 5)) == 0:
            words[0] = data.draw(st.sampled_from([[], [V], [0, -1]]))
        fv = data.draw(st.sampled_from(FILTER_VALUES))
        names += ["bad_words_ids"]
        oracle = _history_window_problem(ids, lengths, V)
        fd_call = lambda o: fd.bad_words(case.x, ids, words, lengths=lengths, filter_value=fv,  # noqa
                                         out=o, **case.kw)
        ref_call = lambda: ref.bad_words(case.vals, ids, words, lengths=lengths, filter_value=fv)  # noqa
    want = want_storage_dtype(case)
    out = draw_out(data.draw, case, want)
    ids_before = ids.copy()
    res = run_op(case, out, fd_call, ref_call, tuple(names), want=want, what=op,
                 oracle=oracle)
    np.testing.assert_array_equal(ids, ids_before)
    if res is not None:
        check_edit_output(case, res[0], res[1], op)


BIAS_VALUES = [0.5, -2.0, 1e30, -3e38, -np.inf, 1e-40, 1e39]


@examples(600)
@given(st.data())
def test_vocab_constraints(data):
    case = data.draw(logits_cases(specials=data.draw(st.booleans())))
    B, V = case.B, case.V
    op = data.draw(st.sampled_from(["logit_bias", "logit_bias_rows", "suppress_tokens",
                                    "allowed_tokens", "allowed_tokens_rows",
                                    "allowed_tokens_bitmask"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    bad_id = data.draw(st.integers(0, 5)) == 0

    def id_list(n):
        ids = [int(i) for i in rng.integers(0, V, n)]
        if bad_id and ids:
            ids[0] = data.draw(st.sampled_from([-1, V, V + 100]))
        return ids

    oracle = None
    fv = data.draw(st.sampled_from(FILTER_VALUES))
    names = ("logits", "ids", "filter_value", "dtype")
    if op.startswith("logit_bias"):
        ids = id_list(data.draw(st.integers(0, 4)))
        pool = BIAS_VALUES + ([np.nan, np.inf] if data.draw(st.integers(0, 4)) == 0 else [])
        if op == "logit_bias":
            bias = {i: data.draw(st.sampled_from(pool)) for i in ids}
        else:
            rows = data.draw(st.sampled_from([B, B, 1, B + 1]))
            vals = np.array([[data.draw(st.sampled_from(pool)) for _ in ids] for _ in range(rows)],
                            dtype=np.float64).reshape(rows, len(ids))
            bias = (ids, vals)
        v = np.asarray(list(bias.values()) if isinstance(bias, dict) else bias[1], np.float64)
        cd = np.float64 if case.dtype == "float64" else np.float32
        if np.isposinf(v.astype(cd)).any() and not np.isnan(v).any():
            # documented (ops.logit_bias): +inf, also after rounding to the compute dtype, raises;
            # the twin adds it
            oracle = ValueError, "bias"
        fd_call = lambda o: fd.logit_bias(case.x, bias, out=o, **case.kw)  # noqa
        ref_call = lambda: ref.logit_bias(case.vals, bias)  # noqa
        names = ("logits", "bias", "dtype")
    elif op == "suppress_tokens":
        ids = id_list(data.draw(st.integers(0, 5)))
        fd_call = lambda o: fd.suppress_tokens(case.x, ids, filter_value=fv, out=o, **case.kw)  # noqa
        ref_call = lambda: ref.suppress_tokens(case.vals, ids, filter_value=fv)  # noqa
    elif op.startswith("allowed_tokens") and op != "allowed_tokens_bitmask":
        if op == "allowed_tokens":
            ids = id_list(data.draw(st.integers(0, 5)))
        else:
            ids = [id_list(data.draw(st.integers(0, 4)))
                   for _ in range(data.draw(st.sampled_from([B, B, 1, B + 1])))]
        fd_call = lambda o: fd.allowed_tokens(case.x, ids, filter_value=fv, out=o, **case.kw)  # noqa
        ref_call = lambda: ref.allowed_tokens(case.vals, ids, filter_value=fv)  # noqa
    else:
        W = (V + 31) // 32
        rows = data.draw(st.sampled_from([None, B, 1, B + 1]))
        width = data.draw(st.sampled_from([W, W, W + 1, W - 1]))
        shape = (width,) if rows is None else (rows, width)
        words = rng.integers(-2**31, 2**31, shape).astype(np.int32)
        dt = data.draw(st.sampled_from(["int32", "uint32", "int64"]))
        bm = words.view(np.uint32) if dt == "uint32" else words.astype(dt)
        names = ("logits", "bitmask", "filter_value", "dtype")
        fd_call = lambda o: fd.allowed_tokens_bitmask(case.x, bm, filter_value=fv, out=o,  # noqa
                                                      **case.kw)
        # the twin reads int32 words only (uint32 words are the same bits) and no (1, W) rows,
        # which the binding broadcasts
        rw = words if dt == "uint32" else bm
        if rows == 1 and B != 1:
            rw = np.broadcast_to(rw, (B, width))
        ref_call = lambda: ref.allowed_tokens_bitmask(case.vals, rw, filter_value=fv)  # noqa
    want = want_storage_dtype(case)
    out = draw_out(data.draw, case, want)
    res = run_op(case, out, fd_call, ref_call, names, want=want, oracle=oracle, what=op)
    if res is not None:
        check_edit_output(case, res[0], res[1], op)


@examples(200)
@given(st.data())
def test_pack_bitmask(data):
    V = data.draw(st.sampled_from([1, 5, 31, 32, 33, 64, 100]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    per_row = data.draw(st.booleans())
    lists = [[int(i) for i in rng.integers(0, V, rng.integers(0, 6))]
             for _ in range(data.draw(st.integers(1, 4)) if per_row else 1)]
    if data.draw(st.integers(0, 4)) == 0 and lists[-1]:
        lists[-1][0] = data.draw(st.sampled_from([-1, V, V + 40]))
    vocab = data.draw(st.sampled_from([V, V, V, 0, -3, 2.5, None]))
    arg = lists if per_row else lists[0]
    got, err = outcome(lambda: fd.pack_bitmask(arg, vocab))
    vocab_ok = isinstance(vocab, int) and vocab >= 1
    ids_ok = vocab_ok and all(0 <= i < vocab for r in lists for i in r)
    if not ids_ok:
        assert err is not None, f"pack_bitmask({arg}, {vocab!r}) returned {got}"
        assert_names_argument(err, ("ids", "vocab_size"))
        return
    assert err is None, err
    allowed = np.zeros((len(lists), V), dtype=bool)
    for r, row in enumerate(lists):
        allowed[r, row] = True
    exp = ref.bool_to_bitmask(allowed)
    got = np.asarray(got)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, exp if per_row else exp[0])


# ------------------------------------------------------------------------------------------------
# sample and Sampler


SAMPLE_PARAMS = {  # (disabled value, valid values, invalid values)
    "temperature": (1.0, [0.0, 1e-30, 1e-3, 0.7, 2.0, 1e30], [-1.0, np.nan, np.inf]),
    "top_k": (0, [1, 2, 5, 1000], [-1, 1.5]),
    "top_p": (1.0, [0.0, 1e-9, 0.5, 0.9], [1.1, -0.5]),
    "min_p": (0.0, [1e-9, 0.1, 0.9, 1.0], [1.5]),
    "typical_p": (1.0, [0.0, 0.5, 0.9], [-0.1]),
    "epsilon_cutoff": (0.0, [1e-4, 1e-2, 0.3], [1.0]),
    "eta_cutoff": (0.0, [1e-4, 1e-2, 0.3], [1.0]),
    "top_n_sigma": (0.0, [-1.0, 0.5, 1.0, 3.0], [np.nan]),
}

# How each parameter moves to keep more (+1) or fewer (-1) tokens, for the borderline bracket
_MORE = {"top_p": +1, "min_p": -1, "typical_p": +1, "epsilon_cutoff": -1, "eta_cutoff": -1,
         "top_n_sigma": +1}


def _perturbed(params, more, tol=2e-4):
    p = dict(params)
    for k, sign in _MORE.items():
        v = np.asarray(p[k], dtype=np.float64)
        step = sign * (1 if more else -1)
        if k in ("top_p", "typical_p"):
            q = np.where(v < 1.0, np.clip(v + step * tol, 0.0, 1.0), v)
        elif k == "top_n_sigma":
            q = np.where(v > 0, v * (1 + step * tol * 10), v)
        else:
            q = np.where(v > 0, np.clip(v * (1 + step * tol * 10), 0.0, 0.999999), v)
        p[k] = q
    return p


def _prob_tie_across(z, keep, t):
    """True when a kept and a removed finite logit are equal in float32 probability (|dz| <=
    2^-21 on the unscaled or the temperature-scaled scale) but not in the float64 twin."""
    fin = np.isfinite(z)
    for zz in (z, z / t if t > 0 else z):
        o = np.argsort(zz[fin], kind="stable")
        v, k = zz[fin][o], keep[fin][o]
        if np.any((np.diff(v) <= 2.0 ** -21) & (k[1:] != k[:-1])):
            return True
    return False


def check_sample_tokens(vals, params, tokens, uniforms, logprobs=None, what="sample"):
    """Each token is the reference's inverse-CDF pick for its uniform (when given; within 1e-5
    of a CDF step either neighbour) and has non-zero reference probability, and its logprob is
    the reference's. A row within rounding of a filter threshold (the support changes when the
    filter parameters move by 2e-4, or a kept and a removed logit tie in float32 probability)
    need only draw from the support of one of the three."""
    nominal = np.atleast_2d(ref.sample_distribution(vals, **params))
    brackets = [np.atleast_2d(ref.sample_distribution(vals, **_perturbed(params, m)))
                for m in (False, True)]
    tokens = np.atleast_1d(np.asarray(tokens))
    B = nominal.shape[0]
    u = None if uniforms is None else np.broadcast_to(np.asarray(uniforms, np.float64), (B,))
    for r in range(B):
        t = int(tokens[r])
        assert 0 <= t < nominal.shape[1], f"{what}: token {t} outside the vocabulary"
        p = nominal[r]
        t_r = float(np.broadcast_to(np.asarray(params["temperature"], np.float64),
                                    (B,))[r])
        z_r = np.atleast_2d(vals)[r].astype(np.float32).astype(np.float64)
        if (any(not np.array_equal(b[r] > 0, p > 0) for b in brackets)
                or _prob_tie_across(z_r, p > 0, t_r)):  # borderline row
            assert any(d[r, t] > 0 for d in brackets + [nominal]), (
                f"{what}: row {r} drew token {t}, outside the bracketed supports")
            continue
        assert p[t] > 0, (f"{what}: row {r} drew token {t} of reference probability 0 "
                          f"(support {np.flatnonzero(p).tolist()})")
        if u is not None:
            c = np.cumsum(p)
            want = int(np.argmax(c > u[r] * c[-1]))
            near = np.abs(c - u[r] * c[-1]) <= 1e-5 * c[-1]
            assert want == t or near[min(t, want):max(t, want)].any(), (
                f"{what}: row {r} u={u[r]} picked {t}, the reference {want}")
        if logprobs is not None:
            lp = float(np.atleast_1d(logprobs)[r])
            assert abs(lp - math.log(p[t])) <= 1e-3 * max(1.0, abs(math.log(p[t]))), (
                f"{what}: row {r} logprob {lp} vs reference {math.log(p[t])}")


def twin_params(vals, params):
    """The twin's parameters for the core's documented greedy limit (csrc/core/sample.c): where
    max / T overflows float32 (or T rounds to 0 in float32) the row is greedy, i.e. T = 0."""
    t = np.asarray(params["temperature"], np.float64).reshape(-1)
    v = np.atleast_2d(vals)
    if v.shape[0] == 0 or t.size not in (1, v.shape[0]) or np.isnan(t).any():
        return params
    t = np.broadcast_to(t, (v.shape[0],)).copy()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        m = np.where(np.isfinite(v), v, -np.inf).max(axis=1).astype(np.float32)
        t32 = t.astype(np.float32)
        limit = (t > 0) & np.isfinite(t) & ((t32 == 0) | np.isinf(m / t32)) & np.isfinite(m)
    if not limit.any():
        return params
    t[limit] = 0.0
    return dict(params, temperature=t)


def _seed_problem(seed, B):
    if seed is None:
        return None
    if isinstance(seed, (bool, float, str)):
        return TypeError
    if isinstance(seed, int):
        return None if 0 <= seed < 2**64 else ValueError
    a = np.asarray(seed)
    if a.dtype.kind not in "iu" or a.ndim != 1:
        return TypeError
    if a.shape[0] not in (1, B) or (a < 0).any():
        return ValueError
    return None


def _row_values_problem(v, B, lo, hi, integer=False, hi_open=True):
    a = np.asarray(v, dtype=np.float64)
    if a.ndim == 1 and a.shape[0] not in (1, B):
        return ValueError
    if a.size == 0 and B:
        return ValueError
    bad = np.isnan(a) | (a < lo) | ((a >= hi) if hi_open else (a > hi))
    if integer:
        bad |= a != np.floor(a)
    return ValueError if bad.any() else None


def draw_sample_params(draw, B, invalid):
    params = {}
    for k, (off, good, bad) in SAMPLE_PARAMS.items():
        if draw(st.booleans()):
            params[k] = off
        else:
            params[k] = per_row_or_scalar(draw, good, B, invalid=bad if invalid else ())
    params["order"] = draw(st.sampled_from(["hf", "hf", "llama.cpp"] + (["vllm?"] if invalid
                                                                            else [])))
    return params


@examples(600)
@given(st.data())
def test_sample(data):
    case = data.draw(logits_cases())
    B = case.B
    invalid = data.draw(st.integers(0, 4)) == 0
    params = draw_sample_params(data.draw, B, invalid)
    seed = data.draw(st.sampled_from([0, 1, 2**64 - 1, None, "rows"] + (
        [-1, 2**64, 1.5, True] if invalid else [])))
    if seed == "rows":
        seed = np.arange(B + (1 if invalid and data.draw(st.booleans()) else 0), dtype=np.int64)
    position = data.draw(st.sampled_from([0, 7, 2**62] + ([-1, 2**63, 1.5] if invalid else [])))
    uniforms = None
    if data.draw(st.booleans()):
        uniforms = per_row_or_scalar(data.draw, [0.0, 0.3, 0.5, 0.999999, 1 - 2**-53], B,
                                     invalid=[1.0, -0.1, np.nan] if invalid else ())
    want_lp = data.draw(st.booleans())
    problems = [(_seed_problem(seed, B), "seed"),
                (_row_values_problem(position, B, 0, 2.0**63, integer=True), "position"),
                (None if uniforms is None else _row_values_problem(uniforms, B, 0.0, 1.0),
                 "uniforms")]
    oracle = next(((p, a) for p, a in problems if p is not None), None)
    names = ("logits", "seed", "position", "uniforms", "order", "dtype") + tuple(SAMPLE_PARAMS)
    sat = saturated(case.vals)
    tp = twin_params(sat, params)
    res = run_op(case, None,
                 lambda o: fd.sample(case.x, seed=seed, position=position, uniforms=uniforms,
                                     return_logprobs=want_lp, **params, **case.kw),
                 lambda: ref.sample_distribution(sat, **tp),
                 names, want=None, oracle=oracle, what="sample")
    if res is None:
        return
    got = res[0]
    tokens, lps = got if want_lp else (got, None)
    tokens = np.asarray(tokens)
    assert tokens.dtype == np.int64 and tokens.shape == case.vals.shape[:-1]
    check_sample_tokens(sat, tp, tokens, uniforms, lps)
    # the draw depends on the row's own logits, seed and position only
    if B > 1 and uniforms is None and seed is not None:
        r = data.draw(st.integers(0, B - 1))
        s_r = seed[r] if isinstance(seed, np.ndarray) and seed.size == B else seed
        p_r = {k: (np.asarray(v)[r] if np.ndim(v) == 1 and np.size(v) == B else v)
               for k, v in params.items()}
        solo = fd.sample(np.ascontiguousarray(case.x)[r:r + 1], seed=s_r, position=position,
                         **p_r, **case.kw)
        assert int(solo[0]) == int(tokens[r]), "a row's draw depends on its batch"


@examples(360)
@given(st.data())
def test_sampler(data):
    case = data.draw(logits_cases(max_b=3))
    B, V = case.B, case.V
    params = draw_sample_params(data.draw, B, False)
    cfg = dict(params)
    ids, lengths = data.draw(histories(B, V))
    if ids.dtype.kind == "f":
        ids = ids.astype(np.int64)
    T = ids.shape[1]
    if data.draw(st.booleans()):
        cfg["repetition_penalty"] = data.draw(st.sampled_from([1.0, 1.3, 0.7]))
    if data.draw(st.booleans()):
        cfg["presence_penalty"] = data.draw(st.sampled_from([0.0, 0.5, -1.0]))
        cfg["frequency_penalty"] = data.draw(st.sampled_from([0.0, 0.25]))
    if data.draw(st.booleans()):
        cfg["penalty_last_n"] = data.draw(st.sampled_from([0, 2, 100]))
    if data.draw(st.booleans()):
        cfg["no_repeat_ngram_size"] = data.draw(st.sampled_from([0, 1, 2, 3]))
    if data.draw(st.booleans()):
        cfg["logit_bias"] = {int(data.draw(st.integers(0, V - 1))): data.draw(
            st.sampled_from([1.0, -5.0, -np.inf]))}
    if data.draw(st.booleans()):
        cfg["bad_words_ids"] = [[int(data.draw(st.integers(0, V - 1)))],
                                [int(data.draw(st.integers(0, V - 1))), 0]]
    if data.draw(st.booleans()):
        cfg["suppress_tokens"] = [int(data.draw(st.integers(0, V - 1)))]
    if data.draw(st.booleans()):
        cfg["allowed_token_ids"] = [int(i) for i in data.draw(
            st.lists(st.integers(0, V - 1), min_size=1, max_size=3))]
    seed = data.draw(st.sampled_from([0, 5, "rows"]))
    cfg["seed"] = np.arange(B, dtype=np.int64) if seed == "rows" and B else (
        0 if seed == "rows" else seed)
    plen = data.draw(st.sampled_from([None, 0, min(2, T)]))
    pass_ids = data.draw(st.integers(0, 5)) > 0
    call_kw = dict(lengths=lengths, prompt_lengths=plen)
    x_ids = ids if pass_ids else None
    sampler = fd.Sampler(**cfg)
    oracle = None
    if sampler.needs_history and not pass_ids:
        oracle = ValueError, "input_ids"  # documented: required for history penalties
    elif lengths is not None and (np.any(np.asarray(lengths) < 0)
                                  or np.any(np.asarray(lengths) % 1 != 0)):
        oracle = ValueError, "lengths"  # the default position: validated even without penalties
    elif cfg.get("bad_words_ids"):
        oracle = _history_window_problem(ids, lengths, V)  # the twin's bad_words skips this

    def ref_call():
        rs = ref.Sampler(**{k: v for k, v in cfg.items() if k != "seed"})
        pz = saturated(rs.penalized(case.vals, x_ids, **call_kw))
        return ref.sample_distribution(pz, **twin_params(pz, params))

    names = ("logits", "input_ids", "lengths", "prompt_lengths", "last_n", "dtype", "n",
             "penalty", "presence", "frequency", "ids") + tuple(SAMPLE_PARAMS)
    bad_logits = np.isnan(case.vals) | np.isposinf(case.vals)
    if oracle is None and bad_logits.any() and sampler.edits_logits:
        # known divergence (test_sampler_rejects_nan_under_constraints): the twin rejects NaN /
        # +inf up front, fastdecode only where no constraint overwrote it
        got, err = outcome(lambda: sampler(case.x, x_ids, **call_kw, **case.kw))
        assert case.unchanged()
        if err is None:
            proc = sampler.process(case.x, x_ids, **call_kw, **case.kw)
            assert not (np.isnan(proc) | np.isposinf(proc)).any()
        else:
            assert_names_argument(err, names)
        return
    res = run_op(case, None,
                 lambda o: sampler(case.x, x_ids, return_logprobs=True, **call_kw, **case.kw),
                 ref_call, names, want=None, oracle=oracle, what="Sampler")
    if res is None:
        return
    (tokens, lps), _ = res
    tokens = np.asarray(tokens)
    assert tokens.shape == case.vals.shape[:-1]
    pen = ref.Sampler(**{k: v for k, v in cfg.items() if k != "seed"}).penalized(
        case.vals, x_ids, **call_kw)
    pz = saturated(np.asarray(pen))
    check_sample_tokens(pz, twin_params(pz, params), tokens, None, lps, what="Sampler")
    # fused == unfused: the penalised logits (bit for bit the twin's), then one sample() call
    proc = sampler.process(case.x, x_ids, **call_kw, **case.kw)
    assert np.array_equal(proc, np.atleast_2d(pen).astype(proc.dtype), equal_nan=True)
    position = lengths if lengths is not None else T if x_ids is not None else 0
    again = fd.sample(proc if not case.one_d else proc[0], seed=cfg["seed"], position=position,
                      **params)
    np.testing.assert_array_equal(again, tokens)


def test_sampler_rejects_nan_under_constraints():
    """A NaN that a constraint would overwrite is still rejected (validated before the edits)."""
    x = np.array([[0.0, np.nan, 1.0]], np.float32)
    with pytest.raises(ValueError, match="NaN"):
        fd.Sampler(seed=0)(x)
    with pytest.raises(ValueError, match="NaN"):
        fd.Sampler(seed=0, suppress_tokens=[1])(x)


# ------------------------------------------------------------------------------------------------
# beam_step


@examples(450)
@given(st.data())
def test_beam_step(data):
    case = data.draw(logits_cases(max_b=6, allow_1d=data.draw(st.integers(0, 9)) == 0))
    R, V = (case.vals.shape[0], case.V) if not case.one_d else (1, case.V)
    invalid = data.draw(st.integers(0, 4)) == 0
    divisors = [d for d in range(1, R + 1) if R % d == 0] or [1]
    gs = data.draw(st.sampled_from([None, None] + divisors + ([0, R + 1, 2] if invalid else [])))
    G_size = max(R if gs is None else gs, 1)
    k = data.draw(st.sampled_from([1, 2, 3, 2 * G_size, G_size * V]
                                  + ([0, G_size * V + 1, True, 2.0] if invalid else [])))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    scores = rng.normal(-3, 2, R).round(data.draw(st.sampled_from([0, 6])))
    if R:
        for _ in range(data.draw(st.integers(0, 2))):
            scores[data.draw(st.integers(0, R - 1))] = data.draw(st.sampled_from(
                [-np.inf, -1e9, 0.0, -3e38] + ([1e39, np.nan, np.inf] if invalid else [])))
    if invalid and data.draw(st.booleans()):
        scores = scores[:-1] if R else np.zeros(1)
    normalize = data.draw(st.booleans())
    oracle = (TypeError, "k") if isinstance(k, (bool, float)) else None  # the twin takes int(k)

    def ref_call():
        r = ref.beam_step(case.vals, scores, k, group_size=gs, normalize=normalize)
        if normalize:  # bit-exact expectation: the twin fed the core's own log-softmax
            lp = np.asarray(fd.log_softmax(case.x, **case.kw))
            r = ref.beam_step(case.vals, scores, k, group_size=gs, normalize=True, logprobs=lp)
        return r

    res = run_op(case, None,
                 lambda o: fd.beam_step(case.x, scores, k, group_size=gs, normalize=normalize,
                                        **case.kw),
                 ref_call, ("logits", "beam_scores", "k", "group_size", "dtype"), want=None,
                 oracle=oracle, what="beam_step")
    if res is None:
        return
    (s, rows, toks), (es, er, et) = res
    s, rows, toks = np.asarray(s), np.asarray(rows), np.asarray(toks)
    assert s.dtype == np.float32 and rows.dtype == np.int64 and toks.dtype == np.int64
    assert s.shape == es.shape == rows.shape == toks.shape
    assert np.array_equal(s.view(np.uint32), es.view(np.uint32)) or np.array_equal(s, es), (s, es)
    np.testing.assert_array_equal(rows, er)
    np.testing.assert_array_equal(toks, et)


# ------------------------------------------------------------------------------------------------
# loops: generate, stream, beam_search


@st.composite
def models(draw):
    V = draw(st.integers(1, 9))
    order = draw(st.integers(1, 3))
    eos = draw(st.sampled_from([None, None, 0, V - 1]))
    return NGramModel(vocab_size=V, order=order, seed=draw(st.integers(0, 50)),
                      scale=draw(st.sampled_from([0.5, 3.0])), eos_token_id=eos,
                      eos_bias=draw(st.sampled_from([0.0, 2.0])) if eos is not None else 0.0)


@st.composite
def prompt_lists(draw, V, invalid):
    n = draw(st.integers(1, 3))
    prompts = [draw(st.lists(st.integers(0, V - 1), min_size=1, max_size=4)) for _ in range(n)]
    if invalid:
        which = draw(st.sampled_from(["empty_list", "empty_prompt", "negative", "too_big"]))
        if which == "empty_list":
            return []
        r = draw(st.integers(0, n - 1))
        prompts[r] = [] if which == "empty_prompt" else prompts[r] + [-1 if which == "negative"
                                                                     else V + draw(
                                                                         st.integers(0, 3))]
    return prompts


def _sampler_or_none(draw, V):
    kind = draw(st.sampled_from(["greedy", "greedy", "sample", "sample_penalties", "temp0"]))
    if kind == "greedy":
        return None
    if kind == "temp0":
        return fd.Sampler(temperature=0.0)
    cfg = dict(temperature=draw(st.sampled_from([0.7, 1.0, 1.5])),
               top_k=draw(st.sampled_from([0, 2])), top_p=draw(st.sampled_from([1.0, 0.9])))
    if kind == "sample_penalties":
        cfg.update(repetition_penalty=1.3, presence_penalty=0.5, no_repeat_ngram_size=2)
    return fd.Sampler(**cfg)


def _check_generate_result(r, prompts, model, max_new, eos, stop, min_new, pad):
    B = len(prompts)
    plen = np.array([len(p) for p in prompts])
    eos_set = set(eos if isinstance(eos, list) else ([] if eos is None else [eos]))
    n = int((r.lengths - r.prompt_lengths).max()) if B else 0
    assert r.sequences.shape == (B, int(plen.max()) + n)
    assert r.sequences.dtype == np.int64
    np.testing.assert_array_equal(r.prompt_lengths, plen)
    np.testing.assert_array_equal(r.offsets, 0)
    stops = [tuple(s) for s in (stop or [])]
    for b in range(B):
        L, new = int(r.lengths[b]), r.new_tokens(b).tolist()
        np.testing.assert_array_equal(r.sequences[b, :plen[b]], prompts[b])
        assert (r.sequences[b, L:] == pad).all(), "padding after the row's end"
        assert 0 <= len(new) <= max_new
        assert all(0 <= t < model.vocab_size for t in new)
        reason = r.finish_reasons[b]
        early = [j for j, t in enumerate(new) if t in eos_set]
        assert all(j >= min_new for j in early), "EOS before min_new_tokens"
        if reason == "eos":
            assert early == [len(new) - 1] and r.stop_reasons[b] == new[-1]
            full = new[:-1]
        elif reason == "stop":
            s = r.stop_reasons[b]
            assert s in stops and not early
            assert len(new) + len(s) <= max_new
            full = new + list(s)
        else:
            assert reason == "length" and not early and len(new) == max_new
            full = new
        # no stop sequence ended before the rule that fired
        last = len(full) - 1 if reason == "stop" else len(full)
        for s in stops:
            for end in range(len(s), last + 1):
                assert tuple(full[end - len(s):end]) != s, f"stop {s} missed in row {b}"


def _greedy_reference(model, prompt, max_new, eos, min_new, stop):
    eos_ids = [] if eos is None else (eos if isinstance(eos, list) else [eos])
    seq, new = list(prompt), []
    for step in range(max_new):
        z = model(np.array([seq]))[0, -1].astype(np.float32)
        if step < min_new and eos_ids:
            z[eos_ids] = -np.inf
        t = int(np.argmax(z))
        seq.append(t)
        new.append(t)
        if t in eos_ids:
            return new, "eos"
        for s in stop or []:
            if len(new) >= len(s) and tuple(new[-len(s):]) == tuple(s):
                return new[:-len(s)], "stop"
    return new, "length"


@st.composite
def generate_args(draw):
    model = draw(models())
    V = model.vocab_size
    invalid = draw(st.integers(0, 5)) == 0
    prompts = draw(prompt_lists(V, invalid and draw(st.booleans())))
    kw = dict(max_new_tokens=draw(st.integers(0, 6)))
    bad = None
    if invalid and prompts and all(len(p) and min(p) >= 0 and max(p) < V for p in prompts):
        which = draw(st.sampled_from(["max_new", "min_new", "eos", "stop", "seed", "sampler"]))
        bad = {"max_new": ("max_new_tokens", draw(st.sampled_from([-1, 2.0, None]))),
               "min_new": ("min_new_tokens", -1),
               "eos": ("eos_token_id", draw(st.sampled_from([-1, V, [0, V + 3], "x"]))),
               "stop": ("stop", draw(st.sampled_from([[[]], [[-1]], [[V]], [1.5]]))),
               "seed": ("seed", draw(st.sampled_from([-1, 2**64, 1.5]))),
               "sampler": ("sampler", "greedy")}[which]
    eos = draw(st.sampled_from([None, model.eos_token_id, [0, V - 1]]))
    if eos is not None:
        kw["eos_token_id"] = eos
    if draw(st.booleans()):
        kw["stop"] = [draw(st.lists(st.integers(0, V - 1), min_size=1, max_size=2))
                      for _ in range(draw(st.integers(1, 2)))]
    kw["min_new_tokens"] = draw(st.sampled_from([0, 0, 1, 3]))
    kw["sampler"] = _sampler_or_none(draw, V)
    seed = draw(st.sampled_from([0, 7, "rows"]))
    kw["seed"] = np.arange(len(prompts), dtype=np.int64) + 3 if seed == "rows" and prompts \
        else 7
    if bad is not None:
        kw[bad[0]] = bad[1]
    return model, prompts, kw, invalid


def _expected_problem(model, prompts, kw):
    """What generate must raise for these arguments (None when they are valid)."""
    V = model.vocab_size
    if not prompts:
        return ValueError
    m = kw["max_new_tokens"]
    if not isinstance(m, int) or isinstance(m, bool):
        return TypeError
    if m < 0 or kw.get("min_new_tokens", 0) < 0:
        return ValueError
    if any(len(p) == 0 or min(p) < 0 or max(p) >= V for p in prompts):
        return ValueError
    if isinstance(kw.get("sampler"), str):
        return TypeError
    eos = kw.get("eos_token_id")
    if isinstance(eos, str):
        return TypeError
    eos_l = [] if eos is None else (eos if isinstance(eos, list) else [eos])
    if any(e < 0 or e >= V for e in eos_l):
        return ValueError
    for s in kw.get("stop") or []:
        if not isinstance(s, list):
            return TypeError
        if not s or min(s) < 0 or max(s) >= V:
            return ValueError
    seed = kw.get("seed")
    return _seed_problem(seed, len(prompts))


GEN_NAMES = ("input_ids", "max_new_tokens", "min_new_tokens", "eos_token_id", "stop", "seed",
             "sampler", "prompt")


@examples(150)
@given(generate_args())
def test_generate(args):
    model, prompts, kw, _ = args
    problem = _expected_problem(model, prompts, kw)
    saved = [list(p) for p in prompts]
    r, err = outcome(lambda: fd.generate(model, prompts, **kw))
    assert prompts == saved, "generate modified its prompts"
    if problem is not None:
        assert err is not None, f"generate accepted invalid arguments {kw} / {prompts}"
        assert isinstance(err, problem) or problem is None, (err, problem)
        assert_names_argument(err, GEN_NAMES)
        return
    smp = kw["sampler"]
    if err is not None and "no finite value" in str(err) and (
            (smp is not None and smp.edits_logits)
            or (kw["min_new_tokens"] and kw.get("eos_token_id") is not None)):
        # documented: a row whose penalties (or min_new_tokens' EOS mask) remove every token
        # raises ValueError, carrying the tokens generated so far
        assert isinstance(err, ValueError) and err.partial_result is not None
        return
    assert err is None, f"generate raised {err!r} on valid arguments"
    eos = kw.get("eos_token_id")
    pad = (eos[0] if isinstance(eos, list) else eos) if eos is not None else 0
    _check_generate_result(r, prompts, model, kw["max_new_tokens"], eos, kw.get("stop"),
                           kw["min_new_tokens"], pad)
    greedy = smp is None or (smp.temperature == 0 and not smp.edits_logits)
    seeds = np.broadcast_to(np.asarray(kw["seed"]), (len(prompts),))
    for b, p in enumerate(prompts):
        if greedy:
            new, reason = _greedy_reference(model, p, kw["max_new_tokens"], eos,
                                            kw["min_new_tokens"], kw.get("stop"))
            assert r.new_tokens(b).tolist() == new and r.finish_reasons[b] == reason, (
                b, r.new_tokens(b), new, r.finish_reasons[b], reason)
        # every row equals its solo run with its seed
        solo = fd.generate(model, [p], **dict(kw, seed=int(seeds[b])))
        assert solo.new_tokens(0).tolist() == r.new_tokens(b).tolist(), b
        assert solo.finish_reasons[0] == r.finish_reasons[b]


@examples(60)
@given(generate_args())
def test_stream_equals_generate(args):
    model, prompts, kw, _ = args
    if _expected_problem(model, prompts, kw) is not None:
        err = outcome(lambda: list(fd.stream(model, prompts, **kw)))[1]
        assert err is not None and isinstance(err, ERRORS)
        return
    r, err = outcome(lambda: fd.generate(model, prompts, **kw))
    if err is not None:  # a row emptied by penalties (see test_generate): stream raises too
        assert outcome(lambda: list(fd.stream(model, prompts, **kw)))[1] is not None
        return
    s = fd.stream(model, prompts, **kw)
    streamed = [[] for _ in prompts]
    finished = {}
    for ev in s:
        for row, tok in zip(ev.rows.tolist(), ev.tokens.tolist()):
            assert row not in finished, "a finished row produced a token"
            streamed[row].append(tok)
        finished.update(ev.finished)
    np.testing.assert_array_equal(s.result.sequences, r.sequences)
    assert s.result.finish_reasons == r.finish_reasons
    assert finished == ({b: r.finish_reasons[b] for b in range(len(prompts))}
                        if kw["max_new_tokens"] else {})  # no step, no event
    for b in range(len(prompts)):
        cut = list(r.stop_reasons[b]) if r.finish_reasons[b] == "stop" else []
        assert streamed[b] == r.new_tokens(b).tolist() + cut


@st.composite
def beam_args(draw):
    model = draw(models())
    V = model.vocab_size
    invalid = draw(st.integers(0, 5)) == 0
    bad_prompts = invalid and draw(st.booleans())
    prompts = draw(prompt_lists(V, bad_prompts))
    nb = draw(st.integers(1, 4))
    # bad prompt ids with max_new_tokens=0: see test_beam_search_checks_ids_without_steps
    kw = dict(num_beams=nb, max_new_tokens=draw(st.integers(1 if bad_prompts else 0, 5)),
              length_penalty=draw(st.sampled_from([1.0, 0.0, 2.0, -1.0])),
              early_stopping=draw(st.sampled_from([False, True, "never"])),
              num_return_sequences=draw(st.integers(1, nb)),
              no_repeat_ngram_size=draw(st.sampled_from([0, 0, 2])))
    eos = draw(st.sampled_from([None, model.eos_token_id]))
    if eos is not None:
        kw["eos_token_id"] = eos
    if draw(st.integers(0, 3)) == 0:
        kw.update(do_sample=True, sampler=fd.Sampler(temperature=0.8),
                  seed=draw(st.integers(0, 10)))
    if invalid and prompts and all(len(p) and min(p) >= 0 and max(p) < V for p in prompts):
        which = draw(st.sampled_from(["num_beams", "max_new", "nrs", "eos", "lp"]))
        k, v = {"num_beams": ("num_beams", 0), "max_new": ("max_new_tokens", -1),
                "nrs": ("num_return_sequences", nb + 1), "eos": ("eos_token_id", -1),
                "lp": ("length_penalty", np.nan)}[which]
        kw[k] = v
    return model, prompts, kw, invalid


def _beam_problem(model, prompts, kw):
    V = model.vocab_size
    if not prompts or any(len(p) == 0 or min(p) < 0 or max(p) >= V for p in prompts):
        return ValueError
    if kw["num_beams"] < 1 or kw["max_new_tokens"] < 0:
        return ValueError
    if kw["num_return_sequences"] > kw["num_beams"] or math.isnan(kw["length_penalty"]):
        return ValueError
    eos = kw.get("eos_token_id")
    if eos is not None and not 0 <= eos < V:
        return ValueError
    if kw["max_new_tokens"] and V < max(2, 1 + (eos is not None)):
        return ValueError  # documented: too small a vocabulary for K candidates
    return None


def test_beam_search_checks_ids_without_steps():
    m = NGramModel(vocab_size=5, order=2, seed=0)
    with pytest.raises(ValueError, match="input_ids"):
        fd.generate(m, [[1, 7]], max_new_tokens=0)
    with pytest.raises(ValueError):
        fd.beam_search(m, [[1, 7]], num_beams=2, max_new_tokens=0)


@examples(100)
@given(beam_args())
def test_beam_search(args):
    model, prompts, kw, _ = args
    problem = _beam_problem(model, prompts, kw)
    r, err = outcome(lambda: fd.beam_search(model, prompts, **kw))
    if err is not None and kw.get("do_sample") and "fewer than" in str(err):
        return  # documented: beam sampling with too few finite candidates (HF's multinomial too)
    if problem is not None:
        assert err is not None, f"beam_search accepted {kw} / {prompts}"
        assert_names_argument(err, ("input_ids", "num_beams", "max_new_tokens",
                                    "num_return_sequences", "eos_token_id", "length_penalty",
                                    "prompt", "prompts"))
        return
    assert err is None, f"beam_search raised {err!r} on valid arguments"
    B, n = len(prompts), kw["num_return_sequences"]
    plen = np.repeat([len(p) for p in prompts], n)
    new = r.lengths - r.prompt_lengths
    np.testing.assert_array_equal(r.prompt_lengths, plen)
    # width: at least every row's real tokens, at most S + max new tokens (the docstring's
    # S + n; ragged rows give max(prompt + new) today, generate gives S + n)
    assert int((plen + new).max()) <= r.sequences.shape[1] <= int(plen.max()) + int(new.max())
    assert r.sequences_scores.shape == (B * n,) and r.beam_indices.shape[0] == B * n
    assert (new <= kw["max_new_tokens"]).all()
    eos = kw.get("eos_token_id")
    pad = 0 if eos is None else eos
    lp_pen = kw["length_penalty"]
    for i in range(B * n):
        b = i // n
        np.testing.assert_array_equal(r.sequences[i, :plen[i]], prompts[b])
        assert (r.sequences[i, r.lengths[i]:] == pad).all()
        assert (r.beam_indices[i, new[i]:] == -1).all()
        toks = r.new_tokens(i).tolist()
        if eos is not None and kw["max_new_tokens"] > 0:
            assert eos not in toks[:-1] and (len(toks) == kw["max_new_tokens"] or
                                             toks[-1] == eos)
        sc = float(r.sequences_scores[i])
        if new[i] and sc > -1e8 and not kw.get("do_sample"):
            # HF's score: the sum of the tokens' log-probabilities over len ** length_penalty
            seq = r.sequence(i)
            lp = np.asarray(fd.log_softmax(model(seq[None])[0]))
            total = sum(float(lp[plen[i] + j - 1, t]) for j, t in enumerate(toks))
            want = total / (len(toks) ** lp_pen)
            assert abs(sc - want) <= 1e-4 * max(1.0, abs(want)), (i, sc, want)
        ng = kw["no_repeat_ngram_size"]
        if ng and math.isfinite(sc) and sc > -1e8:
            seq = r.sequence(i).tolist()
            grams = [tuple(seq[j:j + ng]) for j in range(len(seq) - ng + 1)]
            for j in range(plen[i] - ng + 1, len(grams)):
                if j >= 0:
                    assert grams[j] not in grams[:j], f"repeated {ng}-gram {grams[j]} in {seq}"
    for b in range(B):
        s = r.sequences_scores[b * n:(b + 1) * n]
        assert (np.diff(s) <= 0).all(), f"scores of prompt {b} not best first: {s}"
        if b == 0 or B == 1:
            continue
        solo = fd.beam_search(model, [prompts[b]], **kw)
        np.testing.assert_array_equal(solo.sequences_scores, s)
        for j in range(n):
            np.testing.assert_array_equal(solo.new_tokens(j), r.new_tokens(b * n + j))


# ------------------------------------------------------------------------------------------------
# stateful samplers: mirostat (fastdecode.adaptive)


@examples(300)
@given(st.data())
def test_mirostat(data):
    """Any logits case (dtypes, layouts, specials, all -inf rows, B = 0, 1-D) and valid per-row
    tau / eta / temperature / mu: fastdecode raised <=> the twin raised (NaN / +inf / no finite
    logit), the input is unchanged, and tokens, mu, logprobs and survivor counts equal the twin's
    bit for bit with explicit uniforms -- except v2 rows with a token within 1e-5 of the
    threshold (the core's float32 exp-sum), whose token must still have a finite logit."""
    case = data.draw(logits_cases())
    B = case.B
    version = data.draw(st.sampled_from([1, 2]))
    m = data.draw(st.sampled_from([1, 2, 7, 100]))
    def param(vals):
        if data.draw(st.sampled_from(["scalar", "rows"])) == "scalar" or B == 0:
            return data.draw(st.sampled_from(vals))
        return np.array([data.draw(st.sampled_from(vals)) for _ in range(B)])
    tau, eta = param([0.25, 1.0, 3.0, 8.0]), param([0.0, 0.1, 1.0])
    temp = param([0.0, 0.5, 1.0, 2.0, 1e30])
    mu = param([-2.0, 0.0, 1.5, 6.0, 20.0, 300.0])
    u = param([0.0, 0.3, 0.5, 0.999999, 1 - 2**-53])
    sat = saturated(case.vals)
    tp = twin_params(sat, dict(temperature=temp))["temperature"]
    mu_in = mu.copy() if isinstance(mu, np.ndarray) else mu  # a float64 (B,) mu is updated
    got, gerr = outcome(lambda: fd.mirostat(case.x, mu_in, tau=tau, eta=eta, temperature=temp,
                                            version=version, m=m, uniforms=u,
                                            return_logprobs=True, return_kept=True, **case.kw))
    exp, rerr = outcome(lambda: ref.mirostat(sat, mu, tau=tau, eta=eta, temperature=tp,
                                             version=version, m=m, uniform=u,
                                             return_details=True))
    assert case.unchanged(), "mirostat modified its input"
    if B == 0:
        assert gerr is None and np.asarray(got[0]).shape == (0,)
        return
    assert (gerr is None) == (rerr is None), (gerr, rerr)
    if gerr is not None:
        assert isinstance(gerr, ValueError) and "logits" in str(gerr), gerr
        return
    tk, mk, lk, kk = (np.atleast_1d(np.asarray(a)) for a in got)
    tr, mr, lr, kr, margin = (np.atleast_1d(np.asarray(a)) for a in exp)
    ok = np.atleast_1d(margin) >= 1e-5
    event(f"mirostat v{version}: {int((~ok).sum())} borderline rows")
    np.testing.assert_array_equal(tk[ok], tr[ok])
    np.testing.assert_array_equal(mk[ok], mr[ok])
    np.testing.assert_array_equal(lk[ok], lr[ok])
    np.testing.assert_array_equal(kk[ok], kr[ok])
    v2 = np.atleast_2d(sat)
    for r in np.flatnonzero(~ok):
        assert np.isfinite(v2[r, tk[r]]) and kk[r] >= 1


# ------------------------------------------------------------------------------------------------
# adaptive samplers (csrc/core/adaptive.c): DRY and XTC against their twins on the same cases


@examples(500)
@given(st.data())
def test_dry(data):
    case = data.draw(logits_cases(specials=data.draw(st.booleans())))
    B, V = case.B, case.V
    ids, lengths = data.draw(histories(B, V, max_t=14))
    ids = np.where((ids >= 0) & (ids < V), ids % min(V, 3), ids)  # few symbols: repeats
    bad = (lambda values: values) if data.draw(st.integers(0, 4)) == 0 else (lambda values: [])
    mult = per_row_or_scalar(data.draw, [0.0, 0.8, 2.0, 1e30], B, invalid=bad([-1.0, np.nan]))
    base = per_row_or_scalar(data.draw, [1.0, 1.75, 10.0], B, invalid=bad([0.5, np.inf]))
    allowed = per_row_or_scalar(data.draw, [0, 1, 2, 3], B, invalid=bad([-1, 1.5]))
    last_n = per_row_or_scalar(data.draw, [-1, 0, 2, 5, 100], B, invalid=bad([-2, 0.5]))
    brk = data.draw(st.sampled_from([[], [[0]], [[1, 0]], [[2], [0, 1, 0]]] + bad([[[V]], [[]]])))
    names = ("logits", "input_ids", "lengths", "dtype", "multiplier", "base", "allowed_length",
             "penalty_last_n", "sequence_breakers")
    want = want_storage_dtype(case)
    out = draw_out(data.draw, case, want)
    res = run_op(case, out,
                 lambda o: fd.dry(case.x, ids, mult, base, allowed, last_n, brk, lengths=lengths,
                                  out=o, **case.kw),
                 lambda: ref.dry(case.vals, ids, mult, base, allowed, last_n, brk, lengths=lengths),
                 names, want=want, what="dry")
    if res is not None:
        check_edit_output(case, res[0], res[1], "dry")


@examples(500)
@given(st.data())
def test_xtc(data):
    case = data.draw(logits_cases())
    B = case.B
    bad = (lambda values: values) if data.draw(st.integers(0, 4)) == 0 else (lambda values: [])
    prob = per_row_or_scalar(data.draw, [0.0, 0.5, 1.0], B, invalid=bad([-0.1, 1.5, np.nan]))
    thr = per_row_or_scalar(data.draw, [0.0, 0.01, 0.05, 0.1, 0.2, 0.25, 0.5, 0.7], B,
                            invalid=bad([-0.1, np.nan]))
    mk = per_row_or_scalar(data.draw, [1, 2, 5], B, invalid=bad([0, 2.5]))
    u = per_row_or_scalar(data.draw, [0.0, 0.3, 0.7, 0.999], B, invalid=bad([1.0, -0.5]))
    fv = data.draw(st.sampled_from(FILTER_VALUES))
    want = want_storage_dtype(case)
    out = draw_out(data.draw, case, want)

    def twin():
        r = ref.xtc(saturated(case.vals), prob, thr, uniform=u, min_tokens_to_keep=mk,
                    filter_value=np.nan)
        removed = np.isnan(r) & ~np.isnan(np.asarray(case.vals, np.float64))
        return np.where(removed, fv, case.vals)

    res = run_op(case, out,
                 lambda o: fd.xtc(case.x, prob, thr, uniforms=u, min_tokens_to_keep=mk,
                                  filter_value=fv, out=o, **case.kw),
                 twin, ("logits", "probability", "threshold", "min_tokens_to_keep", "uniforms",
                        "filter_value", "dtype"),
                 want=want, oracle=_filter_value_problem(fv), what="xtc")
    if res is not None:
        check_edit_output(case, res[0], res[1], "xtc")
