"""The processors fastdecode.hf adds for samplers HF lacks (XTC, DRY, adaptive and dynamic
temperature, mirostat) against fastdecode's functional kernels, inside ``model.generate``, and
against ``fastdecode.generate`` token for token; and the HF drop-ins on real SmolLM2 logits and in
SmolLM2's own ``generate`` (marker ``smollm2``)."""

import os
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the HF processors need torch (test extra)")
transformers = pytest.importorskip("transformers", reason="the HF processors need transformers")

from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList  # noqa: E402
from transformers.generation import logits_process as lp  # noqa: E402

import fastdecode as fd  # noqa: E402
from fastdecode.hf import model as hm  # noqa: E402
from fastdecode.hf import processors as P  # noqa: E402

from test_hf_processors import WARPERS, assert_filter_same, assert_same, both, penalty_pairs, run  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      initializer_range=0.05, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(cfg).eval()
    prompts = torch.randint(3, 96, (3, 7), generator=torch.Generator().manual_seed(1))
    return model, prompts


def hf_generate(model, ids, processors, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            return model.generate(ids, attention_mask=torch.ones_like(ids),
                                  logits_processor=LogitsProcessorList(processors), pad_token_id=0, **kw)


def rows(B=5, V=300, seed=0, scale=3.0):
    return torch.randn(B, V, generator=torch.Generator().manual_seed(seed)) * scale


# ------------------------------------------------------------------------------------------------
# XTC


def test_xtc_with_a_seed_is_the_kernel_at_the_history_length():
    x = rows(B=16)
    ids = torch.randint(0, 300, (16, 11), generator=torch.Generator().manual_seed(1))
    proc = P.XTCLogitsWarper(0.05, 0.5, seed=123)
    got = run(proc, ids, x)
    exp = fd.xtc(x.numpy(), 0.5, 0.05, seed=123, position=11)
    assert torch.equal(got, torch.from_numpy(exp))
    # a scalar seed: every row flips the same coin at a position (fastdecode's rule: a row's draws
    # depend on its seed and position only); over positions it falls both ways
    fired = [bool((run(proc, ids[:, :n], x) == -float("inf")).any()) for n in range(1, 12)]
    assert any(fired) and not all(fired)
    # a seed per row: one coin each
    seeds = np.arange(16) + 1000
    got = run(P.XTCLogitsWarper(0.05, 0.5, seed=seeds), ids, x)
    assert torch.equal(got, torch.from_numpy(fd.xtc(x.numpy(), 0.5, 0.05, seed=seeds, position=11)))
    fired = (got == -float("inf")).any(1)
    assert fired.any() and not fired.all()


def test_xtc_without_a_seed_follows_torch_manual_seed():
    x = rows(B=64, scale=2.0)
    ids = torch.zeros(64, 4, dtype=torch.long)
    proc = P.XTCLogitsWarper(0.02, 0.5, min_tokens_to_keep=2, filter_value=-50.0)
    torch.manual_seed(7)
    a = run(proc, ids, x)
    torch.manual_seed(7)
    u = torch.rand(64, dtype=torch.float64).numpy()
    exp = fd.xtc(x.numpy(), 0.5, 0.02, uniforms=u, min_tokens_to_keep=2, filter_value=-50.0)
    assert torch.equal(a, torch.from_numpy(exp))
    fired = ((a == -50.0).sum(1) > 0).float().mean().item()
    assert 0.25 < fired < 0.75  # 64 fair coins (rows with one top choice never fire: none here)
    g = torch.Generator().manual_seed(7)
    b = run(P.XTCLogitsWarper(0.02, 0.5, min_tokens_to_keep=2, filter_value=-50.0, generator=g), ids, x)
    assert torch.equal(a, b)


@pytest.mark.parametrize("args, match", [
    ((1.5, 0.5), "threshold"), ((0.1, -0.1), "probability"), ((0.1, 0.5, -3), "seed"),
    ((0.1, 0.5, None, -float("inf"), 0), "min_tokens_to_keep"),
])
def test_xtc_arguments(args, match):
    with pytest.raises((ValueError, TypeError), match=match):
        P.XTCLogitsWarper(*args)


# ------------------------------------------------------------------------------------------------
# DRY


def test_dry_is_the_kernel_on_random_histories():
    gen = torch.Generator().manual_seed(3)
    for V, T in ((8, 30), (300, 60)):
        x = rows(B=4, V=V, seed=V)
        ids = torch.randint(0, min(V, 5), (4, T), generator=gen)
        for kw in (dict(multiplier=0.8), dict(multiplier=1.5, base=2.0, allowed_length=1),
                   dict(multiplier=0.8, penalty_last_n=12, sequence_breakers=[[3], [1, 2]])):
            got = run(P.DRYLogitsProcessor(**kw), ids, x)
            k = dict(kw)
            exp = fd.dry(x.numpy(), ids.numpy(), k.pop("multiplier"), k.pop("base", 1.75),
                         k.pop("allowed_length", 2), k.pop("penalty_last_n", -1), k.pop("sequence_breakers", ()))
            assert torch.equal(got, torch.from_numpy(exp)), (V, kw)
            assert (got < x).any() or "sequence_breakers" in kw


def test_dry_hand_checked_and_ids_beyond_the_vocabulary():
    x = torch.zeros(1, 100)
    proc = P.DRYLogitsProcessor(1.0, base=2.0, allowed_length=2)
    # "5 7 9 | 4 5 7 9": the next token 4 would extend the repeat "4 5 7 9"... no: the suffix
    # "5 7 9" (length 3) was followed by 4, so 4 loses 1 * 2 ** (3 - 2) = 2
    got = proc(torch.tensor([[5, 7, 9, 4, 5, 7, 9]]), x)
    exp = torch.zeros(1, 100)
    exp[0, 4] = -2.0
    assert torch.equal(got, exp)
    # the token that followed the earlier "5 7 9" is beyond the LM head: nothing in it is penalised
    assert torch.equal(proc(torch.tensor([[5, 7, 9, 140, 5, 7, 9]]), x), x)
    # a breaker inside the repeated stretch caps it: "9" breaks, so only "..." after it counts
    assert torch.equal(P.DRYLogitsProcessor(1.0, 2.0, 2, sequence_breakers=[[9]])(
        torch.tensor([[5, 7, 9, 4, 5, 7, 9]]), x), x)
    # an out-of-vocabulary breaker id maps like the history's
    assert torch.equal(P.DRYLogitsProcessor(1.0, 2.0, 2, sequence_breakers=[140])(
        torch.tensor([[5, 140, 9, 4, 5, 140, 9]]), x), x)
    got = P.DRYLogitsProcessor(1.0, 2.0, 2, sequence_breakers=[141])(torch.tensor([[5, 140, 9, 4, 5, 140, 9]]), x)
    assert got[0, 4].item() == -2.0 and int((got != 0).sum()) == 1


@pytest.mark.parametrize("args, match", [
    ((-1.0,), "multiplier"), ((1.0, 0.5), "base"), ((1.0, 1.75, -1), "allowed_length"),
    ((1.0, 1.75, 2, -2), "penalty_last_n"), ((1.0, 1.75, 2, -1, [[]]), "sequence_breakers"),
    ((1.0, 1.75, 2, -1, [[-3]]), "sequence_breakers"),
])
def test_dry_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        P.DRYLogitsProcessor(*args)


# ------------------------------------------------------------------------------------------------
# temperatures


def test_adaptive_and_dynamic_temperature_are_the_kernels():
    for dtype in (torch.float32, torch.float64):
        x = rows(B=6, V=500, seed=4).to(dtype)
        ids = torch.zeros(6, 2, dtype=torch.long)
        assert torch.equal(run(P.AdaptiveTemperatureLogitsWarper(), ids, x),
                           torch.from_numpy(fd.adaptive_temperature(x.numpy())))
        for T, d, e in ((1.0, 0.5, 1.0), (0.8, 0.8, 2.0), (1.3, 0.0, 1.0)):
            got = run(P.DynamicTemperatureLogitsWarper(T, d, e), ids, x)
            assert torch.equal(got, torch.from_numpy(fd.dynamic_temperature(x.numpy(), T, d, e)))
    x = rows(B=2, V=50)
    assert torch.equal(P.DynamicTemperatureLogitsWarper(1.3, 0.0)(None, x),
                       lp.TemperatureLogitsWarper(1.3)(None, x))
    for args, match in (((-1.0, 0.5), "temperature"), ((1.0, float("nan")), "delta"),
                        ((1.0, 0.5, -2.0), "exponent")):
        with pytest.raises(ValueError, match=match):
            P.DynamicTemperatureLogitsWarper(*args)


# ------------------------------------------------------------------------------------------------
# mirostat


@pytest.mark.parametrize("version", [1, 2])
def test_mirostat_in_hf_generate_equals_fastdecode_generate(llama, version):
    """A seeded mirostat processor in model.generate picks what fd.generate with fd.Mirostat picks
    through HFModel, token for token, and its final mu equals the loop's."""
    model, prompts = llama
    proc = P.MirostatLogitsProcessor(tau=3.0, eta=0.2, version=version, temperature=1.3, seed=11)
    out = hf_generate(model, prompts, [proc], max_new_tokens=14, do_sample=False, eos_token_id=2)
    r = fd.generate(hm.HFModel(model), prompts.numpy(), max_new_tokens=14, eos_token_id=2, pad_token_id=0,
                    sampler=fd.Mirostat(tau=3.0, eta=0.2, version=version, temperature=1.3, seed=11))
    assert out.numpy().tolist() == r.sequences.tolist()
    # HF keeps calling processors for finished rows; a row that ran to the end has the loop's mu
    full = [b for b in range(3) if r.finish_reasons[b] == "length"]
    assert full
    np.testing.assert_array_equal(proc.mu[full], r.sampler_trace["final_mu"][full])
    assert len({tuple(s) for s in out[:, 7:].tolist()}) == 3  # the rows did sample
    # the same processor object in a second generate starts over
    again = hf_generate(model, prompts, [proc], max_new_tokens=14, do_sample=True, top_k=0)
    assert torch.equal(again, out)


def test_mirostat_state_and_unseeded_draws(llama):
    model, prompts = llama
    proc = P.MirostatLogitsProcessor(tau=2.0)
    assert proc.mu is None
    torch.manual_seed(3)
    a = hf_generate(model, prompts, [proc], max_new_tokens=10, do_sample=False)
    mu = proc.mu.copy()
    assert mu.shape == (3,) and not np.all(mu == 4.0)
    torch.manual_seed(3)
    b = hf_generate(model, prompts, [proc], max_new_tokens=10, do_sample=False)
    assert torch.equal(a, b)
    np.testing.assert_array_equal(proc.mu, mu)
    proc.reset()
    assert proc.mu is None
    x = rows(B=3, V=96)
    out = proc(prompts, x)
    kept = torch.isfinite(out)
    assert kept.sum(1).tolist() == [1, 1, 1] and torch.equal(out[kept], x[kept])
    for kw, match in ((dict(tau=0.0), "tau"), (dict(version=3), "version"), (dict(eta=-1.0), "eta")):
        with pytest.raises(ValueError, match=match):
            P.MirostatLogitsProcessor(**kw)


def test_new_processors_reject_tensors_off_the_cpu_without_allow_copy():
    meta = torch.zeros(2, 10, device="meta")
    for proc in (P.XTCLogitsWarper(0.1, 0.5), P.DRYLogitsProcessor(1.0), P.AdaptiveTemperatureLogitsWarper(),
                 P.DynamicTemperatureLogitsWarper(1.0, 0.5), P.MirostatLogitsProcessor()):
        with pytest.raises(ValueError, match="allow_copy=True"):
            proc(torch.zeros(2, 3, dtype=torch.long), meta)


def test_sampling_generate_with_the_new_processors_is_reproducible(llama):
    model, prompts = llama
    procs = [P.DRYLogitsProcessor(0.8, sequence_breakers=[[5]]), P.DynamicTemperatureLogitsWarper(1.0, 0.5),
             P.XTCLogitsWarper(0.1, 0.5, seed=4)]
    runs = []
    for _ in range(2):
        torch.manual_seed(9)
        runs.append(hf_generate(model, prompts, procs, max_new_tokens=12, do_sample=True, top_k=0))
    assert torch.equal(*runs)


# ------------------------------------------------------------------------------------------------
# SmolLM2-135M-Instruct: the drop-ins on real logits and inside its generate


@pytest.fixture(scope="module")
def smollm2():
    try:
        model, tok = hm.load_smollm2()
    except ImportError as e:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"the SmolLM2 tests must run in CI: {e}")
        pytest.skip(f"SmolLM2 is not installed: {e}")
    texts = ["The quick brown fox jumps over the lazy dog. The quick brown fox",
             "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
             "Paris is the capital of France. Berlin is the capital of"]
    ids = [tok(t, add_special_tokens=False).input_ids for t in texts]
    return model, tok, ids


@pytest.mark.smollm2
def test_smollm2_drop_ins_equal_hf_on_real_logits(smollm2):
    model, tok, ids = smollm2
    n = min(map(len, ids))
    x_ids = torch.tensor([p[:n] for p in ids])
    with torch.no_grad():
        logits = model(x_ids).logits.float()  # (3, n, 49152)
    V = logits.shape[-1]
    flat = logits[:, 4:].reshape(-1, V)  # every position's next-token row
    hist = x_ids.repeat_interleave(n - 4, 0)
    compared = 0
    for name, settings in WARPERS.items():
        for args in settings:
            ours, hf = both(name, *args)
            for T in (1.0, 0.6):
                x = flat / T
                assert_filter_same(name, args, x, run(ours, hist, x), hf(hist, x.clone()), f"{name}{args}")
                compared += 1
    for t in (0.5, 0.7, 1.5):
        ours, hf = both("TemperatureLogitsWarper", t)
        assert_same(run(ours, hist, flat), hf(hist, flat.clone()), f"temperature {t}")
    for ours, hf in penalty_pairs(V, eos=2, B=flat.shape[0] - flat.shape[0] % 4)[:4]:
        m = flat.shape[0] - flat.shape[0] % 4
        assert_same(run(ours, hist[:m], flat[:m]), hf(hist[:m], flat[:m].clone()), type(ours).__name__)
    assert compared == 2 * sum(map(len, WARPERS.values()))


GENERATE_LISTS = [
    [("RepetitionPenaltyLogitsProcessor", (1.3,)), ("NoRepeatNGramLogitsProcessor", (3,))],
    [("SequenceBiasLogitsProcessor", ([[[13], -4.0], [[28, 260], 3.0]],)), ("SuppressTokensLogitsProcessor", ([30],)),
     ("MinNewTokensLengthLogitsProcessor", (0, 8, 2))],
    [("NoBadWordsLogitsProcessor", ([[253], [1014, 28]], 2)), ("TopKLogitsWarper", (20,)),
     ("TopPLogitsWarper", (0.9,)), ("MinPLogitsWarper", (0.05,))],
]


@pytest.mark.smollm2
@pytest.mark.parametrize("spec", range(len(GENERATE_LISTS)))
def test_smollm2_generate_with_drop_ins_equals_hf(smollm2, spec):
    """model.generate with fastdecode's processors == with HF's, greedy and 4 beams, token for token;
    the third list also sampling from the same torch seed."""
    model, tok, ids = smollm2
    x = torch.tensor([ids[spec]])
    lst = GENERATE_LISTS[spec]
    for kw in (dict(do_sample=False), dict(do_sample=False, num_beams=4)) + (
            (dict(do_sample=True, top_k=0),) if spec == 2 else ()):
        outs = []
        for module in (P, lp):
            torch.manual_seed(5)
            outs.append(hf_generate(model, x, [getattr(module, n)(*a) for n, a in lst],
                                    max_new_tokens=12, eos_token_id=2, **kw))
        assert torch.equal(*outs), (lst, kw, tok.decode(outs[0][0, x.shape[1]:]), tok.decode(outs[1][0, x.shape[1]:]))
        assert outs[0].shape[1] > x.shape[1] + 4
