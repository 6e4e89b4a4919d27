"""Shared data generators and comparison helpers for the fastdecode test suite.

The central helper is :func:`assert_filter_match`, which compares the output of a filter with an
expected keep-mask under the project's rules:

* every output element is either the input element, bit for bit, or ``filter_value``;
* the kept set equals the expected one, except
  - ties at the boundary (``allow_tie_choice=True``, used against Hugging Face, whose choice inside
    a tied group depends on torch's unstable sort): the number kept from each group of equal
    logits must match, not the ids;
  - rows whose decision lies within float32 rounding of the threshold ("borderline" rows): the
    kept set must lie between the reference masks at slightly perturbed parameters (a keep-less
    and a keep-more bracket). Those rows are counted and their number is bounded, so a real
    boundary bug cannot hide behind the tolerance.
"""

import math
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fastdecode import _reference as ref  # noqa: E402

try:  # torch is a test extra; tests that need it skip with a reason when it is missing
    import torch
except ImportError:  # pragma: no cover - exercised only without the test extra
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch (test extra) is not installed")

FILTERS = ("top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "top_n_sigma")


# ------------------------------------------------------------------------------------------------
# data


ROW_KINDS = ("flat", "normal", "peaked", "zipf", "ties", "neginf", "extreme")


def make_rows(rng, kind, B, V, dtype=np.float32):
    """B rows of V logits of a given character (all rows have at least one finite value)."""
    if kind == "flat":
        x = rng.normal(0.0, 0.05, (B, V))
    elif kind == "normal":
        x = rng.normal(0.0, 2.0, (B, V))
    elif kind == "peaked":
        x = rng.normal(0.0, 1.0, (B, V))
        top = rng.integers(0, V, B)
        x[np.arange(B), top] += rng.uniform(4.0, 12.0, B)
    elif kind == "zipf":
        s = rng.uniform(0.7, 1.6, (B, 1))
        ranks = np.argsort(rng.random((B, V)), axis=1) + 1.0
        x = -s * np.log(ranks) + rng.normal(0.0, 0.01, (B, V))
    elif kind == "ties":  # coarse grid: many exact ties, including at every boundary
        step = rng.choice([0.25, 0.5, 1.0], (B, 1))
        x = np.round(rng.normal(0.0, 1.5, (B, V)) / step) * step
        x += 0.0  # no -0.0
    elif kind == "neginf":
        x = rng.normal(0.0, 2.0, (B, V))
        x[rng.random((B, V)) < 0.3] = -np.inf
        keep = rng.integers(0, V, B)
        x[np.arange(B), keep] = rng.normal(0.0, 2.0, B)
    elif kind == "extreme":
        x = rng.normal(0.0, 30.0, (B, V)) + rng.uniform(-1e3, 1e3, (B, 1))
    else:
        raise ValueError(kind)
    return x.astype(dtype)


# ------------------------------------------------------------------------------------------------
# bit-level helpers


def bits(a):
    """Bit pattern view of a float array (for exact comparisons, -0.0 != 0.0)."""
    a = np.ascontiguousarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def assert_bits_equal(a, b, msg=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{msg}: shape {a.shape} != {b.shape}"
    assert a.dtype == b.dtype, f"{msg}: dtype {a.dtype} != {b.dtype}"
    diff = bits(a) != bits(b)
    if diff.any():
        idx = np.argwhere(diff)[:5]
        raise AssertionError(f"{msg}: {diff.sum()} elements differ, e.g. at {idx.tolist()}: "
                             f"{[a[tuple(i)] for i in idx]} vs {[b[tuple(i)] for i in idx]}")


def to_numpy(t):
    """torch tensor (any float dtype, bfloat16 included) -> NumPy float array (bf16 -> float32)."""
    if torch is not None and isinstance(t, torch.Tensor):
        if t.dtype == torch.bfloat16:
            return t.float().numpy()
        return t.numpy()
    return np.asarray(t)


# ------------------------------------------------------------------------------------------------
# filter comparison


_KEEP_MORE = {  # how to move each parameter to keep more tokens: (sign, kind of step)
    "top_p": +1, "min_p": -1, "typical_p": +1, "epsilon_cutoff": -1, "eta_cutoff": -1,
    "top_n_sigma": +1,
}


def _perturb(kind, p, more, tol):
    sign = _KEEP_MORE[kind] * (1 if more else -1)
    if kind in ("top_p", "typical_p"):
        q = p + sign * tol  # absolute: cumulative masses are compared
        return float(np.clip(q, 0.0, 1.0)) if p < 1.0 else p
    q = p * (1.0 + sign * tol * 10)  # relative: probabilities / thresholds are compared
    if kind in ("min_p", "epsilon_cutoff", "eta_cutoff"):
        q = float(np.clip(q, 0.0, 1.0))
    return q


def _typical_bracket(z, mass, min_keep, tm, ts):
    """Keep-less / keep-more masks of the typical filter when masses may be off by tm and every
    |-log p - H| by ts (float32 log-probabilities and entropy)."""
    V = z.shape[0]
    if mass >= 1.0:
        return np.ones(V, bool), np.ones(V, bool)
    m = np.max(z)
    lp = z - (m + np.log(np.exp(z - m).sum()))
    p = np.exp(lp)
    fin = p > 0
    h = -np.sum(p[fin] * lp[fin])
    s = np.abs(-lp - h)
    order = np.argsort(s, kind="stable")
    cum = np.cumsum(p[order])

    def crossing(mm):
        hit = np.nonzero(cum >= mm)[0]
        return int(hit[0]) if hit.size else V - 1

    # keep-less: the crossing at mass - tm; its token (and exact ties) may only be dropped when
    # another token's score lies within 2 ts of it (the two can then swap places in the walk)
    s_lo = s[order[crossing(mass - tm)]]
    ambiguous = np.any((np.abs(s - s_lo) <= 2 * ts) & (s != s_lo))
    lo = (s < s_lo - 2 * ts) if ambiguous else (s <= s_lo)
    s_mk = s[order[min(min_keep, V) - 1]]
    lo |= s < s_mk - 2 * ts
    # keep-more: the crossing at mass + tm, plus anything within 2 ts above it
    hi = (s <= s[order[crossing(mass + tm)]] + 2 * ts) | (s <= s_mk + 2 * ts)
    return lo, hi


def bracket_masks(kind, z_row, param, min_keep, tol=2e-5):
    """(lo, hi): reference masks that keep less / more than any float32 evaluation may."""
    if kind == "typical_p":
        return _typical_bracket(z_row.astype(np.float64), param, min_keep, tol, 1e-5)
    lo = ref.filter_mask(kind, z_row, _perturb(kind, param, False, tol),
                         min_tokens_to_keep=min_keep)
    hi = ref.filter_mask(kind, z_row, _perturb(kind, param, True, tol),
                         min_tokens_to_keep=min_keep)
    return lo, hi


def _group_counts(z, mask):
    vals, inv = np.unique(z, return_inverse=True)
    return vals, np.bincount(inv.reshape(-1), weights=mask.astype(np.float64),
                             minlength=vals.size)


def kept_mask(x, out, filter_value=-np.inf, what="output"):
    """Checks that every element of `out` is the input element (bit-exact) or filter_value and
    returns the keep mask (input elements equal to filter_value count as kept)."""
    x = np.asarray(x)
    out = np.asarray(out)
    assert out.shape == x.shape and out.dtype == x.dtype, (out.shape, out.dtype, x.shape, x.dtype)
    same = bits(out) == bits(x)
    fv = np.asarray(filter_value, dtype=np.float64).astype(x.dtype)
    is_fv = bits(out) == bits(np.broadcast_to(fv, out.shape))
    bad = ~(same | is_fv)
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        raise AssertionError(f"{what}: element {i} is {out[i]!r}, neither the input {x[i]!r} nor "
                             f"filter_value {fv!r} ({bad.sum()} such elements)")
    return same


def assert_filter_match(kind, x, got_keep, exp_keep, param, min_keep, *, allow_tie_choice,
                        bracket=True, max_borderline_frac=0.01, what=""):
    """Compares keep masks row by row (see the module docstring). `x` holds the logits the
    decision was made on (float32 values); `param`/`min_keep` are scalars or per-row arrays.
    Returns the number of borderline rows."""
    x = np.asarray(x)
    if x.ndim == 1:
        x, got_keep, exp_keep = x[None], got_keep[None], exp_keep[None]
    B = x.shape[0]
    prm = np.broadcast_to(np.asarray(param), (B,))
    mk = np.broadcast_to(np.asarray(min_keep), (B,))
    z = x.astype(np.float32).astype(np.float64)
    live = np.isfinite(z)  # -inf inputs are -inf whether "kept" or not
    g = got_keep & live
    e = exp_keep & live
    bad_rows = np.nonzero((g != e).any(axis=1))[0]
    borderline = []
    for r in bad_rows:
        _, cg = _group_counts(z[r], g[r])
        _, ce = _group_counts(z[r], e[r])
        if allow_tie_choice and np.array_equal(cg, ce):
            continue  # same number kept from each tied group: only the choice inside differs
        if not allow_tie_choice and np.array_equal(cg, ce):
            diff = np.nonzero(g[r] != e[r])[0]
            raise AssertionError(
                f"{what} {kind} row {r} (param {prm[r]}, min_keep {mk[r]}): the same number of "
                f"tied tokens is kept but not the lowest ids; differing ids {diff[:10].tolist()}")
        ok = False
        if bracket and kind != "top_k":
            lo, hi = bracket_masks(kind, z[r], float(prm[r]), int(mk[r]))
            _, clo = _group_counts(z[r], lo & live[r])
            _, chi = _group_counts(z[r], hi & live[r])
            ok = bool(np.all(clo <= cg) and np.all(cg <= chi))
        if not ok:
            diff = np.nonzero(g[r] != e[r])[0]
            raise AssertionError(
                f"{what} {kind} row {r} (param {prm[r]}, min_keep {mk[r]}, V {z.shape[1]}): "
                f"kept {int(g[r].sum())} vs expected {int(e[r].sum())}; differing ids "
                f"{diff[:10].tolist()} with logits {z[r, diff[:10]].tolist()}, "
                f"got-kept {g[r, diff[:10]].tolist()}")
        borderline.append(int(r))
    limit = max(2, int(max_borderline_frac * B))
    assert len(borderline) <= limit, (
        f"{what} {kind}: {len(borderline)} of {B} rows differ within rounding of the threshold "
        f"(limit {limit}); rows {borderline[:10]}")
    return len(borderline)


# ------------------------------------------------------------------------------------------------
# statistics


def _gammaincc(a, x):
    """Regularized upper incomplete gamma Q(a, x) (Numerical Recipes gser / gcf)."""
    if x <= 0:
        return 1.0
    gln = math.lgamma(a)
    if x < a + 1.0:
        ap, s, d = a, 1.0 / a, 1.0 / a
        for _ in range(10000):
            ap += 1.0
            d *= x / ap
            s += d
            if abs(d) < abs(s) * 1e-15:
                break
        return max(0.0, 1.0 - s * math.exp(-x + a * math.log(x) - gln))
    b = x + 1.0 - a
    c = 1.0 / 1e-300
    d = 1.0 / b
    h = d
    for i in range(1, 10000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return math.exp(-x + a * math.log(x) - gln) * h


def chi2_sf(stat, dof):
    """P(X >= stat) for X ~ chi-square(dof)."""
    return _gammaincc(dof / 2.0, stat / 2.0)


def chi_square_pvalue(counts, probs, min_expected=5.0):
    """Pearson goodness of fit of observed counts to probs (bins with expected < min_expected are
    pooled). Also asserts that no zero-probability token was drawn."""
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    n = counts.sum()
    zero = probs == 0
    assert counts[zero].sum() == 0, f"drew removed tokens {np.nonzero(zero & (counts > 0))[0]}"
    exp = probs * n
    big = exp >= min_expected
    obs_b, exp_b = list(counts[big]), list(exp[big])
    small = ~big & ~zero
    if small.any():
        obs_b.append(counts[small].sum())
        exp_b.append(exp[small].sum())
    obs_b, exp_b = np.array(obs_b), np.array(exp_b)
    if obs_b.size < 2:
        return 1.0
    stat = float(np.sum((obs_b - exp_b) ** 2 / exp_b))
    return chi2_sf(stat, obs_b.size - 1)


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the test's name (stable across runs and orderings)."""
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.nodeid)) % (2**32)
    return np.random.default_rng(seed)
