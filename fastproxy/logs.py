"""Log sinks: the error log (stdlib logging) and a buffered access log.

Access lines are appended to a list by the data plane and written in one
batch at least once a second and at exit, so logging costs one write per
second rather than one per request.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TextIO

FLUSH_INTERVAL = 1.0


def setup_error_log(target: str = "stderr", level: str = "info") -> logging.Logger:
    log = logging.getLogger("fastproxy")
    for h in list(log.handlers):
        log.removeHandler(h)
    handler: logging.Handler
    if target == "stderr":
        handler = logging.StreamHandler(sys.stderr)
    elif target == "stdout":
        handler = logging.StreamHandler(sys.stdout)
    else:
        handler = logging.FileHandler(target)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(level.upper())
    log.propagate = False
    return log


class AccessLog:
    """Buffered access log writing to stdout, stderr or a file."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.lines: list[str] = []
        self._stream: TextIO | None = None
        self._task: asyncio.Task[None] | None = None
        self.open()

    def open(self) -> None:
        if self.target == "stdout":
            self._stream = sys.stdout
        elif self.target == "stderr":
            self._stream = sys.stderr
        else:
            self._stream = open(self.target, "a", buffering=1 << 16)  # noqa: SIM115

    def reopen(self) -> None:
        """For log rotation: flush, close and open the path again."""
        self.flush()
        if self._stream is not None and self.target not in ("stdout", "stderr"):
            self._stream.close()
        self.open()

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def flush(self) -> None:
        if self.lines and self._stream is not None:
            lines, self.lines = self.lines, []
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            self.flush()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.flush()
        if self._stream is not None and self.target not in ("stdout", "stderr"):
            self._stream.close()
        self._stream = None
