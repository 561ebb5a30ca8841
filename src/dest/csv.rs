//! The CSV destination (`csv:DIR`): one file per job and table, meant for CRM import.
//!
//! `DIR/leads/<job_id>.csv` holds the new and changed leads of one job (the same for
//! `sync_runs/` and `rejects/`; `export_jobs/<job_id>.csv` holds the job's one record). Every
//! file has a header row with the schema's columns in order, RFC 4180 quoting (CRLF line ends,
//! fields with `,` `"` or line breaks quoted, quotes doubled), UTF-8 with an optional BOM (for
//! Excel), ISO 8601 UTC timestamps with a `Z`, and an empty cell for null.
//!
//! **Formula injection is neutralised**: a text cell that begins with `=`, `+`, `-`, `@`, tab or
//! carriage return is written with a leading `'`, so a spreadsheet shows it as text rather than
//! evaluating it. Only text columns: numbers stay numbers (`-5` in an integer column is `-5`).
//!
//! A job commits many times but makes one file per table: rows are appended to a hidden
//! `DIR/<table>/.<job_id>.csv.partial`; each commit flushes and fsyncs it and records its
//! committed length with the state ([`super::files`]); `finish_job` renames it into place. A
//! crash leaves a committed length in the state store: recovery cuts the file back to it (the
//! bytes after it are an uncommitted tail) and publishes it. A job that wrote no rows to a
//! table creates no file for it. A full refresh appends tombstone rows (id, cursor column,
//! `_deleted_at`; the rest empty): the latest row of a deleted id is its tombstone.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use tracing::debug;

use super::files::{self, FileStore, StagedFile};
use super::{Cell, DestError, Destination, Recovery, StateStore, cell};
use crate::job::JobRecord;
use crate::schema::Table;

/// Rows staged before a commit when the job does not ask for one sooner (as for SQLite: each
/// commit costs an fsync per open file plus one for the state store).
pub const DEFAULT_COMMIT_ROWS: u64 = 5_000;

/// The UTF-8 byte order mark that makes Excel read the file as UTF-8.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The characters that make a spreadsheet treat a cell as a formula.
pub const FORMULA_TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A per-job file being appended to under its hidden name.
struct Partial {
    staged: String,
    final_name: String,
    job_id: String,
    file: File,
    /// Bytes and rows written so far.
    bytes: u64,
    rows: u64,
    /// Bytes and rows the state store has committed (None before the first commit).
    committed: Option<(u64, u64)>,
}

pub struct CsvDest {
    core: FileStore,
    bom: bool,
    commit_rows: u64,
    open: BTreeMap<(Table, String), Partial>,
    staged_rows: u64,
    /// Set when a write or commit failed half-way: nothing more is committed until a rollback.
    broken: Option<String>,
}

/// The text a spreadsheet will not evaluate: `'` before a leading formula trigger.
pub fn neutralise(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(FORMULA_TRIGGERS) {
        std::borrow::Cow::Owned(format!("'{text}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

fn csv_err(what: &str) -> impl FnOnce(csv::Error) -> DestError + '_ {
    move |e| DestError::Format {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// `rows` as CSV records (no header), appended to `out`.
pub fn encode_rows(rows: &RecordBatch, out: &mut Vec<u8>) -> Result<(), DestError> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    let cols = rows.columns();
    let text: Vec<bool> = rows
        .schema()
        .fields()
        .iter()
        .map(|f| matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8))
        .collect();
    let mut record = csv::ByteRecord::with_capacity(256, cols.len());
    let mut buf = String::new();
    for i in 0..rows.num_rows() {
        record.clear();
        for (c, col) in cols.iter().enumerate() {
            buf.clear();
            match cell(col, i) {
                Cell::Null => {}
                Cell::Int(v) => {
                    use std::fmt::Write as _;
                    let _ = write!(buf, "{v}");
                }
                Cell::Real(v) => {
                    use std::fmt::Write as _;
                    let _ = write!(buf, "{v}");
                }
                Cell::Text(s) if text[c] => buf.push_str(&neutralise(s)),
                Cell::Text(s) => buf.push_str(s),
                Cell::Owned(s) => buf.push_str(&s),
            }
            record.push_field(buf.as_bytes());
        }
        w.write_byte_record(&record).map_err(csv_err("CSV rows"))?;
    }
    w.flush()
        .map_err(DestError::io("encoding CSV rows in memory"))?;
    Ok(())
}

/// The header row (and BOM) that starts every file of `table`.
pub fn header(table: Table, bom: bool) -> Result<Vec<u8>, DestError> {
    let mut out = Vec::new();
    if bom {
        out.extend_from_slice(BOM);
    }
    {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(&mut out);
        let schema = table.schema();
        w.write_record(schema.fields().iter().map(|f| f.name().as_str()))
            .map_err(csv_err("CSV header"))?;
        w.flush().map_err(DestError::io("encoding a CSV header"))?;
    }
    Ok(out)
}

impl CsvDest {
    pub fn open(dir: &Path, bom: bool) -> Result<CsvDest, DestError> {
        let core = FileStore::open(dir, "csv")?;
        Ok(CsvDest {
            core,
            bom,
            commit_rows: DEFAULT_COMMIT_ROWS,
            open: BTreeMap::new(),
            staged_rows: 0,
            broken: None,
        })
    }

    /// Set the rows staged before a commit without force (tests, tuning).
    pub fn with_commit_rows(mut self, rows: u64) -> CsvDest {
        self.commit_rows = rows.max(1);
        self
    }

    fn names(table: Table, job_id: &str) -> (String, String) {
        let safe = files::file_safe(job_id);
        (
            format!("{}/.{safe}.csv.partial", table.name()),
            format!("{}/{safe}.csv", table.name()),
        )
    }

    /// Append rows of `table` to the partial file of their job (created with its header).
    /// `job_id` names the file; by default the batch's own `_job_id` / `job_id`.
    fn append(
        &mut self,
        table: Table,
        rows: &RecordBatch,
        job_id: Option<&str>,
    ) -> Result<(), DestError> {
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let rows = files::conform(table, rows)?;
        let job_id = match job_id {
            Some(j) => j.to_string(),
            None => files::batch_job_id(&rows).unwrap_or_else(|| "unknown".to_string()),
        };
        let mut bytes = Vec::with_capacity(rows.num_rows() * 256);
        encode_rows(&rows, &mut bytes)?;
        let key = (table, job_id.clone());
        if !self.open.contains_key(&key) {
            let (staged, final_name) = Self::names(table, &job_id);
            let path = self.core.path(&staged);
            // A leftover with this name can only be uncommitted (job ids are unique per run).
            let mut file = File::options()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)
                .map_err(DestError::io(format!("creating {}", path.display())))?;
            let head = header(table, self.bom)?;
            file.write_all(&head)
                .map_err(DestError::io(format!("writing {}", path.display())))?;
            debug!(table = table.name(), file = %staged, "Opened a CSV file.");
            self.open.insert(
                key.clone(),
                Partial {
                    staged,
                    final_name,
                    job_id,
                    file,
                    bytes: head.len() as u64,
                    rows: 0,
                    committed: None,
                },
            );
        }
        let Some(p) = self.open.get_mut(&key) else {
            return Err(DestError::Format {
                what: table.name().into(),
                message: "no open file".into(),
            });
        };
        p.file.write_all(&bytes).map_err(DestError::io(format!(
            "writing {}",
            self.core.path(&p.staged).display()
        )))?;
        p.bytes += bytes.len() as u64;
        p.rows += rows.num_rows() as u64;
        self.staged_rows += rows.num_rows() as u64;
        Ok(())
    }

    /// Step 1 of the protocol for every open file; `publish` at the job's end.
    fn sync_all(&mut self, publish: bool) -> Result<Vec<StagedFile>, DestError> {
        let mut ready = Vec::with_capacity(self.open.len());
        for ((table, _), p) in &mut self.open {
            let path = self.core.path(&p.staged);
            p.file
                .flush()
                .map_err(DestError::io(format!("writing {}", path.display())))?;
            files::sync_file(&p.file, &path, p.committed.is_none())?;
            ready.push(StagedFile {
                table: *table,
                staged: p.staged.clone(),
                final_name: p.final_name.clone(),
                job_id: p.job_id.clone(),
                rows: p.rows,
                bytes: p.bytes,
                publish,
            });
        }
        Ok(ready)
    }

    /// Commit every open file's current length with the state; at the job's end, publish.
    fn commit_all(&mut self, publish: bool) -> Result<(), DestError> {
        let mut ready = self.sync_all(publish)?;
        if publish {
            // Every file is in `ready` now: after the commit they are the destination's.
            self.core.commit_files(&mut ready)?;
            self.open.clear();
        } else {
            self.core.commit_files(&mut ready)?;
            for p in self.open.values_mut() {
                p.committed = Some((p.bytes, p.rows));
            }
        }
        self.staged_rows = 0;
        Ok(())
    }

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

    /// Cut every open file back to its committed length; delete those never committed.
    fn discard_staged(&mut self) -> Result<(), DestError> {
        let mut first_err = None;
        let open = std::mem::take(&mut self.open);
        for (key, mut p) in open {
            let path = self.core.path(&p.staged);
            match p.committed {
                None => {
                    drop(p.file);
                    if let Err(e) = std::fs::remove_file(&path) {
                        first_err
                            .get_or_insert(DestError::io(format!("deleting {}", path.display()))(
                                e,
                            ));
                    }
                }
                Some((bytes, rows)) => {
                    // Opened for writing (not append), so seek back to the committed end.
                    let r = p
                        .file
                        .set_len(bytes)
                        .and_then(|()| {
                            std::io::Seek::seek(&mut p.file, std::io::SeekFrom::Start(bytes))
                        })
                        .map_err(DestError::io(format!("truncating {}", path.display())));
                    match r {
                        Ok(_) => {
                            p.bytes = bytes;
                            p.rows = rows;
                            self.open.insert(key, p);
                        }
                        Err(e) => {
                            // Recovery cuts it back to the committed length at the next start.
                            first_err.get_or_insert(e);
                        }
                    }
                }
            }
        }
        self.staged_rows = 0;
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Destination for CsvDest {
    fn describe(&self) -> String {
        self.core.describe()
    }

    fn state(&mut self) -> &mut StateStore {
        &mut self.core.store
    }

    fn recover(&mut self) -> Result<Recovery, DestError> {
        let rec = self.core.recover(true)?;
        // Jobs a crash ended get their (now FAILED) record in `export_jobs/` too; so does any
        // finished job whose file a crash during an earlier recovery kept from being written.
        for job in self.core.jobs_without_file()? {
            self.finish_job(&job)?;
        }
        Ok(rec)
    }

    fn write(&mut self, table: Table, rows: &RecordBatch) -> Result<(), DestError> {
        let r = self.append(table, rows, None);
        self.guard(r)?;
        crate::fault::point("csv.write.after");
        Ok(())
    }

    fn write_rejects(&mut self, rows: &RecordBatch) -> Result<(), DestError> {
        let r = self.append(Table::Rejects, rows, None);
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
            let r = self.append(table, &rows, Some(job_id));
            self.guard(r)?;
        }
        Ok(())
    }

    fn commit(&mut self, force: bool) -> Result<bool, DestError> {
        if self.staged_rows == 0 && !self.core.store.in_transaction() {
            return Ok(false);
        }
        if !force && !self.commit_due() {
            return Ok(false);
        }
        self.check_not_broken()?;
        let r = self.commit_all(false);
        self.guard(r)?;
        Ok(true)
    }

    fn commit_due(&self) -> bool {
        self.staged_rows >= self.commit_rows
    }

    fn rollback(&mut self) -> Result<(), DestError> {
        let discarded = self.discard_staged();
        self.broken = None;
        self.core
            .store
            .rollback()
            .map_err(DestError::sql("rolling back the state store"))?;
        discarded
    }

    fn finish_job(&mut self, job: &JobRecord) -> Result<(), DestError> {
        self.check_not_broken()?;
        // Ledger row, job file and the job's data files commit and publish together.
        self.core
            .store
            .begin()
            .map_err(DestError::sql("starting the job's last commit"))?;
        self.core
            .store
            .save_job(job)
            .map_err(DestError::sql("recording the job"))?;
        let batch = files::job_batch(job)?;
        let r = self.append(Table::ExportJobs, &batch, Some(&job.id));
        self.guard(r)?;
        let r = self.commit_all(true);
        self.guard(r)
    }
}

#[cfg(test)]
mod tests {
    use super::super::files::testutil::*;
    use super::*;

    const JOB: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

    fn read_csv(path: &Path) -> Vec<Vec<String>> {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_path(path)
            .expect("open csv");
        r.records()
            .map(|rec| rec.expect("record").iter().map(str::to_string).collect())
            .collect()
    }

    fn col(rows: &[Vec<String>], name: &str) -> usize {
        rows[0]
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
            .expect("column")
    }

    #[test]
    fn write_commit_finish_publishes_one_file_per_job() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut d = CsvDest::open(tmp.path(), false).expect("open");
        assert_eq!(d.describe(), format!("csv:{}", tmp.path().display()));
        d.write(Table::Leads, &leads_batch(1, 2, JOB, &["plain"]))
            .expect("write");
        assert!(!d.commit(false).expect("deferred"));
        assert!(d.commit(true).expect("commit"));
        d.write(Table::Leads, &leads_batch(3, 1, JOB, &["more"]))
            .expect("write");
        assert!(d.commit(true).expect("commit"));
        // Committed but not finished: still hidden.
        assert!(visible(tmp.path(), Table::Leads).is_empty());
        let job = job(JOB);
        d.finish_job(&job).expect("finish");
        assert_eq!(
            visible(tmp.path(), Table::Leads),
            vec![format!("{JOB}.csv")]
        );
        assert_eq!(names(tmp.path(), Table::Leads).len(), 1);
        assert!(
            visible(tmp.path(), Table::SyncRuns).is_empty(),
            "no rows, no file"
        );
        assert!(visible(tmp.path(), Table::Rejects).is_empty());
        let rows = read_csv(&tmp.path().join("leads").join(format!("{JOB}.csv")));
        let schema = Table::Leads.schema();
        let header: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(rows[0], header);
        assert_eq!(rows.len(), 4);
        let id = col(&rows, "id");
        let ids: Vec<&str> = rows[1..].iter().map(|r| r[id].as_str()).collect();
        assert_eq!(ids, vec!["1", "2", "3"]);
        let disc = col(&rows, "discovered_at");
        assert_eq!(rows[1][disc], "2026-06-02T09:00:00.001Z");
        assert_eq!(rows[1][col(&rows, "exported_at")], "", "null is empty");
        assert_eq!(
            rows[1][col(&rows, "stream_id")],
            "-42",
            "numbers stay numbers"
        );
        let raw = std::fs::read(tmp.path().join("leads").join(format!("{JOB}.csv"))).expect("read");
        assert!(raw.starts_with(b"id,"), "no BOM unless asked");
        assert!(raw.ends_with(b"\r\n"), "RFC 4180 line ends");
        // The job record.
        let jobs = read_csv(&tmp.path().join("export_jobs").join(format!("{JOB}.csv")));
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[1][col(&jobs, "status")], "COMPLETED");
        assert_eq!(jobs[1][col(&jobs, "duration_seconds")], "4.21");
        assert!(d.state().unpublished_files().expect("files").is_empty());
    }

    #[test]
    fn quoting_of_commas_quotes_newlines_and_emoji() {
        let bios = [
            "a, b",
            "say \"hi\"",
            "line1\nline2\r\nline3",
            "🦀 ünïcode 日本",
        ];
        let batch = leads_batch(1, 4, JOB, &bios);
        let mut out = Vec::new();
        encode_rows(&batch, &mut out).expect("encode");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains(",\"a, b\","));
        assert!(text.contains(",\"say \"\"hi\"\"\","));
        assert!(text.contains(",\"line1\nline2\r\nline3\","));
        assert!(text.contains(",🦀 ünïcode 日本,"));
        // And it reads back exactly.
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes());
        let bio_col = Table::Leads.schema().index_of("bio").expect("bio column");
        let got: Vec<String> = r
            .records()
            .map(|rec| rec.expect("record")[bio_col].to_string())
            .collect();
        assert_eq!(got, bios);
    }

    #[test]
    fn formula_injection_is_neutralised_in_text_only() {
        let bios = [
            "=1+1", "+x", "-y", "@z", "\tq", "\rr", "safe", "a=b", "'quoted",
        ];
        let batch = leads_batch(-5, bios.len(), JOB, &bios);
        let mut out = Vec::new();
        encode_rows(&batch, &mut out).expect("encode");
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(out.as_slice());
        let schema = Table::Leads.schema();
        let bio = schema.index_of("bio").expect("bio");
        let id = schema.index_of("id").expect("id");
        let followers = schema.index_of("follower_count").expect("followers");
        let recs: Vec<csv::StringRecord> = r.records().map(|x| x.expect("record")).collect();
        let got: Vec<&str> = recs.iter().map(|x| &x[bio]).collect();
        assert_eq!(
            got,
            vec![
                "'=1+1", "'+x", "'-y", "'@z", "'\tq", "'\rr", "safe", "a=b", "'quoted"
            ]
        );
        // Negative numbers in numeric columns are numbers, not formulas.
        assert_eq!(&recs[0][id], "-5");
        assert_eq!(&recs[0][followers], "-50");
        assert_eq!(
            neutralise("-1"),
            "'-1",
            "text is text, even when it looks numeric"
        );
    }

    #[test]
    fn bom_on_request() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut d = CsvDest::open(tmp.path(), true).expect("open");
        d.write(Table::Leads, &leads_batch(1, 1, JOB, &[]))
            .expect("write");
        d.finish_job(&job(JOB)).expect("finish");
        let raw = std::fs::read(tmp.path().join("leads").join(format!("{JOB}.csv"))).expect("read");
        assert!(raw.starts_with(b"\xEF\xBB\xBFid,stream_id,"));
        assert_eq!(raw.windows(3).filter(|w| *w == BOM).count(), 1);
        let jobs =
            std::fs::read(tmp.path().join("export_jobs").join(format!("{JOB}.csv"))).expect("read");
        assert!(jobs.starts_with(BOM));
    }

    #[test]
    fn rollback_keeps_what_was_committed_and_drops_the_rest() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut d = CsvDest::open(tmp.path(), false).expect("open");
        // Nothing committed: rollback leaves no file at all.
        d.write(Table::Leads, &leads_batch(1, 2, JOB, &[]))
            .expect("write");
        d.write_rejects(&rejects_batch(1, JOB)).expect("rejects");
        d.rollback().expect("rollback");
        for t in Table::ALL {
            assert!(names(tmp.path(), t).is_empty(), "{t}");
        }
        // Committed rows survive a later rollback; the tail does not.
        d.write(Table::Leads, &leads_batch(10, 2, JOB, &[]))
            .expect("write");
        d.commit(true).expect("commit");
        d.write(Table::Leads, &leads_batch(20, 2, JOB, &[]))
            .expect("write");
        d.rollback().expect("rollback");
        assert!(visible(tmp.path(), Table::Leads).is_empty());
        d.write(Table::Leads, &leads_batch(30, 1, JOB, &[]))
            .expect("write");
        d.finish_job(&job(JOB)).expect("finish");
        let rows = read_csv(&tmp.path().join("leads").join(format!("{JOB}.csv")));
        let ids: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
        assert_eq!(ids, vec!["10", "11", "30"]);
    }

    #[test]
    fn recovery_truncates_the_uncommitted_tail_and_deletes_uncommitted_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            let mut d = CsvDest::open(tmp.path(), false).expect("open");
            let mut crashed = job(JOB);
            crashed.status = crate::job::JobStatus::Running;
            crashed.completed_at = None;
            d.state().save_job(&crashed).expect("ledger");
            d.write(Table::Leads, &leads_batch(1, 2, JOB, &[]))
                .expect("write");
            d.commit(true).expect("commit");
            // Uncommitted: a tail on the leads file, a whole rejects file.
            d.write(Table::Leads, &leads_batch(3, 2, JOB, &[]))
                .expect("write");
            d.write_rejects(&rejects_batch(1, JOB)).expect("rejects");
            // Half a record more, as a crash mid-write would leave.
            let p = d.open.values_mut().next().expect("open file");
            p.file.write_all(b"99,\"half").expect("tail");
            // The "crash": drop without commit or rollback.
        }
        assert!(visible(tmp.path(), Table::Leads).is_empty());
        let mut d = CsvDest::open(tmp.path(), false).expect("reopen");
        let rec = d.recover().expect("recover");
        assert_eq!(rec.published_files, 1);
        assert_eq!(rec.discarded_files, 1);
        assert_eq!(rec.interrupted_jobs, vec![JOB.to_string()]);
        assert_eq!(names(tmp.path(), Table::Leads), vec![format!("{JOB}.csv")]);
        assert!(names(tmp.path(), Table::Rejects).is_empty());
        let rows = read_csv(&tmp.path().join("leads").join(format!("{JOB}.csv")));
        let ids: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
        assert_eq!(ids, vec!["1", "2"]);
        let jobs = read_csv(&tmp.path().join("export_jobs").join(format!("{JOB}.csv")));
        assert_eq!(jobs[1][col(&jobs, "status")], "FAILED");
        assert_eq!(d.recover().expect("again"), Recovery::default());
    }

    #[test]
    fn a_failed_write_blocks_commits_until_rollback() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut d = CsvDest::open(tmp.path(), false).expect("open");
        d.write(Table::Leads, &leads_batch(1, 2, JOB, &[]))
            .expect("write");
        assert!(d.write(Table::Leads, &rejects_batch(1, JOB)).is_err());
        assert!(d.commit(true).is_err());
        assert!(d.finish_job(&job(JOB)).is_err());
        d.rollback().expect("rollback");
        assert!(names(tmp.path(), Table::Leads).is_empty());
        d.finish_job(&job(JOB)).expect("finish");
        assert!(visible(tmp.path(), Table::Leads).is_empty());
        assert_eq!(
            visible(tmp.path(), Table::ExportJobs),
            vec![format!("{JOB}.csv")]
        );
    }

    #[test]
    fn tombstone_rows_mark_deleted_ids() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut d = CsvDest::open(tmp.path(), false).expect("open");
        let key = crate::mapping::RowKey {
            id: 5,
            hash: 1,
            cursor_ms: Some(EXTRACTED_MS),
            stream_id: None,
            finished: true,
        };
        d.state()
            .upsert_seen(Table::Leads, &[key], "old")
            .expect("seen");
        d.commit(true).expect("commit");
        d.mark_deleted(Table::Leads, &[5], EXTRACTED_MS + 1_000, JOB)
            .expect("mark");
        d.finish_job(&job(JOB)).expect("finish");
        let rows = read_csv(&tmp.path().join("leads").join(format!("{JOB}.csv")));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1][col(&rows, "id")], "5");
        assert_eq!(
            rows[1][col(&rows, "discovered_at")],
            "2026-06-02T09:01:00.000Z"
        );
        assert_eq!(
            rows[1][col(&rows, "_deleted_at")],
            "2026-06-02T09:01:01.000Z"
        );
        assert_eq!(rows[1][col(&rows, "bio")], "");
    }
}
