//! Extraction: pagination, the persisted cursor with its lookback, dedup, and the job loop.
//!
//! # The cursor, and why it is exact
//!
//! The API has no `updatedAt` and no server-side cursor; it orders pages as it likes, its
//! `since` may be `>` or `>=`, leads become visible up to 15 minutes after their `discoveredAt`,
//! and offsets shift when leads arrive during pagination. So:
//!
//! - the cursor of a scope is the newest `discoveredAt` of a *completed* export; each export asks
//!   `since = cursor − lookback − 1 s` (the extra second covers an exclusive `since` at a shared
//!   second), so late and same-second leads are read again;
//! - every record is deduplicated by id and content hash against the destination's state, so
//!   reading a lead again writes nothing unless it changed (then it is an update);
//! - data and dedup state are committed together, batch by batch, but the cursor only moves when
//!   the export reached the end of its pages. A crash in the middle leaves the old cursor: the
//!   next run reads the same window again and dedup skips what was already committed. (Moving
//!   the cursor per page would lose the older pages of a newest-first API: the classic cursor
//!   boundary bug.)
//! - pages overlap by one record, and each must start inside the page before: when leads are
//!   removed under the listing, the later ones move back across a page boundary, and a page
//!   that starts past the one before has that window read again ([`anchor`]);
//! - pagination ends on `hasMore: false`, an empty page, a short page (when `hasMore` is not
//!   given), or two pages that bring no id the last pages did not (a server ignoring
//!   `offset`). That last stop is a guess, not the end (so are a page served twice, more pages
//!   than `total` implies, and a listing that keeps moving under the pages): the pages read
//!   are committed and the job fails ([`StepError::Incomplete`])
//!   after the other tables, but the cursor stays, since on a newest-first API the unread pages
//!   hold the oldest leads, which a moved cursor would never ask for again. A short page the
//!   API marks as the last ends the export whatever ids it holds.
//!
//! Pages go through three stages: the fetcher (an async task: HTTP, the envelope, the rate
//! limit; two requests in flight once pages come back full), the mappers (JSON → Arrow,
//! content hashes; pages dealt in turn between a mapper thread and the fetcher itself, see
//! [`PageSink`]) and the writer thread (dedup state, destination, commits; it takes the pages
//! back in order), with one page buffered between each. So requests, rate-limit waits,
//! decoding and writing all overlap, on few threads: each allocates from a malloc arena of its
//! own, and every arena keeps some memory back.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::api::{ApiClient, ApiError, LeadsQuery, RunsQuery};
use crate::config::JobConfig;
use crate::dest::{self, DestError, Destination};
use crate::job::{JobRecord, JobStatus};
use crate::mapping::MapContext;
use crate::schema::Table;

mod anchor;
pub mod cancel;
pub mod dedup;

pub use cancel::Cancel;

/// Why a page can bring nothing new before the end, in the words of an early stop's error.
const EARLY_STOP_CAUSES: &str =
    "(does the API ignore `offset`?), so pagination stopped before the end";

/// The state store's mark (kept among the cursors) that the last reading of the runs
/// listing (`GET /runs`, all streams) reached its end. Only then may the next one stop early
/// at a page with nothing new: an interrupted reading, or runs seen through the per-stream
/// endpoint, leave older new runs behind the pages that now look unchanged.
pub const RUNS_LISTED_SCOPE: &str = "runs:listed";

/// How long a run not seen finished is read again: until a run triggered this much later is
/// known. Runs last minutes; one still `running` (or in a status the contract does not list,
/// or with none) a day of runs later is taken as stuck: waiting for it would make every job
/// read the whole runs listing for ever.
pub const PENDING_RUN_MAX_AGE_MS: i64 = 24 * 3600 * 1000;

/// How far the API's clock may lag ours. The cursor stays this far before the export's start,
/// so that leads the API shows during the export, dated up to the lookback before its start
/// by the API's clock, are still after the next run's `since`.
pub const API_CLOCK_LAG_MS: i64 = 60_000;

/// Exit statuses of `sync` (product.md).
pub mod exit {
    pub const COMPLETED: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const REFUSED: i32 = 3;
    pub const CANCELLED: i32 = 130;
}

/// Why a job step stopped.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Dest(#[from] DestError),
    #[error("cancelled")]
    Cancelled,
    /// Pagination stopped on a guess (a page served again, pages with no new id, more pages
    /// than `total` implies), not at the end the API announced. Leads on pages never read may
    /// be older than the cursor would become, so the cursor stays; a full refresh (`full`)
    /// marks nothing deleted.
    #[error("{why}; {}", if *full {
        "the records read are kept, but the cursor was not moved and nothing was marked deleted: run the full refresh again"
    } else {
        "the leads read are kept, but the cursor was not moved, so the next run reads this window again"
    })]
    Incomplete { why: String, full: bool },
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a finished job reports.
#[derive(Debug)]
pub struct JobOutcome {
    pub job: JobRecord,
    pub exit_code: i32,
    pub requests: u64,
    /// Time requests spent waiting for the API's rate limit.
    pub rate_wait: std::time::Duration,
}

/// The API a job reads, as the destination's state records it: the base URL.
fn source_url(cfg: &JobConfig) -> &str {
    cfg.base_url.as_str().trim_end_matches('/')
}

/// Stable id of one source + destination pair.
pub fn source_connection_id(cfg: &JobConfig) -> Uuid {
    let base = source_url(cfg);
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("ctgo-export|{base}|{}", cfg.dest.canonical()).as_bytes(),
    )
}

/// The scope a cursor belongs to: all streams, or one stream.
pub fn cursor_scope(stream: Option<i64>) -> String {
    match stream {
        None => "leads".to_string(),
        Some(id) => format!("leads:stream:{id}"),
    }
}

/// The `since` an export asks for, from the committed cursor.
pub fn since_for(
    cursor_ms: Option<i64>,
    lookback: std::time::Duration,
    first_since: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match cursor_ms {
        Some(ms) => {
            let secs = ms.div_euclid(1000) - lookback.as_secs() as i64 - 1;
            DateTime::from_timestamp(secs, 0)
        }
        None => first_since,
    }
}

/// Run one `sync` job to its end. Errors before a job record exists (the destination is busy
/// or cannot be opened) come back as `Err`; everything after is in the job record.
pub async fn run_sync(cfg: JobConfig, cancel: Cancel) -> Result<JobOutcome, DestError> {
    let started = Instant::now();
    let mut dest = {
        let spec = cfg.dest.clone();
        let bom = cfg.csv_bom;
        tokio::task::spawn_blocking(move || dest::open(&spec, bom))
            .await
            .map_err(|e| DestError::Format {
                what: "destination".into(),
                message: e.to_string(),
            })??
    };
    let recovery = dest.recover()?;
    if !recovery.interrupted_jobs.is_empty()
        || recovery.published_files > 0
        || recovery.discarded_files > 0
    {
        tracing::info!(
            interrupted_jobs = recovery.interrupted_jobs.len(),
            published_files = recovery.published_files,
            discarded_files = recovery.discarded_files,
            "Recovered what an earlier run left unfinished."
        );
    }

    // One destination, one API. A full refresh may move it to another: it reads as if no
    // cursor existed; the move is staged with its first page and finished with its end.
    let source = source_url(&cfg);
    let binding = dest
        .state()
        .source_binding(source)
        .map_err(DestError::sql("reading the destination's state"))?;
    // (The old API's leads that the new one does not return are marked deleted for the
    // streams and tables the full refresh covers; a later full refresh of more marks the rest.)
    let moving = match &binding {
        dest::Binding::Same | dest::Binding::Unbound => false,
        dest::Binding::Other(bound) if cfg.full_refresh => {
            tracing::warn!(
                from = bound,
                to = source,
                "Moving this destination to another API: this full refresh reads it whole."
            );
            true
        }
        dest::Binding::Unfinished if cfg.full_refresh => true,
        dest::Binding::Unfinished => {
            return Err(DestError::Mismatch {
                dest: dest.describe(),
                reason: format!(
                    "its move to {source} is unfinished (the full refresh that began it did not \
                     complete): run --full-refresh to finish it, or export into a new destination"
                ),
            });
        }
        dest::Binding::Other(bound) => {
            return Err(DestError::Mismatch {
                dest: dest.describe(),
                reason: format!(
                    "it holds an export of {bound}, and this job reads {source}: their cursors \
                     and leads would mix. Export into a new destination, or move this one with \
                     --full-refresh (from its first page the destination belongs to the new \
                     API and the old cursors are dropped; when it completes, the ids the new \
                     API does not return are marked deleted)"
                ),
            });
        }
    };

    if cfg.lookback < crate::config::DEFAULT_LOOKBACK && cfg.tables.contains(&Table::Leads) {
        tracing::warn!(
            lookback = %humantime::format_duration(cfg.lookback),
            "The lookback is shorter than the 15 minutes by which the API may show a lead late: \
             a lead shown later than the lookback after its discoveredAt is missed by incremental \
             runs (a --full-refresh finds it)."
        );
    }
    // The id this destination has for this API (recorded by its first job), not one made
    // again from how the path is spelled this time.
    let computed = source_connection_id(&cfg);
    let connection_id = dest
        .state()
        .connection_id(source, &computed.to_string())
        .ok()
        .and_then(|id| Uuid::parse_str(&id).ok())
        .unwrap_or(computed);
    let mut job = JobRecord::new(connection_id, Utc::now());
    for t in &cfg.tables {
        job.touch_table(t.name());
    }
    // From here on every end, failures included, is a job record (`--json` prints it).
    if let Err(e) = dest.state().save_job(&job) {
        let e = DestError::sql("recording the job")(e);
        return finish_failed(dest, job, StepError::Dest(e), &Default::default());
    }
    tracing::info!(job_id = %job.id, dest = %dest.describe(), "Export job created.");

    let client = match ApiClient::new(cfg.key.clone(), cfg.client_options()) {
        Ok(c) => Arc::new(c),
        Err(e) => return finish_failed(dest, job, StepError::Api(e), &Default::default()),
    };
    let _ = job.transition(JobStatus::Running, Utc::now());
    if let Err(e) = dest.state().save_job(&job) {
        let e = DestError::sql("recording the job")(e);
        return finish_failed(dest, job, StepError::Dest(e), &Default::default());
    }

    let mut run = JobRun {
        cfg: &cfg,
        client: client.clone(),
        cancel: cancel.clone(),
        job,
        dest: Some(dest),
        progress: progress_bar(&cfg),
        clock: ExtractClock::default(),
        moving,
        bind: match binding {
            dest::Binding::Same => None,
            dest::Binding::Unbound => Some(Bind::New(source.to_string())),
            _ => Some(Bind::Move(source.to_string())),
        },
    };
    let result = run.run_tables().await;
    let JobRun {
        job,
        dest,
        progress,
        ..
    } = run;
    progress.finish_and_clear();
    if let Ok(mut active) = ACTIVE_BAR.lock() {
        *active = None;
    }
    let Some(mut dest) = dest else {
        return Err(DestError::Format {
            what: "destination".into(),
            message: "lost the destination after a worker panic".into(),
        });
    };
    let stats = client.stats();
    let outcome = match result {
        Ok(()) => {
            let mut done = job.clone();
            let moved = if moving {
                dest.state()
                    .stage_move_done()
                    .map_err(DestError::sql("recording the move to another API"))
            } else {
                Ok(())
            };
            let finished = moved.and_then(|()| dest.commit(true)).and_then(|_| {
                let _ = done.transition(JobStatus::Completed, Utc::now());
                dest.finish_job(&done)
            });
            match finished {
                Ok(()) => JobOutcome {
                    job: done,
                    exit_code: exit::COMPLETED,
                    requests: stats.requests,
                    rate_wait: stats.rate_wait,
                },
                Err(e) => return finish_failed(dest, job, StepError::Dest(e), &stats),
            }
        }
        Err(StepError::Cancelled) => {
            // The job stopped between pages: what is staged is whole pages with their dedup
            // state and counts (the cursor and a full refresh's deletions are staged only at
            // an export's end), so it is committed, as at any commit point, and a Parquet or
            // CSV file in progress is kept rather than read again. Only if that fails is it
            // discarded, with its counts; what was committed before stays either way.
            let cancelled = commit_staged(dest.as_mut(), &job).and_then(|mut job| {
                let _ = job.transition(JobStatus::Cancelling, Utc::now());
                dest.state()
                    .save_job(&job)
                    .map_err(DestError::sql("recording the job"))?;
                let _ = job.transition(JobStatus::Cancelled, Utc::now());
                job.error = Some("cancelled by a signal (SIGINT, SIGTERM or SIGHUP)".into());
                dest.finish_job(&job)?;
                Ok(job)
            });
            match cancelled {
                Ok(job) => JobOutcome {
                    job,
                    exit_code: exit::CANCELLED,
                    requests: stats.requests,
                    rate_wait: stats.rate_wait,
                },
                Err(e) => return finish_failed(dest, job, StepError::Dest(e), &stats),
            }
        }
        Err(e) => return finish_failed(dest, job, e, &stats),
    };
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Job finished."
    );
    Ok(outcome)
}

/// The job as its last commit recorded it: its counts are those of the committed data (each
/// commit saves the job in the same transaction). After a rollback, the in-memory counts
/// include pages that were just discarded.
fn committed_job(dest: &mut dyn Destination, job: &JobRecord) -> Result<JobRecord, DestError> {
    Ok(dest
        .state()
        .job(&job.id)
        .map_err(DestError::sql("reading the job back"))?
        .unwrap_or_else(|| job.clone()))
}

/// Commit what a job that stops early has staged (whole pages), with the counts of the job
/// as they stand; the job as committed. When that fails, the staged work is rolled back and
/// the job is the one its last commit recorded.
fn commit_staged(dest: &mut dyn Destination, job: &JobRecord) -> Result<JobRecord, DestError> {
    // The counts commit with the pages they count, as at every commit.
    let committed = dest
        .state()
        .save_job(job)
        .map_err(DestError::sql("recording job counts"))
        .and_then(|()| dest.commit(true));
    match committed {
        Ok(_) => Ok(job.clone()),
        Err(e) => {
            tracing::warn!(error = %e, "Could not commit the pages staged last; discarding them.");
            dest.rollback()?;
            committed_job(dest, job)
        }
    }
}

/// End a job as FAILED and record it. Staged pages are committed when they are whole (rows and
/// dedup state staged together, no cursor move: the API failed, or pagination stopped early);
/// after a destination error they may not be, so they are rolled back with their counts.
fn finish_failed(
    mut dest: Box<dyn Destination>,
    job: JobRecord,
    err: StepError,
    stats: &crate::api::ClientStats,
) -> Result<JobOutcome, DestError> {
    // (After a destination error, what is staged is not to be trusted.)
    let mut job = if matches!(err, StepError::Dest(_)) {
        dest.rollback()?;
        committed_job(dest.as_mut(), &job)?
    } else {
        commit_staged(dest.as_mut(), &job)?
    };
    let exit_code = match &err {
        StepError::Api(e) if e.is_refusal() => exit::REFUSED,
        _ => exit::FAILED,
    };
    let details = serde_json::json!({
        "kind": match &err {
            StepError::Api(_) => "api",
            StepError::Dest(_) => "destination",
            StepError::Cancelled => "cancelled",
            StepError::Incomplete { .. } => "pagination",
            StepError::Internal(_) => "internal",
        },
        "refused": exit_code == exit::REFUSED,
    });
    let _ = job.fail(
        dest::with_resource_hint(format!("{err:#}")),
        Some(details),
        Utc::now(),
    );
    if let Err(e) = dest.finish_job(&job) {
        // Still report the job (`--json` prints it); the next run marks it FAILED in the
        // ledger ("interrupted"), as after a crash.
        tracing::error!(error = %e, "Could not record the failed job in the destination.");
        let why = format!("{err:#}");
        let again = e.to_string();
        job.error = Some(dest::with_resource_hint(if again == why {
            format!("{why}; the job could not be recorded in the destination either")
        } else {
            format!("{why}; the job could not be recorded in the destination either: {again}")
        }));
    }
    Ok(JobOutcome {
        job,
        exit_code,
        requests: stats.requests,
        rate_wait: stats.rate_wait,
    })
}

/// The progress bar being drawn, if any: log lines are written around it
/// ([`write_around_progress`]), not through it.
static ACTIVE_BAR: std::sync::Mutex<Option<ProgressBar>> = std::sync::Mutex::new(None);

/// Write `buf` to stderr, lifting the progress bar off the terminal meanwhile.
pub fn write_around_progress(buf: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let bar = ACTIVE_BAR.lock().ok().and_then(|b| b.clone());
    match bar {
        Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf)),
        None => std::io::stderr().write_all(buf),
    }
}

/// The progress bar on stderr, when it is a terminal (stdout, where `--json` goes, is apart).
/// It ticks by itself, so a wait (the rate limit, a `Retry-After`) shows as time passing.
fn progress_bar(cfg: &JobConfig) -> ProgressBar {
    use std::io::IsTerminal;
    if !cfg.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(0);
    pb.enable_steady_tick(std::time::Duration::from_millis(250));
    if let Ok(mut active) = ACTIVE_BAR.lock() {
        *active = Some(pb.clone());
    }
    pb
}

/// Start a phase of the bar: `records` counted against the API's `total` (leads), or just
/// counted (runs: no total).
fn progress_phase(pb: &ProgressBar, message: String, with_total: bool) {
    let template = if with_total {
        "{spinner} {msg} {wide_bar} {human_pos}/{human_len} records [{elapsed_precise}, {eta} left]"
    } else {
        "{spinner} {msg}: {human_pos} records [{elapsed_precise}]"
    };
    // The new template first, and the counts reset, before anything redraws: the message
    // drawn in the old template would show the last phase's counts.
    pb.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.reset();
    pb.set_length(0);
    pb.set_message(message);
}

/// Messages from the page fetcher to the writer.
enum Msg {
    /// A page, already mapped by the fetcher (so mapping and writing use both cores).
    Page {
        mapped: crate::mapping::Mapped,
        records: usize,
        total: Option<u64>,
        /// A short page the API said ends the export.
        last: bool,
    },
    /// Pagination ended: at the end the API announced, or (`early`, with the reason) on a
    /// guess.
    Done { pages: u64, early: Option<String> },
}

struct JobRun<'a> {
    cfg: &'a JobConfig,
    client: Arc<ApiClient>,
    cancel: Cancel,
    job: JobRecord,
    dest: Option<Box<dyn Destination>>,
    progress: ProgressBar,
    clock: ExtractClock,
    /// A full refresh moving the destination to another API: the old API's cursors are not
    /// this one's.
    moving: bool,
    /// The binding to stage with the job's first page, if the store needs one.
    bind: Option<Bind>,
}

/// How a job binds its destination to the API it reads, with its first page.
#[derive(Debug, Clone)]
enum Bind {
    /// A store bound to no API yet.
    New(String),
    /// A full refresh moving the store from another API: the old cursors go.
    Move(String),
}

impl Bind {
    fn stage(&self, dest: &mut dyn Destination, job_id: &str) -> Result<(), DestError> {
        let state = dest.state();
        match self {
            Bind::New(source) => state.stage_bind(source),
            Bind::Move(source) => state.stage_move(source, job_id),
        }
        .map_err(DestError::sql("recording the destination's API"))
    }
}

/// The `_extracted_at` of each page: the time it was fetched, strictly later than the page
/// before it in the job (a later millisecond if need be). So when one job meets a record twice
/// with different content (offsets shifting while it changes), the later version has the
/// greater `_extracted_at`, which is how a files destination's reader picks the latest.
#[derive(Clone, Default)]
struct ExtractClock(Arc<std::sync::atomic::AtomicI64>);

impl ExtractClock {
    fn stamp(&self) -> i64 {
        self.stamp_at(Utc::now().timestamp_millis())
    }

    fn stamp_at(&self, now_ms: i64) -> i64 {
        use std::sync::atomic::Ordering::Relaxed;
        let prev = self
            .0
            .fetch_update(Relaxed, Relaxed, |last| Some(now_ms.max(last + 1)))
            .unwrap_or_else(|last| last);
        now_ms.max(prev + 1)
    }
}

impl JobRun<'_> {
    /// Every table and scope in turn. A scope whose pagination stopped on a guess does not
    /// stop the others (each has its own cursor); the job fails at the end with its reason.
    async fn run_tables(&mut self) -> Result<(), StepError> {
        let mut incomplete = None;
        for table in self.cfg.tables.clone() {
            match table {
                Table::Leads => {
                    let scopes: Vec<Option<i64>> = if self.cfg.streams.is_empty() {
                        vec![None]
                    } else {
                        self.cfg.streams.iter().copied().map(Some).collect()
                    };
                    for s in scopes {
                        match self.leads_scope(s).await {
                            Err(e @ StepError::Incomplete { .. }) => {
                                incomplete.get_or_insert(e);
                            }
                            r => r?,
                        }
                    }
                }
                Table::SyncRuns => self.runs().await?,
                _ => {}
            }
        }
        incomplete.map_or(Ok(()), Err)
    }

    fn map_ctx(&self) -> MapContext {
        MapContext {
            extracted_at_ms: self.clock.stamp(),
            job_id: self.job.id.clone(),
            floor_ms: None,
        }
    }

    /// Export the leads of one scope: pages fetched by a task, staged by a blocking worker.
    async fn leads_scope(&mut self, stream: Option<i64>) -> Result<(), StepError> {
        let scope = cursor_scope(stream);
        // (Read before the destination leaves its slot: an early return must not lose it.)
        let cursor = if self.moving {
            None
        } else {
            self.dest
                .as_mut()
                .expect("destination present")
                .state()
                .cursor(&scope)
                .map_err(DestError::sql("reading the cursor"))?
        };
        let full = self.cfg.full_refresh;
        // A stored cursor later than a minute before now (an earlier version's, or the clock
        // stepped back since) says nothing true about what was read: the leads between the
        // real last read and it would be skipped for good. Read as if there were none, once;
        // dedup writes only what changed, and the export stores a true cursor.
        let now_ms = Utc::now().timestamp_millis();
        let read_from = cursor.filter(|c| *c <= now_ms - API_CLOCK_LAG_MS);
        if read_from != cursor && !full {
            tracing::warn!(
                scope,
                cursor = cursor.map(dest::format_ms),
                "The stored cursor is later than now: reading every lead again once (from --since, if given)."
            );
        }
        // `--since` is a floor: no lead discovered before it is exported, on the first run, on
        // later ones (the lookback would reach back past it) and in full refreshes. It is
        // asked a second early, as the cursor is (an API whose `since` is exclusive would not
        // serve the leads of its very second); the leads before it that come are read but not
        // exported, and a full refresh marks none of them deleted.
        let from_cursor = since_for(read_from, self.cfg.lookback, None);
        let floor = self
            .cfg
            .since
            .and_then(|s| DateTime::from_timestamp(s.timestamp() - 1, 0));
        let since = if full { floor } else { from_cursor.max(floor) };
        if let (Some(asked), Some(reads)) = (self.cfg.since, from_cursor)
            && asked < reads
            && !full
        {
            // Said aloud when given for this run (a user trying to read older leads again);
            // `since` in the config file stays there for every scheduled run.
            let note = "--since is earlier than where this destination's cursor reads from: \
                        incremental runs go on from the cursor. To read older leads again, run \
                        with --full-refresh.";
            if self.cfg.since_given {
                tracing::warn!(scope, "{note}");
            } else {
                tracing::debug!(scope, "{note}");
            }
        }
        tracing::info!(
            scope,
            cursor = cursor.map(dest::format_ms),
            since = since.map(|s| s.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            full_refresh = full,
            "Exporting leads."
        );
        progress_phase(
            &self.progress,
            match stream {
                None => "leads, all streams".to_string(),
                Some(id) => format!("leads, stream {id}"),
            },
            true,
        );

        // fetcher (HTTP, on the runtime; maps the pages of turn 0 itself) → mapper threads
        // (the other turns) → writer (thread, takes the pages back in order).
        let mut dest = self.dest.take().expect("destination present");
        let mut sinks = Vec::with_capacity(MAPPERS);
        let mut rxs = Vec::with_capacity(MAPPERS);
        let mut maps = Vec::with_capacity(MAPPERS);
        let ctx = MapContext {
            floor_ms: self.cfg.since.map(|s| s.timestamp_millis()),
            ..self.map_ctx()
        };
        for turn in 0..MAPPERS {
            let (tx, rx) = mpsc::channel::<Msg>(1);
            rxs.push(rx);
            if turn == 0 {
                sinks.push(PageSink::Inline(tx, ctx.clone()));
                continue;
            }
            let (raw_tx, raw_rx) = mpsc::channel::<RawMsg>(1);
            let (ctx, cancel) = (ctx.clone(), self.cancel.clone());
            maps.push(tokio::task::spawn_blocking(move || {
                map_leads_pages(raw_rx, tx, ctx, cancel)
            }));
            sinks.push(PageSink::Thread(raw_tx));
        }
        let fetch = tokio::spawn(fetch_leads(
            self.client.clone(),
            LeadsQuery {
                stream_id: stream,
                since,
                limit: self.cfg.page_size,
                offset: 0,
            },
            sinks,
            self.cancel.clone(),
            self.clock.clone(),
        ));
        let mut job = self.job.clone();
        let cancel = self.cancel.clone();
        let progress = self.progress.clone();
        let streams: Vec<i64> = stream.into_iter().collect();
        let bind = self.bind.take();
        let write = tokio::task::spawn_blocking(move || {
            let r = write_leads(
                dest.as_mut(),
                rxs,
                &mut job,
                ctx,
                &scope,
                read_from,
                full,
                &streams,
                bind,
                &cancel,
                &progress,
            );
            (dest, job, r)
        });
        let fetched = fetch
            .await
            .map_err(|e| StepError::Internal(format!("page fetcher: {e}")))?;
        for map in maps {
            map.await
                .map_err(|e| StepError::Internal(format!("page mapper: {e}")))?;
        }
        let (dest, job, written) = write
            .await
            .map_err(|e| StepError::Internal(format!("page writer: {e}")))?;
        self.dest = Some(dest);
        // The counts of every page staged, also when the writer stopped early: a failing or
        // cancelled job commits what is staged with them.
        self.job = job;
        match (fetched, written) {
            // A destination error first: it decides that staged pages are rolled back.
            (_, Err(e @ StepError::Dest(_))) => return Err(e),
            // Then the fetcher's: when it fails, the writer only sees the pages stop.
            (Err(e), _) | (Ok(()), Err(e)) => return Err(e),
            (Ok(()), Ok(())) => {}
        }
        if self.cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        Ok(())
    }

    /// Export sync runs. Runs have no `since`: read pages until every run not finished when last
    /// seen has been seen again, and (on a newest-first API) a page brings nothing new.
    async fn runs(&mut self) -> Result<(), StepError> {
        let table = Table::SyncRuns;
        let full = self.cfg.full_refresh;
        progress_phase(&self.progress, "sync runs".into(), false);
        let (mut pending, known) = {
            let d = self.dest.as_mut().expect("destination present");
            let pending: HashSet<i64> = d
                .state()
                .unfinished_runs(PENDING_RUN_MAX_AGE_MS, Utc::now().timestamp_millis())
                .map_err(DestError::sql("reading run state"))?
                .into_iter()
                .collect();
            let known = d
                .state()
                .cursor(RUNS_LISTED_SCOPE)
                .map_err(DestError::sql("reading run state"))?
                .is_some();
            // Cleared with the first page's commit; set again when this reading is whole.
            d.state()
                .clear_cursor(RUNS_LISTED_SCOPE)
                .map_err(DestError::sql("staging run state"))?;
            (pending, known)
        };
        let scopes: Vec<Option<i64>> = if self.cfg.streams.is_empty() {
            vec![None]
        } else {
            self.cfg.streams.iter().copied().map(Some).collect()
        };
        let limit = self.cfg.runs_page_size;
        // Whether every page was read to the end the API announced.
        let mut listed_all = true;
        for stream in scopes {
            let mut offset = 0u64;
            let mut recent: VecDeque<HashSet<i64>> = VecDeque::new();
            let mut served: Option<u64> = None;
            // Overlapping pages, as for leads (`anchor`): runs removed under the listing must
            // not make a full refresh mark a run it skipped deleted.
            let mut anchor = anchor::Anchor::default();
            loop {
                if self.cancel.is_cancelled() {
                    return Err(StepError::Cancelled);
                }
                let q = RunsQuery {
                    stream_id: stream,
                    limit,
                    offset: stream.is_none().then_some(offset),
                };
                let page = tokio::select! {
                    r = self.client.runs(&q) => r?,
                    _ = self.cancel.cancelled() => return Err(StepError::Cancelled),
                };
                let n = page.records.len();
                let texts: Vec<&str> = page.records.iter().map(|r| r.get()).collect();
                // (The per-stream endpoint has no offset: one page.)
                let first = texts.first().map(|t| anchor::record_key(t));
                let reread = anchor.is_reread(offset);
                if stream.is_none() {
                    match anchor.check(offset, first) {
                        anchor::Check::Anchored => {}
                        anchor::Check::Reread { offset: from } => {
                            tracing::debug!(
                                offset,
                                from,
                                "Runs moved back across a page boundary (some were removed); reading again."
                            );
                            offset = from;
                            continue;
                        }
                        anchor::Check::Unstable => {
                            tracing::warn!(offset, "Runs kept moving under the listing; stopping.");
                            listed_all = false;
                            break;
                        }
                    }
                }
                let ctx = self.map_ctx();
                let dest = self.dest.as_mut().expect("destination present");
                if let Some(bind) = self.bind.take() {
                    bind.stage(dest.as_mut(), &self.job.id)?;
                }
                // Runs are few and small: staged right here, on the runtime's thread.
                let out = dedup::stage_page(dest.as_mut(), table, &texts, &ctx, full)?;
                self.job.add_counts(table.name(), &out.counts);
                dest.state()
                    .save_job(&self.job)
                    .map_err(DestError::sql("recording job counts"))?;
                dest.commit(false)?;
                self.progress.inc(n as u64);
                for id in &out.ids {
                    pending.remove(id);
                }
                tracing::debug!(
                    offset,
                    rows = n,
                    changed = out.changed(),
                    "Fetched runs page."
                );
                let facts = PageFacts {
                    n,
                    limit: page.limit_used,
                    offset,
                    has_more: page.has_more,
                    total: page.total,
                    default_limit: crate::api::DEFAULT_RUNS_LIMIT,
                    served,
                };
                let last = texts.last().map(|t| anchor::record_key(t));
                let limit = page.limit_used as usize;
                if anchor.only_overlap(n, limit, first, last)
                    || last_page(facts)
                    || stream.is_some()
                {
                    break;
                }
                // (A re-read may well be the page read before: the page after it was stale.)
                if repeats_recent(&mut recent, out.ids.iter().copied()) && !reread {
                    // (Also after a short page asked past: a server that ignores `offset` and
                    // caps its pages cannot be told from one whose first page was all.)
                    tracing::warn!(
                        offset,
                        "A runs page brought no run the previous pages did not (does the API ignore `offset`?); stopping."
                    );
                    listed_all = false;
                    break;
                }
                served = facts.served_after();
                if !full && known && out.changed() == 0 && pending.is_empty() && out.newest_first()
                {
                    tracing::debug!(
                        "Runs page brought nothing new and nothing is pending; stopping."
                    );
                    break;
                }
                let keys = anchor::PageKeys::of(n, |i| texts.get(i).copied());
                anchor.handed(offset, n, keys);
                offset = anchor::Anchor::next_offset(offset, n);
            }
        }
        // Deletions only when every run was listed: the per-stream endpoint shows only the
        // latest page of runs, so an older run missing from it is not gone.
        if self.moving && !listed_all {
            // A move is finished only by a full refresh that read everything of the new API.
            return Err(StepError::Incomplete {
                why: "the runs listing stopped before its end, so the move to this API is not \
                      finished (if the API never lists its runs whole, export into a new \
                      destination)"
                    .into(),
                full: true,
            });
        }
        if full && self.cfg.streams.is_empty() && !listed_all {
            tracing::warn!("Not every run was listed: no run is marked deleted.");
        } else if full && self.cfg.streams.is_empty() {
            let job_id = self.job.id.clone();
            let dest = self.dest.as_mut().expect("destination present");
            let deleted = mark_gone(dest.as_mut(), table, &job_id, &[], None)?;
            self.job.add_counts(
                table.name(),
                &crate::job::TableCounts {
                    deleted,
                    ..Default::default()
                },
            );
        }
        let dest = self.dest.as_mut().expect("destination present");
        if self.cfg.streams.is_empty() && listed_all {
            dest.state()
                .set_cursor(
                    RUNS_LISTED_SCOPE,
                    Utc::now().timestamp_millis(),
                    &self.job.id,
                )
                .map_err(DestError::sql("staging run state"))?;
        }
        dest.state()
            .save_job(&self.job)
            .map_err(DestError::sql("recording job counts"))?;
        dest.commit(true)?;
        Ok(())
    }
}

/// Full refresh: mark the ids this job did not see as deleted (of `streams` when given, and
/// not earlier than `from_ms` by their cursor field: the `--since` floor). Returns how many.
fn mark_gone(
    dest: &mut dyn Destination,
    table: Table,
    job_id: &str,
    streams: &[i64],
    from_ms: Option<i64>,
) -> Result<u64, DestError> {
    let gone = dest
        .state()
        .unseen_ids(table, job_id, streams, from_ms)
        .map_err(DestError::sql("finding deleted ids"))?;
    if gone.is_empty() {
        return Ok(0);
    }
    tracing::info!(
        table = table.name(),
        count = gone.len(),
        "Ids the API no longer returns are marked deleted."
    );
    dest.mark_deleted(table, &gone, Utc::now().timestamp_millis(), job_id)?;
    dest.state()
        .mark_seen_deleted(table, &gone, job_id)
        .map_err(DestError::sql("marking deleted ids"))?;
    Ok(gone.len() as u64)
}

/// Where a pipeline stage's time went, for the debug log (benches/README.md reads it): time
/// blocked on its neighbours vs. the rest.
struct StageClock {
    stage: &'static str,
    started: Instant,
    waited: std::time::Duration,
}

impl StageClock {
    fn new(stage: &'static str) -> StageClock {
        StageClock {
            stage,
            started: Instant::now(),
            waited: std::time::Duration::ZERO,
        }
    }

    fn wait<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        self.waited += t.elapsed();
        r
    }

    async fn wait_for<T>(&mut self, f: impl std::future::Future<Output = T>) -> T {
        let t = Instant::now();
        let r = f.await;
        self.waited += t.elapsed();
        r
    }
}

impl Drop for StageClock {
    fn drop(&mut self) {
        let total = self.started.elapsed();
        tracing::debug!(
            stage = self.stage,
            total_ms = total.as_secs_f64() * 1e3,
            waiting_ms = self.waited.as_secs_f64() * 1e3,
            working_ms = total.saturating_sub(self.waited).as_secs_f64() * 1e3,
            "Pipeline stage finished."
        );
    }
}

/// Mappers per leads export, taking the pages in turn: decoding is the heaviest stage, and
/// pages map independently. The first is the fetcher itself ([`PageSink::Inline`]), the others
/// threads of their own.
const MAPPERS: usize = 2;

/// The leads requests in flight, by offset: the one the fetcher needs next and, once pages come
/// back full, the one after it, so the API prepares a page while the last one is handed on.
/// Requests nobody asks for are aborted (when the next page turns out to be the last, or
/// the export stops).
struct Prefetch {
    client: Arc<ApiClient>,
    query: LeadsQuery,
    in_flight: VecDeque<(
        u64,
        tokio::task::JoinHandle<Result<crate::api::LeadsPage, ApiError>>,
    )>,
}

impl Prefetch {
    fn new(client: Arc<ApiClient>, query: LeadsQuery) -> Prefetch {
        Prefetch {
            client,
            query,
            in_flight: VecDeque::new(),
        }
    }

    /// Send the request for `offset` unless it is in flight.
    fn ahead(&mut self, offset: u64) {
        if self.in_flight.iter().any(|(o, _)| *o == offset) {
            return;
        }
        let client = self.client.clone();
        let q = LeadsQuery {
            offset,
            ..self.query.clone()
        };
        self.in_flight
            .push_back((offset, tokio::spawn(async move { client.leads(&q).await })));
    }

    /// The page at `offset`, from the request in flight for it or a new one. Cancel-safe: a
    /// request stays in flight (and is aborted with the rest) until its answer is taken.
    async fn page(&mut self, offset: u64) -> Result<crate::api::LeadsPage, StepError> {
        while let Some((o, h)) = self.in_flight.front()
            && *o != offset
        {
            h.abort();
            self.in_flight.pop_front();
        }
        self.ahead(offset);
        let Some((_, handle)) = self.in_flight.front_mut() else {
            return Err(StepError::Internal("no leads request in flight".into()));
        };
        let answer = handle.await;
        self.in_flight.pop_front();
        match answer {
            Ok(r) => Ok(r?),
            Err(e) => Err(StepError::Internal(format!("leads request: {e}"))),
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        for (_, h) in self.in_flight.drain(..) {
            h.abort();
        }
    }
}

/// A page as the fetcher hands it to the mapper.
enum RawMsg {
    /// A page, with its `_extracted_at` ([`ExtractClock`]); `last` when it is short and the
    /// API said it ends the export.
    Page {
        page: crate::api::LeadsPage,
        extracted_at_ms: i64,
        last: bool,
    },
    /// Pagination ended: at the end the API announced, or (`early`, with the reason) on a
    /// guess.
    Done { pages: u64, early: Option<String> },
}

/// Fetch the pages of one leads export and hand them to the mappers in turn, mapping those of
/// its own turn itself ([`PageSink`]). The next requests are sent before a page is handed on,
/// so they are on their way while it is decoded.
async fn fetch_leads(
    client: Arc<ApiClient>,
    mut q: LeadsQuery,
    txs: Vec<PageSink>,
    cancel: Cancel,
    extract_clock: ExtractClock,
) -> Result<(), StepError> {
    // The first and last records of the last pages: a server that ignores `offset` serves the
    // same page again, and is noticed here before more requests go out. (The writer also
    // stops at a page that brings no new id.)
    let mut recent: VecDeque<(u64, u64)> = VecDeque::new();
    let mut clock = StageClock::new("fetch");
    let mut pages = 0u64;
    // The fewest records a page held that was not the last, and the largest `total`: a bound
    // on the pages however the server pages (a server may serve fewer than asked).
    let mut served: Option<u64> = None;
    let mut max_total: Option<u64> = None;
    // Pages overlap by a record, so that leads moved back across a page boundary (leads
    // removed under the listing) are noticed and read again.
    let mut anchor = anchor::Anchor::default();
    let mut requests = Prefetch::new(client, q.clone());
    // Why pagination stopped before the end the API announced, if it did.
    let mut early: Option<String> = None;
    loop {
        if cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        let page = tokio::select! {
            r = requests.page(q.offset) => r?,
            _ = cancel.cancelled() => return Err(StepError::Cancelled),
        };
        pages += 1;
        let n = page.records.len();
        let limit = page.limit_used.max(1);
        let ends = match (page.records.first(), page.records.last()) {
            (Some(a), Some(b)) => Some((
                xxhash_rust::xxh3::xxh3_64(a.as_bytes()),
                xxhash_rust::xxh3::xxh3_64(b.as_bytes()),
            )),
            _ => None,
        };
        // (A re-read may well be the page read before: the page after it was stale.)
        let repeated = !anchor.is_reread(q.offset) && ends.is_some_and(|e| recent.contains(&e));
        let first = page.records.first().map(anchor::record_key);
        if !repeated {
            match anchor.check(q.offset, first) {
                anchor::Check::Anchored => {}
                anchor::Check::Reread { offset } => {
                    tracing::debug!(
                        offset = q.offset,
                        from = offset,
                        "Leads moved back across a page boundary (some were removed); reading again."
                    );
                    pages -= 1;
                    q.offset = offset;
                    continue;
                }
                anchor::Check::Unstable => {
                    pages -= 1;
                    early = Some(format!(
                        "leads kept moving under the listing ({} pages read again), so pagination stopped before the end",
                        anchor.rereads() - 1
                    ));
                    break;
                }
            }
        }
        // (Keyed now: the page is handed on below.)
        let keys = anchor::PageKeys::of(n, |i| page.records.get(i));
        max_total = max_total.max(page.total);
        let total = page.total;
        let has_more = page.has_more;
        tracing::debug!(
            offset = q.offset,
            rows = n,
            total = page.total,
            "Fetched leads page."
        );
        if repeated {
            // Not handed on: the end marker goes to the mapper this page would have gone to.
            pages -= 1;
            // (Also after a short page asked past: a server that ignores `offset` and caps its
            // pages cannot be told from one whose first page was all, so not the end.)
            early = Some(format!(
                "the API served the same leads page again at offset {} {EARLY_STOP_CAUSES}",
                q.offset
            ));
            break;
        }
        let facts = PageFacts {
            n,
            limit,
            offset: q.offset,
            has_more,
            total: page.total,
            default_limit: crate::api::DEFAULT_LEADS_LIMIT,
            served,
        };
        // (A page of only the previous page's last record is the end: nothing after it.)
        let last_key = page.records.last().map(anchor::record_key);
        let end = anchor.only_overlap(n, limit as usize, first, last_key) || last_page(facts);
        // A page as full as the pages before it, or as asked: the listing likely goes on.
        let page_full = n >= limit as usize || served == Some(n as u64);
        if !end {
            served = facts.served_after();
        }
        // Twice the pages `total` implies at the size the server serves, plus slack and the
        // pages read again.
        let max_pages = max_total
            .zip(served)
            .map(|(t, s)| 2 * t.div_ceil(s) + 10 + u64::from(anchor.rereads()));
        let too_many = max_pages.is_some_and(|m| pages >= m);
        if !end && !too_many {
            // The next page is needed anyway: ask now, while this one is handed on. After a
            // page as full as the server serves them, ask one further ahead too, so two
            // requests overlap (the second is dropped if the next page turns out to be the
            // last). Not after a page asked past only to settle whether it was the last.
            let next = anchor::Anchor::next_offset(q.offset, n);
            requests.ahead(next);
            if page_full && max_pages.is_none_or(|m| pages + 1 < m) {
                requests.ahead(anchor::Anchor::next_offset(next, n));
            }
        }
        let at = q.offset;
        let tx = &txs[(pages - 1) as usize % txs.len()];
        let extracted_at_ms = extract_clock.stamp();
        let msg = RawMsg::Page {
            page,
            extracted_at_ms,
            last: end && n < limit as usize,
        };
        if !tx.send(msg, &mut clock).await {
            // The mapper or writer stopped (cancel, error, or a page with no new id).
            return Ok(());
        }
        if end {
            // Read from the start of everything (no `since`), and the API never said where the
            // end is: a listing that ends before the last page's own `total` means pages were
            // missed. Not the end, then: neither the cursor nor a full refresh's deletions may
            // follow. (Leads removed under the listing lower `total` as they go; the pages'
            // overlap has the leads they moved read again.) When it did say (`hasMore`, here
            // on a page after one whose `hasMore` and `total` disagreed), its word holds, and
            // the disagreement is told.
            let read = at + n as u64;
            if q.since.is_none()
                && let Some(t) = total.filter(|&t| read < t)
            {
                if has_more.is_none() {
                    early = Some(format!(
                        "the API's total announced {t} leads, but its pages ended after {read}, so pages were missed"
                    ));
                } else {
                    tracing::warn!(
                        total = t,
                        read,
                        "The API's leads pages ended (an empty page, or `hasMore` false) before its `total`; taken as the end."
                    );
                }
            }
            break;
        }
        if too_many {
            early = Some(format!(
                "the API served {pages} pages of leads ({} records{}), more than its total ({}) implies, so pagination stopped before the end",
                at + n as u64,
                match has_more {
                    Some(true) => ", each saying more follow",
                    _ => "",
                },
                max_total.unwrap_or_default()
            ));
            break;
        }
        anchor.handed(at, n, keys);
        q.offset = anchor::Anchor::next_offset(at, n);
        recent.extend(ends);
        if recent.len() > 4 {
            recent.pop_front();
        }
    }
    // To the mapper whose turn is next, so the writer meets it in order.
    let done = RawMsg::Done { pages, early };
    txs[pages as usize % txs.len()].send(done, &mut clock).await;
    Ok(())
}

/// Where the fetcher hands a page: to a mapper thread, or, on its own turn, mapped on the spot
/// and straight to the writer.
///
/// The fetcher mostly waits (for the API, for the rate limit), so it can map every other page
/// itself, on the runtime thread, with no thread of its own for that turn: each thread
/// allocates from a malloc arena of its own, and every arena keeps some of what it held. One
/// mapper thread fewer lowers the peak memory of a long export by 1.5 MB, for 3 % of wall
/// time at 200k leads and none at 1M (benches/README.md, Memory, tenth round). Mapping a full
/// page holds up the runtime for under a millisecond (500 leads at about 1.2 µs each); the API
/// works on the requests in flight meanwhile, and their answers wait in the socket.
enum PageSink {
    /// A mapper thread's queue.
    Thread(mpsc::Sender<RawMsg>),
    /// The writer's queue for this turn, and what mapping needs.
    Inline(mpsc::Sender<Msg>, MapContext),
}

impl PageSink {
    /// Hand `msg` on, the wait for room counted on `clock`; `false` when the receiver stopped
    /// (cancel, error, or the end).
    async fn send(&self, msg: RawMsg, clock: &mut StageClock) -> bool {
        match self {
            PageSink::Thread(tx) => clock.wait_for(tx.send(msg)).await.is_ok(),
            PageSink::Inline(tx, ctx) => {
                let msg = map_raw(msg, ctx);
                clock.wait_for(tx.send(msg)).await.is_ok()
            }
        }
    }
}

/// Map one fetched page (JSON → Arrow, content hashes) for the writer.
fn map_raw(msg: RawMsg, ctx: &MapContext) -> Msg {
    match msg {
        RawMsg::Page {
            page,
            extracted_at_ms,
            last,
        } => {
            let texts: Vec<&str> = page.records.iter().collect();
            let ctx = MapContext {
                extracted_at_ms,
                ..ctx.clone()
            };
            let mapped = dedup::map_page(Table::Leads, &texts, &ctx);
            Msg::Page {
                mapped,
                records: page.records.len(),
                total: page.total,
                last,
            }
        }
        RawMsg::Done { pages, early } => Msg::Done { pages, early },
    }
}

/// Map the pages of a mapper thread's turn and hand them to the writer, so decoding uses every
/// core the writer leaves free and overlaps with the requests.
fn map_leads_pages(
    mut rx: mpsc::Receiver<RawMsg>,
    tx: mpsc::Sender<Msg>,
    ctx: MapContext,
    cancel: Cancel,
) {
    let mut clock = StageClock::new("map");
    while let Some(msg) = clock.wait(|| rx.blocking_recv()) {
        if cancel.is_cancelled() {
            return;
        }
        let msg = map_raw(msg, &ctx);
        if clock.wait(|| tx.blocking_send(msg)).is_err() {
            // The writer stopped (cancel, error, or the end); it reports why.
            return;
        }
    }
    // The fetcher stopped: at the end (another mapper carries `Done`) or on an error it reports.
}

/// Stage the pages of one leads export; at its end, move the cursor and (full refresh) mark
/// ids gone. Adds the counts of every page it stages to `job`. Commits as the destination sees
/// fit; the last commit is the caller's. When pagination stopped on a guess, it returns
/// [`StepError::Incomplete`] with the pages staged and the cursor where it was.
#[allow(clippy::too_many_arguments)]
fn write_leads(
    dest: &mut dyn Destination,
    mut rxs: Vec<mpsc::Receiver<Msg>>,
    job: &mut JobRecord,
    ctx: MapContext,
    scope: &str,
    cursor: Option<i64>,
    full: bool,
    streams: &[i64],
    mut bind: Option<Bind>,
    cancel: &Cancel,
    progress: &ProgressBar,
) -> Result<(), StepError> {
    let table = Table::Leads;
    // The destination is bound to the API with the first page (not before: a job that reads
    // nothing, a mistyped URL say, must leave the binding alone).
    let job_id = job.id.clone();
    let mut stage_binding = |dest: &mut dyn Destination| -> Result<(), DestError> {
        bind.take().map_or(Ok(()), |b| b.stage(dest, &job_id))
    };
    let mut max_cursor = cursor;
    let mut newest_read: Option<i64> = None;
    let mut clock = StageClock::new("write");
    // Ids of the last pages: pages with none new mean a server that ignores `offset`. (One
    // alone can also be a page's worth of leads added before it since the page before: read
    // again, they are all old.)
    let mut recent: VecDeque<HashSet<i64>> = VecDeque::new();
    let mut nothing_new = 0u32;
    let mut pages = 0u64;
    // The mappers take turns: page k comes from mapper k % MAPPERS.
    let turns = rxs.len();
    while let Some(msg) = clock.wait(|| rxs[pages as usize % turns].blocking_recv()) {
        if cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        pages += 1;
        let msg = match msg {
            // (A short page the API said is the last ends the export whatever it holds: offsets
            // shifted under the final request. A full one may be a server ignoring `offset`.)
            Msg::Page {
                ref mapped, last, ..
            } if !last => {
                if repeats_recent(&mut recent, mapped.keys.iter().map(|k| k.id)) {
                    nothing_new += 1;
                } else {
                    nothing_new = 0;
                }
                if nothing_new >= 2 {
                    Msg::Done {
                        pages,
                        early: Some(format!(
                            "leads pages brought no id the previous pages did not {EARLY_STOP_CAUSES}"
                        )),
                    }
                } else {
                    msg
                }
            }
            msg => msg,
        };
        match msg {
            Msg::Page {
                mut mapped,
                records,
                total,
                ..
            } => {
                // Read through one stream's endpoint, a lead without `streamId` is that
                // stream's (for the deletions of a full refresh of it).
                if let [stream] = streams {
                    for key in &mut mapped.keys {
                        key.stream_id.get_or_insert(*stream);
                    }
                }
                if progress.length() == Some(0)
                    && let Some(t) = total
                {
                    progress.set_length(t);
                }
                stage_binding(dest)?;
                let out = dedup::stage_mapped(dest, table, mapped, &ctx, full)?;
                max_cursor = max_cursor.max(out.max_cursor_ms);
                newest_read = newest_read.max(out.max_cursor_ms);
                job.add_counts(table.name(), &out.counts);
                if dest.commit_due() {
                    dest.state()
                        .save_job(job)
                        .map_err(DestError::sql("recording job counts"))?;
                    dest.commit(false)?;
                }
                progress.inc(records as u64);
            }
            Msg::Done {
                early: Some(why), ..
            } => {
                // The pages read are real leads, staged with their dedup state: the caller
                // commits them. Neither the cursor nor (full refresh) deletions may follow from
                // an export that did not see every page: whatever order the pages read seem to
                // be in, the API may order by something else (stream, say) and the unread pages
                // hold older leads.
                let e = StepError::Incomplete { why, full };
                tracing::warn!(scope, pages, "{e}");
                return Err(e);
            }
            Msg::Done { pages, early: None } => {
                stage_binding(dest)?;
                // The cursor may not pass the export's start (less the API's clock lag). A lead
                // the API shows while the export runs may be dated up to the lookback before
                // that start, on a page already read (oldest first, a long export); the next run
                // reads from cursor − lookback, so it must find it there. And a lead dated in
                // the future (a clock or data error upstream) must not push the cursor past
                // now: every later lead would fall before `since`.
                // (A cursor stored past that line, by an earlier version, is brought back to
                // it: that only reads a little more again.)
                let started = ctx.extracted_at_ms;
                let ceiling = started - API_CLOCK_LAG_MS;
                if newest_read.is_some_and(|c| c > started + API_CLOCK_LAG_MS) {
                    tracing::warn!(
                        newest = newest_read.map(dest::format_ms),
                        "A lead is dated in the future; the cursor stops before now."
                    );
                }
                if max_cursor.is_some_and(|c| c > ceiling) {
                    max_cursor = Some(ceiling);
                }
                if let Some(c) = max_cursor
                    && Some(c) != cursor
                {
                    dest.state()
                        .set_cursor(scope, c, &job.id)
                        .map_err(DestError::sql("moving the cursor"))?;
                }
                if full {
                    let deleted = mark_gone(dest, table, &job.id, streams, ctx.floor_ms)?;
                    job.add_counts(
                        table.name(),
                        &crate::job::TableCounts {
                            deleted,
                            ..Default::default()
                        },
                    );
                }
                dest.state()
                    .save_job(job)
                    .map_err(DestError::sql("recording job counts"))?;
                crate::fault::point("leads.cursor.staged");
                dest.commit(true)?;
                tracing::info!(
                    scope,
                    pages,
                    cursor = max_cursor.map(dest::format_ms),
                    "Leads export complete; cursor committed."
                );
                return Ok(());
            }
        }
    }
    // The mappers stopped before the end marker: cancelled, or the fetcher failed (it reports
    // why, and its error comes first). Never a completed export: the cursor stays.
    if cancel.is_cancelled() {
        return Err(StepError::Cancelled);
    }
    Err(StepError::Internal(
        "the leads pages ended without their end marker".into(),
    ))
}

/// Where a page stands in its listing, for [`last_page`].
#[derive(Debug, Clone, Copy)]
struct PageFacts {
    /// Records on the page.
    n: usize,
    /// The `limit` it was asked with.
    limit: u32,
    /// Its `offset`.
    offset: u64,
    has_more: Option<bool>,
    total: Option<u64>,
    /// The endpoint's documented default page size.
    default_limit: u32,
    /// The fewest records an earlier page held that was not the last: the size the server
    /// serves when it serves fewer than asked.
    served: Option<u64>,
}

impl PageFacts {
    /// Whether `total` says more records follow this page.
    fn more_by_total(&self) -> bool {
        self.total
            .is_some_and(|t| self.offset + (self.n as u64) < t)
    }

    /// [`Self::served`] once this page, not the last, is counted in.
    fn served_after(&self) -> Option<u64> {
        let n = self.n as u64;
        Some(self.served.map_or(n, |s| s.min(n)))
    }

    /// A short page without `hasMore` that `total` does not show to be followed by more, and
    /// that is exactly as full as the server's pages are (the size it served before, or the
    /// endpoint's default: a server that ignores `limit`), or comes with no `total` at all (a
    /// server whose own maximum is below the `limit` asked says so in no other way): one
    /// more request settles whether it was the last. (`total` alone does not: one too low
    /// would drop the leads after it.)
    fn asks_again(&self) -> bool {
        // A page holding more than `total` says there are: that `total` says nothing.
        let total_contradicted = self
            .total
            .is_some_and(|t| self.offset + (self.n as u64) > t);
        self.n > 0
            && self.has_more.is_none()
            && self.n < self.limit as usize
            && !self.more_by_total()
            && (total_contradicted
                // (Also a page shorter than the pages before it: a server may serve pages of
                // varying size, capped by bytes, say.)
                || self.total.is_none()
                || self.n == self.default_limit as usize
                || self.served == Some(self.n as u64))
    }

    /// A full page saying none follow, with no `total` that agrees: were its `hasMore` wrong,
    /// the leads after it would be lost, and one request settles it.
    fn full_end_unconfirmed(&self) -> bool {
        self.n >= self.limit as usize && self.total != Some(self.offset + self.n as u64)
    }
}

/// Whether a page is the last. An empty page is; otherwise the API's `hasMore` decides when
/// given, unless it says none follow while `total` says more do, or on a full page that no
/// `total` confirms to be the last: taken at its word, a wrong `hasMore` would move the cursor
/// past the leads it hides, so the next page settles it. Without `hasMore` a full page is not
/// the last, and a short page is, unless `total` says more follow (a server whose own maximum
/// is lower than the `limit` asked serves fewer without a word) or [`PageFacts::asks_again`].
fn last_page(p: PageFacts) -> bool {
    if p.n == 0 {
        return true;
    }
    match p.has_more {
        Some(true) => false,
        Some(false) => !p.more_by_total() && !p.full_end_unconfirmed(),
        None if p.n >= p.limit as usize => false,
        None => !p.more_by_total() && !p.asks_again(),
    }
}

/// Whether a page with these ids (rejects aside) brings none that the last pages did not;
/// remembers them otherwise. A server that ignores `offset` serves the same page again.
fn repeats_recent(recent: &mut VecDeque<HashSet<i64>>, ids: impl IntoIterator<Item = i64>) -> bool {
    let ids: HashSet<i64> = ids.into_iter().collect();
    if !ids.is_empty() && ids.iter().all(|id| recent.iter().any(|s| s.contains(id))) {
        return true;
    }
    recent.push_back(ids);
    if recent.len() > 4 {
        recent.pop_front();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_page_is_the_one_the_api_says_or_a_short_one_nothing_contradicts() {
        let p = |n, has_more, total| PageFacts {
            n,
            limit: 500,
            offset: 1_000,
            has_more,
            total,
            default_limit: 100,
            served: None,
        };
        // An empty page ends; `hasMore` decides when given...
        assert!(last_page(p(0, Some(true), Some(5_000))));
        assert!(last_page(p(7, Some(false), None)));
        assert!(last_page(p(7, Some(false), Some(1_007))));
        assert!(!last_page(p(7, Some(true), None)));
        // ...unless `total` contradicts an end, or a full page's end is not confirmed by
        // one: the next page settles it.
        assert!(!last_page(p(500, Some(false), Some(1_501))));
        assert!(!last_page(p(7, Some(false), Some(5_000))));
        assert!(!last_page(p(500, Some(false), None)));
        assert!(!last_page(p(500, Some(false), Some(1_400))));
        assert!(last_page(p(500, Some(false), Some(1_500))));
        // Without it: a full page goes on, a short one ends when `total` agrees...
        assert!(!last_page(p(500, None, None)));
        assert!(last_page(p(7, None, Some(1_007))));
        // ...and is asked past without one (a server whose own maximum is below the limit
        // asked serves fewer without a word).
        assert!(!last_page(p(7, None, None)));
        // ...unless `total` says more follow (a server serving fewer than asked), or it holds
        // the endpoint's default page size (a server ignoring `limit`).
        assert!(!last_page(p(100, None, Some(5_000))));
        assert!(!last_page(p(100, None, None)));
        // `total` saying this is the end does not settle a page as full as the server's
        // pages: a total one too low would drop the leads after it.
        assert!(!last_page(p(100, None, Some(1_100))));
        let served = |n, total| PageFacts {
            served: Some(80),
            ..p(n, None, total)
        };
        assert!(!last_page(served(80, Some(1_080))));
        assert!(last_page(served(79, Some(1_079))));
        assert!(!last_page(served(80, None)));
        assert!(!last_page(served(79, None)));
    }

    /// A lead discovered at second `sec` after 2026-06-02T09:00:00Z.
    fn lead_at(id: i64, sec: u32) -> String {
        format!(
            r#"{{"id": {id}, "discoveredAt": "2026-06-02T09:{:02}:{:02}Z", "profile": {{"handle": "h{id}"}}}}"#,
            sec / 60,
            sec % 60
        )
    }

    /// Pages of `(lead, discovered second)`, each marked last or not, through `write_leads` into
    /// a fresh SQLite destination, then the end marker (`early` as given). The writer's result
    /// and the cursor it staged.
    fn write_pages(
        pages: &[(&[(i64, u32)], bool)],
        early: Option<&str>,
    ) -> (Result<(), StepError>, Option<i64>) {
        let dir = tempfile::tempdir().unwrap();
        let (r, mut dest) = write_scope_pages(dir.path(), pages, early, &[]);
        let cursor = dest.state().cursor("leads").unwrap();
        (r, cursor)
    }

    /// [`write_pages`] for the scope of `streams` (all when empty), into a destination in `dir`.
    fn write_scope_pages(
        dir: &std::path::Path,
        pages: &[(&[(i64, u32)], bool)],
        early: Option<&str>,
        streams: &[i64],
    ) -> (Result<(), StepError>, crate::dest::sqlite::SqliteDest) {
        let mut dest = crate::dest::sqlite::SqliteDest::open(&dir.join("l.db")).unwrap();
        let ctx = MapContext {
            extracted_at_ms: crate::job::parse_ts("2026-06-03T00:00:00Z")
                .unwrap()
                .timestamp_millis(),
            job_id: "job-1".into(),
            floor_ms: None,
        };
        let (tx, rx) = mpsc::channel(pages.len() + 1);
        for (leads, last) in pages {
            let texts: Vec<String> = leads.iter().map(|&(id, s)| lead_at(id, s)).collect();
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            tx.try_send(Msg::Page {
                mapped: dedup::map_page(Table::Leads, &texts, &ctx),
                records: texts.len(),
                total: None,
                last: *last,
            })
            .unwrap();
        }
        tx.try_send(Msg::Done {
            pages: pages.len() as u64,
            early: early.map(str::to_string),
        })
        .unwrap();
        let mut job = JobRecord::new(Uuid::nil(), Utc::now());
        let r = write_leads(
            &mut dest,
            vec![rx],
            &mut job,
            ctx,
            &cursor_scope(streams.first().copied()),
            None,
            false,
            streams,
            None,
            &Cancel::new(),
            &ProgressBar::hidden(),
        );
        (r, dest)
    }

    #[test]
    fn a_lead_without_stream_id_read_through_a_stream_belongs_to_that_stream() {
        // The contract lets `streamId` be missing. Read through `/streams/4/leads`, the lead
        // is stream 4's, so a full refresh of stream 4 can find it gone.
        let dir = tempfile::tempdir().unwrap();
        let (r, mut dest) = write_scope_pages(dir.path(), &[(&[(7, 1)], true)], None, &[4]);
        assert!(r.is_ok(), "{r:?}");
        let stream: Option<i64> = dest
            .state()
            .conn()
            .query_row("SELECT stream_id FROM _ctgo_seen WHERE id = 7", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stream, Some(4));
    }

    fn at(sec: u32) -> Option<i64> {
        Some(
            crate::job::parse_ts(&format!("2026-06-02T09:{:02}:{:02}Z", sec / 60, sec % 60))
                .unwrap()
                .timestamp_millis(),
        )
    }

    #[test]
    fn pages_of_seen_ids_end_pagination_early_and_the_cursor_stays() {
        // Newest first: the unread pages would hold older leads.
        let (r, cursor) = write_pages(
            &[
                (&[(3, 30), (2, 20)], false),
                (&[(2, 20), (3, 30)], false),
                (&[(3, 30), (2, 20)], false),
            ],
            None,
        );
        assert!(matches!(r, Err(StepError::Incomplete { .. })), "{r:?}");
        assert_eq!(cursor, None);
        // One alone can be leads added before it, read again: the next page brings new ones.
        let (r, cursor) = write_pages(
            &[
                (&[(3, 30), (2, 20)], false),
                (&[(2, 20), (3, 30)], false),
                (&[(1, 10)], false),
            ],
            None,
        );
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(cursor, at(30));
        // The same page, short and marked last by the API (offsets shifted under the final
        // request): the export is complete.
        let (r, cursor) = write_pages(
            &[(&[(3, 30), (2, 20)], false), (&[(2, 20), (3, 30)], true)],
            None,
        );
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(cursor, at(30));
    }

    #[test]
    fn an_early_end_never_moves_the_cursor_whatever_order_the_pages_seem_in() {
        // Oldest first as far as read (the API may yet order by stream first), newest first,
        // all in one second.
        let why = Some("the API served the same leads page again");
        for page in [
            &[(1, 10), (2, 20), (3, 20)][..],
            &[(3, 20), (2, 20), (1, 10)][..],
            &[(1, 20), (2, 20)][..],
        ] {
            let (r, cursor) = write_pages(&[(page, false)], why);
            assert!(
                matches!(r, Err(StepError::Incomplete { .. })),
                "{page:?}: {r:?}"
            );
            assert_eq!(cursor, None, "{page:?}");
        }
    }

    #[test]
    fn extraction_stamps_increase_strictly_even_when_the_clock_does_not() {
        let clock = ExtractClock::default();
        let a = clock.stamp_at(1_000);
        let b = clock.stamp_at(1_000);
        let c = clock.stamp_at(990);
        let d = clock.stamp_at(2_000);
        assert_eq!((a, b, c, d), (1_000, 1_001, 1_002, 2_000));
        // Shared by the fetcher and the runs loop of one job.
        let other = clock.clone();
        assert_eq!(other.stamp_at(2_000), 2_001);
    }

    #[test]
    fn since_reads_back_the_lookback_and_one_more_second() {
        let cursor = crate::job::parse_ts("2026-06-02T09:01:00.000Z")
            .unwrap()
            .timestamp_millis();
        let since = since_for(Some(cursor), std::time::Duration::from_secs(900), None).unwrap();
        assert_eq!(since.to_rfc3339(), "2026-06-02T08:45:59+00:00");
        // Sub-second cursors round down before subtracting.
        let since = since_for(Some(cursor + 999), std::time::Duration::ZERO, None).unwrap();
        assert_eq!(since.to_rfc3339(), "2026-06-02T09:00:59+00:00");
        // No cursor: the configured first start, or everything.
        let first = crate::job::parse_ts("2026-01-01T00:00:00Z");
        assert_eq!(since_for(None, std::time::Duration::ZERO, first), first);
        assert_eq!(since_for(None, std::time::Duration::ZERO, None), None);
    }

    #[test]
    fn cursor_scopes_are_per_stream() {
        assert_eq!(cursor_scope(None), "leads");
        assert_eq!(cursor_scope(Some(42)), "leads:stream:42");
    }
}
