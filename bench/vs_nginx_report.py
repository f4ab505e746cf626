"""bench/vs_nginx.py's results: the per-scenario summary of its rounds (median
and spread), the machine description, and the reports written from them
(results.md, results.png, the summary printed at the end)."""

from __future__ import annotations

import contextlib
import platform
import statistics
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Median and spread over the rounds.  A column no round has (wrk's report
    line missing, say) is None rather than an error that would lose the run."""
    if not rounds:
        return None

    def col(key: str) -> list[float]:
        return [r[key] for r in rounds if r.get(key) is not None]

    def med(key: str) -> float | None:
        xs = col(key)
        return statistics.median(xs) if xs else None

    def top(key: str) -> float | None:
        xs = col(key)
        return max(xs) if xs else None

    rps = col("rps")
    processes = top("processes")
    return {
        "rounds": len(rounds),
        "rps_median": med("rps"),
        "rps_min": min(rps) if rps else None,
        "rps_max": max(rps) if rps else None,
        "p50_us": med("p50_us"),
        "p99_us": med("p99_us"),
        "p999_us": med("p999_us"),
        "cpu_s_per_1k": med("cpu_s_per_1k"),
        "cpu_pct": med("cpu_pct"),
        "peak_rss_mib": top("peak_rss_mib"),
        "errors": int(sum(col("errors"))),
        "requests": int(sum(col("requests"))),
        "origin_cpu_pct": med("origin_cpu_pct"),
        "wrk_cpu_pct": med("wrk_cpu_pct"),
        "other_cpu_pct": med("other_cpu_pct"),
        "other_cpu_pct_max": top("other_cpu_pct"),
        "proxy_core_other_pct": med("proxy_core_other_pct"),
        "processes": int(processes) if processes is not None else None,
    }


# --------------------------------------------------------------------------- machine info


def first_line(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (r.stdout or "") + (r.stderr or "")
    return text.strip().splitlines()[0] if text.strip() else ""


def cpu_model() -> str:
    try:
        r = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10)
        for line in r.stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


# --------------------------------------------------------------------------- reports

FAIRNESS = (
    "Cores: with workers=1 each proxy is pinned to CPU {proxy_cpu} (`taskset -c {proxy_cpu}`)"
    " and wrk, the origin nginx and this script to CPU {load_cpu}. Both proxies therefore"
    " get one whole core that no other process of the benchmark runs on (other programs"
    " on the machine can; the report measures how much), and the load side (wrk and"
    " origin, same binaries, same settings, same core) is identical for both; they never"
    " run at the same time (rounds alternate), so neither can steal the other's core."
    " What differs between the two columns is only the proxy. When the proxy core is"
    " saturated (proxy CPU % near 100) req/s measures the proxy's per-core throughput;"
    " when it is not, something else was the limit (the load core, other programs on the"
    " machine) and the ratio understates the difference; CPU s/1k req stays comparable"
    " either way. With workers=N nothing is"
    " pinned (the default deployment): the proxy's workers, wrk and the origin share all"
    " cores under the kernel scheduler, identically for both proxies, and that run"
    " shows how each proxy does when it has to compete for CPU with its neighbours."
)


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"


def _num(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}"


def column_label(m: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """What ran in fastproxy's place: (table label, chart label, warning for the top
    of the report, or None when it was fastproxy)."""
    if m["standin"]:
        return (
            "fastproxy*",
            "fastproxy (stand-in: nginx)",
            '**HARNESS VALIDATION RUN: the "fastproxy" column is NOT fastproxy but a'
            f" stand-in (`{m['fastproxy_cmd']}`, an nginx proxy configured exactly like the"
            " nginx column). Ratios should be ~1.00; the spread shows the noise floor.**",
        )
    if m.get("floor") or str(m.get("fastproxy_version")).startswith("(C floor"):
        return (
            "floor",
            "C floor (bench/c/epoll_floor.c)",
            "**FLOOR RUN: the first column is NOT fastproxy but bench/c/epoll_floor.c, a C"
            " epoll server answering each read with the scenario's response, without"
            " parsing: the least any server can spend per request on this machine. A"
            " target ratio below floor/nginx cannot be met by a server that reads and"
            " sends once per request.**",
        )
    if m.get("fastproxy_version") == "(custom command)":
        return (
            "fastproxy*",
            "custom command",
            f'**The "fastproxy*" column is the command `{m["fastproxy_cmd"]}`.**',
        )
    return "fastproxy", "fastproxy", None


def results_markdown(res: dict[str, Any]) -> str:
    m = res["meta"]
    fp_label, _, banner = column_label(m)
    lines = [
        f"# {fp_label} vs nginx, end to end ({m['date'][:10]})",
        "",
    ]
    if banner:
        lines += [banner, ""]
    lines += [
        f"- machine: {m['cpu_model']}, {m['cpus']} CPUs, Linux {m['kernel']}; other"
        f" processes used {m.get('background_cpu_pct_before', 0):.0f} % of a core just before"
        " the run",
        f"- date: {m['date']}",
        f"- command: `{m['command']}`",
        f"- {m['nginx_version']}; {m['wrk_version'].split(' [')[0]}; fastproxy:"
        f" {m['fastproxy_version'] or '-'}",
        f"- load: wrk -t{m['threads']} -c{m['connections']} --latency, {m['duration']} s per"
        f" round, {m['rounds']} round(s) per proxy interleaved (fastproxy, nginx, ...) after"
        f" {m['warmup']} s warm-up of each",
        "- req/s: median over rounds, spread = min-max; p50/p99/p99.9: median over rounds"
        " of wrk's per-run percentiles; CPU s/1k req: proxy process tree (master + workers)"
        " utime+stime from /proc per 1,000 requests, median; proxy CPU %: same, 100 = one"
        " core; peak RSS: max over rounds of the sum of VmRSS over the tree, sampled every"
        " 0.2 s; errors: status > 399 + socket errors, all rounds",
        "",
        FAIRNESS.format(**m["pinning"]),
        "",
        "| scenario | w | proxy | req/s | spread (min-max) | p50 ms | p99 ms | p99.9 ms"
        " | CPU s/1k req | proxy CPU % | peak RSS MiB | errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sc in res["scenarios"]:
        for name in ("fastproxy", "nginx"):
            s = sc["summary"].get(name)
            label = fp_label if name == "fastproxy" else name
            if s is None:
                what = "not run" if name == "nginx" and sc.get("fastproxy_only") else "failed"
                lines.append(
                    f"| {sc['name']} | {sc['workers']} | {label} | {what} | | | | | | | | |"
                )
                continue
            lines.append(
                f"| {sc['name']} | {sc['workers']} | {label} | {s['rps_median']:.0f}"
                f" | {s['rps_min']:.0f}-{s['rps_max']:.0f} | {_ms(s['p50_us'])}"
                f" | {_ms(s['p99_us'])} | {_ms(s['p999_us'])} | {_num(s['cpu_s_per_1k'], '.4f')}"
                f" | {_num(s['cpu_pct'], '.0f')} | {_num(s['peak_rss_mib'], '.1f')}"
                f" | {s['errors']} |"
            )
    lines += [
        "",
        f"Ratios {fp_label}/nginx (req/s: above 1 = {fp_label} faster; CPU per request:"
        f" below 1 = {fp_label} cheaper):",
        "",
        "| scenario | w | req/s ratio | CPU/req ratio | p99 ratio | wrk + origin CPU %"
        " | other CPU % | other CPU % on the proxy core |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sc in res["scenarios"]:
        f, n = sc["summary"].get("fastproxy"), sc["summary"].get("nginx")
        both = [x for x in (f, n) if x]
        load = " / ".join(f"{x['wrk_cpu_pct']:.0f} + {x['origin_cpu_pct']:.0f}" for x in both)
        other = " / ".join(
            f"{x['other_cpu_pct']:.0f} (max {x['other_cpu_pct_max']:.0f})" for x in both
        )
        core = " / ".join(
            "-" if x["proxy_core_other_pct"] is None else f"{x['proxy_core_other_pct']:.0f}"
            for x in both
        )
        rps = _ratio(f and f["rps_median"], n and n["rps_median"])
        cpu = _ratio(f and f["cpu_s_per_1k"], n and n["cpu_s_per_1k"])
        p99 = _ratio(f and f["p99_us"], n and n["p99_us"])
        lines.append(
            f"| {sc['name']} | {sc['workers']} | {rps} | {cpu} | {p99} | {load or '-'}"
            f" | {other or '-'} | {core or '-'} |"
        )
    lines += [
        "",
        "wrk + origin CPU % and other CPU % are medians over the fastproxy / nginx rounds"
        " (100 = one core). Other CPU % is the machine's busy time (/proc/stat, including"
        " steal) minus proxy, origin, wrk and this script: anything else that ran during"
        " the rounds (kernel threads such as ksoftirqd included); on the proxy core: the"
        " same for the pinned proxy's own core (w=1)."
        " Above ~10 % the numbers are noisy; prefer the CPU s/1k req ratio.",
    ]
    notes = []
    idle = [
        f"{sc['name']} ("
        + ", ".join(
            f"{k} {v['cpu_pct']:.0f} %" for k, v in sc["summary"].items() if v["cpu_pct"] < 90
        )
        + ")"
        for sc in res["scenarios"]
        if sc["pinned"] and any(v["cpu_pct"] < 90 for v in sc["summary"].values())
    ]
    if idle:
        notes.append(
            "- w=1 runs whose proxy core was less than 90 % busy, so the proxy was not the"
            " only bottleneck (load core, latency, or other programs; see the columns"
            " above) and req/s ratios understate differences; compare CPU s/1k req: "
            + "; ".join(idle)
            + "."
        )
    for sc in res["scenarios"]:
        if sc.get("error"):
            notes.append(f"- {sc['name']} w={sc['workers']}: FAILED: {sc['error'].splitlines()[0]}")
        for name in ("fastproxy", "nginx"):
            s = sc["summary"].get(name)
            if s and name == "fastproxy" and sc["workers"] > 1 and s["processes"] < 2:
                notes.append(
                    f"- {sc['name']} w={sc['workers']}: fastproxy ran as ONE process although"
                    f" workers = {sc['workers']} (this build runs a single worker), while nginx"
                    f" ran {sc['summary'].get('nginx', {}).get('processes', '?')} (master +"
                    " workers)."
                )
            if s and s["errors"]:
                notes.append(f"- {sc['name']} w={sc['workers']} {name}: {s['errors']} errors.")
    for sc in res["scenarios"]:
        if sc.get("compression_ratio"):
            notes.append(
                f"- {sc['name']} w={sc['workers']}: compressed size / original: "
                + ", ".join(f"{k} {v:.3f}" for k, v in sc["compression_ratio"].items())
                + "."
            )
    if notes:
        lines += ["", "Notes:", "", *notes]
    lines += ["", "Scenarios:", ""]
    for name, title in res["meta"]["scenario_titles"].items():
        lines.append(f"- `{name}`: {title}")
    return "\n".join(lines) + "\n"


def write_chart(res: dict[str, Any], path: Path) -> bool:
    """Grouped bars per scenario, fastproxy vs nginx: req/s (whiskers min-max) and proxy
    CPU per request.  Log y axes, since 1 MiB bodies and 100 B bodies differ by 30x;
    the fastproxy/nginx ratio is written over each pair."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("pip install matplotlib", file=sys.stderr)
        return False
    m = res["meta"]
    scs = [sc for sc in res["scenarios"] if sc["summary"]]
    if not scs:
        return False
    labels = [f"{sc['name']}\nw={sc['workers']}" for sc in scs]
    fp_label = column_label(m)[1]
    series = [("fastproxy", fp_label, "#1f77b4"), ("nginx", "nginx", "#2ca02c")]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, 1.1 * len(scs) + 3), 9))
    width = 0.38
    xs = list(range(len(scs)))
    tops: dict[str, list[float]] = {"rps": [0.0] * len(scs), "cpu": [0.0] * len(scs)}
    for i, (key, label, color) in enumerate(series):
        off = [x + (i - 0.5) * width for x in xs]
        med, lo, hi, cpu = [], [], [], []
        for j, sc in enumerate(scs):
            s = sc["summary"].get(key)
            med.append(s["rps_median"] if s else float("nan"))
            lo.append(s["rps_median"] - s["rps_min"] if s else 0)
            hi.append(s["rps_max"] - s["rps_median"] if s else 0)
            # X s per 1000 requests = X ms per request = 1000 X us per request
            cpu.append(s["cpu_s_per_1k"] * 1000 if s else float("nan"))
            if s:
                tops["rps"][j] = max(tops["rps"][j], s["rps_max"])
                tops["cpu"][j] = max(tops["cpu"][j], cpu[-1])
        ax1.bar(off, med, width, yerr=[lo, hi], capsize=3, label=label, color=color)
        ax2.bar(off, cpu, width, label=label, color=color)
    for j, sc in enumerate(scs):
        f, n = sc["summary"].get("fastproxy"), sc["summary"].get("nginx")
        if f and n:
            for ax, key, top in (
                (ax1, "rps_median", tops["rps"][j]),
                (ax2, "cpu_s_per_1k", tops["cpu"][j]),
            ):
                ax.annotate(
                    f"x{f[key] / n[key]:.2f}",
                    (xs[j], top),
                    xytext=(0, 4),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                )
    ax1.set_ylabel("requests/s (median; whiskers min-max)")
    ax2.set_ylabel("proxy CPU per request (µs, median)")
    for ax in (ax1, ax2):
        ax.set_yscale("log")
        ax.margins(y=0.15)
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, fontsize=8)
        ax.grid(axis="y", which="both", alpha=0.25)
    ax1.set_title(f"throughput, higher is better (x = {fp_label} / nginx; log scale)", fontsize=10)
    ax2.set_title(
        f"CPU per request of the proxy process tree, lower is better (x = {fp_label} / nginx)",
        fontsize=10,
    )
    title = (
        f"{column_label(m)[0]} vs nginx, reverse proxy on loopback - {m['date'][:10]}\n"
        f"{m['cpu_model']}, {m['cpus']} CPUs; wrk -t{m['threads']} -c{m['connections']},"
        f" {m['duration']} s x {m['rounds']} rounds per proxy; w=1 pinned, w={m['cpus']} not"
    )
    if m["standin"]:
        title += "\nHARNESS VALIDATION: the fastproxy bars are an nginx stand-in"
    fig.suptitle(title, fontsize=10, x=0.45)
    handles, names = ax1.get_legend_handles_labels()
    fig.legend(handles, names, loc="upper right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def print_summary(res: dict[str, Any]) -> None:
    print(
        f"{'scenario':<12}{'w':>2}  {'fastproxy r/s':>13}  {'nginx r/s':>10}  {'ratio':>6}"
        f"  {'CPU/req ratio':>13}  {'p99 fp/ng ms':>14}"
    )
    for sc in res["scenarios"]:
        f, n = sc["summary"].get("fastproxy"), sc["summary"].get("nginx")
        if f and sc.get("fastproxy_only"):
            print(
                f"{sc['name']:<12}{sc['workers']:>2}  {f['rps_median']:>13.0f}"
                f"  {'(fastproxy only)':>34}  {_ms(f['p99_us']):>6}"
            )
            continue
        if not f or not n:
            print(
                f"{sc['name']:<12}{sc['workers']:>2}  FAILED: "
                f"{(sc.get('error') or 'no data').splitlines()[0]}"
            )
            continue
        print(
            f"{sc['name']:<12}{sc['workers']:>2}  {f['rps_median']:>13.0f}"
            f"  {n['rps_median']:>10.0f}"
            f"  {f['rps_median'] / n['rps_median']:>6.2f}"
            f"  {f['cpu_s_per_1k'] / n['cpu_s_per_1k']:>13.2f}"
            f"  {_ms(f['p99_us']):>6}/{_ms(n['p99_us']):<7}"
        )
