"""Build the native core: Cython modules in fastproxy/ linked with csrc/*.c.

Build switches (environment variables):
  FASTPROXY_SANITIZE=1  -fsanitize=address,undefined (run with libasan preloaded)
  FASTPROXY_DEBUG=1     -O0 -g, FP_DEBUG checks and Cython bounds checks on
  FASTPROXY_NO_SIMD=1   compile the scalar scanning path only
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

PARSER_C = [
    "csrc/fp_http1.c",
    "csrc/fp_scan.c",
    "csrc/fp_framing.c",
    "csrc/fp_chunked.c",
    "csrc/fp_known_headers.c",
]


def flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


compile_args = ["-std=gnu11", "-Wall", "-Wno-unused-function"]
link_args: list[str] = []
macros: list[tuple[str, str | None]] = []
directives = {"language_level": "3", "boundscheck": False, "wraparound": False}

if flag("FASTPROXY_SANITIZE"):
    san = [
        "-fsanitize=address,undefined",
        "-fno-omit-frame-pointer",
        "-fno-sanitize-recover=undefined",
    ]
    compile_args += san + ["-O1", "-g"]
    link_args += san
if flag("FASTPROXY_DEBUG"):
    compile_args += ["-O0", "-g"]
    macros.append(("FP_DEBUG", "1"))
    directives.update(boundscheck=True, wraparound=True)
elif not flag("FASTPROXY_SANITIZE"):  # the sanitizer build keeps its -O1
    compile_args += ["-O2"]
if flag("FASTPROXY_NO_SIMD"):
    macros.append(("FP_NO_SIMD", "1"))


def ext(name: str, pyx: str, c_sources: list[str]) -> Extension:
    return Extension(
        name,
        [pyx, *c_sources],
        include_dirs=["csrc"],
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )


DATA_PLANE_C = [*PARSER_C, "csrc/fp_rewrite.c", "csrc/fp_path.c"]
# The cache store.  A module that cimports fastproxy._cache's inline entry points
# calls these C functions itself, so it must list CACHE_C among its sources too.
CACHE_C = [
    "csrc/fp_cache.c",
    "csrc/fp_cache_heap.c",
    "csrc/fp_cache_check.c",
    "csrc/fp_cache_fill.c",
]
CACHE_POLICY_C = ["csrc/fp_cache_policy.c"]

extensions = [
    ext("fastproxy._http1", "fastproxy/_http1.pyx", PARSER_C),
    ext("fastproxy._conn", "fastproxy/_conn.pyx", []),
    ext(
        "fastproxy._tables",
        "fastproxy/_tables.pyx",
        [
            "csrc/fp_path.c",
            "csrc/fp_lb_rr.c",
            "csrc/fp_lb_least.c",
            "csrc/fp_lb_hash.c",
            "csrc/fp_lb_random.c",
            "csrc/fp_lb_key.c",
            "csrc/fp_peer.c",
        ],
    ),
    ext("fastproxy._runtime", "fastproxy/_runtime.pyx", []),
    ext("fastproxy._uvtransports", "fastproxy/_uvtransports.pyx", []),
    ext("fastproxy._stats", "fastproxy/_stats.pyx", ["csrc/fp_stats.c", "csrc/fp_peer.c"]),
    ext("fastproxy._cache", "fastproxy/_cache.pyx", CACHE_C),
    ext("fastproxy._cache_policy", "fastproxy/_cache_policy.pyx", CACHE_POLICY_C),
    ext(
        "fastproxy._protocols",
        "fastproxy/_protocols.pyx",
        [*DATA_PLANE_C, *CACHE_C, *CACHE_POLICY_C, "csrc/fp_cache_path.c", "csrc/fp_sock.c"],
    ),
    ext("fastproxy._rewrite", "fastproxy/_rewrite.pyx", DATA_PLANE_C),
    ext("fastproxy._compress", "fastproxy/_compress.pyx", [*PARSER_C, "csrc/fp_encoding.c"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        include_path=["fastproxy"],
        force=flag("FASTPROXY_SANITIZE") or flag("FASTPROXY_DEBUG"),
    ),
)
