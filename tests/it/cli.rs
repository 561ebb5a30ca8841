//! The command line: exit statuses, messages, `jobs`, `schema`, `check`, the key's secrecy,
//! one job per destination, and Ctrl-C.

use std::process::Stdio;
use std::time::{Duration, Instant};

use ctgo_export::simulator::{SimConfig, Simulator};

use crate::common::*;

#[test]
fn missing_key_is_a_usage_error_that_names_the_variable() {
    let sim = sim(10);
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    let run = Run::from_output(
        command()
            .args(["sync", "--dest", &dest, "--base-url", &sim.base_url()])
            .output()
            .unwrap(),
    );
    run.assert_code(2);
    assert!(run.stderr.contains("CTGO_API_KEY"), "{}", run.stderr);
    assert!(!path.exists(), "nothing written without a key");
}

#[test]
fn a_base_url_holding_the_key_is_refused_before_it_is_used() {
    // The key pasted as the base URL: its host would be looked up (the key in a DNS query),
    // quoted lowercased in errors, and kept in the destination's state.
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    for url in [
        format!("https://{KEY}/api/v2"),
        format!("https://{}/api/v2", KEY.to_ascii_uppercase()),
        format!("http://127.0.0.1:9/{KEY}/api/v2"),
        // Spelled as escapes, it is still sent.
        format!(
            "http://127.0.0.1:9/{}/api/v2",
            KEY.bytes().map(|b| format!("%{b:02X}")).collect::<String>()
        ),
    ] {
        for args in [
            vec!["sync", "--dest", &dest, "--base-url", &url, "--json"],
            vec!["check", "--base-url", &url],
        ] {
            let run = run_keyed(&args);
            run.assert_code(2);
            assert!(run.stderr.contains("holds the API key"), "{}", run.stderr);
            let secret = &KEY.to_ascii_lowercase()[5..];
            for out in [&run.stdout, &run.stderr] {
                assert!(!out.to_ascii_lowercase().contains(secret), "{out}");
            }
            assert!(!path.exists(), "nothing written");
        }
    }
}

#[test]
fn malformed_key_and_bad_flags_are_usage_errors() {
    let sim = sim(10);
    let t = TestDir::new();
    let (dest, _) = t.sqlite();
    let base = sim.base_url();
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "sync",
            "--dest",
            &dest,
            "--base-url",
            &base,
            "--lookback",
            "soon",
        ],
        vec!["sync", "--dest", "mysql:x", "--base-url", &base],
        vec![
            "sync",
            "--dest",
            &dest,
            "--base-url",
            "http://example.com/api/v2",
        ],
        vec![
            "sync",
            "--dest",
            &dest,
            "--base-url",
            &base,
            "--tables",
            "users",
        ],
        vec![
            "sync",
            "--dest",
            &dest,
            "--base-url",
            &base,
            "--since",
            "last week",
        ],
        vec!["sync", "--dest", &dest, "--bogus"],
        // URL habits: `sqlite://x.db` would be /x.db.
        vec!["sync", "--dest", "sqlite://x.db", "--base-url", &base],
        vec![
            "sync",
            "--dest",
            &dest,
            "--base-url",
            &base,
            "--since",
            "0000-01-01T00:00:00Z",
        ],
        vec!["jobs", "--dest", &dest, "--limit", "0"],
        vec!["jobs", "--dest", &dest, "--limit", "1001"],
        vec!["schema", "users"],
        vec!["frobnicate"],
    ];
    for args in cases {
        let run = run_keyed(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(!run.stderr.trim().is_empty(), "{args:?} says why");
    }
    // `sync --json` prints its one record for a flag the parser refused, too.
    for (args, said) in [
        (
            vec!["sync", "--json", "--dest", &dest, "--bogus"],
            "--bogus",
        ),
        (
            vec!["sync", "--dest", &dest, "--json", "--lookback"],
            "--lookback",
        ),
        (vec!["sync", "--json", "--max-retries", "-1"], "-1"),
    ] {
        let run = Run::from_output(command().args(&args).output().unwrap());
        run.assert_code(2);
        let job = run.job();
        assert_eq!(job["status"], "FAILED", "{args:?}");
        assert_eq!(job["error_details"]["kind"], "configuration", "{args:?}");
        assert!(job["error"].as_str().unwrap().contains(said), "{job}");
    }
    let run = Run::from_output(
        command()
            .args(["sync", "--json", "--no-json", "--bogus"])
            .output()
            .unwrap(),
    );
    run.assert_code(2);
    assert!(run.stdout.is_empty(), "--no-json last: {}", run.stdout);
    let run = Run::from_output(
        command()
            .env("CTGO_API_KEY", "ctgo_short")
            .args(["sync", "--dest", &dest, "--base-url", &base])
            .output()
            .unwrap(),
    );
    run.assert_code(2);
    assert!(!run.stderr.contains("ctgo_short"), "the key is not echoed");

    // The key pasted where the parser refuses it is not echoed by the parser's message either.
    for args in [
        vec!["sync", KEY],
        vec!["sync", "--stream", KEY],
        vec!["check", KEY],
    ] {
        let run = run_keyed(&args);
        run.assert_code(2);
        assert!(run.stderr.contains("ctgo_****"), "{}", run.stderr);
        assert!(!run.stderr.contains(&KEY[5..]), "{args:?}: {}", run.stderr);
    }
    // An argument that is not UTF-8 is a usage error with its record, not a panic.
    {
        use std::os::unix::ffi::OsStrExt;
        let odd = std::ffi::OsStr::from_bytes(b"sqlite:/tmp/\xff.db");
        let run = Run::from_output(
            command()
                .args(["sync", "--json", "--dest"])
                .arg(odd)
                .output()
                .unwrap(),
        );
        run.assert_code(2);
        assert_eq!(run.job()["status"], "FAILED");
    }
    // `json = true` in the config file asks for the record as --json does, also when the
    // parser refuses the line; the file named by --config or by CTGO_CONFIG.
    let config = t.path("json.toml");
    std::fs::write(&config, "json = true\n").unwrap();
    for (args, env) in [
        (
            vec!["sync", "--config", config.to_str().unwrap(), "--bogus"],
            None,
        ),
        (
            vec![
                "sync",
                &format!("--config={}", config.display()),
                "--stream",
                "x",
            ],
            None,
        ),
        (vec!["sync", "--bogus"], Some(config.to_str().unwrap())),
    ] {
        let mut cmd = command();
        if let Some(path) = env {
            cmd.env("CTGO_CONFIG", path);
        }
        let run = Run::from_output(cmd.args(&args).output().unwrap());
        run.assert_code(2);
        assert_eq!(
            run.job()["error_details"]["kind"],
            "configuration",
            "{args:?}"
        );
    }
    let run = Run::from_output(
        command()
            .args([
                "sync",
                "--config",
                config.to_str().unwrap(),
                "--no-json",
                "--bogus",
            ])
            .output()
            .unwrap(),
    );
    run.assert_code(2);
    assert!(run.stdout.is_empty(), "--no-json wins: {}", run.stdout);
}

#[test]
fn a_file_where_a_destination_or_its_directory_should_be_is_a_usage_error() {
    let t = TestDir::new();
    let file = t.path("notes.txt");
    std::fs::write(&file, "not a database\n").unwrap();
    let dir = t.path("adir");
    std::fs::create_dir(&dir).unwrap();
    for (path, says) in [
        (&file, "not an SQLite database"),
        (&dir, "a directory, not a file"),
    ] {
        let dest = format!("sqlite:{}", path.display());
        let run = Run::from_output(command().args(["jobs", "--dest", &dest]).output().unwrap());
        run.assert_code(2);
        assert!(run.stderr.contains(says), "{}", run.stderr);
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not a database\n");

    // A destination under a file cannot be made by any retry: exit 2, not 1.
    for dest in [
        format!("sqlite:{}/x.db", file.display()),
        format!("sqlite:{}/deeper/x.db", file.display()),
        format!("parquet:{}/out", file.display()),
        format!("csv:{}/out", file.display()),
    ] {
        let run = Run::from_output(
            command()
                .env("CTGO_API_KEY", KEY)
                .args(["sync", "--json", "--dest", &dest])
                .args(["--base-url", "http://127.0.0.1:9/api/v2"])
                .output()
                .unwrap(),
        );
        run.assert_code(2);
        assert_eq!(
            run.job()["error_details"]["kind"],
            "configuration",
            "{dest}"
        );
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not a database\n");
}

#[test]
fn a_revoked_key_is_refused_with_exit_3() {
    let sim = Simulator::start(SimConfig {
        key: Some("ctgo_other000000000000000000000000000000000000".into()),
        ..SimConfig::new(10, 1)
    })
    .unwrap();
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    let run = sync(&sim, &dest, &[]);
    run.assert_code(3);
    let job = run.job();
    assert_eq!(job["status"], "FAILED");
    assert!(run.stderr.contains("CTGO_API_KEY"), "{}", run.stderr);
    assert_eq!(sqlite_lead_ids(&path), Vec::<i64>::new());
}

#[test]
fn api_v1_is_refused_with_a_pointer_to_v2() {
    let sim = sim(10);
    let t = TestDir::new();
    let (dest, _) = t.sqlite();
    let v1 = sim.base_url().replace("/api/v2", "/api/v1");
    let run = Run::from_output(
        command()
            .env("CTGO_API_KEY", KEY)
            .args(["sync", "--json", "--dest", &dest, "--base-url", &v1])
            .output()
            .unwrap(),
    );
    run.assert_code(3);
    assert!(run.stderr.contains("/api/v2"), "{}", run.stderr);
}

#[test]
fn jobs_lists_newest_first_with_counts() {
    let sim = sim(300);
    let t = TestDir::new();
    let (dest, _) = t.sqlite();
    let first = sync_ok(&sim, &dest, &[]);
    sim.add_leads(5);
    let second = sync_ok(&sim, &dest, &[]);
    let run = Run::from_output(
        command()
            .args(["jobs", "--dest", &dest, "--json"])
            .output()
            .unwrap(),
    );
    run.assert_code(0);
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], second["id"]);
    assert_eq!(lines[1]["id"], first["id"]);
    assert_eq!(lines[0]["entities_inserted"], 5);
    assert_eq!(
        lines[0], second,
        "jobs --json shows the record sync --json printed"
    );
    assert_eq!(
        first["source_connection_id"],
        second["source_connection_id"]
    );
    let run = Run::from_output(
        command()
            .args(["jobs", "--dest", &dest, "--limit", "1"])
            .output()
            .unwrap(),
    );
    run.assert_code(0);
    assert!(run.stdout.contains(second["id"].as_str().unwrap()));
    assert!(!run.stdout.contains(first["id"].as_str().unwrap()));
}

#[test]
fn schema_prints_every_table() {
    let run = Run::from_output(command().args(["schema"]).output().unwrap());
    run.assert_code(0);
    for needle in [
        "leads",
        "sync_runs",
        "export_jobs",
        "rejects",
        "discovered_at",
        "progress_log",
    ] {
        assert!(run.stdout.contains(needle), "{needle} in {}", run.stdout);
    }
    let run = Run::from_output(
        command()
            .args(["schema", "leads", "--raw"])
            .output()
            .unwrap(),
    );
    run.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(v.is_object());
    // All of them: one JSON value, by table.
    let run = Run::from_output(command().args(["schema", "--raw"]).output().unwrap());
    run.assert_code(0);
    let all: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(all["leads"], v);
    assert_eq!(all.as_object().map(|o| o.len()), Some(4));
}

#[test]
fn check_reads_me() {
    let sim = sim(10);
    let run = Run::from_output(
        command()
            .env("CTGO_API_KEY", KEY)
            .args(["check", "--base-url", &sim.base_url()])
            .output()
            .unwrap(),
    );
    run.assert_code(0);
    assert!(run.stdout.contains("subscription"), "{}", run.stdout);
    assert_eq!(sim.requests().me, 1);
}

#[test]
fn the_key_appears_nowhere_even_at_trace_level() {
    let sim = sim_with(|c| {
        c.leads = 300;
        c.malformed_every = Some(50);
    });
    sim.inject(ctgo_export::simulator::FaultKind::Unavailable, 1);
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    let mut cmd = sync_cmd(&sim, &dest, &[]);
    cmd.env("RUST_LOG", "trace");
    let run = Run::from_output(cmd.output().unwrap());
    run.assert_code(0);
    assert!(run.stderr.len() > 1000, "trace logging is on");
    let secret = &KEY[5..];
    assert!(!run.stdout.contains(secret));
    assert!(!run.stderr.contains(secret), "key in logs");
    // A failing run too.
    let bad = "ctgo_wrong00000000000000000000000000000000000";
    let sim2 = Simulator::start(SimConfig {
        key: Some(KEY.into()),
        ..SimConfig::new(5, 1)
    })
    .unwrap();
    // (Another destination: this one holds an export of the first simulator.)
    let dest2 = format!("sqlite:{}", t.path("other.db").display());
    let run = Run::from_output(
        command()
            .env("CTGO_API_KEY", bad)
            .env("RUST_LOG", "trace")
            .args(["sync", "--dest", &dest2, "--base-url", &sim2.base_url()])
            .output()
            .unwrap(),
    );
    run.assert_code(3);
    assert!(!run.stderr.contains(&bad[5..]));
    for entry in std::fs::read_dir(t.dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(secret) && !text.contains(&bad[5..]));
    }
    assert!(path.exists());
}

#[test]
fn a_second_job_on_the_same_destination_is_refused_and_harms_nothing() {
    let sim = sim_with(|c| {
        c.leads = 1_500;
        c.latency_ms = 150;
    });
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    let first = sync_cmd(&sim, &dest, &["--page-size", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.requests().leads < 2 {
        assert!(Instant::now() < deadline, "first job never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = sync(&sim, &dest, &[]);
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert!(
        second.stderr.contains("another ctgo-export job is running"),
        "{}",
        second.stderr
    );
    // `--json` still prints one record: FAILED, saying why (it is in no ledger).
    let record = second.job();
    assert_eq!(record["status"], "FAILED");
    assert_eq!(record["error_details"]["kind"], "busy");
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("another ctgo-export job is running")),
        "{record}"
    );
    let first = Run::from_output(first.wait_with_output().unwrap());
    first.assert_code(0);
    assert_eq!(sqlite_lead_ids(&path), expected_ids(&sim));
    let jobs = query_i64(&path, "SELECT count(*) FROM export_jobs");
    assert_eq!(jobs, 1, "the refused job recorded nothing");
}

#[test]
fn sigint_cancels_cleanly_and_the_next_run_completes() {
    let sim = sim_with(|c| {
        c.leads = 2_000;
        c.latency_ms = 100;
    });
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    let child = sync_cmd(&sim, &dest, &["--page-size", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.requests().leads < 4 {
        assert!(Instant::now() < deadline, "job never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on the child's pid; no memory is involved.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0, "kill -INT");
    let run = Run::from_output(child.wait_with_output().unwrap());
    run.assert_code(130);
    let job = run.job();
    assert_eq!(job["status"], "CANCELLED", "{job}");
    // What was committed stays; the next run completes the set exactly.
    let n_after_cancel = sqlite_lead_ids(&path).len();
    assert!(n_after_cancel < expected_ids(&sim).len());
    sync_ok(&sim, &dest, &["--page-size", "100"]);
    assert_eq!(sqlite_lead_ids(&path), expected_ids(&sim));
    let statuses: Vec<String> = {
        let conn = db(&path);
        let mut stmt = conn
            .prepare("SELECT status FROM export_jobs ORDER BY started_at")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    assert_eq!(statuses, vec!["CANCELLED", "COMPLETED"]);
}

#[test]
fn a_signal_at_the_very_start_cancels_the_job_instead_of_killing_the_process() {
    // A scheduler's SIGTERM (here the hook's SIGINT) before `sync` could listen for it, the
    // first thing `main` does.
    let sim = sim(600);
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    let run = Run::from_output(
        sync_cmd(&sim, &dest, &[])
            .env("CTGO_TEST_INTERRUPT_AT", "main.started")
            .output()
            .unwrap(),
    );
    run.assert_code(130);
    assert!(
        run.stderr.contains("SIGINT at main.started"),
        "{}",
        run.stderr
    );
    assert_eq!(run.job()["status"], "CANCELLED", "{}", run.stderr);
    sync_ok(&sim, &dest, &[]);
    assert_eq!(sqlite_lead_ids(&path), expected_ids(&sim));
}

#[test]
fn a_hangup_cancels_unless_ignored_and_a_doubled_signal_is_one_interrupt() {
    let sim = sim_with(|c| {
        c.leads = 1_500;
        c.latency_ms = 100;
    });
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    let args = ["--page-size", "100"];
    // (signals sent once the job is under way; whether SIGHUP is ignored at the start)
    let cases: [(&[libc::c_int], bool, i32); 3] = [
        (&[libc::SIGHUP], false, 130),
        // One interrupt delivered twice (a terminal's process group and a wrapper forwarding
        // it): one cancellation with its record, not a quit at once.
        (&[libc::SIGINT, libc::SIGINT], false, 130),
        // Under `nohup` a job outlives its terminal.
        (&[libc::SIGHUP], true, 0),
    ];
    for (signals, nohup, code) in cases {
        sim.reset_stats();
        let mut cmd = if nohup {
            let mut sh = std::process::Command::new("sh");
            sh.arg("-c").arg("trap '' HUP; exec \"$0\" \"$@\"");
            inside(sh, &sync_cmd(&sim, &dest, &args))
        } else {
            sync_cmd(&sim, &dest, &args)
        };
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while sim.requests().leads < 3 {
            assert!(Instant::now() < deadline, "job never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        for &sig in signals {
            // SAFETY: kill(2) on the child's pid; no memory is involved.
            assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
        }
        let run = Run::from_output(child.wait_with_output().unwrap());
        run.assert_code(code);
        let job = run.job();
        let status = if code == 0 { "COMPLETED" } else { "CANCELLED" };
        assert_eq!(job["status"], status, "{signals:?} nohup {nohup}: {job}");
    }
    assert_eq!(sqlite_lead_ids(&path), expected_ids(&sim));
}

#[test]
fn config_file_holds_sync_settings_and_flags_override_it() {
    let sim = sim(200);
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    let key_file = t.path("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let cfg = t.path("ctgo.toml");
    std::fs::write(
        &cfg,
        format!(
            "dest = \"{dest}\"\nbase_url = \"{}\"\napi_key_file = \"{}\"\ntables = [\"sync_runs\"]\nrequests_per_minute = 0\nlookback = \"20m\"\n",
            sim.base_url(),
            key_file.display()
        ),
    )
    .unwrap();
    let run = Run::from_output(
        command()
            .args(["sync", "--json", "--config"])
            .arg(&cfg)
            .output()
            .unwrap(),
    );
    run.assert_code(0);
    assert_eq!(
        query_i64(&path, "SELECT count(*) FROM leads"),
        0,
        "tables from file"
    );
    let run = Run::from_output(
        command()
            .args(["sync", "--json", "--tables", "leads", "--config"])
            .arg(&cfg)
            .output()
            .unwrap(),
    );
    run.assert_code(0);
    assert_eq!(
        sqlite_lead_ids(&path),
        expected_ids(&sim),
        "flag overrides file"
    );
}

#[test]
fn demo_runs_without_key_or_network() {
    let demo = |out: &std::path::Path, args: &[&str]| {
        Run::from_output(
            command()
                .arg("demo")
                .args(args)
                .arg("--out")
                .arg(out)
                .output()
                .unwrap(),
        )
    };
    let t = TestDir::new();
    let out = t.path("demo");
    let run = demo(&out, &["--leads", "800"]);
    run.assert_code(0);
    assert!(out.join("leads.db").exists());
    assert!(query_i64(&out.join("leads.db"), "SELECT count(*) FROM leads") > 800);
    assert!(run.stderr.contains("Second export"), "{}", run.stderr);
    // Again in the same directory: the previous demo's outputs are replaced, and the story's
    // figures are the first run's.
    let again = demo(&out, &["--leads", "800"]);
    again.assert_code(0);
    assert!(again.stderr.contains("Replacing the previous demo"));
    let firsts = |r: &Run| -> Vec<String> {
        r.stderr
            .lines()
            .filter(|l| l.starts_with("First export"))
            .map(|l| {
                l.split(" in ")
                    .nth(1)
                    .unwrap_or("")
                    .split_once(": ")
                    .map(|x| x.1.to_string())
                    .unwrap_or_default()
            })
            .collect()
    };
    assert_eq!(firsts(&run), firsts(&again));
    assert!(firsts(&run)[0].starts_with("8"), "{:?}", firsts(&run));
    // A file of the user's inside the demo's outputs keeps them all.
    for mine in [
        out.join("csv").join("notes.txt"),
        out.join("parquet").join("leads").join("mine.parquet"),
    ] {
        std::fs::write(&mine, "mine").unwrap();
        let run = demo(&out, &["--leads", "800"]);
        run.assert_code(2);
        assert!(mine.exists());
        std::fs::remove_file(&mine).unwrap();
    }
    // A destination there bound to an API that is not on this machine is someone's data.
    db(&out.join("leads.db"))
        .execute(
            "UPDATE _ctgo_meta SET value = 'https://api.example.com/api/v2' WHERE key = 'source'",
            [],
        )
        .unwrap();
    let run = demo(&out, &["--leads", "800"]);
    run.assert_code(2);
    assert!(query_i64(&out.join("leads.db"), "SELECT count(*) FROM leads") > 800);
    assert!(out.join("parquet").exists() && out.join("csv").exists());
    // Nor is a parquet/ or csv/ that holds no demo's state.
    let lookalike = t.path("lookalike");
    std::fs::create_dir_all(lookalike.join("parquet")).unwrap();
    std::fs::write(lookalike.join("parquet").join("mine.parquet"), "mine").unwrap();
    let run = demo(&lookalike, &[]);
    run.assert_code(2);
    assert!(lookalike.join("parquet").join("mine.parquet").exists());
    // A demo cut short before its first commit left only its locks: it is replaced.
    let cut = t.path("cut");
    std::fs::create_dir_all(cut.join("parquet")).unwrap();
    std::fs::write(cut.join("leads.db.lock"), "").unwrap();
    std::fs::write(cut.join("parquet").join(".ctgo.lock"), "").unwrap();
    demo(&cut, &["--leads", "300"]).assert_code(0);
    // A directory that holds anything else is not touched.
    let other = t.path("mine");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let run = demo(&other, &[]);
    run.assert_code(2);
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);
}

#[test]
fn schema_output_snapshot() {
    let run = Run::from_output(command().args(["schema", "leads"]).output().unwrap());
    run.assert_code(0);
    insta::assert_snapshot!("schema_leads", run.stdout);
}

#[test]
fn jobs_table_snapshot() {
    let sim = sim(120);
    let t = TestDir::new();
    let (dest, _) = t.sqlite();
    sync_ok(&sim, &dest, &[]);
    sim.add_leads(3);
    sync_ok(&sim, &dest, &["--tables", "leads"]);
    let run = Run::from_output(command().args(["jobs", "--dest", &dest]).output().unwrap());
    run.assert_code(0);
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[UUID]",
    );
    settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", "[TIMESTAMP]");
    settings.add_filter(r" +\d+\.\d\d ", " [SECONDS] ");
    // Redact what changes from run to run: ids, timestamps, durations.
    settings.bind(|| insta::assert_snapshot!("jobs_table", run.stdout));
}

#[test]
fn an_api_that_answers_nonsense_fails_the_job_clearly_and_loses_nothing() {
    use ctgo_export::simulator::FaultKind;
    let sim = sim(300);
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    sync_ok(&sim, &dest, &[]);
    sim.add_leads(20);
    sim.update(|c| {
        c.faults.rate = 1.0;
        c.faults.kinds = vec![FaultKind::Nonsense];
    });
    let run = sync(&sim, &dest, &["--max-retries", "2"]);
    run.assert_code(1);
    let job = run.job();
    assert_eq!(job["status"], "FAILED");
    assert!(
        job["error"].as_str().unwrap().contains("leads"),
        "the error says what answered nonsense: {job}"
    );
    // The API recovers: the next run catches up exactly.
    sim.update(|c| c.faults.rate = 0.0);
    let job = sync_ok(&sim, &dest, &[]);
    assert_eq!(leads_counts(&job).0, 20);
    assert_eq!(sqlite_lead_ids(&path), expected_ids(&sim));
}

#[test]
fn exhausted_credits_stop_the_job_with_a_message() {
    let sim = sim_with(|c| c.credits_exhausted = true);
    let t = TestDir::new();
    let (dest, _) = t.sqlite();
    let run = sync(&sim, &dest, &[]);
    run.assert_code(1);
    assert_eq!(run.job()["status"], "FAILED");
    assert!(
        run.stderr.to_lowercase().contains("credit"),
        "{}",
        run.stderr
    );
    assert_eq!(sim.requests().leads, 1, "not retried");
}

#[test]
fn a_key_with_punctuation_is_accepted_by_the_client_and_the_simulator() {
    // The contract fixes only the prefix and the length of a key.
    let key = "ctgo_test-0123456789.abcdefghijklmnopqrstuvwx";
    assert_eq!(key.len(), 45);
    let sim = sim(20);
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    let run = Run::from_output(
        sync_cmd(&sim, &dest, &[])
            .env("CTGO_API_KEY", key)
            .output()
            .unwrap(),
    );
    run.assert_code(0);
    assert_eq!(sqlite_lead_ids(&path), expected_ids(&sim));
    assert!(!run.stderr.contains(&key[5..]));
}

#[test]
fn config_file_settings_yield_to_the_environment_and_to_flags_both_ways() {
    let sim = sim(30);
    let t = TestDir::new();
    let from_file = t.path("from-file.db");
    let from_env = t.path("from-env.db");
    let config = t.path("ctgo-export.toml");
    std::fs::write(
        &config,
        format!(
            "dest = \"sqlite:{}\"\njson = true\nrequests_per_minute = 0\ntimeout = \"1 fortnight\"\n",
            from_file.display()
        ),
    )
    .unwrap();
    let run = |env: &[(&str, String)], flags: &[&str]| {
        let mut c = command();
        c.env("CTGO_API_KEY", KEY)
            .args(["sync", "--base-url", &sim.base_url(), "--config"])
            .arg(&config)
            .args(flags);
        for (k, v) in env {
            c.env(k, v);
        }
        Run::from_output(c.output().unwrap())
    };
    // The file's (bad) timeout is used when nothing overrides it: a usage error.
    let r = run(&[], &[]);
    r.assert_code(2);
    assert!(r.stderr.contains("--timeout"), "{}", r.stderr);
    // The environment overrides the file: its destination, its timeout.
    let env = [
        ("CTGO_DEST", format!("sqlite:{}", from_env.display())),
        ("CTGO_TIMEOUT", "30s".to_string()),
    ];
    let r = run(&env, &[]);
    r.assert_code(0);
    assert_eq!(r.job()["status"], "COMPLETED", "json = true from the file");
    assert!(from_env.exists() && !from_file.exists());
    // A flag turns off what the file turns on.
    let r = run(&env, &["--no-json"]);
    r.assert_code(0);
    assert_eq!(r.stdout.trim(), "", "--no-json beats json = true");
    // And a flag beats the environment.
    let r = run(&env, &["--timeout", "0s"]);
    r.assert_code(2);
}

#[test]
fn a_file_that_cannot_be_read_is_a_usage_error_that_says_why_once() {
    let t = TestDir::new();
    let (dest, _) = t.sqlite();
    let missing = t.path("nope.toml");
    for args in [
        vec![
            "sync",
            "--dest",
            &dest,
            "--config",
            missing.to_str().unwrap(),
        ],
        vec![
            "sync",
            "--dest",
            &dest,
            "--api-key-file",
            missing.to_str().unwrap(),
        ],
    ] {
        let run = Run::from_output(command().args(&args).output().unwrap());
        run.assert_code(2);
        assert!(run.stderr.contains("nope.toml"), "{}", run.stderr);
        assert_eq!(
            run.stderr.matches("No such file or directory").count(),
            1,
            "{}",
            run.stderr
        );
    }
}

#[test]
fn a_destination_keeps_its_kind_and_its_state_file() {
    let sim = sim(600);
    let t = TestDir::new();
    let dir = t.path("out");
    let parquet = format!("parquet:{}", dir.display());
    sync_ok(&sim, &parquet, &[]);
    let refused = |dest: &str, args: &[&str], what: &str| {
        let run = sync(&sim, dest, args);
        run.assert_code(2);
        assert!(run.stderr.contains(what), "{dest}: {}", run.stderr);
    };
    // The same directory as CSV would share the Parquet dedup state: every lead would look
    // written already, and none would reach the CSV files.
    let csv = format!("csv:{}", dir.display());
    refused(&csv, &[], "holds the state of a parquet destination");
    let state = dir.join(".ctgo-state.db");
    refused(
        &format!("sqlite:{}", state.display()),
        &[],
        &format!(
            "holds the state of a parquet destination ({}). A destination keeps one kind: use --dest {parquet},",
            state.display()
        ),
    );
    let run = Run::from_output(command().args(["jobs", "--dest", &csv]).output().unwrap());
    run.assert_code(2);
    assert!(
        run.stderr.contains(&format!("--dest {parquet}")),
        "{}",
        run.stderr
    );
    // Not a file at all: nothing is created beside it.
    refused("sqlite:/dev/null", &[], "not a regular file");
    assert!(!std::path::Path::new("/dev/null.lock").exists());
    // A directory given as an SQLite file, and the other way round.
    refused(
        &format!("sqlite:{}", dir.display()),
        &[],
        &format!("use --dest parquet:{}", dir.display()),
    );
    refused(
        &format!("parquet:{}", state.display()),
        &[],
        &format!("it is a file, not a directory (a parquet destination: use --dest {parquet})"),
    );
    // Without its state file the directory's leads would all be written again (files in
    // subdirectories too).
    std::fs::rename(&state, t.path("state-aside.db")).unwrap();
    std::fs::remove_file(dir.join(".ctgo.lock")).unwrap();
    refused(&parquet, &[], "but no .ctgo-state.db");
    assert!(!state.exists(), "nothing created");
    assert!(!dir.join(".ctgo.lock").exists(), "not even a lock");
    // Nor with an empty one (a copy cut short by a full disk).
    std::fs::write(&state, b"").unwrap();
    refused(&parquet, &[], "but an empty .ctgo-state.db");
    assert_eq!(
        std::fs::metadata(&state).unwrap().len(),
        0,
        "left as it was"
    );
    std::fs::remove_file(&state).unwrap();
    // Nor with an SQLite file that holds none of its tables.
    db(&state)
        .execute_batch("CREATE TABLE t(x); DROP TABLE t;")
        .unwrap();
    refused(&parquet, &[], "does not record");
    for f in [
        ".ctgo-state.db",
        ".ctgo-state.db-wal",
        ".ctgo-state.db-shm",
        ".ctgo.lock",
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let nested = t.path("nested");
    std::fs::create_dir_all(nested.join("leads").join("2026")).unwrap();
    std::fs::copy(
        std::fs::read_dir(dir.join("leads"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
        nested.join("leads").join("2026").join("a.parquet"),
    )
    .unwrap();
    refused(
        &format!("parquet:{}", nested.display()),
        &[],
        "holds exported files (leads/2026/a.parquet)",
    );
    std::fs::rename(t.path("state-aside.db"), &state).unwrap();
    let job = sync_ok(&sim, &parquet, &[]);
    assert_eq!(leads_counts(&job), (0, 0, 0, 0));
}

#[test]
fn a_destination_exports_one_api_unless_a_full_refresh_moves_it() {
    use ctgo_export::simulator::{FaultEndpoint, FaultKind, FaultPlan};
    let first = sim(300);
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    sync_ok(&first, &dest, &[]);
    // Another API (here a simulator with other leads): its leads older than the first one's
    // cursor would be skipped, and a full refresh would mark the first one's leads deleted.
    let second = sim_with(|c| {
        c.leads = 1_200;
        c.seed = 99;
    });
    let run = sync(&second, &dest, &[]);
    run.assert_code(2);
    assert!(
        run.stderr
            .contains(&format!("holds an export of {}", first.base_url())),
        "{}",
        run.stderr
    );
    assert_eq!(sqlite_lead_ids(&path).len(), 300, "nothing written");
    // A move that reads nothing (the first answer is an error) leaves the binding alone.
    second.update(|c| c.faults = FaultPlan::always(FaultKind::NotFound).on(FaultEndpoint::Leads));
    sync(&second, &dest, &["--full-refresh"]).assert_code(1);
    sync_ok(&first, &dest, &[]);
    // A move cut short after its first page: the destination is the new API's, unfinished.
    second.update(|c| {
        c.faults = FaultPlan::always(FaultKind::NotFound)
            .on(FaultEndpoint::Leads)
            .after(1)
    });
    sync(&second, &dest, &["--full-refresh", "--page-size", "500"]).assert_code(1);
    let run = sync(&second, &dest, &[]);
    run.assert_code(2);
    assert!(run.stderr.contains("unfinished"), "{}", run.stderr);
    sync(&first, &dest, &[]).assert_code(2);
    // A full refresh finishes the move: the first API's leads are marked deleted.
    second.update(|c| c.faults = FaultPlan::default());
    let job = sync_ok(&second, &dest, &["--full-refresh"]);
    assert!(leads_counts(&job).2 > 0, "{job}");
    let live = sqlite_live_lead_ids(&path);
    assert_eq!(
        live,
        expected_ids(&second),
        "the new API's leads, and only them, live"
    );
    let later = sync_ok(&second, &dest, &[]);
    assert_eq!(leads_counts(&later), (0, 0, 0, 0));
    sync(&first, &dest, &[]).assert_code(2);

    // A new destination is bound by its first page: a first job that reads nothing (a
    // mistyped URL, here a 404) leaves it free for the right one.
    let (fresh, _) = {
        let p = t.path("fresh.db");
        (format!("sqlite:{}", p.display()), p)
    };
    second.update(|c| c.faults = FaultPlan::always(FaultKind::NotFound).on(FaultEndpoint::Leads));
    sync(&second, &fresh, &[]).assert_code(1);
    sync_ok(&first, &fresh, &[]);
}

#[test]
fn jobs_and_check_read_the_sync_config_file() {
    let sim = sim(100);
    let t = TestDir::new();
    let (dest, _) = t.sqlite();
    sync_ok(&sim, &dest, &[]);
    let key_file = t.path("key");
    std::fs::write(&key_file, KEY).unwrap();
    let config = t.path("ctgo.toml");
    std::fs::write(
        &config,
        format!(
            "dest = {dest:?}\nbase_url = {:?}\napi_key_file = {:?}\n",
            sim.base_url(),
            key_file.display().to_string()
        ),
    )
    .unwrap();
    let run = Run::from_output(
        command()
            .args(["jobs", "--json", "--config"])
            .arg(&config)
            .output()
            .unwrap(),
    );
    run.assert_code(0);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    let run = Run::from_output(
        command()
            .env_remove("CTGO_API_KEY")
            .args(["check", "--json", "--config"])
            .arg(&config)
            .output()
            .unwrap(),
    );
    run.assert_code(0);
    assert!(run.stdout.contains("subscription"), "{}", run.stdout);
}

#[test]
fn json_prints_one_record_for_a_configuration_error_and_a_file_that_is_no_database() {
    let sim = sim(10);
    let t = TestDir::new();
    let (dest, _) = t.sqlite();
    // No key: exit 2, and with --json one FAILED record naming the variable.
    let run = Run::from_output(
        command()
            .args([
                "sync",
                "--json",
                "--dest",
                &dest,
                "--base-url",
                &sim.base_url(),
            ])
            .output()
            .unwrap(),
    );
    run.assert_code(2);
    let record = run.job();
    assert_eq!(record["status"], "FAILED");
    assert_eq!(record["error_details"]["kind"], "configuration");
    assert!(record["tables"]["leads"].is_object(), "{record}");
    assert!(record["error"].as_str().unwrap().contains("CTGO_API_KEY"));
    // A file that is not a database: a usage error, the file untouched.
    let other = t.path("notes.db");
    std::fs::write(&other, "my notes").unwrap();
    let run = sync(&sim, &format!("sqlite:{}", other.display()), &[]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("not an SQLite database"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "my notes");
}

#[test]
fn a_database_of_another_application_is_refused_before_any_request() {
    let sim = sim(10);
    let t = TestDir::new();
    let other = t.path("crm.db");
    db(&other)
        .execute_batch("CREATE TABLE leads(id INTEGER PRIMARY KEY, name TEXT);")
        .unwrap();
    let run = sync(&sim, &format!("sqlite:{}", other.display()), &[]);
    run.assert_code(2);
    assert!(run.stderr.contains("`leads`"), "{}", run.stderr);
    assert_eq!(sim.requests().total, 0, "no request spent");
    assert_eq!(
        query_i64(&other, "SELECT count(*) FROM sqlite_master"),
        1,
        "nothing added beside its own table"
    );
    assert!(
        !t.path("crm.db.lock").exists(),
        "no lock file left beside it"
    );
    // A view is someone's too; an empty database is a new destination.
    let views = t.path("views.db");
    db(&views)
        .execute_batch("CREATE VIEW answer AS SELECT 42;")
        .unwrap();
    sync(&sim, &format!("sqlite:{}", views.display()), &[]).assert_code(2);
    let empty = t.path("empty.db");
    db(&empty)
        .execute_batch("PRAGMA user_version = 1;")
        .unwrap();
    sync_ok(&sim, &format!("sqlite:{}", empty.display()), &[]);
}

#[test]
fn a_closed_stdout_or_stderr_does_not_turn_a_finished_job_into_a_crash() {
    let sim = sim(50);
    let t = TestDir::new();
    let (dest, path) = t.sqlite();
    // The reader of stdout (`| head -c 1`) or of stderr (a dead `| logger`) is gone before
    // the record or the summary is written: exit 0, as the job completed; not a panic (101).
    for (closed_out, lookback) in [(true, "15m"), (false, "0s")] {
        let mut cmd = sync_cmd(&sim, &dest, &["--lookback", lookback]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        // (The short lookback makes a warning to write to the closed stderr at the start.)
        if closed_out {
            drop(child.stdout.take());
        } else {
            drop(child.stderr.take());
        }
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "stdout closed: {closed_out}");
    }
    assert_eq!(sqlite_lead_ids(&path), expected_ids(&sim));
    let mut jobs = command();
    jobs.args(["jobs", "--dest", &dest]).stdout(Stdio::piped());
    let mut child = jobs.spawn().unwrap();
    drop(child.stdout.take());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_key_pasted_into_the_config_file_is_not_quoted_by_its_parse_error() {
    let t = TestDir::new();
    let (dest, _) = t.sqlite();
    for line in [
        format!("api_key = \"{KEY}\""),
        format!("api_key_file = {KEY}"),
        format!("json = \"{KEY}\""),
        // The key of CTGO_API_KEY, cut short and without its prefix, where a value goes.
        format!("lookback = \"{}\"", &KEY[5..30]),
    ] {
        let config = t.path("leak.toml");
        std::fs::write(&config, format!("dest = \"{dest}\"\n{line}\n")).unwrap();
        for sub in ["sync", "jobs"] {
            let mut cmd = command();
            cmd.env("CTGO_API_KEY", KEY)
                .args([sub, "--config", config.to_str().unwrap()]);
            if sub == "sync" {
                cmd.arg("--json");
            }
            let run = Run::from_output(cmd.output().unwrap());
            if line.starts_with("lookback") && sub == "jobs" {
                // (jobs does not read the lookback)
                continue;
            }
            run.assert_code(2);
            assert!(
                (run.stderr.contains("line 2") || line.starts_with("lookback")),
                "{sub} {line}: {}",
                run.stderr
            );
            for out in [&run.stdout, &run.stderr] {
                assert!(
                    !out.contains(&KEY[5..20]),
                    "{sub} {line}: key leaked: {out}"
                );
            }
        }
    }
}

#[test]
fn a_bad_number_in_the_environment_is_named_and_json_is_printed_as_the_file_asks() {
    let sim = sim(10);
    let t = TestDir::new();
    let (dest, _) = t.sqlite();
    let config = t.path("scheduled.toml");
    std::fs::write(
        &config,
        format!(
            "dest = \"{dest}\"\nbase_url = \"{}\"\njson = true\n",
            sim.base_url()
        ),
    )
    .unwrap();
    // A value of the wrong type in the file itself: its settings cannot be taken, but it
    // still asks for the record.
    let typed = t.path("typed.toml");
    std::fs::write(&typed, "json = true\nmax_retries = \"x\"\n").unwrap();
    let run = Run::from_output(
        command()
            .args(["sync", "--config", typed.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    run.assert_code(2);
    assert_eq!(run.job()["status"], "FAILED");
    for (var, value) in [
        ("CTGO_REQUESTS_PER_MINUTE", "abc"),
        ("CTGO_MAX_RETRIES", "-1"),
        ("CTGO_LOOKBACK", "zz"),
    ] {
        let run = Run::from_output(
            command()
                .env("CTGO_API_KEY", KEY)
                .env(var, value)
                .args(["sync", "--config", config.to_str().unwrap()])
                .output()
                .unwrap(),
        );
        run.assert_code(2);
        assert!(run.stderr.contains(var), "{var}: {}", run.stderr);
        let record = run.job();
        assert_eq!(record["status"], "FAILED", "{var}: {record}");
        assert_eq!(record["error_details"]["kind"], "configuration");
    }
    assert_eq!(sim.requests().total, 0);
}

#[test]
fn one_destination_has_one_source_connection_id_however_its_path_is_spelled() {
    let sim = sim(20);
    let t = TestDir::new();
    std::fs::create_dir_all(t.path("real/sub")).unwrap();
    let file = t.path("real/leads.db");
    std::os::unix::fs::symlink(t.path("real"), t.path("link")).unwrap();
    let spellings = [
        format!("sqlite:{}", file.display()),
        format!("sqlite:{}", t.path("link/leads.db").display()),
        format!("sqlite:{}", t.path("real/sub/../leads.db").display()),
    ];
    let ids: Vec<_> = spellings
        .iter()
        .map(|d| sync_ok(&sim, d, &[])["source_connection_id"].clone())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    // A destination from before the id was recorded keeps the id of its latest job.
    db(&file)
        .execute("DELETE FROM _ctgo_meta WHERE key LIKE 'connection_%'", [])
        .unwrap();
    let id = sync_ok(&sim, &spellings[1], &[])["source_connection_id"].clone();
    assert_eq!(id, ids[0]);
}

#[test]
fn a_file_size_limit_fails_the_job_with_its_record_and_the_next_run_is_exact() {
    // `ulimit -f` would kill the process with SIGXFSZ (no message, no record); the write
    // fails instead, and the job says what to do.
    let sim = sim(3_000);
    let t = TestDir::new();
    for dest in [
        format!("csv:{}", t.path("c").display()),
        format!("sqlite:{}", t.path("s.db").display()),
    ] {
        let mut sh = std::process::Command::new("sh");
        sh.arg("-c").arg("ulimit -f 100 && exec \"$0\" \"$@\"");
        let run = Run::from_output(inside(sh, &sync_cmd(&sim, &dest, &[])).output().unwrap());
        run.assert_code(1);
        let job = run.job();
        assert_eq!(job["status"], "FAILED", "{job}");
        // (SQLite words it "disk I/O error", the files "File too large": the advice follows
        // both.)
        let error = job["error"].as_str().unwrap();
        assert!(error.contains("a file-size limit (ulimit -f)"), "{job}");
        let job = sync_ok(&sim, &dest, &[]);
        assert_eq!(leads_counts(&job).0, 3_000, "{job}");
    }
}

#[test]
fn parquet_files_deleted_by_hand_are_reported() {
    // Their rows are gone from the dataset, and the dedup state holds them as written: no run
    // writes them again, so the run says so.
    let sim = sim(300);
    let t = TestDir::new();
    let dir = t.path("p");
    let dest = format!("parquet:{}", dir.display());
    sync_ok(&sim, &dest, &["--tables", "leads"]);
    let quiet = sync(&sim, &dest, &["--tables", "leads"]);
    quiet.assert_code(0);
    assert!(
        !quiet.stderr.contains("missing or changed"),
        "{}",
        quiet.stderr
    );
    let file = std::fs::read_dir(dir.join("leads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    let run = sync(&sim, &dest, &["--tables", "leads"]);
    run.assert_code(0);
    assert!(run.stderr.contains("missing or changed"), "{}", run.stderr);
}

#[test]
fn a_state_older_than_the_files_beside_it_is_refused() {
    // A `.ctgo-state.db` put back from a backup does not know the jobs after it: exporting
    // with it would write their leads again.
    let sim = sim(300);
    let t = TestDir::new();
    for kind in ["parquet", "csv"] {
        let dir = t.path(kind);
        let dest = format!("{kind}:{}", dir.display());
        sync_ok(&sim, &dest, &["--tables", "leads"]);
        let backup = t.path(&format!("{kind}-backup"));
        std::fs::create_dir_all(&backup).unwrap();
        let state_files = [".ctgo-state.db", ".ctgo-state.db-wal"];
        for f in state_files {
            if dir.join(f).exists() {
                std::fs::copy(dir.join(f), backup.join(f)).unwrap();
            }
        }
        sim.add_leads(40);
        let job = sync_ok(&sim, &dest, &["--tables", "leads"]);
        assert_eq!(leads_counts(&job).0, 40, "{job}");
        let newer = |table: &str| {
            std::fs::read_dir(dir.join(table))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.contains(job["id"].as_str().unwrap()))
                .collect::<Vec<_>>()
        };
        let (leads, jobs) = (newer("leads"), newer("export_jobs"));
        assert_eq!((leads.len(), jobs.len()), (1, 1), "{kind}");
        for f in state_files.iter().chain(&[".ctgo-state.db-shm"]) {
            let _ = std::fs::remove_file(dir.join(f));
            if backup.join(f).exists() {
                std::fs::copy(backup.join(f), dir.join(f)).unwrap();
            }
        }
        let run = sync(&sim, &dest, &["--tables", "leads"]);
        run.assert_code(2);
        assert!(
            run.stderr.contains(&format!(
                "it holds export_jobs/{} and 1 more file that its .ctgo-state.db does not \
                 record: the state is older than the files",
                jobs[0]
            )),
            "{kind}: {}",
            run.stderr
        );
        assert_eq!(newer("leads"), leads, "{kind}: nothing touched");
        // Moved away (or the newest state put back), the export goes on from the older state.
        for (table, names) in [("leads", &leads), ("export_jobs", &jobs)] {
            for n in names {
                std::fs::rename(dir.join(table).join(n), t.path(&format!("{kind}-{n}"))).unwrap();
            }
        }
        let job = sync_ok(&sim, &dest, &["--tables", "leads"]);
        assert_eq!(leads_counts(&job).0, 40, "{kind}: {job}");
    }
}
