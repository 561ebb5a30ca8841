//! One conformance suite that every destination must pass (in the shape of vector's
//! `run_and_assert_sink_compliance`): each scenario is written once and run against SQLite,
//! Parquet and CSV, as `conformance::<dest>::<scenario>` so a failure names the destination.
//!
//! After every scenario an **independent reader** (no code of ours) checks the invariant:
//!
//! - the latest version of every lead (greatest `_extracted_at`; SQLite keeps one row per id)
//!   that is not a tombstone is exactly the simulator's lead set, and its content is the
//!   simulator's record (every mapped field, `extra` included);
//! - every lead version is there once: no two rows with the same id and content, no two rows
//!   with the same id and `_extracted_at`; the job ledger adds up to the rows (every insert,
//!   update and tombstone counted once; every failed record in rejects once);
//! - file destinations show no half-written file to a dataset reader (every visible Parquet
//!   file opens, every CSV file parses to whole records ending in CRLF), and no hidden staged
//!   file survives a completed run.
//!
//! Readers: SQLite by plain SQL (rusqlite); Parquet by pyarrow (each file, then the dataset)
//! and DuckDB (`read_parquet` + `QUALIFY row_number()` for the latest versions); CSV by the
//! `csv` crate and Python's `csv` module, which must agree record for record. The Python side
//! is `tests/it/readers.py`, spawned once per check (several directories at a time where a
//! scenario collects snapshots).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::Value;

use ctgo_export::simulator::{
    FaultEndpoint, FaultKind, FaultPlan, Ordering, Simulator, SinceBoundary,
};

use crate::common::*;

const PAGE: &[&str] = &["--page-size", "100"];
const TABLES: [&str; 4] = ["leads", "sync_runs", "rejects", "export_jobs"];
/// What a spreadsheet evaluates at the start of a cell (product.md "Destinations").
const TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];
/// Columns that are not part of a version's content.
const META: [&str; 2] = ["_extracted_at", "_job_id"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Sqlite,
    Parquet,
    Csv,
}

impl Dest {
    fn scheme(self) -> &'static str {
        match self {
            Dest::Sqlite => "sqlite",
            Dest::Parquet => "parquet",
            Dest::Csv => "csv",
        }
    }
    fn files(self) -> bool {
        self != Dest::Sqlite
    }
}

// ---------------------------------------------------------------------------------------------
// The schema, from `schemas/*.json` (the spec users read), not from our code.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Real,
    Text,
    Ts,
}

#[derive(Debug, Clone)]
struct Col {
    name: String,
    ty: String,
    kind: Kind,
    nullable: bool,
}

fn schema(table: &str) -> Vec<Col> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(format!("{table}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    doc["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            let ty = c["type"].as_str().expect("type").to_string();
            let kind = match ty.as_str() {
                "Int64" => Kind::Int,
                "Float64" => Kind::Real,
                "Utf8" => Kind::Text,
                t if t.starts_with("Timestamp") => Kind::Ts,
                other => panic!("{table}: unknown type {other}"),
            };
            Col {
                name: c["name"].as_str().expect("name").to_string(),
                ty,
                kind,
                nullable: c["nullable"].as_bool().unwrap_or(true),
            }
        })
        .collect()
}

fn kinds(table: &str) -> HashMap<String, Kind> {
    schema(table)
        .into_iter()
        .map(|c| (c.name, c.kind))
        .collect()
}

/// The pyarrow spelling of a schema type.
fn arrow_type(ty: &str) -> &'static str {
    match ty {
        "Int64" => "int64",
        "Float64" => "double",
        "Utf8" => "string",
        "Timestamp(ms, UTC)" => "timestamp[ms, tz=UTC]",
        _ => "?",
    }
}

fn parse_ts(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

// ---------------------------------------------------------------------------------------------
// What the API holds, captured when a check is due (the simulator changes afterwards).

#[derive(Debug, Clone, Default)]
struct Expected {
    /// The good leads as served now.
    leads: BTreeMap<i64, Value>,
    malformed: BTreeSet<i64>,
    runs: BTreeSet<i64>,
    /// Ids whose latest version must be a tombstone.
    deleted: BTreeSet<i64>,
}

fn expected(sim: &Simulator) -> Expected {
    let leads = expected_ids(sim)
        .into_iter()
        .map(|id| (id, sim.lead_json(id).expect("a listed lead is served")))
        .collect();
    Expected {
        leads,
        malformed: sim.malformed_ids().into_iter().collect(),
        runs: sim.run_ids().into_iter().collect(),
        deleted: BTreeSet::new(),
    }
}

const LEAD_TOP: [&str; 9] = [
    "id",
    "streamId",
    "trackedXAccountId",
    "segmentId",
    "matchConfidence",
    "sourceType",
    "discoveredAt",
    "exportedAt",
    "profile",
];
const LEAD_PROFILE: [&str; 6] = [
    "xUserId",
    "handle",
    "displayName",
    "profileImageUrl",
    "followerCount",
    "bio",
];

/// The unknown fields of a lead as `extra` must hold them (null when none).
fn expected_extra(lead: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(obj) = lead.as_object() {
        for (k, v) in obj {
            if !LEAD_TOP.contains(&k.as_str()) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(p) = lead["profile"].as_object() {
        let unknown: serde_json::Map<String, Value> = p
            .iter()
            .filter(|(k, _)| !LEAD_PROFILE.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !unknown.is_empty() {
            out.insert("profile".into(), Value::Object(unknown));
        }
    }
    if out.is_empty() {
        Value::Null
    } else {
        Value::Object(out)
    }
}

/// A text cell as the destination must hold it: CSV cannot tell "" from null, and neutralises
/// formula triggers with a leading `'`.
fn text_cell(v: &Value, d: Dest) -> Value {
    match (v.as_str(), d) {
        (None, _) => Value::Null,
        (Some(""), Dest::Csv) => Value::Null,
        (Some(s), Dest::Csv) if s.starts_with(TRIGGERS) => Value::String(format!("'{s}")),
        (Some(s), _) => Value::String(s.to_string()),
    }
}

fn int_cell(v: &Value) -> Value {
    v.as_i64().map(Value::from).unwrap_or(Value::Null)
}

fn ts_cell(v: &Value) -> Value {
    v.as_str()
        .and_then(parse_ts)
        .map(Value::from)
        .unwrap_or(Value::Null)
}

/// Every mapped column of a lead as the destination must hold it.
fn expected_row(lead: &Value, d: Dest) -> BTreeMap<&'static str, Value> {
    let p = &lead["profile"];
    let extra = expected_extra(lead);
    BTreeMap::from([
        ("id", int_cell(&lead["id"])),
        ("stream_id", int_cell(&lead["streamId"])),
        ("tracked_x_account_id", int_cell(&lead["trackedXAccountId"])),
        ("segment_id", int_cell(&lead["segmentId"])),
        ("match_confidence", text_cell(&lead["matchConfidence"], d)),
        ("source_type", text_cell(&lead["sourceType"], d)),
        ("discovered_at", ts_cell(&lead["discoveredAt"])),
        ("exported_at", ts_cell(&lead["exportedAt"])),
        ("x_user_id", text_cell(&p["xUserId"], d)),
        ("handle", text_cell(&p["handle"], d)),
        ("display_name", text_cell(&p["displayName"], d)),
        ("profile_image_url", text_cell(&p["profileImageUrl"], d)),
        ("follower_count", int_cell(&p["followerCount"])),
        ("bio", text_cell(&p["bio"], d)),
        ("extra", extra),
    ])
}

/// Differences between a stored lead row and the simulator's record.
fn content_diff(row: &Row, lead: &Value, d: Dest) -> Vec<String> {
    let mut out = Vec::new();
    for (col, want) in expected_row(lead, d) {
        let got = row.get(col).cloned().unwrap_or(Value::Null);
        let got = if col == "extra" {
            match got.as_str() {
                None | Some("") => Value::Null,
                Some(s) => serde_json::from_str(s)
                    .unwrap_or_else(|e| Value::String(format!("not JSON ({e}): {s}"))),
            }
        } else if matches!(
            col,
            "id" | "stream_id" | "tracked_x_account_id" | "segment_id"
        ) || matches!(col, "follower_count" | "discovered_at" | "exported_at")
        {
            int_cell(&got)
        } else {
            got
        };
        if got != want {
            out.push(format!("{col}: stored {got} but the API serves {want}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A destination under test.

type Row = BTreeMap<String, Value>;

struct Target {
    d: Dest,
    tmp: TestDir,
    bom: bool,
    python: Option<PathBuf>,
    snaps: usize,
}

impl Target {
    /// None (after saying why) when the destination's independent reader is missing locally.
    fn new(d: Dest) -> Option<Target> {
        let python = python();
        if python.is_none() && d.files() {
            assert!(
                !in_ci(),
                "the Python readers (pyarrow, duckdb) are required in CI: run scripts/test or set CTGO_TEST_PYTHON"
            );
            if d == Dest::Parquet {
                eprintln!(
                    "skipping: no Python with pyarrow and duckdb (run scripts/test or set CTGO_TEST_PYTHON)"
                );
                return None;
            }
            eprintln!("note: no Python; CSV files are read with the csv crate only");
        }
        Some(Target {
            d,
            tmp: TestDir::new(),
            bom: false,
            python,
            snaps: 0,
        })
    }

    fn location(&self) -> PathBuf {
        match self.d {
            Dest::Sqlite => self.tmp.path("leads.db"),
            _ => self.tmp.path("out"),
        }
    }

    fn uri(&self) -> String {
        format!("{}:{}", self.d.scheme(), self.location().display())
    }

    fn args<'a>(&self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = extra.to_vec();
        if self.bom {
            v.push("--csv-bom");
        }
        v
    }

    fn cmd(&self, sim: &Simulator, extra: &[&str]) -> std::process::Command {
        sync_cmd(sim, &self.uri(), &self.args(extra))
    }

    /// A sync that must complete; returns the job record.
    fn sync(&self, sim: &Simulator, extra: &[&str]) -> Value {
        sync_ok(sim, &self.uri(), &self.args(extra))
    }

    /// Read the destination as it is now.
    fn read(&self) -> Found {
        self.read_many(&[self.location()])
            .pop()
            .expect("one result per location")
    }

    /// Copy what a reader would see (data dirs with hidden files; the SQLite file with its
    /// journals) aside, to be read later with others in one reader call.
    fn snapshot(&mut self) -> PathBuf {
        self.snaps += 1;
        let to = self.tmp.path(&format!("snap-{:03}", self.snaps));
        match self.d {
            Dest::Sqlite => {
                std::fs::create_dir_all(&to).expect("snapshot dir");
                let src = self.location();
                for suffix in ["", "-wal", "-journal"] {
                    let from = PathBuf::from(format!("{}{suffix}", src.display()));
                    if from.exists() {
                        std::fs::copy(&from, to.join(format!("leads.db{suffix}")))
                            .expect("copy sqlite");
                    }
                }
                to.join("leads.db")
            }
            _ => {
                for table in TABLES {
                    let from = self.location().join(table);
                    let into = to.join(table);
                    std::fs::create_dir_all(&into).expect("snapshot dir");
                    let Ok(entries) = std::fs::read_dir(&from) else {
                        continue;
                    };
                    for e in entries.flatten() {
                        std::fs::copy(e.path(), into.join(e.file_name())).expect("copy file");
                    }
                }
                to
            }
        }
    }

    fn read_many(&self, locations: &[PathBuf]) -> Vec<Found> {
        match self.d {
            Dest::Sqlite => locations.iter().map(|p| read_sqlite(p)).collect(),
            Dest::Parquet => {
                let python = self.python.as_deref().expect("checked in Target::new");
                let out = run_readers(python, "parquet", locations);
                locations
                    .iter()
                    .map(|p| read_parquet(p, &out[p.to_string_lossy().as_ref()]))
                    .collect()
            }
            Dest::Csv => {
                let py = self
                    .python
                    .as_deref()
                    .map(|python| run_readers(python, "csv", locations));
                locations
                    .iter()
                    .map(|p| {
                        read_csv(
                            p,
                            self.bom,
                            py.as_ref().map(|v| &v[p.to_string_lossy().as_ref()]),
                        )
                    })
                    .collect()
            }
        }
    }
}

/// What an independent reader found in one destination.
#[derive(Debug, Default)]
struct Found {
    leads: Vec<Row>,
    runs: Vec<Row>,
    rejects: Vec<Row>,
    jobs: Vec<Row>,
    /// Visible data files per table (file destinations).
    files: BTreeMap<String, Vec<String>>,
    /// Hidden files in the table directories (file destinations).
    hidden: Vec<String>,
    /// Unreadable or half-written files, schema drift, reader disagreements.
    problems: Vec<String>,
}

fn run_readers(python: &Path, format: &str, dirs: &[PathBuf]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/readers.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(format)
        .args(dirs)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {python:?} {script:?}: {e}"));
    assert!(
        out.status.success(),
        "readers.py {format} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "readers.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `rows` as JSON objects → rows.
fn json_rows(v: &Value) -> Vec<Row> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_object())
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .collect()
        })
        .unwrap_or_default()
}

fn read_sqlite(path: &Path) -> Found {
    let conn = db(path);
    let mut f = Found::default();
    for table in TABLES {
        let types = kinds(table);
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{table}\""))
            .unwrap_or_else(|e| panic!("{path:?}: table {table}: {e}"));
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let mut problems = Vec::new();
        let rows: Vec<Row> = stmt
            .query_map([], |r| {
                let mut row = Row::new();
                for (i, name) in names.iter().enumerate() {
                    use rusqlite::types::Value as V;
                    let v: V = r.get(i)?;
                    let kind = types.get(name).copied();
                    let val = match v {
                        V::Null => Value::Null,
                        V::Integer(n) => Value::from(n),
                        V::Real(x) => Value::from(x),
                        V::Text(s) if kind == Some(Kind::Ts) => match parse_ts(&s) {
                            Some(ms) => Value::from(ms),
                            None => {
                                problems.push(format!("{table}.{name}: not ISO 8601: {s:?}"));
                                Value::String(s)
                            }
                        },
                        V::Text(s) => Value::String(s),
                        V::Blob(b) => Value::String(format!("<blob {} bytes>", b.len())),
                    };
                    row.insert(name.clone(), val);
                }
                Ok(row)
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        f.problems.extend(problems);
        match table {
            "leads" => f.leads = rows,
            "sync_runs" => f.runs = rows,
            "rejects" => f.rejects = rows,
            _ => f.jobs = rows,
        }
    }
    f
}

/// File names in the table directories: visible ones by table, hidden ones, stray ones.
fn list_files(root: &Path, suffix: &str, f: &mut Found) {
    for table in TABLES {
        let mut visible = Vec::new();
        if let Ok(entries) = std::fs::read_dir(root.join(table)) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || name.starts_with('_') {
                    f.hidden.push(format!("{table}/{name}"));
                } else if name.ends_with(suffix) {
                    visible.push(name);
                } else {
                    f.problems
                        .push(format!("{table}/{name}: a stray visible file"));
                }
            }
        }
        visible.sort();
        f.files.insert(table.to_string(), visible);
    }
}

fn read_parquet(root: &Path, py: &Value) -> Found {
    let mut f = Found::default();
    list_files(root, ".parquet", &mut f);
    for table in TABLES {
        let t = &py["tables"][table];
        for file in t["files"].as_array().into_iter().flatten() {
            if let Some(e) = file["error"].as_str() {
                f.problems.push(format!(
                    "{table}/{}: pyarrow cannot read it: {e}",
                    file["name"]
                ));
            }
        }
        if t["distinct_schemas"].as_u64().unwrap_or(0) > 1 {
            f.problems
                .push(format!("{table}: the files have different schemas"));
        }
        if let Some(e) = t["error"].as_str() {
            f.problems
                .push(format!("{table}: pyarrow cannot read the dataset: {e}"));
        }
        let files = f.files.get(table).map(Vec::len).unwrap_or(0);
        if files > 0 {
            let want: Vec<Value> = schema(table)
                .iter()
                .map(|c| serde_json::json!([c.name, arrow_type(&c.ty), c.nullable]))
                .collect();
            let got = t["schema"].as_array().cloned().unwrap_or_default();
            if got != want {
                f.problems.push(format!(
                    "{table}: dataset schema {got:?} is not schemas/{table}.json {want:?}"
                ));
            }
        }
        let rows = json_rows(&t["rows"]);
        match table {
            "leads" => f.leads = rows,
            "sync_runs" => f.runs = rows,
            "rejects" => f.rejects = rows,
            _ => f.jobs = rows,
        }
    }
    // DuckDB: the same rows, the same latest versions, no duplicate versions.
    let duck = &py["duckdb"];
    if let Some(e) = duck["error"].as_str() {
        f.problems.push(format!("duckdb cannot read leads: {e}"));
    } else if !f.leads.is_empty() {
        let names: Vec<&str> = duck["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c[0].as_str())
            .collect();
        let want: Vec<String> = schema("leads").into_iter().map(|c| c.name).collect();
        if names != want {
            f.problems
                .push(format!("duckdb sees columns {names:?}, not {want:?}"));
        }
        if duck["rows"].as_u64() != Some(f.leads.len() as u64) {
            f.problems.push(format!(
                "duckdb counts {} lead rows, pyarrow {}",
                duck["rows"],
                f.leads.len()
            ));
        }
        for key in ["dup_versions", "dup_extracted"] {
            if duck[key].as_u64() != Some(0) {
                f.problems
                    .push(format!("duckdb finds {} {key} in leads", duck[key]));
            }
        }
        let ours: Vec<Value> = latest(&f.leads)
            .values()
            .map(|r| {
                serde_json::json!([
                    r["id"],
                    r["_extracted_at"],
                    r.get("_deleted_at").cloned().unwrap_or(Value::Null),
                    !r["exported_at"].is_null()
                ])
            })
            .collect();
        let theirs = duck["latest"].as_array().cloned().unwrap_or_default();
        if ours != theirs {
            f.problems.push(format!(
                "duckdb's latest versions ({} ids) differ from pyarrow's ({} ids)",
                theirs.len(),
                ours.len()
            ));
        }
    }
    f
}

/// One CSV file parsed by the `csv` crate: (bom, records) or why it could not be read.
fn parse_csv_file(path: &Path) -> Result<(bool, bool, Vec<Vec<String>>), String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    let bom = data.starts_with(b"\xEF\xBB\xBF");
    let ends_crlf = data.ends_with(b"\r\n");
    let body = if bom { &data[3..] } else { &data[..] };
    let mut r = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut records = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| e.to_string())?;
        records.push(rec.iter().map(str::to_string).collect());
    }
    Ok((bom, ends_crlf, records))
}

fn read_csv(root: &Path, bom: bool, py: Option<&Value>) -> Found {
    let mut f = Found::default();
    list_files(root, ".csv", &mut f);
    for table in TABLES {
        let cols = schema(table);
        let header: Vec<String> = cols.iter().map(|c| c.name.clone()).collect();
        let py_files: HashMap<String, &Value> = py
            .and_then(|p| p["tables"][table].as_array())
            .into_iter()
            .flatten()
            .filter_map(|f| Some((f["name"].as_str()?.to_string(), f)))
            .collect();
        let mut rows = Vec::new();
        let names = f.files.get(table).cloned().unwrap_or_default();
        for name in names {
            let label = format!("{table}/{name}");
            let (has_bom, ends_crlf, records) = match parse_csv_file(&root.join(table).join(&name))
            {
                Ok(x) => x,
                Err(e) => {
                    f.problems.push(format!("{label}: the csv crate: {e}"));
                    continue;
                }
            };
            if has_bom != bom {
                f.problems
                    .push(format!("{label}: BOM {has_bom}, but --csv-bom was {bom}"));
            }
            if !ends_crlf {
                f.problems
                    .push(format!("{label}: does not end with CRLF (cut short?)"));
            }
            if py.is_some() {
                match py_files.get(&name) {
                    None => f
                        .problems
                        .push(format!("{label}: Python's csv module did not see it")),
                    Some(p) => {
                        if let Some(e) = p["error"].as_str() {
                            f.problems
                                .push(format!("{label}: Python's csv module: {e}"));
                        }
                        let theirs: Vec<Vec<String>> =
                            serde_json::from_value(p["records"].clone()).unwrap_or_default();
                        if theirs != records {
                            f.problems.push(format!(
                                "{label}: Python's csv module and the csv crate disagree"
                            ));
                        }
                        if p["bom"].as_bool() != Some(bom) {
                            f.problems
                                .push(format!("{label}: Python sees BOM {}", p["bom"]));
                        }
                    }
                }
            }
            let Some((head, body)) = records.split_first() else {
                f.problems.push(format!("{label}: empty file"));
                continue;
            };
            if *head != header {
                f.problems
                    .push(format!("{label}: header {head:?} is not {header:?}"));
                continue;
            }
            for (i, rec) in body.iter().enumerate() {
                if rec.len() != header.len() {
                    f.problems.push(format!(
                        "{label}: record {} has {} fields, not {}",
                        i + 2,
                        rec.len(),
                        header.len()
                    ));
                    continue;
                }
                let mut row = Row::new();
                for (c, cell) in cols.iter().zip(rec) {
                    let v = if cell.is_empty() {
                        Value::Null
                    } else {
                        match c.kind {
                            Kind::Text => Value::String(cell.clone()),
                            Kind::Int => {
                                cell.parse::<i64>().map(Value::from).unwrap_or_else(|_| {
                                    f.problems.push(format!(
                                        "{label}: {} {cell:?} is not an integer",
                                        c.name
                                    ));
                                    Value::String(cell.clone())
                                })
                            }
                            Kind::Real => {
                                cell.parse::<f64>().map(Value::from).unwrap_or_else(|_| {
                                    f.problems.push(format!(
                                        "{label}: {} {cell:?} is not a number",
                                        c.name
                                    ));
                                    Value::String(cell.clone())
                                })
                            }
                            Kind::Ts => parse_ts(cell).map(Value::from).unwrap_or_else(|| {
                                f.problems
                                    .push(format!("{label}: {} {cell:?} is not ISO 8601", c.name));
                                Value::String(cell.clone())
                            }),
                        }
                    };
                    if v.is_null() && !c.nullable {
                        f.problems
                            .push(format!("{label}: record {}: {} is empty", i + 2, c.name));
                    }
                    row.insert(c.name.clone(), v);
                }
                rows.push(row);
            }
        }
        match table {
            "leads" => f.leads = rows,
            "sync_runs" => f.runs = rows,
            "rejects" => f.rejects = rows,
            _ => f.jobs = rows,
        }
    }
    f
}

// ---------------------------------------------------------------------------------------------
// The invariant.

fn id_of(r: &Row) -> i64 {
    r.get("id").and_then(Value::as_i64).unwrap_or(i64::MIN)
}

fn ts_of(r: &Row, col: &str) -> i64 {
    r.get(col).and_then(Value::as_i64).unwrap_or(i64::MIN)
}

fn is_deleted(r: &Row) -> bool {
    r.get("_deleted_at").is_some_and(|v| !v.is_null())
}

/// The latest version of each id (greatest `_extracted_at`).
fn latest(rows: &[Row]) -> BTreeMap<i64, &Row> {
    let mut out: BTreeMap<i64, &Row> = BTreeMap::new();
    for r in rows {
        let id = id_of(r);
        match out.get(&id) {
            Some(prev) if ts_of(prev, "_extracted_at") >= ts_of(r, "_extracted_at") => {}
            _ => {
                out.insert(id, r);
            }
        }
    }
    out
}

/// All versions of each id, oldest first.
fn versions(rows: &[Row]) -> BTreeMap<i64, Vec<&Row>> {
    let mut out: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        out.entry(id_of(r)).or_default().push(r);
    }
    for v in out.values_mut() {
        v.sort_by_key(|r| ts_of(r, "_extracted_at"));
    }
    out
}

/// Versions stored twice: the same id and content, or the same id and `_extracted_at`.
fn duplicates(table: &str, rows: &[Row], out: &mut Vec<String>) {
    let mut content: HashMap<String, usize> = HashMap::new();
    let mut stamp: HashMap<(i64, i64), usize> = HashMap::new();
    for r in rows {
        let key: BTreeMap<&String, &Value> = r
            .iter()
            .filter(|(k, _)| !META.contains(&k.as_str()))
            .collect();
        *content
            .entry(serde_json::to_string(&key).unwrap_or_default())
            .or_default() += 1;
        *stamp
            .entry((id_of(r), ts_of(r, "_extracted_at")))
            .or_default() += 1;
    }
    let dup_content: Vec<&String> = content
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    if !dup_content.is_empty() {
        out.push(format!(
            "{table}: {} versions stored more than once, e.g. {}",
            dup_content.len(),
            dup_content[0]
        ));
    }
    let dup_stamp: Vec<&(i64, i64)> = stamp
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    if !dup_stamp.is_empty() {
        out.push(format!(
            "{table}: {} (id, _extracted_at) pairs stored more than once, e.g. {:?}",
            dup_stamp.len(),
            dup_stamp[0]
        ));
    }
}

fn set_diff(what: &str, got: &BTreeSet<i64>, want: &BTreeSet<i64>, out: &mut Vec<String>) {
    if got != want {
        let missing: Vec<_> = want.difference(got).take(10).collect();
        let extra: Vec<_> = got.difference(want).take(10).collect();
        out.push(format!(
            "{what}: {} held, {} wanted; missing {} (e.g. {missing:?}), unexpected {} (e.g. {extra:?})",
            got.len(),
            want.len(),
            want.difference(got).count(),
            got.difference(want).count()
        ));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// After a completed run: everything holds.
    Complete,
    /// Right after a crash, or after a run that may have missed arrivals: nothing is stored
    /// twice, nothing is half-written, nothing is stored that the API does not have.
    Partial,
}

fn verify(found: &Found, exp: &Expected, d: Dest, mode: Mode, label: &str) {
    let bad = violations(found, exp, d, mode);
    assert!(
        bad.is_empty(),
        "{label} ({d:?}, {mode:?}): the invariant does not hold:\n  - {}",
        bad.join("\n  - ")
    );
}

/// Everything that breaks the invariant (see the module docs), in words.
fn violations(found: &Found, exp: &Expected, d: Dest, mode: Mode) -> Vec<String> {
    let mut bad: Vec<String> = found.problems.clone();
    if d.files() && mode == Mode::Complete && !found.hidden.is_empty() {
        bad.push(format!(
            "hidden files survive a completed run: {:?}",
            found.hidden
        ));
    }
    // Leads.
    duplicates("leads", &found.leads, &mut bad);
    let newest = latest(&found.leads);
    let live: BTreeSet<i64> = newest
        .iter()
        .filter(|(_, r)| !is_deleted(r))
        .map(|(id, _)| *id)
        .collect();
    let gone: BTreeSet<i64> = newest
        .iter()
        .filter(|(_, r)| is_deleted(r))
        .map(|(id, _)| *id)
        .collect();
    let want: BTreeSet<i64> = exp.leads.keys().copied().collect();
    match mode {
        Mode::Complete => {
            set_diff("latest live leads", &live, &want, &mut bad);
            set_diff("latest tombstones", &gone, &exp.deleted, &mut bad);
            let mut diffs = Vec::new();
            for (id, lead) in &exp.leads {
                if let Some(row) = newest.get(id) {
                    for d in content_diff(row, lead, d) {
                        diffs.push(format!("lead {id}: {d}"));
                    }
                }
            }
            if !diffs.is_empty() {
                bad.push(format!(
                    "{} lead fields differ from the API, e.g. {:?}",
                    diffs.len(),
                    &diffs[..diffs.len().min(5)]
                ));
            }
        }
        Mode::Partial => {
            let mut allowed = want.clone();
            allowed.extend(exp.deleted.iter().copied());
            let extra: BTreeSet<i64> = live.difference(&allowed).copied().collect();
            if !extra.is_empty() {
                bad.push(format!("leads the API does not have: {extra:?}"));
            }
        }
    }
    // Runs.
    duplicates("sync_runs", &found.runs, &mut bad);
    let run_ids: BTreeSet<i64> = found.runs.iter().map(id_of).collect();
    if mode == Mode::Complete {
        set_diff("sync runs", &run_ids, &exp.runs, &mut bad);
    }
    // Rejects: each bad record once, with its reason and raw text.
    let mut raws: HashMap<&str, usize> = HashMap::new();
    let mut reject_ids = BTreeSet::new();
    for r in &found.rejects {
        let raw = r.get("raw").and_then(Value::as_str).unwrap_or("");
        let reason = r.get("reason").and_then(Value::as_str).unwrap_or("");
        if raw.is_empty() || reason.is_empty() {
            bad.push(format!("a reject without raw text or reason: {r:?}"));
        }
        *raws.entry(raw).or_default() += 1;
        if let Some(id) = serde_json::from_str::<Value>(raw)
            .ok()
            .and_then(|v| v["id"].as_i64())
        {
            reject_ids.insert(id);
        }
    }
    let twice = raws.values().filter(|n| **n > 1).count();
    if twice > 0 {
        bad.push(format!("{twice} rejected records stored more than once"));
    }
    // The ledger adds up to the rows (a crashed job is in it only after recovery).
    if mode == Mode::Complete {
        let missing: Vec<&i64> = exp.malformed.difference(&reject_ids).collect();
        if !missing.is_empty() {
            bad.push(format!("malformed leads not in rejects: {missing:?}"));
        }
        let sum = |col: &str| -> i64 {
            found
                .jobs
                .iter()
                .map(|j| j.get(col).and_then(Value::as_i64).unwrap_or(0))
                .sum()
        };
        let mut job_ids: HashMap<String, usize> = HashMap::new();
        for j in &found.jobs {
            let status = j.get("status").and_then(Value::as_str).unwrap_or("");
            if !matches!(status, "COMPLETED" | "FAILED" | "CANCELLED") {
                bad.push(format!("a job left {status:?}: {:?}", j.get("id")));
            }
            *job_ids
                .entry(j.get("id").map(|v| v.to_string()).unwrap_or_default())
                .or_default() += 1;
        }
        if job_ids.values().any(|n| *n > 1) {
            bad.push("a job is recorded more than once in export_jobs".into());
        }
        let distinct = (versions(&found.leads).len() + run_ids.len()) as i64;
        if sum("entities_inserted") != distinct {
            bad.push(format!(
                "the ledger counts {} inserts; the destination holds {distinct} ids",
                sum("entities_inserted")
            ));
        }
        if d.files() {
            let rows = (found.leads.len() + found.runs.len()) as i64;
            let written =
                sum("entities_inserted") + sum("entities_updated") + sum("entities_deleted");
            if written != rows {
                bad.push(format!(
                    "the ledger counts {written} inserts + updates + deletions; the destination holds {rows} row versions"
                ));
            }
        }
        if sum("entities_failed") != found.rejects.len() as i64 {
            bad.push(format!(
                "the ledger counts {} failed records; rejects holds {}",
                sum("entities_failed"),
                found.rejects.len()
            ));
        }
    }
    bad
}

/// Read the destination now and check the invariant against the API now.
fn check(t: &Target, sim: &Simulator, mode: Mode, label: &str) -> Found {
    let found = t.read();
    verify(&found, &expected(sim), t.d, mode, label);
    found
}

// ---------------------------------------------------------------------------------------------
// Scenarios: each written once, run against every destination.

fn first_load_holds_the_api_lead_set(d: Dest) {
    let Some(t) = Target::new(d) else { return };
    let sim = sim(500);
    let job = t.sync(&sim, PAGE);
    let exp = expected(&sim);
    assert_eq!(
        leads_counts(&job),
        (exp.leads.len() as u64, 0, 0, 0),
        "{d:?}: {job}"
    );
    assert_eq!(
        job["tables"]["sync_runs"]["inserted"].as_u64(),
        Some(exp.runs.len() as u64),
        "{d:?}: {job}"
    );
    let found = t.read();
    verify(&found, &exp, d, Mode::Complete, "first load");

    // The data really holds the tricky profiles the content check just compared.
    let texts = |field: &str| -> Vec<String> {
        exp.leads
            .values()
            .filter_map(|l| l["profile"][field].as_str().map(str::to_string))
            .collect()
    };
    let (bios, names) = (texts("bio"), texts("displayName"));
    let all: Vec<&String> = bios.iter().chain(&names).collect();
    for (what, hit) in [
        ("a line break", all.iter().any(|s| s.contains('\n'))),
        ("a CRLF", all.iter().any(|s| s.contains("\r\n"))),
        ("a quote", all.iter().any(|s| s.contains('"'))),
        ("a comma", all.iter().any(|s| s.contains(','))),
        (
            "an emoji",
            all.iter().any(|s| s.contains('🚀') || s.contains('🦀')),
        ),
    ] {
        assert!(hit, "the data has no text with {what}");
    }
    for c in ['=', '+', '-', '@'] {
        assert!(
            all.iter().any(|s| s.starts_with(c)),
            "the data has no text starting with {c}"
        );
    }
    if d == Dest::Csv {
        let neutralised = found
            .leads
            .iter()
            .flat_map(|r| [r.get("bio"), r.get("display_name")])
            .flatten()
            .filter_map(Value::as_str)
            .filter(|s| s.starts_with("'=") || s.starts_with("'+"))
            .count();
        assert!(neutralised > 0, "no neutralised cell in the CSV files");
    }
}

fn quiet_rerun_writes_nothing_and_asks_once(d: Dest) {
    let Some(t) = Target::new(d) else { return };
    let sim = sim(500);
    t.sync(&sim, PAGE);
    let before = check(&t, &sim, Mode::Complete, "first run");
    sim.reset_stats();
    // The default page size (500) holds the whole lookback window: one page.
    let job = t.sync(&sim, &[]);
    assert_eq!(leads_counts(&job), (0, 0, 0, 0), "{d:?}: {job}");
    assert_eq!(job["entities_inserted"], 0, "{d:?}: {job}");
    assert_eq!(job["entities_updated"], 0, "{d:?}: {job}");
    let stats = sim.requests();
    assert_eq!(
        stats.leads, 1,
        "{d:?}: a quiet run needs one leads request: {stats:?}"
    );
    let after = check(&t, &sim, Mode::Complete, "quiet re-run");
    assert_eq!(
        after.leads.len(),
        before.leads.len(),
        "{d:?}: rows were added"
    );
    if d.files() {
        for table in ["leads", "sync_runs", "rejects"] {
            assert_eq!(
                after.files[table], before.files[table],
                "{d:?}: a quiet re-run wrote a {table} file"
            );
        }
    }
}

fn updates_are_counted_and_become_the_latest_version(d: Dest) {
    let Some(t) = Target::new(d) else { return };
    let sim = sim(400);
    t.sync(&sim, PAGE);
    let ids: Vec<i64> = expected_ids(&sim).into_iter().rev().take(10).collect();
    sim.mark_exported(&ids);
    let job = t.sync(&sim, PAGE);
    assert_eq!(leads_counts(&job), (0, 10, 0, 0), "{d:?}: {job}");
    let found = check(&t, &sim, Mode::Complete, "after updates");
    let all = versions(&found.leads);
    for id in &ids {
        let v = &all[id];
        let newest = v.last().expect("a version");
        assert!(
            !newest["exported_at"].is_null(),
            "{d:?}: lead {id}: the latest version is not the exported one"
        );
        if d.files() {
            assert_eq!(v.len(), 2, "{d:?}: lead {id}: {} versions", v.len());
            assert_ne!(
                v[0]["exported_at"], v[1]["exported_at"],
                "{d:?}: lead {id}: the versions do not differ in exported_at"
            );
            assert!(
                ts_of(v[1], "_extracted_at") > ts_of(v[0], "_extracted_at"),
                "{d:?}: lead {id}: the new version is not later"
            );
        }
    }
    if d.files() {
        let others = all
            .iter()
            .filter(|(id, v)| !ids.contains(id) && v.len() != 1)
            .count();
        assert_eq!(others, 0, "{d:?}: unchanged leads got a new version");
    }
}

fn same_second_and_late_leads_are_caught(d: Dest) {
    for (ordering, since) in [
        (Ordering::Shuffled, SinceBoundary::Inclusive),
        (Ordering::OldestFirst, SinceBoundary::Exclusive),
    ] {
        let Some(t) = Target::new(d) else { return };
        let sim = sim_with(|c| {
            c.leads = 300;
            c.ordering = ordering;
            c.since = since;
        });
        t.sync(&sim, PAGE);
        let same = sim.add_leads_at_newest_second(4);
        let late = sim.add_late_leads(6, 10);
        let job = t.sync(&sim, PAGE);
        assert_eq!(
            leads_counts(&job).0,
            (same.len() + late.len()) as u64,
            "{d:?} {ordering:?} {since:?}: {job}"
        );
        check(
            &t,
            &sim,
            Mode::Complete,
            &format!("same-second and late leads, {ordering:?} {since:?}"),
        );
    }
}

fn arrivals_between_pages_are_exported_exactly_once(d: Dest) {
    for ordering in [Ordering::NewestFirst, Ordering::OldestFirst] {
        let Some(t) = Target::new(d) else { return };
        let sim = sim_with(|c| {
            c.leads = 300;
            c.ordering = ordering;
            c.arrivals_between_pages = 25;
            c.late_arrival_minutes = 5;
        });
        t.sync(&sim, PAGE);
        check(
            &t,
            &sim,
            Mode::Partial,
            &format!("during arrivals, {ordering:?}"),
        );
        sim.update(|c| c.arrivals_between_pages = 0);
        t.sync(&sim, PAGE);
        check(
            &t,
            &sim,
            Mode::Complete,
            &format!("after arrivals, {ordering:?}"),
        );
    }
}

/// Change the API a little, as between two scheduled runs; updates stay inside the lookback
/// window (the API has no `updatedAt`, so older changes are invisible by contract).
fn churn(sim: &Simulator, round: usize) {
    sim.add_leads(40 + round % 7);
    sim.add_late_leads(3, 8);
    sim.add_leads_at_newest_second(2);
    let ids = expected_ids(sim);
    let recent = &ids[ids.len().saturating_sub(80)..];
    let some: Vec<i64> = recent
        .iter()
        .copied()
        .skip(round % 13)
        .step_by(17)
        .collect();
    sim.mark_exported(&some);
    if round.is_multiple_of(3) {
        sim.complete_runs();
    }
}

/// The checks gathered by [`recover_and_snapshot`], read in one reader call, and one report of
/// every one that fails.
fn assert_checks(t: &Target, d: Dest, checks: &[(String, PathBuf, Expected, Mode)], after: &str) {
    let dirs: Vec<PathBuf> = checks.iter().map(|c| c.1.clone()).collect();
    let found = t.read_many(&dirs);
    let failed: Vec<String> = checks
        .iter()
        .zip(&found)
        .filter_map(|((label, _, exp, mode), f)| {
            let bad = violations(f, exp, d, *mode);
            (!bad.is_empty())
                .then(|| format!("{label} ({mode:?}):\n    - {}", bad.join("\n    - ")))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{d:?}: after {after}:\n  {}",
        failed.join("\n  ")
    );
}

/// `inner` run under strace, tracing `syscalls` and injecting `inject` into them (strace's
/// `-e inject=` syntax without the syscall list).
fn under_strace(inner: std::process::Command, syscalls: &str, inject: &str) -> Run {
    let mut cmd = std::process::Command::new("strace");
    cmd.args(["-f", "-qq", "-o", "/dev/null"])
        .arg("-e")
        .arg(format!("trace={syscalls}"))
        .arg("-e")
        .arg(format!("inject={syscalls}:{inject}"));
    Run::from_output(inside(cmd, &inner).output().expect("run strace"))
}

/// One destination's state after a crash, then after the clean run that recovers it: both
/// snapshots join `checks` (partial before recovery, complete after).
fn recover_and_snapshot(
    t: &mut Target,
    sim: &Simulator,
    d: Dest,
    label: String,
    checks: &mut Vec<(String, PathBuf, Expected, Mode)>,
) {
    checks.push((
        format!("{label}, before recovery"),
        t.snapshot(),
        expected(sim),
        Mode::Partial,
    ));
    let run = Run::from_output(t.cmd(sim, PAGE).output().expect("run ctgo-export"));
    assert_eq!(
        run.code, 0,
        "{d:?} {label}: the recovery run failed: {}",
        run.stderr
    );
    checks.push((
        format!("{label}, after recovery"),
        t.snapshot(),
        expected(sim),
        Mode::Complete,
    ));
}

fn kill_9_between_write_and_commit_loses_and_duplicates_nothing(d: Dest) {
    let Some(mut t) = Target::new(d) else { return };
    let sim = sim_with(|c| {
        c.leads = 500;
        c.malformed_every = Some(97);
    });
    let write_point = format!("{}.write.after", d.scheme());
    let points: [(&str, &[u32]); 6] = [
        (&write_point, &[1, 2, 3]),
        ("files.staged.synced", &[1, 2, 3]),
        ("state.commit.before", &[1, 2, 3]),
        ("state.commit.after", &[1, 2, 3]),
        ("files.renamed", &[1, 2]),
        ("leads.cursor.staged", &[1]),
    ];
    // (label, snapshot, expected, mode), checked together at the end (one reader call).
    let mut checks: Vec<(String, PathBuf, Expected, Mode)> = Vec::new();
    let mut killed_at: BTreeMap<String, u32> = BTreeMap::new();
    let mut round = 0;
    t.sync(&sim, PAGE);
    for (point, nths) in points {
        for &nth in nths {
            churn(&sim, round);
            round += 1;
            let spec = format!("{point}:{nth}");
            let mut cmd = t.cmd(&sim, PAGE);
            cmd.env("CTGO_TEST_CRASH_AT", &spec);
            let run = Run::from_output(cmd.output().expect("run ctgo-export"));
            if run.code == 137 {
                *killed_at.entry(point.to_string()).or_default() += 1;
            } else {
                // Fewer steps than `nth` in this run (or none, for this destination).
                assert_eq!(run.code, 0, "{d:?} {spec}: {}", run.stderr);
            }
            recover_and_snapshot(&mut t, &sim, d, spec.clone(), &mut checks);
        }
    }
    // A crash, then another crash inside the run that recovers from it, then a clean run.
    let mut double_kills = 0;
    for (first, second) in [
        ("state.commit.after:1", "files.renamed:1"),
        ("files.staged.synced:2", "state.commit.before:1"),
        ("state.commit.after:2", "state.commit.after:1"),
        ("leads.cursor.staged:1", "files.staged.synced:1"),
    ] {
        churn(&sim, round);
        round += 1;
        for spec in [first, second] {
            let mut cmd = t.cmd(&sim, PAGE);
            cmd.env("CTGO_TEST_CRASH_AT", spec);
            let run = Run::from_output(cmd.output().expect("run ctgo-export"));
            if run.code == 137 {
                double_kills += 1;
            } else {
                assert_eq!(run.code, 0, "{d:?} {first} then {spec}: {}", run.stderr);
            }
        }
        recover_and_snapshot(
            &mut t,
            &sim,
            d,
            format!("{first} then {second}"),
            &mut checks,
        );
    }
    assert!(
        double_kills >= 4,
        "{d:?}: only {double_kills} double-crash runs were killed"
    );
    // A few seeded random instants.
    sim.update(|c| c.latency_ms = 30);
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_123);
    let mut random_kills = 0;
    for k in 0..4 {
        churn(&sim, round);
        round += 1;
        let mut child = t
            .cmd(&sim, PAGE)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ctgo-export");
        std::thread::sleep(Duration::from_millis(rng.random_range(20..300)));
        let _ = child.kill(); // SIGKILL
        if child.wait().expect("wait").code().is_none() {
            random_kills += 1;
        }
        recover_and_snapshot(&mut t, &sim, d, format!("random kill {k}"), &mut checks);
    }
    sim.update(|c| c.latency_ms = 0);

    let dirs: Vec<PathBuf> = checks.iter().map(|c| c.1.clone()).collect();
    let found = t.read_many(&dirs);
    let mut left_hidden = 0;
    // Every check, then one report: which crash points break what.
    let mut failed = Vec::new();
    for ((label, _, exp, mode), f) in checks.iter().zip(&found) {
        if *mode == Mode::Partial && !f.hidden.is_empty() {
            left_hidden += 1;
        }
        let bad = violations(f, exp, d, *mode);
        if !bad.is_empty() {
            failed.push(format!(
                "{label} ({mode:?}):\n    - {}",
                bad.join("\n    - ")
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{d:?}: {} of {} checks after crashes fail:\n  {}",
        failed.len(),
        checks.len(),
        failed.join("\n  ")
    );
    let kills: u32 = killed_at.values().sum();
    eprintln!("{d:?}: killed at {killed_at:?}; {random_kills} of 4 random kills hit a running job");
    for point in [
        write_point.as_str(),
        "state.commit.before",
        "state.commit.after",
    ] {
        assert!(
            killed_at.get(point).copied().unwrap_or(0) >= 2,
            "{d:?}: {point} was hardly reached: {killed_at:?}"
        );
    }
    if d.files() {
        for point in ["files.staged.synced", "files.renamed"] {
            assert!(
                killed_at.get(point).copied().unwrap_or(0) >= 1,
                "{d:?}: {point} was never reached: {killed_at:?}"
            );
        }
        assert!(
            left_hidden > 0,
            "{d:?}: no crash left a hidden staged file, so recovery was not exercised"
        );
        assert!(kills >= 12, "{d:?}: only {kills} runs were killed");
    } else {
        assert!(kills >= 6, "{d:?}: only {kills} runs were killed");
    }
}

/// Kills during a full refresh, at its steps (a page staged, the tombstones staged with the
/// cursor, each state commit): after the run that recovers, each gone lead is marked deleted
/// exactly once (files: one data row and one tombstone), its data kept, and the ledger counts
/// each deletion once.
fn a_kill_during_a_full_refresh_marks_each_gone_lead_once(d: Dest) {
    let write_point = format!("{}.write.after", d.scheme());
    let mut killed = 0;
    for spec in [
        "leads.cursor.staged:1".to_string(),
        format!("{write_point}:1"),
        "state.commit.before:1".to_string(),
        "state.commit.after:1".to_string(),
        "state.commit.after:3".to_string(),
    ] {
        // Each from the start: the gone leads not yet marked.
        let Some(t) = Target::new(d) else { return };
        let sim = sim(300);
        t.sync(&sim, PAGE);
        let gone: Vec<i64> = expected(&sim)
            .leads
            .keys()
            .copied()
            .skip(5)
            .step_by(50)
            .collect();
        sim.remove_leads(&gone);
        let full = ["--page-size", "100", "--full-refresh"];
        let mut cmd = t.cmd(&sim, &full);
        cmd.env("CTGO_TEST_CRASH_AT", &spec);
        let run = Run::from_output(cmd.output().expect("run ctgo-export"));
        match run.code {
            137 => killed += 1,
            0 => {}
            code => panic!("{d:?} {spec}: exit {code}: {}", run.stderr),
        }
        let job = t.sync(&sim, &full);
        let mut exp = expected(&sim);
        exp.deleted = gone.iter().copied().collect();
        let found = t.read();
        verify(
            &found,
            &exp,
            d,
            Mode::Complete,
            &format!("full refresh killed at {spec}"),
        );
        let all = versions(&found.leads);
        for id in &gone {
            let v = &all[id];
            let tombstones = v.iter().filter(|r| is_deleted(r)).count();
            assert_eq!(
                tombstones, 1,
                "{d:?} {spec}: lead {id}: {tombstones} tombstones"
            );
            if d.files() {
                assert_eq!(v.len(), 2, "{d:?} {spec}: lead {id}: {} versions", v.len());
            }
        }
        let deleted: u64 = found
            .jobs
            .iter()
            .filter_map(|j| j.get("entities_deleted").and_then(Value::as_u64))
            .sum();
        assert_eq!(
            deleted,
            gone.len() as u64,
            "{d:?} {spec}: the ledger's deletions; last job {job}"
        );
    }
    eprintln!("{d:?}: {killed} of 5 full refreshes killed");
    assert!(killed >= 3, "{d:?}: only {killed} runs were killed");
}

/// A job that fails on the API (a 404 on the 4th leads request) keeps the pages it read, and
/// their counts commit with them: a kill right after any state commit of such a job, or none,
/// leaves the ledger adding up to the rows once the next run has recovered.
fn a_failed_job_commits_its_pages_with_their_counts(d: Dest) {
    let Some(mut t) = Target::new(d) else { return };
    let sim = sim_with(|c| c.leads = 500);
    t.sync(&sim, PAGE);
    let mut checks: Vec<(String, PathBuf, Expected, Mode)> = Vec::new();
    let mut killed = 0;
    for (round, spec) in [None, Some(1), Some(2), Some(3), Some(4)]
        .into_iter()
        .enumerate()
    {
        churn(&sim, round);
        sim.add_leads(400);
        sim.update(|c| {
            c.faults = FaultPlan::always(FaultKind::NotFound)
                .on(FaultEndpoint::Leads)
                .after(3)
        });
        let mut cmd = t.cmd(&sim, PAGE);
        if let Some(n) = spec {
            cmd.env("CTGO_TEST_CRASH_AT", format!("state.commit.after:{n}"));
        }
        let run = Run::from_output(cmd.output().expect("run ctgo-export"));
        match run.code {
            137 => killed += 1,
            1 => {
                let job = run.job();
                assert_eq!(job["status"], "FAILED", "{d:?} {spec:?}: {job}");
                assert!(
                    leads_counts(&job).0 > 0,
                    "{d:?} {spec:?}: no page kept: {job}"
                );
            }
            code => panic!("{d:?} {spec:?}: exit {code}: {}", run.stderr),
        }
        sim.update(|c| c.faults = FaultPlan::default());
        recover_and_snapshot(
            &mut t,
            &sim,
            d,
            format!("404, then kill at commit {spec:?}"),
            &mut checks,
        );
    }
    assert_checks(&t, d, &checks, "failed jobs");
    assert!(killed >= 2, "{d:?}: only {killed} runs were killed");
}

/// A SIGINT at the N-th staged page: the job ends CANCELLED, what it committed stays, and its
/// counts in the ledger are those of what it committed (not of pages rolled back, not of the
/// ledger as it was before the pages it did commit), so the ledger keeps adding up to the rows.
fn an_interrupt_keeps_the_ledger_in_step_with_the_data(d: Dest) {
    let Some(mut t) = Target::new(d) else { return };
    let sim = sim_with(|c| {
        c.leads = 500;
        c.malformed_every = Some(97);
    });
    let write_point = format!("{}.write.after", d.scheme());
    let mut checks: Vec<(String, PathBuf, Expected, Mode)> = Vec::new();
    let mut cancelled = 0;
    t.sync(&sim, PAGE);
    for (round, nth) in [1u32, 2, 3].into_iter().enumerate() {
        churn(&sim, round);
        let spec = format!("{write_point}:{nth}");
        let mut cmd = t.cmd(&sim, PAGE);
        cmd.env("CTGO_TEST_INTERRUPT_AT", &spec);
        let run = Run::from_output(cmd.output().expect("run ctgo-export"));
        match run.code {
            130 => {
                cancelled += 1;
                let job = run.job();
                assert_eq!(job["status"], "CANCELLED", "{d:?} {spec}: {job}");
                // The pages staged before the signal commit with their counts (a Parquet or
                // CSV file in progress too): the job counts what it committed, and it
                // committed something.
                let rows = t
                    .read()
                    .leads
                    .iter()
                    .filter(|r| r["_job_id"] == job["id"])
                    .count() as u64;
                let (ins, upd, _, _) = leads_counts(&job);
                assert_eq!(ins + upd, rows, "{d:?} {spec}: {job}");
                assert!(rows > 0, "{d:?} {spec}: {job}");
            }
            // The job reached its end before the signal was handled.
            0 => {}
            code => panic!("{d:?} {spec}: exit status {code}: {}", run.stderr),
        }
        recover_and_snapshot(&mut t, &sim, d, spec, &mut checks);
    }
    assert!(
        cancelled >= 2,
        "{d:?}: only {cancelled} runs were cancelled"
    );
    assert_checks(&t, d, &checks, "interrupts");
}

/// Kill at the N-th `fsync`/`fdatasync`, or the N-th `rename`, with strace's fault injection:
/// the syscalls the commit protocols are made of, whatever the code path around them.
fn kill_at_the_nth_fsync_or_rename_with_strace(d: Dest) {
    let Some(mut t) = Target::new(d) else { return };
    if !have_strace() {
        return;
    }
    let sim = sim_with(|c| c.leads = 500);
    t.sync(&sim, PAGE);
    let mut checks: Vec<(String, PathBuf, Expected, Mode)> = Vec::new();
    let mut kills = 0;
    let mut round = 0;
    for (syscalls, nths) in [
        ("fsync,fdatasync", &[1, 2, 3, 4, 6][..]),
        ("rename,renameat,renameat2", &[1, 2, 3][..]),
    ] {
        for &n in nths {
            churn(&sim, round);
            round += 1;
            let run = under_strace(
                t.cmd(&sim, PAGE),
                syscalls,
                &format!("signal=KILL:when={n}"),
            );
            match run.code {
                137 => kills += 1,
                0 => {}
                code => panic!("{d:?} {syscalls} #{n}: exit {code}: {}", run.stderr),
            }
            let label = format!("kill at {syscalls} #{n}");
            recover_and_snapshot(&mut t, &sim, d, label.clone(), &mut checks);
        }
    }
    assert_checks(&t, d, &checks, "strace kills");
    eprintln!("{d:?}: strace killed {kills} of {round} runs");
    assert!(kills >= 5, "{d:?}: only {kills} runs were killed");
}

/// The LD_PRELOAD library built from `tests/it/killat.c`, once per test binary; `None`
/// without a C compiler (CI has one: the bundled SQLite is compiled with it).
fn killat_library() -> Option<&'static Path> {
    static LIB: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    LIB.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("killat.so");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/killat.c");
        let built = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&out)
            .arg(&src)
            .arg("-ldl")
            .status()
            .is_ok_and(|s| s.success());
        assert!(built || !in_ci(), "cc must build tests/it/killat.c in CI");
        if !built {
            eprintln!("skipping: cc could not build tests/it/killat.c");
        }
        built.then_some(out)
    })
    .as_deref()
}

/// `cmd` with the kill library preloaded: SIGKILL at the `n`-th call to fsync, fdatasync,
/// rename, ftruncate or unlink of the whole process (before it, or just after it returned).
fn killed_at_call(mut cmd: std::process::Command, lib: &Path, n: u32, after: bool) -> Run {
    cmd.env("LD_PRELOAD", lib)
        .env("KILLAT_N", n.to_string())
        .env("KILLAT_AFTER", if after { "1" } else { "0" });
    Run::from_output(cmd.output().expect("run ctgo-export"))
}

/// Exactly once at every durability step, counted across threads: a run is killed before,
/// and in another round just after, each of its calls to fsync, fdatasync, rename, ftruncate
/// and unlink (the SQLite journal's, the staged files', the directories'), whichever thread
/// makes it, and the next run must recover the destination exactly. (strace's `when=N`
/// counts per thread, so it cannot aim at the N-th commit of a process whose stages run on
/// threads of their own.)
fn kill_at_every_durability_call_of_a_run(d: Dest) {
    let Some(mut t) = Target::new(d) else { return };
    let Some(lib) = killat_library() else { return };
    let sim = sim_with(|c| {
        c.leads = 300;
        c.malformed_every = Some(53);
    });
    t.sync(&sim, PAGE);
    // How many such calls an incremental run makes (the churn keeps runs alike).
    churn(&sim, 0);
    let counter = t.tmp.path("calls");
    let mut cmd = t.cmd(&sim, PAGE);
    cmd.env("LD_PRELOAD", lib).env("KILLAT_COUNT", &counter);
    Run::from_output(cmd.output().expect("run ctgo-export")).assert_code(0);
    let calls: u32 = std::fs::read_to_string(&counter)
        .expect("the call count")
        .trim()
        .parse()
        .expect("a number");
    assert!(calls >= 5, "{d:?}: only {calls} durability calls in a run");
    let mut checks: Vec<(String, PathBuf, Expected, Mode)> = Vec::new();
    let mut kills = 0;
    let mut round = 1;
    for after in [false, true] {
        for n in 1..=calls {
            churn(&sim, round);
            round += 1;
            let run = killed_at_call(t.cmd(&sim, PAGE), lib, n, after);
            match run.code {
                137 => kills += 1,
                // This run made fewer calls than `n`.
                0 => {}
                code => panic!(
                    "{d:?} call #{n} (after: {after}): exit {code}: {}",
                    run.stderr
                ),
            }
            let when = if after { "after" } else { "before" };
            let label = format!("killed {when} durability call #{n}");
            recover_and_snapshot(&mut t, &sim, d, label, &mut checks);
        }
    }
    assert_checks(&t, d, &checks, "kills at durability calls");
    eprintln!(
        "{d:?}: killed {kills} of {} runs ({calls} calls a run)",
        2 * calls
    );
    assert!(kills >= calls, "{d:?}: only {kills} runs were killed");
}

/// A full disk at the N-th `pwrite` (SQLite's writes: the SQLite destination, and the state
/// store of the file destinations), injected with strace: the job fails with a clear message
/// and exit 1, nothing half-staged is committed, and the next run completes the set exactly.
fn a_full_disk_fails_the_job_and_loses_nothing(d: Dest) {
    let Some(mut t) = Target::new(d) else { return };
    if !have_strace() {
        return;
    }
    let sim = sim_with(|c| c.leads = 500);
    t.sync(&sim, PAGE);
    let mut checks: Vec<(String, PathBuf, Expected, Mode)> = Vec::new();
    let mut failed_jobs = 0;
    // Every pwrite from the first state commits to past the job's end: which step the N-th
    // one falls in moves whenever the code does.
    let nths: Vec<u32> = std::iter::once(1).chain(9..=44).collect();
    for (round, &n) in nths.iter().enumerate() {
        churn(&sim, round);
        let run = under_strace(
            t.cmd(&sim, PAGE),
            "pwrite64",
            &format!("error=ENOSPC:when={n}"),
        );
        match run.code {
            0 => {}
            1 => {
                assert!(
                    run.stderr.contains("disk"),
                    "{d:?} ENOSPC at pwrite #{n}: {}",
                    run.stderr
                );
                if !run.stdout.trim().is_empty() {
                    let job = run.job();
                    assert_eq!(job["status"], "FAILED", "{d:?} pwrite #{n}: {job}");
                    failed_jobs += 1;
                }
            }
            code => panic!("{d:?} ENOSPC at pwrite #{n}: exit {code}: {}", run.stderr),
        }
        let label = format!("ENOSPC at pwrite #{n}");
        recover_and_snapshot(&mut t, &sim, d, label, &mut checks);
    }
    assert_checks(&t, d, &checks, "a full disk");
    eprintln!(
        "{d:?}: {failed_jobs} of {} jobs failed on a full disk",
        nths.len()
    );
    assert!(failed_jobs >= 8, "{d:?}: only {failed_jobs} jobs failed");
}

/// Regression: the job a crash interrupted must reach the destination's `export_jobs` even when
/// the run that recovers it is itself killed before it finished writing that record.
fn a_crash_during_recovery_keeps_the_job_ledger_whole(d: Dest) {
    let Some(t) = Target::new(d) else { return };
    let sim = sim(300);
    // The leads commit, then the run dies before the sync_runs commit (file destinations;
    // SQLite dies at its first write); the next run dies at its first state commit, which
    // for a file destination is the recovery's own job-record commit.
    let first = if d.files() {
        "files.staged.synced:2"
    } else {
        "sqlite.write.after:1"
    };
    for spec in [first, "state.commit.before:1"] {
        let mut cmd = t.cmd(&sim, PAGE);
        cmd.env("CTGO_TEST_CRASH_AT", spec);
        let run = Run::from_output(cmd.output().expect("run ctgo-export"));
        assert_eq!(
            run.code, 137,
            "{d:?}: {spec} was not reached: {}",
            run.stderr
        );
    }
    t.sync(&sim, PAGE);
    // The ledger the `jobs` command shows, against the ledger the destination holds.
    let out = command()
        .args(["jobs", "--json", "--dest", &t.uri()])
        .output()
        .expect("run ctgo-export jobs");
    let run = Run::from_output(out);
    run.assert_code(0);
    let ledger: BTreeMap<String, String> = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|j| {
            (
                j["id"].as_str().unwrap_or("").to_string(),
                j["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let found = t.read();
    let held: BTreeMap<String, String> = found
        .jobs
        .iter()
        .map(|j| {
            let s = |c: &str| j.get(c).and_then(Value::as_str).unwrap_or("").to_string();
            (s("id"), s("status"))
        })
        .collect();
    assert_eq!(
        held, ledger,
        "{d:?}: export_jobs in the destination vs `ctgo-export jobs`"
    );
    verify(
        &found,
        &expected(&sim),
        d,
        Mode::Complete,
        "after a crash during recovery",
    );
}

fn malformed_records_are_counted_and_kept_in_rejects(d: Dest) {
    let Some(t) = Target::new(d) else { return };
    let sim = sim_with(|c| {
        c.leads = 400;
        c.malformed_every = Some(40);
    });
    let job = t.sync(&sim, PAGE);
    let failed = leads_counts(&job).3;
    let malformed = sim.malformed_ids();
    assert!(!malformed.is_empty());
    assert!(failed >= malformed.len() as u64, "{d:?}: {job}");
    let found = check(&t, &sim, Mode::Complete, "malformed records");
    let leads_rejects = found
        .rejects
        .iter()
        .filter(|r| r.get("table").and_then(Value::as_str) == Some("leads"))
        .count();
    assert_eq!(
        leads_rejects as u64, failed,
        "{d:?}: rejects hold every failed lead"
    );
    if d.files() {
        assert!(
            !found.files["rejects"].is_empty(),
            "{d:?}: no file in DIR/rejects/"
        );
    }
    // Still in the lookback window next time: not counted or stored again.
    let job = t.sync(&sim, PAGE);
    assert_eq!(leads_counts(&job), (0, 0, 0, 0), "{d:?}: {job}");
    let again = check(&t, &sim, Mode::Complete, "malformed records, re-run");
    assert_eq!(again.rejects.len(), found.rejects.len(), "{d:?}");
}

fn unknown_fields_land_in_extra(d: Dest) {
    let Some(t) = Target::new(d) else { return };
    let sim = sim(400);
    t.sync(&sim, PAGE);
    // The content check compares `extra` with every unknown field the API served.
    let found = check(&t, &sim, Mode::Complete, "unknown fields");
    let extras: Vec<Value> = found
        .leads
        .iter()
        .filter_map(|r| r.get("extra").and_then(Value::as_str))
        .filter_map(|s| serde_json::from_str(s).ok())
        .collect();
    for (what, hit) in [
        (
            "linkedinUrl",
            extras.iter().any(|e| e["linkedinUrl"].is_string()),
        ),
        ("email", extras.iter().any(|e| e["email"].is_string())),
        (
            "feedbackStatus",
            extras.iter().any(|e| e["feedbackStatus"].is_string()),
        ),
        (
            "profile.location",
            extras.iter().any(|e| e["profile"]["location"].is_string()),
        ),
    ] {
        assert!(hit, "{d:?}: no lead kept {what} in extra");
    }
}

fn full_refresh_marks_gone_leads_deleted_and_keeps_them(d: Dest) {
    let Some(t) = Target::new(d) else { return };
    let sim = sim(300);
    t.sync(&sim, PAGE);
    let before = expected(&sim);
    let gone: Vec<i64> = before.leads.keys().copied().take(3).collect();
    sim.remove_leads(&gone);
    let job = t.sync(&sim, &["--page-size", "100", "--full-refresh"]);
    let (ins, upd, del, _) = leads_counts(&job);
    assert_eq!((ins, upd, del), (0, 0, 3), "{d:?}: {job}");
    let mut exp = expected(&sim);
    exp.deleted = gone.iter().copied().collect();
    let found = t.read();
    verify(&found, &exp, d, Mode::Complete, "full refresh");
    let all = versions(&found.leads);
    for id in &gone {
        let v = &all[id];
        let newest = v.last().expect("a version");
        assert!(is_deleted(newest), "{d:?}: lead {id} is not marked");
        // The data is kept: in the marked row (SQLite) or the version before the tombstone.
        let kept = if d.files() {
            assert_eq!(v.len(), 2, "{d:?}: lead {id}: {} versions", v.len());
            assert!(!is_deleted(v[0]), "{d:?}: lead {id}");
            v[0]
        } else {
            newest
        };
        let diff = content_diff(kept, &before.leads[id], d);
        assert!(
            diff.is_empty(),
            "{d:?}: lead {id}'s data was not kept: {diff:?}"
        );
    }
    let rows = found.leads.len();
    let want = if d.files() {
        exp.leads.len() + 2 * gone.len()
    } else {
        exp.leads.len() + gone.len()
    };
    assert_eq!(rows, want, "{d:?}: lead rows after a full refresh");
    // A second full refresh deletes nothing more and writes no second tombstone.
    let job = t.sync(&sim, &["--page-size", "100", "--full-refresh"]);
    assert_eq!(leads_counts(&job), (0, 0, 0, 0), "{d:?}: {job}");
    let again = t.read();
    verify(&again, &exp, d, Mode::Complete, "second full refresh");
    assert_eq!(again.leads.len(), rows, "{d:?}");
}

/// The checks above are worth something only if they fail on a broken destination: break a
/// correct one in the ways the invariant names and watch each check fire.
fn the_invariant_catches_lost_duplicated_and_half_written_rows(d: Dest) {
    let Some(t) = Target::new(d) else { return };
    let sim = sim(200);
    t.sync(&sim, PAGE);
    let exp = expected(&sim);
    verify(&t.read(), &exp, d, Mode::Complete, "intact");
    let fires = |needle: &str| {
        let found = t.read();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            verify(&found, &exp, d, Mode::Complete, "broken on purpose")
        }));
        let msg = match r {
            Ok(()) => panic!("{d:?}: the invariant missed a breakage ({needle})"),
            Err(p) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default(),
        };
        assert!(msg.contains(needle), "{d:?}: wanted {needle:?} in: {msg}");
    };
    let first = *exp.leads.keys().next().expect("a lead");
    match d {
        Dest::Sqlite => {
            let path = t.location();
            let conn = db(&path);
            conn.execute("UPDATE leads SET bio = 'edited' WHERE id = ?1", [first])
                .expect("edit");
            fires("differ from the API");
            conn.execute("DELETE FROM leads WHERE id = ?1", [first])
                .expect("delete");
            fires("missing 1");
        }
        Dest::Parquet | Dest::Csv => {
            let dir = t.location().join("leads");
            let name = t.read().files["leads"][0].clone();
            let file = dir.join(&name);
            let bytes = std::fs::read(&file).expect("read");
            let ext = if d == Dest::Parquet { "parquet" } else { "csv" };
            // The same file twice: every version stored twice.
            let copy = dir.join(format!("copy.{ext}"));
            std::fs::write(&copy, &bytes).expect("copy");
            fires("versions stored more than once");
            // Half a file under a visible name.
            std::fs::write(&copy, &bytes[..bytes.len() / 2]).expect("half");
            fires(if d == Dest::Parquet {
                "pyarrow cannot read it"
            } else {
                "does not end with CRLF"
            });
            std::fs::remove_file(&copy).expect("remove");
            // A staged file left behind.
            std::fs::write(dir.join(format!(".left-over.{ext}.tmp")), b"x").expect("hidden");
            fires("hidden files survive");
            std::fs::remove_file(dir.join(format!(".left-over.{ext}.tmp"))).expect("remove");
            // A lost file: its leads are missing.
            std::fs::rename(&file, dir.join(format!(".{name}"))).expect("hide");
            fires("missing");
            std::fs::rename(dir.join(format!(".{name}")), &file).expect("restore");
            if d == Dest::Csv {
                // A formula cell that lost its neutralising quote.
                let text = String::from_utf8(bytes.clone()).expect("utf-8");
                assert!(text.contains(",'="), "the file holds a neutralised cell");
                std::fs::write(&file, text.replacen(",'=", ",=", 1)).expect("edit");
                fires("differ from the API");
            }
        }
    }
}

/// `--csv-bom`: every file starts with the BOM, and still reads back exactly.
#[test]
fn csv_bom_option_marks_every_file() {
    let Some(mut t) = Target::new(Dest::Csv) else {
        return;
    };
    t.bom = true;
    let sim = sim(300);
    t.sync(&sim, PAGE);
    let ids: Vec<i64> = expected_ids(&sim).into_iter().rev().take(5).collect();
    sim.mark_exported(&ids);
    sim.add_leads(20);
    t.sync(&sim, PAGE);
    // `read_csv` checks the BOM of every file against `t.bom`, with both parsers.
    let found = check(&t, &sim, Mode::Complete, "--csv-bom");
    assert!(found.files["leads"].len() >= 2, "{:?}", found.files);
    let first = t.location().join("leads").join(&found.files["leads"][0]);
    let bytes = std::fs::read(&first).expect("read");
    assert!(bytes.starts_with(b"\xEF\xBB\xBFid,"), "{first:?}");
}

macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $scenario() { super::$scenario(super::Dest::Sqlite) } )*
        }
        mod parquet {
            $( #[test] fn $scenario() { super::$scenario(super::Dest::Parquet) } )*
        }
        mod csv {
            $( #[test] fn $scenario() { super::$scenario(super::Dest::Csv) } )*
        }
    };
}

conformance!(
    first_load_holds_the_api_lead_set,
    quiet_rerun_writes_nothing_and_asks_once,
    updates_are_counted_and_become_the_latest_version,
    same_second_and_late_leads_are_caught,
    arrivals_between_pages_are_exported_exactly_once,
    kill_9_between_write_and_commit_loses_and_duplicates_nothing,
    malformed_records_are_counted_and_kept_in_rejects,
    unknown_fields_land_in_extra,
    full_refresh_marks_gone_leads_deleted_and_keeps_them,
    the_invariant_catches_lost_duplicated_and_half_written_rows,
    a_crash_during_recovery_keeps_the_job_ledger_whole,
    kill_at_the_nth_fsync_or_rename_with_strace,
    kill_at_every_durability_call_of_a_run,
    an_interrupt_keeps_the_ledger_in_step_with_the_data,
    a_full_disk_fails_the_job_and_loses_nothing,
    a_kill_during_a_full_refresh_marks_each_gone_lead_once,
    a_failed_job_commits_its_pages_with_their_counts,
);
