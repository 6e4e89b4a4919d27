"""Regressions found by the C core's fuzz target (csrc/fuzz/fuzz_core.c, `make -C csrc fuzz-run`).

Each defect is replayed through the private binding (fastdecode._kernels), because the public ops
reject these inputs before the core sees them (n = inf, a vocabulary of 0 columns). The crashing
inputs themselves are in csrc/fuzz/corpus/, which every fuzz run replays first; the last test
replays that corpus through the fuzz binary when it has been built.
"""

import os
import pathlib
import subprocess

import numpy as np
import pytest

from fastdecode import _kernels as K
from fastdecode import _reference as ref

ROOT = pathlib.Path(__file__).resolve().parents[1]
FUZZ_BIN = ROOT / "csrc" / "tests" / "bin" / "fuzz_core"
CORPUS = ROOT / "csrc" / "fuzz" / "corpus"


def _filter(kind, x, param, min_keep, filter_value=-np.inf):
    out = np.empty_like(x)
    K.filter(kind, x, out, np.array([param], dtype=np.float64),
             np.array([min_keep], dtype=np.float64), filter_value, 1)
    return out


# fuzz/corpus/regress-top-n-sigma-inf: top-n-sigma with n = +inf on a row whose finite logits are
# all equal (sigma = 0) computed the threshold max - inf * 0 = NaN and removed every token, even
# the maximum that min_keep >= 1 must keep. The kept set is now the min_keep floor alone, as the
# NumPy reference (keep | z >= min_keep-th largest) has it.
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("row", [[0.0139], [0.5, -np.inf, 0.5, -np.inf], [2.0] * 70 + [-np.inf] * 3])
@pytest.mark.parametrize("min_keep", [1, 2, 3])
def test_top_n_sigma_infinite_n_keeps_min_keep(dtype, row, min_keep):
    x = np.array([row], dtype=dtype)
    got = _filter(K.TOP_N_SIGMA, x, np.inf, min_keep)
    with np.errstate(invalid="ignore"):  # inf * 0 (the public reference rejects n = inf)
        keep = ref._keep_top_n_sigma(x[0].astype(np.float64), np.inf, min_keep)
    want = np.where(keep, x, np.array(-np.inf, dtype=dtype))
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(got).sum() >= min(min_keep, np.isfinite(x).sum())


def test_top_n_sigma_infinite_n_with_spread_keeps_finite():
    # sigma > 0: max - inf * sigma = -inf keeps every finite logit (unchanged behaviour)
    x = np.array([[1.0, 3.0, -np.inf, 2.0]], dtype=np.float32)
    np.testing.assert_array_equal(_filter(K.TOP_N_SIGMA, x, np.inf, 1), x)


# fuzz/corpus/regress-history-empty-vocab: with a vocabulary of 0 columns the repetition,
# presence/frequency and no-repeat n-gram kernels returned success without looking at the
# history, although every id is outside [0, 0) (fd.h: FD_ERANGE; bad_words and the NumPy
# reference already raised).
@pytest.mark.parametrize("kind, a, b", [
    (0, np.array([1.2]), None),
    (1, np.array([0.5]), np.array([0.25])),
    (2, 1, -np.inf),
    (2, 3, -np.inf),
])
def test_history_penalties_check_ids_with_empty_vocabulary(kind, a, b):
    x = np.zeros((2, 0), dtype=np.float32)
    ids = np.array([[0, 1], [1, 1]], dtype=np.int64)
    with pytest.raises(ValueError):
        K.history_penalty(kind, x, ids, None, None, a, b)
    # empty histories hold no id: nothing to reject
    K.history_penalty(kind, x, ids, None, np.zeros(2, dtype=np.int64), a, b)
    K.history_penalty(kind, x, np.zeros((2, 0), dtype=np.int64), None, None, a, b)


def test_history_penalties_empty_vocabulary_agrees_with_bad_words():
    x = np.zeros((1, 0), dtype=np.float32)
    ids = np.array([[0]], dtype=np.int64)
    with pytest.raises(ValueError):
        K.bad_words(x, ids, None, None, np.array([0], dtype=np.int64),
                    np.array([0, 1], dtype=np.int64), -np.inf)
    with pytest.raises(ValueError):
        ref.repetition_penalty(x, ids, 1.2)


@pytest.mark.skipif(not FUZZ_BIN.exists(), reason="fuzz target not built (make -C csrc fuzz)")
def test_fuzz_corpus_replays_clean():
    inputs = sorted(p for p in CORPUS.iterdir() if p.is_file())
    assert inputs
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # not the gcc ASan runtime
    res = subprocess.run([str(FUZZ_BIN), "-runs=0", str(CORPUS)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
