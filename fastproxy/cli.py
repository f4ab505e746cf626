"""The `fastproxy` command: run, reload, stop, check, tune, --version."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from fastproxy._version import __version__
from fastproxy.config import Config, ConfigError

DEFAULT_CONFIG = "fastproxy.toml"

log = logging.getLogger("fastproxy")


def _find_config(path: str | None) -> str | None:
    if path:
        return path
    return DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None


def _load(path: str) -> Config | None:
    try:
        return Config.load(path)
    except ConfigError as e:
        print(f"fastproxy: invalid configuration ({len(e.issues)} error(s)):", file=sys.stderr)
        print(str(e), file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    path = _find_config(args.config)
    if path is None:
        print(f"fastproxy: no config given and no ./{DEFAULT_CONFIG}", file=sys.stderr)
        return 2
    config = _load(path)
    if config is None:
        return 1
    from fastproxy.tls import check_certificates

    errors, warnings = check_certificates(config)
    for w in warnings:
        print(f"fastproxy: warning: {w}", file=sys.stderr)
    if errors:
        print(f"fastproxy: invalid TLS setup ({len(errors)} error(s)):", file=sys.stderr)
        for e in errors:
            print(e, file=sys.stderr)
        return 1
    print("ok")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from fastproxy.logs import setup_error_log
    from fastproxy.master import Master
    from fastproxy.worker import use_pid_log_format

    path = _find_config(args.config)
    if path is None:
        return _run_demo(args)
    config = _load(path)
    if config is None:
        return 1
    setup_error_log(config.log.error, config.log.level)
    use_pid_log_format()
    return Master(config, path).run()


def _pid_file(args: argparse.Namespace) -> tuple[str, float]:
    """The master's pid file and shutdown_timeout, from --pid-file, -c or the defaults."""
    from fastproxy.config import ServerConfig
    from fastproxy.pidfile import pid_file_of_config

    default = ServerConfig()
    if args.pid_file:
        return args.pid_file, default.shutdown_timeout
    path = _find_config(args.config)
    if path is None:
        assert default.pid_file is not None
        return default.pid_file, default.shutdown_timeout
    return pid_file_of_config(path)


def cmd_reload(args: argparse.Namespace) -> int:
    import signal

    from fastproxy.pidfile import PidFileError, signal_master

    path = None if args.pid_file else _find_config(args.config)
    if path is not None and _load(path) is None:
        print("fastproxy: not reloading; the running configuration stays", file=sys.stderr)
        return 1
    try:
        pid_file, _ = _pid_file(args)
        pid = signal_master(pid_file, signal.SIGHUP)
    except PidFileError as e:
        print(f"fastproxy: {e}", file=sys.stderr)
        return 1
    print(f"fastproxy: reload requested (SIGHUP to master pid {pid}); the outcome is in its log")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    import signal

    from fastproxy.pidfile import PidFileError, signal_master, wait_gone

    try:
        pid_file, timeout = _pid_file(args)
        pid = signal_master(pid_file, signal.SIGQUIT if args.now else signal.SIGTERM)
    except PidFileError as e:
        print(f"fastproxy: {e}", file=sys.stderr)
        return 1
    limit = timeout + 5
    if not wait_gone(pid, limit):
        print(f"fastproxy: master pid {pid} still runs after {limit:g}s", file=sys.stderr)
        return 1
    print(f"fastproxy: stopped (pid {pid})")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    import uvloop

    from fastproxy.demo import DEMO_LISTEN, demo_config, start_backends
    from fastproxy.logs import setup_error_log
    from fastproxy.proxy import Proxy

    setup_error_log("stderr", "info")

    async def main() -> None:
        servers, backends = await start_backends(2)
        proxy = Proxy(demo_config(backends, args.listen or DEMO_LISTEN))
        await proxy.start()
        host, port = proxy.addresses[0]
        log.info("demo: no config given, so fastproxy runs its built-in demo")
        log.info("demo: backends %s; try: curl http://%s:%d/", ", ".join(backends), host, port)
        try:
            await proxy.serve_forever()
        finally:
            for s in servers:
                s.close()

    uvloop.run(main())
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from fastproxy import tune

    return tune.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastproxy",
        description="A reverse proxy, load balancer and HTTP cache with a C data plane.",
        epilog="With no config (no -c and no ./fastproxy.toml), `fastproxy run` starts a "
        "built-in demo on 127.0.0.1:8080 with two demo backends.",
    )
    p.add_argument("--version", action="version", version=f"fastproxy {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the proxy (a master and its workers) in the foreground")
    run.add_argument("-c", "--config", help=f"TOML config file (default ./{DEFAULT_CONFIG})")
    run.add_argument("--listen", help="demo only: where the demo proxy listens")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check", help="validate a config file; prints ok or every error")
    check.add_argument("-c", "--config", help=f"TOML config file (default ./{DEFAULT_CONFIG})")
    check.set_defaults(func=cmd_check)
    for name, help_text in (
        ("reload", "reload the running master's configuration (SIGHUP)"),
        ("stop", "stop the running master: graceful (SIGTERM), or at once with --now"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        target = cmd.add_mutually_exclusive_group()
        target.add_argument(
            "-c",
            "--config",
            help=f"config file naming the pid file (default ./{DEFAULT_CONFIG}, "
            "else the default pid file)",
        )
        target.add_argument("--pid-file", help="the master's pid file")
        if name == "stop":
            cmd.add_argument("--now", action="store_true", help="stop at once (SIGQUIT)")
        cmd.set_defaults(func=cmd_reload if name == "reload" else cmd_stop)
    tune = sub.add_parser(
        "tune", help="measure throughput per worker count (needs wrk)", add_help=False
    )
    tune.add_argument("rest", nargs=argparse.REMAINDER)
    tune.set_defaults(func=cmd_tune)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["tune"]:
        # tune parses its own options (argparse.REMAINDER would not pass a leading -c)
        from fastproxy import tune

        return tune.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
