"""Smoke test of the benchmark suite (benchmarks/run.py): it runs in --quick mode on tiny rows and
prints / writes a well-formed table. Structure only: no timing is asserted."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import _kernels as K
from fastdecode._array import as_logits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import run as bench  # noqa: E402

TINY = ["--quick", "--vocab", "1000", "--batch", "3", "--budget", "0", "--no-llama"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    # the subprocess imports the fastdecode this test imported (installed, or built in place)
    pkg_parent = str(Path(fd.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [pkg_parent, str(ROOT), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run([sys.executable, "-m", "benchmarks", *TINY, "--json", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return p.stdout, json.loads(out.read_text())


def test_every_section_and_kernel_is_run(quick):
    _, data = quick
    res = data["results"]
    sections = {r["section"] for r in res}
    assert sections == {"kernels", "dtype", "batch", "beam", "speculative", "contrastive",
                        "generate"}
    kernels = {r["kernel"] for r in res if r["section"] == "kernels"}
    assert kernels == set(bench.kernel_table())
    assert {"softmax", "top_k(1)", "top_k(50)", "top_k(1000)", "top_p(0.9)", "top_p(0.95)",
            "min_p(0.05)", "typical_p(0.9)", "sample(k=50,p=.9,T=.8)",
            "repetition_penalty(1.2)"} <= kernels
    # each distribution, each storage dtype, 1 and 2 threads
    assert {r["dist"] for r in res if r["section"] == "kernels"} == {"peaked", "flat"}
    assert {r["dtype"] for r in res if r["section"] == "dtype"} == {"float16", "bfloat16"}
    assert {r["threads"] for r in res if r["section"] == "batch"} == {1, 2}
    assert {r["B"] for r in res if r["section"] == "batch"} == {3}
    assert {r["V"] for r in res if r["section"] in ("kernels", "dtype", "batch")} == {1000}


def test_rows_hold_times_ratios_and_floors(quick):
    _, data = quick
    for r in data["results"]:
        if r["section"] in ("speculative", "contrastive") and r["fastdecode_us"] is None:
            assert r["note"].startswith(("not available", "signature not recognised")), r
            continue
        t = r["fastdecode_us"]
        assert t is not None and t > 0 and math.isfinite(t), r
        if r["floor_kind"] is not None:
            assert r["floor_kind"] in ("read", "exp_sum")
            assert r["floor_us"] > 0 and r["floor_x"] == pytest.approx(t / r["floor_us"])
        for p in bench.PEERS:
            if r[f"{p}_us"] is None:
                assert r[f"{p}_why"], (p, r)  # a skipped peer says why
            else:
                assert r[f"{p}_x"] == pytest.approx(r[f"{p}_us"] / t)
        if r["section"] == "kernels":
            assert r["numpy_us"] is not None  # the NumPy reference runs every float32 kernel
            assert 1 <= r["nucleus"] <= 1000
    # the llama peer was switched off: every row says so
    assert all(r["llama_why"] == "--no-llama" or r["llama_why"] == "n/a"
               or r["llama_why"].startswith(("no ", "n/a", "llama.cpp's"))
               for r in data["results"])
    assert data["machine"]["cpus"] >= 1 and data["argv"][:1] == ["--quick"]


def test_printed_table(quick):
    out, data = quick
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("case"))
    assert lines[head].split() == ["case", "shape", "nucl", "fd", "us", "floor", "numpy", "us",
                                   "/fd", "torch", "us", "/fd", "llama", "us", "/fd"]
    body = lines[head + 1: head + 1 + len(data["results"])]
    assert [line.split()[0] for line in body] == [r["case"] for r in data["results"]]
    gen = [line for line in body if line.startswith("generate/")]
    assert len(gen) == 2
    assert all(r["floor_x"] is None and r["unit"] == "token" for r in data["results"]
               if r["section"] == "generate")
    assert "llama.cpp peer skipped: --no-llama" in out
    assert any("not available" in line or "signature" in line or "speculative" in line
               for line in body)


def test_cases_filter_and_list():
    assert bench.main(["--quick", "--vocab", "500", "--no-llama", "--cases", "beam",
                       "--list"]) == 0
    env = bench.Env(bench.argparse.Namespace(
        quick=True, vocab=[500], batch=[2], no_llama=True, cases="top_p(0.9)", budget=0.0))
    cases = bench.build_cases(env)
    assert cases and all("top_p(0.9)" in c.label for c in cases)


def test_floor_kernel_values():
    """The floors the table divides by: the row maximum and sum exp(x - max), every dtype."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 777)) * 3).astype(np.float32)
    x[2, ::2] = -np.inf
    out = np.empty(3)
    K._floor(x, 0, out, 1)
    np.testing.assert_array_equal(out, x.max(1))
    K._floor(x, 1, out, 2)
    ref = np.exp(x.astype(np.float64) - x.max(1, keepdims=True)).sum(1)
    np.testing.assert_allclose(out, ref, rtol=5e-7)
    K._floor(x.astype(np.float16), 0, out, 1)
    np.testing.assert_array_equal(out, x.astype(np.float16).max(1).astype(np.float64))
    bits = bench.to_bf16_bits(x)
    lg = as_logits(bits, dtype="bfloat16").array
    K._floor(lg, 1, out, 1)
    xb = (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    np.testing.assert_allclose(out, np.exp(xb - xb.max(1, keepdims=True)).sum(1), rtol=5e-7)
    with pytest.raises(ValueError, match="kind"):
        K._floor(x, 2, out, 1)
    y = x.copy()
    y[1, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        K._floor(y, 1, out, 1)


def test_bf16_bits_round_to_nearest_even():
    x = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, -2.5, np.inf], np.float32)
    b = bench.to_bf16_bits(x)
    back = (b.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(back, [1.0, 1.0, 1.0 + 2**-6, -2.5, np.inf])
