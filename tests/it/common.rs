//! Shared test harness: the real binary against the in-process simulator, real files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ctgo_export::simulator::{SimConfig, Simulator};
use serde_json::Value;

/// A well-formed key (45 characters).
pub const KEY: &str = "ctgo_test0123456789abcdefghijklmnopqrstuvwxyz";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ctgo-export")
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: Output) -> Run {
        use std::os::unix::process::ExitStatusExt;
        let code = out
            .status
            .code()
            .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0));
        Run {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The job record printed by `--json`.
    pub fn job(&self) -> Value {
        let line = self.stdout.trim();
        assert_eq!(
            line.lines().count(),
            1,
            "stdout must hold exactly one JSON object; got {line:?}\nstderr: {}",
            self.stderr
        );
        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
    }

    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit status {} (wanted {code})\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// The binary with a clean environment for the exporter's variables.
pub fn command() -> Command {
    let mut c = Command::new(bin());
    for var in [
        "CTGO_API_KEY",
        "CTGO_BASE_URL",
        "CTGO_DEST",
        "CTGO_CONFIG",
        "CTGO_TABLES",
        "CTGO_LOOKBACK",
        "CTGO_SINCE",
        "CTGO_REQUESTS_PER_MINUTE",
        "CTGO_MAX_RETRIES",
        "CTGO_TIMEOUT",
        "CTGO_TEST_CRASH_AT",
        "CTGO_TEST_INTERRUPT_AT",
        "RUST_LOG",
    ] {
        c.env_remove(var);
    }
    c.stdin(Stdio::null());
    c
}

/// The binary with `args` and the test key in `CTGO_API_KEY`, run to its end.
pub fn run_keyed<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    Run::from_output(
        command()
            .env("CTGO_API_KEY", KEY)
            .args(args)
            .output()
            .expect("run ctgo-export"),
    )
}

/// `sync --json` against the simulator, no rate limit on our side.
pub fn sync_cmd(sim: &Simulator, dest: &str, extra: &[&str]) -> Command {
    let mut c = command();
    c.env("CTGO_API_KEY", KEY)
        .args([
            "sync",
            "--json",
            "--requests-per-minute",
            "0",
            "--dest",
            dest,
        ])
        .args(["--base-url", &sim.base_url()])
        .args(extra);
    c
}

pub fn sync(sim: &Simulator, dest: &str, extra: &[&str]) -> Run {
    Run::from_output(
        sync_cmd(sim, dest, extra)
            .output()
            .expect("run ctgo-export"),
    )
}

/// A sync that must complete; returns the job record.
pub fn sync_ok(sim: &Simulator, dest: &str, extra: &[&str]) -> Value {
    let run = sync(sim, dest, extra);
    run.assert_code(0);
    let job = run.job();
    assert_eq!(job["status"], "COMPLETED", "{job}");
    job
}

pub fn leads_counts(job: &Value) -> (u64, u64, u64, u64) {
    let t = &job["tables"]["leads"];
    (
        t["inserted"].as_u64().unwrap_or(0),
        t["updated"].as_u64().unwrap_or(0),
        t["deleted"].as_u64().unwrap_or(0),
        t["failed"].as_u64().unwrap_or(0),
    )
}

pub fn sim(leads: usize) -> Simulator {
    Simulator::start(SimConfig::new(leads, 42)).expect("start simulator")
}

pub fn sim_with(f: impl FnOnce(&mut SimConfig)) -> Simulator {
    let mut cfg = SimConfig::new(600, 42);
    f(&mut cfg);
    Simulator::start(cfg).expect("start simulator")
}

pub struct TestDir {
    pub dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        TestDir {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn sqlite(&self) -> (String, PathBuf) {
        let p = self.path("leads.db");
        (format!("sqlite:{}", p.display()), p)
    }
}

pub fn db(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("open sqlite")
}

pub fn query_i64(path: &Path, sql: &str) -> i64 {
    db(path).query_row(sql, [], |r| r.get(0)).expect(sql)
}

/// Ids in a SQLite destination's leads table, sorted (with duplicates, if any).
pub fn sqlite_lead_ids(path: &Path) -> Vec<i64> {
    let conn = db(path);
    let mut stmt = conn.prepare("SELECT id FROM leads ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// Ids of the leads an SQLite destination holds that are not marked deleted, ascending.
pub fn sqlite_live_lead_ids(path: &Path) -> Vec<i64> {
    let conn = db(path);
    let mut stmt = conn
        .prepare("SELECT id FROM leads WHERE _deleted_at IS NULL ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The ids a correct exporter must hold: the API's lead set minus records it serves malformed.
pub fn expected_ids(sim: &Simulator) -> Vec<i64> {
    let mut ids = sim.lead_ids();
    ids.sort_unstable();
    ids
}

/// The Python with pyarrow and duckdb (`scripts/test` installs it), if any.
pub fn python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CTGO_TEST_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    local.exists().then_some(local)
}

/// True in CI, where every prerequisite must be present (a missing one fails, never skips).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

/// Whether strace can trace here, for the fault-injection tests: required in CI
/// (`scripts/test` installs it); elsewhere its absence skips the test with a message. It must
/// really trace (a container may forbid ptrace): an strace that fails at once would make every
/// round look like a kill.
pub fn have_strace() -> bool {
    let works = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        assert!(
            !in_ci(),
            "strace must be installed and able to trace in CI (scripts/test installs it)"
        );
        eprintln!("skipping: strace is not installed or cannot trace here");
    }
    works
}

/// `outer` (strace, a shell) running `inner`: its program, arguments and environment.
pub fn inside(mut outer: Command, inner: &Command) -> Command {
    outer.arg(inner.get_program()).args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => outer.env(k, v),
            None => outer.env_remove(k),
        };
    }
    outer
}
