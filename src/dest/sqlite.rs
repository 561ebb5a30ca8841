//! The SQLite destination: `leads` and `sync_runs` keyed by `id` (the latest version),
//! `export_jobs` and `rejects`, with the cursor and dedup state in hidden `_ctgo_*` tables of
//! the same file. Data, cursor and dedup state commit in one transaction, so `kill -9` at any
//! instant leaves either all of a batch or none of it.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use arrow_array::RecordBatch;
use rusqlite::types::Value;

use super::{DestError, DestLock, Destination, Recovery, StateStore, cell};
use crate::job::JobRecord;
use crate::schema::Table;

/// Rows staged before a commit when the job does not ask for one sooner. 1: every page is its
/// own transaction (a WAL commit costs one fsync; at 500 leads a page that is cheap, and it
/// keeps what a crash can cost to one page).
pub const DEFAULT_COMMIT_ROWS: usize = 1;

pub struct SqliteDest {
    path: PathBuf,
    store: StateStore,
    staged_rows: usize,
    commit_rows: usize,
    _lock: DestLock,
}

/// The lock file of the database `path`: named after the file itself, not the name given for
/// it, so that two names of one database (a symlink) take one lock.
pub fn lock_path(path: &Path) -> PathBuf {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    PathBuf::from(format!("{}.lock", real.display()))
}

/// The tables (and views) of an existing database that no job of ours wrote (it holds some,
/// none of them our state's), listed for the message; `None` for a new, empty or exported database.
/// Writing into it would add our tables beside another application's, and fail on its own
/// `leads` only after spending requests.
fn foreign_tables(path: &Path) -> Option<String> {
    use rusqlite::OpenFlags;
    if !super::has_sqlite_header(path) {
        return None;
    }
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .ok()?;
    if names.is_empty() || names.iter().any(|n| n.starts_with("_ctgo_")) {
        return None;
    }
    let shown: Vec<String> = names.iter().take(5).map(|n| format!("`{n}`")).collect();
    let more = names.len().saturating_sub(shown.len());
    Some(if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    })
}

impl SqliteDest {
    pub fn open(path: &Path) -> Result<SqliteDest, DestError> {
        // A file of something else (an empty one is a new database).
        if path.metadata().is_ok_and(|m| m.is_file() && m.len() > 0)
            && !super::has_sqlite_header(path)
        {
            return Err(DestError::Mismatch {
                dest: format!("sqlite:{}", path.display()),
                reason: "it is a file but not an SQLite database: give a new path, or the \
                         database a previous job wrote"
                    .into(),
            });
        }
        if path.is_dir() {
            return Err(DestError::Mismatch {
                dest: format!("sqlite:{}", path.display()),
                reason: format!(
                    "it is a directory, not a file{}",
                    super::kind_hint(&path.join(super::STATE_FILE))
                ),
            });
        }
        // A device, pipe or socket (`/dev/full`, say): SQLite would put its lock and journal
        // beside it.
        if path.metadata().is_ok_and(|m| !m.is_file()) {
            return Err(DestError::Mismatch {
                dest: format!("sqlite:{}", path.display()),
                reason: "it is not a regular file (a device, pipe or socket): give the path \
                         of a database file"
                    .into(),
            });
        }
        if let Some(theirs) = foreign_tables(path) {
            return Err(DestError::Mismatch {
                dest: format!("sqlite:{}", path.display()),
                reason: format!(
                    "it is the database of something else (tables {theirs}, and no export \
                     state): give a new path, or the database a previous job wrote"
                ),
            });
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if parent.exists() && !parent.is_dir() {
                return Err(DestError::Mismatch {
                    dest: format!("sqlite:{}", path.display()),
                    reason: format!("{} is a file, not a directory", parent.display()),
                });
            }
            std::fs::create_dir_all(parent)
                .map_err(DestError::io(format!("creating {}", parent.display())))?;
        }
        let dest = format!("sqlite:{}", path.display());
        let lock = DestLock::acquire(&lock_path(path), &dest)?;
        let mut store = StateStore::open(path)
            .map_err(DestError::sql(format!("opening {}", path.display())))?;
        store
            .claim_kind("sqlite")
            .map_err(DestError::kind(&dest, path))?;
        for (table, key) in [
            (Table::Leads, Some("id")),
            (Table::SyncRuns, Some("id")),
            (Table::Rejects, None),
        ] {
            store
                .create_table(table, key)
                .map_err(DestError::sql(format!("creating table {}", table.name())))?;
        }
        Ok(SqliteDest {
            path: path.to_path_buf(),
            store,
            staged_rows: 0,
            commit_rows: DEFAULT_COMMIT_ROWS,
            _lock: lock,
        })
    }

    fn insert_rows(
        &mut self,
        table: Table,
        rows: &RecordBatch,
        upsert: bool,
    ) -> rusqlite::Result<()> {
        self.store.begin()?;
        let schema = rows.schema();
        let names: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| format!("\"{}\"", f.name()))
            .collect();
        let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        let mut sql = format!(
            "INSERT INTO \"{}\"({}) VALUES ({})",
            table.name(),
            names.join(", "),
            marks.join(", ")
        );
        if upsert {
            let sets: Vec<String> = names
                .iter()
                .filter(|n| n.as_str() != "\"id\"")
                .map(|n| format!("{n} = excluded.{n}"))
                .collect();
            sql.push_str(&format!(
                " ON CONFLICT(id) DO UPDATE SET {}",
                sets.join(", ")
            ));
        }
        let conn = self.store.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let cols = rows.columns();
        // Insert in ascending id order: newest-first pages would otherwise split B-tree pages
        // on every insert (twice the file size, a third more time).
        let mut order: Vec<usize> = (0..rows.num_rows()).collect();
        if upsert
            && let Some(ids) = rows
                .column_by_name("id")
                .and_then(|c| c.as_any().downcast_ref::<arrow_array::Int64Array>())
        {
            order.sort_by_key(|&i| ids.value(i));
        }
        for i in order {
            let cells: Vec<_> = cols.iter().map(|c| cell(c, i)).collect();
            stmt.execute(rusqlite::params_from_iter(cells.iter()))?;
        }
        Ok(())
    }
}

impl Destination for SqliteDest {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn state(&mut self) -> &mut StateStore {
        &mut self.store
    }

    fn recover(&mut self) -> Result<Recovery, DestError> {
        // SQLite's own journal already discarded any half-done transaction.
        let interrupted_jobs = super::fail_interrupted_jobs(&mut self.store)?;
        Ok(Recovery {
            interrupted_jobs,
            ..Recovery::default()
        })
    }

    fn write(&mut self, table: Table, rows: &RecordBatch) -> Result<(), DestError> {
        if rows.num_rows() == 0 {
            return Ok(());
        }
        self.insert_rows(table, rows, true)
            .map_err(DestError::sql(format!("writing {}", table.name())))?;
        self.staged_rows += rows.num_rows();
        crate::fault::point("sqlite.write.after");
        Ok(())
    }

    fn write_rejects(&mut self, rows: &RecordBatch) -> Result<(), DestError> {
        if rows.num_rows() == 0 {
            return Ok(());
        }
        self.insert_rows(Table::Rejects, rows, false)
            .map_err(DestError::sql("writing rejects"))?;
        self.staged_rows += rows.num_rows();
        Ok(())
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
        self.store.begin().map_err(DestError::sql("begin"))?;
        let list: Rc<Vec<Value>> = Rc::new(ids.iter().map(|i| Value::Integer(*i)).collect());
        self.store
            .conn()
            .execute(
                &format!(
                    "UPDATE \"{}\" SET _deleted_at = ?1, _job_id = ?2 WHERE id IN rarray(?3)",
                    table.name()
                ),
                rusqlite::params![super::format_ms(deleted_at_ms), job_id, list],
            )
            .map_err(DestError::sql(format!("marking deleted {}", table.name())))?;
        self.staged_rows += ids.len();
        Ok(())
    }

    fn commit(&mut self, force: bool) -> Result<bool, DestError> {
        if !self.store.in_transaction() || (!force && self.staged_rows < self.commit_rows) {
            return Ok(false);
        }
        self.store.commit().map_err(DestError::sql("commit"))?;
        self.staged_rows = 0;
        Ok(true)
    }

    fn rollback(&mut self) -> Result<(), DestError> {
        self.staged_rows = 0;
        self.store.rollback().map_err(DestError::sql("rollback"))
    }

    fn finish_job(&mut self, job: &JobRecord) -> Result<(), DestError> {
        self.store
            .save_job(job)
            .map_err(DestError::sql("recording the job"))?;
        self.store.commit().map_err(DestError::sql("commit"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_names_of_one_database_take_one_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("leads.db");
        let first = SqliteDest::open(&path).expect("open");
        let link = dir.path().join("other-name.db");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        match SqliteDest::open(&link) {
            Err(DestError::Busy { .. }) => {}
            Err(e) => panic!("refused for the wrong reason: {e}"),
            Ok(_) => panic!("a second name of the same database took a second lock"),
        }
        drop(first);
        SqliteDest::open(&link).expect("free again once the first is closed");
    }
}
