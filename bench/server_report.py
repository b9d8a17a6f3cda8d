#!/usr/bin/env python3
"""Turns bench/server.sh's results (one JSON line per s3bench run) into the ratios against
nginx, the target checks and the "S3 server" section of docs/benchmarks.md.

With --docs FILE, the section "## S3 server" is replaced (or inserted before "## Fuzzing",
else appended); the rest of the file is kept as it is. The section keeps a table of every
run made so far (one row per run, newest last) between the markers <!-- runs --> and
<!-- /runs -->; the detailed tables show the latest run. Text between <!-- analysis --> and
<!-- /analysis --> (hand-written findings) is kept as it is.
"""
import argparse
import datetime
import json
import platform
import re
import subprocess
import sys

MODES = [("sse-s3", "SSE-S3"), ("sse-kms", "SSE-KMS"), ("sse-c", "SSE-C")]
COLUMNS = [  # (phase, direction, heading)
    ("small", "put", "1 MiB PUT"),
    ("small", "get", "1 MiB GET"),
    ("large", "put", "256 MiB PUT"),
    ("large", "get", "256 MiB GET"),
]
TARGET_RATIO, TARGET_SPREAD, TARGET_RSS_MIB, TARGET_RANGE = 0.60, 0.05, 64, 2.0


def median(v):
    s = sorted(v)
    n = len(s)
    return float("nan") if n == 0 else (s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2)


def latency(v):
    s = sorted(v)
    pick = lambda q: s[round((len(s) - 1) * q)]
    return {"p10_us": pick(0.1), "p50_us": pick(0.5), "p90_us": pick(0.9), "mean_us": sum(s) / len(s)}


def load(path):
    """One dict per label; the phases of several s3bench runs of a label (the interleaved
    rounds) are merged: rates concatenated, CPU per GiB averaged, peaks maxed."""
    runs = {}
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            run = runs.setdefault(r["label"], {"label": r["label"], "loads": []})
            run["loads"].append(r.get("load_start"))
            if r.get("server_rss_at_start_kib") and "rss" in r:
                run["server_rss_at_start_kib"] = r["server_rss_at_start_kib"]
            for ph in ("small", "large"):
                if ph not in r:
                    continue
                m = run.setdefault(ph, {"put_mbps": [], "get_mbps": [], "_cpu": {}, "phase_peak_rss_kib": 0})
                m["put_mbps"] += r[ph]["put_mbps"]
                m["get_mbps"] += r[ph]["get_mbps"]
                for k, v in r[ph].items():
                    if k.endswith("cpu_s_per_gib"):
                        m["_cpu"].setdefault(k, []).append(v)
                m["phase_peak_rss_kib"] = max(m["phase_peak_rss_kib"], r[ph].get("phase_peak_rss_kib") or 0)
            if "range" in r:
                g = run.setdefault("range", {"object_mib": r["range"]["object_mib"], "full": [], "ranged": []})
                g["full"] += r["range"]["full_1mib_all_us"]
                g["ranged"] += r["range"]["range_1mib_all_us"]
            if "rss" in r:
                run["rss"] = r["rss"]
    for run in runs.values():
        for ph in ("small", "large"):
            if ph in run:
                m = run[ph]
                m["put_mbps_median"] = median(m["put_mbps"])
                m["get_mbps_median"] = median(m["get_mbps"])
                m["rounds"] = len(m["put_mbps"])
                for k, v in m.pop("_cpu").items():
                    m[k] = sum(v) / len(v)
        if "range" in run:
            g = run["range"]
            g["reps"] = len(g["full"])
            g["full_1mib"] = latency(g["full"])
            g["range_1mib"] = latency(g["ranged"])
            g["ratio_p50"] = g["range_1mib"]["p50_us"] / g["full_1mib"]["p50_us"]
    return runs


def rate(run, phase, direction):
    return run[phase][f"{direction}_mbps_median"]


def machine():
    model = "?"
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    wanted = [f for f in ("avx512f", "vaes", "vpclmulqdq", "sha_ni") if f in flags]
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    with open("/proc/meminfo") as f:
        mem_gib = int(f.readline().split()[1]) / (1 << 20)
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.split()
    return (f"{cores}-core {model} VM ({', '.join(x.upper().replace('_', '-') for x in wanted)}), "
            f"{mem_gib:.0f} GiB, Linux {platform.release()}, Rust {rustc[1] if len(rustc) > 1 else '?'}")


def fmt_ratio(x):
    return f"{x:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--docs")
    ap.add_argument("--load-before", default="?")
    ap.add_argument("--load-after", default="?")
    ap.add_argument("--nginx-version", default="?")
    ap.add_argument("--source", default="?", help="what the server was built from (git describe)")
    a = ap.parse_args()
    runs = load(a.results)
    ng = runs["nginx"]
    modes = [(k, name) for k, name in MODES if k in runs]
    now = datetime.datetime.now(datetime.timezone.utc)
    out = []
    p = out.append

    # Throughput table.
    p("| server, mode | " + " | ".join(f"{h} (MB/s) | × nginx" for _, _, h in COLUMNS) + " |")
    p("|---|" + "---|---|" * len(COLUMNS))
    p("| nginx, plain HTTP | " + " | ".join(f"{rate(ng, ph, d):.0f} | 1.00" for ph, d, _ in COLUMNS) + " |")
    worst = {}
    for k, name in modes:
        cells = []
        for ph, d, _ in COLUMNS:
            r = rate(runs[k], ph, d) / rate(ng, ph, d)
            worst[(k, ph, d)] = r
            cells.append(f"{rate(runs[k], ph, d):.0f} | {fmt_ratio(r)}")
        p(f"| Coffer {name}, HTTPS | " + " | ".join(cells) + " |")
    info = runs.get("sse-s3-plain-http")
    if info:
        p("| *Coffer SSE-S3, plain HTTP (information: TLS cost)* | " + " | ".join(
            f"*{rate(info, ph, d):.0f}* | *{fmt_ratio(rate(info, ph, d) / rate(ng, ph, d))}*"
            for ph, d, _ in COLUMNS) + " |")
    spreads = {}
    for ph, d, h in COLUMNS:
        vals = [rate(runs[k], ph, d) for k, _ in modes]
        spreads[h] = (max(vals) - min(vals)) / max(vals) if vals else float("nan")
    cells = []
    for _, _, h in COLUMNS:
        cells += ["", f"{spreads[h] * 100:.1f} %"]
    p("| spread of the three modes ((max − min) / max) | " + " | ".join(cells) + " |")
    throughput_table = "\n".join(out)
    out.clear()

    # Server CPU per GiB.
    p("| server, mode | " + " | ".join(f"{h}" for _, _, h in COLUMNS) + " |")
    p("|---|" + "---|" * len(COLUMNS))
    rows = [("nginx (workers)", ng)] + [(f"Coffer {n}", runs[k]) for k, n in modes]
    if info:
        rows.append(("Coffer SSE-S3, plain HTTP", info))
    for name, r in rows:
        p(f"| {name} | " + " | ".join(
            f"{r[ph][f'{d}_server_cpu_s_per_gib']:.2f}" for ph, d, _ in COLUMNS) + " |")
    if "sse-s3" in runs:
        p("| client (s3bench) with Coffer SSE-S3 | " + " | ".join(
            f"{runs['sse-s3'][ph][f'{d}_client_cpu_s_per_gib']:.2f}" for ph, d, _ in COLUMNS) + " |")
    cpu_table = "\n".join(out)
    out.clear()

    # RSS.
    rss_ok = True
    big = next((f"{runs[k]['rss']['object_mib'] / 1024:g} GiB" for k, _ in modes if runs[k].get("rss")), "?")
    p(f"| mode | RSS after start (MiB) | peak during the {big} PUT (MiB) | peak during the {big} GET (MiB) "
      f"| {big} PUT MB/s | GET MB/s | *peak in the 100 × 1 MiB phase* | *peak in the 5 × 256 MiB phase* |")
    p("|---|---|---|---|---|---|---|---|")
    for k, name in modes:
        s = runs[k].get("rss")
        if not s:
            continue
        put = max(s["put_hwm_kib"], s["put_sampled_max_kib"]) / 1024
        get = max(s["get_hwm_kib"], s["get_sampled_max_kib"]) / 1024
        rss_ok &= put <= TARGET_RSS_MIB and get <= TARGET_RSS_MIB
        note = "" if s["put_hwm_reset"] and s["get_hwm_reset"] else " (peak since start: reset refused)"
        later = [runs[k].get(ph, {}).get("phase_peak_rss_kib") for ph in ("small", "large")]
        later = [f"*{x / 1024:.0f}*" if x else "" for x in later]
        start = runs[k].get("server_rss_at_start_kib") or s["baseline_kib"]
        p(f"| {name} | {start / 1024:.0f} | {put:.0f}{note} | {get:.0f} | "
          f"{s['put_mbps']:.0f} | {s['get_mbps']:.0f} | {later[0]} | {later[1]} |")
    rss_table = "\n".join(out)
    rss_obj = next((runs[k]["rss"] for k, _ in modes if runs[k].get("rss")), None)
    out.clear()

    # Range.
    range_ok = True
    p("| server, mode | 1 MiB object GET p50 (µs) | p90 | 1 MiB range GET p50 (µs) | p90 | range / whole (p50) |")
    p("|---|---|---|---|---|---|")
    for name, r, is_mode in [("nginx", ng, False)] + [(f"Coffer {n}", runs[k], True) for k, n in modes]:
        g = r.get("range")
        if not g:
            continue
        if is_mode:
            range_ok &= g["ratio_p50"] <= TARGET_RANGE
        p(f"| {name} | {g['full_1mib']['p50_us']:.0f} | {g['full_1mib']['p90_us']:.0f} | "
          f"{g['range_1mib']['p50_us']:.0f} | {g['range_1mib']['p90_us']:.0f} | {g['ratio_p50']:.2f} |")
    range_table = "\n".join(out)
    range_obj = ng["range"]["object_mib"] if "range" in ng else "?"
    out.clear()

    min_ratio = min(worst.values()) if worst else float("nan")
    max_spread = max(spreads.values()) if spreads else float("nan")
    ratio_ok = min_ratio >= TARGET_RATIO
    spread_ok = max_spread <= TARGET_SPREAD
    yes = lambda ok: "**met**" if ok else "**missed**"
    targets = "\n".join([
        "| target | this run | |",
        "|---|---|---|",
        f"| every mode ≥ {TARGET_RATIO:.2f} × nginx (PUT and GET, both sizes) | lowest {min_ratio:.2f} | {yes(ratio_ok)} |",
        f"| the three modes within {TARGET_SPREAD * 100:.0f} % of each other | widest spread {max_spread * 100:.1f} % | {yes(spread_ok)} |",
        f"| server RSS ≤ {TARGET_RSS_MIB} MiB during a 5 GiB PUT and GET | see the memory table | {yes(rss_ok)} |",
        f"| 1 MiB range GET from a {range_obj} MiB object ≤ {TARGET_RANGE:.0f} × a 1 MiB object GET (p50) | see the latency table | {yes(range_ok)} |",
    ])

    def short(k):
        r = runs[k]
        return "/".join(f"{rate(r, ph, d) / rate(ng, ph, d):.2f}" for ph, d, _ in COLUMNS)

    run_row = (f"| {now:%Y-%m-%d %H:%M} | `{a.source}` | {a.load_before} → {a.load_after} | "
               f"{' / '.join(f'{rate(ng, ph, d):.0f}' for ph, d, _ in COLUMNS)} | "
               + " | ".join(short(k) for k, _ in modes) + " | "
               + ", ".join(f"{max(runs[k]['rss']['put_hwm_kib'], runs[k]['rss']['put_sampled_max_kib'], runs[k]['rss']['get_hwm_kib'], runs[k]['rss']['get_sampled_max_kib']) / 1024:.0f}"
                           for k, _ in modes if runs[k].get("rss"))
               + " | " + ", ".join(f"{runs[k]['range']['ratio_p50']:.2f}" for k, _ in modes if runs[k].get("range"))
               + " |")

    print()
    print(f"S3 server benchmark, {now:%Y-%m-%d %H:%M} UTC, {machine()}; load {a.load_before} → {a.load_after}; "
          f"built from {a.source}")
    print()
    print(throughput_table)
    print()
    print("Server CPU seconds per GiB moved:")
    print(cpu_table)
    print()
    if rss_obj:
        print(f"Server memory, one {rss_obj['object_mib']} MiB object ({rss_obj['part_mib']} MiB parts):")
    print(rss_table)
    print()
    print(range_table)
    print()
    print(targets)

    if not a.docs:
        return
    with open(a.docs) as f:
        doc = f.read()
    m = re.search(r"^## S3 server.*?(?=^## |\Z)", doc, flags=re.S | re.M)
    old_runs = []
    if m:
        rm = re.search(r"<!-- runs -->\n(.*?)<!-- /runs -->", m.group(0), flags=re.S)
        if rm:
            old_runs = [l for l in rm.group(1).splitlines() if l.startswith("| 2")]
    runs_rows = "\n".join(old_runs + [run_row])
    # Hand-written findings between <!-- analysis --> markers survive regeneration.
    analysis = ""
    if m:
        am = re.search(r"<!-- analysis -->\n.*?<!-- /analysis -->\n", m.group(0), flags=re.S)
        if am:
            analysis = "\n" + am.group(0)
    rss_desc = (f"one {rss_obj['object_mib'] // 1024} GiB object written by multipart upload "
                f"({rss_obj['object_mib'] // rss_obj['part_mib']} parts of {rss_obj['part_mib']} MiB) on one "
                f"connection, then read back whole with one GET") if rss_obj else "not measured"
    section = f"""## S3 server (issue 4; targets ≥ 0.60 × nginx, modes within 5 %, RSS ≤ 64 MiB, range ≤ 2 × GET)

`bash bench/server.sh` (needs `apt-get install -y nginx`) — latest run {now:%Y-%m-%d %H:%M} UTC on
{machine()}; load average {a.load_before} before and {a.load_after} after (other builds were
running on this shared 2-core VM unless the load is below 1); server built from `{a.source}`.

Baseline: nginx {a.nginx_version} (Debian), `worker_processes auto` (2), `sendfile on`, access log
off, PUT and DELETE through its DAV module (`client_max_body_size 0`, `client_body_buffer_size
1m`, body temp files and the served directory on tmpfs), plain HTTP on loopback. Coffer: `coffer
server` (release build), HTTPS with its generated CA (TLS 1.3, AES-GCM), data directory on tmpfs,
one server per mode. All servers run at once and the throughput rounds are interleaved (nginx,
SSE-S3, SSE-KMS, SSE-C, plain-HTTP Coffer, then again), so changes in the machine's load hit
all of them alike. Client: `s3bench` (crates/coffer-bench), Rust,
hyper + rustls, one keep-alive connection per client thread, SigV4 with `UNSIGNED-PAYLOAD`
(bodies never hashed), bodies sent from one shared random buffer; the same client and code
paths for nginx (unsigned). Every response must be 2xx and every GET body the right length
(checked in the timed loops); contents and the SSE response headers are checked outside them.
Client and servers share the 2 cores, so the client's own TLS and the server's work compete.

### Throughput (MB/s = 10⁶ B/s; median of the rounds; × nginx in the same run)

100 × 1 MiB objects on 4 client threads ({runs['nginx']['small']['rounds']} rounds); 5 × 256 MiB
objects on 1 thread ({runs['nginx']['large']['rounds']} rounds). Each round PUTs the objects, then
GETs them, then deletes them.

{throughput_table}

Server CPU seconds per GiB moved (user + system, from /proc; nginx = its worker processes):

{cpu_table}

### Server memory ({rss_desc})

Measured first, on a freshly started server for each mode. Peak RSS = the larger of VmHWM (reset through
`/proc/PID/clear_refs` before each phase) and VmRSS sampled every 10 ms. The last two columns
(information, not a target) are the peaks during the throughput rounds, on the other server.

{rss_table}

### Range GET latency (one connection, interleaved, {ng.get('range', {}).get('reps', '?')} of each)

A 1 MiB range at a random (unaligned) offset of a {range_obj} MiB object, against GET of a whole
1 MiB object. nginx is shown for scale only.

{range_table}

### Targets (latest run)

{targets}
{analysis}
### Every run

Ratios × nginx in the order 1 MiB PUT / 1 MiB GET / 256 MiB PUT / 256 MiB GET.

| date (UTC) | source | load before → after | nginx MB/s | SSE-S3 | SSE-KMS | SSE-C | peak RSS MiB (S3, KMS, C) | range / GET (S3, KMS, C) |
|---|---|---|---|---|---|---|---|---|
<!-- runs -->
{runs_rows}
<!-- /runs -->

"""
    if m:
        doc = doc[:m.start()] + section + doc[m.end():]
    else:
        f = re.search(r"^## Fuzzing", doc, flags=re.M)
        doc = doc[:f.start()] + section + doc[f.start():] if f else doc.rstrip("\n") + "\n\n" + section
    with open(a.docs, "w") as f:
        f.write(doc.rstrip("\n") + "\n")
    print(f"\nwrote the S3 server section of {a.docs}")


if __name__ == "__main__":
    sys.exit(main())
