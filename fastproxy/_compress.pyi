"""Response compression (fastproxy/_compress.pyx).  The data plane uses the
C-level API; these Python entry points exist for tests and tools."""

from fastproxy.config import CompressionConfig

CODINGS: dict[str, int]  # "identity" 0, "gzip" 1, "br" 2, "zstd" 3 (FP_ENC_* ids)
NAMES: dict[int, str]

class DecodeFailed(Exception): ...

class Policy:
    decompress: bool
    max_decompressed: int
    max_ratio: float
    def __init__(self, cfg: CompressionConfig) -> None: ...
    def negotiate(self, accept_encoding: bytes) -> str: ...
    def type_listed(self, content_type: bytes) -> bool: ...

def accept_q(accept_encoding: bytes) -> dict[str, float]: ...
def patch_head(
    head: bytes, coding: str, decoded: bool = False, vary_only: bool = False
) -> bytes: ...
