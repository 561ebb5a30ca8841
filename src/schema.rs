//! The Arrow schemas of the four tables, loaded from `schemas/*.json` at build time.
//!
//! The files in `schemas/` are the one definition that users, docs and code share (their
//! format is described in `schemas/README.md`). They are embedded with `include_str!` and
//! parsed once, on first use, into [`SchemaRef`]s. Column order is the order in every
//! destination. A unit test proves that every file parses and holds the expected columns, so
//! a bad edit to a schema file fails the test suite rather than a user's export.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

/// The timezone of every timestamp column.
pub const TIMESTAMP_TZ: &str = "UTC";

/// One of the tables that every destination holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Leads,
    SyncRuns,
    ExportJobs,
    Rejects,
}

/// One column as the schema file describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// The column's name in every destination.
    pub name: String,
    /// The type as written in the file: `Int64`, `Float64`, `Utf8`, `Boolean`,
    /// `Timestamp(ms, UTC)`.
    #[serde(rename = "type")]
    pub type_name: String,
    pub nullable: bool,
    /// The API field it comes from (`profile.xUserId`), `*` for `extra`, None when the
    /// connector sets it.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub description: String,
}

/// A parsed schema file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDef {
    pub table: String,
    #[serde(default)]
    pub primary_key: Option<String>,
    #[serde(default)]
    pub description: String,
    pub columns: Vec<Column>,
}

/// Why a schema file could not be loaded (only ever a bad edit to `schemas/`).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schemas/{file}.json is not valid: {source}")]
    Json {
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "schemas/{file}.json: column `{column}` has unknown type `{type_name}` (use Int64, Float64, Utf8, Boolean or Timestamp(ms, UTC))"
    )]
    UnknownType {
        file: &'static str,
        column: String,
        type_name: String,
    },
    #[error("schemas/{file}.json names table `{found}`")]
    WrongTable { file: &'static str, found: String },
}

/// A table's definition and its Arrow schema, built once.
#[derive(Debug)]
struct Loaded {
    def: TableDef,
    schema: SchemaRef,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Leads,
        Table::SyncRuns,
        Table::ExportJobs,
        Table::Rejects,
    ];

    /// The table's name in every destination: `leads`, `sync_runs`, `export_jobs`, `rejects`.
    pub fn name(self) -> &'static str {
        match self {
            Table::Leads => "leads",
            Table::SyncRuns => "sync_runs",
            Table::ExportJobs => "export_jobs",
            Table::Rejects => "rejects",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The Arrow schema parsed from `schemas/<name>.json`.
    pub fn schema(self) -> SchemaRef {
        self.loaded().schema.clone()
    }

    /// The schema file's text as shipped (what `ctgo-export schema TABLE --raw` would print).
    pub fn schema_source(self) -> &'static str {
        match self {
            Table::Leads => include_str!("../schemas/leads.json"),
            Table::SyncRuns => include_str!("../schemas/sync_runs.json"),
            Table::ExportJobs => include_str!("../schemas/export_jobs.json"),
            Table::Rejects => include_str!("../schemas/rejects.json"),
        }
    }

    /// The columns with their source field and description, in destination order.
    pub fn columns(self) -> &'static [Column] {
        &self.loaded().def.columns
    }

    /// The column that identifies a row (`id`), if the table has one.
    pub fn primary_key(self) -> Option<&'static str> {
        self.loaded().def.primary_key.as_deref()
    }

    /// The table's one-line description from its schema file.
    pub fn description(self) -> &'static str {
        &self.loaded().def.description
    }

    fn loaded(self) -> &'static Loaded {
        static CELLS: [OnceLock<Loaded>; 4] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        CELLS[self as usize].get_or_init(|| {
            // The files are compiled in and checked by this module's tests, so a failure here
            // is a broken build, not something a user's input can cause.
            load(self).unwrap_or_else(|e| panic!("embedded schema is broken: {e}"))
        })
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parse a type string of the schema files into an Arrow type.
pub fn parse_type(s: &str) -> Option<DataType> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    Some(match compact.as_str() {
        "Int64" => DataType::Int64,
        "Float64" => DataType::Float64,
        "Utf8" => DataType::Utf8,
        "Boolean" => DataType::Boolean,
        "Timestamp(ms,UTC)" => timestamp_type(),
        _ => return None,
    })
}

/// `Timestamp(Millisecond, "UTC")`, the type of every timestamp column.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some(TIMESTAMP_TZ.into()))
}

fn load(table: Table) -> Result<Loaded, SchemaError> {
    let file = table.name();
    let def: TableDef = serde_json::from_str(table.schema_source())
        .map_err(|source| SchemaError::Json { file, source })?;
    if def.table != file {
        return Err(SchemaError::WrongTable {
            file,
            found: def.table,
        });
    }
    let fields = def
        .columns
        .iter()
        .map(|c| {
            let dt = parse_type(&c.type_name).ok_or_else(|| SchemaError::UnknownType {
                file,
                column: c.name.clone(),
                type_name: c.type_name.clone(),
            })?;
            Ok(Field::new(&c.name, dt, c.nullable))
        })
        .collect::<Result<Vec<_>, SchemaError>>()?;
    Ok(Loaded {
        def,
        schema: Arc::new(Schema::new(fields)),
    })
}

/// A human-readable description of one table, for `ctgo-export schema`.
///
/// ```text
/// leads (primary key: id)
///   One row per lead version, ...
///
///   column                type                 null  from
///   id                    Int64                no    id
/// ```
pub fn describe(table: Table) -> String {
    let cols = table.columns();
    let name_w = cols.iter().map(|c| c.name.len()).max().unwrap_or(0).max(6);
    let type_w = cols
        .iter()
        .map(|c| c.type_name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = String::new();
    match table.primary_key() {
        Some(pk) => {
            let _ = writeln!(out, "{} (primary key: {pk})", table.name());
        }
        None => {
            let _ = writeln!(out, "{}", table.name());
        }
    }
    if !table.description().is_empty() {
        let _ = writeln!(out, "  {}", table.description());
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  {:name_w$}  {:type_w$}  {:4}  from",
        "column", "type", "null"
    );
    for c in cols {
        let _ = writeln!(
            out,
            "  {:name_w$}  {:type_w$}  {:4}  {}",
            c.name,
            c.type_name,
            if c.nullable { "yes" } else { "no" },
            c.source.as_deref().unwrap_or("-"),
        );
        if !c.description.is_empty() {
            let _ = writeln!(out, "  {:name_w$}  {}", "", c.description);
        }
    }
    out
}

/// [`describe`] for every table, separated by blank lines.
pub fn describe_all() -> String {
    Table::ALL
        .into_iter()
        .map(describe)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts() -> DataType {
        timestamp_type()
    }

    fn expected(table: Table) -> Vec<(&'static str, DataType, bool)> {
        use DataType::{Float64, Int64, Utf8};
        match table {
            Table::Leads => vec![
                ("id", Int64, false),
                ("stream_id", Int64, true),
                ("tracked_x_account_id", Int64, true),
                ("segment_id", Int64, true),
                ("match_confidence", Utf8, true),
                ("source_type", Utf8, true),
                ("discovered_at", ts(), false),
                ("exported_at", ts(), true),
                ("x_user_id", Utf8, true),
                ("handle", Utf8, true),
                ("display_name", Utf8, true),
                ("profile_image_url", Utf8, true),
                ("follower_count", Int64, true),
                ("bio", Utf8, true),
                ("extra", Utf8, true),
                ("_extracted_at", ts(), false),
                ("_job_id", Utf8, false),
                ("_deleted_at", ts(), true),
            ],
            Table::SyncRuns => {
                let mut v = vec![
                    ("id", Int64, false),
                    ("stream_id", Int64, true),
                    ("stream_name", Utf8, true),
                    ("tracked_x_account_id", Int64, true),
                    ("x_handle", Utf8, true),
                    ("segment_id", Int64, true),
                    ("segment_name", Utf8, true),
                    ("source", Utf8, true),
                    ("status", Utf8, true),
                    ("mode", Utf8, true),
                    ("triggered_at", ts(), true),
                    ("completed_at", ts(), true),
                ];
                for c in [
                    "new_followers_count",
                    "existing_followers_count",
                    "likers_count",
                    "candidates_passed_count",
                    "tier_filtered_count",
                    "gender_filtered_count",
                    "medium_fit_count",
                    "enriched_count",
                    "filtered_out_count",
                    "deep_crawl_count",
                    "backfilled_count",
                ] {
                    v.push((c, Int64, true));
                }
                v.extend([
                    ("search_label", Utf8, true),
                    ("error_message", Utf8, true),
                    ("progress_log", Utf8, true),
                    ("extra", Utf8, true),
                    ("_extracted_at", ts(), false),
                    ("_job_id", Utf8, false),
                    ("_deleted_at", ts(), true),
                ]);
                v
            }
            Table::ExportJobs => vec![
                ("id", Utf8, false),
                ("source_connection_id", Utf8, false),
                ("status", Utf8, false),
                ("started_at", ts(), false),
                ("completed_at", ts(), true),
                ("duration_seconds", Float64, true),
                ("entities_inserted", Int64, false),
                ("entities_updated", Int64, false),
                ("entities_deleted", Int64, false),
                ("entities_failed", Int64, false),
                ("error", Utf8, true),
                ("error_details", Utf8, true),
                ("tables", Utf8, true),
            ],
            Table::Rejects => vec![
                ("job_id", Utf8, false),
                ("table", Utf8, false),
                ("reason", Utf8, false),
                ("raw", Utf8, false),
                ("rejected_at", ts(), false),
            ],
        }
    }

    #[test]
    fn every_schema_file_parses_and_matches_the_column_list() {
        for table in Table::ALL {
            let loaded = load(table).unwrap_or_else(|e| panic!("{table}: {e}"));
            let got: Vec<(&str, DataType, bool)> = loaded
                .schema
                .fields()
                .iter()
                .map(|f| (f.name().as_str(), f.data_type().clone(), f.is_nullable()))
                .collect();
            assert_eq!(got, expected(table), "{table}");
            assert_eq!(table.schema(), loaded.schema);
            for c in &loaded.def.columns {
                assert!(
                    !c.description.is_empty(),
                    "{table}.{} has no description",
                    c.name
                );
            }
        }
    }

    #[test]
    fn primary_keys() {
        assert_eq!(Table::Leads.primary_key(), Some("id"));
        assert_eq!(Table::SyncRuns.primary_key(), Some("id"));
        assert_eq!(Table::ExportJobs.primary_key(), Some("id"));
        assert_eq!(Table::Rejects.primary_key(), None);
    }

    #[test]
    fn sources_name_the_api_fields() {
        let by_name = |t: Table, n: &str| {
            t.columns()
                .iter()
                .find(|c| c.name == n)
                .and_then(|c| c.source.clone())
        };
        assert_eq!(
            by_name(Table::Leads, "x_user_id").as_deref(),
            Some("profile.xUserId")
        );
        assert_eq!(
            by_name(Table::Leads, "discovered_at").as_deref(),
            Some("discoveredAt")
        );
        assert_eq!(
            by_name(Table::SyncRuns, "likers_count").as_deref(),
            Some("likersCount")
        );
        assert_eq!(by_name(Table::Leads, "_job_id"), None);
    }

    #[test]
    fn type_strings() {
        assert_eq!(parse_type("Int64"), Some(DataType::Int64));
        assert_eq!(parse_type("Timestamp(ms, UTC)"), Some(ts()));
        assert_eq!(parse_type("Timestamp( ms ,UTC )"), Some(ts()));
        assert_eq!(parse_type("Int32"), None);
    }

    #[test]
    fn describe_lists_every_column() {
        for table in Table::ALL {
            let text = describe(table);
            assert!(text.starts_with(table.name()));
            for f in table.schema().fields() {
                assert!(text.contains(f.name().as_str()), "{table}: {}", f.name());
            }
        }
        let all = describe_all();
        assert!(all.contains("export_jobs") && all.contains("rejected_at"));
    }

    #[test]
    fn names_round_trip() {
        for t in Table::ALL {
            assert_eq!(Table::from_name(t.name()), Some(t));
            assert_eq!(t.to_string(), t.name());
        }
        assert_eq!(Table::from_name("nope"), None);
    }
}
