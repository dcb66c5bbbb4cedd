//! Simulator throughput (bench 6 of BENCHMARKS.md): simulated requests per wall second for the
//! `endurance-24h` scenario (24 virtual hours, about 313 000 requests), with
//! the real limiter (`ours`) and, as the anchor, the same traffic with no
//! limiter at all (`none`): the difference is what the limiter costs inside
//! the simulation.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use upbit_limiter_sim::{run, Policy, RunOptions, Scenario};

fn endurance(c: &mut Criterion) {
    let scenario = match Scenario::builtin("endurance-24h") {
        Some(Ok(s)) => s,
        other => panic!("endurance-24h is not a usable built-in scenario: {other:?}"),
    };
    let mut group = c.benchmark_group("simulator");
    group.sample_size(10);
    for policy in [Policy::Ours, Policy::None] {
        let opts = RunOptions {
            model: scenario.server.model,
            policy,
            seed: scenario.seed,
        };
        let first = run(&scenario, &opts, &mut |_| {}).expect("the scenario runs");
        let requests = first.total_requests;
        assert!(requests > 0, "the scenario sends requests");
        group.throughput(Throughput::Elements(requests));
        group.bench_function(format!("endurance-24h/{}", policy.as_str()), |b| {
            b.iter(|| {
                let report = run(&scenario, &opts, &mut |_| {}).expect("the scenario runs");
                // Same seed, same run: the work per iteration is fixed.
                assert_eq!(report.total_requests, requests);
                black_box(report.total_admitted)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, endurance);
criterion_main!(benches);
