"""fastdecode.hf.processors against transformers' own classes.

What is compared, and how strictly:

* float32 scores (what ``generate`` feeds processors): ``torch.equal`` with HF's class on random
  rows, HF's own test cases and a tiny Llama's real logits — every class, masks and values.
  The one allowance is a tie group straddling a top-p / typical / min-p cut on rows longer than
  16 tokens, where HF's choice follows torch's unstable sort: there the number kept from each
  tie group must match (conftest.assert_filter_match), and on rows of up to 16 tokens the
  choice must be HF's too.
* float16 / bfloat16 scores: ``torch.equal`` with HF on the same half tensor for temperature,
  top-k, penalties, bias and every mask without probabilities; the probability-based filters
  (HF computes softmax/cumsum/entropy in half precision) equal HF on the float32 upcast rounded
  back, which is the documented fastdecode behaviour.
* ``generate`` on the tiny Llama: sequences equal token for token with HF's processors (greedy,
  beam search, sampling with the same torch seed).
"""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the HF processors need torch (test extra)")
transformers = pytest.importorskip("transformers", reason="the HF processors need transformers")

from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, LogitsProcessorList  # noqa: E402
from transformers.generation import logits_process as lp  # noqa: E402

import fastdecode as fd  # noqa: E402
from fastdecode.hf import processors as P  # noqa: E402

from conftest import assert_filter_match  # noqa: E402

HALF = (torch.float16, torch.bfloat16)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """torch's intra-op threads only cost time on these small tensors (20x for the tiny model's
    generate on a busy 2-core machine); the comparisons do not depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

# name -> (constructor args for a few settings); each runs with both our class and HF's
WARPERS = {
    "TopKLogitsWarper": [(1,), (5,), (50, -100.0, 3), (2000,)],
    "TopPLogitsWarper": [(0.1,), (0.5, -100.0), (0.9, -float("inf"), 3), (0.99,), (0.0, 0.0, 2)],
    "MinPLogitsWarper": [(0.01,), (0.05, -100.0, 3), (0.1,), (0.5,), (0.0, -5.0)],
    "TypicalLogitsWarper": [(0.2,), (0.5, -100.0), (0.9, -float("inf"), 3), (0.95,)],
    "EpsilonLogitsWarper": [(1e-4,), (3e-4, -100.0, 3), (1e-3,), (1e-2,)],
    "EtaLogitsWarper": [(1e-4,), (3e-4, -100.0, 3), (1e-3,), (1e-2,)],
}
# filters whose decision uses probabilities (half precision in HF on half tensors)
PROB_FILTERS = {"TopPLogitsWarper", "MinPLogitsWarper", "TypicalLogitsWarper",
                "EpsilonLogitsWarper", "EtaLogitsWarper"}
KIND = {"TopKLogitsWarper": "top_k", "TopPLogitsWarper": "top_p", "MinPLogitsWarper": "min_p",
        "TypicalLogitsWarper": "typical_p", "EpsilonLogitsWarper": "epsilon_cutoff",
        "EtaLogitsWarper": "eta_cutoff"}


def both(name, *args, **kwargs):
    """(ours, HF's) instances of the class `name` built with the same arguments."""
    return getattr(P, name)(*args, **kwargs), getattr(lp, name)(*args, **kwargs)


def run(proc, ids, x):
    """proc(ids, x) on a copy, checking that x itself is left alone."""
    before = x.clone()
    out = proc(ids, x)
    assert torch.equal(x, before) or torch.isnan(x).any(), "the input scores were modified"
    return out


def assert_same(ours, hf, what=""):
    assert ours.dtype == hf.dtype and ours.shape == hf.shape, what
    if not torch.equal(ours, hf):
        bad = (ours != hf) & ~(torch.isnan(ours) & torch.isnan(hf))
        i = tuple(bad.nonzero()[0].tolist())
        raise AssertionError(f"{what}: {int(bad.sum())} values differ, e.g. at {i}: "
                             f"{ours[i].item()!r} vs HF {hf[i].item()!r}")


def assert_filter_same(name, args, x, got, exp, what=""):
    """Equal outputs, or masks that differ only (a) in which members of a tie group straddling the
    cut are kept (HF's choice follows torch's unstable sort on rows longer than 16 tokens) or (b)
    on rows whose decision lies within float32 rounding of the threshold (HF sums probabilities
    in float32 in sorted order, fastdecode in float64; conftest's bracket check). Kept values equal
    the input, removed ones are filter_value. Returns the number of rows of kind (b)."""
    if torch.equal(got, exp):
        return 0
    fv = args[1] if len(args) > 1 else -float("inf")
    mk = args[2] if len(args) > 2 else 1
    gk, ek = got.float() != fv, exp.float() != fv
    n = assert_filter_match(KIND[name], x.float().numpy(), gk.numpy(), ek.numpy(), args[0], mk,
                            allow_tie_choice=True, what=what)
    assert torch.equal(got[gk], x[gk]) and torch.equal(exp[ek], x[ek].to(exp.dtype)), what
    return n


def random_rows(gen, B, V, kind):
    if kind == "normal":
        x = torch.randn(B, V, generator=gen) * 2.0
    elif kind == "peaked":
        x = torch.randn(B, V, generator=gen)
        x[torch.arange(B), torch.randint(0, V, (B,), generator=gen)] += 9.0
    elif kind == "neginf":
        x = torch.randn(B, V, generator=gen) * 2.0
        x[torch.rand(B, V, generator=gen) < 0.3] = -float("inf")
        x[:, 0] = 1.5
    elif kind == "extreme":
        x = torch.randn(B, V, generator=gen) * 30.0 + 500.0
    else:
        raise ValueError(kind)
    return x


# ------------------------------------------------------------------------------------------------
# warpers on random rows


@pytest.mark.parametrize("name", sorted(WARPERS))
def test_warpers_equal_hf_on_random_rows(name):
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    n = rows = borderline = 0
    for V in (10, 1000, 50257):
        big = V == 50257  # two row kinds at the GPT-2 vocabulary
        for B in (1, 4):
            for kind in (("normal", "neginf") if big else ("normal", "peaked", "neginf", "extreme")):
                x32 = random_rows(gen, B, V, kind)
                for args in WARPERS[name]:
                    ours, hf = both(name, *args)
                    borderline += assert_filter_same(name, args, x32, run(ours, None, x32),
                                                     hf(None, x32.clone()), f"{name}{args} {kind} V={V}")
                    for dt in HALF:  # half precision has many ties: the allowance matters
                        x = x32.to(dt)
                        got = run(ours, None, x)
                        if name in PROB_FILTERS:  # decided in float32, as on the upcast
                            exp = hf(None, x.float()).to(dt)
                        else:
                            exp = hf(None, x.clone())
                        borderline += assert_filter_same(name, args, x, got, exp,
                                                         f"{name}{args} {kind} V={V} {dt}")
                        rows += B
                    n += 1
                    rows += B
    assert n >= 60
    print(f"{name}: {rows} rows, {borderline} within float32 rounding of the threshold")
    assert borderline <= max(2, rows // 100)


def test_half_precision_probability_filters_decide_on_the_upcast():
    """HF's top-p on a bfloat16 tensor rounds probabilities and their cumsum to 8 bits, so its mask
    moves with the rounding; fastdecode decides on the exact values, i.e. as HF on the float32
    upcast (which is what generate feeds the warpers)."""
    gen = torch.Generator().manual_seed(21)
    x = (torch.randn(64, 1000, generator=gen) * 2.0).to(torch.bfloat16)
    ours, hf = both("TopPLogitsWarper", 0.9)
    got, in_half, upcast = ours(None, x), hf(None, x.clone()), hf(None, x.float()).to(torch.bfloat16)
    moved = (torch.isinf(in_half) != torch.isinf(upcast)).any(-1)
    assert moved.sum() >= 10  # the half-precision decision really differs on many rows
    assert_filter_same("TopPLogitsWarper", (0.9,), x, got, upcast, "bf16 top-p")


def test_temperature_equals_hf_bit_for_bit():
    gen = torch.Generator().manual_seed(7)
    for V in (10, 1000, 50257):
        for B in (1, 4):
            x32 = random_rows(gen, B, V, "neginf" if V == 1000 else "extreme")
            for t in (0.3, 0.7, 1.0, 1.3, 4.0, 1e-3):
                ours, hf = both("TemperatureLogitsWarper", t)
                for dt in (torch.float32, torch.float64) + HALF:
                    x = x32.to(dt)
                    assert_same(run(ours, None, x), hf(None, x.clone()), f"T={t} {dt} V={V}")


def test_top_n_sigma_warper_equals_the_functional_kernel():
    gen = torch.Generator().manual_seed(3)
    x = random_rows(gen, 4, 1000, "neginf")
    for n, fv, mk in ((1.0, -float("inf"), 1), (0.5, -100.0, 3), (3.0, -float("inf"), 1)):
        got = run(P.TopNSigmaLogitsWarper(n, fv, mk), None, x)
        assert_same(got, fd.top_n_sigma(x, n, filter_value=fv, min_tokens_to_keep=mk), f"n={n}")
        # the rule itself on the finite logits of each row: z >= max - n * std (population)
        for r in range(4):
            z = x[r][torch.isfinite(x[r])].double()
            keep = x[r].double() >= z.max() - n * z.std(unbiased=False)
            assert int(torch.isfinite(got[r]).sum() if fv == -float("inf") else (got[r] != fv).sum()) \
                == max(int(keep.sum()), mk)
    # the SPEC conformance row: probabilities {.1,.2,.3,.4}, n = 1 keeps .3 and .4
    row = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    got = torch.softmax(P.TopNSigmaLogitsWarper(1.0)(None, row), -1)
    torch.testing.assert_close(got, torch.tensor([[0.0, 0.0, 0.428571, 0.571429]]), atol=1e-6, rtol=0)


def test_ties_keep_hfs_choice_on_short_rows_and_hfs_counts_on_long_rows():
    """Tie groups at the cut: on rows of up to 16 tokens torch.sort is stable and the masks must be
    HF's exactly; on long rows the number kept from each tie group must be HF's."""
    gen = torch.Generator().manual_seed(11)
    for name in ("TopKLogitsWarper", "TopPLogitsWarper", "TypicalLogitsWarper",
                 "EpsilonLogitsWarper", "EtaLogitsWarper"):
        for trial in range(150):
            V = int(torch.randint(2, 17, (1,), generator=gen))
            x = torch.randint(-2, 3, (1, V), generator=gen).float()
            mk = int(torch.randint(1, 4, (1,), generator=gen))
            if name == "TopKLogitsWarper":
                args = (int(torch.randint(1, V + 2, (1,), generator=gen)), -float("inf"), mk)
            else:
                args = (WARPERS[name][trial % 4][0], -float("inf"), mk)
                if name in ("TopPLogitsWarper", "TypicalLogitsWarper") and trial % 3 == 0:
                    args = ((0.25, 0.5, 0.75)[trial % 3 + trial % 2], -float("inf"), mk)
            ours, hf = both(name, *args)
            assert_same(ours(None, x), hf(None, x.clone()), f"{name}{args} {x.tolist()}")
        for V in (1000, 50257):
            x = torch.round(torch.randn(4, V, generator=gen) * 3.0) / 2.0 + 0.0  # a coarse grid
            for args in WARPERS[name]:
                ours, hf = both(name, *args)
                assert_filter_same(name, args, x, ours(None, x), hf(None, x.clone()),
                                   f"{name}{args} ties V={V}")


# ------------------------------------------------------------------------------------------------
# HF's own test cases (transformers tests/generation/test_logits_process.py)


def test_hf_test_suite_cases():
    uniform = torch.ones((2, 5)) / 5
    ramp10 = torch.arange(10, dtype=torch.float).unsqueeze(0).repeat(2, 1)
    ramp10[1:, :5] += 10
    ramp5 = torch.arange(5, dtype=torch.float).unsqueeze(0).repeat(2, 1)
    extreme = torch.arange(10, dtype=torch.float).unsqueeze(0).repeat(2, 1) - 5
    extreme[1] = extreme[1] * 100.0
    cases = [  # (class, args, kwargs, scores, expected mask or count check)
        ("TopKLogitsWarper", (3,), {}, ramp10,
         [[True] * 7 + [False] * 3, [True] * 2 + [False] * 3 + [True] * 5]),
        ("TopKLogitsWarper", (), dict(top_k=1, filter_value=0.0, min_tokens_to_keep=3), uniform, [0, 0]),
        ("TopKLogitsWarper", (), dict(top_k=1, filter_value=0.0, min_tokens_to_keep=3), ramp5, [2, 2]),
        ("TopPLogitsWarper", (0.8,), {},
         torch.log(torch.tensor([[0.3, 0.1, 0.1, 0.5], [0.15, 0.3, 0.3, 0.25]])),
         [[False, True, True, False], [True, False, False, False]]),
        ("TopPLogitsWarper", (0.9,), dict(min_tokens_to_keep=2, filter_value=0.0), extreme, [7, 8]),
        ("MinPLogitsWarper", (0.05,), {},
         torch.log(torch.tensor([[0.9, 0.0274, 0.047, 0.0274], [0.15, 0.3, 0.3, 0.25],
                                 [0.97, 0.01, 0.01, 0.01]])),
         [[False, True, False, True], [False] * 4, [False, True, True, True]]),
        ("MinPLogitsWarper", (0.9,), dict(min_tokens_to_keep=2, filter_value=0.0), extreme, [8, 8]),
        ("TypicalLogitsWarper", (0.5,), {},
         torch.log(torch.tensor([[0.97, 0.01, 0.01, 0.01], [0.4, 0.2, 0.2, 0.2]])),
         [[False, True, True, True], [True, False, False, False]]),
        ("TypicalLogitsWarper", (), dict(mass=0.5, filter_value=0.0, min_tokens_to_keep=3), uniform, [0, 0]),
        ("TypicalLogitsWarper", (0.7,), dict(min_tokens_to_keep=2, filter_value=0.0), extreme, [8, 8]),
        ("EpsilonLogitsWarper", (0.1,), {},
         torch.log(torch.tensor([[0.87, 0.099, 0.001, 0.03], [0.4, 0.299, 0.101, 0.2]])),
         [[False, True, True, True], [False] * 4]),
        ("EpsilonLogitsWarper", (5e-2,), dict(min_tokens_to_keep=2, filter_value=0.0), extreme, [7, 8]),
        ("EtaLogitsWarper", (0.0625,), {},
         torch.log(torch.tensor([[0.0, 0.1, 0.8, 0.1], [0.01, 0.04, 0.9, 0.05]])),
         [[True, False, False, False], [True, True, False, True]]),
        ("EtaLogitsWarper", (0.1,), dict(min_tokens_to_keep=2, filter_value=0.0), extreme, [8, 8]),
    ]
    for name, args, kwargs, scores, expected in cases:
        ours, hf = both(name, *args, **kwargs)
        got = run(ours, None, scores)
        assert_same(got, hf(None, scores.clone()), f"{name}{args}{kwargs}")
        fv = kwargs.get("filter_value", -float("inf"))
        removed = torch.isneginf(got) if fv == -float("inf") else (got == fv)
        if isinstance(expected[0], list):
            assert removed.tolist() == expected, name
        else:
            assert removed.sum(-1).tolist() == expected, name

    ids = torch.tensor([[0, 1], [5, 0]])
    s = torch.ones((2, 10)) / 10
    s[0, 0], s[1, 5] = -0.1, 0.4
    for pil in (None, 2):
        ours, hf = both("RepetitionPenaltyLogitsProcessor", 2.0, prompt_ignore_length=pil)
        assert_same(run(ours, ids, s), hf(ids, s.clone()), f"repetition pil={pil}")
    ours, hf = both("RepetitionPenaltyLogitsProcessor", 2.0, prompt_ignore_length=2)
    longer = torch.tensor([[0, 1, 0, 1], [5, 0, 5, 0]])
    assert_same(ours(longer, s), hf(longer, s.clone()), "repetition, new ids")

    u3 = torch.ones((2, 3)) / 3
    ids = torch.tensor([[1, 1, 2, 1], [0, 1, 0, 1]])
    for n, mask in ((2, [[False, True, True], [True, False, False]]),
                    (3, [[False, False, False], [True, False, False]])):
        ours, hf = both("NoRepeatNGramLogitsProcessor", n)
        got = run(ours, ids, u3)
        assert_same(got, hf(ids, u3.clone()), f"ngram {n}")
        assert torch.isinf(got).tolist() == mask
    ids = torch.tensor([[1, 2, 5, 7, 8, 5, 1, 2]])
    got = P.NoRepeatNGramLogitsProcessor(3)(ids, torch.ones((1, 10)) / 10)
    assert torch.isinf(got).nonzero()[:, 1].tolist() == [5]  # a later 3-gram must not unban 5
    assert not torch.isinf(P.NoRepeatNGramLogitsProcessor(3)(torch.tensor([[1, 2], [0, 1]]), u3)).any()

    ids = torch.tensor([[0, 1, 3, 1], [0, 1, 0, 1]])
    u5 = torch.ones((2, 5)) / 5
    words = [[1], [4], [1, 0], [0, 1, 2], [1, 3, 1, 3]]
    ours, hf = both("NoBadWordsLogitsProcessor", words, eos_token_id=4)
    got = run(ours, ids, u5)
    assert_same(got, hf(ids, u5.clone()), "bad words")
    assert torch.isinf(got).tolist() == [[True, True, False, True, False], [True, True, True, False, False]]

    bias = {(1,): 100.0, (4,): 100.0, (1, 0): -100.0, (0, 1, 2): -100.0, (1, 3, 1, 3): -100.0,
            (1, 3, 1, 3, 1, 3): -100.0}
    ours, hf = both("SequenceBiasLogitsProcessor", bias)
    got = run(ours, ids, torch.zeros((2, 5)))
    assert_same(got, hf(ids, torch.zeros((2, 5))), "sequence bias")
    assert got.tolist() == [[-100.0, 100.0, 0.0, -100.0, 100.0], [-100.0, 100.0, -100.0, 0.0, 100.0]]

    for eos in (0, [0, 18]):
        ours, hf = both("MinNewTokensLengthLogitsProcessor", 5, 3, eos)
        for T in (2, 5, 6, 7, 8, 15):
            ids = torch.randint(0, 20, (4, T))
            assert_same(run(ours, ids, torch.ones((4, 20)) / 20), hf(ids, torch.ones((4, 20)) / 20),
                        f"min new tokens T={T}")
    ours, hf = both("MinLengthLogitsProcessor", 10, 0)
    for T in (5, 15):
        ids = torch.randint(0, 20, (4, T))
        assert_same(ours(ids, torch.ones((4, 20))), hf(ids, torch.ones((4, 20))), f"min length T={T}")


# ------------------------------------------------------------------------------------------------
# penalties and constraints on random rows, every dtype


def penalty_pairs(V, eos, B=4):
    return [
        both("RepetitionPenaltyLogitsProcessor", 1.3),
        both("RepetitionPenaltyLogitsProcessor", 0.7, prompt_ignore_length=3),
        both("RepetitionPenaltyLogitsProcessor", 1.5,
             prompt_ignore_length=torch.tensor([0, 5, 40, 2] * (B // 4))),
        both("NoRepeatNGramLogitsProcessor", 1),
        both("NoRepeatNGramLogitsProcessor", 2),
        both("NoRepeatNGramLogitsProcessor", 3),
        both("SequenceBiasLogitsProcessor", [[[5], 2.5], [[1, 2], -3.25], [[2], 0.1], [[0, 1, 2], 1.7],
                                             [[3, 4], -float("inf")], [[4, 0, 1, 2], 0.3], [[V - 1], -1.0]]),
        both("NoBadWordsLogitsProcessor", [[1, 2], [3], [eos], [0, 1, eos], [2, 2, 2, 1]], eos_token_id=eos),
        both("MinNewTokensLengthLogitsProcessor", 10, 15, [eos, V + 5]),
        both("MinLengthLogitsProcessor", 40, eos),
        both("SuppressTokensLogitsProcessor", [0, 3, V - 1, V + 7]),
    ]


def test_penalties_and_constraints_equal_hf():
    """B = 4 rows, histories over a 6-token alphabet (so n-grams, words and biased sequences
    match often) with rare ids anywhere in the vocabulary, float32/float64/float16/bfloat16."""
    gen = torch.Generator().manual_seed(5)
    for V in (10, 1000, 50257):
        for T in ((3, 20) if V == 50257 else (1, 3, 20)):
            ids = torch.randint(0, 6, (4, T), generator=gen)
            ids[:, ::5] = torch.randint(0, V, (4, len(range(0, T, 5))), generator=gen)
            x32 = random_rows(gen, 4, V, "neginf" if T == 3 else "normal")
            for ours, hf in penalty_pairs(V, eos=2):
                for dt in (torch.float32, torch.float64) + HALF:
                    x = x32.to(dt)
                    assert_same(run(ours, ids, x), hf(ids, x.clone()),
                                f"{type(ours).__name__} V={V} T={T} {dt}")


def test_history_ids_beyond_the_vocabulary_as_hf():
    """An embedding table larger than the LM head: ids >= V are never penalised or banned but
    still take part in n-gram matching (HF's spare column)."""
    V = 12
    ids = torch.tensor([[3, 15, 4, 3, 15], [20, 5, 20, 5, 20], [1, 2, 13, 1, 2]])
    x = torch.randn(3, V, generator=torch.Generator().manual_seed(1))
    for ours, hf in (both("RepetitionPenaltyLogitsProcessor", 1.7),
                     both("RepetitionPenaltyLogitsProcessor", 1.7,
                          prompt_ignore_length=torch.tensor([1, 0, 4])),
                     both("NoRepeatNGramLogitsProcessor", 2), both("NoRepeatNGramLogitsProcessor", 3),
                     both("NoBadWordsLogitsProcessor", [[15 % V, 4], [5], [2, 2]])):
        assert_same(run(ours, ids, x), hf(ids, x.clone()), type(ours).__name__)
    with pytest.raises(ValueError, match="vocabulary size"):  # a biased id beyond V: as HF
        P.NoBadWordsLogitsProcessor([[V]])(ids, x)
    with pytest.raises(ValueError, match="vocabulary size"):
        P.SequenceBiasLogitsProcessor([[[1, V + 1], 1.0]])(ids, x)


def test_bad_words_eos_handling_as_transformers_5_23():
    # a one-token word equal to EOS is dropped; longer words holding EOS stay
    ours, hf = both("NoBadWordsLogitsProcessor", [[4], [1, 4]], eos_token_id=[4, 9])
    ids = torch.tensor([[0, 1], [1, 0]])
    x = torch.zeros((2, 10))
    got = ours(ids, x)
    assert_same(got, hf(ids, x.clone()))
    assert torch.isinf(got).tolist()[0][4] and not torch.isinf(got)[1].any()
    # nothing left after dropping EOS, or an empty word: HF 5.23 accepts both and bans nothing
    for args in (([[4]], 4), ([[]], None), ([[], [3]], None)):
        ours, hf = both("NoBadWordsLogitsProcessor", *args)
        assert_same(run(ours, ids, x), hf(ids, x.clone()), f"{args}")


# ------------------------------------------------------------------------------------------------
# a tiny random Llama: real logits and generate()


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(cfg).eval()
    prompts = torch.randint(3, 128, (4, 10), generator=torch.Generator().manual_seed(1))
    prompts[:, 5:8] = prompts[:, :3]  # a repeat, so penalties and n-grams bite at once
    return model, prompts


def test_processors_equal_hf_on_real_llama_logits(llama):
    model, prompts = llama
    with torch.no_grad():
        logits = model(prompts).logits  # (4, 10, 128)
    rows = logits.reshape(-1, 128)  # 40 rows; row r's history is its prompt up to that position
    hist = torch.cat([prompts.repeat_interleave(10, 0)[:, :8],
                      torch.randint(3, 128, (40, 4), generator=torch.Generator().manual_seed(2))], 1)
    pairs = [both(name, *args) for name in WARPERS for args in WARPERS[name]]
    pairs += [both("TemperatureLogitsWarper", t) for t in (0.5, 0.7, 1.7)]
    pairs += penalty_pairs(128, eos=2, B=40)
    for ours, hf in pairs:
        for scale in (1.0, 8.0):  # the model's own rows and sharper ones
            x = rows * scale
            assert_same(run(ours, hist, x), hf(hist, x.clone()), f"{type(ours).__name__} x{scale}")


def greedy_lists(prompt_len):
    return [
        [("RepetitionPenaltyLogitsProcessor", (1.5,))],
        [("NoRepeatNGramLogitsProcessor", (2,))],
        [("NoBadWordsLogitsProcessor", ([[5], [7, 8], [9, 10, 11]], 2))],
        [("MinNewTokensLengthLogitsProcessor", (prompt_len, 12, 2))],
        [("SequenceBiasLogitsProcessor", ([[[40], 3.0], [[12, 13], -2.0], [[50], -1.5]],))],
        [("RepetitionPenaltyLogitsProcessor", (1.3,)), ("NoRepeatNGramLogitsProcessor", (3,)),
         ("SuppressTokensLogitsProcessor", ([4, 6],)), ("MinLengthLogitsProcessor", (prompt_len + 5, 2))],
    ]


def build(spec, module):
    return LogitsProcessorList([getattr(module, name)(*args) for name, args in spec])


def test_generate_greedy_and_beam_search_equal_hf(llama):
    model, prompts = llama
    mask = torch.ones_like(prompts)
    for spec in greedy_lists(prompts.shape[1]):
        for beams in (1, 4):
            kw = dict(attention_mask=mask, max_new_tokens=16, do_sample=False, num_beams=beams,
                      pad_token_id=0)
            ours = model.generate(prompts, logits_processor=build(spec, P), **kw)
            hf = model.generate(prompts, logits_processor=build(spec, lp), **kw)
            assert torch.equal(ours, hf), f"{spec} beams={beams}"
            assert ours.shape[1] > prompts.shape[1] + 1


SAMPLING = [
    [("TemperatureLogitsWarper", (0.7,))],
    [("TopKLogitsWarper", (10,))],
    [("TopPLogitsWarper", (0.8,))],
    [("MinPLogitsWarper", (0.1,))],
    [("TypicalLogitsWarper", (0.8,))],
    [("EpsilonLogitsWarper", (0.01,))],
    [("EtaLogitsWarper", (0.01,))],
    [("RepetitionPenaltyLogitsProcessor", (1.2,)), ("TemperatureLogitsWarper", (0.8,)),
     ("TopKLogitsWarper", (40,)), ("TopPLogitsWarper", (0.9,)), ("MinPLogitsWarper", (0.02,))],
]


def test_generate_sampling_equals_hf_token_for_token(llama):
    """With identical processed scores HF's multinomial draws identical tokens from the same seed."""
    model, prompts = llama
    kw = dict(attention_mask=torch.ones_like(prompts), max_new_tokens=16, do_sample=True, top_k=0,
              pad_token_id=0)
    for i, spec in enumerate(SAMPLING):
        torch.manual_seed(100 + i)
        ours = model.generate(prompts, logits_processor=build(spec, P), **kw)
        torch.manual_seed(100 + i)
        hf = model.generate(prompts, logits_processor=build(spec, lp), **kw)
        assert torch.equal(ours, hf), spec
    # beam sampling goes through the same processors on log-probabilities
    torch.manual_seed(7)
    ours = model.generate(prompts, logits_processor=build(SAMPLING[-1], P), num_beams=4, **kw)
    torch.manual_seed(7)
    hf = model.generate(prompts, logits_processor=build(SAMPLING[-1], lp), num_beams=4, **kw)
    assert torch.equal(ours, hf)


def test_fused_sampler_processor_in_generate(llama):
    """One FastdecodeLogitsProcessor(Sampler) in place of HF's list: the same sampled tokens."""
    model, prompts = llama
    kw = dict(attention_mask=torch.ones_like(prompts), max_new_tokens=16, do_sample=True, top_k=0,
              pad_token_id=0)
    sampler = fd.Sampler(temperature=0.7, top_k=30, top_p=0.9, min_p=0.02, repetition_penalty=1.2,
                         no_repeat_ngram_size=3)
    spec = [("RepetitionPenaltyLogitsProcessor", (1.2,)), ("NoRepeatNGramLogitsProcessor", (3,)),
            ("TemperatureLogitsWarper", (0.7,)), ("TopKLogitsWarper", (30,)),
            ("TopPLogitsWarper", (0.9,)), ("MinPLogitsWarper", (0.02,))]
    torch.manual_seed(3)
    fused = LogitsProcessorList([P.FastdecodeLogitsProcessor(sampler)])
    ours = model.generate(prompts, logits_processor=fused, **kw)
    torch.manual_seed(3)
    hf = model.generate(prompts, logits_processor=build(spec, lp), **kw)
    assert torch.equal(ours, hf)
    # greedy: a temperature-0 sampler becomes a one-hot row, generate picks the same token
    greedy = P.FastdecodeLogitsProcessor(fd.Sampler(temperature=0.0, repetition_penalty=1.5))
    kw.update(do_sample=False)
    ours = model.generate(prompts, logits_processor=LogitsProcessorList([greedy]), **kw)
    hf = model.generate(prompts, **kw,
                        logits_processor=build([("RepetitionPenaltyLogitsProcessor", (1.5,))], lp))
    assert torch.equal(ours, hf)


def test_fused_processor_dtype_and_history():
    x = torch.randn(2, 50, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    proc = P.FastdecodeLogitsProcessor(fd.Sampler(temperature=0.5, top_k=5, repetition_penalty=1.4))
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    got = run(proc, ids, x)
    assert got.dtype == torch.bfloat16 and torch.isfinite(got).sum(-1).tolist() == [5, 5]
    exp = proc.sampler.final_logits(x, ids.numpy())
    assert torch.equal(got, torch.from_numpy(exp).to(torch.bfloat16))
    with pytest.raises(TypeError):
        P.FastdecodeLogitsProcessor(lp.TopKLogitsWarper(3))


# ------------------------------------------------------------------------------------------------
# from_generation_config


def hf_processors(model, fields, prompt_len):
    """The list HF's generate builds from these fields (defaults filled in as generate does)."""
    gc = GenerationConfig(**{**GenerationConfig._get_default_generation_params(), **fields})
    eos = fields.get("eos_token_id")
    gc._eos_token_tensor = None if eos is None else torch.tensor([eos] if isinstance(eos, int) else eos)
    return model._get_logits_processor(generation_config=gc, input_ids_seq_length=prompt_len, device="cpu")


CONFIGS = [
    dict(do_sample=True, temperature=0.7, top_k=20, top_p=0.9, min_p=0.02, repetition_penalty=1.2,
         no_repeat_ngram_size=3, bad_words_ids=[[5], [7, 8], [2]], suppress_tokens=[1, 9],
         eos_token_id=2),
    dict(do_sample=True, top_k=0, typical_p=0.9, epsilon_cutoff=3e-3, eta_cutoff=3e-3,
         sequence_bias=[[[9], 2.0], [[40], -1.5], [[3, 4], -float("inf")]]),
    dict(do_sample=True, temperature=1.3),  # top_k=50 by generate's default
    dict(do_sample=False, repetition_penalty=1.5, no_repeat_ngram_size=2, bad_words_ids=[[12, 13]]),
    dict(),  # greedy
]


@pytest.mark.parametrize("i", range(len(CONFIGS)))
def test_from_generation_config_matches_hf_distribution(llama, i):
    model, prompts = llama
    fields = CONFIGS[i]
    with torch.no_grad():
        logits = model(prompts).logits.reshape(-1, 128) * 3.0
    ids = torch.cat([prompts.repeat_interleave(10, 0), torch.randint(3, 30, (40, 6))], 1)
    hf = hf_processors(model, fields, prompts.shape[1])
    exp = hf(ids, logits.clone())
    for config in (GenerationConfig(**fields), fields):
        procs = P.from_generation_config(config, as_processors=True, input_ids_seq_length=10)
        assert [type(p).__name__ for p in procs] == [type(p).__name__ for p in hf]
        assert_same(LogitsProcessorList(procs)(ids, logits.clone()), exp, f"processors {fields}")
        sampler = P.from_generation_config(config)
        got = sampler.final_logits(logits, ids)
        if fields.get("do_sample"):
            np.testing.assert_allclose(torch.softmax(torch.from_numpy(got), -1),
                                       torch.softmax(exp, -1), rtol=0, atol=1e-6)
        else:  # greedy: the one-hot of HF's argmax
            assert torch.equal(torch.from_numpy(got).argmax(-1), exp.argmax(-1))
            assert (np.isfinite(got).sum(-1) == 1).all()


def test_from_generation_config_beam_sampling_keeps_eos_plus_one():
    procs = P.from_generation_config(dict(do_sample=True, num_beams=4, top_p=0.5, eos_token_id=[2, 3]),
                                     as_processors=True)
    assert [(type(p).__name__, p.min_tokens_to_keep) for p in procs] == [
        ("TopKLogitsWarper", 3), ("TopPLogitsWarper", 3)]


@pytest.mark.parametrize("fields, match", [
    (dict(guidance_scale=1.5), "guidance_scale"),
    (dict(forced_bos_token_id=0), "forced_bos_token_id"),
    (dict(forced_eos_token_id=2), "forced_eos_token_id"),
    (dict(top_h=0.5, do_sample=True), "top_h"),
    (dict(encoder_repetition_penalty=1.2), "encoder_repetition_penalty"),
    (dict(begin_suppress_tokens=[3]), "begin_suppress_tokens"),
    (dict(exponential_decay_length_penalty=(5, 1.1)), "exponential_decay_length_penalty"),
    (dict(remove_invalid_values=True), "remove_invalid_values"),
    (dict(penalty_alpha=0.6, top_k=4), "penalty_alpha"),
    (dict(num_beams=4), "num_beams"),
    (dict(min_new_tokens=5, eos_token_id=2), "min_new_tokens"),
    (dict(min_length=5, eos_token_id=2), "min_length"),
    (dict(sequence_bias=[[[3, 4], 1.0]]), "sequence_bias"),
    (dict(sequence_bias=[[[3], 1.0]], repetition_penalty=1.2), "sequence_bias"),
    (dict(top_kk=3), "top_kk"),
])
def test_from_generation_config_unsupported_fields_raise(fields, match):
    with pytest.raises(ValueError, match=match):
        P.from_generation_config(fields)


def test_from_generation_config_processors_only_fields():
    with pytest.raises(ValueError, match="renormalize_logits"):
        P.from_generation_config(dict(renormalize_logits=True), as_processors=True)
    with pytest.raises(ValueError, match="input_ids_seq_length"):
        P.from_generation_config(dict(min_new_tokens=3, eos_token_id=2), as_processors=True)
    procs = P.from_generation_config(dict(min_new_tokens=3, min_length=4, eos_token_id=2),
                                     as_processors=True, input_ids_seq_length=7)
    assert [type(p).__name__ for p in procs] == ["MinLengthLogitsProcessor",
                                                 "MinNewTokensLengthLogitsProcessor"]
    with pytest.raises(ValueError):  # HF's own validation: temperature 0 with sampling
        P.from_generation_config(dict(do_sample=True, temperature=0.0))
    with pytest.raises(TypeError):
        P.from_generation_config([("top_k", 3)])


# ------------------------------------------------------------------------------------------------
# bad input


BAD_ARGS = [
    ("TemperatureLogitsWarper", (0.0,)), ("TemperatureLogitsWarper", (-1.0,)),
    ("TemperatureLogitsWarper", (1,)),
    ("TopKLogitsWarper", (0,)), ("TopKLogitsWarper", (-3,)), ("TopKLogitsWarper", (2.5,)),
    ("TopPLogitsWarper", (1.5,)), ("TopPLogitsWarper", (-0.1,)), ("TopPLogitsWarper", (0.5, -1.0, 0)),
    ("TopPLogitsWarper", ("x",)),
    ("MinPLogitsWarper", (1.5,)), ("MinPLogitsWarper", (0.1, -1.0, 0)),
    ("TypicalLogitsWarper", (0.0,)), ("TypicalLogitsWarper", (1.0,)), ("TypicalLogitsWarper", (0.5, -1.0, 0)),
    ("EpsilonLogitsWarper", (0.0,)), ("EpsilonLogitsWarper", (1.0,)), ("EpsilonLogitsWarper", (0.1, -1.0, 0)),
    ("EtaLogitsWarper", (0.0,)), ("EtaLogitsWarper", (1.0,)), ("EtaLogitsWarper", (0.1, -1.0, 0)),
    ("RepetitionPenaltyLogitsProcessor", (0.0,)), ("RepetitionPenaltyLogitsProcessor", (2,)),
    ("RepetitionPenaltyLogitsProcessor", (1.2, -1)),
    ("RepetitionPenaltyLogitsProcessor", (1.2, torch.zeros((2, 2), dtype=torch.long))),
    ("NoRepeatNGramLogitsProcessor", (0,)), ("NoRepeatNGramLogitsProcessor", (2.0,)),
    ("SequenceBiasLogitsProcessor", ([],)), ("SequenceBiasLogitsProcessor", ([[[1], 1]],)),
    ("SequenceBiasLogitsProcessor", ({(1,): 1.0, 2: 1.0},)), ("SequenceBiasLogitsProcessor", ([[[-1], 1.0]],)),
    ("NoBadWordsLogitsProcessor", ([],)), ("NoBadWordsLogitsProcessor", ([1, 2],)),
    ("NoBadWordsLogitsProcessor", ([[1, -2]],)), ("NoBadWordsLogitsProcessor", ([[1], 2],)),
    ("MinLengthLogitsProcessor", (-1, 2)), ("MinNewTokensLengthLogitsProcessor", (3, -1, 2)),
    ("MinNewTokensLengthLogitsProcessor", (3.0, 2, 2)),
]


@pytest.mark.parametrize("name, args", BAD_ARGS)
def test_invalid_constructor_arguments_raise_as_hf(name, args):
    with pytest.raises(Exception) as hf_error:
        getattr(lp, name)(*args)
    with pytest.raises(type(hf_error.value)) as ours:
        getattr(P, name)(*args)
    assert str(ours.value) == str(hf_error.value)


def test_top_n_sigma_arguments():
    for n in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="`n`"):
            P.TopNSigmaLogitsWarper(n)
    with pytest.raises(ValueError, match="min_tokens_to_keep"):
        P.TopNSigmaLogitsWarper(1.0, min_tokens_to_keep=0)


def every_processor(allow_copy=False):
    kw = dict(allow_copy=allow_copy)
    return [P.TemperatureLogitsWarper(0.5, **kw), P.TopKLogitsWarper(3, **kw), P.TopPLogitsWarper(0.5, **kw),
            P.MinPLogitsWarper(0.1, **kw), P.TypicalLogitsWarper(0.5, **kw), P.EpsilonLogitsWarper(0.1, **kw),
            P.EtaLogitsWarper(0.1, **kw), P.TopNSigmaLogitsWarper(1.0, **kw),
            P.RepetitionPenaltyLogitsProcessor(1.2, **kw), P.NoRepeatNGramLogitsProcessor(2, **kw),
            P.SequenceBiasLogitsProcessor([[[1], 1.0]], **kw), P.NoBadWordsLogitsProcessor([[1]], **kw),
            P.MinLengthLogitsProcessor(5, 2, **kw), P.MinNewTokensLengthLogitsProcessor(1, 5, 2, **kw),
            P.SuppressTokensLogitsProcessor([1], **kw),
            P.FastdecodeLogitsProcessor(fd.Sampler(top_k=3), **kw)]


def test_tensors_off_the_cpu_raise_unless_allow_copy():
    """A meta tensor stands in for CUDA: anything whose device is not the CPU."""
    scores = torch.empty((2, 10), device="meta")
    ids = torch.zeros((2, 3), dtype=torch.long)
    for proc in every_processor():
        with pytest.raises(ValueError, match="allow_copy=True"):
            proc(ids, scores)
    for proc in every_processor(allow_copy=True):
        # with allow_copy the processor copies to the CPU, which a meta tensor cannot do
        with pytest.raises((NotImplementedError, RuntimeError)):
            proc(ids, scores)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available (the meta-device "
                    "test covers the device check)")
def test_cuda_round_trip_with_allow_copy():  # pragma: no cover - needs a GPU
    scores = torch.randn(4, 1000, device="cuda")
    ids = torch.randint(0, 1000, (4, 12), device="cuda")
    for proc in every_processor(allow_copy=True):
        got = proc(ids, scores)
        assert got.device == scores.device
        assert torch.equal(got.cpu(), proc(ids.cpu(), scores.cpu()))
    for proc in every_processor():
        with pytest.raises(ValueError, match="allow_copy"):
            proc(ids, scores)


def test_processor_list_protocol_and_shapes():
    x = torch.randn(3, 40, generator=torch.Generator().manual_seed(9))
    ids = torch.randint(0, 40, (3, 6), generator=torch.Generator().manual_seed(10))
    procs = every_processor()
    for p in procs:
        assert isinstance(p, lp.LogitsProcessor)
        out = run(p, ids, x)
        assert out.shape == x.shape and out.dtype == x.dtype
        with pytest.raises(ValueError, match="2-D"):
            p(ids, x[None])
        with pytest.raises(TypeError, match="floating"):
            p(ids, torch.zeros((3, 40), dtype=torch.long))
    chained = LogitsProcessorList(procs)(ids, x.clone())
    assert chained.shape == x.shape
    assert set(P.__all__) <= set(dir(P)) and "from_generation_config" in P.__all__
    import fastdecode.hf as hf_pkg
    assert set(P.__all__) <= set(hf_pkg.__all__)


def test_sequence_bias_rejects_what_fastdecode_cannot_add():
    x = torch.zeros((1, 8))
    with pytest.raises(ValueError, match="sequence_bias"):
        P.SequenceBiasLogitsProcessor([[[3], float("inf")]])(torch.tensor([[1]]), x)


def test_top_p_one_and_min_p_zero_keep_hf_behaviour():
    # HF removes tokens whose float32 probability underflows to 0 at top_p = 1.0
    x = torch.tensor([[0.0, -200.0, 1.0, -float("inf"), -1e4]])
    for fv in (-float("inf"), -50.0):
        ours, hf = both("TopPLogitsWarper", 1.0, fv)
        got = ours(None, x)
        assert_same(got, hf(None, x.clone()))
        assert got[0, 1] == fv
        ours, hf = both("MinPLogitsWarper", 0.0, fv)
        assert_same(ours(None, x), hf(None, x.clone()))  # nothing written, -inf included
    assert math.isinf(P.MinPLogitsWarper(0.0, -50.0)(None, x)[0, 3])
