#!/usr/bin/env python3
"""Prints the BENCHMARKS.md table from criterion's saved estimates.

    benches/table.py [CRITERION_DIR]

CRITERION_DIR defaults to $CARGO_TARGET_DIR/criterion (or target/criterion).
Each row is one of ours next to its anchor from the same run; the figure is
criterion's point estimate (the slope of the linear fit, else the mean), with
the 95 % confidence interval.
"""

import json
import os
import sys

# (ours, anchor or None, label)
ROWS = [
    ("manual_clock/allow/ours", "manual_clock/allow/governor", "1. allow, manual clock, fixed instant"),
    ("manual_clock/allow_advancing/ours", "manual_clock/allow_advancing/governor",
     "1. allow, manual clock advanced 1 µs per call"),
    ("manual_clock/deny/ours", "manual_clock/deny/governor", "1. deny, manual clock"),
    ("real_clock/allow/ours_quanta", "real_clock/allow/governor_quanta", "2. allow, quanta clock (both)"),
    ("real_clock/allow/ours_std", "real_clock/allow/governor_monotonic",
     "2. allow, std Instant (governor MonotonicClock)"),
    ("real_clock/allow/ours_tokio", "real_clock/allow/governor_monotonic",
     "2. allow, tokio Instant (governor MonotonicClock)"),
    ("real_clock/deny/ours_quanta", "real_clock/deny/governor_quanta", "2. deny, quanta clock (both)"),
    ("real_clock/deny/ours_std", "real_clock/deny/governor_monotonic",
     "2. deny, std Instant (governor MonotonicClock)"),
    ("real_clock/deny/ours_tokio", "real_clock/deny/governor_monotonic",
     "2. deny, tokio Instant (governor MonotonicClock)"),
    ("real_clock/clock/quanta", None, "2. clock read alone: quanta"),
    ("real_clock/clock/std", None, "2. clock read alone: std Instant"),
    ("real_clock/clock/tokio", None, "2. clock read alone: tokio Instant"),
    ("classified/decision/ours", "classified/decision/governor_keyed",
     "3. full decision from (method, path) (governor: keyed by (method, path))"),
    ("classified/classify/ours", None, "3. classify alone"),
    ("classified/remaining_req/ours", None, "3. Remaining-Req parse alone"),
    ("two_threads/allow_manual/ours", "two_threads/allow_manual/governor", "4. two threads, allow, manual clock"),
    ("two_threads/deny_manual/ours", "two_threads/deny_manual/governor", "4. two threads, deny, manual clock"),
    ("two_threads/allow_quanta/ours", "two_threads/allow_quanta/governor", "4. two threads, allow, quanta clock"),
    ("two_threads/deny_quanta/ours", "two_threads/deny_quanta/governor", "4. two threads, deny, quanta clock"),
    ("async_acquire/uncontended/ours", "async_acquire/uncontended/governor",
     "5. uncontended acquire().await + drop permit (governor: until_ready)"),
    ("async_acquire/uncontended_permit_forgotten/ours", "async_acquire/uncontended/governor",
     "5. same, permit forgotten (no on_unreported)"),
    ("async_acquire/uncontended_reported/ours", "async_acquire/uncontended/governor",
     "5. same, permit reported (200)"),
    ("async_acquire/uncontended_classified/ours", "async_acquire/uncontended/governor",
     "5. same, acquire(method, path) + drop permit"),
    ("async_acquire/cancelled_waiter/ours", "async_acquire/cancelled_waiter/governor",
     "5. cancelled waiter: build, poll once (sleeps), drop"),
    ("simulator/endurance-24h/ours", "simulator/endurance-24h/none",
     "6. simulator, endurance-24h, per simulated request (anchor: policy `none`, no limiter)"),
]


def load(root):
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            meta = json.load(f)
        full_id = meta["full_id"]
        # A run of many requests: report per request.
        per = (meta.get("throughput") or {}).get("Elements") or 1
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        e = est.get("slope") or est["mean"]
        ci = e["confidence_interval"]
        found[full_id] = (e["point_estimate"] / per, ci["lower_bound"] / per, ci["upper_bound"] / per)
    return found


def fmt(ns):
    return f"{ns:.1f}" if ns < 100 else f"{ns:.0f}"


def main():
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(target, "criterion")
    found = load(root)
    print("| Row | ours (ns) | anchor (ns) | ours / anchor |")
    print("|---|---:|---:|---:|")
    for ours, anchor, label in ROWS:
        if ours not in found:
            continue
        o = found[ours]
        cell_o = f"{fmt(o[0])} [{fmt(o[1])}, {fmt(o[2])}]"
        if anchor and anchor in found:
            a = found[anchor]
            cell_a = f"{fmt(a[0])} [{fmt(a[1])}, {fmt(a[2])}]"
            ratio = f"{o[0] / a[0]:.2f}"
        else:
            cell_a, ratio = "-", "-"
        print(f"| {label} | {cell_o} | {cell_a} | {ratio} |")
    for ours, anchor, _label in ROWS:
        if ours.startswith("simulator/") and ours in found:
            line = f"\n{ours}: {1e9 / found[ours][0]:,.0f} simulated requests per wall second"
            if anchor in found:
                line += f" ({anchor}: {1e9 / found[anchor][0]:,.0f})"
            print(line)
    missing = [r[0] for r in ROWS if r[0] not in found]
    if missing:
        print(f"\n(no estimates for: {', '.join(missing)})", file=sys.stderr)


if __name__ == "__main__":
    main()
