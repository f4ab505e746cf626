"""The master process: owns the listening sockets, forks and supervises workers.

    Master(Config.load(path), path).run()      # blocking; returns the exit status

The master binds every listen address once per worker slot (SO_REUSEPORT, so
the kernel spreads new connections across the slots) before forking; worker i
inherits the slot-i sockets and runs the single-process engine on them
(`Proxy.start(sockets)`).  Because the master keeps its copies open, a slot's
socket outlives the worker that accepts on it: connections queued in it when
a worker dies or is retired by a reload are accepted by the slot's next
worker instead of being reset.

Signals: SIGTERM/SIGINT graceful stop, SIGQUIT immediate stop, SIGHUP reload
(a new generation of workers on the same sockets, then the old one drains),
SIGUSR1 forwarded to the workers (they reopen the access log).  A worker that
dies unexpectedly is restarted in its slot, with back-off when it keeps dying
right after start.

Stats: before the first fork the master maps one shared-memory StatsRegion
(fastproxy._stats) and keeps one StatsIndex, filled from every config it loads
(a Router built on it numbers the routes and servers) before forking that
config's workers, so that all workers agree on what index means what.  Each
worker process gets a stats slot of its own (claimed before the fork, released
when the worker is reaped: its counters are folded into the retired slot, so
totals never go down).  With `[admin]` configured the master serves /metrics
and /status from its own event loop (fastproxy.admin).

Health checks: the master alone runs the active health checks of every upstream
with `health_check` configured (fastproxy.health) and writes each server's
verdict into the region's down flags, which the workers' balancers read on
every pick; a reload switches the checks to the new config when it takes effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import NoReturn

from fastproxy import admin_control, pidfile, tls
from fastproxy._cache import CacheRegion
from fastproxy._stats import StatsIndex, StatsRegion
from fastproxy._tables import Router
from fastproxy.admin import AdminServer, bind_admin
from fastproxy.config import Address, Config, ConfigError
from fastproxy.health import HealthChecker
from fastproxy.listeners import (
    ListenError,
    Listeners,
    close_unused,
    plan_listeners,
    sockets_of,
)
from fastproxy.logs import setup_error_log
from fastproxy.worker import Stats, stop_with_parent, use_pid_log_format, worker_main

log = logging.getLogger("fastproxy")

QUICK_DEATH = 2.0  # a worker dying sooner than this after its start backs off ...
BACKOFF_FIRST = 0.5  # ... first by this much, doubling each time ...
BACKOFF_MAX = 30.0  # ... up to this,
STABLE_AFTER = 10.0  # and the back-off is forgotten once a worker lived this long
KILL_GRACE = 5.0  # SIGKILL workers still there shutdown_timeout + this after SIGTERM
QUIT_GRACE = 3.0  # SIGKILL workers still there this long after SIGQUIT
READY_TIMEOUT = 15.0  # a reload fails when its new workers are not all ready by then

# Handled by the master; blocked around fork() so that none of them reaches a
# child before it has dropped the master's handlers (asyncio's handler would
# write the signal number into the master's wakeup pipe, which the child shares).
_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGCHLD,
)


@dataclass(eq=False)
class Worker:
    pid: int
    slot: int
    generation: int
    started: float  # loop.time() at fork
    ready_fd: int | None  # read end of the ready pipe, until the worker wrote or exited
    ready: bool = False
    retiring: bool = False  # sent SIGTERM by a reload; its exit is expected
    kill_timer: asyncio.TimerHandle | None = None
    stats_slot: int | None = None  # its slot in the StatsRegion (None: not counted)


@dataclass(eq=False)
class _Pending:
    """A generation being started by a reload, not yet serving alone."""

    generation: int
    config: Config
    listeners: Listeners
    pids: list[int] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    admin_sock: socket.socket | None = None  # bound for a changed admin.listen
    admin_rebind: bool = False  # the new admin address needs the old socket closed first


def describe_exit(status: int) -> str:
    """'exit code N' or 'killed by SIGNAME' for a waitpid() status."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


class Master:
    """Supervises generations of worker processes on sockets it owns."""

    def __init__(self, config: Config, config_path: str | None = None) -> None:
        self.config = config
        self.config_path = config_path or config.source
        self.listeners: Listeners = {}
        self.workers: dict[int, Worker] = {}  # every live child, any generation
        self.slots: list[int | None] = []  # current generation: worker pid per slot
        self.backoff: list[float] = []  # per slot, seconds
        self.restarts: dict[int, asyncio.TimerHandle] = {}  # slot -> scheduled restart
        self.generation = 0
        self.pending: _Pending | None = None
        self.reload_again = False
        self.stopping: str | None = None  # None, "graceful" or "immediate"
        self.ready = False  # the first generation reported ready
        self.exit_code = 0
        self.pid_file: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Future[int] | None = None
        self._kill_timer: asyncio.TimerHandle | None = None
        self.stats: StatsRegion | None = None  # mapped by run(), before the first fork
        self.index = StatsIndex()  # route/server numbering, shared by every generation
        self.admin: AdminServer | None = None
        self._admin_sock: socket.socket | None = None  # bound by run(), served by _main()
        self._tasks: set[asyncio.Task[None]] = set()
        self.health: HealthChecker | None = None  # active health checks (run by the master)
        self.cache: CacheRegion | None = None  # with [cache]: mapped by run(), before the fork

    # -- entry point ----------------------------------------------------------------------
    def run(self) -> int:
        """Blocking: check and write the pid file, bind, fork, supervise until stopped."""
        path = self.config.server.pid_file
        if path:
            other = pidfile.running_pid(path)
            if other is not None:
                print(
                    f"fastproxy: already running as pid {other} (pid file {path})", file=sys.stderr
                )
                return 1
        try:
            tls.validate(self.config)
        except tls.TLSError as exc:
            log.error("%s", exc)
            return 1
        try:
            self.listeners = plan_listeners(self.config, {})
        except ListenError as exc:
            log.error("%s", exc)
            return 1
        if self.config.admin is not None:
            try:
                self._admin_sock = bind_admin(self.config.admin.listen)
            except OSError as exc:
                log.error("cannot listen on %s (admin): %s", self.config.admin.listen, exc.strerror)
                self._close_listeners()
                return 1
        if path:
            try:
                pidfile.write_pid(path)
            except OSError as exc:
                log.error("cannot write pid file %s: %s", path, exc.strerror)
                self._close_listeners()
                self._close_admin()
                return 1
            self.pid_file = path
        self.stats = StatsRegion()
        if self.config.cache is not None:
            cc = self.config.cache
            try:
                self.cache = CacheRegion.create(
                    cc.size, cc.max_entry_size, cc.max_entries, sendfile=cc.sendfile
                )
            except (MemoryError, ValueError) as exc:
                log.error("cannot create the cache region (cache.size = %d): %s", cc.size, exc)
                self._close_listeners()
                self._close_admin()
                if self.pid_file:
                    pidfile.remove_pid(self.pid_file)
                return 1
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(self._main())
        finally:
            loop.close()
            self._close_listeners()
            self._close_admin()
            if self.pid_file:
                pidfile.remove_pid(self.pid_file)

    async def _main(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, self._on_stop_signal, signal.SIGTERM)
        loop.add_signal_handler(signal.SIGINT, self._on_stop_signal, signal.SIGINT)
        loop.add_signal_handler(signal.SIGQUIT, self._on_stop_signal, signal.SIGQUIT)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGUSR1, self._forward, signal.SIGUSR1)
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        try:
            self.generation = 1
            assert self.stats is not None
            self.stats.generation = self.generation
            self._number(self.config)
            self.health = HealthChecker(self.stats, self.index, self.config)
            self.health.start()
            if self._admin_sock is not None and self.config.admin is not None:
                sock, self._admin_sock = self._admin_sock, None
                self.admin = AdminServer(
                    self.stats, self.index, self.config, self._worker_slots, cache=self.cache
                )
                await self.admin.start(sock, self.config.admin.listen)
            n = self.config.worker_count()
            self.slots = [None] * n
            self.backoff = [0.0] * n
            for slot in range(n):
                self._start_slot(slot)
            log.info("master pid %d started %d workers", os.getpid(), n)
            return await self._done
        finally:
            for sig in _SIGNALS:
                loop.remove_signal_handler(sig)
            if self.health is not None:
                self.health.close()
            self._close_admin()

    # -- forking ---------------------------------------------------------------------------
    def _spawn(self, slot: int, generation: int, config: Config, listeners: Listeners) -> Worker:
        assert self._loop is not None
        sockets = {addr: group[slot] for addr, group in listeners.items()}
        cpu = None
        if config.server.worker_cpu_affinity == "auto":
            cpus = sorted(os.sched_getaffinity(0))
            cpu = cpus[slot % len(cpus)]
        stats_slot = self._claim_stats(generation)
        stats = None if stats_slot is None else (self.stats, stats_slot, self.index)
        rfd, wfd = os.pipe()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(rfd)
            os.close(wfd)
            self._release_stats(stats_slot)
            raise
        if pid == 0:
            os.close(rfd)
            self._child(config, sockets, wfd, cpu, mask, stats)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(wfd)
        if stats_slot is not None and self.stats is not None:
            self.stats.set_pid(stats_slot, pid)  # the worker sets it too, once it runs
        worker = Worker(pid, slot, generation, self._loop.time(), rfd, stats_slot=stats_slot)
        self.workers[pid] = worker
        self._loop.add_reader(rfd, self._on_ready_pipe, worker)
        return worker

    def _child(
        self,
        config: Config,
        sockets: dict[Address, socket.socket],
        ready_fd: int,
        cpu: int | None,
        mask: set[int | signal.Signals],
        stats: Stats | None,
    ) -> NoReturn:
        """In the forked child: shed the master's state, run the worker, never return."""
        code = 1
        master = os.getppid()
        try:
            signal.set_wakeup_fd(-1)
            for sig in _SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            # A worker has no use for these; ignoring them means a stray SIGHUP
            # (terminal hang-up) or a SIGUSR1 to a worker without an access log
            # file does not kill it.  Proxy.serve_forever takes SIGUSR1 over
            # when there is a file to reopen.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
            self._drop_master_state(sockets)
            stop_with_parent(master)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            code = worker_main(config, sockets, ready_fd, cpu, stats, self.cache)
        except KeyboardInterrupt:
            code = 0
        except OSError as exc:  # e.g. the access log cannot be opened: no traceback needed
            with contextlib.suppress(BaseException):
                log.error("worker failed: %s", exc)
        except BaseException:
            with contextlib.suppress(BaseException):
                log.exception("worker failed")
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _drop_master_state(self, keep: dict[Address, socket.socket]) -> None:
        """Close what the child inherited from the master but must not use.

        The master's event loop is left alone apart from closing its file
        descriptors directly: loop.close() would unregister them from the epoll
        instance, which parent and child share.
        """
        loop = self._loop
        selector = getattr(loop, "_selector", None)
        if selector is not None:
            with contextlib.suppress(Exception):
                selector.close()
        for name in ("_ssock", "_csock"):
            sock = getattr(loop, name, None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        kept = {id(s) for s in keep.values()}
        groups = [self.listeners] + ([self.pending.listeners] if self.pending else [])
        for group in groups:
            for s in sockets_of(group):
                if id(s) not in kept:
                    s.close()
        for w in self.workers.values():
            if w.ready_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(w.ready_fd)
        self.workers = {}
        if self.admin is not None:
            self.admin.close_in_child()
        for admin_sock in (self._admin_sock, self.pending.admin_sock if self.pending else None):
            if admin_sock is not None:
                admin_sock.close()

    # -- stats and admin -------------------------------------------------------------------
    def _number(self, config: Config) -> None:
        """Give config's routes and servers their stats indexes (before forking its
        workers, which build the same Router on a copy of this index)."""
        Router(config, self.index)

    def _claim_stats(self, generation: int) -> int | None:
        if self.stats is None:
            return None
        try:
            return int(self.stats.claim(0, generation))
        except RuntimeError as exc:
            log.warning("worker not counted in the stats: %s", exc)
            return None

    def _release_stats(self, stats_slot: int | None) -> None:
        if stats_slot is not None and self.stats is not None:
            self.stats.release(stats_slot)

    def _worker_slots(self) -> dict[int, int]:
        """pid -> slot (which listening sockets it accepts on), for /status."""
        return {w.pid: w.slot for w in self.workers.values()}

    def _plan_admin(self, config: Config, pending: _Pending) -> None:
        """Bind a changed admin.listen now, so that a reload fails rather than losing the
        endpoint.  Raises ListenError."""
        want = config.admin.listen if config.admin is not None else None
        have = self.admin.address if self.admin is not None else None
        if want is None or want == have:
            return
        try:
            pending.admin_sock = bind_admin(want)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE and have is not None and have.port == want.port:
                pending.admin_rebind = True  # our own socket is in the way: switch at promote
                return
            why = f"cannot listen on {want} (admin): {exc.strerror}"
            raise ListenError(why, exc.errno) from None

    def _switch_admin(self, config: Config, sock: socket.socket | None, rebind: bool) -> None:
        """The new generation took over: serve the admin endpoint as its config says."""
        assert self._loop is not None and self.stats is not None
        if config.admin is None:
            if self.admin is not None:
                log.info("admin endpoint off")
            self._close_admin()
            return
        if self.admin is not None and sock is None and not rebind:
            self.admin.update(config)  # same address: new token, new upstreams
            return
        self._close_admin()
        if sock is None:
            try:
                sock = bind_admin(config.admin.listen)
            except OSError as exc:
                log.error(
                    "cannot listen on %s (admin): %s; the admin endpoint is off",
                    config.admin.listen,
                    exc.strerror,
                )
                return
        admin = self.admin = AdminServer(
            self.stats, self.index, config, self._worker_slots, cache=self.cache
        )
        admin.address = config.admin.listen  # now: the next reload compares against it
        task = self._loop.create_task(admin.start(sock, config.admin.listen))
        self._tasks.add(task)
        task.add_done_callback(self._admin_started)

    def _admin_started(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("admin endpoint failed to start: %s", task.exception())

    def _close_admin(self) -> None:
        if self.admin is not None:
            self.admin.close()
            self.admin = None
        if self._admin_sock is not None:
            self._admin_sock.close()
            self._admin_sock = None

    def _start_slot(self, slot: int) -> None:
        """Fork the current generation's worker for slot (first start or restart)."""
        self.restarts.pop(slot, None)
        if self.stopping:
            return
        try:
            worker = self._spawn(slot, self.generation, self.config, self.listeners)
        except OSError as exc:
            delay = self._schedule_restart(slot, None)
            log.error("cannot fork a worker for slot %d: %s; retrying in %gs", slot, exc, delay)
            return
        self.slots[slot] = worker.pid

    def _schedule_restart(self, slot: int, lived: float | None) -> float:
        """Restart slot after the back-off its history calls for; returns the delay."""
        assert self._loop is not None
        backoff = self.backoff[slot]
        if lived is not None and lived >= STABLE_AFTER:
            backoff = 0.0
        delay = 0.0
        if lived is None or lived < QUICK_DEATH:
            backoff = delay = BACKOFF_FIRST if backoff == 0 else min(backoff * 2, BACKOFF_MAX)
        self.backoff[slot] = backoff
        self.restarts[slot] = self._loop.call_later(delay, self._start_slot, slot)
        return delay

    # -- worker events ---------------------------------------------------------------------
    def _on_ready_pipe(self, worker: Worker) -> None:
        if worker.ready_fd is None:
            return
        try:
            data = os.read(worker.ready_fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._close_ready(worker)
        if not data:  # exited before it was ready; _reap reports why
            return
        worker.ready = True
        if self.pending is not None and all(
            pid in self.workers and self.workers[pid].ready for pid in self.pending.pids
        ):
            self._promote()
        if not self.ready and all(
            pid in self.workers and self.workers[pid].ready for pid in self.slots
        ):
            self.ready = True
            log.info("ready")

    def _close_ready(self, worker: Worker) -> None:
        if worker.ready_fd is not None and self._loop is not None:
            self._loop.remove_reader(worker.ready_fd)
            os.close(worker.ready_fd)
            worker.ready_fd = None

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            self._on_exit(pid, status)
        self._maybe_done()

    def _on_exit(self, pid: int, status: int) -> None:
        assert self._loop is not None
        worker = self.workers.pop(pid, None)
        if worker is None:
            return
        self._release_stats(worker.stats_slot)  # its counters live on in the retired slot
        if self.cache is not None:
            self.cache.reap(pid)  # its cache pins, unfinished stores and fill claims
        worker.stats_slot = None
        self._close_ready(worker)
        if worker.kill_timer is not None:
            worker.kill_timer.cancel()
        reason = describe_exit(status)
        pending = self.pending
        if self.stopping:
            log.info("worker %d exited (%s)", pid, reason)
        elif worker.retiring:
            log.info("worker %d of generation %d exited (%s)", pid, worker.generation, reason)
        elif pending is not None and worker.generation == pending.generation:
            log.error(
                "reload failed: new worker %d exited during start-up (%s); keeping generation %d",
                pid,
                reason,
                self.generation,
            )
            self._abort_pending()
        elif worker.generation == self.generation and self.slots[worker.slot] == pid:
            self.slots[worker.slot] = None
            if not self.ready:
                log.error("worker %d exited during start-up (%s); stopping", pid, reason)
                self.exit_code = 1
                self._begin_stop(immediate=False)
                return
            delay = self._schedule_restart(worker.slot, self._loop.time() - worker.started)
            log.error(
                "worker %d (slot %d) exited unexpectedly (%s); restarting it %s",
                pid,
                worker.slot,
                reason,
                f"in {delay:g}s" if delay else "now",
            )
        else:
            log.info("worker %d exited (%s)", pid, reason)

    # -- reload ----------------------------------------------------------------------------
    def reload(self) -> None:
        """SIGHUP: re-read the config and start a new generation of workers on it."""
        assert self._loop is not None
        if self.stopping:
            return
        if self.pending is not None:
            self.reload_again = True
            log.info("reload requested while generation %d starts; queued", self.pending.generation)
            return
        log.info("reloading %s", self.config_path)
        try:
            config = Config.load(self.config_path)
        except ConfigError as exc:
            log.error(
                "reload failed: invalid configuration (%d error(s)); keeping generation %d",
                len(exc.issues),
                self.generation,
            )
            for issue in exc.issues:
                log.error("%s", issue)
            return
        if config.cache != self.config.cache:
            log.warning("[cache] changes take effect on restart; the cache region is kept as is")
        try:
            tls.validate(config)  # a broken certificate keeps the running generation
        except tls.TLSError as exc:
            log.error("reload failed: %s; keeping generation %d", exc, self.generation)
            return
        try:
            self._number(config)
        except Exception as exc:
            log.error("reload failed: %s; keeping generation %d", exc, self.generation)
            return
        try:
            listeners = plan_listeners(config, self.listeners)
        except ListenError as exc:
            log.error("reload failed: %s; keeping generation %d", exc, self.generation)
            return
        pending = _Pending(self.generation + 1, config, listeners)
        try:
            self._plan_admin(config, pending)
        except ListenError as exc:
            close_unused(listeners, self.listeners)
            log.error("reload failed: %s; keeping generation %d", exc, self.generation)
            return
        self.pending = pending
        for slot in range(config.worker_count()):
            try:
                worker = self._spawn(slot, pending.generation, config, listeners)
            except OSError as exc:
                log.error("reload failed: cannot fork a worker: %s", exc)
                self._abort_pending()
                return
            pending.pids.append(worker.pid)
        pending.timer = self._loop.call_later(READY_TIMEOUT, self._pending_timeout, pending)

    def _pending_timeout(self, pending: _Pending) -> None:
        if self.pending is pending:
            log.error(
                "reload failed: new workers not ready after %gs; keeping generation %d",
                READY_TIMEOUT,
                self.generation,
            )
            self._abort_pending()

    def _abort_pending(self) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        for pid in pending.pids:
            if pid in self.workers:
                self._retire(self.workers[pid], pending.config)
        close_unused(pending.listeners, self.listeners)
        if pending.admin_sock is not None:
            pending.admin_sock.close()
        self._reload_if_queued()

    def _promote(self) -> None:
        """Every worker of the pending generation is ready: it takes over, the old one drains."""
        pending, self.pending = self.pending, None
        assert pending is not None
        if pending.timer is not None:
            pending.timer.cancel()
        old_config = self.config
        old = [w for w in self.workers.values() if w.generation != pending.generation]
        for handle in self.restarts.values():
            handle.cancel()
        self.restarts.clear()
        close_unused(self.listeners, pending.listeners)
        self.config, self.listeners = pending.config, pending.listeners
        self.generation = pending.generation
        if self.stats is not None:
            self.stats.generation = self.generation
        self._switch_admin(self.config, pending.admin_sock, pending.admin_rebind)
        if self.health is not None:
            self.health.update(self.config)  # kept servers keep their state
        if self.stats is not None:  # drained/disabled servers stay so while configured
            admin_control.forget_removed(self.stats, self.index.servers, self.config)
        self.slots = [*pending.pids]
        self.backoff = [0.0] * len(self.slots)
        self.ready = True
        setup_error_log(self.config.log.error, self.config.log.level)
        use_pid_log_format()
        self._switch_pid_file(self.config.server.pid_file)
        log.info("reloaded: generation %d, %d workers", self.generation, len(self.slots))
        for w in old:
            if not w.retiring:
                self._retire(w, old_config)
        self._reload_if_queued()

    def _reload_if_queued(self) -> None:
        if self.reload_again and self._loop is not None:
            self.reload_again = False
            self._loop.call_soon(self.reload)

    def _retire(self, worker: Worker, config: Config) -> None:
        """SIGTERM: finish requests in flight, then exit; SIGKILL if that takes too long."""
        assert self._loop is not None
        worker.retiring = True
        self._kill(worker.pid, signal.SIGTERM)
        worker.kill_timer = self._loop.call_later(
            config.server.shutdown_timeout + KILL_GRACE, self._kill_straggler, worker.pid
        )

    def _kill_straggler(self, pid: int) -> None:
        if pid in self.workers:
            log.warning("worker %d did not exit in time; killing it", pid)
            self._kill(pid, signal.SIGKILL)

    def _switch_pid_file(self, path: str | None) -> None:
        if path == self.pid_file:
            return
        if path:
            other = pidfile.running_pid(path)
            if other is not None:
                log.error("pid file %s names another running fastproxy (pid %d)", path, other)
                return
            try:
                pidfile.write_pid(path)
            except OSError as exc:
                log.error("cannot write pid file %s: %s", path, exc.strerror)
                return
        if self.pid_file:
            pidfile.remove_pid(self.pid_file)
        self.pid_file = path

    # -- stopping and forwarding -----------------------------------------------------------
    def _on_stop_signal(self, sig: int) -> None:
        if sig == signal.SIGQUIT or (sig == signal.SIGINT and self.stopping == "graceful"):
            self._begin_stop(immediate=True)
        else:
            self._begin_stop(immediate=False)

    def _begin_stop(self, immediate: bool) -> None:
        assert self._loop is not None
        if self.stopping == "immediate" or (self.stopping and not immediate):
            return
        self.stopping = "immediate" if immediate else "graceful"
        for handle in self.restarts.values():
            handle.cancel()
        self.restarts.clear()
        limit = self.config.server.shutdown_timeout
        if self.pending is not None:
            if self.pending.timer is not None:
                self.pending.timer.cancel()
            limit = max(limit, self.pending.config.server.shutdown_timeout)
            close_unused(self.pending.listeners, self.listeners)
            if self.pending.admin_sock is not None:
                self.pending.admin_sock.close()
            self.pending = None
        # The workers hold their own copies; with the master's gone, the sockets
        # close (and refuse new connections) as soon as the workers stop accepting.
        self._close_listeners()
        log.info("stopping (%s): %d workers", self.stopping, len(self.workers))
        sig = signal.SIGQUIT if immediate else signal.SIGTERM
        for pid in list(self.workers):
            self._kill(pid, sig)
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        grace = QUIT_GRACE if immediate else limit + KILL_GRACE
        self._kill_timer = self._loop.call_later(grace, self._kill_leftovers)
        self._maybe_done()

    def _kill_leftovers(self) -> None:
        for pid in list(self.workers):
            log.warning("worker %d did not exit in time; killing it", pid)
            self._kill(pid, signal.SIGKILL)

    def _maybe_done(self) -> None:
        if self.stopping and not self.workers and self._done and not self._done.done():
            if self._kill_timer is not None:
                self._kill_timer.cancel()
            log.info("master exiting")
            self._done.set_result(self.exit_code)

    def _forward(self, sig: int) -> None:
        for pid in list(self.workers):
            self._kill(pid, sig)

    @staticmethod
    def _kill(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def _close_listeners(self) -> None:
        for s in sockets_of(self.listeners):
            s.close()
        self.listeners = {}
