# The C extension (the only thing pyproject.toml cannot say): the core plus its one binding file.
import glob

import numpy
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fastdecode._kernels",
            sources=["csrc/_kernels.c"] + sorted(glob.glob("csrc/core/*.c")),
            # headers listed so that an sdist carries them (there is no MANIFEST.in)
            depends=sorted(glob.glob("csrc/include/fastdecode/*.h") + glob.glob("csrc/core/*.h")),
            include_dirs=["csrc/include", "csrc/core", numpy.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_25_API_VERSION")],
            # -ffp-contract=off: no fused multiply-adds, so every ISA path rounds alike
            extra_compile_args=["-O3", "-std=c11", "-fno-math-errno", "-ffp-contract=off",
                                "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
