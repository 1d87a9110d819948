//! The deterministic simulation (issue 5, test 1): thousands of seeds in
//! `cargo test`, one seed with `MARIONETTE_SIM_SEED`, and a long mode with
//! `MARIONETTE_SIM_SECONDS` that runs fresh seeds for as long as asked.

use std::time::{Duration, Instant};

use simulation::{run, Config, Sabotage, Stats};

const SEEDS_DEFAULT: u64 = 4_000;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number, got {v}")))
}

fn print_stats(seeds: u64, stats: &Stats, elapsed: Duration) {
    println!("simulation: {seeds} seeds in {:.1} s, {stats:#?}", elapsed.as_secs_f64());
}

#[test]
fn every_seed_keeps_every_acknowledged_effect_once_under_faults() {
    let started = Instant::now();
    let mut total = Stats::default();
    let mut seeds = 0;
    if let Some(seed) = env("MARIONETTE_SIM_SEED") {
        total = run(seed, Config::default()).unwrap_or_else(|failure| panic!("{failure}"));
        seeds = 1;
    } else if let Some(seconds) = env("MARIONETTE_SIM_SECONDS") {
        // Fresh seeds each run: the start is the clock, printed so a failure reproduces.
        let first = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs() << 20;
        println!("simulation: long mode for {seconds} s from seed {first}");
        let deadline = started + Duration::from_secs(seconds);
        while Instant::now() < deadline {
            let stats = run(first + seeds, Config::default()).unwrap_or_else(|failure| panic!("{failure}"));
            total.add(&stats);
            seeds += 1;
            if seeds % 10_000 == 0 {
                print_stats(seeds, &total, started.elapsed());
            }
        }
    } else {
        for seed in 0..env("MARIONETTE_SIM_SEEDS").unwrap_or(SEEDS_DEFAULT) {
            total.add(&run(seed, Config::default()).unwrap_or_else(|failure| panic!("{failure}")));
            seeds += 1;
        }
    }
    print_stats(seeds, &total, started.elapsed());
    if seeds >= 100 {
        // The faults really happened, each kind many times.
        let kinds = [
            ("ledger crashes", total.ledger_crashes),
            ("matching crashes", total.matching_crashes),
            ("gateway crashes", total.gateway_crashes),
            ("unsynced writes lost", total.unsynced_lost),
            ("sector holes", total.sector_holes),
            ("unsynced bit flips", total.unsynced_bit_flips),
            ("torn tails truncated", total.torn_tails_truncated),
            ("synced bit flips refused", total.synced_bit_flips_refused),
            ("RocksDB rollbacks", total.store_rollbacks),
            ("frames duplicated", total.frames_duplicated),
            ("frames reordered", total.frames_reordered),
            ("frames damaged", total.frames_damaged),
            ("connections dropped", total.connections_dropped),
            ("fills", total.fills),
            ("stops armed", total.stops_armed),
            ("stops fired", total.stops_fired),
        ];
        for (kind, count) in kinds {
            assert!(count >= seeds / 10, "only {count} {kind} in {seeds} seeds");
        }
    }
}

#[test]
fn the_same_seed_runs_the_same() {
    for seed in [3, 77, 1_234] {
        let first = run(seed, Config::default()).unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(first, run(seed, Config::default()).unwrap(), "seed {seed}");
        assert_ne!(first, run(seed + 1, Config::default()).unwrap(), "seeds {seed} and {} ran alike", seed + 1);
    }
}

#[test]
fn without_faults_nothing_crashes_and_everything_settles() {
    for seed in 0..50 {
        let stats = run(seed, Config { fault_percent: 0, ..Config::default() }).unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!((stats.ledger_crashes, stats.matching_crashes, stats.frames_damaged), (0, 0, 0));
        assert!(stats.requests_acknowledged >= 10, "seed {seed}: {stats:?}");
    }
}

/// A planted bug is caught within a few hundred seeds, by a check that names it.
fn caught(sabotage: Sabotage, expected: &[&str]) {
    let config = Config { sabotage: Some(sabotage), ..Config::default() };
    let failure = (0..500).find_map(|seed| run(seed, config).err()).unwrap_or_else(|| panic!("{sabotage:?} was not caught in 500 seeds"));
    let text = failure.to_string();
    assert!(expected.iter().any(|e| text.contains(e)), "{sabotage:?} caught, but not by the expected check: {text}");
    assert!(text.contains(&format!("MARIONETTE_SIM_SEED={}", failure.seed)), "the failure says how to replay it: {text}");
}

#[test]
fn answering_before_the_journal_is_synced_is_caught() {
    caught(Sabotage::LedgerSkipsSync, &["is not in the recovered ledger", "refused to start", "RocksDB holds"]);
}

#[test]
fn publishing_before_the_journal_is_synced_is_caught() {
    caught(Sabotage::MatchingSkipsSync, &["matching applied forwards through", "matching has", "refused to start"]);
}

#[test]
fn losing_unconfirmed_forwards_at_start_up_is_caught() {
    caught(Sabotage::LedgerForgetsItsOutbox, &["not matching's book", "forwards not all applied", "matching applied forwards through"]);
}
