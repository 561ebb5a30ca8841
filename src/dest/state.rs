//! The state store: cursor, dedup state and job ledger, in SQLite beside the data.
//!
//! For the SQLite destination this is the destination file itself, so data, cursor and dedup
//! state commit in one transaction. For the file destinations it is a hidden SQLite file inside
//! the output directory (`.ctgo-state.db`) that also records which data files a commit
//! published, so that a crash between writing a file and committing is repaired on the next start.
//!
//! Staging model: every change goes into one open transaction (`BEGIN IMMEDIATE`, opened on the
//! first change); [`StateStore::commit`] makes all of it durable at once (WAL,
//! `synchronous=FULL`), [`StateStore::rollback`] discards all of it. Lookups see staged
//! changes, so dedup works across the pages of one uncommitted batch.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::rc::Rc;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use crate::job::{JobRecord, JobStatus, TableCounts, format_ts, parse_ts};
use crate::mapping::RowKey;
use crate::schema::Table;

/// Bumped when the layout of the hidden tables changes.
pub const STATE_VERSION: i64 = 2;

/// How a store relates to the API a job reads ([`StateStore::source_binding`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Binding {
    /// No API recorded yet: a new store, or one from before the binding was recorded.
    Unbound,
    Same,
    /// The same API, but a move to it has not finished: only a full refresh may run.
    Unfinished,
    /// Another API, by its base URL.
    Other(String),
}

/// Why a store cannot serve a destination of the kind asked for.
#[derive(Debug, thiserror::Error)]
pub enum KindError {
    #[error("it holds the state of a {0} destination")]
    Other(String),
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

/// `path` for an SQLite `file:` URI: the characters that URIs give a meaning escaped.
fn uri_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' | '?' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// What the store knows about one id of one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub hash: u128,
    pub finished: bool,
    pub deleted: bool,
}

/// How a mapped row compares with what was committed before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Insert,
    Update,
    Unchanged,
}

impl Seen {
    pub fn change_for(seen: Option<&Seen>, hash: u128) -> Change {
        match seen {
            None => Change::Insert,
            Some(s) if s.hash != hash || s.deleted => Change::Update,
            Some(_) => Change::Unchanged,
        }
    }
}

/// A data file recorded by a commit (file destinations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub table: String,
    pub staged: String,
    pub final_name: String,
    pub job_id: String,
    pub rows: u64,
    pub bytes: u64,
}

pub struct StateStore {
    conn: Connection,
    in_tx: bool,
    /// Per table code: the lowest and highest id in the dedup state (`None`: no rows), once
    /// read; widened by every upsert, forgotten on rollback. Ids outside these bounds need no
    /// lookup: a first export, and the new leads of every later one, skip the query.
    id_bounds: RefCell<HashMap<i64, Option<(i64, i64)>>>,
    /// The order of ids in `_ctgo_seen`'s B-tree (`true`: descending), once read; and whether
    /// this connection has settled it (see [`StateStore::seen_order`]).
    seen_desc: Option<bool>,
    seen_settled: bool,
}

/// Rows the dedup state may hold and still be rebuilt in the other id order (copying them
/// takes milliseconds; see [`StateStore::seen_order`]).
const REORDER_MAX_ROWS: i64 = 10_000;

/// Rows per statement of [`StateStore::upsert_seen`] (7 parameters each).
const UPSERT_CHUNK: usize = 64;

/// The columns of `_ctgo_seen`, in the order of [`seen_table_sql`].
const SEEN_COLUMNS: &str = "tbl, id, hash, stream_id, cursor_ms, finished, deleted, last_job";

/// `INSERT … VALUES (…), (…), … ON CONFLICT DO UPDATE` for `rows` rows. SQLite applies the
/// rows in order, so of an id given twice the later version stays, as with one row each.
fn upsert_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO _ctgo_seen({SEEN_COLUMNS}) VALUES ");
    for r in 0..rows {
        let p = r * 7;
        if r > 0 {
            sql.push(',');
        }
        let _ = write!(
            sql,
            "(?{},?{},?{},?{},?{},?{},0,?{})",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6,
            p + 7
        );
    }
    sql.push_str(
        " ON CONFLICT(tbl, id) DO UPDATE SET hash = excluded.hash,
             stream_id = excluded.stream_id, cursor_ms = excluded.cursor_ms,
             finished = excluded.finished, deleted = 0, last_job = excluded.last_job",
    );
    sql
}

/// The dedup state's table: one row per id of each table. Its ids are in ascending or, when
/// `desc`, descending order in the B-tree (see [`StateStore::seen_order`]).
fn seen_table_sql(name: &str, desc: bool) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {name}(
             tbl INTEGER NOT NULL, id INTEGER NOT NULL, hash BLOB NOT NULL,
             stream_id INTEGER, cursor_ms INTEGER, finished INTEGER NOT NULL,
             deleted INTEGER NOT NULL DEFAULT 0, last_job INTEGER NOT NULL,
             PRIMARY KEY(tbl, id{})) WITHOUT ROWID",
        if desc { " DESC" } else { "" }
    )
}

/// The dedup state's compact code of a table (an integer key is smaller than its name).
fn tbl_code(table: Table) -> i64 {
    match table {
        Table::Leads => 1,
        Table::SyncRuns => 2,
        Table::ExportJobs => 3,
        Table::Rejects => 4,
    }
}

fn hash_bytes(h: u128) -> [u8; 16] {
    h.to_be_bytes()
}

fn hash_from(v: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = v.len().min(16);
    b[..n].copy_from_slice(&v[..n]);
    u128::from_be_bytes(b)
}

impl StateStore {
    fn with(conn: Connection) -> StateStore {
        StateStore {
            conn,
            in_tx: false,
            id_bounds: RefCell::new(HashMap::new()),
            seen_desc: None,
            seen_settled: false,
        }
    }

    /// Open (creating if needed) the store in `path`.
    pub fn open(path: &Path) -> rusqlite::Result<StateStore> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// Limit SQLite's page cache to `kib` KiB (its default is 2 MiB). A store that holds only
    /// dedup state works on a few pages at a time (ids of one page, sorted), so a small cache
    /// costs nothing and keeps memory flat however large the state grows.
    pub fn limit_cache_kib(&self, kib: u32) -> rusqlite::Result<()> {
        self.conn.pragma_update(None, "cache_size", -i64::from(kib))
    }

    /// Open an existing store read-only (for `jobs` while a job may be running).
    ///
    /// A store in WAL mode needs its `-shm` file even to be read. Where that cannot be created
    /// (a directory the user may only read, and no job running to have made it), the store
    /// is opened as immutable instead: nothing can be writing it then.
    pub fn open_read_only(path: &Path) -> rusqlite::Result<StateStore> {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let probe =
            |c: &Connection| c.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()));
        match probe(&conn) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_READONLY_DIRECTORY
                    || e.code == rusqlite::ErrorCode::CannotOpen =>
            {
                drop(conn);
                let uri = format!("file:{}?immutable=1", uri_path(path));
                let conn = Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)?;
                probe(&conn)?;
                Ok(StateStore::with(conn))
            }
            Err(e) => Err(e),
            Ok(()) => Ok(StateStore::with(conn)),
        }
    }

    /// A value of the store's own facts (`_ctgo_meta`: layout version, kind, API).
    fn meta(&self, key: &str) -> rusqlite::Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM _ctgo_meta WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
    }

    /// Set a value of [`Self::meta`] (in the open transaction, if any).
    fn set_meta(&self, key: &str, value: &str) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO _ctgo_meta(key, value) VALUES (?1, ?2)",
            [key, value],
        )?;
        Ok(())
    }

    /// The `source_connection_id` of this destination and `source`: the one recorded by the
    /// first job that read `source` here, so that it does not change with how the path is
    /// spelled (a symlink, `..`) or where it is mounted later. A store from before it was
    /// recorded keeps the id of its latest job, when that job read `source` too; otherwise
    /// (a new destination, or one moving to another API) `computed` is recorded.
    pub fn connection_id(&self, source: &str, computed: &str) -> rusqlite::Result<String> {
        if self.meta("connection_source")?.as_deref() == Some(source)
            && let Some(id) = self.meta("connection_id")?
        {
            return Ok(id);
        }
        let id = match self.bound_source()? {
            Some(bound) if bound == source => self
                .conn
                .query_row(
                    "SELECT source_connection_id FROM export_jobs ORDER BY rowid DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or_else(|| computed.to_string()),
            _ => computed.to_string(),
        };
        self.set_meta("connection_source", source)?;
        self.set_meta("connection_id", &id)?;
        Ok(id)
    }

    /// Which API (`source`, the base URL) the store holds an export of. Cursors and dedup
    /// state of one API would make an export of another skip leads (its cursor) and mark the
    /// first API's leads deleted (a full refresh).
    pub fn source_binding(&self, source: &str) -> rusqlite::Result<Binding> {
        Ok(match self.bound_source()? {
            None => Binding::Unbound,
            Some(b) if b != source => Binding::Other(b),
            Some(_) if self.meta("move_pending")?.is_some() => Binding::Unfinished,
            Some(_) => Binding::Same,
        })
    }

    /// The API the store holds an export of, if one is recorded.
    pub fn bound_source(&self) -> rusqlite::Result<Option<String>> {
        self.meta("source")
    }

    /// Stage `source` as the store's API (a store that had none), with the first page a job
    /// commits: a job that reads nothing (a mistyped URL) must not bind it.
    pub fn stage_bind(&mut self, source: &str) -> rusqlite::Result<()> {
        self.begin()?;
        self.set_meta("source", source)
    }

    /// Stage the start of a move to another API, with the first page the moving full refresh
    /// commits: the store is bound to `source`, every cursor that job `job_id` did not set
    /// (the old API's) is forgotten, and the move stays unfinished until
    /// [`Self::stage_move_done`] commits with the end of a full refresh.
    pub fn stage_move(&mut self, source: &str, job_id: &str) -> rusqlite::Result<()> {
        self.begin()?;
        self.conn
            .execute("DELETE FROM _ctgo_cursor WHERE job_id <> ?1", [job_id])?;
        self.set_meta("source", source)?;
        self.set_meta("move_pending", "1")
    }

    /// Stage the end of a move: a full refresh read all of the new API.
    pub fn stage_move_done(&mut self) -> rusqlite::Result<()> {
        self.begin()?;
        self.conn
            .execute("DELETE FROM _ctgo_meta WHERE key = 'move_pending'", [])?;
        Ok(())
    }

    /// Which kind of destination (`sqlite`, `parquet`, `csv`) this store belongs to, recorded
    /// by the first job; `None` for a store from before the kind was recorded.
    pub fn dest_kind(&self) -> rusqlite::Result<Option<String>> {
        self.meta("dest_kind")
    }

    /// Record `kind` as this store's destination kind, or refuse if it belongs to another
    /// kind: a `csv:DIR` job on a Parquet directory would share its dedup state and never
    /// write the leads the Parquet files already hold.
    pub fn claim_kind(&self, kind: &str) -> Result<(), KindError> {
        let known = match self.dest_kind()? {
            Some(k) => k,
            // A store from before the kind was recorded: told by what it holds, or new.
            None => {
                let k = self.legacy_kind()?.unwrap_or(kind).to_string();
                self.set_meta("dest_kind", &k)?;
                k
            }
        };
        if known == kind {
            Ok(())
        } else {
            Err(KindError::Other(known))
        }
    }

    /// The kind of a store written before kinds were recorded: an SQLite destination keeps
    /// its `leads` table in it; a files destination records its files (every job wrote at
    /// least its `export_jobs` file), by extension. `None` for a store that holds neither.
    fn legacy_kind(&self) -> rusqlite::Result<Option<&'static str>> {
        let sqlite: bool = self.conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'leads'",
            [],
            |r| r.get(0),
        )?;
        if sqlite {
            return Ok(Some("sqlite"));
        }
        let file: Option<String> = self
            .conn
            .query_row("SELECT final FROM _ctgo_files LIMIT 1", [], |r| r.get(0))
            .optional()?;
        Ok(file.and_then(|f| {
            if f.ends_with(".parquet") {
                Some("parquet")
            } else if f.ends_with(".csv") {
                Some("csv")
            } else {
                None
            }
        }))
    }

    fn init(conn: Connection) -> rusqlite::Result<StateStore> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        rusqlite::vtab::array::load_module(&conn)?;
        // One transaction for the whole layout: one commit (and fsync) instead of one each.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS _ctgo_meta(
                 key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS _ctgo_cursor(
                 scope TEXT PRIMARY KEY, cursor_ms INTEGER NOT NULL,
                 job_id TEXT NOT NULL, updated_at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS _ctgo_reject_seen(
                 hash BLOB PRIMARY KEY) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS _ctgo_files(
                 tbl TEXT NOT NULL, staged TEXT NOT NULL, final TEXT NOT NULL PRIMARY KEY,
                 job_id TEXT NOT NULL, rows INTEGER NOT NULL, bytes INTEGER NOT NULL DEFAULT 0,
                 published INTEGER NOT NULL DEFAULT 0);",
        )?;
        conn.execute_batch(&seen_table_sql("_ctgo_seen", false))?;
        conn.execute(
            "INSERT OR IGNORE INTO _ctgo_meta(key, value) VALUES ('state_version', ?1)",
            [STATE_VERSION.to_string()],
        )?;
        // State of another layout would be misread (every id unseen: every lead again), so it
        // is refused, never used.
        let version: String = conn.query_row(
            "SELECT value FROM _ctgo_meta WHERE key = 'state_version'",
            [],
            |r| r.get(0),
        )?;
        if version != STATE_VERSION.to_string() {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
                Some(format!(
                    "this destination's state was written by another version of ctgo-export \
                     (state layout {version}; this version reads layout {STATE_VERSION}): export \
                     into a new destination, or use the version that wrote it"
                )),
            ));
        }
        let mut store = StateStore::with(conn);
        store.create_table(Table::ExportJobs, Some("id"))?;
        store.conn.execute_batch("COMMIT")?;
        Ok(store)
    }

    /// The connection, for destinations that keep their data in the same file.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Create `table` from its Arrow schema if missing. `key` becomes the primary key.
    pub fn create_table(&mut self, table: Table, key: Option<&str>) -> rusqlite::Result<()> {
        let schema = table.schema();
        let cols: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| {
                let ty = super::sqlite_type(f.data_type());
                let pk = if Some(f.name().as_str()) == key {
                    " PRIMARY KEY"
                } else {
                    ""
                };
                let nn = if !f.is_nullable() && pk.is_empty() {
                    " NOT NULL"
                } else {
                    ""
                };
                format!("\"{}\" {ty}{pk}{nn}", f.name())
            })
            .collect();
        self.conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS \"{}\"({})",
            table.name(),
            cols.join(", ")
        ))
    }

    /// Open the staging transaction if it is not open yet.
    pub fn begin(&mut self) -> rusqlite::Result<()> {
        if !self.in_tx {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.in_tx = true;
        }
        Ok(())
    }

    pub fn in_transaction(&self) -> bool {
        self.in_tx
    }

    /// Make every staged change durable.
    pub fn commit(&mut self) -> rusqlite::Result<()> {
        if self.in_tx {
            crate::fault::point("state.commit.before");
            self.conn.execute_batch("COMMIT")?;
            self.in_tx = false;
            crate::fault::point("state.commit.after");
        }
        Ok(())
    }

    /// Discard every staged change.
    pub fn rollback(&mut self) -> rusqlite::Result<()> {
        // Staged rows widened the bounds; wider than the truth is only slower, but be exact.
        self.id_bounds.borrow_mut().clear();
        // A staged change of the state's order is undone too.
        self.seen_desc = None;
        self.seen_settled = false;
        // Some errors (a full disk, an I/O error) make SQLite roll the transaction back by
        // itself; a ROLLBACK then would only fail.
        if std::mem::take(&mut self.in_tx) && !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }

    // ---- cursor -------------------------------------------------------------------------

    pub fn cursor(&self, scope: &str) -> rusqlite::Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT cursor_ms FROM _ctgo_cursor WHERE scope = ?1",
                [scope],
                |r| r.get(0),
            )
            .optional()
    }

    pub fn set_cursor(
        &mut self,
        scope: &str,
        cursor_ms: i64,
        job_id: &str,
    ) -> rusqlite::Result<()> {
        self.begin()?;
        self.conn.execute(
            "INSERT INTO _ctgo_cursor(scope, cursor_ms, job_id, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(scope) DO UPDATE SET cursor_ms = excluded.cursor_ms,
                 job_id = excluded.job_id, updated_at = excluded.updated_at",
            params![scope, cursor_ms, job_id, format_ts(&chrono::Utc::now())],
        )?;
        Ok(())
    }

    /// Remove `scope`'s cursor (staged, like every change).
    pub fn clear_cursor(&mut self, scope: &str) -> rusqlite::Result<()> {
        self.begin()?;
        self.conn
            .execute("DELETE FROM _ctgo_cursor WHERE scope = ?1", [scope])?;
        Ok(())
    }

    // ---- dedup state --------------------------------------------------------------------

    /// What was committed (or staged) for these ids.
    pub fn lookup(&self, table: Table, ids: &[i64]) -> rusqlite::Result<HashMap<i64, Seen>> {
        let mut out = HashMap::with_capacity(ids.len());
        let Some((lo, hi)) = self.id_bounds(table)? else {
            return Ok(out);
        };
        let list: Vec<Value> = ids
            .iter()
            .filter(|&&i| (lo..=hi).contains(&i))
            .map(|i| Value::Integer(*i))
            .collect();
        if list.is_empty() {
            return Ok(out);
        }
        let list = Rc::new(list);
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, hash, finished, deleted FROM _ctgo_seen
             WHERE tbl = ?1 AND id IN rarray(?2)",
        )?;
        let rows = stmt.query_map(params![tbl_code(table), list], |r| {
            let hash: Vec<u8> = r.get(1)?;
            Ok((
                r.get::<_, i64>(0)?,
                Seen {
                    hash: hash_from(&hash),
                    finished: r.get::<_, i64>(2)? != 0,
                    deleted: r.get::<_, i64>(3)? != 0,
                },
            ))
        })?;
        for row in rows {
            let (id, seen) = row?;
            out.insert(id, seen);
        }
        Ok(out)
    }

    /// The lowest and highest id of `table` in the dedup state, staged rows included.
    fn id_bounds(&self, table: Table) -> rusqlite::Result<Option<(i64, i64)>> {
        let code = tbl_code(table);
        if let Some(b) = self.id_bounds.borrow().get(&code) {
            return Ok(*b);
        }
        // Two subqueries: SQLite reads a lone min() or max() off the index in a few page
        // reads, but both in one SELECT scan the whole table (75 ms at 1M leads).
        let b: Option<(i64, i64)> = self.conn.query_row(
            "SELECT (SELECT min(id) FROM _ctgo_seen WHERE tbl = ?1),
                    (SELECT max(id) FROM _ctgo_seen WHERE tbl = ?1)",
            [code],
            |r| Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?)),
        )?;
        self.id_bounds.borrow_mut().insert(code, b);
        Ok(b)
    }

    /// Record these rows as the committed version (staged until commit).
    pub fn upsert_seen(
        &mut self,
        table: Table,
        keys: &[RowKey],
        job_id: &str,
    ) -> rusqlite::Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.begin()?;
        let job = self.job_no(job_id)?;
        // Rows in the B-tree's order: each page's rows then go in one after the other, at the
        // edge of the tree when pages arrive in that order too. Stable sorts: of an id given
        // twice, the later version stays later.
        let mut order: Vec<&RowKey> = keys.iter().collect();
        if self.seen_order(table, keys)? {
            order.sort_by_key(|k| std::cmp::Reverse(k.id));
        } else {
            order.sort_by_key(|k| k.id);
        }
        let code = tbl_code(table);
        if let Some(b) = self.id_bounds.get_mut().get_mut(&code) {
            let (first, last) = (order[0].id, order[order.len() - 1].id);
            let (lo, hi) = (first.min(last), first.max(last));
            *b = Some(b.map_or((lo, hi), |(l, h)| (l.min(lo), h.max(hi))));
        }
        // Many rows per statement: the per-statement work (bind, step, reset) is then paid
        // once per chunk instead of once per row.
        for chunk in order.chunks(UPSERT_CHUNK) {
            // The statement cache is keyed by the SQL text: build the full chunk's text once.
            static FULL_CHUNK: std::sync::LazyLock<String> =
                std::sync::LazyLock::new(|| upsert_sql(UPSERT_CHUNK));
            let sql = if chunk.len() == UPSERT_CHUNK {
                std::borrow::Cow::Borrowed(FULL_CHUNK.as_str())
            } else {
                std::borrow::Cow::Owned(upsert_sql(chunk.len()))
            };
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut i = 1;
            for k in chunk {
                stmt.raw_bind_parameter(i, code)?;
                stmt.raw_bind_parameter(i + 1, k.id)?;
                stmt.raw_bind_parameter(i + 2, &hash_bytes(k.hash)[..])?;
                stmt.raw_bind_parameter(i + 3, k.stream_id)?;
                stmt.raw_bind_parameter(i + 4, k.cursor_ms)?;
                stmt.raw_bind_parameter(i + 5, k.finished as i64)?;
                stmt.raw_bind_parameter(i + 6, job)?;
                i += 7;
            }
            stmt.raw_execute()?;
        }
        Ok(())
    }

    /// Whether `_ctgo_seen` keeps ids in descending order. A new store follows the first
    /// leads page of a job that shows an order: an API that pages newest first (descending
    /// ids) gets a descending tree, so every page's rows append at the tree's edge instead of
    /// going in below all the ids already there, where SQLite splits and rebalances pages all
    /// the time (200k leads into Parquet: 10 % less wall time). A store that holds more than
    /// [`REORDER_MAX_ROWS`] rows keeps its order; either order reads and writes the same rows.
    fn seen_order(&mut self, table: Table, keys: &[RowKey]) -> rusqlite::Result<bool> {
        let desc = match self.seen_desc {
            Some(d) => d,
            None => {
                let sql: String = self.conn.query_row(
                    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = '_ctgo_seen'",
                    [],
                    |r| r.get(0),
                )?;
                *self.seen_desc.insert(sql.contains("id DESC"))
            }
        };
        if self.seen_settled || table != Table::Leads {
            return Ok(desc);
        }
        // The page's order: three steps in four one way (late arrivals and updates break a
        // newest-first page's order here and there); otherwise, or with one id, none yet.
        let (mut down, mut up) = (0usize, 0usize);
        for w in keys.windows(2) {
            match w[0].id.cmp(&w[1].id) {
                std::cmp::Ordering::Greater => down += 1,
                std::cmp::Ordering::Less => up += 1,
                std::cmp::Ordering::Equal => {}
            }
        }
        let steps = down + up;
        let want = if steps > 0 && 4 * down >= 3 * steps {
            true
        } else if steps > 0 && 4 * up >= 3 * steps {
            false
        } else {
            return Ok(desc);
        };
        self.seen_settled = true;
        if want == desc {
            return Ok(desc);
        }
        let rows: i64 = self.conn.query_row(
            "SELECT count(*) FROM (SELECT 1 FROM _ctgo_seen LIMIT ?1)",
            [REORDER_MAX_ROWS + 1],
            |r| r.get(0),
        )?;
        if rows > REORDER_MAX_ROWS {
            return Ok(desc);
        }
        // Rebuild the table in the other order, with the rows it holds, in the staging
        // transaction (a rollback undoes it).
        self.conn.execute_batch(&format!(
            "{};
             INSERT INTO _ctgo_seen_new({SEEN_COLUMNS}) SELECT {SEEN_COLUMNS} FROM _ctgo_seen;
             DROP TABLE _ctgo_seen;
             ALTER TABLE _ctgo_seen_new RENAME TO _ctgo_seen;",
            seen_table_sql("_ctgo_seen_new", want),
        ))?;
        self.seen_desc = Some(want);
        Ok(want)
    }

    /// The ledger's row number of a job: the dedup state records it instead of the 36-byte id.
    fn job_no(&self, job_id: &str) -> rusqlite::Result<i64> {
        self.conn
            .prepare_cached("SELECT rowid FROM export_jobs WHERE id = ?1")?
            .query_row([job_id], |r| r.get(0))
            .optional()
            .map(|n| n.unwrap_or(-1))
    }

    /// Note that these ids were seen, unchanged, by this job (full refresh needs it to tell
    /// which ids the API no longer returns).
    pub fn touch_seen(&mut self, table: Table, ids: &[i64], job_id: &str) -> rusqlite::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.begin()?;
        let job = self.job_no(job_id)?;
        let list: Rc<Vec<Value>> = Rc::new(ids.iter().map(|i| Value::Integer(*i)).collect());
        self.conn.execute(
            "UPDATE _ctgo_seen SET last_job = ?3 WHERE tbl = ?1 AND id IN rarray(?2)",
            params![tbl_code(table), list, job],
        )?;
        Ok(())
    }

    /// Ids of `table` not seen by `job_id`, not yet marked deleted, within `streams` (all when
    /// empty), and with a cursor field (`discoveredAt`) not before `from_ms` when given.
    pub fn unseen_ids(
        &self,
        table: Table,
        job_id: &str,
        streams: &[i64],
        from_ms: Option<i64>,
    ) -> rusqlite::Result<Vec<i64>> {
        let list: Rc<Vec<Value>> = Rc::new(streams.iter().map(|i| Value::Integer(*i)).collect());
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM _ctgo_seen WHERE tbl = ?1 AND last_job <> ?2 AND deleted = 0
               AND (?3 = 0 OR stream_id IN rarray(?4))
               AND (?5 IS NULL OR cursor_ms >= ?5) ORDER BY id",
        )?;
        let rows = stmt.query_map(
            params![
                tbl_code(table),
                self.job_no(job_id)?,
                streams.len() as i64,
                list,
                from_ms
            ],
            |r| r.get(0),
        )?;
        rows.collect()
    }

    pub fn mark_seen_deleted(
        &mut self,
        table: Table,
        ids: &[i64],
        job_id: &str,
    ) -> rusqlite::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.begin()?;
        let job = self.job_no(job_id)?;
        let list: Rc<Vec<Value>> = Rc::new(ids.iter().map(|i| Value::Integer(*i)).collect());
        self.conn.execute(
            "UPDATE _ctgo_seen SET deleted = 1, last_job = ?3 WHERE tbl = ?1 AND id IN rarray(?2)",
            params![tbl_code(table), list, job],
        )?;
        Ok(())
    }

    /// Runs that were not finished when last extracted, triggered at most `max_age_ms` before
    /// the newest run known, or before `now_ms` if that is earlier (a run dated in the future
    /// must not age out the others). A run without `triggeredAt` is not waited for.
    pub fn unfinished_runs(&self, max_age_ms: i64, now_ms: i64) -> rusqlite::Result<Vec<i64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM _ctgo_seen
             WHERE tbl = ?1 AND finished = 0 AND deleted = 0
               AND cursor_ms >= min((SELECT max(cursor_ms) FROM _ctgo_seen WHERE tbl = ?1), ?3)
                                - ?2",
        )?;
        let rows = stmt.query_map(
            params![tbl_code(Table::SyncRuns), max_age_ms, now_ms],
            |r| r.get(0),
        )?;
        rows.collect()
    }

    /// True the first time a reject with this content hash is recorded (so a malformed record
    /// that stays in the lookback window is counted once, not on every run).
    pub fn first_reject(&mut self, hash: u128) -> rusqlite::Result<bool> {
        self.begin()?;
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO _ctgo_reject_seen(hash) VALUES (?1)",
            [&hash_bytes(hash)[..]],
        )?;
        Ok(n == 1)
    }

    // ---- staged files (file destinations) ------------------------------------------------

    /// Stage the record of a data file: once committed, `staged` (a hidden name, already
    /// written and fsynced, `bytes` long) belongs to the destination and must end up at
    /// `final_name`. Recording the same `final_name` again updates it (a file that grows
    /// commit by commit, as the CSV destination's per-job files do).
    pub fn record_file(
        &mut self,
        table: &str,
        staged: &str,
        final_name: &str,
        job_id: &str,
        rows: u64,
        bytes: u64,
    ) -> rusqlite::Result<()> {
        self.begin()?;
        self.conn.execute(
            "INSERT INTO _ctgo_files(tbl, staged, final, job_id, rows, bytes, published)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
             ON CONFLICT(final) DO UPDATE SET staged = excluded.staged, rows = excluded.rows,
                 bytes = excluded.bytes, published = 0",
            params![table, staged, final_name, job_id, rows as i64, bytes as i64],
        )?;
        Ok(())
    }

    /// Files committed but not yet known to be in place.
    pub fn unpublished_files(&self) -> rusqlite::Result<Vec<FileRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT tbl, staged, final, job_id, rows, bytes FROM _ctgo_files WHERE published = 0",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(FileRecord {
                table: r.get(0)?,
                staged: r.get(1)?,
                final_name: r.get(2)?,
                job_id: r.get(3)?,
                rows: r.get::<_, i64>(4)? as u64,
                bytes: r.get::<_, i64>(5)? as u64,
            })
        })?;
        rows.collect()
    }

    /// The latest cursor value (`discoveredAt` / `triggeredAt`, ms) recorded for these ids.
    pub fn seen_cursors(
        &self,
        table: Table,
        ids: &[i64],
    ) -> rusqlite::Result<HashMap<i64, Option<i64>>> {
        let list: Rc<Vec<Value>> = Rc::new(ids.iter().map(|i| Value::Integer(*i)).collect());
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, cursor_ms FROM _ctgo_seen WHERE tbl = ?1 AND id IN rarray(?2)",
        )?;
        let rows = stmt.query_map(params![tbl_code(table), list], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        rows.collect()
    }

    /// Whether the store records no row version and no cursor: nothing was ever exported.
    pub fn holds_nothing(&self) -> rusqlite::Result<bool> {
        self.conn.query_row(
            "SELECT NOT EXISTS (SELECT 1 FROM _ctgo_seen) AND NOT EXISTS (SELECT 1 FROM _ctgo_cursor)",
            [],
            |r| r.get(0),
        )
    }

    /// Whether the store records no file at all.
    pub fn records_no_file(&self) -> rusqlite::Result<bool> {
        self.conn
            .query_row("SELECT NOT EXISTS (SELECT 1 FROM _ctgo_files)", [], |r| {
                r.get(0)
            })
    }

    /// The final name (`leads/part-….parquet`) of every file the store records.
    pub fn recorded_files(&self) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT final FROM _ctgo_files")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    }

    /// The final name and size (0: not recorded) of every file known to be in place.
    pub fn published_files(&self) -> rusqlite::Result<Vec<(String, u64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT final, bytes FROM _ctgo_files WHERE published = 1 ORDER BY final")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        rows.collect()
    }

    /// Every staged name a committed file record mentions (recovery keeps these).
    pub fn known_staged(&self) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT staged FROM _ctgo_files")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    }

    pub fn mark_published(&mut self, final_name: &str) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE _ctgo_files SET published = 1 WHERE final = ?1",
            [final_name],
        )?;
        Ok(())
    }

    // ---- job ledger ---------------------------------------------------------------------

    /// Insert or update the job's row (inside the staging transaction if one is open, so job
    /// counts commit together with the data they count).
    pub fn save_job(&mut self, job: &JobRecord) -> rusqlite::Result<()> {
        let tables = serde_json::to_string(&job.tables).unwrap_or_else(|_| "{}".into());
        let details = job.error_details.as_ref().map(|d| d.to_string());
        self.conn.execute(
            "INSERT INTO export_jobs(id, source_connection_id, status, started_at, completed_at,
                 duration_seconds, entities_inserted, entities_updated, entities_deleted,
                 entities_failed, error, error_details, tables)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT(id) DO UPDATE SET status = excluded.status,
                 completed_at = excluded.completed_at, duration_seconds = excluded.duration_seconds,
                 entities_inserted = excluded.entities_inserted,
                 entities_updated = excluded.entities_updated,
                 entities_deleted = excluded.entities_deleted,
                 entities_failed = excluded.entities_failed, error = excluded.error,
                 error_details = excluded.error_details, tables = excluded.tables",
            params![
                job.id,
                job.source_connection_id,
                job.status.as_str(),
                format_ts(&job.started_at),
                job.completed_at.as_ref().map(format_ts),
                job.duration_seconds,
                job.entities_inserted as i64,
                job.entities_updated as i64,
                job.entities_deleted as i64,
                job.entities_failed as i64,
                job.error,
                details,
                tables
            ],
        )?;
        Ok(())
    }

    /// Jobs newest first.
    pub fn jobs(&self, limit: u32) -> rusqlite::Result<Vec<JobRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, source_connection_id, status, started_at, completed_at, duration_seconds,
                    entities_inserted, entities_updated, entities_deleted, entities_failed,
                    error, error_details, tables
             FROM export_jobs ORDER BY started_at DESC, id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], row_to_job)?;
        rows.collect()
    }

    pub fn job(&self, id: &str) -> rusqlite::Result<Option<JobRecord>> {
        self.conn
            .query_row(
                "SELECT id, source_connection_id, status, started_at, completed_at,
                        duration_seconds, entities_inserted, entities_updated, entities_deleted,
                        entities_failed, error, error_details, tables
                 FROM export_jobs WHERE id = ?1",
                [id],
                row_to_job,
            )
            .optional()
    }

    /// Jobs a crash left unfinished.
    pub fn unfinished_jobs(&self) -> rusqlite::Result<Vec<JobRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, source_connection_id, status, started_at, completed_at, duration_seconds,
                    entities_inserted, entities_updated, entities_deleted, entities_failed,
                    error, error_details, tables
             FROM export_jobs WHERE status IN ('PENDING', 'RUNNING', 'CANCELLING')",
        )?;
        let rows = stmt.query_map([], row_to_job)?;
        rows.collect()
    }
}

fn row_to_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    let status: String = r.get(2)?;
    let started: String = r.get(3)?;
    let completed: Option<String> = r.get(4)?;
    let details: Option<String> = r.get(11)?;
    let tables: Option<String> = r.get(12)?;
    Ok(JobRecord {
        id: r.get(0)?,
        source_connection_id: r.get(1)?,
        status: JobStatus::parse(&status).unwrap_or(JobStatus::Failed),
        started_at: parse_ts(&started).unwrap_or_default(),
        completed_at: completed.as_deref().and_then(parse_ts),
        duration_seconds: r.get(5)?,
        entities_inserted: r.get::<_, i64>(6)? as u64,
        entities_updated: r.get::<_, i64>(7)? as u64,
        entities_deleted: r.get::<_, i64>(8)? as u64,
        entities_failed: r.get::<_, i64>(9)? as u64,
        error: r.get(10)?,
        error_details: details.and_then(|d| serde_json::from_str(&d).ok()),
        tables: tables
            .and_then(|t| {
                serde_json::from_str::<std::collections::BTreeMap<String, TableCounts>>(&t).ok()
            })
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: i64, hash: u128) -> RowKey {
        RowKey {
            id,
            hash,
            cursor_ms: Some(id * 1000),
            stream_id: Some(1),
            finished: true,
        }
    }

    fn found(store: &StateStore, table: Table, ids: &[i64]) -> Vec<(i64, u128)> {
        let mut v: Vec<(i64, u128)> = store
            .lookup(table, ids)
            .expect("lookup")
            .into_iter()
            .map(|(id, s)| (id, s.hash))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_store_from_before_kinds_were_recorded_is_told_by_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let forget = |path: &std::path::Path| {
            let c = Connection::open(path).unwrap();
            c.execute("DELETE FROM _ctgo_meta WHERE key = 'dest_kind'", [])
                .unwrap();
        };
        // A files destination's store: its files say which kind.
        let files = dir.path().join("files.db");
        let mut store = StateStore::open(&files).unwrap();
        store.begin().unwrap();
        store
            .conn
            .execute(
                "INSERT INTO _ctgo_files(tbl, staged, final, job_id, rows) \
                 VALUES ('export_jobs', 'x', 'export_jobs/j.parquet', 'j', 1)",
                [],
            )
            .unwrap();
        store.commit().unwrap();
        drop(store);
        let store = StateStore::open(&files).unwrap();
        assert!(matches!(store.claim_kind("csv"), Err(KindError::Other(k)) if k == "parquet"));
        forget(&files);
        store.claim_kind("parquet").unwrap();
        // An SQLite destination's: its leads table.
        let db = dir.path().join("leads.db");
        let mut store = StateStore::open(&db).unwrap();
        store.create_table(Table::Leads, Some("id")).unwrap();
        drop(store);
        forget(&db);
        let store = StateStore::open(&db).unwrap();
        assert!(matches!(store.claim_kind("parquet"), Err(KindError::Other(k)) if k == "sqlite"));
        // A new store takes the kind of the first job.
        let fresh = StateStore::open(&dir.path().join("new.db")).unwrap();
        fresh.claim_kind("csv").unwrap();
        assert_eq!(fresh.dest_kind().unwrap().as_deref(), Some("csv"));
    }

    #[test]
    fn state_of_another_layout_is_refused_not_misread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        drop(StateStore::open(&path).expect("open"));
        StateStore::open(&path).expect("the same layout opens again");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE _ctgo_meta SET value = '1' WHERE key = 'state_version'",
                [],
            )
            .unwrap();
        let err = StateStore::open(&path).err().expect("refused").to_string();
        assert!(err.contains("state layout 1"), "{err}");
    }

    #[test]
    fn unfinished_runs_are_waited_for_until_a_day_of_newer_runs_is_known() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = StateStore::open(&dir.path().join("s.db")).expect("open");
        let run = |id: i64, cursor_ms: Option<i64>, finished: bool| RowKey {
            id,
            hash: id as u128,
            cursor_ms,
            stream_id: Some(1),
            finished,
        };
        let day = 24 * 3600 * 1000;
        store
            .upsert_seen(
                Table::SyncRuns,
                &[
                    run(1, Some(0), false),          // stuck: a day and more before the newest
                    run(2, Some(day), false),        // a day before the newest: still waited for
                    run(3, Some(2 * day), false),    // the newest, running
                    run(4, Some(2 * day - 5), true), // finished
                    run(5, None, false),             // no triggeredAt: not waited for
                ],
                "job-1",
            )
            .expect("upsert");
        let mut pending = store.unfinished_runs(day, 10 * day).expect("pending");
        pending.sort();
        assert_eq!(pending, vec![2, 3]);
        // A run dated in the future does not age the others out: the day counts back from now.
        store
            .upsert_seen(Table::SyncRuns, &[run(6, Some(100 * day), true)], "job-1")
            .expect("upsert");
        let mut pending = store.unfinished_runs(day, 2 * day).expect("pending");
        pending.sort();
        assert_eq!(pending, vec![2, 3]);
    }

    #[test]
    fn lookups_see_staged_rows_inside_and_outside_the_known_id_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = StateStore::open(&dir.path().join("s.db")).expect("open");
        assert!(found(&store, Table::Leads, &[1, 2, 3]).is_empty());
        // The empty table's bounds are now known; staged rows must widen them.
        store
            .upsert_seen(Table::Leads, &[key(50, 1), key(60, 2)], "j")
            .expect("upsert");
        assert_eq!(
            found(&store, Table::Leads, &[40, 50, 55, 60, 70]),
            [(50, 1), (60, 2)]
        );
        store
            .upsert_seen(Table::Leads, &[key(10, 3), key(90, 4)], "j")
            .expect("upsert");
        assert_eq!(
            found(&store, Table::Leads, &[10, 50, 60, 90, 91]),
            [(10, 3), (50, 1), (60, 2), (90, 4)]
        );
        // Other tables keep their own bounds.
        assert!(found(&store, Table::SyncRuns, &[10, 50]).is_empty());
        store.commit().expect("commit");

        // A rollback forgets what it staged, bounds included.
        store
            .upsert_seen(Table::Leads, &[key(1000, 5), key(50, 6)], "j")
            .expect("upsert");
        assert_eq!(
            found(&store, Table::Leads, &[50, 1000]),
            [(50, 6), (1000, 5)]
        );
        store.rollback().expect("rollback");
        assert_eq!(found(&store, Table::Leads, &[50, 1000]), [(50, 1)]);
        drop(store);

        // And a new connection reads the committed bounds.
        let store = StateStore::open(&dir.path().join("s.db")).expect("reopen");
        assert_eq!(
            found(&store, Table::Leads, &[5, 10, 90, 95]),
            [(10, 3), (90, 4)]
        );
    }

    fn seen_is_desc(store: &StateStore) -> bool {
        let sql: String = store
            .conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = '_ctgo_seen'",
                [],
                |r| r.get(0),
            )
            .expect("layout");
        sql.contains("id DESC")
    }

    #[test]
    fn the_first_leads_page_with_an_order_sets_the_order_of_the_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let mut store = StateStore::open(&path).expect("open");
        assert!(!seen_is_desc(&store));
        // A descending first leads page, rolled back: the order is back as it was.
        store
            .upsert_seen(Table::Leads, &[key(9, 1), key(8, 2)], "j")
            .expect("upsert");
        assert!(seen_is_desc(&store));
        store.rollback().expect("rollback");
        assert!(!seen_is_desc(&store));
        assert!(found(&store, Table::Leads, &[8, 9]).is_empty());
        // Rows of another table, and a page of one lead, leave it open; the rebuild keeps them.
        store
            .upsert_seen(Table::SyncRuns, &[key(7, 70), key(3, 30)], "j")
            .expect("upsert");
        store
            .upsert_seen(Table::Leads, &[key(50, 9)], "j")
            .expect("upsert");
        assert!(!seen_is_desc(&store));
        store
            .upsert_seen(Table::Leads, &[key(30, 1), key(20, 2), key(10, 3)], "j")
            .expect("upsert");
        assert!(seen_is_desc(&store));
        assert_eq!(found(&store, Table::SyncRuns, &[3, 7]), [(3, 30), (7, 70)]);
        // Later pages, in any order, go in as usual and do not turn it back.
        store
            .upsert_seen(Table::Leads, &[key(1, 4), key(40, 5), key(20, 6)], "j")
            .expect("upsert");
        assert!(seen_is_desc(&store));
        store.commit().expect("commit");
        drop(store);
        // In a later job, a newest-first page with a late arrival at its end is still a
        // descending page; a page without a clear order leaves the order as it is.
        let mut store = StateStore::open(&path).expect("reopen");
        store
            .upsert_seen(
                Table::Leads,
                &[key(48, 1), key(47, 1), key(46, 1), key(45, 1), key(99, 1)],
                "j",
            )
            .expect("upsert");
        assert!(seen_is_desc(&store));
        store.rollback().expect("rollback");
        store
            .upsert_seen(
                Table::Leads,
                &[key(45, 1), key(98, 1), key(44, 1), key(97, 1)],
                "j",
            )
            .expect("upsert");
        assert!(seen_is_desc(&store));
        store.rollback().expect("rollback");
        drop(store);
        let mut store = StateStore::open(&path).expect("reopen");
        assert_eq!(
            found(&store, Table::Leads, &[1, 10, 20, 30, 40, 50]),
            [(1, 4), (10, 3), (20, 6), (30, 1), (40, 5), (50, 9)]
        );
        store
            .upsert_seen(Table::Leads, &[key(60, 7), key(70, 8)], "j")
            .expect("upsert");
        // A small store follows the order of its pages again in a later job...
        assert!(!seen_is_desc(&store));
        // ... and the known bounds follow rows staged in either order.
        assert_eq!(
            found(&store, Table::Leads, &[0, 1, 70, 71]),
            [(1, 4), (70, 8)]
        );
        assert_eq!(found(&store, Table::SyncRuns, &[3, 7]), [(3, 30), (7, 70)]);
        store.commit().expect("commit");

        // A store beyond REORDER_MAX_ROWS keeps its order.
        let big: Vec<RowKey> = (1..=REORDER_MAX_ROWS + 1).map(|id| key(id, 1)).collect();
        store
            .upsert_seen(Table::SyncRuns, &big, "j")
            .expect("upsert");
        store.commit().expect("commit");
        drop(store);
        let mut store = StateStore::open(&path).expect("reopen");
        store
            .upsert_seen(Table::Leads, &[key(90, 1), key(80, 2)], "j")
            .expect("upsert");
        assert!(!seen_is_desc(&store));
        assert_eq!(found(&store, Table::Leads, &[80, 90]), [(80, 2), (90, 1)]);
    }

    #[test]
    fn upserts_in_chunks_keep_every_row_and_the_last_version_of_a_repeated_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = StateStore::open(&dir.path().join("s.db")).expect("open");
        // More rows than one statement takes, descending (as newest-first pages arrive), and
        // one id twice: the later version wins, as row-by-row upserts would have it.
        let mut keys: Vec<RowKey> = (0..(2 * UPSERT_CHUNK as i64 + 7))
            .rev()
            .map(|id| key(id, id as u128))
            .collect();
        keys.push(key(3, 999));
        store.upsert_seen(Table::Leads, &keys, "j").expect("upsert");
        store.commit().expect("commit");
        let ids: Vec<i64> = (0..(2 * UPSERT_CHUNK as i64 + 7)).collect();
        let got = found(&store, Table::Leads, &ids);
        assert_eq!(got.len(), ids.len());
        assert!(
            got.iter()
                .all(|&(id, h)| h == if id == 3 { 999 } else { id as u128 })
        );
    }
}
