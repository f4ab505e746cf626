"""CPU time and memory of process trees from /proc, and waiting on ports.

Shared by ``fastproxy tune`` and bench/vs_nginx.py (100 % CPU = one core).
Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from typing import Any

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the ``comm`` (which may contain spaces)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def proc_tree(root: int) -> list[int]:
    """root and all its descendants, found through the ppid field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [root]
    for name in entries:
        if not name.isdigit():
            continue
        f = _stat_fields(int(name))
        if f is not None:
            children.setdefault(int(f[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def start_time(pid: int) -> int | None:
    """Process start time in clock ticks since boot (identifies a pid against reuse)."""
    f = _stat_fields(pid)
    return int(f[19]) if f else None


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime+stime (+cutime+cstime: reaped children) summed over pids, in seconds.

    /proc/PID/stat already sums all threads of a process (/proc/PID/task/*), live and
    exited, so threads need no separate walk; cutime/cstime keep the time of a child
    that exits mid-measurement in the total.
    """
    ticks = 0
    for pid in pids:
        f = _stat_fields(pid)
        if f is not None:
            ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / _CLK_TCK


def machine_busy_seconds(cpu: int | None = None) -> float:
    """CPU seconds spent not idle since boot, by all CPUs or by CPU cpu (/proc/stat;
    steal counts as busy)."""
    want = "cpu" if cpu is None else f"cpu{cpu}"
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                f = line.split()
                if f and f[0] == want:
                    # cpuN user nice system idle iowait irq softirq steal guest guest_nice
                    return sum(int(x) for x in (f[1:4] + f[6:9])) / _CLK_TCK
    except (OSError, ValueError):
        pass
    return 0.0


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_kib(pids: Iterable[int]) -> int:
    """Sum of VmRSS over pids (shared pages are counted once per process)."""
    return sum(_status_kib(pid, "VmRSS:") for pid in pids)


def hwm_kib(pids: Iterable[int]) -> int:
    """Sum of VmHWM (each process's own RSS peak) over pids."""
    return sum(_status_kib(pid, "VmHWM:") for pid in pids)


# --------------------------------------------------------------------------- processes


def port_open(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect((host, port))
        except OSError:
            return False
        return True


def wait_port(
    host: str,
    port: int,
    *,
    up: bool = True,
    timeout: float = 30.0,
    proc: subprocess.Popen[Any] | None = None,
    interval: float = 0.02,
) -> None:
    """Wait until host:port accepts connections (up) or refuses them (not up).

    Raises RuntimeError if proc exits first, TimeoutError after timeout seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        if port_open(host, port) == up:
            return
        if up and proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with status {proc.returncode} before listening")
        if time.monotonic() > deadline:
            state = "accept" if up else "stop accepting"
            raise TimeoutError(f"{host}:{port} did not {state} connections in {timeout:g}s")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """SIGTERM proc (graceful), wait; on timeout SIGKILL it and its descendants.

    Descendants are identified by (pid, start time) taken before the signal, so a
    recycled pid is never hit.
    """
    if proc.poll() is not None:
        return
    family = [(pid, start_time(pid)) for pid in proc_tree(proc.pid)]
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)
    deadline = time.monotonic() + timeout
    for pid, st in family[1:]:  # children left behind (normally none)
        while st is not None and start_time(pid) == st:
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
