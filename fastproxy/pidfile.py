"""The master's pid file: write it atomically, find a running master, signal it.

`fastproxy run` writes the master pid to `server.pid_file`; `fastproxy reload`
and `fastproxy stop` find the master through the same file.  A pid file names
a running master only if that process exists and its command line mentions
fastproxy, so a stale file left by a crash (its pid since reused by something
else) is not mistaken for a live master.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import tomllib

from fastproxy.config import Config, ConfigError, ServerConfig
from fastproxy.config_values import parse_pid_file

__all__ = [
    "NotRunning",
    "PidFileError",
    "is_fastproxy",
    "master_pid",
    "pid_file_of_config",
    "process_gone",
    "read_pid",
    "remove_pid",
    "running_pid",
    "send_signal",
    "signal_master",
    "wait_gone",
    "write_pid",
]


class PidFileError(Exception):
    """A pid file problem, with a message meant for the user."""


class NotRunning(PidFileError):
    """No master runs under the pid file."""


def read_pid(path: str) -> int | None:
    """The pid in the file; None if it is missing, unreadable or not a pid."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            text = fh.read(64).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _proc_state(pid: int) -> str | None:
    """The state letter from /proc/PID/stat (None if there is no such process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat.rpartition(b")")[2].split()[0].decode()


def process_gone(pid: int) -> bool:
    """True when pid no longer runs (a zombie awaiting its parent counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return _proc_state(pid) in (None, "Z", "X")


def is_fastproxy(pid: int) -> bool:
    """True when pid is a live process whose command line mentions fastproxy."""
    if pid == os.getpid() or process_gone(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except OSError:
        return False
    return b"fastproxy" in cmdline


def running_pid(path: str) -> int | None:
    """The pid of the fastproxy master named by the pid file, or None (no file, stale file)."""
    pid = read_pid(path)
    return pid if pid is not None and is_fastproxy(pid) else None


def write_pid(path: str, pid: int | None = None) -> None:
    """Write pid (default: this process) atomically: a temporary file, then rename."""
    pid = os.getpid() if pid is None else pid
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{pid}.tmp")
    try:
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(f"{pid}\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_pid(path: str, pid: int | None = None) -> None:
    """Remove the pid file, but only while it still names pid (default: this process)."""
    pid = os.getpid() if pid is None else pid
    if read_pid(path) == pid:
        with contextlib.suppress(OSError):
            os.unlink(path)


def pid_file_of_config(config_path: str) -> tuple[str, float]:
    """(server.pid_file, server.shutdown_timeout) of a config file.

    An invalid config still yields its pid file when the raw TOML names one, so
    that `fastproxy stop` works even after the file was broken by an edit.
    Raises PidFileError when the file cannot be read or sets no pid file.
    """
    default = ServerConfig()
    try:
        cfg = Config.load(config_path)
        pid_file, timeout = cfg.server.pid_file, cfg.server.shutdown_timeout
    except ConfigError as exc:
        try:
            with open(config_path, "rb") as fh:
                server = tomllib.load(fh).get("server", {})
            pid_file, timeout = default.pid_file, default.shutdown_timeout
            if isinstance(server, dict) and "pid_file" in server:
                pid_file = parse_pid_file(server["pid_file"])
        except (OSError, ValueError, tomllib.TOMLDecodeError):
            raise PidFileError(f"cannot find the pid file: invalid configuration\n{exc}") from None
    if pid_file is None:
        raise PidFileError(
            f"{config_path} sets server.pid_file = false, so the master cannot be found"
        )
    return pid_file, timeout


def _resolve(target: str) -> tuple[str, float]:
    """A pid file path from a config path or a pid file path (told apart by content)."""
    try:
        with open(target, "rb") as fh:
            head = fh.read(64).strip()
    except FileNotFoundError:
        if target.endswith(".toml"):
            raise PidFileError(f"cannot read config {target}: no such file") from None
        raise NotRunning(f"not running (no pid file {target})") from None
    except OSError as exc:
        raise PidFileError(f"cannot read {target}: {exc.strerror}") from None
    if head.isdigit():
        return target, ServerConfig().shutdown_timeout
    return pid_file_of_config(target)


def master_pid(pid_file: str) -> int:
    """The running master named by pid_file; NotRunning with a clear message otherwise."""
    if not os.path.exists(pid_file):
        raise NotRunning(f"not running (no pid file {pid_file})")
    pid = read_pid(pid_file)
    if pid is None:
        raise NotRunning(f"not running (pid file {pid_file} holds no pid)")
    if not is_fastproxy(pid):
        raise NotRunning(f"not running (stale pid file {pid_file} names pid {pid})")
    return pid


def signal_master(pid_file: str, sig: int) -> int:
    """Send sig to the master named by pid_file; returns its pid.

    Raises NotRunning when no master runs, PidFileError for other problems.
    """
    pid = master_pid(pid_file)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        raise NotRunning(f"not running (pid {pid} from {pid_file} just exited)") from None
    except PermissionError:
        name = signal.Signals(sig).name
        raise PidFileError(
            f"not allowed to send {name} to pid {pid} (pid file {pid_file})"
        ) from None
    return pid


def send_signal(config_path_or_pidfile: str, sig: int) -> tuple[int, float]:
    """Send sig to the master found through a config file or a pid file.

    A file holding just a number is a pid file; anything else is read as a
    config and its server.pid_file used.  Returns (pid, the config's
    shutdown_timeout or the default).  Raises NotRunning when no master runs,
    PidFileError for other problems.
    """
    pid_file, timeout = _resolve(config_path_or_pidfile)
    return signal_master(pid_file, sig), timeout


def wait_gone(pid: int, timeout: float, interval: float = 0.05) -> bool:
    """Poll until pid is gone; False if it still runs after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not process_gone(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True
