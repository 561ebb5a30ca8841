//! The commit protocol shared by the file destinations (Parquet and CSV).
//!
//! A file destination is a directory: `DIR/leads/`, `DIR/sync_runs/`, `DIR/rejects/`,
//! `DIR/export_jobs/`, a lock file `DIR/.ctgo.lock` and the hidden state store
//! `DIR/.ctgo-state.db` (cursor, dedup state, job ledger and the record of every data file).
//!
//! # Why a file is either wholly there or not there at all
//!
//! Data files are written under a hidden name (`.part-….parquet.tmp`, `.….csv.partial`) that no
//! dataset reader picks up, and only get their final name after the state store committed the
//! rows' dedup state and cursor. The steps, in this order ([`FileStore::commit_files`]):
//!
//! 1. write the staged file, flush and fsync it (`files.staged.synced`);
//! 2. `record_file(table, staged, final, job, rows, bytes)` inside the state store's open
//!    transaction, which already holds the dedup state, cursor and job counts of those rows;
//! 3. `state.commit()`: **the commit point**;
//! 4. rename staged → final (`files.renamed`), fsync the directory;
//! 5. `mark_published(final)`.
//!
//! A crash before 3 leaves an unrecorded hidden file and uncommitted state: the next start
//! deletes the file and the dedup state never saw the rows, so they are extracted again. A
//! crash after 3 leaves a committed record whose file is still hidden: the next start
//! ([`FileStore::recover`]) finishes steps 4 and 5. Either way each row version ends up in the
//! destination exactly once.
//!
//! # Deletions
//!
//! Files are append-only, so a full refresh that finds an id gone writes a *tombstone* row
//! ([`tombstones`]): the `id`, its cursor column (`discovered_at` for leads, `triggered_at` for
//! runs, from the state store), `_extracted_at` = `_deleted_at` = the deletion time, `_job_id`,
//! and every other column null. The latest version of a deleted id (greatest `_extracted_at`) is
//! its tombstone; earlier versions keep the data.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    new_null_array,
};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use tracing::{debug, info, warn};

use super::{DestError, DestLock, Recovery, StateStore};
use crate::job::JobRecord;
use crate::schema::Table;

/// The lock file inside a file destination's directory.
pub const LOCK_FILE: &str = ".ctgo.lock";

/// Suffixes of the hidden names that files in progress carry.
pub const STAGED_SUFFIXES: [&str; 2] = [".tmp", ".partial"];

/// A data file written, flushed and fsynced under its hidden name, waiting for a commit.
/// Paths are relative to the destination directory, with `/` separators (so the state store
/// stays valid if the directory is moved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    pub table: Table,
    pub staged: String,
    pub final_name: String,
    pub job_id: String,
    pub rows: u64,
    pub bytes: u64,
    /// Rename it into place after the commit. False for a CSV file that keeps growing: the
    /// commit only records how many of its bytes are committed.
    pub publish: bool,
}

/// The files of ours found in a destination's table directories ([`FileStore::our_files`]).
#[derive(Default)]
struct OurFiles {
    /// Under the names they are published with.
    published: Vec<String>,
    /// In progress, under their hidden names.
    staged: Vec<(Table, String)>,
}

/// Page cache of the hidden state store, KiB: a 1M-lead Parquet export peaked 0.4–0.6 MB
/// lower at 128 KiB than at 512 KiB, at the same speed (at 2 MiB, SQLite's default, a 1M CSV
/// export peaked at 1.17× a 10k one; at 512 KiB, 1.05×); benches/README.md, Memory.
const STATE_CACHE_KIB: u32 = 128;

/// What both file destinations share: the directory, its lock and its state store.
pub struct FileStore {
    dir: PathBuf,
    scheme: &'static str,
    pub store: StateStore,
    _lock: DestLock,
}

/// A file anywhere under one of `dir`'s table directories (`leads/part-….parquet`), if there
/// is any. Files in progress (`.part-….parquet.tmp`, `.<job>.csv.partial`) do not count: they
/// are the uncommitted work of a job that never finished (the first one, killed), which the
/// recovery deletes; taken for exported files, they would refuse the destination for good.
fn exported_file(dir: &Path) -> Result<Option<String>, DestError> {
    fn first_file(d: &Path, rel: &str) -> Result<Option<String>, DestError> {
        let entries = match std::fs::read_dir(d) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DestError::io(format!("listing {}", d.display()))(e)),
        };
        for entry in entries {
            let entry = entry.map_err(DestError::io(format!("listing {}", d.display())))?;
            let rel = format!("{rel}/{}", entry.file_name().to_string_lossy());
            match entry.file_type() {
                Ok(t) if t.is_dir() => {
                    if let Some(found) = first_file(&entry.path(), &rel)? {
                        return Ok(Some(found));
                    }
                }
                _ if is_staged_name(&entry.file_name().to_string_lossy()) => {}
                _ => return Ok(Some(rel)),
            }
        }
        Ok(None)
    }
    for table in Table::ALL {
        if let Some(found) = first_file(&dir.join(table.name()), table.name())? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The refusal of a directory whose exported files have no state that goes with them (`what`
/// goes on from "it holds exported files (").
fn files_without_state(dest: String, what: String) -> DestError {
    DestError::Mismatch {
        dest,
        reason: format!(
            "it holds exported files ({what}; without the state that goes with them every lead \
             would be written again. Put that {state} back (with its -wal file, if there is \
             one), or export into a new directory",
            state = super::STATE_FILE,
        ),
    }
}

impl FileStore {
    /// Create `dir` if missing, lock it, open the state store and create the table dirs.
    pub fn open(dir: &Path, scheme: &'static str) -> Result<FileStore, DestError> {
        let described = format!("{scheme}:{}", dir.display());
        if dir.is_file() {
            return Err(DestError::Mismatch {
                dest: described,
                reason: format!("it is a file, not a directory{}", super::kind_hint(dir)),
            });
        }
        // Checked before anything is created there. An empty state file (a copy cut short by
        // a full disk, say) holds no state either.
        let state_path = dir.join(super::STATE_FILE);
        let state_len = match std::fs::metadata(&state_path) {
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(DestError::io(format!("checking {}", state_path.display()))(
                    e,
                ));
            }
        };
        if state_len.is_none_or(|n| n == 0)
            && let Some(file) = exported_file(dir)?
        {
            let state = if state_len.is_some() {
                "an empty"
            } else {
                "no"
            };
            return Err(files_without_state(
                described,
                format!(
                    "{file}) but {state} {}, the record of which versions were written and of \
                     the cursor",
                    super::STATE_FILE
                ),
            ));
        }
        std::fs::create_dir_all(dir).map_err(DestError::io(format!(
            "creating the destination directory {}",
            dir.display()
        )))?;
        let lock = DestLock::acquire(&dir.join(LOCK_FILE), &described)?;
        let store = StateStore::open(&state_path)
            .and_then(|s| s.limit_cache_kib(STATE_CACHE_KIB).map(|()| s))
            .map_err(DestError::sql(format!("opening {}", state_path.display())))?;
        // A state that records no file beside exported ones (an SQLite file with none of
        // its tables, say) is as good as none.
        if store
            .records_no_file()
            .map_err(DestError::sql(format!("reading {}", state_path.display())))?
            && let Some(file) = exported_file(dir)?
        {
            return Err(files_without_state(
                described,
                format!("{file}) that its {} does not record", super::STATE_FILE),
            ));
        }
        store
            .claim_kind(scheme)
            .map_err(DestError::kind(&described, &state_path))?;
        for table in Table::ALL {
            let d = dir.join(table.name());
            std::fs::create_dir_all(&d)
                .map_err(DestError::io(format!("creating {}", d.display())))?;
        }
        sync_dir(dir)?;
        Ok(FileStore {
            dir: dir.to_path_buf(),
            scheme,
            store,
            _lock: lock,
        })
    }

    /// Say so when files the state records as in place are gone or changed (deleted or cut
    /// short by hand): their rows are missing from the dataset, and since the dedup state
    /// holds them as written, no run writes them again. (Not for CSV, whose files are meant
    /// to be moved away once imported.)
    pub fn warn_of_lost_files(&self, kind: &str) -> Result<(), DestError> {
        let files = self
            .store
            .published_files()
            .map_err(DestError::sql("reading the file records"))?;
        let lost: Vec<&String> = files
            .iter()
            .filter(|(name, bytes)| match std::fs::metadata(self.path(name)) {
                Ok(m) => *bytes > 0 && m.len() != *bytes,
                Err(_) => true,
            })
            .map(|(name, _)| name)
            .collect();
        if let Some(first) = lost.first() {
            tracing::warn!(
                dest = %self.describe(),
                lost = lost.len(),
                first = %first,
                "{kind} files this destination committed are missing or changed since they were written: their rows are not in the dataset, and no run writes them again. Restore them from a backup, or export into a new directory."
            );
        }
        Ok(())
    }

    /// `parquet:DIR` / `csv:DIR`.
    pub fn describe(&self) -> String {
        format!("{}:{}", self.scheme, self.dir.display())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The absolute path of a name relative to the destination directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        let mut p = self.dir.clone();
        for part in rel.split('/').filter(|s| !s.is_empty() && *s != "..") {
            p.push(part);
        }
        p
    }

    /// Steps 2 to 5 of the protocol for files already written and fsynced: record them in the
    /// open state transaction, commit it, rename the ones to publish into place and mark them
    /// published. Commits the state even when `ready` is empty.
    ///
    /// The state commit is the commit point. `ready` is emptied as soon as it succeeded: from
    /// then on the files belong to the destination, and a later failure (a rename, the mark)
    /// neither undoes nor fails what is committed; it is logged, and [`Self::recover`] puts
    /// the files in place at the next start. Returns how many files were published.
    pub fn commit_files(&mut self, ready: &mut Vec<StagedFile>) -> Result<usize, DestError> {
        for f in ready.iter() {
            self.store
                .record_file(
                    f.table.name(),
                    &f.staged,
                    &f.final_name,
                    &f.job_id,
                    f.rows,
                    f.bytes,
                )
                .map_err(DestError::sql(format!("recording {}", f.final_name)))?;
        }
        self.store
            .commit()
            .map_err(DestError::sql("committing the state store"))?;
        let done = std::mem::take(ready);
        match self.publish(&done) {
            Ok(n) => Ok(n),
            Err(e) => {
                warn!(error = %e, "Committed, but not every file could be put in place yet; the next run does it.");
                Ok(0)
            }
        }
    }

    /// Steps 3 to 5: rename committed files into place, sync their directories, mark them.
    fn publish(&mut self, done: &[StagedFile]) -> Result<usize, DestError> {
        let mut dirs = BTreeSet::new();
        let mut published = Vec::new();
        for f in done {
            if !f.publish {
                continue;
            }
            let from = self.path(&f.staged);
            let to = self.path(&f.final_name);
            std::fs::rename(&from, &to).map_err(DestError::io(format!(
                "renaming {} to {}",
                from.display(),
                to.display()
            )))?;
            crate::fault::point("files.renamed");
            if let Some(parent) = to.parent() {
                dirs.insert(parent.to_path_buf());
            }
            published.push(f);
        }
        for d in &dirs {
            sync_dir(d)?;
        }
        for f in &published {
            self.store
                .mark_published(&f.final_name)
                .map_err(DestError::sql(format!(
                    "marking {} published",
                    f.final_name
                )))?;
            debug!(table = f.table.name(), file = %f.final_name, rows = f.rows, bytes = f.bytes, "Published a data file.");
        }
        Ok(published.len())
    }

    /// Finish what a crash left: publish every committed file that is not in place yet (a CSV
    /// file is first cut back to its committed length: bytes after it are an uncommitted
    /// tail), then delete every hidden file that no committed record names (the uncommitted
    /// work of a crashed job), then mark jobs left unfinished as FAILED.
    pub fn recover(&mut self, truncate_to_committed: bool) -> Result<Recovery, DestError> {
        let mut rec = Recovery::default();
        // A transaction cannot be open at start, but make sure nothing half-staged survives.
        self.store
            .rollback()
            .map_err(DestError::sql("resetting the state store"))?;
        // Each table directory is listed once, before anything is published or deleted on
        // the word of this state. (The hidden files that the publishing below renames are
        // committed ones, which the sweep of uncommitted work keeps anyway.)
        let ours = self.our_files()?;
        self.refuse_an_older_state(&ours.published)?;
        let pending = self
            .store
            .unpublished_files()
            .map_err(DestError::sql("reading the file records"))?;
        let mut dirs = BTreeSet::new();
        let mut in_place = Vec::new();
        for f in &pending {
            let staged = self.path(&f.staged);
            let final_path = self.path(&f.final_name);
            // `try_exists`: a file that cannot be checked (an I/O error) is not a missing file;
            // taken for one, its record would be marked published and the file stay hidden.
            let exists = |p: &Path| {
                p.try_exists()
                    .map_err(DestError::io(format!("checking {}", p.display())))
            };
            if exists(&staged)? {
                if truncate_to_committed {
                    truncate_file(&staged, f.bytes)?;
                }
                std::fs::rename(&staged, &final_path).map_err(DestError::io(format!(
                    "renaming {} to {}",
                    staged.display(),
                    final_path.display()
                )))?;
                rec.published_files += 1;
                info!(table = %f.table, file = %f.final_name, rows = f.rows, "Published a file a crashed job had committed.");
            } else if !exists(&final_path)? {
                warn!(table = %f.table, file = %f.final_name, staged = %f.staged, "A committed data file is missing (removed by hand?); its rows are not in the destination.");
            }
            if let Some(parent) = final_path.parent() {
                dirs.insert(parent.to_path_buf());
            }
            in_place.push(f.final_name.clone());
        }
        for d in &dirs {
            sync_dir(d)?;
        }
        for name in &in_place {
            self.store
                .mark_published(name)
                .map_err(DestError::sql(format!("marking {name} published")))?;
        }

        let known: HashSet<String> = self
            .store
            .known_staged()
            .map_err(DestError::sql("reading the file records"))?
            .into_iter()
            .collect();
        let mut swept = BTreeSet::new();
        for (table, rel) in ours.staged.iter().filter(|(_, rel)| !known.contains(rel)) {
            let path = self.path(rel);
            std::fs::remove_file(&path).map_err(DestError::io(format!(
                "deleting uncommitted file {}",
                path.display()
            )))?;
            info!(table = table.name(), file = %rel, "Deleted a file a crashed job had not committed.");
            rec.discarded_files += 1;
            swept.insert(table.name());
        }
        for table in swept {
            sync_dir(&self.dir.join(table))?;
        }
        rec.interrupted_jobs = super::fail_interrupted_jobs(&mut self.store)?;
        Ok(rec)
    }

    /// The files of ours in the table directories, by name (`leads/part-….parquet`): those
    /// published, and those in progress (with their table).
    fn our_files(&self) -> Result<OurFiles, DestError> {
        let mut ours = OurFiles::default();
        for table in Table::ALL {
            let dir = self.dir.join(table.name());
            let listing = |e| DestError::io(format!("listing {}", dir.display()))(e);
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(listing(e)),
            };
            for entry in entries {
                let name = entry.map_err(listing)?.file_name();
                let Some(name) = name.to_str() else { continue };
                let rel = format!("{}/{name}", table.name());
                if is_exported_name(name) {
                    ours.published.push(rel);
                } else if is_staged_name(name) {
                    ours.staged.push((table, rel));
                }
            }
        }
        Ok(ours)
    }

    /// Refuse a state older than the files beside it: a published file of ours that the state
    /// does not record was committed by a job the state does not know (a `.ctgo-state.db` put
    /// back from a backup over newer files, say). Its leads would be written again, and the
    /// newer jobs' hidden files taken for uncommitted work. A file the state records is never
    /// visible before its record is committed (`synchronous=FULL`), so this cannot be a crash.
    fn refuse_an_older_state(&self, published: &[String]) -> Result<(), DestError> {
        let recorded: HashSet<String> = self
            .store
            .recorded_files()
            .map_err(DestError::sql("reading the file records"))?
            .into_iter()
            .collect();
        let mut unknown: Vec<&String> = published
            .iter()
            .filter(|rel| !recorded.contains(*rel))
            .collect();
        unknown.sort();
        let Some(first) = unknown.first() else {
            return Ok(());
        };
        let others = match unknown.len() - 1 {
            0 => String::new(),
            1 => " and 1 more file".to_string(),
            n => format!(" and {n} more files"),
        };
        Err(DestError::Mismatch {
            dest: self.describe(),
            reason: format!(
                "it holds {first}{others} that its {state} does not record: the state is older \
                 than the files (put back from a backup?), and exporting with it would write \
                 their leads again. Put the newest {state} back (with its -wal file, if there \
                 is one), or move the files it does not record out of the directory",
                state = super::STATE_FILE,
            ),
        })
    }

    /// Finished jobs whose `export_jobs/` file was never committed: jobs a crash ended (marked
    /// FAILED just now, or by a recovery that itself crashed before writing their file). The
    /// recovery writes them, so the export_jobs dataset always matches the ledger.
    pub fn jobs_without_file(&self) -> Result<Vec<JobRecord>, DestError> {
        let ids: Vec<String> = {
            let mut stmt = self
                .store
                .conn()
                .prepare(
                    "SELECT id FROM export_jobs j
                     WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')
                       AND NOT EXISTS (SELECT 1 FROM _ctgo_files f
                                       WHERE f.tbl = 'export_jobs' AND f.job_id = j.id)
                     ORDER BY started_at",
                )
                .map_err(DestError::sql("reading the job ledger"))?;
            stmt.query_map([], |r| r.get(0))
                .map_err(DestError::sql("reading the job ledger"))?
                .collect::<Result<_, _>>()
                .map_err(DestError::sql("reading the job ledger"))?
        };
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(job) = self.ledger_job(&id)? {
                jobs.push(job);
            }
        }
        Ok(jobs)
    }

    /// The job record as it is in the ledger (after `fail_interrupted_jobs`).
    pub fn ledger_job(&self, id: &str) -> Result<Option<JobRecord>, DestError> {
        self.store
            .job(id)
            .map_err(DestError::sql("reading the job ledger"))
    }
}

/// True for the names this tool publishes its files under: `part-<job>-00001.parquet`,
/// `<job>.parquet`, `<job>.csv`, with `<job>` a job's UUID. (A file of someone else's in a
/// table directory is none of the state's business.)
pub fn is_exported_name(name: &str) -> bool {
    let Some(stem) = name
        .strip_suffix(".parquet")
        .or_else(|| name.strip_suffix(".csv"))
    else {
        return false;
    };
    let job = match stem.strip_prefix("part-") {
        Some(rest) => match rest.rsplit_once('-') {
            Some((job, seq)) if seq.len() == 5 && seq.bytes().all(|b| b.is_ascii_digit()) => job,
            _ => return false,
        },
        None => stem,
    };
    job.len() == 36 && uuid::Uuid::try_parse(job).is_ok()
}

/// True for the hidden names of files in progress (`.part-….parquet.tmp`, `.<job>.csv.partial`).
pub fn is_staged_name(name: &str) -> bool {
    name.starts_with('.') && STAGED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Flush a staged file to disk (step 1 of the protocol). For a file whose name is not yet
/// durable (`new_entry`: created since the last sync of its directory), the directory is
/// synced too: the state store's record of the file is committed next, and after a power loss
/// that record must not name a file the directory lost.
pub fn sync_file(file: &File, path: &Path, new_entry: bool) -> Result<(), DestError> {
    file.sync_all()
        .map_err(DestError::io(format!("syncing {}", path.display())))?;
    if new_entry && let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    crate::fault::point("files.staged.synced");
    Ok(())
}

/// Make a rename or a new entry in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), DestError> {
    let d = File::open(dir).map_err(DestError::io(format!("opening {}", dir.display())))?;
    d.sync_all()
        .map_err(DestError::io(format!("syncing {}", dir.display())))
}

/// Cut `path` back to `len` bytes if it is longer.
pub fn truncate_file(path: &Path, len: u64) -> Result<(), DestError> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(DestError::io(format!("opening {}", path.display())))?;
    let cur = f
        .metadata()
        .map_err(DestError::io(format!("reading {}", path.display())))?
        .len();
    if cur > len {
        f.set_len(len)
            .map_err(DestError::io(format!("truncating {}", path.display())))?;
        f.sync_all()
            .map_err(DestError::io(format!("syncing {}", path.display())))?;
        debug!(file = %path.display(), committed = len, dropped = cur - len, "Cut an uncommitted tail.");
    }
    Ok(())
}

/// A job id as it appears in a file name: UUIDs pass unchanged; anything else is reduced to
/// `[A-Za-z0-9_-]` so a name can never leave its directory.
pub fn file_safe(job_id: &str) -> String {
    let s: String = job_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "job".to_string() } else { s }
}

/// The job a batch belongs to: its `_job_id` (data tables) or `job_id` (rejects) column.
pub fn batch_job_id(batch: &RecordBatch) -> Option<String> {
    let col = batch
        .column_by_name("_job_id")
        .or_else(|| batch.column_by_name("job_id"))?;
    let strings = col.as_any().downcast_ref::<StringArray>()?;
    (0..strings.len())
        .find(|&i| strings.is_valid(i))
        .map(|i| strings.value(i).to_string())
}

/// `batch` with exactly the table's schema (so every file of a table has one schema and is
/// read as one dataset). Fails when a column has another type or a null in a not-null column.
pub fn conform(table: Table, batch: &RecordBatch) -> Result<RecordBatch, DestError> {
    let schema = table.schema();
    if batch.schema() == schema {
        return Ok(batch.clone());
    }
    RecordBatch::try_new(schema, batch.columns().to_vec()).map_err(|e| DestError::Format {
        what: table.name().into(),
        message: format!("the rows do not fit the {} schema: {e}", table.name()),
    })
}

/// Values of one column, by kind; [`build_batch`] checks them against the schema.
enum Values {
    Int(Vec<Option<i64>>),
    Real(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Millis(Vec<Option<i64>>),
}

/// A batch of `schema` with the named columns filled and every other column null.
fn build_batch(
    table: Table,
    schema: SchemaRef,
    rows: usize,
    mut values: Vec<(&str, Values)>,
) -> Result<RecordBatch, DestError> {
    let fail = |message: String| DestError::Format {
        what: table.name().into(),
        message,
    };
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let pos = values.iter().position(|(n, _)| *n == field.name().as_str());
        let Some(pos) = pos else {
            cols.push(new_null_array(field.data_type(), rows));
            continue;
        };
        let (_, v) = values.swap_remove(pos);
        let col: ArrayRef = match (v, field.data_type()) {
            (Values::Int(v), DataType::Int64) => Arc::new(Int64Array::from(v)),
            (Values::Real(v), DataType::Float64) => Arc::new(Float64Array::from(v)),
            (Values::Text(v), DataType::Utf8) => Arc::new(StringArray::from(v)),
            (Values::Millis(v), DataType::Timestamp(TimeUnit::Millisecond, tz)) => {
                Arc::new(TimestampMillisecondArray::from(v).with_timezone_opt(tz.clone()))
            }
            (_, other) => {
                return Err(fail(format!(
                    "column `{}` has type {other} in the schema, which this destination does not fill",
                    field.name()
                )));
            }
        };
        cols.push(col);
    }
    RecordBatch::try_new(schema, cols).map_err(|e| fail(e.to_string()))
}

/// Tombstones per batch: a full refresh that finds many ids gone (a move to another API, a
/// stream dropped) writes them a row group's worth at a time, not as one batch of them all.
pub const TOMBSTONE_ROWS: usize = 8 * 1024;

/// Tombstone rows for ids a full refresh found gone (see the module docs).
pub fn tombstones(
    store: &StateStore,
    table: Table,
    ids: &[i64],
    deleted_at_ms: i64,
    job_id: &str,
) -> Result<RecordBatch, DestError> {
    let cursor_col = match table {
        Table::Leads => "discovered_at",
        Table::SyncRuns => "triggered_at",
        other => {
            return Err(DestError::Format {
                what: other.name().into(),
                message: "only leads and sync_runs rows can be marked deleted".into(),
            });
        }
    };
    let cursors = store
        .seen_cursors(table, ids)
        .map_err(DestError::sql("reading the cursor values of deleted ids"))?;
    let n = ids.len();
    let cursor_values: Vec<Option<i64>> = ids
        .iter()
        .map(|id| {
            let c = cursors.get(id).copied().flatten();
            if c.is_none() && table == Table::Leads {
                // `discovered_at` is not null; every lead the store knows has one, so this only
                // happens with a hand-edited state store.
                warn!(
                    id,
                    "No discovered_at known for a deleted lead; using the deletion time."
                );
                return Some(deleted_at_ms);
            }
            c
        })
        .collect();
    build_batch(
        table,
        table.schema(),
        n,
        vec![
            ("id", Values::Int(ids.iter().map(|&i| Some(i)).collect())),
            (cursor_col, Values::Millis(cursor_values)),
            (
                "_extracted_at",
                Values::Millis(vec![Some(deleted_at_ms); n]),
            ),
            ("_deleted_at", Values::Millis(vec![Some(deleted_at_ms); n])),
            ("_job_id", Values::Text(vec![Some(job_id.to_string()); n])),
        ],
    )
}

/// The one-row `export_jobs` batch of a job record.
pub fn job_batch(job: &JobRecord) -> Result<RecordBatch, DestError> {
    let table = Table::ExportJobs;
    let ms = |t: &chrono::DateTime<chrono::Utc>| t.timestamp_millis();
    let tables = serde_json::to_string(&job.tables).map_err(|e| DestError::Format {
        what: table.name().into(),
        message: e.to_string(),
    })?;
    build_batch(
        table,
        table.schema(),
        1,
        vec![
            ("id", Values::Text(vec![Some(job.id.clone())])),
            (
                "source_connection_id",
                Values::Text(vec![Some(job.source_connection_id.clone())]),
            ),
            (
                "status",
                Values::Text(vec![Some(job.status.as_str().to_string())]),
            ),
            (
                "started_at",
                Values::Millis(vec![Some(ms(&job.started_at))]),
            ),
            (
                "completed_at",
                Values::Millis(vec![job.completed_at.as_ref().map(ms)]),
            ),
            ("duration_seconds", Values::Real(vec![job.duration_seconds])),
            (
                "entities_inserted",
                Values::Int(vec![Some(job.entities_inserted as i64)]),
            ),
            (
                "entities_updated",
                Values::Int(vec![Some(job.entities_updated as i64)]),
            ),
            (
                "entities_deleted",
                Values::Int(vec![Some(job.entities_deleted as i64)]),
            ),
            (
                "entities_failed",
                Values::Int(vec![Some(job.entities_failed as i64)]),
            ),
            ("error", Values::Text(vec![job.error.clone()])),
            (
                "error_details",
                Values::Text(vec![job.error_details.as_ref().map(|d| d.to_string())]),
            ),
            ("tables", Values::Text(vec![Some(tables)])),
        ],
    )
}

/// Helpers shared by the Parquet and CSV tests.
#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use arrow_array::Array;

    pub const EXTRACTED_MS: i64 = 1_780_390_860_000; // 2026-06-02T09:01:00Z

    /// A leads batch of the real schema: ids `first..first + n`, bios from `bios` (cycled) or
    /// null, one other text column per row to check quoting.
    pub fn leads_batch(first: i64, n: usize, job: &str, bios: &[&str]) -> RecordBatch {
        let ids: Vec<Option<i64>> = (0..n as i64).map(|i| Some(first + i)).collect();
        let bio: Vec<Option<String>> = (0..n)
            .map(|i| {
                if bios.is_empty() {
                    None
                } else {
                    Some(bios[i % bios.len()].to_string())
                }
            })
            .collect();
        build_batch(
            Table::Leads,
            Table::Leads.schema(),
            n,
            vec![
                ("id", Values::Int(ids.clone())),
                (
                    "stream_id",
                    Values::Int(ids.iter().map(|_| Some(-42)).collect()),
                ),
                (
                    "match_confidence",
                    Values::Text(vec![Some("high".into()); n]),
                ),
                (
                    "discovered_at",
                    Values::Millis(
                        ids.iter()
                            .map(|i| i.map(|i| EXTRACTED_MS - 60_000 + i))
                            .collect(),
                    ),
                ),
                (
                    "x_user_id",
                    Values::Text(vec![Some("18446744073709551615".into()); n]),
                ),
                (
                    "handle",
                    Values::Text(ids.iter().map(|i| i.map(|i| format!("user{i}"))).collect()),
                ),
                (
                    "follower_count",
                    Values::Int(ids.iter().map(|i| i.map(|i| i * 10)).collect()),
                ),
                ("bio", Values::Text(bio)),
                ("_extracted_at", Values::Millis(vec![Some(EXTRACTED_MS); n])),
                ("_job_id", Values::Text(vec![Some(job.to_string()); n])),
            ],
        )
        .expect("the test leads batch fits the schema")
    }

    /// A rejects batch of `n` rows.
    pub fn rejects_batch(n: usize, job: &str) -> RecordBatch {
        build_batch(
            Table::Rejects,
            Table::Rejects.schema(),
            n,
            vec![
                ("job_id", Values::Text(vec![Some(job.to_string()); n])),
                ("table", Values::Text(vec![Some("leads".into()); n])),
                (
                    "reason",
                    Values::Text(vec![Some("`id` is not an integer: \"x\"".into()); n]),
                ),
                ("raw", Values::Text(vec![Some("{\"id\":\"x\"}".into()); n])),
                ("rejected_at", Values::Millis(vec![Some(EXTRACTED_MS); n])),
            ],
        )
        .expect("the test rejects batch fits the schema")
    }

    /// A finished job record.
    pub fn job(id: &str) -> JobRecord {
        let started = chrono::DateTime::from_timestamp_millis(EXTRACTED_MS).unwrap_or_default();
        let mut job = JobRecord::new(uuid::Uuid::nil(), started);
        job.id = id.to_string();
        job.status = crate::job::JobStatus::Completed;
        job.completed_at = Some(started + chrono::Duration::milliseconds(4210));
        job.duration_seconds = Some(4.21);
        job.entities_inserted = 3;
        job
    }

    /// Non-hidden file names under `dir/table`, sorted.
    pub fn visible(dir: &Path, table: Table) -> Vec<String> {
        names(dir, table)
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .collect()
    }

    /// Every file name under `dir/table`, sorted.
    pub fn names(dir: &Path, table: Table) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join(table.name()))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Ids of an Int64 `id` column.
    pub fn ids(batch: &RecordBatch) -> Vec<i64> {
        batch
            .column_by_name("id")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
            .map(|a| (0..a.len()).map(|i| a.value(i)).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use arrow_array::Array;

    #[test]
    fn exported_names_are_told_from_other_files() {
        let job = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        for name in [
            format!("part-{job}-00001.parquet"),
            format!("part-{job}-12345.parquet"),
            format!("{job}.parquet"),
            format!("{job}.csv"),
        ] {
            assert!(is_exported_name(&name), "{name}");
        }
        for name in [
            format!(".part-{job}-00001.parquet.tmp"),
            format!(".{job}.csv.partial"),
            format!("part-{job}-1.parquet"),
            format!("part-{job}.parquet"),
            format!("{job}.json"),
            "0193a1b2c3d47e5f8a9b0c1d2e3f4a5b.csv".to_string(),
            "notes.csv".to_string(),
            "part-0.parquet".to_string(),
        ] {
            assert!(!is_exported_name(&name), "{name}");
        }
    }

    #[test]
    fn staged_names_are_hidden_and_recognised() {
        assert!(is_staged_name(".part-a-00001.parquet.tmp"));
        assert!(is_staged_name(".0193.csv.partial"));
        assert!(!is_staged_name("part-a-00001.parquet"));
        assert!(!is_staged_name(".DS_Store"));
        assert!(!is_staged_name("x.tmp"));
    }

    #[test]
    fn job_ids_cannot_escape_the_directory() {
        assert_eq!(
            file_safe("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
            "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
        );
        assert_eq!(file_safe("../../etc/passwd"), "______etc_passwd");
        assert_eq!(file_safe(""), "job");
    }

    #[test]
    fn job_batch_has_the_export_jobs_schema() {
        let b = job_batch(&job("j1")).expect("job batch");
        assert_eq!(b.schema(), Table::ExportJobs.schema());
        assert_eq!(b.num_rows(), 1);
        let status = b
            .column_by_name("status")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
            .expect("status");
        assert_eq!(status.value(0), "COMPLETED");
        assert!(b.column_by_name("error").is_some_and(|c| c.is_null(0)));
    }

    #[test]
    fn tombstones_carry_id_cursor_and_deletion_time() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut store = StateStore::open(&tmp.path().join("s.db")).expect("store");
        let key = crate::mapping::RowKey {
            id: 7,
            hash: 1,
            cursor_ms: Some(1_000),
            stream_id: None,
            finished: true,
        };
        store.upsert_seen(Table::Leads, &[key], "j0").expect("seen");
        let b = tombstones(&store, Table::Leads, &[7, 8], 5_000, "j1").expect("tombstones");
        assert_eq!(b.schema(), Table::Leads.schema());
        assert_eq!(ids(&b), vec![7, 8]);
        let ts = |name: &str| {
            b.column_by_name(name)
                .and_then(|c| {
                    c.as_any()
                        .downcast_ref::<TimestampMillisecondArray>()
                        .cloned()
                })
                .expect("timestamp column")
        };
        assert_eq!(ts("discovered_at").value(0), 1_000);
        assert_eq!(ts("discovered_at").value(1), 5_000);
        assert_eq!(ts("_deleted_at").value(0), 5_000);
        assert_eq!(ts("_extracted_at").value(1), 5_000);
        assert!(b.column_by_name("bio").is_some_and(|c| c.is_null(0)));
        let runs = tombstones(&store, Table::SyncRuns, &[9], 5_000, "j1").expect("runs");
        assert!(
            runs.column_by_name("triggered_at")
                .is_some_and(|c| c.is_null(0))
        );
        assert!(tombstones(&store, Table::Rejects, &[1], 5_000, "j1").is_err());
    }

    #[test]
    fn conform_rejects_a_foreign_batch() {
        let rejects = rejects_batch(2, "j");
        assert!(conform(Table::Leads, &rejects).is_err());
        let leads = leads_batch(1, 3, "j", &[]);
        assert_eq!(conform(Table::Leads, &leads).expect("same").num_rows(), 3);
        assert_eq!(batch_job_id(&leads).as_deref(), Some("j"));
        assert_eq!(batch_job_id(&rejects).as_deref(), Some("j"));
    }
}
