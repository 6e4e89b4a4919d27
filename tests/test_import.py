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
