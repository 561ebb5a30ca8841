//! `ctgo-export demo`: the built-in simulator, exported into `./ctgo-demo/leads.db`, then a
//! second, incremental export after the simulated API changed; no key and no network needed.

use std::path::Path;

use anyhow::Context;

use crate::api;
use crate::cli::DemoArgs;
use crate::config::{ConfigError, DestSpec, JobConfig};
use crate::extract::{self, Cancel, JobOutcome, exit};
use crate::simulator::{SimConfig, Simulator};

/// Leads the demo's simulator serves.
pub const DEFAULT_DEMO_LEADS: usize = 5_000;
/// A well-formed key the demo's in-process simulator accepts (it is no real key).
pub const DEMO_KEY: &str = "ctgo_demo000000000000000000000000000000000000";

/// The config of one demo export into `dest`.
pub fn demo_config(base_url: &str, dest: DestSpec) -> anyhow::Result<JobConfig> {
    let args = crate::cli::SyncArgs {
        dest: Some(dest.to_string()),
        base_url: Some(base_url.to_string()),
        requests_per_minute: Some("0".into()),
        no_progress: true,
        ..Default::default()
    };
    Ok(JobConfig::resolve(&args, Some(DEMO_KEY.to_string()))?)
}

async fn export(base_url: &str, dest: DestSpec) -> anyhow::Result<JobOutcome> {
    let cfg = demo_config(base_url, dest.clone())?;
    extract::run_sync(cfg, Cancel::new())
        .await
        .with_context(|| format!("exporting into {dest}"))
}

fn describe(label: &str, o: &JobOutcome) -> String {
    let j = &o.job;
    let mut s = format!(
        "{label}: {} in {:.2} s with {} API requests: {} inserted, {} updated, {} failed",
        j.status,
        j.duration_seconds.unwrap_or_default(),
        o.requests,
        j.entities_inserted,
        j.entities_updated,
        j.entities_failed
    );
    if j.entities_failed > 0 {
        s += " (malformed: quarantined in rejects)";
    }
    for (t, c) in &j.tables {
        s += &format!(
            "\n    {t}: {} inserted, {} updated, {} failed",
            c.inserted, c.updated, c.failed
        );
    }
    s
}

/// The three destinations of the demo, side by side in `out`.
pub fn demo_destinations(out: &Path) -> [DestSpec; 3] {
    [
        DestSpec::Sqlite(out.join("leads.db")),
        DestSpec::Parquet(out.join("parquet")),
        DestSpec::Csv(out.join("csv")),
    ]
}

/// Every this many leads the demo's simulator serves a malformed one.
const DEMO_MALFORMED_EVERY: usize = 997;

/// What a demo leaves in its directory.
const DEMO_NAMES: &[&str] = &[
    "leads.db",
    "leads.db-wal",
    "leads.db-shm",
    "leads.db.lock",
    "parquet",
    "csv",
];

/// An empty `out`, or one holding only a previous demo's outputs, which are removed: a new
/// simulator is another API, which a destination refuses to mix with the one it exported.
/// Anything else there, or a destination bound to an API that is not on this machine, or one
/// a job is using, makes the demo stop without touching anything.
fn prepare_out(out: &Path) -> anyhow::Result<()> {
    let entries: Vec<String> = match std::fs::read_dir(out) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("listing {}", out.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("listing {}", out.display())),
    };
    if entries.iter().any(|e| !DEMO_NAMES.contains(&e.as_str())) {
        return Err(ConfigError::DemoOut(out.to_path_buf()).into());
    }
    if !entries.is_empty() {
        let dests = demo_destinations(out);
        let mut locks = Vec::new();
        for dest in &dests {
            let path = dest.path();
            let present = match dest {
                DestSpec::Sqlite(_) => entries.iter().any(|e| e.starts_with("leads.db")),
                DestSpec::Parquet(_) | DestSpec::Csv(_) => path.exists(),
            };
            if !present {
                continue;
            }
            // Locked first, so that no job changes it between the check and the removal.
            let lock = crate::dest::lock_path(dest);
            locks.push(crate::dest::DestLock::acquire(&lock, &dest.to_string())?);
            // A demo's destination records the simulator it exported (with its first page),
            // or, cut short before that, holds nothing: anything else is not a demo's to
            // remove.
            let state = crate::dest::state_path(dest);
            let store = if state.exists() {
                Some(
                    crate::dest::StateStore::open_read_only(&state)
                        .with_context(|| format!("reading {}", state.display()))?,
                )
            } else {
                None
            };
            let demo_made = match &store {
                Some(store) => match store.bound_source()? {
                    Some(s) => reqwest::Url::parse(&s).is_ok_and(|u| api::is_loopback(&u)),
                    None => store.holds_nothing()?,
                },
                None => true,
            };
            if !demo_made {
                return Err(ConfigError::DemoOut(out.to_path_buf()).into());
            }
            if matches!(dest, DestSpec::Parquet(_) | DestSpec::Csv(_)) {
                let recorded = match &store {
                    Some(store) => store.recorded_files()?.into_iter().collect(),
                    None => Default::default(),
                };
                if !only_its_own_files(path, &recorded)? {
                    return Err(ConfigError::DemoOut(out.to_path_buf()).into());
                }
            }
        }
        crate::errln!("Replacing the previous demo in {}.", out.display());
        for dest in &dests {
            let path = dest.path();
            let removed = match dest {
                DestSpec::Sqlite(_) => {
                    ["", "-wal", "-shm", ".lock"].iter().try_for_each(|suffix| {
                        let mut p = path.as_os_str().to_owned();
                        p.push(suffix);
                        remove(std::fs::remove_file(&p))
                    })
                }
                DestSpec::Parquet(_) | DestSpec::Csv(_) => remove(std::fs::remove_dir_all(path)),
            };
            removed.with_context(|| format!("removing the previous demo's {dest}"))?;
        }
        drop(locks);
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
}

/// Whether the files destination `dir` holds nothing but its state and lock files and, in its
/// table directories, the files its state records (`recorded`, `leads/part-….parquet`) or was
/// writing. Anything a user put there keeps the demo from removing it.
fn only_its_own_files(
    dir: &Path,
    recorded: &std::collections::HashSet<String>,
) -> anyhow::Result<bool> {
    use crate::dest::{STATE_FILE, files};
    let own_root = [
        STATE_FILE.to_string(),
        format!("{STATE_FILE}-wal"),
        format!("{STATE_FILE}-shm"),
        files::LOCK_FILE.to_string(),
    ];
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if own_root.contains(&name) {
            continue;
        }
        if !entry.file_type()?.is_dir() || crate::schema::Table::from_name(&name).is_none() {
            return Ok(false);
        }
        for file in std::fs::read_dir(entry.path())? {
            let file = file?;
            let file_name = file.file_name().to_string_lossy().into_owned();
            let own = file.file_type()?.is_file()
                && (recorded.contains(&format!("{name}/{file_name}"))
                    || files::is_staged_name(&file_name));
            if !own {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// A removal that found nothing to remove is fine.
fn remove(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<i32> {
    prepare_out(&args.out)?;
    let dests = demo_destinations(&args.out);
    let db = args.out.join("leads.db");
    let mut cfg = SimConfig::new(args.leads, 7);
    cfg.malformed_every = Some(DEMO_MALFORMED_EVERY);
    let sim = Simulator::start(cfg).context("starting the built-in simulator")?;
    let base = sim.base_url();
    let malformed = match args.leads / DEMO_MALFORMED_EVERY {
        0 => String::new(),
        n => format!(" ({n} of them deliberately malformed)"),
    };
    crate::errln!(
        "Simulator on {base} serving {} leads{malformed}.",
        args.leads
    );

    for round in ["First export ", "Second export"] {
        if round.starts_with("Second") {
            // The API moves on: new leads, late ones, leads exported in the product, runs
            // finishing. The second export is incremental: only these are written.
            let ids = sim.lead_ids();
            sim.mark_exported(&ids[ids.len().saturating_sub(5)..]);
            sim.add_leads(40);
            sim.add_late_leads(3, 10);
            sim.complete_runs();
            crate::errln!(
                "\nThe API changed: 43 new leads (3 of them 10 minutes late), 5 recent leads exported in the product (updates), runs finished."
            );
        }
        for dest in &dests {
            let o = export(&base, dest.clone()).await?;
            crate::errln!("{}", describe(&format!("{round} → {dest}"), &o));
            if o.exit_code != exit::COMPLETED {
                return Ok(o.exit_code);
            }
        }
    }

    summary(&db)?;
    let out = args.out.display();
    // The program as it was started (`target/release/ctgo-export` under cargo run).
    let me = std::env::args()
        .next()
        .unwrap_or_else(|| "ctgo-export".into());
    crate::errln!(
        "\nTry:\n  sqlite3 {out}/leads.db 'SELECT handle, follower_count, discovered_at FROM leads ORDER BY discovered_at DESC LIMIT 5'\n  python3 -c \"import duckdb; print(duckdb.sql(\\\"SELECT count(DISTINCT id) FROM read_parquet('{out}/parquet/leads/*.parquet')\\\"))\"\n  ls {out}/csv/leads/\n  {me} jobs --dest sqlite:{out}/leads.db"
    );
    Ok(exit::COMPLETED)
}

fn summary(db: &Path) -> anyhow::Result<()> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let count = |sql: &str| -> anyhow::Result<i64> { Ok(conn.query_row(sql, [], |r| r.get(0))?) };
    crate::errln!(
        "\n{} now holds {} leads, {} sync runs, {} rejects and {} export jobs.",
        db.display(),
        count("SELECT count(*) FROM leads")?,
        count("SELECT count(*) FROM sync_runs")?,
        count("SELECT count(*) FROM rejects")?,
        count("SELECT count(*) FROM export_jobs")?,
    );
    Ok(())
}
