//! The Parquet destination (`parquet:DIR`): one Parquet dataset per table, append-only.
//!
//! `DIR/leads/`, `DIR/sync_runs/`, `DIR/rejects/` and `DIR/export_jobs/` each hold files that
//! pyarrow, DuckDB (`read_parquet('DIR/leads/*.parquet')`) and Spark read as one dataset: every
//! file of a table has exactly `Table::schema()`, zstd compression and column statistics (page
//! level, with a page index; none for the free-text columns, [`FREE_TEXT_COLUMNS`]).
//! Each job appends only new and changed row versions; the latest version of a lead is the row
//! with the greatest `_extracted_at`. A full refresh appends tombstones (see
//! [`super::files`]): the latest version of a deleted id is its tombstone, earlier versions
//! keep the data.
//!
//! Files are named `part-<job_id>-<seq:05>.parquet` (job ids are UUID v7, so names sort by job,
//! then by order within the job) and only get that name when the commit protocol of
//! [`super::files`] has committed them; until then they are hidden
//! (`.part-<job_id>-<seq:05>.parquet.tmp`). A file stays open across commits of the job loop
//! until it holds [`DEFAULT_FILE_ROWS`] rows (or the job ends), so a job writes a few large
//! files rather than one per page; the dedup state of the rows in an open file stays in the
//! same open state transaction, so deferring the commit is safe.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;

use arrow_array::RecordBatch;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use tracing::debug;

use super::files::{self, FileStore, StagedFile};
use super::parquet_file::FileWriter;
use super::{DestError, Destination, Recovery, StateStore};
use crate::job::JobRecord;
use crate::schema::Table;

/// Rows per row group. The writer buffers a whole row group in memory before it writes it.
/// With 32 KiB pages, a 1M export peaked at 1.18× the memory of a 10k one with 8Ki rows
/// against 1.21× with 16Ki (64Ki doubled it at 128 KiB pages; 4Ki measured no lower;
/// benches/README.md), and 8Ki rows are still enough for good compression and for readers to
/// skip row groups by statistics.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 8 * 1024;

/// Bytes of a data page before it is compressed. Small pages keep each column's page buffer
/// small: with 16Ki-row groups a 1M export peaked at 1.43× the memory of a 10k one with
/// 128 KiB pages, 1.28× with 64 KiB and 1.21× with 32 KiB, for files 5 % larger than with
/// 128 KiB pages (measured at 200k leads).
pub const DEFAULT_DATA_PAGE_BYTES: usize = 32 * 1024;

/// A hard cap on the bytes of a buffered row group, for rows far wider than usual (long bios,
/// large `extra` objects): whichever limit comes first closes the row group.
pub const DEFAULT_ROW_GROUP_BYTES: usize = 16 * 1024 * 1024;

/// Rows after which an open file is finished and published at the next commit of the job
/// loop, even when the job does not ask for one: a dozen row groups per file, about 2.6 MB of
/// leads. What a file's writer keeps until its footer (and what its thread's malloc arena
/// gathers) is given back when the file ends: a 1M export peaked 0.4 MB lower with 100k-row
/// files than with 250k (benches/README.md, Memory, ninth round).
pub const DEFAULT_FILE_ROWS: u64 = 100_000;

/// The zstd level: level 1 made files as small as level 3 on lead pages (5.49 vs 5.49 MB for
/// 200k leads) for less CPU.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// A file being written under its hidden name.
struct OpenFile {
    staged: String,
    final_name: String,
    job_id: String,
    writer: Encoder,
    rows: u64,
}

/// A [`FileWriter`] on a thread of its own: encoding and compressing one page overlaps with
/// the job loop's work on the next (dedup state, job record). A failure surfaces at the next
/// [`Encoder::write`] or at [`Encoder::finish`]; dropping the encoder abandons the file.
struct Encoder {
    tx: Option<std::sync::mpsc::SyncSender<RecordBatch>>,
    thread: Option<std::thread::JoinHandle<Result<File, ParquetError>>>,
}

impl Encoder {
    /// Batches queued ahead of the encoder: enough to overlap, few enough to bound memory.
    const QUEUE: usize = 2;

    fn spawn(mut writer: FileWriter) -> Result<Encoder, DestError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(Self::QUEUE);
        let thread = std::thread::Builder::new()
            .name("parquet-encoder".into())
            .spawn(move || {
                for batch in rx {
                    writer.write(&batch)?;
                }
                writer.into_inner()
            })
            .map_err(DestError::io("starting the Parquet encoder thread"))?;
        Ok(Encoder {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn write(&mut self, batch: RecordBatch) -> Result<(), ParquetError> {
        let sent = self.tx.as_ref().map(|tx| tx.send(batch).is_ok());
        if sent == Some(true) {
            return Ok(());
        }
        // The thread stopped: it failed on an earlier batch.
        match self.join() {
            Err(e) => Err(e),
            Ok(_) => Err(ParquetError::General("the encoder stopped early".into())),
        }
    }

    /// Write the footer; the file, flushed but not yet synced.
    fn finish(mut self) -> Result<File, ParquetError> {
        self.join()
    }

    fn join(&mut self) -> Result<File, ParquetError> {
        self.tx = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ParquetError::General("the encoder thread panicked".into())),
            None => Err(ParquetError::General("the encoder already finished".into())),
        }
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

pub struct ParquetDest {
    core: FileStore,
    props: WriterProperties,
    file_rows: u64,
    /// Open files by table and job.
    open: BTreeMap<(Table, String), OpenFile>,
    /// Finished and fsynced files waiting for the state commit.
    ready: Vec<StagedFile>,
    /// Last sequence number used per table and job.
    seq: HashMap<(Table, String), u32>,
    /// Set when a write or commit failed half-way: staged rows and staged state may no longer
    /// match, so nothing more is committed until a rollback.
    broken: Option<String>,
}

/// Columns whose values are (nearly) unique per row.
const UNIQUE_COLUMNS: [&str; 9] = [
    "id",
    "discovered_at",
    "follower_count",
    "x_user_id",
    "handle",
    "display_name",
    "profile_image_url",
    "bio",
    "extra",
];

/// Free-text columns: no statistics. Their minimum and maximum cannot skip a page or a row
/// group for any useful filter (a bio's range spans the alphabet in every page), yet their
/// column index was the largest part of what a file's writer keeps until the footer: without
/// them a 1M export peaks 0.7–0.8 MB lower and takes 4 % less CPU (benches/README.md, Memory,
/// tenth round). Ids, times, handles and the other columns keep page statistics.
pub(super) const FREE_TEXT_COLUMNS: [&str; 4] =
    ["display_name", "profile_image_url", "bio", "extra"];

/// The writer properties every file of the destination shares.
pub(super) fn writer_properties() -> Result<WriterProperties, DestError> {
    let level = ZstdLevel::try_new(DEFAULT_ZSTD_LEVEL).map_err(|e| DestError::Format {
        what: "parquet".into(),
        message: e.to_string(),
    })?;
    let mut b = WriterProperties::builder();
    // Columns that are unique (or nearly) per lead: a dictionary only costs interning time and
    // falls back to plain encoding anyway; zstd does the compressing.
    for col in UNIQUE_COLUMNS {
        b = b.set_column_dictionary_enabled(parquet::schema::types::ColumnPath::from(col), false);
    }
    for col in FREE_TEXT_COLUMNS {
        b = b.set_column_statistics_enabled(
            parquet::schema::types::ColumnPath::from(col),
            EnabledStatistics::None,
        );
    }
    Ok(b.set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(DEFAULT_ROW_GROUP_ROWS))
        .set_data_page_size_limit(DEFAULT_DATA_PAGE_BYTES)
        .set_max_row_group_bytes(Some(DEFAULT_ROW_GROUP_BYTES))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("ctgo-export {}", env!("CARGO_PKG_VERSION")))
        .build())
}

fn parquet_err(what: &str) -> impl FnOnce(parquet::errors::ParquetError) -> DestError + '_ {
    move |e| DestError::Format {
        what: what.to_string(),
        message: e.to_string(),
    }
}

impl ParquetDest {
    pub fn open(dir: &Path) -> Result<ParquetDest, DestError> {
        let core = FileStore::open(dir, "parquet")?;
        Ok(ParquetDest {
            core,
            props: writer_properties()?,
            file_rows: DEFAULT_FILE_ROWS,
            open: BTreeMap::new(),
            ready: Vec::new(),
            seq: HashMap::new(),
            broken: None,
        })
    }

    /// Set the rows after which a file is published without a forced commit (tests, tuning).
    pub fn with_file_rows(mut self, rows: u64) -> ParquetDest {
        self.file_rows = rows.max(1);
        self
    }

    /// Create a hidden file for `table` under the next free sequence number of `job_id`.
    fn create(&mut self, table: Table, job_id: &str) -> Result<OpenFile, DestError> {
        let safe = files::file_safe(job_id);
        let seq = self.seq.entry((table, job_id.to_string())).or_insert(0);
        loop {
            *seq += 1;
            let final_name = format!("{}/part-{safe}-{:05}.parquet", table.name(), *seq);
            let staged = format!("{}/.part-{safe}-{:05}.parquet.tmp", table.name(), *seq);
            let staged_path = self.core.path(&staged);
            if self.core.path(&final_name).exists() || staged_path.exists() {
                continue;
            }
            let file = File::options()
                .write(true)
                .create_new(true)
                .open(&staged_path)
                .map_err(DestError::io(format!("creating {}", staged_path.display())))?;
            let writer = FileWriter::try_new(file, table.schema(), self.props.clone())
                .map_err(parquet_err(table.name()))?;
            let writer = Encoder::spawn(writer)?;
            debug!(table = table.name(), file = %staged, "Opened a Parquet file.");
            return Ok(OpenFile {
                staged,
                final_name,
                job_id: job_id.to_string(),
                writer,
                rows: 0,
            });
        }
    }

    /// Stage rows of `table` (already conformed) into the open file of their job.
    fn append(&mut self, table: Table, rows: &RecordBatch) -> Result<(), DestError> {
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let rows = files::conform(table, rows)?;
        let job_id = files::batch_job_id(&rows).unwrap_or_else(|| "unknown".to_string());
        let key = (table, job_id.clone());
        if !self.open.contains_key(&key) {
            let f = self.create(table, &job_id)?;
            self.open.insert(key.clone(), f);
        }
        let Some(f) = self.open.get_mut(&key) else {
            return Err(DestError::Format {
                what: table.name().into(),
                message: "no open file".into(),
            });
        };
        f.rows += rows.num_rows() as u64;
        f.writer.write(rows).map_err(parquet_err(table.name()))?;
        Ok(())
    }

    /// Step 1 of the protocol for every open file: write the footer, fsync.
    fn finish_open_files(&mut self) -> Result<(), DestError> {
        let open = std::mem::take(&mut self.open);
        let mut iter = open.into_iter();
        while let Some(((table, _), f)) = iter.next() {
            let path = self.core.path(&f.staged);
            let finished = f
                .writer
                .finish()
                .map_err(parquet_err(table.name()))
                .and_then(|file| {
                    files::sync_file(&file, &path, true)?;
                    file.metadata()
                        .map(|m| m.len())
                        .map_err(DestError::io(format!("reading {}", path.display())))
                });
            match finished {
                Ok(bytes) => self.ready.push(StagedFile {
                    table,
                    staged: f.staged,
                    final_name: f.final_name,
                    job_id: f.job_id,
                    rows: f.rows,
                    bytes,
                    publish: true,
                }),
                Err(e) => {
                    // Leave the destination consistent for a rollback: the rest stay staged.
                    let _ = std::fs::remove_file(&path);
                    for ((t, _), rest) in iter {
                        self.open.insert((t, rest.job_id.clone()), rest);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Finish every open file and commit them with the state.
    fn commit_all(&mut self) -> Result<(), DestError> {
        self.finish_open_files()?;
        let published = self.core.commit_files(&mut self.ready)?;
        debug!(published, "Parquet commit.");
        Ok(())
    }

    /// Remember a failure that leaves staged rows and staged state out of step.
    fn guard<T>(&mut self, r: Result<T, DestError>) -> Result<T, DestError> {
        if let Err(e) = &r {
            self.broken.get_or_insert_with(|| e.to_string());
        }
        r
    }

    fn check_not_broken(&self) -> Result<(), DestError> {
        match &self.broken {
            Some(why) => Err(DestError::Format {
                what: self.core.describe(),
                message: format!(
                    "refusing to commit after an earlier failure ({why}); the staged work must be rolled back"
                ),
            }),
            None => Ok(()),
        }
    }

    fn discard_staged(&mut self) {
        for (_, f) in std::mem::take(&mut self.open) {
            let path = self.core.path(&f.staged);
            drop(f.writer);
            let _ = std::fs::remove_file(path);
        }
        for f in std::mem::take(&mut self.ready) {
            let _ = std::fs::remove_file(self.core.path(&f.staged));
        }
    }
}

impl Destination for ParquetDest {
    fn describe(&self) -> String {
        self.core.describe()
    }

    fn state(&mut self) -> &mut StateStore {
        &mut self.core.store
    }

    fn recover(&mut self) -> Result<Recovery, DestError> {
        let rec = self.core.recover(false)?;
        self.core.warn_of_lost_files("Parquet")?;
        // Jobs a crash ended get their (now FAILED) record in `export_jobs/` too; so does any
        // finished job whose file a crash during an earlier recovery kept from being written.
        for job in self.core.jobs_without_file()? {
            self.finish_job(&job)?;
        }
        Ok(rec)
    }

    fn write(&mut self, table: Table, rows: &RecordBatch) -> Result<(), DestError> {
        let r = self.append(table, rows);
        self.guard(r)?;
        crate::fault::point("parquet.write.after");
        Ok(())
    }

    fn write_rejects(&mut self, rows: &RecordBatch) -> Result<(), DestError> {
        let r = self.append(Table::Rejects, rows);
        self.guard(r)
    }

    fn mark_deleted(
        &mut self,
        table: Table,
        ids: &[i64],
        deleted_at_ms: i64,
        job_id: &str,
    ) -> Result<(), DestError> {
        if ids.is_empty() {
            return Ok(());
        }
        for ids in ids.chunks(files::TOMBSTONE_ROWS) {
            let rows = files::tombstones(&self.core.store, table, ids, deleted_at_ms, job_id)?;
            let r = self.append(table, &rows);
            self.guard(r)?;
        }
        Ok(())
    }

    fn commit(&mut self, force: bool) -> Result<bool, DestError> {
        let nothing =
            self.open.is_empty() && self.ready.is_empty() && !self.core.store.in_transaction();
        if nothing {
            return Ok(false);
        }
        if !force && !self.commit_due() {
            return Ok(false);
        }
        self.check_not_broken()?;
        let r = self.commit_all();
        self.guard(r)?;
        Ok(true)
    }

    fn commit_due(&self) -> bool {
        self.open.values().any(|f| f.rows >= self.file_rows)
    }

    fn rollback(&mut self) -> Result<(), DestError> {
        self.discard_staged();
        self.broken = None;
        self.core
            .store
            .rollback()
            .map_err(DestError::sql("rolling back the state store"))
    }

    fn finish_job(&mut self, job: &JobRecord) -> Result<(), DestError> {
        self.check_not_broken()?;
        // Ledger row, job file and any rows still open commit together.
        self.core
            .store
            .begin()
            .map_err(DestError::sql("starting the job's last commit"))?;
        self.core
            .store
            .save_job(job)
            .map_err(DestError::sql("recording the job"))?;
        let table = Table::ExportJobs;
        let safe = files::file_safe(&job.id);
        let staged = format!("{}/.{safe}.parquet.tmp", table.name());
        let final_name = format!("{}/{safe}.parquet", table.name());
        let path = self.core.path(&staged);
        let batch = files::job_batch(job)?;
        let written = (|| {
            let file = File::create(&path)
                .map_err(DestError::io(format!("creating {}", path.display())))?;
            let mut w = FileWriter::try_new(file, table.schema(), self.props.clone())
                .map_err(parquet_err(table.name()))?;
            w.write(&batch).map_err(parquet_err(table.name()))?;
            let file = w.into_inner().map_err(parquet_err(table.name()))?;
            files::sync_file(&file, &path, true)?;
            file.metadata()
                .map(|m| m.len())
                .map_err(DestError::io(format!("reading {}", path.display())))
        })();
        let bytes = match written {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        self.ready.push(StagedFile {
            table,
            staged,
            final_name,
            job_id: job.id.clone(),
            rows: 1,
            bytes,
            publish: true,
        });
        let r = self.commit_all();
        self.guard(r)
    }
}

#[cfg(test)]
mod tests {
    use super::super::files::testutil::*;
    use super::*;
    use arrow_array::{Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    const JOB: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

    fn read(path: &Path) -> Vec<RecordBatch> {
        let file = File::open(path).expect("open parquet");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet reader")
            .build()
            .expect("build reader");
        reader.map(|b| b.expect("batch")).collect()
    }

    fn read_ids(dir: &Path, table: Table) -> Vec<i64> {
        let mut all = Vec::new();
        for name in visible(dir, table) {
            for b in read(&dir.join(table.name()).join(name)) {
                assert_eq!(b.schema(), table.schema());
                all.extend(ids(&b));
            }
        }
        all
    }

    #[test]
    fn write_and_commit_publishes_a_readable_file_with_the_schema() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut d = ParquetDest::open(tmp.path()).expect("open");
        assert_eq!(d.describe(), format!("parquet:{}", tmp.path().display()));
        d.write(Table::Leads, &leads_batch(1, 3, JOB, &["a, \"b\"", "🦀"]))
            .expect("write");
        d.write(Table::Leads, &leads_batch(4, 2, JOB, &[]))
            .expect("write");
        // Before the commit: only a hidden file.
        assert!(visible(tmp.path(), Table::Leads).is_empty());
        assert_eq!(names(tmp.path(), Table::Leads).len(), 1);
        assert!(!d.commit(false).expect("deferred"), "small files defer");
        assert!(visible(tmp.path(), Table::Leads).is_empty());
        assert!(d.commit(true).expect("commit"));
        assert_eq!(
            visible(tmp.path(), Table::Leads),
            vec![format!("part-{JOB}-00001.parquet")]
        );
        assert_eq!(
            names(tmp.path(), Table::Leads).len(),
            1,
            "no hidden file left"
        );
        let path = tmp
            .path()
            .join("leads")
            .join(format!("part-{JOB}-00001.parquet"));
        let batches = read(&path);
        let all: Vec<i64> = batches.iter().flat_map(ids).collect();
        assert_eq!(all, vec![1, 2, 3, 4, 5]);
        let b = &batches[0];
        assert_eq!(b.schema(), Table::Leads.schema());
        let bio = b
            .column_by_name("bio")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
            .expect("bio");
        assert_eq!(bio.value(0), "a, \"b\"");
        assert_eq!(bio.value(1), "🦀");
        let x = b
            .column_by_name("x_user_id")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
            .expect("x_user_id");
        assert_eq!(x.value(0), "18446744073709551615");
        // zstd + statistics.
        let meta = SerializedFileReader::new(File::open(&path).expect("open"))
            .expect("reader")
            .metadata()
            .clone();
        let col = meta.row_group(0).column(0);
        assert_eq!(col.compression(), Compression::ZSTD(ZstdLevel::default()));
        assert!(col.statistics().is_some());
        // Statistics for every column but the free-text ones.
        let schema = Table::Leads.schema();
        for (i, field) in schema.fields().iter().enumerate() {
            let stats = meta.row_group(0).column(i).statistics();
            let free_text = FREE_TEXT_COLUMNS.contains(&field.name().as_str());
            assert_eq!(stats.is_none(), free_text, "{}", field.name());
        }
        // The record is published.
        assert!(d.state().unpublished_files().expect("files").is_empty());
    }

    #[test]
    fn a_full_file_commits_without_force_and_sequences_names() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut d = ParquetDest::open(tmp.path())
            .expect("open")
            .with_file_rows(4);
        d.write(Table::Leads, &leads_batch(1, 5, JOB, &[]))
            .expect("write");
        assert!(d.commit(false).expect("commit"));
        d.write(Table::Leads, &leads_batch(6, 1, JOB, &[]))
            .expect("write");
        assert!(!d.commit(false).expect("deferred"));
        assert!(d.commit(true).expect("commit"));
        assert_eq!(
            visible(tmp.path(), Table::Leads),
            vec![
                format!("part-{JOB}-00001.parquet"),
                format!("part-{JOB}-00002.parquet")
            ]
        );
        assert_eq!(read_ids(tmp.path(), Table::Leads), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn rollback_leaves_nothing_visible() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut d = ParquetDest::open(tmp.path()).expect("open");
        d.write(Table::Leads, &leads_batch(1, 3, JOB, &[]))
            .expect("write");
        d.write_rejects(&rejects_batch(1, JOB)).expect("rejects");
        d.state()
            .set_cursor("leads", 123, JOB)
            .expect("stage cursor");
        d.rollback().expect("rollback");
        for t in Table::ALL {
            assert!(names(tmp.path(), t).is_empty(), "{t}");
        }
        assert_eq!(d.state().cursor("leads").expect("cursor"), None);
        assert!(!d.commit(true).expect("nothing to commit"));
    }

    #[test]
    fn recovery_publishes_committed_and_deletes_uncommitted_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            let mut d = ParquetDest::open(tmp.path()).expect("open");
            // Job A: crash right after the state commit (before the rename).
            d.write(Table::Leads, &leads_batch(1, 2, "job-a", &[]))
                .expect("write");
            d.finish_open_files().expect("finish");
            let mut ready = std::mem::take(&mut d.ready);
            for f in &ready {
                d.core
                    .store
                    .record_file(
                        f.table.name(),
                        &f.staged,
                        &f.final_name,
                        &f.job_id,
                        f.rows,
                        f.bytes,
                    )
                    .expect("record");
            }
            d.core.store.commit().expect("state commit");
            ready.clear();
            // Job B: crash before the commit (file written, not recorded).
            d.write(Table::Leads, &leads_batch(10, 2, "job-b", &[]))
                .expect("write");
            d.finish_open_files().expect("finish");
            d.ready.clear();
            // The "crash": drop without commit or rollback.
        }
        assert!(visible(tmp.path(), Table::Leads).is_empty());
        assert_eq!(names(tmp.path(), Table::Leads).len(), 2);

        let mut d = ParquetDest::open(tmp.path()).expect("reopen");
        let rec = d.recover().expect("recover");
        assert_eq!(rec.published_files, 1);
        assert_eq!(rec.discarded_files, 1);
        assert_eq!(
            names(tmp.path(), Table::Leads),
            vec!["part-job-a-00001.parquet".to_string()]
        );
        assert_eq!(read_ids(tmp.path(), Table::Leads), vec![1, 2]);
        assert!(d.state().unpublished_files().expect("files").is_empty());
        // Idempotent.
        assert_eq!(d.recover().expect("again"), Recovery::default());
    }

    #[test]
    fn a_failed_write_blocks_commits_until_rollback() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut d = ParquetDest::open(tmp.path()).expect("open");
        d.write(Table::Leads, &leads_batch(1, 2, JOB, &[]))
            .expect("write");
        assert!(d.write(Table::Leads, &rejects_batch(1, JOB)).is_err());
        assert!(
            d.commit(true).is_err(),
            "half-staged work is never committed"
        );
        assert!(visible(tmp.path(), Table::Leads).is_empty());
        d.rollback().expect("rollback");
        assert!(names(tmp.path(), Table::Leads).is_empty());
        d.write(Table::Leads, &leads_batch(3, 1, JOB, &[]))
            .expect("write");
        assert!(d.commit(true).expect("commit"));
        assert_eq!(read_ids(tmp.path(), Table::Leads), vec![3]);
    }

    #[test]
    fn second_open_is_refused_while_locked() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let _d = ParquetDest::open(tmp.path()).expect("open");
        match ParquetDest::open(tmp.path()) {
            Err(DestError::Busy { .. }) => {}
            other => panic!("expected Busy, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn many_tombstones_are_all_written_in_row_groups() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut d = ParquetDest::open(tmp.path()).expect("open");
        let n = 2 * files::TOMBSTONE_ROWS + 5;
        let ids: Vec<i64> = (1..=n as i64).collect();
        d.mark_deleted(Table::SyncRuns, &ids, EXTRACTED_MS, JOB)
            .expect("tombstones");
        d.commit(true).expect("commit");
        assert_eq!(read_ids(tmp.path(), Table::SyncRuns), ids);
        let name = &visible(tmp.path(), Table::SyncRuns)[0];
        let file = File::open(tmp.path().join("sync_runs").join(name)).expect("open");
        let meta = SerializedFileReader::new(file)
            .expect("reader")
            .metadata()
            .clone();
        let groups: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(groups, vec![8192, 8192, 5]);
    }

    #[test]
    fn rejects_tombstones_and_job_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut d = ParquetDest::open(tmp.path()).expect("open");
        d.write(Table::Leads, &leads_batch(1, 2, JOB, &["x"]))
            .expect("write");
        let keys: Vec<crate::mapping::RowKey> = (1..=2)
            .map(|id| crate::mapping::RowKey {
                id,
                hash: 1,
                cursor_ms: Some(1_000 + id),
                stream_id: None,
                finished: true,
            })
            .collect();
        d.state()
            .upsert_seen(Table::Leads, &keys, JOB)
            .expect("seen");
        d.write_rejects(&rejects_batch(2, JOB)).expect("rejects");
        d.commit(true).expect("commit");
        d.mark_deleted(Table::Leads, &[2], EXTRACTED_MS + 1, JOB)
            .expect("tombstone");
        let job = job(JOB);
        d.state().save_job(&job).expect("ledger");
        d.finish_job(&job).expect("finish");

        assert_eq!(read_ids(tmp.path(), Table::Leads), vec![1, 2, 2]);
        let tomb = read(
            &tmp.path()
                .join("leads")
                .join(format!("part-{JOB}-00002.parquet")),
        );
        assert!(tomb[0].column_by_name("bio").is_some_and(|c| c.is_null(0)));
        assert!(
            tomb[0]
                .column_by_name("_deleted_at")
                .is_some_and(|c| !c.is_null(0))
        );
        let rejects = visible(tmp.path(), Table::Rejects);
        assert_eq!(rejects.len(), 1);
        assert_eq!(
            read(&tmp.path().join("rejects").join(&rejects[0]))[0].num_rows(),
            2
        );
        assert_eq!(
            visible(tmp.path(), Table::ExportJobs),
            vec![format!("{JOB}.parquet")]
        );
        let jobs = read(
            &tmp.path()
                .join("export_jobs")
                .join(format!("{JOB}.parquet")),
        );
        assert_eq!(jobs[0].schema(), Table::ExportJobs.schema());
        assert_eq!(jobs[0].num_rows(), 1);
        assert_eq!(d.state().jobs(10).expect("jobs")[0].id, JOB);
    }

    #[test]
    fn recovery_fails_interrupted_jobs_and_writes_their_record() {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            let mut d = ParquetDest::open(tmp.path()).expect("open");
            let mut job = job(JOB);
            job.status = crate::job::JobStatus::Running;
            job.completed_at = None;
            d.state().save_job(&job).expect("ledger");
        }
        let mut d = ParquetDest::open(tmp.path()).expect("reopen");
        let rec = d.recover().expect("recover");
        assert_eq!(rec.interrupted_jobs, vec![JOB.to_string()]);
        let jobs = read(
            &tmp.path()
                .join("export_jobs")
                .join(format!("{JOB}.parquet")),
        );
        let status = jobs[0]
            .column_by_name("status")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
            .expect("status");
        assert_eq!(status.value(0), "FAILED");
    }
}
