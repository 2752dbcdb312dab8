#!/usr/bin/env python3
"""The table and the plot of crates/bench/compare.sh, from the load generator's JSON lines.

    python3 benches/report.py results.jsonl [--machine machine.txt] [--markdown table.md]
                              [--png compare.png]

Each figure is the median over the rounds. A ratio divides a server's figure by a peer's in
the same round (the two were measured minutes apart at most) and is the median of those
per-round ratios: below 1 means cheaper than that peer. The table needs only the standard library; the plot
needs matplotlib (Debian: python3-matplotlib).
"""

import argparse
import json
import statistics
import sys
from collections import defaultdict

ORDER = ["crate", "extension", "extension-nolayer", "bare", "bare-axum", "nginx", "go",
         "in-memory rustls", "in-memory acceptor"]
FLOOR = "bare"
PEERS = ["bare", "nginx", "go", "crate"]
PLOTTED = ["crate", "extension", "bare", "nginx", "go"]
DESCRIPTION = {
    "crate": "crate_server: MtlsServer + TlsConfig + ClientCertLayer::require() + 1 rule, static answer",
    "extension": "tower-mtls `extension` example, ClientCertLayer + 1 rule",
    "extension-nolayer": "the same without the layer",
    "bare": "tokio-rustls + hyper, static answer (the floor)",
    "bare-axum": "tokio-rustls + hyper + the extension's axum router",
    "nginx": "nginx, ssl_verify_client on",
    "go": "Go net/http, RequireAndVerifyClientCert",
    "in-memory rustls": "benches/handshake.rs, mtls/p256 rustls/bare: the handshake alone, no sockets",
    "in-memory acceptor": "benches/handshake.rs, mtls/p256 acceptor/crate: the crate's acceptor, no sockets",
}
METRICS = [
    # key, title, unit, mode, protocol, field
    ("handshake", "server CPU per handshake", "µs", "handshake", "http/1.1", "server_cpu_us_per_op"),
    ("h1", "server CPU per request, HTTP/1.1 keep-alive", "µs", "keepalive", "http/1.1", "server_cpu_us_per_op"),
    ("h2", "server CPU per request, HTTP/2", "µs", "keepalive", "h2", "server_cpu_us_per_op"),
    ("idle", "server memory per idle mTLS connection", "KiB", "idle", "http/1.1", "kib_per_connection"),
]


def load(path):
    runs = defaultdict(list)  # (server, mode, protocol) -> [record]
    busy = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            record = json.loads(line)
            if record.get("mode") == "background":
                busy.append(record["busy_percent"])
                continue
            runs[(record["server"], record["mode"], record.get("protocol", "http/1.1"))].append(record)
    return runs, busy


def median(records, field):
    values = [r[field] for r in records if r.get(field) is not None]
    return statistics.median(values) if values else None


def servers_in(runs):
    present = {server for server, _, _ in runs}
    return [s for s in ORDER if s in present] + sorted(present - set(ORDER))


def figures(runs):
    """{metric key: {server: {value, rate, p50, p99, util, client, errors, rounds}}}"""
    out = {}
    for key, _, _, mode, protocol, field in METRICS:
        out[key] = {}
        for server in servers_in(runs):
            records = runs.get((server, mode, protocol), [])
            if not records:
                continue
            out[key][server] = {
                "value": median(records, field),
                "by_round": {r["round"]: r[field] for r in records if r.get(field) is not None},
                "system": median(records, "server_system_share"),
                "rate": median(records, "rate"),
                "p50": median(records, "p50_us"),
                "p99": median(records, "p99_us"),
                "util": median(records, "server_util"),
                "client": median(records, "client_util"),
                "errors": sum(r.get("errors", 0) for r in records),
                "rounds": len(records),
                "spread": spread(records, field),
            }
    return out


def spread(records, field):
    """(max - min) / median over the rounds, as a percentage: how far to trust a ratio."""
    values = [r[field] for r in records if r.get(field) is not None]
    if len(values) < 2 or not statistics.median(values):
        return None
    return 100.0 * (max(values) - min(values)) / statistics.median(values)


def fmt(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(a, b):
    """Median of the per-round ratios of two figures (dicts as built by `figures`)."""
    if not a or not b or a.get("value") is None or not b.get("value"):
        return None
    rounds = [r for r in a["by_round"] if b["by_round"].get(r)]
    if not rounds:
        return a["value"] / b["value"]
    return statistics.median(a["by_round"][r] / b["by_round"][r] for r in rounds)


def table(data, markdown):
    peers = [p for p in PEERS if any(p in data[k] for k in data)]
    head = ["metric", "server", "value"] + [f"×{p}" for p in peers] + [
        "±rounds", "kernel", "rate/s", "p50", "p99", "server core", "client core"]
    rows = []
    for key, title, unit, *_ in METRICS:
        for i, (server, f) in enumerate(data[key].items()):
            row = [f"{title} ({unit})" if i == 0 else "", server, fmt(f["value"])]
            row += [fmt(ratio(f, data[key].get(p)), 2) for p in peers]
            row.append("-" if f["spread"] is None else f"{f['spread']:.0f}%")
            row.append("-" if f["system"] is None else f"{100 * f['system']:.0f}%")
            if key == "idle" or server.startswith("in-memory"):
                row += ["-"] * 5
            else:
                row += [
                    fmt(f["rate"], 0),
                    fmt_us(f["p50"]),
                    fmt_us(f["p99"]),
                    "-" if f["util"] is None else f"{100 * f['util']:.0f}%",
                    "-" if f["client"] is None else f"{100 * f['client']:.0f}%",
                ]
            if f["errors"]:
                row[1] += f" ({f['errors']} errors)"
            rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def fmt_us(us):
    if us is None:
        return "-"
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def findings(data):
    """The comparisons the targets are stated in."""
    out = []

    def pair(key, a, b):
        return ratio(data.get(key, {}).get(a), data.get(key, {}).get(b))

    def value(key, server):
        return data.get(key, {}).get(server, {}).get("value")

    for key, what in [("handshake", "per handshake"), ("h1", "per HTTP/1.1 request"),
                      ("h2", "per HTTP/2 request"), ("idle", "per idle connection")]:
        for a, b, label in [
            ("crate", "bare", "crate / bare (like for like: the floor)"),
            ("crate", "in-memory rustls", "crate / the in-memory rustls handshake"),
            ("extension", "bare", "extension / bare (the floor)"),
            ("extension-nolayer", "bare-axum", "extension without the layer / bare serving the same axum app"),
            ("extension", "extension-nolayer", "extension / extension without the layer"),
            ("extension", "nginx", "extension / nginx"),
            ("extension", "go", "extension / go"),
            ("bare", "in-memory rustls", "bare / the in-memory rustls handshake"),
            ("extension", "in-memory rustls", "extension / the in-memory rustls handshake"),
        ]:
            r = pair(key, a, b)
            if r is not None:
                line = f"{label}, {what}: {r:.3f}"
                if a == "extension" and b == "extension-nolayer":
                    line += f" ({value(key, a) - value(key, b):+.2f} µs)"
                out.append(line)
    return out


def plot(data, png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing: no plot (apt-get install python3-matplotlib)", file=sys.stderr)
        return
    servers = [s for s in PLOTTED if any(s in data[k] for k in data)]
    colors = {"extension": "#d9534f", "bare": "#5b9bd5", "nginx": "#70ad47", "go": "#7f7f7f"}
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))

    def bars(ax, key, offset=0.0, width=0.8, hatch=None):
        xs, ys = [], []
        for i, s in enumerate(servers):
            v = data[key].get(s, {}).get("value")
            if v is not None:
                xs.append(i + offset)
                ys.append(v)
        ax.bar(xs, ys, width=width, hatch=hatch,
                       color=[colors.get(s, "#999999") for s in servers if data[key].get(s, {}).get("value") is not None],
                       edgecolor="black", linewidth=0.5)
        for x, y in zip(xs, ys):
            ax.annotate(f"{y:.0f}" if y >= 20 else f"{y:.1f}", (x, y), ha="center", va="bottom", fontsize=8)

    bars(axes[0], "handshake")
    axes[0].set_title("server CPU per mTLS handshake (µs)")
    bars(axes[1], "h1", -0.2, 0.4)
    bars(axes[1], "h2", 0.2, 0.4, hatch="//")
    axes[1].set_title("server CPU per keep-alive request (µs)")
    from matplotlib.patches import Patch
    axes[1].legend(handles=[Patch(facecolor="white", edgecolor="black", label="HTTP/1.1"),
                            Patch(facecolor="white", edgecolor="black", hatch="//", label="HTTP/2")],
                   fontsize=8)
    bars(axes[2], "idle")
    axes[2].set_title("server memory per idle mTLS connection (KiB)")
    for ax in axes:
        ax.set_xticks(range(len(servers)))
        ax.set_xticklabels(servers)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.12)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("TLS 1.3 mutual TLS, ECDSA P-256, X25519, tickets off; server on one core, load on the other",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"plot: {png}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--machine")
    parser.add_argument("--markdown")
    parser.add_argument("--png")
    args = parser.parse_args()

    runs, busy = load(args.results)
    data = figures(runs)
    if args.machine:
        print(open(args.machine).read().rstrip())
    if busy:
        print(f"machine busy before each server started: max {max(busy)}% (median {statistics.median(busy)}%)")
    print()
    for server in servers_in(runs):
        print(f"  {server:<18} {DESCRIPTION.get(server, '')}")
    print()
    print(table(data, markdown=False))
    print()
    for line in findings(data):
        print(line)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table(data, markdown=True) + "\n\n")
            f.write("\n".join(f"- {line}" for line in findings(data)) + "\n")
    if args.png:
        plot(data, args.png)


if __name__ == "__main__":
    main()
