#!/usr/bin/env python3
"""Prints format/raw throughput ratios from criterion's estimates (same run).

Usage: cargo bench -p coffer-format --bench throughput && python3 bench/format_ratios.py
"""
import json, os, sys

root = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "criterion", "format_64MiB_single_thread")
def median_ms(name):
    with open(os.path.join(root, name, "new", "estimates.json")) as f:
        return json.load(f)["median"]["point_estimate"] / 1e6

mib = 64
rows = []
for op, raw, fmt in [("encrypt", "raw_aes256gcm_seal_16KiB", "format_encrypt"),
                     ("decrypt", "raw_aes256gcm_open_16KiB", "format_decrypt")]:
    r, f = median_ms(raw), median_ms(fmt)
    rows.append((op, mib / 1024 / (r / 1000), mib / 1024 / (f / 1000), r / f))
print("| operation | raw AES-256-GCM (GiB/s) | format (GiB/s) | format / raw |")
print("|---|---|---|---|")
for op, r, f, ratio in rows:
    print(f"| {op} | {r:.2f} | {f:.2f} | {ratio:.2f} |")
sys.exit(0 if all(x[3] >= 0.90 for x in rows) else 1)
