#!/usr/bin/env python3
"""The figures of the shared-budget scenarios, summed over seeds and server models.

    python3 sim/analysis/shared_budget_summary.py co-tenant [SEEDS] [SIM]
    python3 sim/analysis/shared_budget_summary.py co-tenant-table [SEEDS] [SIM]
    python3 sim/analysis/shared_budget_summary.py co-tenant-long [SEEDS] [SIM]
    python3 sim/analysis/shared_budget_summary.py limit-change [SEEDS] [SIM]

SEEDS is a count (seeds 1 to SEEDS, default 10). SIM is the simulator binary
(default target/release/upbit-limiter-sim; build it with
`cargo build --release -p upbit-limiter-sim`). Every run is
`SIM run SCENARIO --server-model all --seed S --json`.

- co-tenant: the three co-tenant scenarios, one row per co-tenant phase and
  group (72 per seed): our 429s in its first 10 s and after, its own 429s,
  the seconds a ban blocked us, our share of the free capacity, and how
  many phases we were back at 95 % of our own rate within 3 and 5 windows
  of the co-tenant leaving (or not within the 120 s before the next one).
- co-tenant-table: the same rows per co-tenant, share and server model.
- co-tenant-long: the 70 % phases with our traffic run on for an hour after
  the scenario's end: seconds until we are back at 95 % of our own rate.
- limit-change: with and without Remaining-Req, whether each run meets the
  goals (at most 3 429s after the change, none in the 24 quiet hours, 90 %
  of the new limit with headers and 80 % without).
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

SCENARIOS = ["co-tenant-periodic", "co-tenant-poisson", "co-tenant-bursty"]
HERE = os.path.dirname(os.path.abspath(__file__))


def run(sim, scenario, seed, *extra):
    done = subprocess.run(
        [sim, "run", scenario, "--server-model", "all", "--seed", str(seed), "--json", *extra],
        capture_output=True, text=True,
    )
    # Exit code 3 says some request met a 429 or 418: expected here.
    if done.returncode not in (0, 3):
        sys.exit(f"{sim} {scenario} --seed {seed} failed: {done.stderr}")
    return json.loads(done.stdout)


def phases(sim, seeds, scenarios=SCENARIOS):
    for scenario in scenarios:
        for seed in seeds:
            for report in run(sim, scenario, seed):
                for row in report["co_tenants"]:
                    yield os.path.basename(scenario), report["server_model"], row


def within(row, windows):
    w = row["back_to_95pct_of_alone_windows"]
    return w is not None and w <= windows


def co_tenant(sim, seeds):
    rows = list(phases(sim, seeds))
    total = lambda key: sum(r[key] for _, _, r in rows)
    print(f"{len(rows)} phases")
    print(f"our 429s in the first 10 s: {total('rejected_first_10s')} "
          f"(phases with more than 3: {sum(r['rejected_first_10s'] > 3 for _, _, r in rows)})")
    print(f"our 429s after the first 10 s: {total('rejected_while_running')} "
          f"(phases with any: {sum(r['rejected_while_running'] > 0 for _, _, r in rows)}); "
          f"after it left: {total('rejected_after_stop')}")
    print(f"the co-tenant's own 429s: {total('their_429s')}; seconds a ban blocked us: {total('blocked_s'):.0f}")
    print(f"our mean share of the free capacity: {100 * statistics.mean(r['share_of_free'] for _, _, r in rows):.1f} %")
    print(f"back within 3 windows: {sum(within(r, 3) for _, _, r in rows)}; within 5: "
          f"{sum(within(r, 5) for _, _, r in rows)}; not within 120 s: "
          f"{sum(r['back_to_95pct_of_alone_windows'] is None for _, _, r in rows)}")


def co_tenant_table(sim, seeds):
    groups = {}
    for scenario, model, row in phases(sim, seeds):
        share = row["load"].split("-")[2]
        groups.setdefault((scenario.removeprefix("co-tenant-"), share, model), []).append(row)
    print("| co-tenant | share | model | our 429s, first 10 s: mean (max) | after: mean (max) "
          "| ours, % of N/W | % of free | back within 5 windows |")
    print("|---|---|---|---|---|---|---|---|")
    for (kind, share, model), rows in sorted(groups.items()):
        n = len(rows)
        first = [r["rejected_first_10s"] for r in rows]
        later = [r["rejected_while_running"] for r in rows]
        nw = statistics.mean(r["ours_per_s"] / r["limit_per_s"] for r in rows)
        free = statistics.mean(r["share_of_free"] for r in rows)
        print(f"| {kind} | {share} | {model} | {sum(first) / n:.1f} ({max(first)}) | "
              f"{sum(later) / n:.1f} ({max(later)}) | {100 * nw:.0f} % | {100 * free:.0f} % | "
              f"{sum(within(r, 5) for r in rows)}/{n} |")


def co_tenant_long(sim, seeds):
    # The built-in scenarios' traffic runs to 930 s; run it on to 4530 s.
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for scenario in SCENARIOS:
            path = os.path.join(HERE, "..", "scenarios", scenario + ".toml")
            text = open(path).read().replace("until_s = 930", "until_s = 4530")
            files.append(os.path.join(tmp, scenario + "-long.toml"))
            open(files[-1], "w").write(text)
        back, after = {}, 0
        for _, model, row in phases(sim, seeds, files):
            if "70pct" in row["load"]:
                back.setdefault(model, []).append(row["back_to_95pct_of_alone_s"])
                after += row["rejected_after_stop"]
    for model, values in back.items():
        got = sorted(v for v in values if v is not None)
        p90 = got[min(len(got) - 1, int(0.9 * len(got)))] if got else None
        print(f"{model}: {len(values)} phases, never back {len(values) - len(got)}, "
              f"median {statistics.median(got) if got else None} s, p90 {p90} s, max {max(got) if got else None} s")
    print(f"our 429s after the co-tenants left: {after}")


def limit_change(sim, seeds):
    met, misses, shares = 0, [], {False: [], True: []}
    for seed in seeds:
        for no_headers in (False, True):
            extra = ["--no-headers"] if no_headers else []
            for report in run(sim, "limit-change", seed, *extra):
                for change in report["limit_changes"]:
                    goal = 0.8 if no_headers else 0.9
                    ok = (change["rejected_after"] <= 3 and change["rejected_quiet"] == 0
                          and change["share_after"] >= goal)
                    met += ok
                    shares[no_headers].append(change["share_after"])
                    if not ok:
                        misses.append((seed, report["server_model"], "without headers" if no_headers else "with headers",
                                       change["rejected_after"], change["rejected_quiet"], change["share_after"]))
    runs = len(shares[False]) + len(shares[True])
    print(f"{met} of {runs} runs meet the goals; mean share of the new limit "
          f"{100 * statistics.mean(shares[False]):.1f} % with headers, {100 * statistics.mean(shares[True]):.1f} % without")
    for seed, model, headers, after, quiet, share in misses:
        print(f"  seed {seed}, {model}, {headers}: {after} 429s after, {quiet} in the quiet hours, {100 * share:.1f} %")


def main():
    jobs = {"co-tenant": co_tenant, "co-tenant-table": co_tenant_table,
            "co-tenant-long": co_tenant_long, "limit-change": limit_change}
    if len(sys.argv) < 2 or sys.argv[1] not in jobs:
        sys.exit(__doc__)
    seeds = range(1, int(sys.argv[2]) + 1) if len(sys.argv) > 2 else range(1, 11)
    sim = sys.argv[3] if len(sys.argv) > 3 else "target/release/upbit-limiter-sim"
    jobs[sys.argv[1]](sim, seeds)


if __name__ == "__main__":
    main()
