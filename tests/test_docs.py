"""Documentation checks (GitHub issue 8): numpydoc sections on every public name, runnable
docstring examples, type stubs that match the C module, and ``help(fastdecode.sample)``.

The numpydoc parser here is deliberately small: a section is a title line underlined with dashes,
and a parameter entry is a line at the section's base indent of the form ``name : type`` (or
``a, b : type``, or a bare ``name``). That is the subset the package's docstrings use.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import dataclasses
import doctest
import importlib
import inspect
import pathlib
import pydoc
import re
import sys
import textwrap

import numpy as np
import pytest

import fastdecode
import fastdecode.models
import fastdecode.session
from fastdecode import _kernels

ROOT = pathlib.Path(fastdecode.__file__).resolve().parent

if sys.flags.optimize >= 2:
    pytest.skip("python -OO strips the docstrings these tests read", allow_module_level=True)

# ------------------------------------------------------------------------------------------
# collecting the public names


def _own(obj) -> bool:
    """Defined by fastdecode itself (not inherited from object, tuple, typing, ...)."""
    mod = getattr(obj, "__module__", None) or ""
    return mod.split(".")[0] == "fastdecode"


def _public_members(cls):
    """(qualified name, object, kind) for the methods and properties users call on ``cls``,
    including those inherited from fastdecode's own (private) base classes."""
    out = []
    seen = set()
    attrs = []
    for klass in cls.__mro__:
        if klass is object or not _own(klass):
            continue
        for name, attr in vars(klass).items():
            if name not in seen:
                seen.add(name)
                attrs.append((name, attr))
    for name, attr in attrs:
        if name.startswith("_") and name not in ("__call__", "__iter__", "__next__"):
            continue
        if isinstance(attr, property):
            out.append((f"{cls.__name__}.{name}", attr, "property"))
        elif isinstance(attr, (staticmethod, classmethod)):
            out.append((f"{cls.__name__}.{name}", attr.__func__, "method"))
        elif inspect.isfunction(attr):
            out.append((f"{cls.__name__}.{name}", attr, "method"))
    return out


def _public(module, names):
    items = []
    for name in names:
        obj = getattr(module, name)
        if inspect.isclass(obj):
            items.append((name, obj, "class"))
            items.extend(_public_members(obj))
        elif callable(obj):
            items.append((name, obj, "function"))
    return items


def _module_extras():
    """Public names of the submodules (their ``__all__``) that the package does not re-export."""
    items = []
    for modname in ("ops", "processors", "generate", "beam", "speculative", "contrastive", "adaptive"):
        mod = importlib.import_module(f"fastdecode.{modname}")
        items += _public(mod, [n for n in mod.__all__ if n not in fastdecode.__all__])
    return items


CORE = (_public(fastdecode, fastdecode.__all__)
        + _module_extras()
        + _public(fastdecode.models, fastdecode.models.__all__)
        + _public(fastdecode.session, fastdecode.session.__all__))


def _hf_items():
    try:
        import fastdecode.hf as hf
    except ImportError:  # torch/transformers missing
        return []
    return _public(hf, getattr(hf, "__all__", ()))


# ------------------------------------------------------------------------------------------
# a small numpydoc parser

_SECTION = re.compile(r"^(\s*)([A-Z][A-Za-z ]+)\n\1-{3,}\s*$", re.M)


def sections(doc: str) -> dict[str, str]:
    """Section title -> body text (dedented) of a numpydoc docstring."""
    doc = inspect.cleandoc(doc)
    found = list(_SECTION.finditer(doc))
    out = {}
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(doc)
        out[m.group(2).strip()] = doc[m.end():end]
    return out


def documented_names(body: str) -> set[str]:
    """Parameter (or attribute) names declared in a Parameters-like section body."""
    lines = [ln for ln in body.splitlines() if ln.strip()]
    if not lines:
        return set()
    base = min(len(ln) - len(ln.lstrip()) for ln in lines)
    names = set()
    for ln in lines:
        if len(ln) - len(ln.lstrip()) != base:
            continue
        head = ln.strip().split(" : ", 1)[0].rstrip(":")
        for part in head.split(","):
            part = part.strip()
            if re.fullmatch(r"\*{0,2}[A-Za-z_][A-Za-z0-9_]*", part):
                names.add(part.lstrip("*"))
    return names


def _signature_params(fn, skip_first: bool) -> list[str]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    params = list(sig.parameters.values())
    if skip_first and params:
        params = params[1:]
    return [p.name for p in params]


def _returns_none(fn) -> bool:
    ann = inspect.signature(fn).return_annotation
    if ann in (None, "None"):
        return True
    if ann is inspect.Signature.empty:
        # no annotation: returns None when no ``return <value>`` appears in its own body
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        except (OSError, TypeError, SyntaxError):
            return False
        for node in ast.walk(tree.body[0]):
            if isinstance(node, ast.Return) and node.value is not None:
                return False
            if isinstance(node, (ast.Yield, ast.YieldFrom)):
                return False
        return True
    return False


def problems(qualname: str, obj, kind: str) -> list[str]:
    """What the docstring of ``obj`` lacks, as readable messages (empty when complete)."""
    doc = obj.__doc__ if kind != "property" else obj.fget.__doc__
    if not doc or not doc.strip():
        return [f"{qualname}: no docstring"]
    errs = []
    summary = inspect.cleandoc(doc).splitlines()[0].strip()
    if not summary:
        errs.append(f"{qualname}: empty one-line summary")
    if kind == "property":
        return errs
    secs = sections(doc)
    if kind == "class":
        if dataclasses.is_dataclass(obj):
            fields = {f.name for f in dataclasses.fields(obj)}
            have = documented_names(secs.get("Attributes", ""))
            missing = sorted(fields - have)
            if missing:
                errs.append(f"{qualname}: Attributes lacks {missing}")
        init = vars(obj).get("__init__")
        if getattr(obj, "_is_protocol", False):  # typing.Protocol's generic __init__
            init = None
        if init is not None and inspect.isfunction(init) and not dataclasses.is_dataclass(obj):
            params = _signature_params(init, skip_first=True)
            if params:
                have = documented_names(secs.get("Parameters", ""))
                missing = [p for p in params if p not in have]
                if missing:
                    errs.append(f"{qualname}: Parameters (constructor) lacks {missing}")
        if qualname.count(".") == 0 and "Examples" not in secs:
            errs.append(f"{qualname}: no Examples")
        return errs
    skip_first = kind == "method" and not isinstance(
        inspect.getattr_static(_owner(qualname), qualname.split(".")[-1], None), staticmethod)
    params = _signature_params(obj, skip_first=skip_first)
    if params:
        if "Parameters" not in secs:
            errs.append(f"{qualname}: no Parameters section")
        else:
            have = documented_names(secs["Parameters"])
            missing = [p for p in params if p not in have]
            if missing:
                errs.append(f"{qualname}: Parameters lacks {missing}")
    if inspect.isgeneratorfunction(obj):
        if "Yields" not in secs:
            errs.append(f"{qualname}: no Yields section")
    elif not _returns_none(obj) and "Returns" not in secs:
        errs.append(f"{qualname}: no Returns section")
    if "Raises" in secs:
        scope = vars(inspect.getmodule(obj) or builtins)
        for exc in documented_names(secs["Raises"]):
            cls = getattr(builtins, exc, None) or scope.get(exc)
            if not (isinstance(cls, type) and issubclass(cls, BaseException)):
                errs.append(f"{qualname}: Raises names {exc!r}, not an exception class")
    if kind == "function":
        if params and "Raises" not in secs:
            errs.append(f"{qualname}: no Raises section")
        if "Examples" not in secs:
            errs.append(f"{qualname}: no Examples")
    return errs


_OWNERS: dict[str, type] = {}


def _owner(qualname: str):
    return _OWNERS[qualname.split(".")[0]]


HF = _hf_items()
HF_SKIP = "fastdecode.hf needs torch and transformers, which are not importable here"

for _name, _obj, _kind in CORE + HF:
    if _kind == "class":
        _OWNERS[_name] = _obj


def test_constants_are_documented():
    """Public names without a docstring of their own (ints, tuples) are described in the
    package docstring's Constants section."""
    consts = [n for n in fastdecode.__all__ if not callable(getattr(fastdecode, n))]
    assert consts
    have = documented_names(sections(fastdecode.__doc__).get("Constants", ""))
    assert set(consts) <= have, sorted(set(consts) - have)


def test_the_checker_finds_gaps():
    """The parser and the checker flag what is missing (so the test above can fail)."""
    def f(a, b, *, c=1, **kw):
        """Summary.

        Parameters
        ----------
        a, b : int
            Two of them.
        kw
            Extra.

        Raises
        ------
        Nonsense
            Not an exception.
        """
        return a

    assert documented_names(sections(f.__doc__)["Parameters"]) == {"a", "b", "kw"}
    errs = problems("f", f, "function")
    assert errs == ["f: Parameters lacks ['c']", "f: no Returns section",
                    "f: Raises names 'Nonsense', not an exception class", "f: no Examples"]

    def g():
        pass

    assert problems("g", g, "function") == ["g: no docstring"]


@pytest.mark.parametrize("qualname,obj,kind", CORE + HF, ids=[q for q, _, _ in CORE + HF])
def test_numpydoc_sections(qualname, obj, kind):
    errs = problems(qualname, obj, kind)
    assert not errs, "\n".join(errs)


def test_hf_names_are_checked():
    """fastdecode.hf takes part in the checks above whenever it can be imported."""
    if not HF:
        print(HF_SKIP)
        pytest.skip(HF_SKIP)
    import fastdecode.hf as hf

    assert {q for q, _, k in HF if k in ("class", "function")} == set(hf.__all__) - {"SMOLLM2_FILE"}


# ------------------------------------------------------------------------------------------
# (b) the docstring examples run

DOCTEST_MODULES = ["__init__", "ops", "processors", "generate", "beam", "speculative", "contrastive",
                   "adaptive", "models", "session", "_array"]
# run only where torch and transformers import; hf.model's load_smollm2 example loads SmolLM2
HF_DOCTEST_MODULES = ["hf", "hf.processors", "hf.model", "hf.generation"]


def _doctests(modname):
    if modname.startswith("hf") and not HF:
        return []
    if modname == "__init__":  # the package docstring only (its names are found in their modules)
        finder = doctest.DocTestFinder(recurse=False)
        return [t for t in finder.find(fastdecode, "fastdecode") if t.examples]
    mod = importlib.import_module(f"fastdecode.{modname}")
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(mod, f"fastdecode.{modname}") if t.examples]


@contextlib.contextmanager
def _torch_print_defaults():
    """torch's default print options (precision 4) for the examples, restored afterwards."""
    if "torch" not in sys.modules:
        yield
        return
    import torch

    opts = torch._tensor_str.PRINT_OPTS
    saved = {k: getattr(opts, k) for k in ("precision", "threshold", "edgeitems", "linewidth", "sci_mode")}
    torch.set_printoptions(profile="default")
    try:
        yield
    finally:
        torch.set_printoptions(**saved)


@pytest.mark.parametrize("modname", DOCTEST_MODULES + HF_DOCTEST_MODULES)
def test_docstring_examples(modname):
    if modname.startswith("hf") and not HF:
        print(HF_SKIP)
        pytest.skip(HF_SKIP)
    tests = _doctests(modname)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    with np.printoptions(precision=4, suppress=True, legacy=False), _torch_print_defaults():
        for t in tests:
            runner.run(t)
    res = runner.summarize(verbose=False)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples failed in fastdecode.{modname}"


def test_examples_exist():
    """Every public function and class (fastdecode.hf's included) has examples that the doctest
    run above executes."""
    names = {t.name.split(".")[-1] for m in DOCTEST_MODULES + HF_DOCTEST_MODULES for t in _doctests(m)}
    missing = [q for q, _, k in CORE + HF if k in ("function", "class") and q not in names]
    assert not missing, f"no runnable examples: {missing}"


def test_help_shows_the_processor_call():
    """help() on each drop-in processor shows the shared ``__call__`` with its sections."""
    if not HF:
        print(HF_SKIP)
        pytest.skip(HF_SKIP)
    import fastdecode.hf as hf

    classes = [o for q, o, k in HF if k == "class" and issubclass(o, hf.processors._KernelProcessor)]
    assert len(classes) == 21
    for cls in classes:
        text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
        call = text[text.index("__call__(self, input_ids"):]
        for line in ("Process one step's scores", "Parameters", "Returns", "Raises", "allow_copy"):
            assert line in call, (cls.__name__, line)


# ------------------------------------------------------------------------------------------
# (c) the type stubs of the C module

STUB = ROOT / "_kernels.pyi"
CSRC = ROOT.parent.parent / "csrc" / "_kernels.c"


def _stub_tree():
    return ast.parse(STUB.read_text(), str(STUB))


def _stub_functions():
    return {n.name: n for n in _stub_tree().body if isinstance(n, ast.FunctionDef)}


def _stub_constants():
    out = {}
    for n in _stub_tree().body:
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            out[n.target.id] = ast.unparse(n.annotation)
    return out


def test_stub_names_match_the_module():
    entry = {n for n in dir(_kernels) if not n.startswith("__")}
    functions = {n for n in entry if callable(getattr(_kernels, n))}
    constants = entry - functions
    assert set(_stub_functions()) == functions
    # the stub's private type aliases (_F64, _Rows, ...) are not module attributes
    stub_consts = {k: v for k, v in _stub_constants().items() if not k.startswith("_")}
    assert set(stub_consts) == constants
    for name in constants:
        value = getattr(_kernels, name)
        assert type(value).__name__ == stub_consts[name], (name, type(value), stub_consts[name])


def test_stub_signatures_are_positional_only():
    for name, fn in _stub_functions().items():
        a = fn.args
        assert not a.args and not a.kwonlyargs and a.vararg is None and a.kwarg is None, (
            f"{name}: the C entry points are METH_FASTCALL, positional only")
        assert a.posonlyargs, f"{name}: no parameters in the stub"
        missing = [p.arg for p in a.posonlyargs if p.annotation is None]
        assert not missing and fn.returns is not None, f"{name}: unannotated {missing or 'return'}"


def test_stub_arities_match_the_binding():
    """Each stub has as many parameters as the binding's ``check_nargs(name, nargs, N)``."""
    if not CSRC.exists():
        pytest.skip(f"the C source {CSRC} is not here (an installed package): nothing to compare")
    expected = {m.group(1): int(m.group(2)) for m in
                re.finditer(r'check_nargs\("(\w+)", nargs, (\d+)\)', CSRC.read_text())}
    assert expected, "no check_nargs calls found in the binding"
    table = set(re.findall(r'\{"(\w+)", \(PyCFunction\)', CSRC.read_text()))
    stubs = _stub_functions()
    assert set(stubs) == table, "the stub and the PyMethodDef table list different functions"
    for name, fn in stubs.items():
        assert name in expected, f"{name}: no check_nargs in the binding"
        assert len(fn.args.posonlyargs) == expected[name], (
            f"{name}: stub has {len(fn.args.posonlyargs)} parameters, the binding takes "
            f"{expected[name]}")


def test_py_typed_is_shipped():
    assert (ROOT / "py.typed").exists()
    pyproject = ROOT.parent.parent / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("pyproject.toml is not here (an installed package)")
    text = pyproject.read_text()
    m = re.search(r"\[tool\.setuptools\.package-data\]\s*\nfastdecode\s*=\s*\[([^\]]*)\]", text)
    assert m, "no package-data for fastdecode in pyproject.toml"
    assert '"py.typed"' in m.group(1) and '"*.pyi"' in m.group(1)


# ------------------------------------------------------------------------------------------
# (d) help(fastdecode.sample) states the semantics


def test_help_sample_states_the_semantics():
    text = pydoc.render_doc(fastdecode.sample, renderer=pydoc.plaintext)
    flat = " ".join(text.split())
    # the chain, in both orders
    assert ("temperature -> top-n-sigma -> top-k -> top-p -> min-p -> typical -> epsilon -> eta "
            "-> pick") in flat
    assert ("top-n-sigma -> top-k -> typical -> top-p -> min-p -> epsilon -> eta -> temperature "
            "-> pick") in flat
    # the seed rule
    assert "keyed by (seed, position)" in flat
    assert "not on the batch it shares, the row order or the thread count" in flat
    # greedy at temperature 0, and the tie rules it refers to
    assert "``temperature == 0`` is greedy: the first maximum" in flat
    assert "every token tied with the k-th is kept by top-k" in flat
    assert "the token that crosses ``top_p`` is kept" in flat
    for section in ("Parameters", "Returns", "Raises", "Notes", "Examples"):
        assert f"{section}\n" in text
