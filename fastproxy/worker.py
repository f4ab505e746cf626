"""The body of a worker process (forked by fastproxy.master): the
single-process engine on its slot's sockets, counting into its slot of the
shared stats region, attached to the shared cache region.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket

from fastproxy._cache import CacheRegion
from fastproxy._stats import StatsIndex, StatsRegion
from fastproxy.config import Address, Config
from fastproxy.logs import setup_error_log

log = logging.getLogger("fastproxy")

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(message)s"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>, mallopt(3)
HEAP_KEEP = 32 << 20  # free memory at the heap's top kept for reuse
HEAP_MMAP_FROM = 4 << 20  # blocks this large and up are mmap()ed, below from the heap
MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_"}


def use_pid_log_format() -> None:
    """Prefix error-log lines with the process id (master and workers share the log)."""
    for handler in log.handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))


def stop_with_parent(master: int) -> None:
    """Ask the kernel for SIGTERM (a graceful stop) when the master dies, so that a
    master killed with SIGKILL leaves no orphan workers holding the port."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != master:  # the master died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def keep_freed_memory() -> bool:
    """Let glibc keep freed heap memory for the next allocation instead of handing
    it back to the kernel at once.  Every compressed response makes a compressor
    (zlib's is about 270 KiB of state in 64 KiB blocks) and frees it; with glibc's
    own thresholds, responses finishing together freed more than it keeps, so
    under load each came back as fresh pages, zero-filled by page faults: about
    25 per 16 KiB gzip response, and a quarter fewer responses per second.
    Setting one threshold ends glibc's adjustment of both, hence both.  The
    price: up to HEAP_KEEP more resident memory per worker.  Left alone when the
    environment sets malloc's thresholds itself, or where mallopt() is missing.
    True: both set."""
    if MALLOC_ENV & os.environ.keys() or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        return (
            libc.mallopt(_M_MMAP_THRESHOLD, HEAP_MMAP_FROM) == 1
            and libc.mallopt(_M_TRIM_THRESHOLD, HEAP_KEEP) == 1
        )
    return False


Stats = tuple[StatsRegion, int, StatsIndex]


def worker_main(
    config: Config,
    sockets: dict[Address, socket.socket],
    ready_fd: int,
    cpu: int | None,
    stats: Stats | None = None,
    cache: CacheRegion | None = None,
) -> int:
    """Body of a worker process: the single-process engine on the slot's sockets,
    counting into its slot of the shared stats region."""
    import uvloop

    from fastproxy.proxy import Proxy

    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError as exc:
            log.warning("cannot pin worker to CPU %d: %s", cpu, exc.strerror)
    setup_error_log(config.log.error, config.log.level)
    use_pid_log_format()
    keep_freed_memory()
    if stats is not None:
        stats[0].set_pid(stats[1], os.getpid())
    if cache is not None:
        from fastproxy._protocols import use_cache_region

        cache.attach()  # this worker's pin slot in the shared cache region
        use_cache_region(cache)
    proxy = Proxy(config)

    async def main() -> None:
        await proxy.start(sockets, stats=stats)
        os.write(ready_fd, b"r")
        os.close(ready_fd)
        await proxy.serve_forever()

    uvloop.run(main())
    return 0
