#!/usr/bin/env python3
"""What a perfectly informed client can take beside a Poisson co-tenant.

A sliding window of W = 1 s holds at most N requests. A co-tenant sends
Poisson arrivals at `pct` of N/W without any limiter. Our client knows the
window's exact content at every instant and has no network delay (more than
any real client has): it keeps the window filled to N - m, leaving m places
for the co-tenant. For each margin m this prints our throughput as a share
of the free capacity (N - rate) and the co-tenant's requests answered 429
per minute (on Upbit these count towards the 418 of the whole IP or pocket).

    python3 sim/analysis/co_tenant_bound.py            # the table
    python3 sim/analysis/co_tenant_bound.py 50000 7    # seconds simulated, seed
"""
import random
import sys
from collections import deque


def run(n, rate, margin, seconds, seed):
    rnd = random.Random(seed)
    window = deque()  # arrival instants still in the window, oldest first
    t = 0.0
    ours = rejected = 0
    next_theirs = rnd.expovariate(rate)
    while t < seconds:
        while window and window[0] <= t - 1.0:
            window.popleft()
        while len(window) < n - margin:
            window.append(t)
            ours += 1
        leaves = window[0] + 1.0 if window else float("inf")
        if next_theirs < leaves:
            t = next_theirs
            while window and window[0] <= t - 1.0:
                window.popleft()
            if len(window) >= n:
                rejected += 1
            else:
                window.append(t)
            next_theirs = t + rnd.expovariate(rate)
        else:
            t = leaves + 1e-9
    return ours / seconds / (n - rate), rejected / seconds * 60


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20000.0
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    print("N   co-tenant  m: our share of free / co-tenant 429s per minute")
    for n, pct in [(10, 0.2), (10, 0.4), (10, 0.7), (12, 0.2), (12, 0.4), (12, 0.7)]:
        cells = []
        for m in range(n):
            share, per_min = run(n, n * pct, m, seconds, seed)
            cells.append(f"m={m}: {100 * share:.0f}%/{per_min:.1f}")
        print(f"{n:<3} {100 * pct:>4.0f} %     " + "  ".join(cells))


if __name__ == "__main__":
    main()
