"""Documentation checks (GitHub issue 8): numpydoc sections on every public name, runnable
docstring examples, type stubs that match the C module, and ``help(fastdecode.sample)``.

The numpydoc parser here is deliberately small: a section is a title line underlined with dashes,
and a parameter entry is a line at the section's base indent of the form ``name : type`` (or
``a, b : type``, or a bare ``name``). That is the subset the package's docstrings use.
"""

from __future__ import annotations

import ast
import dataclasses
import doctest
import inspect
import pathlib
import pydoc
import re

import numpy as np
import pytest

import fastdecode
import fastdecode.models
from fastdecode import _kernels

ROOT = pathlib.Path(fastdecode.__file__).resolve().parent

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


CORE = _public(fastdecode, fastdecode.__all__) + _public(fastdecode.models, fastdecode.models.__all__)


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
            tree = ast.parse(inspect.cleandoc("\n" + inspect.getsource(fn)) if False else
                             _dedent_source(fn))
        except (OSError, TypeError, SyntaxError):
            return False
        fdef = tree.body[0]
        for node in ast.walk(fdef):
            if isinstance(node, ast.Return) and node.value is not None:
                return False
            if isinstance(node, (ast.Yield, ast.YieldFrom)):
                return False
        return True
    return False


def _dedent_source(fn) -> str:
    import textwrap
    return textwrap.dedent(inspect.getsource(fn))


def _is_generator(fn) -> bool:
    return inspect.isgeneratorfunction(fn)


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
    if _is_generator(obj):
        if "Yields" not in secs:
            errs.append(f"{qualname}: no Yields section")
    elif not _returns_none(obj) and "Returns" not in secs:
        errs.append(f"{qualname}: no Returns section")
    if kind == "function":
        if params and "Raises" not in secs:
            errs.append(f"{qualname}: no Raises section")
        if "Examples" not in secs:
            errs.append(f"{qualname}: no Examples")
    return errs


_OWNERS: dict[str, type] = {}


def _owner(qualname: str):
    return _OWNERS[qualname.split(".")[0]]


for _name, _obj, _kind in CORE:
    if _kind == "class":
        _OWNERS[_name] = _obj


@pytest.mark.parametrize("qualname,obj,kind", CORE, ids=[q for q, _, _ in CORE])
def test_numpydoc_sections(qualname, obj, kind):
    errs = problems(qualname, obj, kind)
    assert not errs, "\n".join(errs)


# ------------------------------------------------------------------------------------------
# (b) the docstring examples run

# fastdecode.hf is left out: its examples load the real model (torch, transformers)
DOCTEST_MODULES = ["ops", "processors", "generate", "beam", "speculative", "contrastive",
                   "adaptive", "models", "session", "_array"]


def _doctests(modname):
    mod = __import__(f"fastdecode.{modname}", fromlist=["_"])
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(mod, f"fastdecode.{modname}") if t.examples]


@pytest.mark.parametrize("modname", DOCTEST_MODULES)
def test_docstring_examples(modname):
    tests = _doctests(modname)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    with np.printoptions(precision=4, suppress=True, legacy=False):
        for t in tests:
            runner.run(t)
    res = runner.summarize(verbose=False)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples failed in fastdecode.{modname}"


def test_examples_exist():
    """Every public function of the package has examples that the doctest run above executes."""
    names = {t.name.split(".")[-1] for m in DOCTEST_MODULES for t in _doctests(m)}
    missing = [q for q, _, k in CORE if k in ("function", "class") and q not in names]
    assert not missing, f"no runnable examples: {missing}"
