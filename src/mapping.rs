//! API records → Arrow `RecordBatch`es: the one mapping path that every destination writes.
//!
//! Guarantees:
//!
//! - **Each record on its own.** A record that does not fit becomes a [`Reject`] with a reason
//!   in the user's terms and its JSON text as received; it never affects the records around it.
//!   No input makes this module panic.
//! - **Nothing dropped.** Every field the schema does not name lands in `extra`, as JSON object
//!   text with sorted keys (unknown `profile` fields under `"profile"`), numbers kept as their
//!   exact JSON text.
//! - **Stable content hash.** [`RowKey::hash`] is xxh3-128 over a typed, length-prefixed
//!   encoding of every content column (all but `_extracted_at`, `_job_id`, `_deleted_at`), so the
//!   same content hashes the same whatever the key order or whitespace of the JSON, and any
//!   change of a mapped value changes it.
//!
//! Why hand-written rather than `arrow_json::reader::Decoder`: the decoder fails a whole batch
//! on one bad value and cannot say which record or field was wrong, cannot collect unknown
//! fields into `extra`, flatten `profile`, keep `xUserId` digits exact or normalise v1 runs. So
//! each record is parsed once into borrowed `(key, &RawValue)` pairs (no copy of unescaped
//! strings), each known field is converted with a precise reason on failure, and the values
//! are appended to pre-sized Arrow builders.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use tracing::debug;
use xxhash_rust::xxh3::xxh3_128;

use crate::schema::Table;

/// How many characters of an offending value a reject reason quotes.
pub const DEFAULT_REASON_VALUE_CHARS: usize = 80;

/// Bumped if the hash encoding ever changes (it would mark every row as updated once).
const HASH_DOMAIN: &[u8] = b"ctgo-row-v1\0";

/// Integral floats (`8200.0`) are accepted for counts only while they are exact.
const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0; // 2^53

/// What every mapped row carries besides its data.
#[derive(Debug, Clone)]
pub struct MapContext {
    /// `_extracted_at` for every row of this batch, in ms since the epoch (UTC).
    pub extracted_at_ms: i64,
    /// `_job_id` for every row.
    pub job_id: String,
    /// Rows whose cursor field (`discoveredAt`) is earlier are read but not staged: the
    /// `--since` floor of a leads export.
    pub floor_ms: Option<i64>,
}

/// The dedup key of one mapped row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowKey {
    pub id: i64,
    /// 128-bit hash of the row's content: every column except `_extracted_at`, `_job_id` and
    /// `_deleted_at`. Same content (whatever the key order or whitespace of the JSON) ⇒ same hash.
    pub hash: u128,
    /// `discoveredAt` in ms for leads; `triggeredAt` (or None) for runs.
    pub cursor_ms: Option<i64>,
    /// `stream_id` of the row, if any.
    pub stream_id: Option<i64>,
    /// Leads: always true. Runs: status is final (succeeded / completed / failed).
    pub finished: bool,
}

/// A record that could not be mapped.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub table: Table,
    /// In the user's terms: "`id` is not an integer: \"abc\"".
    pub reason: String,
    /// The record's JSON text as received.
    pub raw: String,
    /// The record's `id`, when that much of it is valid (an integer `id` with another field
    /// wrong): a full refresh must not take the record for one the API no longer returns.
    pub id: Option<i64>,
}

/// One page of records after mapping.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// Rows that mapped, with the schema of the table; row i has key `keys[i]`.
    pub batch: RecordBatch,
    pub keys: Vec<RowKey>,
    pub rejects: Vec<Reject>,
}

/// Map a page of leads, each record its JSON text. Rows keep the order of `records`, minus
/// the rejects.
pub fn map_leads(records: &[&str], ctx: &MapContext) -> Mapped {
    map_page(Table::Leads, records, ctx, map_lead)
}

/// Map a page of sync runs, v1 and v2 layouts alike.
pub fn map_runs(records: &[&str], ctx: &MapContext) -> Mapped {
    map_page(Table::SyncRuns, records, ctx, map_run)
}

/// The `rejects` table rows for these rejects.
pub fn rejects_batch(rejects: &[Reject], job_id: &str, rejected_at_ms: i64) -> RecordBatch {
    let mut b = Builders::new(Table::Rejects.schema(), rejects.len(), None);
    for r in rejects {
        b.push(&[
            Val::Text(Cow::Borrowed(job_id)),
            Val::Text(Cow::Borrowed(r.table.name())),
            Val::Text(Cow::Borrowed(&r.reason)),
            Val::Text(Cow::Borrowed(&r.raw)),
            Val::Ts(rejected_at_ms),
        ]);
    }
    b.finish()
}

// ---------------------------------------------------------------------------------------------
// Field layout of the two API records.

/// How a JSON field becomes a column value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A JSON integer, required.
    Id,
    /// An integer (integral floats accepted), nullable.
    Int,
    /// Open text; a non-string value is kept as its JSON text.
    Text,
    /// An RFC 3339 timestamp, nullable.
    Ts,
    /// An RFC 3339 timestamp that must be present.
    TsRequired,
    /// `profile.xUserId`: a digit string, or a JSON integer written as its digits.
    XUserId,
    /// Run status: open text, v1 `completed` written as `succeeded`.
    Status,
    /// Run progress log → JSON array text of entry objects.
    ProgressLog,
    /// The lead's nested `profile` object.
    Profile,
}

struct FieldSpec {
    /// The JSON key.
    key: &'static str,
    /// The path named in reject reasons.
    path: &'static str,
    kind: Kind,
    /// Index of the column in the table's schema (unused for `Profile`).
    col: usize,
    /// The column's name, checked against the schema file by a test.
    #[cfg_attr(not(test), allow(dead_code))]
    column: &'static str,
}

const fn f(key: &'static str, kind: Kind, col: usize, column: &'static str) -> FieldSpec {
    FieldSpec {
        key,
        path: key,
        kind,
        col,
        column,
    }
}

const fn p(
    key: &'static str,
    path: &'static str,
    kind: Kind,
    col: usize,
    column: &'static str,
) -> FieldSpec {
    FieldSpec {
        key,
        path,
        kind,
        col,
        column,
    }
}

const LEAD_FIELDS: [FieldSpec; 9] = [
    f("id", Kind::Id, 0, "id"),
    f("streamId", Kind::Int, 1, "stream_id"),
    f("trackedXAccountId", Kind::Int, 2, "tracked_x_account_id"),
    f("segmentId", Kind::Int, 3, "segment_id"),
    f("matchConfidence", Kind::Text, 4, "match_confidence"),
    f("sourceType", Kind::Text, 5, "source_type"),
    f("discoveredAt", Kind::TsRequired, 6, "discovered_at"),
    f("exportedAt", Kind::Ts, 7, "exported_at"),
    f("profile", Kind::Profile, usize::MAX, ""),
];

const PROFILE_FIELDS: [FieldSpec; 6] = [
    p("xUserId", "profile.xUserId", Kind::XUserId, 8, "x_user_id"),
    p("handle", "profile.handle", Kind::Text, 9, "handle"),
    p(
        "displayName",
        "profile.displayName",
        Kind::Text,
        10,
        "display_name",
    ),
    p(
        "profileImageUrl",
        "profile.profileImageUrl",
        Kind::Text,
        11,
        "profile_image_url",
    ),
    p(
        "followerCount",
        "profile.followerCount",
        Kind::Int,
        12,
        "follower_count",
    ),
    p("bio", "profile.bio", Kind::Text, 13, "bio"),
];

const LEAD_EXTRA: usize = 14;
const LEAD_CONTENT: usize = 15;

const RUN_FIELDS: [FieldSpec; 26] = [
    f("id", Kind::Id, 0, "id"),
    f("streamId", Kind::Int, 1, "stream_id"),
    f("streamName", Kind::Text, 2, "stream_name"),
    f("trackedXAccountId", Kind::Int, 3, "tracked_x_account_id"),
    f("xHandle", Kind::Text, 4, "x_handle"),
    f("segmentId", Kind::Int, 5, "segment_id"),
    f("segmentName", Kind::Text, 6, "segment_name"),
    f("source", Kind::Text, 7, "source"),
    f("status", Kind::Status, 8, "status"),
    f("mode", Kind::Text, 9, "mode"),
    f("triggeredAt", Kind::Ts, 10, "triggered_at"),
    f("completedAt", Kind::Ts, 11, "completed_at"),
    f("newFollowersCount", Kind::Int, 12, "new_followers_count"),
    f(
        "existingFollowersCount",
        Kind::Int,
        13,
        "existing_followers_count",
    ),
    f("likersCount", Kind::Int, 14, "likers_count"),
    f(
        "candidatesPassedCount",
        Kind::Int,
        15,
        "candidates_passed_count",
    ),
    f("tierFilteredCount", Kind::Int, 16, "tier_filtered_count"),
    f(
        "genderFilteredCount",
        Kind::Int,
        17,
        "gender_filtered_count",
    ),
    f("mediumFitCount", Kind::Int, 18, "medium_fit_count"),
    f("enrichedCount", Kind::Int, 19, "enriched_count"),
    f("filteredOutCount", Kind::Int, 20, "filtered_out_count"),
    f("deepCrawlCount", Kind::Int, 21, "deep_crawl_count"),
    f("backfilledCount", Kind::Int, 22, "backfilled_count"),
    f("searchLabel", Kind::Text, 23, "search_label"),
    f("errorMessage", Kind::Text, 24, "error_message"),
    f("progressLog", Kind::ProgressLog, 25, "progress_log"),
];

const RUN_STATUS: usize = 8;
const RUN_TRIGGERED_AT: usize = 10;
const RUN_EXTRA: usize = 26;
const RUN_CONTENT: usize = 27;

/// Column index of `stream_id` in both tables.
const STREAM_ID: usize = 1;
/// Column index of `discovered_at` in leads.
const LEAD_DISCOVERED_AT: usize = 6;

// ---------------------------------------------------------------------------------------------
// The page loop.

/// One column value of a row being mapped.
#[derive(Debug, Clone, PartialEq)]
enum Val<'a> {
    Null,
    Int(i64),
    Ts(i64),
    Text(Cow<'a, str>),
}

/// Buffers reused across the records of one page (they all borrow the same input).
struct Scratch<'a> {
    entries: Vec<(Cow<'a, str>, &'a RawValue)>,
    profile_entries: Vec<(Cow<'a, str>, &'a RawValue)>,
    unknown: Vec<(Cow<'a, str>, &'a RawValue)>,
    profile_unknown: Vec<(Cow<'a, str>, &'a RawValue)>,
    vals: Vec<Val<'a>>,
    hash_buf: Vec<u8>,
}

/// What a table-specific mapper returns for a record that fits.
struct RowMeta {
    cursor_ms: Option<i64>,
    finished: bool,
}

type RecordMapper = for<'a> fn(&'a str, &mut Scratch<'a>) -> Result<RowMeta, String>;

fn map_page(table: Table, records: &[&str], ctx: &MapContext, map_one: RecordMapper) -> Mapped {
    let content = match table {
        Table::Leads => LEAD_CONTENT,
        _ => RUN_CONTENT,
    };
    let mut builders = Builders::new(table.schema(), records.len(), Some(table.name()));
    let mut keys = Vec::with_capacity(records.len());
    let mut rejects = Vec::new();
    let mut s = Scratch {
        entries: Vec::with_capacity(32),
        profile_entries: Vec::with_capacity(16),
        unknown: Vec::new(),
        profile_unknown: Vec::new(),
        vals: Vec::with_capacity(content),
        hash_buf: Vec::with_capacity(1024),
    };
    for &raw in records {
        s.vals.clear();
        s.vals.resize(content, Val::Null);
        match map_one(raw, &mut s) {
            Ok(meta) => {
                let Val::Int(id) = s.vals[0] else {
                    // Both mappers set the id or fail; keep the promise not to panic anyway.
                    rejects.push(reject(table, "`id` is missing".into(), raw));
                    continue;
                };
                let stream_id = match s.vals[STREAM_ID] {
                    Val::Int(v) => Some(v),
                    _ => None,
                };
                let hash = row_hash(table, &s.vals, &mut s.hash_buf);
                builders.push(&s.vals);
                builders.push_meta(ctx);
                keys.push(RowKey {
                    id,
                    hash,
                    cursor_ms: meta.cursor_ms,
                    stream_id,
                    finished: meta.finished,
                });
            }
            Err(reason) => {
                debug!(table = table.name(), %reason, "Rejected record.");
                rejects.push(reject(table, reason, raw));
            }
        }
    }
    debug!(
        table = table.name(),
        rows = keys.len(),
        rejects = rejects.len(),
        "Mapped page."
    );
    Mapped {
        batch: builders.finish(),
        keys,
        rejects,
    }
}

fn reject(table: Table, reason: String, raw: &str) -> Reject {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: serde_json::Value,
    }
    // Rejects are rare: a second, lenient look at the record for its id alone.
    let id = serde_json::from_str::<IdOnly>(raw)
        .ok()
        .and_then(|r| r.id.as_i64());
    Reject {
        table,
        reason,
        raw: raw.to_owned(),
        id,
    }
}

fn map_lead<'a>(raw: &'a str, s: &mut Scratch<'a>) -> Result<RowMeta, String> {
    // One pass over the record, `profile`'s entries included; a `profile` that is neither an
    // object nor null (or given twice) goes the general way, which reports it exactly.
    require_object(raw)?;
    s.entries.clear();
    s.profile_entries.clear();
    let mut de = serde_json::Deserializer::from_str(raw);
    let found = LeadSeed {
        entries: &mut s.entries,
        profile: &mut s.profile_entries,
    }
    .deserialize(&mut de)
    .and_then(|found| de.end().map(|()| found))
    .map_err(|e| format!("the record could not be read: {e}"))?;
    if found == ProfileFound::Other {
        return map_lead_general(raw, s);
    }
    s.unknown.clear();
    convert_fields(&LEAD_FIELDS, &mut s.entries, &mut s.unknown, &mut s.vals)?;
    s.profile_unknown.clear();
    if found == ProfileFound::Object {
        convert_fields(
            &PROFILE_FIELDS,
            &mut s.profile_entries,
            &mut s.profile_unknown,
            &mut s.vals,
        )?;
    }
    lead_meta(s)
}

/// The two-pass mapping of a lead: the record's entries with `profile` as raw JSON, then
/// `profile`'s own entries.
fn map_lead_general<'a>(raw: &'a str, s: &mut Scratch<'a>) -> Result<RowMeta, String> {
    record_entries(raw, &mut s.entries)?;
    s.unknown.clear();
    let profile = convert_fields(&LEAD_FIELDS, &mut s.entries, &mut s.unknown, &mut s.vals)?;
    s.profile_unknown.clear();
    if let Some(praw) = profile {
        let text = praw.get().trim();
        if text != "null" {
            if !text.starts_with('{') {
                return Err(format!("`profile` is not an object: {}", quote(text)));
            }
            collect_entries(praw.get(), &mut s.entries)
                .map_err(|e| format!("`profile` could not be read: {e}"))?;
            convert_fields(
                &PROFILE_FIELDS,
                &mut s.entries,
                &mut s.profile_unknown,
                &mut s.vals,
            )?;
        }
    }
    lead_meta(s)
}

/// `extra` and the row's cursor, once the known fields are converted.
fn lead_meta(s: &mut Scratch<'_>) -> Result<RowMeta, String> {
    s.vals[LEAD_EXTRA] = extra(&mut s.unknown, &mut s.profile_unknown)?;
    let cursor_ms = match s.vals[LEAD_DISCOVERED_AT] {
        Val::Ts(ms) => Some(ms),
        _ => None,
    };
    Ok(RowMeta {
        cursor_ms,
        finished: true,
    })
}

fn map_run<'a>(raw: &'a str, s: &mut Scratch<'a>) -> Result<RowMeta, String> {
    record_entries(raw, &mut s.entries)?;
    s.unknown.clear();
    convert_fields(&RUN_FIELDS, &mut s.entries, &mut s.unknown, &mut s.vals)?;
    s.profile_unknown.clear();
    s.vals[RUN_EXTRA] = extra(&mut s.unknown, &mut s.profile_unknown)?;
    let finished = matches!(
        &s.vals[RUN_STATUS],
        Val::Text(st) if matches!(st.as_ref(), "succeeded" | "completed" | "failed")
    );
    let cursor_ms = match s.vals[RUN_TRIGGERED_AT] {
        Val::Ts(ms) => Some(ms),
        _ => None,
    };
    Ok(RowMeta {
        cursor_ms,
        finished,
    })
}

/// The record's top-level entries, or the reason it is not an object.
fn record_entries<'a>(
    raw: &'a str,
    out: &mut Vec<(Cow<'a, str>, &'a RawValue)>,
) -> Result<(), String> {
    require_object(raw)?;
    collect_entries(raw, out).map_err(|e| format!("the record could not be read: {e}"))
}

/// The reason a record is not a JSON object, if it is not.
fn require_object(raw: &str) -> Result<(), String> {
    let text = raw.trim();
    if !text.starts_with('{') {
        return Err(format!("the record is not a JSON object: {}", quote(text)));
    }
    Ok(())
}

/// Route `entries` into `specs` (the rest into `unknown`) and convert every known field into
/// its column of `vals`. `profile` is not converted: its raw value is returned.
fn convert_fields<'a, const N: usize>(
    specs: &[FieldSpec; N],
    entries: &mut Vec<(Cow<'a, str>, &'a RawValue)>,
    unknown: &mut Vec<(Cow<'a, str>, &'a RawValue)>,
    vals: &mut [Val<'a>],
) -> Result<Option<&'a RawValue>, String> {
    let mut slots = [None; N];
    route(entries, specs, &mut slots, unknown);
    let mut profile = None;
    for (spec, slot) in specs.iter().zip(slots) {
        if spec.kind == Kind::Profile {
            profile = slot;
        } else {
            vals[spec.col] = convert(spec, slot)?;
        }
    }
    Ok(profile)
}

/// Sort entries into the spec's slots (a repeated key: the last one wins, as in JSON parsers)
/// and the rest into `unknown`. Drains `entries`.
fn route<'a>(
    entries: &mut Vec<(Cow<'a, str>, &'a RawValue)>,
    specs: &[FieldSpec],
    slots: &mut [Option<&'a RawValue>],
    unknown: &mut Vec<(Cow<'a, str>, &'a RawValue)>,
) {
    for (key, value) in entries.drain(..) {
        match specs.iter().position(|s| s.key == key) {
            Some(i) => slots[i] = Some(value),
            None => unknown.push((key, value)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Field conversion.

fn convert<'a>(spec: &FieldSpec, slot: Option<&'a RawValue>) -> Result<Val<'a>, String> {
    let path = spec.path;
    let Some(raw) = slot else {
        return match spec.kind {
            Kind::Id | Kind::TsRequired => Err(format!("`{path}` is missing")),
            _ => Ok(Val::Null),
        };
    };
    let text = raw.get().trim();
    if text == "null" {
        return match spec.kind {
            Kind::Id | Kind::TsRequired => Err(format!("`{path}` is null")),
            _ => Ok(Val::Null),
        };
    }
    match spec.kind {
        Kind::Id => parse_int(text, false)
            .map(Val::Int)
            .map_err(|e| e.reason(path, text)),
        Kind::Int => parse_int(text, true)
            .map(Val::Int)
            .map_err(|e| e.reason(path, text)),
        Kind::Ts | Kind::TsRequired => {
            let ts = if text.starts_with('"') {
                json_str(text).ok().and_then(|s| parse_timestamp(&s))
            } else {
                None
            };
            ts.map(Val::Ts)
                .ok_or_else(|| format!("`{path}` is not an RFC 3339 timestamp: {}", quote(text)))
        }
        Kind::Text => text_value(path, text).map(Val::Text),
        Kind::Status => {
            let st = text_value(path, text)?;
            // v1 said `completed` where v2 says `succeeded`: one vocabulary in the table.
            Ok(Val::Text(if st == "completed" {
                Cow::Borrowed("succeeded")
            } else {
                st
            }))
        }
        Kind::XUserId => x_user_id(path, text).map(Val::Text),
        Kind::ProgressLog => progress_log(path, raw).map(|s| Val::Text(Cow::Owned(s))),
        Kind::Profile => Ok(Val::Null),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntError {
    NotInteger,
    OutOfRange,
}

impl IntError {
    fn reason(self, path: &str, text: &str) -> String {
        match self {
            IntError::NotInteger => format!("`{path}` is not an integer: {}", quote(text)),
            IntError::OutOfRange => {
                format!(
                    "`{path}` is out of the 64-bit integer range: {}",
                    quote(text)
                )
            }
        }
    }
}

/// A JSON number that is an integer. Integral floats (`8200.0`) pass when `allow_float` and
/// exact (|x| ≤ 2^53); strings, booleans and fractions do not.
fn parse_int(text: &str, allow_float: bool) -> Result<i64, IntError> {
    let first = text.as_bytes().first().copied().unwrap_or(b'x');
    if !(first == b'-' || first.is_ascii_digit()) {
        return Err(IntError::NotInteger);
    }
    if text.bytes().any(|c| matches!(c, b'.' | b'e' | b'E')) {
        if !allow_float {
            return Err(IntError::NotInteger);
        }
        // Decided on the digits, not on a rounded f64: `1.0000000000000001` is no integer,
        // and `9007199254740993.0` is no exact one.
        let v = decimal_integer(text)?;
        if v.unsigned_abs() > MAX_EXACT_FLOAT as u128 {
            return Err(IntError::OutOfRange);
        }
        return Ok(v as i64);
    }
    text.parse::<i64>().map_err(|_| IntError::OutOfRange)
}

/// The integer a JSON number in decimal or exponent form (`8200.0`, `1e3`, `-12.50e1`) is
/// exactly, from its digits; not an integer if any non-zero digit is left after the point.
fn decimal_integer(text: &str) -> Result<i128, IntError> {
    let (neg, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => {
            let exp = rest[i + 1..].trim_start_matches('+');
            // An exponent too long for i32 is far out of range either way (or, negative, no
            // integer unless the digits are all zero).
            let exp = exp.parse::<i32>().unwrap_or(if exp.starts_with('-') {
                i32::MIN
            } else {
                i32::MAX
            });
            (&rest[..i], i64::from(exp))
        }
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(IntError::NotInteger);
    }
    let mut digits = format!("{int}{frac}");
    let mut scale = exp - frac.len() as i64;
    while scale < 0 && digits.ends_with('0') {
        digits.pop();
        scale += 1;
    }
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0);
    }
    if scale < 0 {
        return Err(IntError::NotInteger);
    }
    if digits.len() as i64 + scale > 20 {
        return Err(IntError::OutOfRange);
    }
    let v: i128 = digits.parse().map_err(|_| IntError::OutOfRange)?;
    let v = v * 10i128.pow(scale as u32);
    Ok(if neg { -v } else { v })
}

/// RFC 3339 (`2026-06-02T09:01:00Z`, any offset, fractions truncated to ms) → ms since epoch.
fn parse_timestamp(s: &str) -> Option<i64> {
    utc_timestamp(s).or_else(|| rfc3339(s))
}

/// The API's usual shape, `YYYY-MM-DDTHH:MM:SS[.fff]Z`, without chrono's general parser (it is
/// a third of the decoding time otherwise). `None` for anything else, left to [`rfc3339`].
fn utc_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let millis = match b.len() {
        20 => 0,
        24 if b[19] == b'.' => num(&b[20..23])?,
        _ => return None,
    };
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if b[b.len() - 1] != b'Z' {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(
        num(&b[0..4])? as i32,
        num(&b[5..7])? as u32,
        num(&b[8..10])? as u32,
    )?;
    // Seconds 0..=59 only: a leap second goes the general way.
    let time = chrono::NaiveTime::from_hms_milli_opt(
        num(&b[11..13])? as u32,
        num(&b[14..16])? as u32,
        Some(num(&b[17..19])?).filter(|&s| s < 60)? as u32,
        millis as u32,
    )?;
    Some(date.and_time(time).and_utc().timestamp_millis())
}

/// ASCII digits → their value; `None` if any byte is not a digit.
fn num(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

/// Any RFC 3339 timestamp (any offset, fractions truncated to ms) → ms since epoch.
fn rfc3339(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// Open text: a string as is (borrowed when it has no escapes); any other value as its
/// canonical JSON text, so an odd type never costs the record.
fn text_value<'a>(path: &str, text: &'a str) -> Result<Cow<'a, str>, String> {
    if text.starts_with('"') {
        json_str(text).map_err(|e| unreadable(path, &e))
    } else {
        let mut out = String::new();
        write_canonical_text(&mut out, text).map_err(|e| unreadable(path, &e))?;
        Ok(Cow::Owned(out))
    }
}

/// `profile.xUserId`: a 64-bit number that must never pass through a float.
fn x_user_id<'a>(path: &str, text: &'a str) -> Result<Cow<'a, str>, String> {
    let first = text.as_bytes().first().copied().unwrap_or(b'x');
    if first == b'"' {
        return json_str(text).map_err(|e| unreadable(path, &e));
    }
    if first == b'-' || first.is_ascii_digit() {
        if text.bytes().any(|c| matches!(c, b'.' | b'e' | b'E')) {
            return Err(format!(
                "`{path}` is a float, which cannot hold a 64-bit id exactly: {}",
                quote(text)
            ));
        }
        // A JSON integer: its digits, exactly as sent.
        return Ok(Cow::Borrowed(text));
    }
    Err(format!(
        "`{path}` is not a string or an integer: {}",
        quote(text)
    ))
}

/// v2 `[{"step","message","timestamp"}]` or v1 `["text"]` → JSON array text of entry
/// objects; a plain string becomes `{"message": "…"}`. Entry objects keep all their keys,
/// sorted. A bare string or object (not in a list) is taken as a one-entry log.
fn progress_log(path: &str, raw: &RawValue) -> Result<String, String> {
    let text = raw.get().trim();
    let items: Vec<&RawValue> = match text.as_bytes().first() {
        Some(b'[') => serde_json::from_str(text).map_err(|e| unreadable(path, &e))?,
        Some(b'"') | Some(b'{') => vec![raw],
        _ => return Err(format!("`{path}` is not a list: {}", quote(text))),
    };
    let mut out = String::with_capacity(text.len() + 16);
    out.push('[');
    let mut first = true;
    for item in items {
        let t = item.get().trim();
        if t == "null" {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        match t.as_bytes().first() {
            Some(b'{') => write_canonical(&mut out, item).map_err(|e| unreadable(path, &e))?,
            Some(b'"') => {
                let s = json_str(t).map_err(|e| unreadable(path, &e))?;
                out.push_str("{\"message\":");
                push_json_str(&mut out, &s);
                out.push('}');
            }
            _ => {
                let mut inner = String::new();
                write_canonical_text(&mut inner, t).map_err(|e| unreadable(path, &e))?;
                out.push_str("{\"message\":");
                push_json_str(&mut out, &inner);
                out.push('}');
            }
        }
    }
    out.push(']');
    Ok(out)
}

/// `extra`: every unknown field, sorted, with unknown profile fields under `"profile"`.
fn extra<'a>(
    unknown: &mut [(Cow<'a, str>, &'a RawValue)],
    profile_unknown: &mut [(Cow<'a, str>, &'a RawValue)],
) -> Result<Val<'static>, String> {
    if unknown.is_empty() && profile_unknown.is_empty() {
        return Ok(Val::Null);
    }
    let profile = if profile_unknown.is_empty() {
        None
    } else {
        let mut p = String::new();
        write_sorted_object(&mut p, profile_unknown, None)
            .map_err(|e| format!("an unknown field of `profile` could not be read: {e}"))?;
        Some(p)
    };
    let size: usize = unknown
        .iter()
        .map(|(k, v)| k.len() + v.get().len() + 4)
        .sum();
    let mut out = String::with_capacity(size + profile.as_ref().map_or(0, |p| p.len() + 12) + 2);
    write_sorted_object(
        &mut out,
        unknown,
        profile.as_deref().map(|p| ("profile", p)),
    )
    .map_err(|e| format!("an unknown field could not be read: {e}"))?;
    Ok(Val::Text(Cow::Owned(out)))
}

fn unreadable(path: &str, e: &serde_json::Error) -> String {
    format!("`{path}` could not be read: {e}")
}

/// An offending value for a reason: its JSON text, cut to [`DEFAULT_REASON_VALUE_CHARS`].
fn quote(text: &str) -> String {
    match text.char_indices().nth(DEFAULT_REASON_VALUE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Borrowing JSON helpers and the canonical writer.

/// A JSON string, borrowed from the input when it holds no escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

fn json_str(text: &str) -> Result<Cow<'_, str>, serde_json::Error> {
    // Most strings have no escapes: their text between the quotes is the value. (`text` is
    // one JSON value read by serde_json, so it holds no raw control character; a quote inside
    // would mean it is not one string: left to serde_json to report.)
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'))
        && memchr::memchr2(b'\\', b'"', inner.as_bytes()).is_none()
    {
        return Ok(Cow::Borrowed(inner));
    }
    serde_json::from_str::<CowStr<'_>>(text)
        .map(|s| s.0)
        .or_else(|e| lone_surrogates_replaced(text).ok_or(e))
}

/// A JSON string with a lone UTF-16 surrogate escape (`"\ud83d"`: what JavaScript writes for a
/// text cut in the middle of an emoji, such as a truncated bio) has no UTF-8 form. Each lone
/// surrogate becomes U+FFFD, so the record keeps the rest of its text instead of being rejected
/// for half a character. `None` when `text` is not a string for another reason.
#[cold]
fn lone_surrogates_replaced(text: &str) -> Option<Cow<'static, str>> {
    struct Bytes;
    impl Visitor<'_> for Bytes {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
    // Read as bytes, serde_json decodes every escape and writes a lone surrogate in its
    // three-byte WTF-8 form (`ED A0..BF 80..BF`); everything else is UTF-8.
    let mut de = serde_json::Deserializer::from_str(text);
    let bytes = de.deserialize_bytes(Bytes).ok()?;
    de.end().ok()?;
    let mut out = String::with_capacity(bytes.len());
    let mut rest = &bytes[..];
    loop {
        match std::str::from_utf8(rest) {
            Ok(tail) => {
                out.push_str(tail);
                tracing::warn!(
                    "A string held a lone UTF-16 surrogate escape (half a character, such as a \
                     text cut inside an emoji); it was read as U+FFFD."
                );
                return Some(Cow::Owned(out));
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).ok()?);
                out.push('\u{FFFD}');
                rest = bad.get(3..)?;
            }
        }
    }
}

/// Appends an object's `(key, raw value)` pairs to `out` (cleared first), in input order.
struct EntriesSeed<'v, 'a>(&'v mut Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            self.0.push((key.0, value));
        }
        Ok(())
    }
}

/// What a lead's single pass found under `profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProfileFound {
    Absent,
    Null,
    Object,
    /// Anything else, or `profile` twice: for the general path.
    Other,
}

/// A lead's entries except `profile`, whose own entries go to `profile`, in one pass.
struct LeadSeed<'v, 'a> {
    entries: &'v mut Vec<(Cow<'a, str>, &'a RawValue)>,
    profile: &'v mut Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'de> DeserializeSeed<'de> for LeadSeed<'_, 'de> {
    type Value = ProfileFound;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ProfileFound, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LeadSeed<'_, 'de> {
    type Value = ProfileFound;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<ProfileFound, M::Error> {
        let mut found = ProfileFound::Absent;
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            if key.0 == "profile" {
                found = if found == ProfileFound::Absent {
                    map.next_value_seed(ProfileSeed(&mut *self.profile))?
                } else {
                    map.next_value::<&'de RawValue>()?;
                    ProfileFound::Other
                };
            } else {
                let value: &'de RawValue = map.next_value()?;
                self.entries.push((key.0, value));
            }
        }
        Ok(found)
    }
}

/// `profile`'s value: its entries if it is an object.
struct ProfileSeed<'v, 'a>(&'v mut Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> DeserializeSeed<'de> for ProfileSeed<'_, 'de> {
    type Value = ProfileFound;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ProfileFound, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ProfileSeed<'_, 'de> {
    type Value = ProfileFound;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<ProfileFound, M::Error> {
        EntriesSeed(self.0).visit_map(map)?;
        Ok(ProfileFound::Object)
    }
    fn visit_unit<E>(self) -> Result<ProfileFound, E> {
        Ok(ProfileFound::Null)
    }
    fn visit_none<E>(self) -> Result<ProfileFound, E> {
        Ok(ProfileFound::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<ProfileFound, E> {
        Ok(ProfileFound::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<ProfileFound, E> {
        Ok(ProfileFound::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<ProfileFound, E> {
        Ok(ProfileFound::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<ProfileFound, E> {
        Ok(ProfileFound::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<ProfileFound, E> {
        Ok(ProfileFound::Other)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ProfileFound, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(ProfileFound::Other)
    }
}

fn collect_entries<'a>(
    raw: &'a str,
    out: &mut Vec<(Cow<'a, str>, &'a RawValue)>,
) -> Result<(), serde_json::Error> {
    out.clear();
    let mut de = serde_json::Deserializer::from_str(raw);
    EntriesSeed(out).deserialize(&mut de)?;
    de.end()
}

/// Canonical JSON of a value: objects with sorted keys (a repeated key keeps its last value),
/// no whitespace, strings re-escaped the one way, numbers and literals as their exact text
/// (so big numbers stay exact). Same content ⇒ same text, whatever the input's layout.
fn write_canonical(out: &mut String, raw: &RawValue) -> Result<(), serde_json::Error> {
    write_canonical_text(out, raw.get())
}

fn write_canonical_text(out: &mut String, text: &str) -> Result<(), serde_json::Error> {
    let text = text.trim();
    match text.as_bytes().first() {
        Some(b'{') => {
            let mut entries = Vec::new();
            let mut de = serde_json::Deserializer::from_str(text);
            EntriesSeed(&mut entries).deserialize(&mut de)?;
            de.end()?;
            write_sorted_object(out, &mut entries, None)
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item)?;
            }
            out.push(']');
            Ok(())
        }
        // Without a backslash a JSON string is already in the one escaping `push_json_str`
        // writes (it can hold no quote or control character unescaped).
        Some(b'"') if memchr::memchr(b'\\', text.as_bytes()).is_none() => {
            out.push_str(text);
            Ok(())
        }
        Some(b'"') => {
            let s = json_str(text)?;
            push_json_str(out, &s);
            Ok(())
        }
        _ => {
            out.push_str(text);
            Ok(())
        }
    }
}

/// Writes `entries` as a canonical object, plus `inject` (a key with ready-made JSON text)
/// at its sorted place. `inject`'s key must not be among `entries`.
fn write_sorted_object(
    out: &mut String,
    entries: &mut [(Cow<'_, str>, &RawValue)],
    inject: Option<(&str, &str)>,
) -> Result<(), serde_json::Error> {
    // Stable sort: among repeated keys the last one stays last, and it is the one kept.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut inject = inject;
    out.push('{');
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !first {
            out.push(',');
        }
        first = false;
    };
    for i in 0..entries.len() {
        let (key, value) = &entries[i];
        if entries.get(i + 1).is_some_and(|next| next.0 == *key) {
            continue;
        }
        if let Some((ik, iv)) = inject
            && ik < key.as_ref()
        {
            sep(out);
            push_json_str(out, ik);
            out.push(':');
            out.push_str(iv);
            inject = None;
        }
        sep(out);
        push_json_str(out, key);
        out.push(':');
        write_canonical(out, value)?;
    }
    if let Some((ik, iv)) = inject {
        sep(out);
        push_json_str(out, ik);
        out.push(':');
        out.push_str(iv);
    }
    out.push('}');
    Ok(())
}

/// A JSON string literal, escaped as serde_json does.
fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{08}' => "\\b",
            '\u{0c}' => "\\f",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(esc);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// Content hash.

/// xxh3-128 over: a domain tag, the table, then each content column in schema order as
/// `0x00` (null) | `0x01 i64-le` (integer) | `0x02 i64-le` (timestamp) |
/// `0x03 u64-le length, bytes` (text). Fixed order + tags + lengths make it unambiguous.
fn row_hash(table: Table, vals: &[Val<'_>], buf: &mut Vec<u8>) -> u128 {
    buf.clear();
    buf.extend_from_slice(HASH_DOMAIN);
    buf.extend_from_slice(table.name().as_bytes());
    buf.push(0);
    for v in vals {
        match v {
            Val::Null => buf.push(0),
            Val::Int(i) => {
                buf.push(1);
                buf.extend_from_slice(&i.to_le_bytes());
            }
            Val::Ts(t) => {
                buf.push(2);
                buf.extend_from_slice(&t.to_le_bytes());
            }
            Val::Text(s) => {
                buf.push(3);
                buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
                buf.extend_from_slice(s.as_bytes());
            }
        }
    }
    xxh3_128(buf)
}

// ---------------------------------------------------------------------------------------------
// Arrow builders driven by the schema file.

enum ColBuilder {
    Int(Int64Builder),
    Str(StringBuilder),
    Ts(TimestampMillisecondBuilder),
}

/// A connector-set column after the content columns.
enum MetaCol {
    ExtractedAt,
    JobId,
    Null,
}

thread_local! {
    /// Text bytes per row of the last page mapped on this thread, per table and column.
    static TEXT_BYTES_PER_ROW: std::cell::RefCell<std::collections::HashMap<&'static str, Vec<usize>>> =
        Default::default();
}

struct Builders {
    /// Rows appended.
    rows: usize,
    table: Option<&'static str>,
    schema: SchemaRef,
    cols: Vec<ColBuilder>,
    meta: Vec<MetaCol>,
}

impl Builders {
    /// Builders for `rows` rows. With `table`, each text column reserves the bytes per row the
    /// last page of that table needed on this thread (plus an eighth), so most pages fill
    /// their buffers without regrowing them; the first page guesses.
    fn new(schema: SchemaRef, rows: usize, table: Option<&'static str>) -> Builders {
        let mut cols = Vec::with_capacity(schema.fields().len());
        let mut meta = Vec::new();
        let last: Vec<usize> = table
            .and_then(|t| TEXT_BYTES_PER_ROW.with_borrow(|m| m.get(t).cloned()))
            .unwrap_or_default();
        for (i, field) in schema.fields().iter().enumerate() {
            let per_row = last.get(i).map_or(24, |&b| b + b / 8 + 1);
            cols.push(match field.data_type() {
                DataType::Int64 => ColBuilder::Int(Int64Builder::with_capacity(rows)),
                DataType::Timestamp(_, _) => ColBuilder::Ts(
                    TimestampMillisecondBuilder::with_capacity(rows)
                        .with_data_type(field.data_type().clone()),
                ),
                // Text columns; a guess of the bytes per value saves most regrowth.
                _ => ColBuilder::Str(StringBuilder::with_capacity(rows, rows * per_row)),
            });
            match field.name().as_str() {
                "_extracted_at" => meta.push(MetaCol::ExtractedAt),
                "_job_id" => meta.push(MetaCol::JobId),
                "_deleted_at" => meta.push(MetaCol::Null),
                _ => {}
            }
        }
        Builders {
            rows: 0,
            table,
            schema,
            cols,
            meta,
        }
    }

    /// Appends `vals` to the first `vals.len()` columns.
    fn push(&mut self, vals: &[Val<'_>]) {
        self.rows += 1;
        for (b, v) in self.cols.iter_mut().zip(vals) {
            append(b, v);
        }
    }

    /// Appends the connector-set columns that follow the content columns.
    fn push_meta(&mut self, ctx: &MapContext) {
        let start = self.cols.len() - self.meta.len();
        for (b, m) in self.cols[start..].iter_mut().zip(&self.meta) {
            match m {
                MetaCol::ExtractedAt => append(b, &Val::Ts(ctx.extracted_at_ms)),
                MetaCol::JobId => append(b, &Val::Text(Cow::Borrowed(&ctx.job_id))),
                MetaCol::Null => append(b, &Val::Null),
            }
        }
    }

    fn finish(self) -> RecordBatch {
        if let Some(table) = self.table
            && self.rows > 0
        {
            let per_row = self
                .cols
                .iter()
                .map(|b| match b {
                    ColBuilder::Str(b) => b.values_slice().len() / self.rows,
                    _ => 0,
                })
                .collect();
            TEXT_BYTES_PER_ROW.with_borrow_mut(|m| m.insert(table, per_row));
        }
        let arrays: Vec<ArrayRef> = self
            .cols
            .into_iter()
            .map(|b| -> ArrayRef {
                match b {
                    ColBuilder::Int(mut b) => Arc::new(b.finish()),
                    ColBuilder::Str(mut b) => Arc::new(b.finish()),
                    ColBuilder::Ts(mut b) => Arc::new(b.finish()),
                }
            })
            .collect();
        // Column count, types and non-null columns are fixed by construction (required
        // fields are checked before a row is appended), so this cannot fail on any input.
        RecordBatch::try_new(self.schema, arrays)
            .expect("mapped columns match the table schema by construction")
    }
}

fn append(b: &mut ColBuilder, v: &Val<'_>) {
    match (b, v) {
        (ColBuilder::Int(b), Val::Int(i)) => b.append_value(*i),
        (ColBuilder::Ts(b), Val::Ts(t)) => b.append_value(*t),
        (ColBuilder::Str(b), Val::Text(s)) => b.append_value(s),
        (ColBuilder::Int(b), _) => b.append_null(),
        (ColBuilder::Ts(b), _) => b.append_null(),
        (ColBuilder::Str(b), _) => b.append_null(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMillisecondType};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    const LEADS_PAGE: &str = include_str!("../samples/api/leads-page.json");
    const RUNS_V2: &str = include_str!("../samples/api/runs-v2.json");
    const RUNS_V1: &str = include_str!("../samples/api/runs-v1.json");
    const STREAMS: &str = include_str!("../samples/api/streams.json");
    const ME: &str = include_str!("../samples/api/me.json");
    const ERROR_401: &str = include_str!("../samples/api/error-401.json");
    const ERROR_429_CREDITS: &str = include_str!("../samples/api/error-429-credits.json");

    const DOC_LEAD: &str = r#"{
      "id": 1234, "streamId": 42, "trackedXAccountId": 7, "segmentId": 12,
      "matchConfidence": "high", "sourceType": "new_follower",
      "discoveredAt": "2026-06-02T09:01:00Z", "exportedAt": null,
      "profile": {"xUserId": "1234567890", "handle": "alice", "displayName": "Alice Smith",
                  "profileImageUrl": "...", "followerCount": 8200, "bio": "..."}
    }"#;

    fn ctx() -> MapContext {
        MapContext {
            extracted_at_ms: 1_780_000_000_000,
            job_id: "job-1".into(),
            floor_ms: None,
        }
    }

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    /// The records under `key` of an envelope.
    fn page<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
        let env: HashMap<&'a str, &'a RawValue> = serde_json::from_str(text).unwrap();
        let records: Vec<&'a RawValue> = serde_json::from_str(env[key].get()).unwrap();
        records.into_iter().map(RawValue::get).collect()
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    fn lead(text: &str) -> Mapped {
        map_leads(&[text], &ctx())
    }

    fn run(text: &str) -> Mapped {
        map_runs(&[text], &ctx())
    }

    fn reason(m: &Mapped) -> String {
        assert_eq!(m.batch.num_rows(), 0, "expected a reject, got a row");
        assert_eq!(m.rejects.len(), 1);
        m.rejects[0].reason.clone()
    }

    fn int(b: &RecordBatch, col: &str, row: usize) -> Option<i64> {
        let a = b.column_by_name(col).unwrap().as_primitive::<Int64Type>();
        a.is_valid(row).then(|| a.value(row))
    }

    fn ts(b: &RecordBatch, col: &str, row: usize) -> Option<i64> {
        let a = b
            .column_by_name(col)
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        a.is_valid(row).then(|| a.value(row))
    }

    fn text(b: &RecordBatch, col: &str, row: usize) -> Option<String> {
        let a = b.column_by_name(col).unwrap().as_string::<i32>();
        a.is_valid(row).then(|| a.value(row).to_owned())
    }

    fn with(base: &str, edit: impl FnOnce(&mut Value)) -> String {
        let mut v: Value = serde_json::from_str(base).unwrap();
        edit(&mut v);
        v.to_string()
    }

    #[test]
    fn field_specs_match_the_schema_files() {
        let leads = Table::Leads.schema();
        for spec in LEAD_FIELDS.iter().chain(PROFILE_FIELDS.iter()) {
            if spec.kind != Kind::Profile {
                assert_eq!(leads.field(spec.col).name(), spec.column, "{}", spec.key);
            }
        }
        assert_eq!(leads.field(LEAD_EXTRA).name(), "extra");
        assert_eq!(leads.field(LEAD_DISCOVERED_AT).name(), "discovered_at");
        assert_eq!(leads.field(STREAM_ID).name(), "stream_id");
        assert_eq!(LEAD_CONTENT, leads.fields().len() - 3);
        let runs = Table::SyncRuns.schema();
        for spec in &RUN_FIELDS {
            assert_eq!(runs.field(spec.col).name(), spec.column, "{}", spec.key);
        }
        assert_eq!(runs.field(RUN_EXTRA).name(), "extra");
        assert_eq!(runs.field(RUN_STATUS).name(), "status");
        assert_eq!(runs.field(RUN_TRIGGERED_AT).name(), "triggered_at");
        assert_eq!(runs.field(STREAM_ID).name(), "stream_id");
        assert_eq!(RUN_CONTENT, runs.fields().len() - 3);
        for s in [&leads, &runs] {
            let n = s.fields().len();
            let tail: Vec<&str> = s.fields()[n - 3..]
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            assert_eq!(tail, ["_extracted_at", "_job_id", "_deleted_at"]);
        }
    }

    #[test]
    fn serde_json_keeps_maps_sorted() {
        // `extra` relies on canonical output; this fails if `preserve_order` gets enabled
        // somewhere in the tree and someone switches the writer to `Value`.
        let v: Value = serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap();
        assert_eq!(v.to_string(), r#"{"a":2,"b":1}"#);
    }

    #[test]
    fn samples_parse() {
        let streams: Value = serde_json::from_str(STREAMS).unwrap();
        for s in streams["streams"].as_array().unwrap() {
            assert!(s["id"].is_i64() && s["name"].is_string());
            assert!(s["isActive"].is_boolean() && s["isArchived"].is_boolean());
        }
        let me: Value = serde_json::from_str(ME).unwrap();
        assert!(me["user"]["name"].is_string() && me["user"]["email"].is_string());
        assert!(me["subscription"]["plan"].is_string() && me["subscription"]["status"].is_string());
        assert!(me["credits"]["remaining"].is_i64() && me["credits"]["monthlyAllowance"].is_i64());
        let acct = &me["accounts"][0];
        assert!(acct["trackedXAccountId"].is_i64() && acct["xHandle"].is_string());
        assert!(acct["budget"]["monthlyLeadLimit"].is_i64() && acct["budget"]["used"].is_i64());
        let e401: Value = serde_json::from_str(ERROR_401).unwrap();
        assert!(e401["error"].is_string());
        let e429: Value = serde_json::from_str(ERROR_429_CREDITS).unwrap();
        assert_eq!(e429["error"], "credits_exhausted");
        assert!(e429["message"].is_string());
        let env: Value = serde_json::from_str(LEADS_PAGE).unwrap();
        assert_eq!(env["total"], 4);
        assert_eq!(env["hasMore"], false);
    }

    #[test]
    fn sample_pages_map_without_rejects() {
        let leads = map_leads(&page(LEADS_PAGE, "leads"), &ctx());
        assert_eq!(leads.rejects, vec![]);
        assert_eq!(leads.batch.num_rows(), 4);
        assert_eq!(leads.batch.schema(), Table::Leads.schema());
        let ids: Vec<i64> = leads.keys.iter().map(|k| k.id).collect();
        assert_eq!(ids, [1234, 1235, 1236, 1237]);
        for (file, n) in [(RUNS_V2, 3), (RUNS_V1, 2)] {
            let runs = map_runs(&page(file, "runs"), &ctx());
            assert_eq!(runs.rejects, vec![]);
            assert_eq!(runs.batch.num_rows(), n);
            assert_eq!(runs.batch.schema(), Table::SyncRuns.schema());
        }
    }

    #[test]
    fn documented_lead_field_by_field() {
        let m = lead(DOC_LEAD);
        let b = &m.batch;
        assert_eq!(b.num_rows(), 1);
        assert_eq!(int(b, "id", 0), Some(1234));
        assert_eq!(int(b, "stream_id", 0), Some(42));
        assert_eq!(int(b, "tracked_x_account_id", 0), Some(7));
        assert_eq!(int(b, "segment_id", 0), Some(12));
        assert_eq!(text(b, "match_confidence", 0).as_deref(), Some("high"));
        assert_eq!(text(b, "source_type", 0).as_deref(), Some("new_follower"));
        assert_eq!(ts(b, "discovered_at", 0), Some(ms("2026-06-02T09:01:00Z")));
        assert_eq!(ts(b, "exported_at", 0), None);
        assert_eq!(text(b, "x_user_id", 0).as_deref(), Some("1234567890"));
        assert_eq!(text(b, "handle", 0).as_deref(), Some("alice"));
        assert_eq!(text(b, "display_name", 0).as_deref(), Some("Alice Smith"));
        assert_eq!(text(b, "profile_image_url", 0).as_deref(), Some("..."));
        assert_eq!(int(b, "follower_count", 0), Some(8200));
        assert_eq!(text(b, "bio", 0).as_deref(), Some("..."));
        assert_eq!(text(b, "extra", 0), None);
        assert_eq!(ts(b, "_extracted_at", 0), Some(1_780_000_000_000));
        assert_eq!(text(b, "_job_id", 0).as_deref(), Some("job-1"));
        assert_eq!(ts(b, "_deleted_at", 0), None);
        let k = m.keys[0];
        assert_eq!(k.id, 1234);
        assert_eq!(k.cursor_ms, Some(ms("2026-06-02T09:01:00Z")));
        assert_eq!(k.stream_id, Some(42));
        assert!(k.finished);
    }

    #[test]
    fn sample_leads_unicode_nulls_and_unknown_fields() {
        let m = map_leads(&page(LEADS_PAGE, "leads"), &ctx());
        let b = &m.batch;
        // Unicode and emoji survive as is.
        assert_eq!(
            text(b, "display_name", 1).as_deref(),
            Some("Zoë 🚀 Müller-Łukasz")
        );
        assert_eq!(
            text(b, "bio", 1).as_deref(),
            Some("日本語もOK · shipping LLM evals 🧪 \"quotes\" and, commas")
        );
        assert_eq!(ts(b, "exported_at", 1), Some(ms("2026-06-03T14:22:10Z")));
        assert_eq!(
            text(b, "x_user_id", 1).as_deref(),
            Some("1790312345678901234")
        );
        // Null bio, null image, null segment.
        assert_eq!(text(b, "bio", 2), None);
        assert_eq!(text(b, "profile_image_url", 2), None);
        assert_eq!(int(b, "segment_id", 2), None);
        assert_eq!(int(b, "follower_count", 2), Some(0));
        // Unknown fields, top level and in profile, kept in `extra` with sorted keys.
        assert_eq!(
            text(b, "extra", 3).as_deref(),
            Some(
                r#"{"feedback":{"ratedAt":"2026-06-02T11:00:00Z","status":"good_fit"},"linkedinUrl":"https://www.linkedin.com/in/carol-ng","profile":{"location":"Singapore"}}"#
            )
        );
        assert_eq!(
            text(b, "bio", 3).as_deref(),
            Some("=HYPERLINK(\"x\") founder @ devtools co")
        );
    }

    #[test]
    fn x_user_id_above_2_pow_53_is_exact() {
        let big = "18446744073709551615"; // u64::MAX, far above 2^53
        let as_string = with(DOC_LEAD, |v| v["profile"]["xUserId"] = json!(big));
        assert_eq!(
            text(&lead(&as_string).batch, "x_user_id", 0).as_deref(),
            Some(big)
        );
        // As a JSON integer: its digits, not a float's rounding (9007199254740993 = 2^53 + 1).
        for digits in ["9007199254740993", "1790312345678901234", big] {
            let as_int = DOC_LEAD.replace("\"1234567890\"", digits);
            let m = lead(&as_int);
            assert_eq!(text(&m.batch, "x_user_id", 0).as_deref(), Some(digits));
        }
        let as_float = DOC_LEAD.replace("\"1234567890\"", "1.7903123456789012e18");
        assert!(reason(&lead(&as_float)).starts_with("`profile.xUserId` is a float"));
        let as_bool = DOC_LEAD.replace("\"1234567890\"", "true");
        assert_eq!(
            reason(&lead(&as_bool)),
            "`profile.xUserId` is not a string or an integer: true"
        );
    }

    #[test]
    fn v2_run_field_by_field() {
        let m = map_runs(&page(RUNS_V2, "runs"), &ctx());
        let b = &m.batch;
        assert_eq!(int(b, "id", 0), Some(123));
        assert_eq!(int(b, "stream_id", 0), Some(42));
        assert_eq!(
            text(b, "stream_name", 0).as_deref(),
            Some("AI founders watching Yongfook")
        );
        assert_eq!(int(b, "tracked_x_account_id", 0), Some(7));
        assert_eq!(text(b, "x_handle", 0).as_deref(), Some("yongfook"));
        assert_eq!(int(b, "segment_id", 0), Some(12));
        assert_eq!(
            text(b, "segment_name", 0).as_deref(),
            Some("AI founders building developer tools")
        );
        assert_eq!(text(b, "source", 0).as_deref(), Some("cron"));
        assert_eq!(text(b, "status", 0).as_deref(), Some("succeeded"));
        assert_eq!(text(b, "mode", 0).as_deref(), Some("sync-then-search"));
        assert_eq!(ts(b, "triggered_at", 0), Some(ms("2026-06-02T09:00:00Z")));
        assert_eq!(ts(b, "completed_at", 0), Some(ms("2026-06-02T09:01:23Z")));
        assert_eq!(int(b, "new_followers_count", 0), Some(50));
        assert_eq!(int(b, "existing_followers_count", 0), None);
        assert_eq!(int(b, "likers_count", 0), None);
        assert_eq!(int(b, "candidates_passed_count", 0), Some(12));
        assert_eq!(int(b, "tier_filtered_count", 0), None);
        assert_eq!(int(b, "gender_filtered_count", 0), None);
        assert_eq!(int(b, "medium_fit_count", 0), Some(4));
        assert_eq!(int(b, "enriched_count", 0), Some(8));
        assert_eq!(int(b, "filtered_out_count", 0), None);
        assert_eq!(int(b, "deep_crawl_count", 0), None);
        assert_eq!(int(b, "backfilled_count", 0), None);
        assert_eq!(text(b, "search_label", 0), None);
        assert_eq!(text(b, "error_message", 0), None);
        assert_eq!(
            text(b, "progress_log", 0).as_deref(),
            Some(concat!(
                r#"[{"message":"Fetched 50 new followers","step":"fetch_followers","timestamp":"2026-06-02T09:00:12Z"},"#,
                r#"{"message":"12 candidates passed","step":"score_candidates","timestamp":"2026-06-02T09:01:02Z"},"#,
                r#"{"message":"Enriched 8 profiles","step":"enrich","timestamp":"2026-06-02T09:01:20Z"}]"#
            ))
        );
        assert_eq!(text(b, "extra", 0), None);
        assert_eq!(ts(b, "_extracted_at", 0), Some(1_780_000_000_000));
        assert_eq!(text(b, "_job_id", 0).as_deref(), Some("job-1"));
        assert_eq!(ts(b, "_deleted_at", 0), None);
        let k = m.keys[0];
        assert_eq!((k.id, k.stream_id, k.finished), (123, Some(42), true));
        assert_eq!(k.cursor_ms, Some(ms("2026-06-02T09:00:00Z")));
        // A running run is not finished and has no completed_at yet; a failed one is.
        assert!(!m.keys[1].finished);
        assert_eq!(ts(b, "completed_at", 1), None);
        assert!(m.keys[2].finished);
        assert_eq!(text(b, "status", 2).as_deref(), Some("failed"));
        assert_eq!(text(b, "progress_log", 2).as_deref(), Some("[]"));
        assert_eq!(
            text(b, "error_message", 2).as_deref(),
            Some("X API rate limit reached; will retry on the next schedule.")
        );
    }

    #[test]
    fn v1_run_field_by_field() {
        let m = map_runs(&page(RUNS_V1, "runs"), &ctx());
        let b = &m.batch;
        assert_eq!(int(b, "id", 0), Some(87));
        // v1 `completed` is written as `succeeded`, and is final.
        assert_eq!(text(b, "status", 0).as_deref(), Some("succeeded"));
        assert!(m.keys[0].finished);
        assert_eq!(ts(b, "triggered_at", 0), Some(ms("2026-05-20T12:00:00Z")));
        assert_eq!(m.keys[0].cursor_ms, Some(ms("2026-05-20T12:00:00Z")));
        assert_eq!(ts(b, "completed_at", 0), Some(ms("2026-05-20T12:05:00Z")));
        let counts = [
            ("new_followers_count", 64),
            ("existing_followers_count", 1830),
            ("likers_count", 25),
            ("candidates_passed_count", 15),
            ("tier_filtered_count", 30),
            ("gender_filtered_count", 3),
            ("medium_fit_count", 5),
            ("enriched_count", 11),
            ("filtered_out_count", 41),
            ("deep_crawl_count", 6),
            ("backfilled_count", 2),
        ];
        for (col, n) in counts {
            assert_eq!(int(b, col, 0), Some(n), "{col}");
        }
        assert_eq!(
            text(b, "search_label", 0).as_deref(),
            Some("AI devtools founders")
        );
        assert_eq!(
            text(b, "progress_log", 0).as_deref(),
            Some(
                r#"[{"message":"Fetched 64 new followers"},{"message":"Fetched 25 likers"},{"message":"15 candidates passed the filters"}]"#
            )
        );
        assert_eq!(text(b, "extra", 0), None);
        assert_eq!(text(b, "status", 1).as_deref(), Some("failed"));
        assert_eq!(text(b, "search_label", 1), None);
        assert_eq!(
            text(b, "error_message", 1).as_deref(),
            Some("Segment description is empty.")
        );
    }

    #[test]
    fn run_statuses_and_unknown_fields() {
        for (status, finished, written) in [
            ("queued", false, "queued"),
            ("running", false, "running"),
            ("succeeded", true, "succeeded"),
            ("completed", true, "succeeded"),
            ("failed", true, "failed"),
            ("paused", false, "paused"),
        ] {
            let m = run(&format!(r#"{{"id":1,"status":"{status}"}}"#));
            assert_eq!(m.keys[0].finished, finished, "{status}");
            assert_eq!(text(&m.batch, "status", 0).as_deref(), Some(written));
        }
        let m = run(r#"{"id":1,"status":null}"#);
        assert!(!m.keys[0].finished);
        assert_eq!(m.keys[0].cursor_ms, None);
        let m = run(r#"{"id":2,"costCents":12,"triggeredAt":"2026-06-02T09:00:00.250+02:00"}"#);
        assert_eq!(
            text(&m.batch, "extra", 0).as_deref(),
            Some(r#"{"costCents":12}"#)
        );
        assert_eq!(m.keys[0].cursor_ms, Some(ms("2026-06-02T07:00:00.250Z")));
        // A bare string log, mixed entries, nulls skipped.
        let m = run(r#"{"id":3,"progressLog":"just one line"}"#);
        assert_eq!(
            text(&m.batch, "progress_log", 0).as_deref(),
            Some(r#"[{"message":"just one line"}]"#)
        );
        let m = run(r#"{"id":3,"progressLog":["a\nb",null,{"step":"x"},7]}"#);
        assert_eq!(
            text(&m.batch, "progress_log", 0).as_deref(),
            Some(r#"[{"message":"a\nb"},{"step":"x"},{"message":"7"}]"#)
        );
        assert_eq!(
            reason(&run(r#"{"id":3,"progressLog":12}"#)),
            "`progressLog` is not a list: 12"
        );
    }

    #[test]
    fn bad_records_are_rejected_with_a_reason() {
        let cases: Vec<(String, &str)> = vec![
            ("[1,2]".into(), "the record is not a JSON object: [1,2]"),
            (
                "\"lead\"".into(),
                "the record is not a JSON object: \"lead\"",
            ),
            ("null".into(), "the record is not a JSON object: null"),
            (
                with(DOC_LEAD, |v| {
                    v.as_object_mut().unwrap().remove("id");
                }),
                "`id` is missing",
            ),
            (with(DOC_LEAD, |v| v["id"] = json!(null)), "`id` is null"),
            (
                with(DOC_LEAD, |v| v["id"] = json!("1234")),
                "`id` is not an integer: \"1234\"",
            ),
            (
                with(DOC_LEAD, |v| v["id"] = json!(12.5)),
                "`id` is not an integer: 12.5",
            ),
            (
                DOC_LEAD.replace("1234,", "99999999999999999999,"),
                "`id` is out of the 64-bit integer range: 99999999999999999999",
            ),
            (
                with(DOC_LEAD, |v| {
                    v.as_object_mut().unwrap().remove("discoveredAt");
                }),
                "`discoveredAt` is missing",
            ),
            (
                with(DOC_LEAD, |v| v["discoveredAt"] = json!(null)),
                "`discoveredAt` is null",
            ),
            (
                with(DOC_LEAD, |v| v["discoveredAt"] = json!("2026-06-02 late")),
                "`discoveredAt` is not an RFC 3339 timestamp: \"2026-06-02 late\"",
            ),
            (
                with(DOC_LEAD, |v| v["discoveredAt"] = json!(1780000000)),
                "`discoveredAt` is not an RFC 3339 timestamp: 1780000000",
            ),
            (
                with(DOC_LEAD, |v| v["exportedAt"] = json!("yesterday")),
                "`exportedAt` is not an RFC 3339 timestamp: \"yesterday\"",
            ),
            (
                with(DOC_LEAD, |v| v["profile"]["followerCount"] = json!("lots")),
                "`profile.followerCount` is not an integer: \"lots\"",
            ),
            (
                with(DOC_LEAD, |v| v["profile"]["followerCount"] = json!(82.5)),
                "`profile.followerCount` is not an integer: 82.5",
            ),
            (
                with(DOC_LEAD, |v| v["profile"]["followerCount"] = json!(1e300)),
                "`profile.followerCount` is out of the 64-bit integer range: 1e+300",
            ),
            (
                with(DOC_LEAD, |v| v["streamId"] = json!(true)),
                "`streamId` is not an integer: true",
            ),
            (
                with(DOC_LEAD, |v| v["segmentId"] = json!([12])),
                "`segmentId` is not an integer: [12]",
            ),
            (
                with(DOC_LEAD, |v| v["profile"] = json!("alice")),
                "`profile` is not an object: \"alice\"",
            ),
            (
                with(DOC_LEAD, |v| v["profile"] = json!([1])),
                "`profile` is not an object: [1]",
            ),
        ];
        for (record, want) in &cases {
            let m = lead(record);
            assert_eq!(&reason(&m), want, "record: {record}");
            assert_eq!(&m.rejects[0].raw, record);
            assert_eq!(m.rejects[0].table, Table::Leads);
        }
        // Run-specific ones.
        assert_eq!(
            reason(&run(r#"{"id":"123"}"#)),
            "`id` is not an integer: \"123\""
        );
        assert_eq!(
            reason(&run(r#"{"id":1,"likersCount":"7"}"#)),
            "`likersCount` is not an integer: \"7\""
        );
        assert_eq!(
            reason(&run(r#"{"id":1,"completedAt":"soon"}"#)),
            "`completedAt` is not an RFC 3339 timestamp: \"soon\""
        );
        assert_eq!(reason(&run("{}")), "`id` is missing");
    }

    #[test]
    fn reasons_quote_at_most_80_characters() {
        let long = "x".repeat(500);
        let m = lead(&with(DOC_LEAD, |v| v["exportedAt"] = json!(long)));
        let r = reason(&m);
        assert!(r.ends_with('…'), "{r}");
        assert!(r.chars().count() < 140, "{r}");
        // The record itself is kept in full.
        assert!(m.rejects[0].raw.contains(&long));
    }

    #[test]
    fn lenient_values_that_still_map() {
        // Integral floats for counts, null / missing optionals, odd types in open text.
        let m = lead(&with(DOC_LEAD, |v| {
            v["profile"]["followerCount"] = json!(8200.0);
            v["matchConfidence"] = json!(3);
            v["sourceType"] = json!({"b": 1, "a": [true, null]});
            v.as_object_mut().unwrap().remove("segmentId");
            v["streamId"] = json!(null);
        }));
        let b = &m.batch;
        assert_eq!(int(b, "follower_count", 0), Some(8200));
        assert_eq!(text(b, "match_confidence", 0).as_deref(), Some("3"));
        assert_eq!(
            text(b, "source_type", 0).as_deref(),
            Some(r#"{"a":[true,null],"b":1}"#)
        );
        assert_eq!(int(b, "segment_id", 0), None);
        assert_eq!(int(b, "stream_id", 0), None);
        assert_eq!(m.keys[0].stream_id, None);
        assert_eq!(text(b, "extra", 0), None);
        // Profile null or missing: all profile columns null, still a lead.
        for p in [r#""profile":null,"#, ""] {
            let m = lead(&format!(
                r#"{{{p}"id":5,"discoveredAt":"2026-06-02T09:01:00.123456Z"}}"#
            ));
            assert_eq!(text(&m.batch, "handle", 0), None);
            assert_eq!(text(&m.batch, "x_user_id", 0), None);
            assert_eq!(m.keys[0].cursor_ms, Some(ms("2026-06-02T09:01:00.123Z")));
        }
        // Escaped keys are the same keys; escaped strings are decoded.
        let m = lead(
            r#"{"i\u0064":6,"discoveredAt":"2026-06-02T09:01:00Z","profile":{"handle":"a\u00e9\ud83d\ude80"}}"#,
        );
        assert_eq!(int(&m.batch, "id", 0), Some(6));
        assert_eq!(text(&m.batch, "handle", 0).as_deref(), Some("aé🚀"));
        // A lone surrogate (a text cut in the middle of an emoji) becomes U+FFFD: the lead is
        // kept, with the rest of its text, in its columns and in `extra`.
        let m = lead(
            r#"{"id":8,"discoveredAt":"2026-06-02T09:01:00Z","profile":{"bio":"cut \ud83d","handle":"\udc00a\ud800\ud83d\ude80\n"},"note":"x\ud83d"}"#,
        );
        assert!(m.rejects.is_empty(), "{:?}", m.rejects);
        assert_eq!(text(&m.batch, "bio", 0).as_deref(), Some("cut \u{FFFD}"));
        assert_eq!(
            text(&m.batch, "handle", 0).as_deref(),
            Some("\u{FFFD}a\u{FFFD}🚀\n")
        );
        assert_eq!(
            text(&m.batch, "extra", 0).as_deref(),
            Some("{\"note\":\"x\u{FFFD}\"}")
        );
        // Not a string at all is still an error.
        assert!(lone_surrogates_replaced("12").is_none());
        assert!(lone_surrogates_replaced(r#""a\ud83d"x"#).is_none());
        // A repeated key: the last one wins, as in every JSON parser.
        let m = lead(r#"{"id":1,"id":7,"discoveredAt":"2026-06-02T09:01:00Z","x":1,"x":2}"#);
        assert_eq!(int(&m.batch, "id", 0), Some(7));
        assert_eq!(text(&m.batch, "extra", 0).as_deref(), Some(r#"{"x":2}"#));
    }

    #[test]
    fn extra_keeps_big_numbers_and_odd_text_exactly() {
        let m = lead(
            r#"{"id":1,"discoveredAt":"2026-06-02T09:01:00Z","z":123456789012345678901234567890,
                "a":{"y":1.50,"x":"tab\there \"q\" \u0001"},"profile":{"zz":null}}"#,
        );
        assert_eq!(
            text(&m.batch, "extra", 0).as_deref(),
            Some(
                r#"{"a":{"x":"tab\there \"q\" \u0001","y":1.50},"profile":{"zz":null},"z":123456789012345678901234567890}"#
            )
        );
        let extra: Value = serde_json::from_str(&text(&m.batch, "extra", 0).unwrap()).unwrap();
        assert!(extra.is_object());
    }

    #[test]
    fn good_records_around_a_bad_one_still_map() {
        let bad = with(DOC_LEAD, |v| v["profile"]["followerCount"] = json!("lots"));
        let second = with(DOC_LEAD, |v| v["id"] = json!(1235));
        let m = map_leads(&[DOC_LEAD, &bad, "42", &second], &ctx());
        assert_eq!(m.batch.num_rows(), 2);
        assert_eq!(
            m.keys.iter().map(|k| k.id).collect::<Vec<_>>(),
            [1234, 1235]
        );
        assert_eq!(int(&m.batch, "id", 1), Some(1235));
        assert_eq!(m.rejects.len(), 2);
        assert_eq!(m.rejects[0].raw, bad);
        assert_eq!(m.rejects[1].raw, "42");
    }

    #[test]
    fn empty_page_is_an_empty_batch_with_the_schema() {
        let m = map_leads(&[], &ctx());
        assert_eq!(m.batch.num_rows(), 0);
        assert_eq!(m.batch.schema(), Table::Leads.schema());
        let m = map_runs(&[], &ctx());
        assert_eq!(m.batch.schema(), Table::SyncRuns.schema());
    }

    fn lead_hash(text: &str) -> u128 {
        let m = lead(text);
        assert_eq!(m.rejects, vec![], "{text}");
        m.keys[0].hash
    }

    #[test]
    fn hash_ignores_key_order_and_whitespace() {
        let base = lead_hash(DOC_LEAD);
        let reordered = r#"{"profile":{"bio":"...","followerCount":8200,"profileImageUrl":"...",
            "displayName":"Alice Smith","handle":"alice","xUserId":"1234567890"},
            "exportedAt":null,"discoveredAt":"2026-06-02T09:01:00Z","sourceType":"new_follower",
            "matchConfidence":"high","segmentId":12,"trackedXAccountId":7,"streamId":42,"id":1234}"#;
        assert_eq!(lead_hash(reordered), base);
        let compact: Value = serde_json::from_str(DOC_LEAD).unwrap();
        assert_eq!(lead_hash(&compact.to_string()), base);
        // Same instant written another way is the same content.
        assert_eq!(
            lead_hash(&DOC_LEAD.replace("09:01:00Z", "11:01:00+02:00")),
            base
        );
        // Unknown fields: order inside extra does not matter either.
        let a = with(DOC_LEAD, |v| {
            v["x"] = json!({"p": 1, "q": [1, {"s": 2, "r": 3}]})
        });
        let b = DOC_LEAD.replacen('{', r#"{"x": {"q": [1, {"r": 3, "s": 2}], "p": 1},"#, 1);
        assert_eq!(lead_hash(&a), lead_hash(&b));
        // The connector's columns are not content.
        let other = MapContext {
            extracted_at_ms: 1,
            job_id: "job-2".into(),
            floor_ms: None,
        };
        assert_eq!(map_leads(&[DOC_LEAD], &other).keys[0].hash, base);
    }

    #[test]
    fn hash_changes_with_any_mapped_value() {
        let base = lead_hash(DOC_LEAD);
        let edits: Vec<fn(&mut Value)> = vec![
            |v| v["exportedAt"] = json!("2026-06-03T00:00:00Z"),
            |v| v["profile"]["followerCount"] = json!(8201),
            |v| v["profile"]["bio"] = json!(null),
            |v| v["profile"]["bio"] = json!(""),
            |v| v["matchConfidence"] = json!("medium"),
            |v| v["linkedinUrl"] = json!("https://linkedin.com/in/alice"),
            |v| v["profile"]["location"] = json!("Paris"),
            |v| v["segmentId"] = json!(null),
        ];
        let mut seen = vec![base];
        for edit in edits {
            let h = lead_hash(&with(DOC_LEAD, edit));
            assert!(!seen.contains(&h));
            seen.push(h);
        }
        // Values moving between adjacent text columns do not collide.
        let a = with(DOC_LEAD, |v| {
            v["profile"]["handle"] = json!("ab");
            v["profile"]["displayName"] = json!("c");
        });
        let b = with(DOC_LEAD, |v| {
            v["profile"]["handle"] = json!("a");
            v["profile"]["displayName"] = json!("bc");
        });
        assert_ne!(lead_hash(&a), lead_hash(&b));
        // Runs: a count changing while the run is going.
        let r1 = run(r#"{"id":1,"status":"running","newFollowersCount":3}"#).keys[0].hash;
        let r2 = run(r#"{"id":1,"status":"running","newFollowersCount":4}"#).keys[0].hash;
        assert_ne!(r1, r2);
    }

    #[test]
    fn rejects_batch_has_the_rejects_schema() {
        let rejects = vec![
            Reject {
                table: Table::Leads,
                reason: "`id` is missing".into(),
                raw: "{}".into(),
                id: None,
            },
            Reject {
                table: Table::SyncRuns,
                reason: "the record is not a JSON object: 1".into(),
                raw: "1".into(),
                id: None,
            },
        ];
        let b = rejects_batch(&rejects, "job-9", 1_780_000_000_123);
        assert_eq!(b.schema(), Table::Rejects.schema());
        assert_eq!(b.num_rows(), 2);
        assert_eq!(text(&b, "job_id", 1).as_deref(), Some("job-9"));
        assert_eq!(text(&b, "table", 0).as_deref(), Some("leads"));
        assert_eq!(text(&b, "table", 1).as_deref(), Some("sync_runs"));
        assert_eq!(text(&b, "reason", 0).as_deref(), Some("`id` is missing"));
        assert_eq!(text(&b, "raw", 1).as_deref(), Some("1"));
        assert_eq!(ts(&b, "rejected_at", 0), Some(1_780_000_000_123));
        assert_eq!(rejects_batch(&[], "j", 0).num_rows(), 0);
    }

    // -----------------------------------------------------------------------------------------
    // Properties.

    const KNOWN_KEYS: &[&str] = &[
        "id",
        "streamId",
        "trackedXAccountId",
        "segmentId",
        "matchConfidence",
        "sourceType",
        "discoveredAt",
        "exportedAt",
        "profile",
        "status",
        "triggeredAt",
        "progressLog",
        "likersCount",
    ];

    #[test]
    fn integral_floats_are_judged_on_their_digits() {
        for (text, want) in [
            ("8200.0", Some(8200)),
            ("1e3", Some(1000)),
            ("-12.50e1", Some(-125)),
            ("0.000", Some(0)),
            ("-0.0", Some(0)),
            ("9007199254740992.0", Some(9_007_199_254_740_992)),
            ("1.5", None),
            ("1.0000000000000001", None),
            ("0.99999999999999999", None),
            ("1e-400", None),
            ("4503599627370496.3", None),
            ("9007199254740993.0", None),
            ("1e308", None),
        ] {
            assert_eq!(parse_int(text, true).ok(), want, "{text}");
        }
        assert!(matches!(
            parse_int("1.0000000000000001", true),
            Err(IntError::NotInteger)
        ));
        assert!(matches!(
            parse_int("9007199254740993.0", true),
            Err(IntError::OutOfRange)
        ));
        assert!(matches!(
            parse_int("8200.0", false),
            Err(IntError::NotInteger)
        ));
    }

    const ODD_TOKENS: &[&str] = &[
        "null",
        "true",
        "0",
        "-0",
        "8200.0",
        "1e3",
        "1.5",
        "-9223372036854775808",
        "9223372036854775808",
        "123456789012345678901234567890",
        "1e308",
        "-1e-308",
        "\"\"",
        "\"lots\"",
        "\"2026-02-30T00:00:00Z\"",
        "\"2026-06-02T09:01:00+14:00\"",
        "\"\\ud83d\\ude80 \\u0000 \\\\ \\\" \"",
        "\"\u{202e}\u{feff}\u{10ffff}\"",
        "[]",
        "{}",
        "[\"a\",{\"b\":null}]",
        "{\"xUserId\":12345678901234567890}",
    ];

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
                .map(Value::Number)),
            any::<String>().prop_map(Value::String),
            Just(Value::String("2026-06-02T09:01:00Z".into())),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            let key = prop_oneof![
                proptest::sample::select(KNOWN_KEYS).prop_map(str::to_owned),
                "[a-zA-Z]{1,6}",
                any::<String>(),
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((key, inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Either one row whose id is the input's `id`, or one reject with a reason.
    fn check_outcome(input: &str, m: &Mapped) -> Result<(), TestCaseError> {
        if m.rejects.is_empty() {
            prop_assert_eq!(m.batch.num_rows(), 1);
            prop_assert_eq!(m.keys.len(), 1);
            let v: Value = serde_json::from_str(input).unwrap();
            // The last `id` of the text is the one that counts; Value agrees (except on the
            // integer token `-0`, which serde_json reads as the float -0.0 and we as 0).
            let want = v["id"]
                .as_i64()
                .or(v["id"].as_f64().filter(|f| *f == 0.0).map(|_| 0));
            prop_assert_eq!(want, Some(m.keys[0].id));
            prop_assert_eq!(int(&m.batch, "id", 0), Some(m.keys[0].id));
            if let Some(extra) = text(&m.batch, "extra", 0) {
                let e: Value = serde_json::from_str(&extra).unwrap();
                prop_assert!(e.is_object());
            }
        } else {
            prop_assert_eq!(m.batch.num_rows(), 0);
            prop_assert_eq!(m.rejects.len(), 1);
            prop_assert!(!m.rejects[0].reason.is_empty());
            prop_assert_eq!(m.rejects[0].raw.as_str(), input);
        }
        Ok(())
    }

    /// Both ways of mapping a lead on one record: the vals and the outcome.
    fn both_lead_paths(text: &str) -> [(Result<(), String>, Vec<Val<'_>>); 2] {
        let raw = text;
        let run = |general: bool| {
            let mut s = Scratch {
                entries: Vec::new(),
                profile_entries: Vec::new(),
                unknown: Vec::new(),
                profile_unknown: Vec::new(),
                vals: vec![Val::Null; LEAD_CONTENT],
                hash_buf: Vec::new(),
            };
            let r = if general {
                map_lead_general(raw, &mut s)
            } else {
                map_lead(raw, &mut s)
            };
            (r.map(|_| ()), s.vals)
        };
        [run(false), run(true)]
    }

    #[test]
    fn the_one_pass_lead_path_agrees_with_the_general_one_on_odd_profiles() {
        for text in [
            DOC_LEAD.to_string(),
            r#"{"id":1,"discoveredAt":"2026-06-02T09:01:00Z","profile":null}"#.into(),
            r#"{"id":1,"discoveredAt":"2026-06-02T09:01:00Z"}"#.into(),
            r#"{"id":1,"discoveredAt":"2026-06-02T09:01:00Z","profile":{"handle":"a","x":[1,{"b":2}]}}"#.into(),
            r#"{"id":1,"discoveredAt":"2026-06-02T09:01:00Z","profile":{"handle":"a"},"profile":{"handle":"b"}}"#.into(),
            r#"{"id":1,"discoveredAt":"2026-06-02T09:01:00Z","profile":{"handle":"a"},"profile":null}"#.into(),
            r#"{"id":1,"discoveredAt":"2026-06-02T09:01:00Z","profile":5}"#.into(),
            r#"{"id":1,"discoveredAt":"2026-06-02T09:01:00Z","profile":true}"#.into(),
            r#"{"id":1,"discoveredAt":"2026-06-02T09:01:00Z","profile":[{"handle":"a"}]}"#.into(),
            r#"{"id":"x","profile":"alice"}"#.into(),
        ] {
            let [fast, general] = both_lead_paths(&text);
            assert_eq!(fast, general, "{text}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn both_lead_paths_agree_on_any_record(
            v in arb_json(),
            profile in prop_oneof![arb_json(), Just(json!({"handle": "a", "followerCount": 3}))],
        ) {
            let mut v = if v.is_object() { v } else { json!({"id": 1, "x": v}) };
            v["profile"] = profile;
            let text = v.to_string();
            let [fast, general] = both_lead_paths(&text);
            prop_assert_eq!(fast, general, "{}", text);
        }

        #[test]
        fn any_json_maps_or_is_rejected(v in arb_json()) {
            let input = v.to_string();
            let r = raw(&input);
            check_outcome(&input, &map_leads(&[r.get()], &ctx()))?;
            check_outcome(&input, &map_runs(&[r.get()], &ctx()))?;
        }

        #[test]
        fn mutated_leads_map_or_are_rejected(
            in_profile in any::<bool>(),
            key in prop_oneof![
                proptest::sample::select(KNOWN_KEYS).prop_map(str::to_owned),
                proptest::sample::select(&["xUserId", "handle", "followerCount", "bio"][..])
                    .prop_map(str::to_owned),
                any::<String>(),
            ],
            token in prop_oneof![
                proptest::sample::select(ODD_TOKENS).prop_map(str::to_owned),
                arb_json().prop_map(|v| v.to_string()),
            ],
        ) {
            let template = with(DOC_LEAD, |v| {
                let target = if in_profile { &mut v["profile"] } else { &mut *v };
                target[key.as_str()] = json!("__TOKEN__");
            });
            let input = template.replace("\"__TOKEN__\"", &token);
            // Tokens serde_json itself refuses (none expected) are outside the contract.
            let Ok(r) = RawValue::from_string(input.clone()) else { return Ok(()); };
            let m = map_leads(&[r.get()], &ctx());
            check_outcome(&input, &m)?;
            let mr = map_runs(&[r.get()], &ctx());
            check_outcome(&input, &mr)?;
        }

        #[test]
        fn json_strings_are_escaped_like_serde_json(s in any::<String>()) {
            let mut out = String::new();
            push_json_str(&mut out, &s);
            prop_assert_eq!(&out, &serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn canonical_text_is_layout_independent(v in arb_json()) {
            let mut a = String::new();
            write_canonical_text(&mut a, &v.to_string()).unwrap();
            let mut b = String::new();
            write_canonical_text(&mut b, &serde_json::to_string_pretty(&v).unwrap()).unwrap();
            prop_assert_eq!(&a, &b);
            // And it is what serde_json's sorted map would print.
            prop_assert_eq!(&a, &v.to_string());
        }

        #[test]
        fn the_timestamp_fast_path_agrees_with_chrono(
            y in 0u32..10000, mo in 0u32..14, d in 0u32..33, h in 0u32..26, mi in 0u32..62,
            sec in 0u32..62, ms in proptest::option::of(0u32..1000), z in prop_oneof![Just("Z"), Just("z"), Just("+00:00")],
        ) {
            let frac = ms.map(|m| format!(".{m:03}")).unwrap_or_default();
            let s = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}{frac}{z}");
            if let Some(fast) = utc_timestamp(&s) {
                prop_assert_eq!(Some(fast), rfc3339(&s), "{}", s);
            }
            prop_assert_eq!(parse_timestamp(&s), rfc3339(&s), "{}", s);
        }

        #[test]
        fn the_string_fast_path_agrees_with_serde_json(s in any::<String>()) {
            let text = serde_json::to_string(&s).unwrap();
            let back = json_str(&text).unwrap();
            prop_assert_eq!(back.as_ref(), s.as_str());
        }
    }
}
