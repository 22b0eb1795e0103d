"""Reads one run of gateway/bench/run.sh and prints the tables (Markdown); draws the plot.

    python report.py RESULTS_DIR [--plot FILE.png]

Figures per target, mode (chat = non-streamed, stream = SSE) and offered rate:
  p50/p90/p99   latency of a whole request (to the last byte), from oha; at fixed rates
                oha's --latency-correction measures from the scheduled send time, so
                queueing in the target counts (no coordinated omission)
  +p50/+p99     that latency minus the direct call's at the same point: what the
                gateway adds
  ok/s          2xx responses per second over the point's duration
  err %         non-2xx or failed requests (timeouts, resets) / all finished requests;
                requests cut off by the end of the point are not counted
  RSS MiB       peak resident memory of the target's process (and its children) sampled
                every 200 ms during the point
"""

import argparse
import json
import os
import re
import sys

ORDER = ["direct", "synco-serve", "synco-sqlite", "synco-postgres", "litellm"]


def load_point(path):
    with open(path) as f:
        data = json.load(f)
    s = data.get("summary", {})
    pct = data.get("latencyPercentiles", {})
    codes = data.get("statusCodeDistribution", {}) or {}
    errs = data.get("errorDistribution", {}) or {}
    ok = sum(n for c, n in codes.items() if str(c).startswith("2"))
    bad_status = sum(n for c, n in codes.items() if not str(c).startswith("2"))
    failed = sum(n for e, n in errs.items() if "deadline" not in e)
    total_time = s.get("total") or 0
    finished = ok + bad_status + failed
    return {
        "p50": pct.get("p50"),
        "p90": pct.get("p90"),
        "p99": pct.get("p99"),
        "ok_per_s": ok / total_time if total_time else 0.0,
        "err_pct": 100.0 * (bad_status + failed) / finished if finished else 100.0,
        "errors": {**{f"HTTP {c}": n for c, n in codes.items() if not str(c).startswith("2")},
                   **{e: n for e, n in errs.items() if "deadline" not in e}},
    }


def read_int(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None


def ms(v):
    return "-" if v is None else f"{v * 1000:.2f}"


def rate_key(r):
    return 10**9 if r == "max" else int(r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--plot")
    a = ap.parse_args()
    d = a.dir

    targets = {}
    if os.path.exists(os.path.join(d, "targets.tsv")):
        for line in open(os.path.join(d, "targets.tsv")):
            name, _pid, note = line.rstrip("\n").split("\t", 2)
            targets[name] = note
    points = {}
    for fn in os.listdir(d):
        m = re.match(r"oha-(.+)-(chat|stream)-(\d+|max)\.json$", fn)
        if not m:
            continue
        t, mode, rate = m.groups()
        try:
            p = load_point(os.path.join(d, fn))
        except (OSError, ValueError) as e:
            p = {"p50": None, "p90": None, "p99": None, "ok_per_s": 0.0, "err_pct": 100.0,
                 "errors": {"no oha output": str(e)}}
        base = os.path.join(d, fn[:-5])
        rss = read_int(base + ".rss")
        p["rss_mib"] = rss / 1024 if rss else None
        points[(t, mode, rate)] = p

    out = []
    if os.path.exists(os.path.join(d, "machine.txt")):
        out.append("```")
        out.append(open(os.path.join(d, "machine.txt")).read().rstrip())
        out.append("```")
        out.append("")
    out.append("Targets:")
    out.append("")
    for t in sorted(targets, key=lambda t: ORDER.index(t) if t in ORDER else 99):
        out.append(f"- `{t}`: {targets[t]}")
    skipped = os.path.join(d, "skipped.txt")
    if os.path.exists(skipped):
        for line in open(skipped):
            out.append(f"- not measured: {line.strip()}")
    out.append("")

    modes = sorted({k[1] for k in points}, key=lambda m: 0 if m == "chat" else 1)
    rates = sorted({k[2] for k in points}, key=rate_key)
    tnames = sorted({k[0] for k in points}, key=lambda t: ORDER.index(t) if t in ORDER else 99)
    for mode in modes:
        title = "non-streamed chat completions" if mode == "chat" else "streamed chat completions (SSE, usage chunk)"
        out.append(f"### {title}")
        out.append("")
        out.append("| offered req/s | target | p50 ms | p90 ms | p99 ms | +p50 ms | +p99 ms | ok/s | err % | RSS MiB |")
        out.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for rate in rates:
            direct = points.get(("direct", mode, rate))
            for t in tnames:
                p = points.get((t, mode, rate))
                if p is None:
                    continue
                add50 = add99 = "-"
                if t != "direct" and direct and p["p50"] is not None and direct["p50"] is not None:
                    add50 = f"{(p['p50'] - direct['p50']) * 1000:+.2f}"
                    add99 = f"{(p['p99'] - direct['p99']) * 1000:+.2f}"
                rss = "-" if p["rss_mib"] is None else f"{p['rss_mib']:.0f}"
                out.append(
                    f"| {rate} | {t} | {ms(p['p50'])} | {ms(p['p90'])} | {ms(p['p99'])} | {add50} | {add99} "
                    f"| {p['ok_per_s']:.0f} | {p['err_pct']:.2f} | {rss} |"
                )
        out.append("")
    errs = [(k, p["errors"]) for k, p in sorted(points.items()) if p["errors"]]
    if errs:
        out.append("Errors seen:")
        out.append("")
        for (t, mode, rate), e in errs:
            out.append(f"- {t} {mode} @ {rate}: " + ", ".join(f"{k}: {v}" for k, v in e.items()))
        out.append("")

    # governance
    pol = os.path.join(d, "policies.txt")
    op = os.path.join(d, "operator.txt")
    if os.path.exists(pol) or os.path.exists(op):
        out.append("### governance path")
        out.append("")
        out.append("| benchmark | figure |")
        out.append("|---|---|")
        if os.path.exists(pol):
            text = open(pol).read()
            found = False
            for m in re.finditer(r"^(\S+)\s*\n?\s*time:\s+\[([^\]]+)\]", text, re.M):
                vals = [f"{v} {u}" for v, u in re.findall(r"([\d.]+)\s*(\S+)", m.group(2))]
                lo, est, hi = (vals + ["?", "?", "?"])[:3]
                out.append(f"| `{m.group(1)}` (criterion low / estimate / high) | {lo} / **{est}** / {hi} |")
                found = True
            if not found:
                out.append("| policies benches | failed or not run: see policies.txt |")
        if os.path.exists(op):
            text = open(op).read()
            m = re.search(r"^BENCH .*$", text, re.M)
            prof = re.search(r"^profile: (\S+)", text, re.M)
            if m:
                out.append(f"| operator: proposal close -> quotas in force ({prof.group(1) if prof else '?'} profile) | `{m.group(0)}` |")
            else:
                first = text.strip().splitlines()[-1] if text.strip() else "no output"
                out.append(f"| operator: proposal close -> quotas in force | not measured: {first[:200]} |")
        out.append("")

    print("\n".join(out))

    if a.plot and points:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fixed = [r for r in rates if r != "max"]
        fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.5), squeeze=False)
        for ax, mode in zip(axes[0], modes):
            for i, t in enumerate(tnames):
                xs, p50, p99 = [], [], []
                for r in fixed:
                    p = points.get((t, mode, r))
                    if p and p["p50"] is not None and p["err_pct"] < 50:
                        xs.append(int(r))
                        p50.append(p["p50"] * 1000)
                        p99.append(p["p99"] * 1000)
                color = f"C{i}"
                ax.plot(xs, p50, "o-", color=color, label=f"{t} p50")
                ax.plot(xs, p99, "x--", color=color, alpha=0.7, label=f"{t} p99")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("offered request rate (req/s)")
            ax.set_ylabel("latency to last byte (ms)")
            ax.set_title(("non-streamed" if mode == "chat" else "streamed") + " chat, mock upstream latency fixed")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle("Latency against request rate (points with >= 50% errors left out)", fontsize=10)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=120)
        print(f"plot: {a.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
