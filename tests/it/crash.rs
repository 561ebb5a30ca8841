//! Exactly once under `kill -9`: the exporter is killed at named commit steps (the test-only
//! crash hook), at the N-th fsync (strace fault injection), and at seeded random instants; after
//! each crash a clean run must leave the destination holding exactly the API's lead set, every
//! version once, and the job ledger's counts must add up to what the tables hold.

use std::process::Stdio;
use std::time::Duration;

use rand::{Rng, SeedableRng};

use ctgo_export::simulator::Simulator;

use crate::common::*;

const PAGE: &[&str] = &["--page-size", "100"];

/// Change the API a little, as between two scheduled runs.
fn churn(sim: &Simulator, round: usize) {
    sim.add_leads(380 + round % 7);
    sim.add_late_leads(3, 8);
    sim.add_leads_at_newest_second(2);
    let ids = expected_ids(sim);
    let some: Vec<i64> = ids
        .iter()
        .copied()
        .skip(round * 13 % 50)
        .step_by(61)
        .collect();
    sim.mark_exported(&some);
    if round.is_multiple_of(3) {
        sim.complete_runs();
    }
}

/// After a crash: the next run repairs and completes, and everything adds up.
fn verify(sim: &Simulator, dest: &str, path: &std::path::Path, label: &str) {
    let run = sync(sim, dest, PAGE);
    assert_eq!(run.code, 0, "{label}: recovery run failed: {}", run.stderr);
    assert_eq!(
        sqlite_lead_ids(path),
        expected_ids(sim),
        "{label}: lead set"
    );
    let conn = db(path);
    let unfinished: i64 = conn
        .query_row(
            "SELECT count(*) FROM export_jobs WHERE status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unfinished, 0, "{label}: a crashed job is marked FAILED");
    let inserted: i64 = conn
        .query_row("SELECT sum(entities_inserted) FROM export_jobs", [], |r| {
            r.get(0)
        })
        .unwrap();
    let rows: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM leads) + (SELECT count(*) FROM sync_runs)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(inserted, rows, "{label}: every insert counted exactly once");
    let dup_rejects: i64 = conn
        .query_row(
            "SELECT count(*) FROM (SELECT raw FROM rejects GROUP BY raw HAVING count(*) > 1)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dup_rejects, 0, "{label}: rejects recorded once");
}

fn crashing_sync(sim: &Simulator, dest: &str, point: &str) -> Run {
    let mut cmd = sync_cmd(sim, dest, PAGE);
    cmd.env("CTGO_TEST_CRASH_AT", point);
    Run::from_output(cmd.output().unwrap())
}

#[test]
fn kill_at_every_named_commit_step_loses_and_duplicates_nothing() {
    let sim = sim_with(|c| {
        c.leads = 1_500;
        c.malformed_every = Some(97);
    });
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    let mut kills = 0;
    let mut round = 0;
    let points = [
        ("sqlite.write.after", &[1, 2, 3, 5, 7][..]),
        ("state.commit.before", &[1, 2, 3, 5, 7][..]),
        ("state.commit.after", &[1, 2, 3, 5, 7][..]),
        ("leads.cursor.staged", &[1][..]),
    ];
    for (point, nths) in points {
        for &nth in nths {
            churn(&sim, round);
            round += 1;
            let spec = format!("{point}:{nth}");
            let run = crashing_sync(&sim, &dest, &spec);
            if run.code == 137 {
                kills += 1;
            } else {
                // Fewer steps than `nth` in this run: it completed normally.
                assert_eq!(run.code, 0, "{spec}: {}", run.stderr);
            }
            verify(&sim, &dest, &path, &spec);
        }
    }
    assert!(kills >= 15, "only {kills} runs were killed");
}

#[test]
fn kill_at_the_nth_fsync_with_strace_loses_and_duplicates_nothing() {
    if !have_strace() {
        return;
    }
    let sim = sim(1_200);
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    let mut kills = 0;
    for (round, n) in [1, 2, 3, 4, 5, 6, 8].into_iter().enumerate() {
        churn(&sim, round);
        let mut cmd = std::process::Command::new("strace");
        cmd.args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=fsync,fdatasync",
        ])
        .arg("-e")
        .arg(format!("inject=fsync,fdatasync:signal=KILL:when={n}"))
        .arg(bin())
        .args(["sync", "--json", "--requests-per-minute", "0"])
        .args(["--dest", &dest, "--base-url", &sim.base_url()])
        .args(PAGE)
        .env("CTGO_API_KEY", KEY)
        .env_remove("CTGO_TEST_CRASH_AT");
        let run = Run::from_output(cmd.output().unwrap());
        match run.code {
            137 => kills += 1,
            0 => {}
            code => panic!("fsync #{n}: exit {code}: {}", run.stderr),
        }
        verify(&sim, &dest, &path, &format!("fsync #{n}"));
    }
    assert!(kills >= 5, "only {kills} runs were killed");
}

#[test]
fn kill_at_random_instants_loses_and_duplicates_nothing() {
    let sim = sim_with(|c| {
        c.leads = 2_500;
        c.latency_ms = 25;
    });
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261123);
    let mut killed = 0;
    for round in 0..8 {
        churn(&sim, round);
        let mut child = sync_cmd(&sim, &dest, PAGE)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if status.code().is_none() {
            killed += 1;
        }
        verify(&sim, &dest, &path, &format!("random kill {round}"));
    }
    assert!(killed >= 4, "only {killed} of 8 runs were killed mid-job");
}

#[test]
fn a_move_to_another_api_killed_at_any_commit_step_finishes_with_the_next_full_refresh() {
    let first = sim(600);
    let second = sim_with(|c| {
        c.leads = 900;
        c.seed = 41;
    });
    let full: Vec<&str> = PAGE.iter().copied().chain(["--full-refresh"]).collect();
    let mut kills = 0;
    for point in [
        "state.commit.before:1",
        "state.commit.after:1",
        "state.commit.after:2",
        "state.commit.after:5",
        "leads.cursor.staged:1",
    ] {
        let t = TestDir::new();
        let (dest, path) = t.sqlite();
        sync_ok(&first, &dest, PAGE);
        let mut cmd = sync_cmd(&second, &dest, &full);
        cmd.env("CTGO_TEST_CRASH_AT", point);
        let run = Run::from_output(cmd.output().unwrap());
        if run.code == 137 {
            kills += 1;
        } else {
            assert_eq!(run.code, 0, "{point}: {}", run.stderr);
        }
        // Killed before its first commit, the destination is still the first API's; after it,
        // the move is unfinished. Either way an incremental run of the new API is refused,
        // and a full refresh finishes the move.
        if run.code == 137 {
            let refused = sync(&second, &dest, PAGE);
            assert_eq!(refused.code, 2, "{point}: {}", refused.stderr);
        }
        sync_ok(&second, &dest, &full);
        let live = sqlite_live_lead_ids(&path);
        assert_eq!(
            live,
            expected_ids(&second),
            "{point}: the new API's leads live"
        );
        let later = sync_ok(&second, &dest, PAGE);
        assert_eq!(leads_counts(&later), (0, 0, 0, 0), "{point}: nothing twice");
        sync(&first, &dest, PAGE).assert_code(2);
    }
    assert!(kills >= 4, "only {kills} runs were killed");
}

#[test]
fn a_first_run_killed_before_its_first_data_commit_leaves_a_destination_the_next_run_repairs() {
    // The first job's file in progress is all the table directories hold: the uncommitted work
    // of a crashed job, for the recovery to delete, not exported files without their state.
    let sim = sim(1_000);
    let t = TestDir::new();
    for kind in ["parquet", "csv"] {
        let dir = t.path(kind);
        let dest = format!("{kind}:{}", dir.display());
        let run = crashing_sync(&sim, &dest, &format!("{kind}.write.after:1"));
        assert_eq!(run.code, 137, "{kind}: {}", run.stderr);
        let staged = std::fs::read_dir(dir.join("leads"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(staged, 1, "{kind}: the killed job's file in progress");
        let run = sync(&sim, &dest, PAGE);
        assert_eq!(run.code, 0, "{kind}: {}", run.stderr);
        let job = run.job();
        assert_eq!(
            leads_counts(&job).0 as usize,
            expected_ids(&sim).len(),
            "{job}"
        );
        let jobs = Run::from_output(
            command()
                .args(["jobs", "--dest", &dest, "--json"])
                .output()
                .unwrap(),
        );
        let statuses: Vec<String> = jobs
            .stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["status"].to_string())
            .collect();
        assert_eq!(statuses, ["\"COMPLETED\"", "\"FAILED\""], "{kind}");
    }
}
