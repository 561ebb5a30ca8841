//! Every answer the API contract lists, played by the simulator against the real binary: the
//! transient ones (500, 504, a timeout) are retried and the job still exports each lead exactly
//! once; the permanent ones stop the job with a message that names the status and code, the
//! job is recorded FAILED, and the cursor stays where it was, so the next run catches up.
//!
//! Kept fast: a few hundred leads, small pages, a short client timeout against a long
//! simulated delay. Nothing here asserts on elapsed time.

use ctgo_export::simulator::{FaultEndpoint, FaultKind, FaultPlan, Simulator};
use serde_json::Value;

use crate::common::*;

/// The job with this id, as `ctgo-export jobs --json` lists it.
fn recorded_job(dest: &str, id: &Value) -> Value {
    let run = Run::from_output(
        command()
            .args(["jobs", "--dest", dest, "--json"])
            .output()
            .expect("run ctgo-export jobs"),
    );
    run.assert_code(0);
    run.stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .find(|j| j["id"] == *id)
        .unwrap_or_else(|| panic!("job {id} not listed: {}", run.stdout))
}

/// The committed cursor of the all-streams leads scope, in ms.
fn leads_cursor(path: &std::path::Path) -> i64 {
    query_i64(
        path,
        "SELECT cursor_ms FROM _ctgo_cursor WHERE scope = 'leads'",
    )
}

fn status_of(kind: FaultKind) -> u16 {
    kind.error_answer().expect("an error answer").0
}

#[test]
fn transient_500_and_504_are_retried_and_every_lead_is_exported_once() {
    for kind in [FaultKind::InternalError, FaultKind::GatewayTimeout] {
        let sim = sim_with(|c| {
            c.leads = 300;
            c.faults = FaultPlan {
                rate: 0.25,
                kinds: vec![kind],
                seed: 11,
                ..FaultPlan::default()
            };
        });
        // At least one, whatever the random draws.
        sim.inject(kind, 1);
        let t = TestDir::new();
        let (dest, path) = t.sqlite();
        let run = sync(&sim, &dest, &["--page-size", "50"]);
        run.assert_code(0);
        let job = run.job();
        assert_eq!(job["status"], "COMPLETED", "{kind:?}: {job}");
        let status = status_of(kind);
        assert!(
            run.stderr.contains(&format!("HTTP {status}")) && run.stderr.contains("retrying"),
            "{kind:?}: the retries are logged: {}",
            run.stderr
        );
        assert!(sim.requests().faults >= 1, "{:?}", sim.requests());
        let expected = expected_ids(&sim);
        assert_eq!(sqlite_lead_ids(&path), expected, "{kind:?}");
        assert_eq!(
            leads_counts(&job),
            (expected.len() as u64, 0, 0, 0),
            "{kind:?}: each lead inserted once: {job}"
        );
        // Nothing is left over for a second run.
        sim.update(|c| c.faults = FaultPlan::default());
        let job = sync_ok(&sim, &dest, &["--page-size", "50"]);
        assert_eq!(leads_counts(&job), (0, 0, 0, 0), "{kind:?}: {job}");
    }
}

#[test]
fn a_timeout_is_retried_and_every_lead_is_exported_once() {
    let sim = sim_with(|c| {
        c.leads = 300;
        // Far beyond the client's timeout below: the client gives up, the simulator never
        // answers in time.
        c.slow_ms = 120_000;
    });
    sim.inject(FaultKind::Slow, 2);
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    let run = sync(&sim, &dest, &["--page-size", "50", "--timeout", "2s"]);
    run.assert_code(0);
    let job = run.job();
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert!(
        run.stderr.contains("timed out") && run.stderr.contains("retrying"),
        "the timeouts are logged as retried: {}",
        run.stderr
    );
    let expected = expected_ids(&sim);
    assert_eq!(sqlite_lead_ids(&path), expected);
    assert_eq!(
        leads_counts(&job),
        (expected.len() as u64, 0, 0, 0),
        "{job}"
    );
}

#[test]
fn a_403_stops_the_job_with_exit_3_and_says_what_to_do() {
    for kind in [FaultKind::SubscriptionRequired, FaultKind::BudgetExhausted] {
        let (_, code, _) = kind.error_answer().expect("an error answer");
        let sim = sim_with(|c| {
            c.leads = 200;
            c.faults = FaultPlan::always(kind);
        });
        let t = TestDir::new();
        let (dest, path) = t.sqlite();
        let run = sync(&sim, &dest, &[]);
        run.assert_code(3);
        let job = run.job();
        assert_eq!(job["status"], "FAILED", "{kind:?}: {job}");
        let error = job["error"].as_str().expect("an error");
        for needed in ["403", code, "check the account's plan"] {
            assert!(error.contains(needed), "{kind:?}: {needed:?} in {error}");
            assert!(
                run.stderr.contains(needed),
                "{kind:?}: {needed:?} in {}",
                run.stderr
            );
        }
        assert_eq!(sim.requests().leads, 1, "{kind:?}: a 403 is not retried");
        assert_eq!(recorded_job(&dest, &job["id"])["status"], "FAILED");
        assert_eq!(query_i64(&path, "SELECT count(*) FROM leads"), 0);
    }
}

#[test]
fn permanent_answers_stop_the_job_and_leave_the_cursor_for_the_next_run() {
    for kind in [
        FaultKind::BadRequest,
        FaultKind::NotFound,
        FaultKind::Conflict,
        FaultKind::Unprocessable,
    ] {
        let (status, code, _) = kind.error_answer().expect("an error answer");
        let sim = sim_with(|c| c.leads = 300);
        let t = TestDir::new();
        let (dest, path) = t.sqlite();
        sync_ok(&sim, &dest, &["--page-size", "50"]);
        let cursor = leads_cursor(&path);

        // New leads (some late), and updates to leads inside the lookback window.
        let updated: Vec<i64> = expected_ids(&sim).into_iter().rev().take(10).collect();
        sim.mark_exported(&updated);
        let added = sim.add_leads(120).len() + sim.add_late_leads(5, 3).len();
        // The first leads page is answered, every later leads request gets the fault: the
        // job stops mid-export, after a page may have been committed.
        sim.update(|c| c.faults = FaultPlan::always(kind).on(FaultEndpoint::Leads).after(1));
        sim.reset_stats();
        let run = sync(&sim, &dest, &["--page-size", "50"]);
        run.assert_code(1);
        let failed = run.job();
        assert_eq!(failed["status"], "FAILED", "{kind:?}: {failed}");
        let error = failed["error"].as_str().expect("an error");
        for needed in [status.to_string().as_str(), code] {
            assert!(error.contains(needed), "{kind:?}: {needed:?} in {error}");
            assert!(
                run.stderr.contains(needed),
                "{kind:?}: {needed:?} in {}",
                run.stderr
            );
        }
        let leads_requests = sim.requests().leads;
        assert!(
            sim.requests().faults >= 1 && leads_requests <= 3,
            "{kind:?}: stopped, not retried: {:?}",
            sim.requests()
        );
        let listed = recorded_job(&dest, &failed["id"]);
        assert_eq!(listed["status"], "FAILED", "{kind:?}: {listed}");
        assert_eq!(listed["error"], failed["error"]);
        assert_eq!(leads_cursor(&path), cursor, "{kind:?}: the cursor moved");

        // The API recovers: the next run exports the rest, and nothing twice.
        sim.update(|c| c.faults = FaultPlan::default());
        let job = sync_ok(&sim, &dest, &["--page-size", "50"]);
        let (ins_failed, upd_failed, _, _) = leads_counts(&failed);
        let (ins, upd, del, rej) = leads_counts(&job);
        assert_eq!(
            (ins_failed + ins, upd_failed + upd, del, rej),
            (added as u64, updated.len() as u64, 0, 0),
            "{kind:?}: each new lead inserted once and each change counted once: {failed} then {job}"
        );
        let expected = expected_ids(&sim);
        assert_eq!(sqlite_lead_ids(&path), expected, "{kind:?}");
        assert!(
            leads_cursor(&path) > cursor,
            "{kind:?}: the cursor moves now"
        );
    }
}

#[test]
fn check_retries_a_timeout_and_stops_on_a_403() {
    let sim = sim_with(|c| {
        c.leads = 10;
        c.slow_ms = 120_000;
    });
    let check = |sim: &Simulator| {
        Run::from_output(
            command()
                .env("CTGO_API_KEY", KEY)
                .env("CTGO_TIMEOUT", "2s")
                .args(["check", "--base-url", &sim.base_url()])
                .output()
                .expect("run ctgo-export check"),
        )
    };
    sim.inject(FaultKind::Slow, 1);
    let run = check(&sim);
    run.assert_code(0);
    assert!(run.stderr.contains("timed out"), "{}", run.stderr);
    assert_eq!(sim.requests().me, 2);

    sim.update(|c| c.faults = FaultPlan::always(FaultKind::SubscriptionRequired));
    let run = check(&sim);
    run.assert_code(3);
    assert!(
        run.stderr.contains("403") && run.stderr.contains("subscription_required"),
        "{}",
        run.stderr
    );
}
