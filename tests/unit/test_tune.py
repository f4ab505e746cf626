"""fastproxy tune: the pure parts (wrk output parser, recommendation rule, the --write
rewrite, the TOML writer).  No load is generated here."""

from __future__ import annotations

import math
import os
import stat
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from fastproxy import tune
from fastproxy.tune import TunePoint, WrkResult, recommend, set_workers

WRK_WITH_JSON = """\
Running 2s test @ http://127.0.0.1:18999/100b
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.09ms  673.50us   7.28ms   87.43%
    Req/Sec    44.12k     5.51k   47.11k    90.00%
  Latency Distribution
     50%    1.02ms
     75%    1.27ms
     90%    1.56ms
     99%    4.37ms
  87783 requests in 2.01s, 28.30MB read
Requests/sec:  43738.00
Transfer/sec:     14.10MB
WRK_JSON {"requests":87783,"duration_us":2007019,"bytes":29670404,"connect_errors":0,\
"read_errors":0,"write_errors":0,"status_errors":0,"timeouts":0,"p50_us":1017,"p90_us":1564,\
"p99_us":4371,"p999_us":6378,"max_us":7278,"mean_us":1094.1}
"""

WRK_TEXT_ONLY = """\
Running 10s test @ http://127.0.0.1:8080/missing
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   920.00us  403.56us   1.20s    76.86%
    Req/Sec    48.84k     1.17k   50.44k    60.00%
  Latency Distribution
     50%  958.00us
     75%    1.13ms
     90%    1.28ms
     99%    1.20s
  97195 requests in 10.00s, 1.50GB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 97195
Requests/sec:   9719.50
Transfer/sec:    153.60MB
"""


# --------------------------------------------------------------------------- wrk parser


def test_parse_json_line_wins() -> None:
    r = tune.parse_wrk_output(WRK_WITH_JSON)
    assert r.requests == 87783
    assert r.duration_s == pytest.approx(2.007019)
    assert r.rps == pytest.approx(87783 / 2.007019)
    assert (r.p50_us, r.p90_us, r.p99_us, r.p999_us, r.max_us) == (1017, 1564, 4371, 6378, 7278)
    assert r.bytes_read == 29670404
    assert r.errors == 0


def test_parse_json_errors() -> None:
    text = WRK_WITH_JSON.replace('"status_errors":0', '"status_errors":7').replace(
        '"timeouts":0', '"timeouts":2'
    )
    r = tune.parse_wrk_output(text)
    assert r.status_errors == 7 and r.timeouts == 2
    assert r.socket_errors == 2 and r.errors == 9


def test_parse_text_fallback_units_and_errors() -> None:
    r = tune.parse_wrk_output(WRK_TEXT_ONLY)
    assert r.requests == 97195
    assert r.duration_s == pytest.approx(10.0)
    assert r.rps == pytest.approx(9719.5)
    assert r.p50_us == pytest.approx(958.0)
    assert r.p90_us == pytest.approx(1280.0)
    assert r.p99_us == pytest.approx(1.2e6)
    assert r.p999_us is None  # wrk's own summary has no p99.9
    assert r.bytes_read == int(1.5 * (1 << 30))
    assert (r.connect_errors, r.read_errors, r.write_errors, r.timeouts) == (1, 2, 3, 4)
    assert r.status_errors == 97195
    assert r.errors == 97195 + 10


def test_parse_text_without_latency_distribution() -> None:
    lines = [ln for ln in WRK_TEXT_ONLY.splitlines() if "%  " not in ln or "Latency" in ln]
    r = tune.parse_wrk_output("\n".join(lines))
    assert r.p50_us is None and r.p99_us is None
    assert r.rps == pytest.approx(9719.5)


@pytest.mark.parametrize(
    "text",
    ["", "unable to connect to 127.0.0.1:1 Connection refused\n", "Requests/sec: 10\n"],
)
def test_parse_rejects_non_summaries(text: str) -> None:
    with pytest.raises(ValueError):
        tune.parse_wrk_output(text)


def test_wrk_command() -> None:
    cmd = tune.wrk_command(
        "http://127.0.0.1:1/x",
        duration=3,
        threads=1,
        connections=50,
        script="r.lua",
        headers=["Connection: close"],
    )
    assert cmd == [
        "wrk",
        "-t1",
        "-c50",
        "-d3s",
        "--latency",
        "-H",
        "Connection: close",
        "-s",
        "r.lua",
        "http://127.0.0.1:1/x",
    ]


# --------------------------------------------------------------------------- recommendation


def P(w: int, rps: float, p99_ms: float, **kw: object) -> TunePoint:  # noqa: N802
    return TunePoint(workers=w, rps=rps, p99_us=p99_ms * 1000, requests=int(rps * 10), **kw)  # type: ignore[arg-type]


def test_recommend_smallest_within_3_percent() -> None:
    pts = [P(1, 10000, 5), P(2, 19000, 5), P(3, 19500, 5.5), P(4, 19400, 8)]
    assert recommend(pts) == 2  # 19000 >= 0.97 * 19500 and 5 ms <= 1.2 * 5 ms


def test_recommend_boundaries_are_inclusive() -> None:
    pts = [P(1, 9700, 6), P(2, 10000, 5)]
    assert recommend(pts) == 1  # exactly 97 % and exactly 1.2x


def test_recommend_p99_rule_skips_a_count() -> None:
    pts = [P(1, 10000, 2), P(2, 20000, 3), P(3, 20100, 2.2)]
    assert recommend(pts) == 3  # 2 is fast enough but its p99 is 1.5x the best


def test_recommend_falls_back_to_best_rps() -> None:
    pts = [P(1, 10000, 1), P(2, 20000, 5)]
    assert recommend(pts) == 2


def test_recommend_ignores_failed_and_erroring_runs() -> None:
    pts = [
        P(1, 10000, 5),
        P(2, 30000, 5, errors=1000),  # 1000 of 300000 is 0.33 %: still usable
        P(3, 90000, 1, errors=100000),  # > 1 % errors: ignored
        TunePoint(4, 0.0, math.inf, failed="did not start"),
    ]
    assert recommend(pts) == 2
    assert recommend([pts[3]]) is None
    assert recommend([]) is None


def test_format_table_marks_choice() -> None:
    pts = [P(1, 10000, 5), TunePoint(2, 0.0, math.inf, failed="boom")]
    table = tune.format_table(pts, 1)
    assert "<- recommended" in table.splitlines()[1]
    assert "failed: boom" in table


# --------------------------------------------------------------------------- --write

CONFIG = """\
# my proxy
[server]
listen = ["127.0.0.1:8080"]   # main
  workers = 1            # int or "auto"
keepalive_timeout = "75s"

[log]
access = "off"

[upstreams.app]
servers = ["127.0.0.1:9001"]
workers = 3  # not the server's
keepalive = 32

[[routes]]
path_prefix = "/"
upstream = "app"
"""


def _without_workers(text: str) -> dict[str, object]:
    d = tomllib.loads(text)
    d.get("server", {}).pop("workers", None)
    return d


def test_set_workers_replaces_value_only() -> None:
    out = set_workers(CONFIG, 4)
    assert out == CONFIG.replace("  workers = 1            #", "  workers = 4            #")
    assert tomllib.loads(out)["upstreams"]["app"]["workers"] == 3


def test_set_workers_from_auto_and_to_string() -> None:
    text = CONFIG.replace("workers = 1 ", 'workers = "auto" ')
    assert tomllib.loads(set_workers(text, 2))["server"]["workers"] == 2
    assert tomllib.loads(set_workers(CONFIG, "auto"))["server"]["workers"] == "auto"


def test_set_workers_inserts_into_server_section() -> None:
    text = CONFIG.replace('  workers = 1            # int or "auto"\n', "")
    out = set_workers(text, 3)
    assert out.splitlines()[2] == "workers = 3"
    assert tomllib.loads(out)["server"]["workers"] == 3
    assert _without_workers(out) == _without_workers(text)


def test_set_workers_with_server_subtable_after() -> None:
    text = '[server]\nlisten = ["127.0.0.1:1"]\n\n[server.tls]\nworkers = 9\n'
    out = set_workers(text, 2)
    d = tomllib.loads(out)
    assert d["server"]["workers"] == 2 and d["server"]["tls"]["workers"] == 9


def test_set_workers_appends_section_when_missing() -> None:
    text = '[log]\naccess = "off"'  # no trailing newline either
    out = set_workers(text, 2)
    assert out.startswith(text + "\n")
    assert tomllib.loads(out) == {"log": {"access": "off"}, "server": {"workers": 2}}
    assert tomllib.loads(set_workers("", 5)) == {"server": {"workers": 5}}


def test_set_workers_dotted_top_level_key() -> None:
    text = 'server.workers = 1  # here\nserver.listen = ["127.0.0.1:1"]\n'
    out = set_workers(text, 6)
    assert out.splitlines()[0] == "server.workers = 6  # here"


def test_set_workers_keeps_crlf() -> None:
    text = CONFIG.replace("\n", "\r\n")
    out = set_workers(text, 8)
    assert "\n" not in out.replace("\r\n", "")
    assert tomllib.loads(out)["server"]["workers"] == 8


def test_set_workers_refuses_invalid_toml() -> None:
    with pytest.raises(ValueError):
        set_workers("[server\nworkers = 1\n", 2)


def test_set_workers_refuses_inline_server_table() -> None:
    with pytest.raises(ValueError):
        set_workers("server = { workers = 1 }\n", 2)


def test_write_workers_in_place_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "fp.toml"
    path.write_text(CONFIG)
    os.chmod(path, 0o640)
    tune.write_workers(path, 2)
    assert tomllib.loads(path.read_text())["server"]["workers"] == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["fp.toml"]


# --------------------------------------------------------------------------- TOML writer


def test_dumps_toml_round_trip() -> None:
    data = tomllib.loads(CONFIG)
    data["server"]["pid_file"] = 'C:\\tmp\\"x"\n\t\x01'
    data["server"]["ratio"] = 0.5
    data["server"]["on"] = True
    data["weird key"] = {"a.b": [1, 2], "nested": {"deep": {"x": 1}}, "inline": [{"a": 1}, 2]}
    data["routes"].append({"path_prefix": "/api", "request_headers": {"set": [["X-A", "1"]]}})
    data["empty"] = {}
    assert tomllib.loads(tune.dumps_toml(data)) == data


def test_dumps_toml_rejects_unknown_types() -> None:
    with pytest.raises(TypeError):
        tune.dumps_toml({"x": object()})


# --------------------------------------------------------------------------- listen


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:80", ("127.0.0.1", 80)),
        (":81", ("127.0.0.1", 81)),
        ("[::1]:82", ("::1", 82)),
        ("[::]:83", ("::1", 83)),
    ],
)
def test_parse_listen(text: str, want: tuple[str, int]) -> None:
    assert tune.parse_listen(text) == want


def test_listen_addresses_default_and_string() -> None:
    assert tune.listen_addresses({}) == [("127.0.0.1", 8080)]
    assert tune.listen_addresses({"server": {"listen": "127.0.0.1:1"}}) == [("127.0.0.1", 1)]
    with pytest.raises(ValueError):
        tune.listen_addresses({"server": {"listen": []}})


def test_main_without_wrk_prints_install_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("fastproxy.tune.shutil.which", lambda name, *a, **k: None)
    assert tune.main(["-c", "does-not-matter.toml"]) == 2
    assert capsys.readouterr().out.strip() == "apt-get install -y wrk"


def test_wrkresult_to_dict_has_all_fields() -> None:
    r = WrkResult(requests=1, duration_s=1.0, rps=1.0)
    assert set(r.to_dict()) >= {"requests", "rps", "p99_us", "p999_us", "status_errors"}


# --------------------------------------------------------------------------- bench config


def test_bench_fastproxy_config_is_valid(bench_module: Callable[[str], ModuleType]) -> None:
    """bench/vs_nginx.py's fastproxy config must stay loadable by fastproxy.config."""
    config = pytest.importorskip("fastproxy.config")
    mod = bench_module("vs_nginx")
    for s in mod.SCENARIOS.values():
        data = mod.fastproxy_config(Path("/tmp/x"), 18080, 19001, 2, s)
        cfg = config.Config.from_toml(tune.dumps_toml(data))
        assert cfg.worker_count() == 2
        assert str(cfg.server.listen[0]) == "127.0.0.1:18080"
