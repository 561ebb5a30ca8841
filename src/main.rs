//! The `ctgo-export` binary: parse, run, map errors to exit statuses. Everything else is in the
//! library.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use chrono::Utc;
use ctgo_export::api::{ApiClient, ApiError};
use ctgo_export::cli::{CheckArgs, Cli, Command, JobsArgs, SchemaArgs, SyncArgs};
use ctgo_export::config::{self, ConfigError, DestSpec, JobConfig};
use ctgo_export::dest::DestError;
use ctgo_export::extract::{self, Cancel, exit};
use ctgo_export::job::JobRecord;
use ctgo_export::schema::Table;
use uuid::Uuid;

fn main() -> ExitCode {
    // A file-size limit (`ulimit -f`) would kill the process with SIGXFSZ, silently and with
    // no record; ignored, the write fails with EFBIG and the job ends FAILED, saying why.
    // SAFETY: setting a signal's disposition to SIG_IGN, before any thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // A scheduler's SIGTERM a moment after the start must cancel a job, not kill the process:
    // the cancelling signals wait (pending) until `sync` listens for them, or until it is
    // clear that no job will run.
    hold_cancel_signals(true);
    ctgo_export::fault::point("main.started");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // Arguments as given, not necessarily UTF-8; clap quotes the one it refused, which
            // may be the key pasted in the wrong place: scrubbed, as every error is.
            let args: Vec<String> = std::env::args_os()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let text = scrub(&e.render().to_string());
            // `sync --json` prints one record in every case, a flag clap refused included.
            if sync_asks_for_json(&args) {
                let first = text.lines().next().unwrap_or_default();
                print_unstarted_job(
                    Uuid::nil(),
                    &[Table::Leads, Table::SyncRuns],
                    first.strip_prefix("error: ").unwrap_or(first),
                    "configuration",
                );
            }
            let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
            return ExitCode::from(exit::USAGE as u8);
        }
    };
    if !matches!(cli.command, Command::Sync(_)) {
        hold_cancel_signals(false);
    }
    init_tracing();
    // One thread for the async side (HTTP, timers, signals): the heavy stages of an export run
    // on threads of their own (extract.rs), so each allocates in one malloc arena and memory
    // stays flat; a multi-thread runtime would move tasks between workers and grow arenas.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            ctgo_export::errln!("ctgo-export: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED as u8);
        }
    };
    let code = runtime.block_on(run(cli));
    // Do not wait for stray blocking tasks (a request in flight at cancel).
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code as u8)
}

/// stderr for log lines, written around the progress bar so that neither garbles the other.
struct StderrAroundProgress;

impl std::io::Write for StderrAroundProgress {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        extract::write_around_progress(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| StderrAroundProgress)
        .with_target(false)
        // Its own report of a failed write is an `eprintln!`, which panics when stderr is
        // gone: a dead `| logger` must not end a job.
        .log_internal_errors(false)
        .try_init();
}

async fn run(cli: Cli) -> i32 {
    // For these the output is the work: one that could not be written (a full disk) fails.
    let output_is_the_work = matches!(
        cli.command,
        Command::Jobs(_) | Command::Check(_) | Command::Schema(_)
    );
    let result = match cli.command {
        Command::Sync(args) => sync(args).await,
        Command::Jobs(args) => jobs(args),
        Command::Check(args) => check(args).await,
        Command::Schema(args) => schema(args),
        Command::Simulate(args) => ctgo_export::simulator::run(args)
            .await
            .map(|_| exit::COMPLETED),
        Command::Demo(args) => ctgo_export::demo::run(args).await,
    };
    match result {
        Ok(_) if output_is_the_work && ctgo_export::term::stdout_failed() => exit::FAILED,
        Ok(code) => code,
        Err(err) => {
            ctgo_export::errln!("ctgo-export: {}", error_text(&err));
            exit_code_for(&err)
        }
    }
}

/// The error and its causes, `a: b: c`, each cause once: a message that already ends with
/// its cause's text (`cannot read FILE: No such file or directory`) does not get it again.
fn error_text(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    scrub(&text)
}

/// The API's own texts are redacted with the key in hand; this catches a key quoted from
/// anywhere else (a config file, say) before it reaches a terminal or a log: anything shaped
/// like a key, and the key of `CTGO_API_KEY` (whole, cut short, or without its prefix).
fn scrub(text: &str) -> String {
    use ctgo_export::api::key;
    let text = key::scrub_key_like(text);
    match std::env::var(config::KEY_ENV) {
        Ok(k) if k.trim().len() > key::KEY_PREFIX.len() => key::redact_key_in(&text, k.trim()),
        _ => text.into_owned(),
    }
}

/// Usage and configuration errors exit 2, API refusals 3, the rest 1.
fn exit_code_for(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.downcast_ref::<ConfigError>().is_some()
            || cause
                .downcast_ref::<DestError>()
                .is_some_and(DestError::is_usage)
        {
            return exit::USAGE;
        }
        if let Some(api) = cause.downcast_ref::<ApiError>() {
            return if api.is_refusal() {
                exit::REFUSED
            } else {
                exit::FAILED
            };
        }
    }
    exit::FAILED
}

/// Hold SIGINT, SIGTERM and SIGHUP pending (`true`), or let them through (`false`). Threads
/// started while they are held keep them held, so only the main thread receives them.
fn hold_cancel_signals(hold: bool) {
    // SAFETY: a local signal set, filled and passed to pthread_sigmask(3) for this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        let how = if hold {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Whether SIGHUP is ignored (as `nohup` leaves it), asked without changing it.
fn hangup_ignored() -> bool {
    // SAFETY: `sigaction` with a null new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// A signal this soon after the first is the same interrupt delivered twice (a terminal's
/// process group and a wrapper script forwarding it both send one), not a second request.
const SIGNAL_REPEAT_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// Cancel on SIGINT, SIGTERM or SIGHUP (a closed terminal); another signal, once the first
/// is [`SIGNAL_REPEAT_WINDOW`] old, ends the process at once.
fn install_signal_handlers(cancel: Cancel) {
    use tokio::signal::unix::{SignalKind, signal};
    // Listening starts here, when each stream is made, not when the task below first runs:
    // a signal in between would otherwise end the process with the default action.
    let streams = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    let (mut int, mut term) = match streams {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            hold_cancel_signals(false);
            tracing::warn!(error = %e, "Cannot listen for SIGINT and SIGTERM.");
            return;
        }
    };
    // SIGHUP only when it is not ignored: under `nohup` the job must outlive the terminal.
    let mut hup = (!hangup_ignored())
        .then(|| signal(SignalKind::hangup()).ok())
        .flatten();
    // Listening: a signal that came since the start is handled now.
    hold_cancel_signals(false);
    tokio::spawn(async move {
        let mut first: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                Some(()) = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
            match first {
                None => {
                    first = Some(tokio::time::Instant::now());
                    ctgo_export::errln!(
                        "ctgo-export: cancelling: stopping at the next commit point (signal again to quit at once)"
                    );
                    cancel.cancel();
                }
                Some(at) if at.elapsed() < SIGNAL_REPEAT_WINDOW => {}
                Some(_) => {
                    ctgo_export::errln!(
                        "ctgo-export: quitting at once; the next run repairs the job"
                    );
                    std::process::exit(exit::CANCELLED);
                }
            }
        }
    });
}

async fn sync(args: SyncArgs) -> anyhow::Result<i32> {
    // First of all: a scheduler's SIGTERM a moment after the start must cancel, not kill
    // (held since `main` began, see there).
    let cancel = Cancel::new();
    install_signal_handlers(cancel.clone());
    let cfg = match JobConfig::resolve(&args, std::env::var(config::KEY_ENV).ok()) {
        Ok(cfg) => cfg,
        Err(e) => {
            // A script that asked for JSON still reads one record: with --json on the command
            // line, or `json = true` in a config file that is TOML at all.
            let json = args.json
                || (!args.no_json && config::FileConfig::asks_for_json(args.config.as_deref()));
            if json {
                print_unstarted_job(
                    Uuid::nil(),
                    &[Table::Leads, Table::SyncRuns],
                    &e.to_string(),
                    "configuration",
                );
            }
            return Err(e.into());
        }
    };
    ctgo_export::fault::on_interrupt({
        let cancel = cancel.clone();
        move || cancel.cancel()
    });
    let json = cfg.json;
    let source_id = extract::source_connection_id(&cfg);
    let tables = cfg.tables.clone();
    let outcome = match extract::run_sync(cfg, cancel).await {
        Ok(o) => o,
        Err(e) => {
            // No job could start, so none is in the ledger; `--json` still prints one record,
            // FAILED, that says why.
            if json {
                let kind = match &e {
                    DestError::Busy { .. } => "busy",
                    e if e.is_usage() => "configuration",
                    _ => "destination",
                };
                print_unstarted_job(
                    source_id,
                    &tables,
                    &ctgo_export::dest::with_resource_hint(e.to_string()),
                    kind,
                );
            }
            return match e {
                DestError::Busy { .. } => {
                    ctgo_export::errln!("ctgo-export: {e}");
                    Ok(exit::FAILED)
                }
                // A refusal says all it has to say.
                e if e.is_usage() => Err(e.into()),
                e => {
                    let context = match ctgo_export::dest::resource_hint(&e.to_string()) {
                        Some(h) => format!("the destination failed ({h})"),
                        None => "the destination failed".to_string(),
                    };
                    Err(e).context(context)
                }
            };
        }
    };
    if json {
        ctgo_export::outln!("{}", outcome.job.to_json_line());
    }
    ctgo_export::errln!(
        "{}",
        summary_line(&outcome.job, outcome.requests, outcome.rate_wait)
    );
    if outcome.job.entities_failed > 0 {
        ctgo_export::errln!(
            "ctgo-export: {} records did not fit the schema; they are kept in the `rejects` table with the reason and their JSON",
            outcome.job.entities_failed
        );
    }
    if let Some(err) = &outcome.job.error
        && outcome.exit_code != exit::COMPLETED
    {
        ctgo_export::errln!("ctgo-export: {err}");
    }
    Ok(outcome.exit_code)
}

/// One human line about a job.
pub fn summary_line(job: &JobRecord, requests: u64, rate_wait: std::time::Duration) -> String {
    let mut parts = Vec::new();
    for (table, c) in &job.tables {
        parts.push(format!(
            "{table}: {} inserted, {} updated, {} deleted, {} failed",
            c.inserted, c.updated, c.deleted, c.failed
        ));
    }
    format!(
        "Job {} {} in {:.2} s ({} API request{}{}). {}",
        job.id,
        job.status,
        job.duration_seconds.unwrap_or_default(),
        requests,
        if requests == 1 { "" } else { "s" },
        // Say where a long job's time went when it was the API's rate limit. (A wait counts
        // as planned when it began: a job cancelled during one did not wait all of it.)
        if rate_wait >= std::time::Duration::from_secs(1) {
            let waited = rate_wait
                .as_secs_f64()
                .min(job.duration_seconds.unwrap_or_default());
            format!(", {waited:.0} s of it waiting for the API's rate limit")
        } else {
            String::new()
        },
        parts.join("; ")
    )
}

/// `sync --json`'s record for a job that could not start: FAILED, with the reason, in no
/// ledger. `tables` holds the tables asked for, with zero counts.
fn print_unstarted_job(source_id: Uuid, tables: &[Table], error: &str, kind: &str) {
    let mut job = JobRecord::new(source_id, Utc::now());
    for t in tables {
        job.touch_table(t.name());
    }
    let details = serde_json::json!({"kind": kind, "refused": false});
    let error = scrub(error);
    let _ = job.fail(error, Some(details), Utc::now());
    ctgo_export::outln!("{}", job.to_json_line());
}

/// Whether a command line clap refused is `sync` asking for JSON: with `--json` (not undone
/// by a later `--no-json`), or with neither and `json = true` in the config file it names
/// (`--config`, else `CTGO_CONFIG`), as when the line parses.
fn sync_asks_for_json(args: &[String]) -> bool {
    let mut args = args.iter().skip_while(|a| a.starts_with('-'));
    if args.next().map(String::as_str) != Some("sync") {
        return false;
    }
    let args: Vec<&str> = args
        .map(String::as_str)
        .take_while(|a| *a != "--")
        .collect();
    let flag = args
        .iter()
        .rev()
        .find(|a| **a == "--json" || **a == "--no-json");
    if let Some(flag) = flag {
        return *flag == "--json";
    }
    let config = args
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match a.strip_prefix("--config") {
            Some("") => args.get(i + 1).map(|p| p.to_string()),
            Some(rest) => rest.strip_prefix('=').map(str::to_string),
            None => None,
        })
        .next_back()
        .or_else(|| std::env::var("CTGO_CONFIG").ok().filter(|p| !p.is_empty()));
    config::FileConfig::asks_for_json(config.as_deref().map(std::path::Path::new))
}

/// How much of a job's error the `jobs` table shows.
const JOBS_ERROR_CHARS: usize = 100;

fn jobs(args: JobsArgs) -> anyhow::Result<i32> {
    let dest = match args.dest.clone() {
        Some(d) => d,
        None => config::FileConfig::load_given(args.config.as_deref())?
            .dest
            .ok_or(ConfigError::MissingDest)?,
    };
    let spec = DestSpec::parse(&dest)?;
    let ledger = ctgo_export::dest::open_ledger(&spec)?;
    let jobs = ledger
        .jobs(args.limit)
        .context("reading the export-job history")?;
    if args.json {
        for job in &jobs {
            ctgo_export::outln!("{}", job.to_json_line());
        }
        return Ok(exit::COMPLETED);
    }
    if jobs.is_empty() {
        ctgo_export::errln!("No export jobs recorded in {spec}.");
        return Ok(exit::COMPLETED);
    }
    ctgo_export::outln!(
        "{:<36}  {:<10}  {:<24}  {:>9}  {:>8}  {:>8}  {:>8}  {:>6}  ERROR",
        "ID",
        "STATUS",
        "STARTED",
        "SECONDS",
        "INSERTED",
        "UPDATED",
        "DELETED",
        "FAILED"
    );
    for j in &jobs {
        // A job still running has no duration yet; a long error is cut to keep one line a
        // job (`--json` has it whole).
        let seconds = j
            .duration_seconds
            .map_or_else(|| "-".to_string(), |s| format!("{s:.2}"));
        let error = j.error.as_deref().unwrap_or("");
        let error = match error.char_indices().nth(JOBS_ERROR_CHARS) {
            Some((cut, _)) => format!("{}…", &error[..cut]),
            None => error.to_string(),
        };
        let line = format!(
            "{:<36}  {:<10}  {:<24}  {:>9}  {:>8}  {:>8}  {:>8}  {:>6}  {}",
            j.id,
            j.status.as_str(),
            ctgo_export::job::format_ts(&j.started_at),
            seconds,
            j.entities_inserted,
            j.entities_updated,
            j.entities_deleted,
            j.entities_failed,
            error
        );
        ctgo_export::outln!("{}", line.trim_end());
    }
    Ok(exit::COMPLETED)
}

async fn check(args: CheckArgs) -> anyhow::Result<i32> {
    let file = config::FileConfig::load_given(args.config.as_deref())?;
    let base_url = config::resolve_base_url(args.base_url.clone().or(file.base_url))?;
    let timeout = config::resolve_timeout(args.timeout.clone().or(file.timeout))?;
    let key = config::resolve_key(
        args.api_key_file.is_some(),
        args.api_key_file.clone().or(file.api_key_file),
        std::env::var(config::KEY_ENV).ok(),
    )?;
    config::refuse_key_in_url(&base_url, &key)?;
    let client = ApiClient::new(
        key,
        ctgo_export::api::ClientOptions {
            base_url: base_url.clone(),
            requests_per_minute: ctgo_export::api::DEFAULT_REQUESTS_PER_MINUTE,
            max_retries: 3,
            timeout,
        },
    )?;
    let me = client.me().await?;
    if args.json {
        ctgo_export::outln!("{me}");
        return Ok(exit::COMPLETED);
    }
    ctgo_export::outln!("{}", describe_me(&me, base_url.as_str()));
    Ok(exit::COMPLETED)
}

/// `check`'s human summary of `GET /me`.
fn describe_me(me: &serde_json::Value, base: &str) -> String {
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => ctgo_export::term::one_line(s).into_owned(),
        other => other.to_string(),
    };
    let mut out = format!("The key works ({base}).\n");
    out += &format!(
        "  user:         {} <{}>\n",
        s(&me["user"]["name"]),
        s(&me["user"]["email"])
    );
    out += &format!(
        "  subscription: {} ({})\n",
        s(&me["subscription"]["plan"]),
        s(&me["subscription"]["status"])
    );
    out += &format!(
        "  credits:      {} of {} left\n",
        s(&me["credits"]["remaining"]),
        s(&me["credits"]["monthlyAllowance"])
    );
    if let Some(accounts) = me["accounts"].as_array() {
        for a in accounts {
            out += &format!(
                "  account @{} ({}): {} of {} leads used this month\n",
                s(&a["xHandle"]),
                s(&a["trackedXAccountId"]),
                s(&a["budget"]["used"]),
                s(&a["budget"]["monthlyLeadLimit"])
            );
        }
    }
    out.trim_end().to_string()
}

fn schema(args: SchemaArgs) -> anyhow::Result<i32> {
    let tables: Vec<Table> = match &args.table {
        Some(name) => {
            vec![Table::from_name(name).ok_or_else(|| ConfigError::UnknownTable(name.clone()))?]
        }
        None => Table::ALL.to_vec(),
    };
    if args.raw && args.table.is_none() {
        // One JSON value, so that a JSON reader takes all of it.
        let mut all = serde_json::Map::new();
        for t in tables {
            let v: serde_json::Value =
                serde_json::from_str(t.schema_source()).context("reading a shipped schema file")?;
            all.insert(t.name().to_string(), v);
        }
        ctgo_export::outln!(
            "{}",
            serde_json::to_string_pretty(&all).context("printing the schemas")?
        );
    } else {
        for t in tables {
            if args.raw {
                ctgo_export::outln!("{}", t.schema_source().trim_end());
            } else {
                ctgo_export::outln!("{}", ctgo_export::schema::describe(t));
            }
        }
    }
    Ok(exit::COMPLETED)
}
