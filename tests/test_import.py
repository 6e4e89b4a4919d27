"""The package imports and works without torch or transformers (they are optional extras)."""

import subprocess
import sys

BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import numpy as np
import fastdecode as fd
x = np.log(np.array([[0.1, 0.2, 0.3, 0.4]], np.float32))
assert fd.top_k(x, 2)[0, 0] == -np.inf
assert int(fd.sample(x, temperature=0, seed=1)[0]) == 3
assert fd.Sampler(top_p=0.5, repetition_penalty=1.2, seed=1)(x, [[3]]).shape == (1,)
assert 'torch' not in sys.modules and 'transformers' not in sys.modules
print('ok')
"""


def test_import_without_torch_or_transformers():
    out = subprocess.run([sys.executable, "-c", BLOCK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_every_public_function_and_class_has_a_docstring():
    import fastdecode as fd

    missing = [n for n in fd.__all__ if callable(getattr(fd, n)) and not (getattr(fd, n).__doc__ or "").strip()]
    assert missing == []
    assert "min_tokens_to_keep" in fd.top_p.__doc__ and "\n    Notes" in fd.top_p.__doc__


def test_imports_under_python_OO():
    """Docstrings are stripped under -OO; nothing may depend on them at import time."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-OO", "-c", "import fastdecode, fastdecode.models, fastdecode.beam"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
