//! Destinations: SQLite, Parquet and CSV behind one begin / write / commit trait.
//!
//! A job stages row versions ([`Destination::write`]), rejects and deletion marks, together with
//! state changes (dedup state, cursor, job counts) in the destination's [`StateStore`];
//! [`Destination::commit`] makes all of them durable and visible at once, or the commit protocol
//! makes a half-done commit invisible and [`Destination::recover`] finishes or discards it on
//! the next start. One job at a time per destination: [`open`] takes an exclusive lock (a
//! `flock` on a lock file, released by the kernel however the process ends).

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, TimeUnit};
use rusqlite::types::ValueRef;

use crate::config::DestSpec;
use crate::job::JobRecord;
use crate::schema::Table;

pub mod csv;
pub mod files;
pub mod parquet;
mod parquet_file;
pub mod sqlite;
pub mod state;

pub use state::{Binding, Change, FileRecord, Seen, StateStore};

/// Why a destination could not do what was asked, in the user's terms.
#[derive(Debug, thiserror::Error)]
pub enum DestError {
    #[error(
        "another ctgo-export job is running on {dest}{holder}; refusing to start a second one (nothing was changed). Try again when it has finished"
    )]
    Busy { dest: String, holder: String },
    #[error("{dest} does not exist yet (no job has run there)")]
    Missing { dest: String },
    #[error("{dest} cannot be used: {reason}")]
    Mismatch { dest: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("SQLite ({context}): {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("writing {what}: {message}")]
    Format { what: String, message: String },
}

impl DestError {
    /// A destination that is not there, or not one this job may use: the user's to fix, not a
    /// failure of the job (exit 2). So is one this user may not write, on a read-only file
    /// system, or under a file: no retry clears those.
    pub fn is_usage(&self) -> bool {
        use std::io::ErrorKind::{NotADirectory, PermissionDenied, ReadOnlyFilesystem};
        match self {
            DestError::Missing { .. } | DestError::Mismatch { .. } => true,
            DestError::Io { source, .. } => {
                matches!(
                    source.kind(),
                    PermissionDenied | ReadOnlyFilesystem | NotADirectory
                )
            }
            _ => false,
        }
    }

    /// `spec`'s state store belongs to another kind of destination, or could not be read.
    pub fn kind(spec: &str, path: &Path) -> impl FnOnce(state::KindError) -> DestError {
        let (dest, path) = (spec.to_string(), path.display().to_string());
        move |e| match e {
            state::KindError::Other(other) => {
                let place = dest_place(&other, Path::new(&path));
                DestError::Mismatch {
                    reason: format!(
                        "it holds the state of a {other} destination ({path}). A destination \
                         keeps one kind: use --dest {other}:{place}, or a new path for this kind"
                    ),
                    dest,
                }
            }
            state::KindError::Sql(source) => DestError::Sqlite {
                context: format!("reading {path}"),
                source,
            },
        }
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DestError {
        let context = context.into();
        move |source| DestError::Io { context, source }
    }

    pub fn sql(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> DestError {
        let context = context.into();
        move |source| DestError::Sqlite { context, source }
    }
}

/// What [`Destination::recover`] repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Jobs a crash left unfinished, now marked FAILED.
    pub interrupted_jobs: Vec<String>,
    /// Committed files that were renamed into place.
    pub published_files: usize,
    /// Uncommitted files that were discarded.
    pub discarded_files: usize,
}

/// One destination. Calls happen on one thread, in this order: `recover`, then for each batch
/// `write` / `write_rejects` / `mark_deleted` + state changes, then `commit` (or `rollback`),
/// and finally `finish_job`.
pub trait Destination: Send {
    /// `sqlite:PATH`, `parquet:DIR`, `csv:DIR`.
    fn describe(&self) -> String;
    /// The store for cursor, dedup state and the job ledger. Its open transaction is part of
    /// what `commit` makes durable.
    fn state(&mut self) -> &mut StateStore;
    /// Finish or discard what a crash left; mark jobs left unfinished as FAILED.
    fn recover(&mut self) -> Result<Recovery, DestError>;
    /// Stage new and changed row versions of `table` (schema = `table.schema()`).
    fn write(&mut self, table: Table, rows: &RecordBatch) -> Result<(), DestError>;
    /// Stage rows for `rejects`.
    fn write_rejects(&mut self, rows: &RecordBatch) -> Result<(), DestError>;
    /// Stage deletion marks (full refresh): the ids stay, marked with `_deleted_at`.
    fn mark_deleted(
        &mut self,
        table: Table,
        ids: &[i64],
        deleted_at_ms: i64,
        job_id: &str,
    ) -> Result<(), DestError>;
    /// Make everything staged durable and visible at once. With `force == false` the
    /// destination may defer (to fill a row group); deferring is safe because data and state
    /// stay staged together. Returns whether a commit happened.
    fn commit(&mut self, force: bool) -> Result<bool, DestError>;
    /// Whether `commit(false)` would commit now. The job loop records the job's counts only
    /// then (they must commit with the data they count, and uncommitted work needs none).
    fn commit_due(&self) -> bool {
        true
    }
    /// Discard everything staged since the last commit.
    fn rollback(&mut self) -> Result<(), DestError>;
    /// Record the job's final state.
    fn finish_job(&mut self, job: &JobRecord) -> Result<(), DestError>;
}

/// An exclusive, process-lifetime lock on a destination.
#[derive(Debug)]
pub struct DestLock {
    _file: File,
    pub path: PathBuf,
}

impl DestLock {
    /// Take the lock at `path` or report who holds it.
    pub fn acquire(path: &Path, dest: &str) -> Result<DestLock, DestError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(DestError::io(format!(
                "opening lock file {}",
                path.display()
            )))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                return Err(DestError::Busy {
                    dest: dest.to_string(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(DestError::io(format!("locking {}", path.display()))(e));
            }
        }
        // Who holds it, for the message a second job prints. Written after locking.
        let _ = file.set_len(0);
        let _ = std::io::Write::write_all(
            &mut &file,
            format!(
                "pid {}, since {}",
                std::process::id(),
                crate::job::format_ts(&chrono::Utc::now())
            )
            .as_bytes(),
        );
        Ok(DestLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }
}

/// Open a destination for a job: lock it, create what is missing.
pub fn open(spec: &DestSpec, csv_bom: bool) -> Result<Box<dyn Destination>, DestError> {
    match spec {
        DestSpec::Sqlite(path) => Ok(Box::new(sqlite::SqliteDest::open(path)?)),
        DestSpec::Parquet(dir) => Ok(Box::new(parquet::ParquetDest::open(dir)?)),
        DestSpec::Csv(dir) => Ok(Box::new(csv::CsvDest::open(dir, csv_bom)?)),
    }
}

/// Where the state store of a destination lives.
pub fn state_path(spec: &DestSpec) -> PathBuf {
    match spec {
        DestSpec::Sqlite(p) => p.clone(),
        DestSpec::Parquet(dir) | DestSpec::Csv(dir) => dir.join(STATE_FILE),
    }
}

/// Whether `path` starts as an SQLite database does.
pub fn has_sqlite_header(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 16];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == b"SQLite format 3\0")
}

/// Advice on the `--dest` to give for the state store `state`, if it is one: a files
/// destination's `DIR/.ctgo-state.db` names `DIR`, an SQLite destination's file itself.
/// Empty when `state` is no store of ours.
pub fn kind_hint(state: &Path) -> String {
    let sqlite = has_sqlite_header(state);
    let kind = sqlite
        .then(|| StateStore::open_read_only(state).ok()?.dest_kind().ok()?)
        .flatten();
    match kind {
        Some(kind) => format!(
            " (a {kind} destination: use --dest {kind}:{})",
            dest_place(&kind, state)
        ),
        None if sqlite && state.file_name().is_some_and(|n| n != STATE_FILE) => {
            format!(
                " (an SQLite database: use --dest sqlite:{})",
                state.display()
            )
        }
        None => String::new(),
    }
}

/// Where a destination of `kind` whose state store is `state` is named in `--dest`: an SQLite
/// destination is its store; a files destination is the directory of `.ctgo-state.db`.
fn dest_place(kind: &str, state: &Path) -> String {
    match (kind, state.parent()) {
        ("sqlite", _) | (_, None) => state.display().to_string(),
        (_, Some(dir)) => dir.display().to_string(),
    }
}

/// Where a destination's one-job-at-a-time lock lives.
pub fn lock_path(spec: &DestSpec) -> PathBuf {
    match spec {
        DestSpec::Sqlite(p) => sqlite::lock_path(p),
        DestSpec::Parquet(dir) | DestSpec::Csv(dir) => dir.join(files::LOCK_FILE),
    }
}

/// The hidden state file inside a file destination's directory.
pub const STATE_FILE: &str = ".ctgo-state.db";

/// Open a destination's job ledger read-only (for `jobs`; works while a job runs).
pub fn open_ledger(spec: &DestSpec) -> Result<StateStore, DestError> {
    let path = state_path(spec);
    if !path.exists() {
        return Err(DestError::Missing {
            dest: spec.to_string(),
        });
    }
    // What `sync` would refuse to use is refused as it does (exit 2), not read as SQLite.
    let not_state = if path.is_dir() {
        Some("it is a directory, not a file")
    } else if path.metadata().is_ok_and(|m| m.len() > 0)
        && File::open(&path).is_ok()
        && !has_sqlite_header(&path)
    {
        Some("it is a file but not an SQLite database")
    } else {
        None
    };
    if let Some(reason) = not_state {
        return Err(DestError::Mismatch {
            dest: spec.to_string(),
            reason: format!("{reason} ({}), so no job history", path.display()),
        });
    }
    let store = StateStore::open_read_only(&path)
        .map_err(DestError::sql(format!("opening {}", path.display())))?;
    // A store from before the kind was recorded has none: any kind may read it.
    let kind = store
        .dest_kind()
        .map_err(DestError::sql(format!("reading {}", path.display())))?;
    if let Some(other) = kind.filter(|k| k != spec.kind()) {
        return Err(DestError::kind(&spec.to_string(), &path)(
            state::KindError::Other(other),
        ));
    }
    Ok(store)
}

/// The SQLite column type for an Arrow type.
pub fn sqlite_type(dt: &DataType) -> &'static str {
    match dt {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::Boolean => "INTEGER",
        DataType::Float32 | DataType::Float64 => "REAL",
        _ => "TEXT",
    }
}

/// Milliseconds since the epoch as `2026-06-02T09:01:00.000Z`.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| crate::job::format_ts(&t))
        .unwrap_or_default()
}

/// A cell of a supported Arrow column, as text for SQLite and CSV. Timestamps become ISO 8601
/// UTC text with a `Z`.
pub enum Cell<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Owned(String),
}

impl rusqlite::ToSql for Cell<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(self.as_value_ref()))
    }
}

impl Cell<'_> {
    pub fn as_value_ref(&self) -> ValueRef<'_> {
        match self {
            Cell::Null => ValueRef::Null,
            Cell::Int(i) => ValueRef::Integer(*i),
            Cell::Real(f) => ValueRef::Real(*f),
            Cell::Text(s) => ValueRef::Text(s.as_bytes()),
            Cell::Owned(s) => ValueRef::Text(s.as_bytes()),
        }
    }
}

/// Read row `i` of `col`.
pub fn cell(col: &ArrayRef, i: usize) -> Cell<'_> {
    if col.is_null(i) {
        return Cell::Null;
    }
    match col.data_type() {
        DataType::Int64 => Cell::Int(
            col.as_any()
                .downcast_ref::<Int64Array>()
                .map(|a| a.value(i))
                .unwrap_or_default(),
        ),
        DataType::Float64 => Cell::Real(
            col.as_any()
                .downcast_ref::<Float64Array>()
                .map(|a| a.value(i))
                .unwrap_or_default(),
        ),
        DataType::Utf8 => col
            .as_any()
            .downcast_ref::<StringArray>()
            .map(|a| Cell::Text(a.value(i)))
            .unwrap_or(Cell::Null),
        DataType::Timestamp(TimeUnit::Millisecond, _) => col
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .map(|a| Cell::Owned(format_ms(a.value(i))))
            .unwrap_or(Cell::Null),
        DataType::Boolean => col
            .as_any()
            .downcast_ref::<arrow_array::BooleanArray>()
            .map(|a| Cell::Int(a.value(i) as i64))
            .unwrap_or(Cell::Null),
        _ => Cell::Null,
    }
}

/// Mark every job a crash left PENDING / RUNNING / CANCELLING as FAILED ("interrupted").
/// Shared by every destination's `recover`.
pub fn fail_interrupted_jobs(store: &mut StateStore) -> Result<Vec<String>, DestError> {
    let now = chrono::Utc::now();
    let mut ids = Vec::new();
    for mut job in store
        .unfinished_jobs()
        .map_err(DestError::sql("reading the job ledger"))?
    {
        let was = job.status;
        job.status = crate::job::JobStatus::Failed;
        job.completed_at = Some(now);
        job.duration_seconds =
            Some(((now - job.started_at).num_milliseconds().max(0)) as f64 / 1000.0);
        job.error = Some(format!(
            "interrupted: the process ended while the job was {was} (a crash or a kill, or its final record could not be written: a full disk, say); what it committed is kept, the rest was discarded"
        ));
        job.error_details =
            Some(serde_json::json!({"reason": "interrupted", "status_found": was.as_str()}));
        store
            .save_job(&job)
            .map_err(DestError::sql("marking an interrupted job"))?;
        tracing::warn!(job_id = %job.id, status = %was, "Marked a job left unfinished (a crash, or its record could not be written) as FAILED.");
        ids.push(job.id);
    }
    Ok(ids)
}

/// What to do about an error of the machine's resources, from its text (the errors of
/// SQLite, the filesystem and the Parquet writer each word it their own way): `None` when it
/// is none of those.
pub fn resource_hint(text: &str) -> Option<&'static str> {
    const FULL: [&str; 5] = [
        "No space left on device",
        "os error 28",
        "database or disk is full",
        "Disk quota exceeded",
        "xShmMap",
    ];
    if FULL.iter().any(|s| text.contains(s)) {
        Some(
            "the disk is full (or over quota): free space and run again; what was committed is kept",
        )
    } else if text.contains("File too large")
        || (text.contains("disk I/O error") && file_size_limited())
    {
        Some(
            "a file-size limit (ulimit -f) was reached: raise it and run again; what was committed is kept",
        )
    } else {
        None
    }
}

/// Whether this process runs under a file-size limit (`ulimit -f`). SQLite reports a write
/// past it only as a "disk I/O error".
fn file_size_limited() -> bool {
    // SAFETY: getrlimit(2) fills the local struct it is given.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim) == 0 && lim.rlim_cur != libc::RLIM_INFINITY
    }
}

/// `text`, with [`resource_hint`]'s advice after it when there is one.
pub fn with_resource_hint(text: String) -> String {
    match resource_hint(&text) {
        Some(h) => format!("{text} ({h})"),
        None => text,
    }
}
