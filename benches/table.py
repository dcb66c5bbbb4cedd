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

# (ours, anchor or None, label, what dominates the figure)
ROWS = [
    ("manual_clock/allow/ours", "manual_clock/allow/governor", "1. allow, manual clock, fixed instant",
     "The TAT compare-and-swap on both sides. Ours adds a second locked read-modify-write "
     "(the `admitted` counter, which also numbers the admission for header sync), a store "
     "into the ring of recent admissions, two more loads (gate, high-water mark, the latter "
     "on the TAT's own cache line) and a re-read of the parameters after the CAS."),
    ("manual_clock/allow_advancing/ours", "manual_clock/allow_advancing/governor",
     "1. allow, manual clock advanced 1 µs per call",
     "Both pay the manual clock's own CAS and the TAT CAS; ours also raises the high-water "
     "mark with a plain store on the line the CAS already owns."),
    ("manual_clock/deny/ours", "manual_clock/deny/governor", "1. deny, manual clock",
     "Both read and compare, writing nothing: governor two words, ours five (clock, gate, "
     "high-water mark, parameters, TAT)."),
    ("real_clock/allow/ours_quanta", "real_clock/allow/governor_quanta", "2. allow, quanta clock (both)",
     "The quanta clock read (TSC read and scaling, row \"clock read alone: quanta\") is most "
     "of it; the atomics overlap with it."),
    ("real_clock/allow/ours_std", "real_clock/allow/governor_monotonic",
     "2. allow, std Instant (governor MonotonicClock)",
     "`clock_gettime` through the vDSO is nearly all of it; the decision hides in its shadow."),
    ("real_clock/allow/ours_tokio", "real_clock/allow/governor_monotonic",
     "2. allow, tokio Instant (governor MonotonicClock)",
     "The same clock (tokio's `Instant` is std's outside paused tests), plus a subtraction."),
    ("real_clock/deny/ours_quanta", "real_clock/deny/governor_quanta", "2. deny, quanta clock (both)",
     "The clock read; the decision writes nothing on either side."),
    ("real_clock/deny/ours_std", "real_clock/deny/governor_monotonic",
     "2. deny, std Instant (governor MonotonicClock)", "The clock read."),
    ("real_clock/deny/ours_tokio", "real_clock/deny/governor_monotonic",
     "2. deny, tokio Instant (governor MonotonicClock)", "The clock read."),
    ("real_clock/clock/quanta", None, "2. clock read alone: quanta", "`rdtsc` plus a multiply and shift."),
    ("real_clock/clock/std", None, "2. clock read alone: std Instant", "`clock_gettime(CLOCK_MONOTONIC)` via the vDSO."),
    ("real_clock/clock/tokio", None, "2. clock read alone: tokio Instant", "The std clock read."),
    ("classified/decision/ours", "classified/decision/governor_keyed",
     "3. full decision from (method, path) (governor: keyed by (method, path))",
     "Ours: `classify` is most of it (canonical `/v1/<family>` paths take a shortcut; "
     "full URLs and paths outside the API are parsed in full), then an array "
     "index and the decision. governor: hashing the key (SipHash), the DashMap shard's read "
     "lock, the CAS."),
    ("classified/classify/ours", None, "3. classify alone",
     "The eight-request mix: six canonical paths take the shortcut (one prefix test, one "
     "scan for `/.`, one family match, the method for `/v1/orders`); a full URL and "
     "`/v2/...` are split into segments with `.`/`..` resolution and compared ignoring case."),
    ("classified/remaining_req/ours", None, "3. Remaining-Req parse alone",
     "Splitting on `;` and `=`, Unicode-aware trims, case-insensitive key lookup, checked digit "
     "parsing. Once per response, not per decision."),
    ("two_threads/allow_manual/ours", "two_threads/allow_manual/governor", "4. two threads, allow, manual clock",
     "Moving cache lines between the cores: governor writes one line per decision (the TAT); "
     "ours writes the TAT line (with the high-water mark), the `admitted` counter and a slot "
     "of the recent-admissions ring."),
    ("two_threads/deny_manual/ours", "two_threads/deny_manual/governor", "4. two threads, deny, manual clock",
     "Both only read, so the lines stay shared in both caches."),
    ("two_threads/allow_quanta/ours", "two_threads/allow_quanta/governor", "4. two threads, allow, quanta clock",
     "As the manual row, plus the clock reads."),
    ("two_threads/deny_quanta/ours", "two_threads/deny_quanta/governor", "4. two threads, deny, quanta clock",
     "Both denials are read-only; the clock read dominates."),
    ("async_acquire/uncontended/ours", "async_acquire/uncontended/governor",
     "5. uncontended acquire().await + drop permit (governor: until_ready)",
     "One std clock read, the decision, and one RMW recording a zero wait; dropping a permit "
     "that was not a half-open probe does nothing. governor: its quanta `check()` and an "
     "async state machine, no permit."),
    ("async_acquire/uncontended_permit_forgotten/ours", "async_acquire/uncontended/governor",
     "5. same, permit forgotten (no on_unreported)",
     "The same without the permit's drop: the difference to the row above is what dropping "
     "an unreported permit costs."),
    ("async_acquire/uncontended_reported/ours", "async_acquire/uncontended/governor",
     "5. same, permit reported (200)",
     "`on_response`: one more clock read, the group lock, the adaptive ratio and breaker "
     "updates, the republish."),
    ("async_acquire/uncontended_classified/ours", "async_acquire/uncontended/governor",
     "5. same, acquire(method, path) + drop permit", "The first row plus `classify`."),
    ("async_acquire/cancelled_waiter/ours", "async_acquire/cancelled_waiter/governor",
     "5. cancelled waiter: build, poll once (sleeps), drop",
     "Ours: a denied decision, the group lock twice (link into and unlink from the FIFO "
     "queue), registering and cancelling a tokio timer, two clock reads; no allocation. "
     "governor: `futures-timer` allocates a timer node, pushes it to its global timer thread and wakes that thread (on creation and again on drop)."),
    ("async_acquire/uncontended/instrumented", "async_acquire/uncontended/ours",
     "5. instrumented: Instrumented::acquire_request + drop permit (anchor: the plain tokio limiter)",
     "The plain row plus the operator's wrapper: a `tracing` span (no subscriber), a clock read, "
     "four stores into the group's lock-free ring of recent admissions, the wait histogram through "
     "the `metrics` facade (no recorder) and the upkeep check (one atomic load; once a second a "
     "full republish); no lock."),
    ("async_acquire/two_threads/ours", None,
     "5. two threads, acquire().await + drop permit, one group, a runtime each",
     "The two-thread allow decision of group 4 on the tokio clock, in an async loop."),
    ("async_acquire/two_threads/instrumented", "async_acquire/two_threads/ours",
     "5. two threads, instrumented (anchor: the plain tokio limiter, same case)",
     "The plain row plus the wrapper; the threads share no lock, only the cache lines of the "
     "group's ring slots they write."),
    ("simulator/endurance-24h/ours", "simulator/endurance-24h/none",
     "6. simulator, endurance-24h, per simulated request (anchor: policy `none`, no limiter)",
     "The simulated server, network and executor are the `none` figure; the rest is the real "
     "limiter's acquire/report and the extra timer events its waiting creates."),
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
    print("| Row | ours (ns) | anchor (ns) | ours / anchor | What dominates |")
    print("|---|---:|---:|---:|---|")
    for ours, anchor, label, note in ROWS:
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
        print(f"| {label} | {cell_o} | {cell_a} | {ratio} | {note} |")
    for ours, anchor, _label, _note in ROWS:
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
