//! Turning flags + environment + TOML file into one validated [`JobConfig`].
//!
//! Precedence, highest first: command-line flags, environment variables (`CTGO_*`), the TOML
//! file (`--config` / `CTGO_CONFIG`), then the named defaults below. clap already folds flags
//! and environment together (a flag wins), so this module only has to fall back to the file.
//! A yes/no setting has a flag each way (`--json` / `--no-json`, the last one given wins), so
//! a flag can turn off what the file turns on, and the other way round.
//! Everything with side effects sees only [`JobConfig`]: parsed URL, destination enum, durations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::api::{self, ApiKey};
use crate::cli::SyncArgs;
use crate::schema::Table;

/// How far before the cursor each run reads again: the API's documented worst lateness.
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(15 * 60);
/// Leads per page: the API's maximum.
pub const DEFAULT_PAGE_SIZE: u32 = api::MAX_LEADS_LIMIT;
/// Runs per page: the API's maximum.
pub const DEFAULT_RUNS_PAGE_SIZE: u32 = api::MAX_RUNS_LIMIT;
/// `jobs --limit` default.
pub const DEFAULT_JOBS_LIMIT: u32 = 100;
/// The environment variable that holds the key.
pub const KEY_ENV: &str = "CTGO_API_KEY";

/// A configuration problem: exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no API key: set {KEY_ENV} (or pass --api-key-file PATH); keys start with ctgo_ and are 45 characters"
    )]
    MissingKey,
    #[error("the API key {origin} is not well-formed: {reason}")]
    BadKey { origin: String, reason: String },
    #[error("cannot read the API key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no destination: pass --dest sqlite:PATH, parquet:DIR or csv:DIR (or set dest in the config file)"
    )]
    MissingDest,
    #[error("bad destination {0:?}: use sqlite:PATH, parquet:DIR or csv:DIR")]
    BadDest(String),
    #[error("bad base URL {url:?}: {reason}")]
    BadBaseUrl { url: String, reason: String },
    #[error(
        "the base URL holds the API key: the key goes only in CTGO_API_KEY or --api-key-file, never in a URL (it would travel in DNS queries and be kept in the destination)"
    )]
    KeyInBaseUrl,
    /// A bad value of a flag that clap's own checks let through.
    #[error("{0}")]
    Usage(String),
    #[error(
        "bad tables {0:?} (--tables, CTGO_TABLES or tables in the config file): use leads, sync_runs or both, comma-separated"
    )]
    BadTables(String),
    #[error("unknown table {0:?}: use leads, sync_runs, export_jobs or rejects")]
    UnknownTable(String),
    #[error(
        "bad lookback {0:?} (--lookback, CTGO_LOOKBACK or lookback in the config file): use a duration such as 15m, 1h or 90s"
    )]
    BadLookback(String),
    #[error(
        "bad timeout {0:?} (--timeout, CTGO_TIMEOUT or timeout in the config file): use a duration above zero such as 60s, 2m or 500ms"
    )]
    BadTimeout(String),
    #[error(
        "bad since {0:?} (--since, CTGO_SINCE or since in the config file): use an ISO 8601 time with its zone, from 1970 on, such as 2026-06-01T00:00:00Z, or a date such as 2026-06-01 (midnight UTC)"
    )]
    BadSince(String),
    #[error(
        "requests per minute {0} (0 = no limit) is only for a simulator on this machine, not {1}: the API allows 60 a minute per key; use 1 to 60"
    )]
    NoRateLimit(u32, String),
    #[error(
        "bad {what} {value:?} ({flag}, {env} or {key} in the config file): use a whole number, 0 or more"
    )]
    BadNumber {
        what: &'static str,
        value: String,
        flag: &'static str,
        env: &'static str,
        key: &'static str,
    },
    #[error("bad page size {0} (--page-size or page_size in the config file): use 1 to 500")]
    BadPageSize(u32),
    #[error("bad stream id {0}: stream ids are positive integers")]
    BadStream(i64),
    #[error("cannot read the config file {path}: {source}")]
    FileRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0} holds something the demo did not write there (or an export of another API): choose another --out (the demo replaces only its own outputs)"
    )]
    DemoOut(PathBuf),
    #[error("bad config file {path}: {message}")]
    FileParse { path: PathBuf, message: String },
}

/// Where a job writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestSpec {
    Sqlite(PathBuf),
    Parquet(PathBuf),
    Csv(PathBuf),
}

impl DestSpec {
    pub fn parse(s: &str) -> Result<DestSpec, ConfigError> {
        let (kind, path) = s
            .split_once(':')
            .ok_or_else(|| ConfigError::BadDest(s.to_string()))?;
        if path.is_empty() {
            return Err(ConfigError::BadDest(s.to_string()));
        }
        let bad = |why: &str| ConfigError::Usage(format!("bad destination {s:?}: {why}"));
        // `sqlite://x.db` would be the file /x.db, `sqlite:///x.db` the same: URL habits.
        if path.starts_with("//") {
            return Err(bad(&format!(
                "a destination is {kind}:PATH, not a URL (write {kind}:x or {kind}:/abs/path)"
            )));
        }
        if path.trim() != path {
            return Err(bad("the path starts or ends with a space"));
        }
        if kind == "sqlite" && (path.ends_with('/') || path.ends_with("/.")) {
            return Err(bad("sqlite: takes a database file, not a directory"));
        }
        // The shell expands `~` only at the start of a word, so `--dest sqlite:~/x.db` (and
        // the config file's `dest`) arrive as typed: `~/` is the home directory here too.
        let path = match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
            (Some(rest), Some(home)) if !home.is_empty() => PathBuf::from(home).join(rest),
            (Some(_), _) => return Err(bad("~ stands for HOME, which is not set")),
            (None, _) if path.starts_with('~') => {
                return Err(bad("only ~/ is expanded here: write the full path"));
            }
            (None, _) => PathBuf::from(path),
        };
        match kind {
            "sqlite" => Ok(DestSpec::Sqlite(path)),
            "parquet" => Ok(DestSpec::Parquet(path)),
            "csv" => Ok(DestSpec::Csv(path)),
            _ => Err(ConfigError::BadDest(s.to_string())),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            DestSpec::Sqlite(p) | DestSpec::Parquet(p) | DestSpec::Csv(p) => p,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            DestSpec::Sqlite(_) => "sqlite",
            DestSpec::Parquet(_) => "parquet",
            DestSpec::Csv(_) => "csv",
        }
    }

    /// `kind:absolute-path`, from which a new destination's `source_connection_id` is made
    /// (then recorded in its state): `parquet:out`, `parquet:out/` and `parquet:./out` are one.
    pub fn canonical(&self) -> String {
        let p = self.path();
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let abs: PathBuf = abs.components().collect();
        format!("{}:{}", self.kind(), abs.display())
    }
}

impl std::fmt::Display for DestSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind(), self.path().display())
    }
}

/// `tables` in the config file: a list, or a comma-separated string as the flag takes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum TablesValue {
    List(Vec<String>),
    Text(String),
}

impl TablesValue {
    fn joined(&self) -> String {
        match self {
            TablesValue::List(l) => l.join(","),
            TablesValue::Text(t) => t.clone(),
        }
    }
}

/// `since` in the file as its text: TOML reads an unquoted `2026-06-01T00:00:00Z` as a
/// date-time of its own, which is as good as the string.
fn since_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match toml::Value::deserialize(d)? {
        toml::Value::String(s) => Ok(Some(s)),
        toml::Value::Datetime(t) => Ok(Some(t.to_string())),
        other => Err(serde::de::Error::custom(format!(
            "since takes a date or a time (such as 2026-06-01T00:00:00Z), not a {}",
            other.type_str()
        ))),
    }
}

/// The `sync` settings a TOML file may hold (every one of them).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub dest: Option<String>,
    pub base_url: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub streams: Option<Vec<i64>>,
    /// `["leads", "sync_runs"]`, or one string as `--tables` takes it: `"leads,sync_runs"`.
    pub tables: Option<TablesValue>,
    pub lookback: Option<String>,
    /// A string, or a TOML date or date-time written bare (`since = 2026-06-01`).
    #[serde(default, deserialize_with = "since_value")]
    pub since: Option<String>,
    pub full_refresh: Option<bool>,
    pub json: Option<bool>,
    pub requests_per_minute: Option<u32>,
    pub max_retries: Option<u32>,
    pub timeout: Option<String>,
    pub csv_bom: Option<bool>,
    pub page_size: Option<u32>,
    /// Named after its flag, `--no-progress`, as every key is.
    pub no_progress: Option<bool>,
}

impl FileConfig {
    /// Whether the file at `path` sets `json = true`, read as plain TOML: for a file that
    /// the settings could not be taken from (a value of the wrong type), so that a scheduler
    /// that asked for a record still gets one.
    pub fn asks_for_json(path: Option<&Path>) -> bool {
        path.and_then(|p| read_text(p, CONFIG_FILE_MAX_BYTES).ok())
            .and_then(|text| text.parse::<toml::Table>().ok())
            .is_some_and(|t| t.get("json").and_then(toml::Value::as_bool) == Some(true))
    }

    /// The file of `--config` if one is given, else an empty one.
    pub fn load_given(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
        path.map_or_else(|| Ok(FileConfig::default()), FileConfig::load)
    }

    /// Read the file. Relative paths in it (`dest`, `api_key_file`) are taken from the
    /// working directory, as on the command line: a scheduled job should give absolute ones.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text =
            read_text(path, CONFIG_FILE_MAX_BYTES).map_err(|source| ConfigError::FileRead {
                path: path.to_path_buf(),
                source,
            })?;
        toml::from_str(&text).map_err(|e| {
            // The place and the reason, not the line itself: a key pasted into the file
            // would be quoted with it (and serde's reasons quote values too, hence the scrub).
            let at = e.span().map_or(String::new(), |span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            });
            ConfigError::FileParse {
                path: path.to_path_buf(),
                message: format!("{at}{}", api::key::scrub_key_like(e.message().trim_end())),
            }
        })
    }
}

/// Everything a `sync` job needs, validated.
#[derive(Debug, Clone)]
pub struct JobConfig {
    pub dest: DestSpec,
    pub base_url: reqwest::Url,
    pub key: ApiKey,
    pub streams: Vec<i64>,
    pub tables: Vec<Table>,
    pub lookback: Duration,
    pub since: Option<DateTime<Utc>>,
    /// `since` came from the command line or the environment, for this run, rather than from
    /// the config file, where it stays for every scheduled run.
    pub since_given: bool,
    pub full_refresh: bool,
    pub json: bool,
    pub requests_per_minute: u32,
    pub csv_bom: bool,
    pub page_size: u32,
    pub runs_page_size: u32,
    pub progress: bool,
    pub max_retries: u32,
    pub timeout: Duration,
}

impl JobConfig {
    /// Flags (+ environment, folded in by clap) over the config file over defaults.
    /// `env_key` is the value of `CTGO_API_KEY`, passed in so tests need not touch the process
    /// environment.
    pub fn resolve(args: &SyncArgs, env_key: Option<String>) -> Result<JobConfig, ConfigError> {
        let file = FileConfig::load_given(args.config.as_deref())?;
        let dest = args
            .dest
            .clone()
            .or(file.dest)
            .ok_or(ConfigError::MissingDest)?;
        let dest = DestSpec::parse(&dest)?;
        let base_url = resolve_base_url(args.base_url.clone().or(file.base_url))?;
        let key_file = args.api_key_file.clone().or(file.api_key_file);
        let key = resolve_key(args.api_key_file.is_some(), key_file, env_key)?;
        refuse_key_in_url(&base_url, &key)?;
        let mut streams = if args.streams.is_empty() {
            file.streams.unwrap_or_default()
        } else {
            args.streams.clone()
        };
        // A stream named twice is read once.
        let mut named = std::collections::HashSet::new();
        streams.retain(|s| named.insert(*s));
        if let Some(bad) = streams.iter().find(|s| **s <= 0) {
            return Err(ConfigError::BadStream(*bad));
        }
        let tables = match (&args.tables, file.tables) {
            (Some(list), _) => parse_tables(list)?,
            (None, Some(list)) => parse_tables(&list.joined())?,
            (None, None) => vec![Table::Leads, Table::SyncRuns],
        };
        let lookback = match args.lookback.clone().or(file.lookback) {
            Some(s) => parse_duration(&s).ok_or(ConfigError::BadLookback(s))?,
            None => DEFAULT_LOOKBACK,
        };
        let since = match args.since.clone().or(file.since) {
            Some(s) => Some(parse_since(&s).ok_or(ConfigError::BadSince(s))?),
            None => None,
        };
        let timeout = resolve_timeout(args.timeout.clone().or(file.timeout))?;
        let requests_per_minute = match &args.requests_per_minute {
            Some(v) => parse_number(
                v,
                "requests per minute",
                "--requests-per-minute",
                "CTGO_REQUESTS_PER_MINUTE",
                "requests_per_minute",
            )?,
            None => file
                .requests_per_minute
                .unwrap_or(api::DEFAULT_REQUESTS_PER_MINUTE),
        };
        let max_retries = match &args.max_retries {
            Some(v) => parse_number(
                v,
                "max retries",
                "--max-retries",
                "CTGO_MAX_RETRIES",
                "max_retries",
            )?,
            None => file.max_retries.unwrap_or(api::DEFAULT_MAX_RETRIES),
        };
        // Never more than the API's documented rate (product guarantee 3): no budget, or a
        // larger one, only for a simulator on this machine.
        if (requests_per_minute == 0 || requests_per_minute > api::DEFAULT_REQUESTS_PER_MINUTE)
            && !api::is_loopback(&base_url)
        {
            return Err(ConfigError::NoRateLimit(
                requests_per_minute,
                base_url.to_string(),
            ));
        }
        let page_size = args
            .page_size
            .or(file.page_size)
            .unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=api::MAX_LEADS_LIMIT).contains(&page_size) {
            return Err(ConfigError::BadPageSize(page_size));
        }
        Ok(JobConfig {
            dest,
            base_url,
            key,
            streams,
            tables,
            lookback,
            since,
            since_given: args.since.is_some(),
            full_refresh: switch(args.full_refresh, args.no_full_refresh)
                .or(file.full_refresh)
                .unwrap_or(false),
            json: switch(args.json, args.no_json)
                .or(file.json)
                .unwrap_or(false),
            requests_per_minute,
            csv_bom: switch(args.csv_bom, args.no_csv_bom)
                .or(file.csv_bom)
                .unwrap_or(false),
            page_size,
            runs_page_size: DEFAULT_RUNS_PAGE_SIZE,
            progress: switch(args.progress, args.no_progress)
                .or(file.no_progress.map(|off| !off))
                .unwrap_or(true),
            max_retries,
            timeout,
        })
    }

    pub fn client_options(&self) -> api::ClientOptions {
        api::ClientOptions {
            base_url: self.base_url.clone(),
            requests_per_minute: self.requests_per_minute,
            max_retries: self.max_retries,
            timeout: self.timeout,
        }
    }
}

/// A base URL that holds the key (pasted in the wrong place) is refused before it is used:
/// a request would send the key to a DNS resolver, and the destination keeps the URL.
pub fn refuse_key_in_url(url: &reqwest::Url, key: &ApiKey) -> Result<(), ConfigError> {
    // As written, and with `%XX` escapes decoded (the key spelled as escapes is still sent).
    let decoded = percent_encoding::percent_decode_str(url.as_str()).decode_utf8_lossy();
    for text in [url.as_str(), &decoded] {
        if crate::api::key::redact_key_in(text, key.expose()) != text {
            return Err(ConfigError::KeyInBaseUrl);
        }
    }
    Ok(())
}

/// The base URL: given, or the documented default.
pub fn resolve_base_url(given: Option<String>) -> Result<reqwest::Url, ConfigError> {
    let url = given.unwrap_or_else(|| api::DEFAULT_BASE_URL.to_string());
    api::parse_base_url(&url).map_err(|reason| ConfigError::BadBaseUrl { url, reason })
}

/// A whole number from the command line or the environment (clap would name only the flag).
fn parse_number(
    value: &str,
    what: &'static str,
    flag: &'static str,
    env: &'static str,
    key: &'static str,
) -> Result<u32, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::BadNumber {
        what,
        value: value.to_string(),
        flag,
        env,
        key,
    })
}

/// The request timeout: given (a duration above zero), or [`api::DEFAULT_TIMEOUT`].
pub fn resolve_timeout(given: Option<String>) -> Result<Duration, ConfigError> {
    match given {
        Some(s) => parse_duration(&s)
            .filter(|d| !d.is_zero())
            .ok_or(ConfigError::BadTimeout(s)),
        None => Ok(api::DEFAULT_TIMEOUT),
    }
}

/// A `--x` / `--no-x` flag pair as one setting: `None` when neither was given. clap keeps only
/// the last of the two (`overrides_with`), so at most one is set.
fn switch(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
    }
}

/// The most a config file may hold: far more than any setting needs.
const CONFIG_FILE_MAX_BYTES: u64 = 1 << 20;
/// The most a key file may hold: a key is 45 characters.
const KEY_FILE_MAX_BYTES: u64 = 4 << 10;

/// A small text file read whole, without a UTF-8 byte order mark (as editors on Windows
/// write it). A file larger than `max` bytes is refused unread, so that a wrong path
/// (`/dev/zero`, a log) is an error, not all memory.
fn read_text(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "it holds more than {max} bytes, which this file never needs: is it the right path?"
        )));
    }
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// The key: `--api-key-file` (flag) over `CTGO_API_KEY` over `api_key_file` (config file).
pub fn resolve_key(
    key_file_from_flag: bool,
    key_file: Option<PathBuf>,
    env_key: Option<String>,
) -> Result<ApiKey, ConfigError> {
    let from_file = |path: PathBuf| -> Result<ApiKey, ConfigError> {
        let text = read_text(&path, KEY_FILE_MAX_BYTES).map_err(|source| ConfigError::KeyFile {
            path: path.clone(),
            source,
        })?;
        warn_if_readable_by_others(&path);
        ApiKey::parse(&text).map_err(|reason| ConfigError::BadKey {
            origin: format!("in {}", path.display()),
            reason,
        })
    };
    let env_key = env_key.filter(|k| !k.trim().is_empty());
    match (key_file, env_key) {
        (Some(path), _) if key_file_from_flag => from_file(path),
        (_, Some(k)) => ApiKey::parse(&k).map_err(|reason| ConfigError::BadKey {
            origin: format!("in {KEY_ENV}"),
            reason,
        }),
        (Some(path), None) => from_file(path),
        (None, None) => Err(ConfigError::MissingKey),
    }
}

/// A key file every user may read leaks the key to all of them (as ssh warns of a private
/// key): say so, and go on. A group's read is left to the administrator (a Kubernetes secret
/// mounted with `fsGroup` is 0440).
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o007 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "The API key file can be read by every user of this machine: chmod 600 it (or 640 for a group)."
        );
    }
}

fn parse_tables(list: &str) -> Result<Vec<Table>, ConfigError> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match Table::from_name(name) {
            Some(t @ (Table::Leads | Table::SyncRuns)) => {
                if !out.contains(&t) {
                    out.push(t)
                }
            }
            _ => return Err(ConfigError::BadTables(list.to_string())),
        }
    }
    if out.is_empty() {
        return Err(ConfigError::BadTables(list.to_string()));
    }
    out.sort();
    Ok(out)
}

/// `15m`, `1h`, `90s`, `1h 30m`, `0s`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    humantime::parse_duration(s.trim()).ok()
}

/// RFC 3339 (`2026-06-01T00:00:00Z`, offsets allowed) or a bare date (`2026-06-01`, midnight
/// UTC), from 1970 on: an earlier one (`0000-01-01`) is no time the API keeps leads of, and
/// would go out as a year it refuses.
pub fn parse_since(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    let t = match DateTime::parse_from_rfc3339(s) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc()),
    };
    t.filter(|t| t.timestamp() >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ctgo_0123456789abcdefghijklmnopqrstuvwxyzABCD";

    fn args(dest: &str) -> SyncArgs {
        SyncArgs {
            dest: Some(dest.to_string()),
            base_url: Some("http://127.0.0.1:9/api/v2".into()),
            ..Default::default()
        }
    }

    #[test]
    fn destinations_parse() {
        assert_eq!(
            DestSpec::parse("sqlite:a.db").unwrap(),
            DestSpec::Sqlite("a.db".into())
        );
        assert_eq!(
            DestSpec::parse("parquet:/x").unwrap(),
            DestSpec::Parquet("/x".into())
        );
        assert!(DestSpec::parse("mysql:x").is_err());
        assert!(DestSpec::parse("sqlite:").is_err());
        assert!(DestSpec::parse("leads.db").is_err());
        // URL habits, stray spaces and directories for a database file are refused.
        for bad in [
            "sqlite://x.db",
            "sqlite:///tmp/x.db",
            "parquet://out",
            "sqlite: x.db",
            "csv:out ",
            "sqlite:out/",
            "sqlite:~",
            "sqlite:~other/x.db",
        ] {
            let err = DestSpec::parse(bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("bad destination {bad:?}: ")),
                "{err}"
            );
        }
        assert!(DestSpec::parse("parquet:out/").is_ok());
    }

    #[test]
    fn since_in_the_file_may_be_a_bare_toml_date_or_time() {
        let since = |text: &str| {
            toml::from_str::<FileConfig>(text).map(|f| f.since.as_deref().and_then(parse_since))
        };
        let june = parse_since("2026-06-01T00:00:00Z");
        assert_eq!(since("since = 2026-06-01T00:00:00Z").unwrap(), june);
        assert_eq!(since("since = 2026-06-01T02:00:00+02:00").unwrap(), june);
        assert_eq!(since("since = 2026-06-01").unwrap(), june);
        assert_eq!(since("since = \"2026-06-01\"").unwrap(), june);
        // Without its zone it is no time: refused as --since would be.
        assert_eq!(since("since = 2026-06-01T00:00:00").unwrap(), None);
        let err = since("since = 5").unwrap_err().to_string();
        assert!(err.contains("since takes a date or a time"), "{err}");
        assert_eq!(since("").unwrap(), None);
    }

    #[test]
    fn since_is_a_time_from_1970_on() {
        let ms = |s: &str| parse_since(s).map(|t| t.timestamp_millis());
        assert_eq!(ms("1970-01-01"), Some(0));
        assert_eq!(ms("2026-06-01T02:00:00+02:00"), Some(1_780_272_000_000));
        assert_eq!(ms("0000-01-01T00:00:00Z"), None);
        assert_eq!(ms("1969-12-31T23:59:59Z"), None);
        assert_eq!(ms("1970-01-01T00:30:00+01:00"), None);
        assert_eq!(ms("yesterday"), None);
    }

    #[test]
    fn a_destination_under_tilde_is_under_home() {
        let home = std::env::var_os("HOME").expect("HOME is set for tests");
        assert_eq!(
            DestSpec::parse("sqlite:~/leads.db").unwrap(),
            DestSpec::Sqlite(PathBuf::from(&home).join("leads.db"))
        );
        assert_eq!(
            DestSpec::parse("parquet:~/out/").unwrap(),
            DestSpec::Parquet(PathBuf::from(&home).join("out/"))
        );
    }

    #[test]
    fn no_rate_limit_only_for_a_local_simulator() {
        let mut a = args("sqlite:x.db");
        a.requests_per_minute = Some("0".into());
        assert!(JobConfig::resolve(&a, Some(KEY.into())).is_ok());
        a.base_url = Some("https://api.example.com/api/v2".into());
        assert!(matches!(
            JobConfig::resolve(&a, Some(KEY.into())),
            Err(ConfigError::NoRateLimit(..))
        ));
        a.requests_per_minute = Some("61".into());
        assert!(JobConfig::resolve(&a, Some(KEY.into())).is_err());
        a.requests_per_minute = Some("30".into());
        assert!(JobConfig::resolve(&a, Some(KEY.into())).is_ok());
    }

    #[test]
    fn key_and_config_files_may_start_with_a_byte_order_mark_and_are_read_only_when_small() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("key");
        std::fs::write(&key, format!("\u{feff}{KEY}\r\n")).unwrap();
        let parsed = resolve_key(true, Some(key.clone()), None).expect("a key after a BOM");
        assert_eq!(parsed.expose(), KEY);
        let config = tmp.path().join("c.toml");
        std::fs::write(&config, "\u{feff}page_size = 250\n").unwrap();
        assert_eq!(
            FileConfig::load(&config)
                .expect("a file after a BOM")
                .page_size,
            Some(250)
        );

        // Too large: refused with the path, whatever it holds.
        std::fs::write(&key, format!("{KEY}\n{}", " ".repeat(5000))).unwrap();
        let e = resolve_key(true, Some(key.clone()), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("more than 4096 bytes") && e.contains("key"),
            "{e}"
        );
        let e = resolve_key(true, Some("/dev/zero".into()), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/dev/zero") && e.contains("more than 4096 bytes"),
            "{e}"
        );
        let e = FileConfig::load(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 1048576 bytes"), "{e}");
        assert!(!FileConfig::asks_for_json(Some(Path::new("/dev/zero"))));
    }

    #[test]
    fn missing_key_names_the_variable() {
        let err = JobConfig::resolve(&args("sqlite:x.db"), None).unwrap_err();
        assert!(err.to_string().contains("CTGO_API_KEY"), "{err}");
    }

    #[test]
    fn defaults_and_overrides() {
        let cfg = JobConfig::resolve(&args("sqlite:x.db"), Some(KEY.into())).unwrap();
        assert_eq!(cfg.lookback, DEFAULT_LOOKBACK);
        assert_eq!(cfg.tables, vec![Table::Leads, Table::SyncRuns]);
        assert_eq!(cfg.page_size, 500);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "dest = \"csv:out\"\nlookback = \"1h\"\ntables = [\"leads\"]\nstreams = [4]\n",
        )
        .unwrap();
        let mut a = args("sqlite:x.db");
        a.config = Some(file.clone());
        a.lookback = Some("20m".into());
        let cfg = JobConfig::resolve(&a, Some(KEY.into())).unwrap();
        assert_eq!(cfg.dest, DestSpec::Sqlite("x.db".into()), "flag wins");
        assert_eq!(cfg.lookback, Duration::from_secs(1200), "flag wins");
        assert_eq!(cfg.tables, vec![Table::Leads], "file used");
        assert_eq!(cfg.streams, vec![4]);
        a.dest = None;
        let cfg = JobConfig::resolve(&a, Some(KEY.into())).unwrap();
        assert_eq!(cfg.dest, DestSpec::Csv("out".into()));

        // `tables` as the flag takes it, one string.
        std::fs::write(&file, "dest = \"csv:out\"\ntables = \"sync_runs\"\n").unwrap();
        let cfg = JobConfig::resolve(&a, Some(KEY.into())).unwrap();
        assert_eq!(cfg.tables, vec![Table::SyncRuns]);

        std::fs::write(&file, "dest = \"csv:out\"\nbogus = 1\n").unwrap();
        assert!(matches!(
            JobConfig::resolve(&a, Some(KEY.into())),
            Err(ConfigError::FileParse { .. })
        ));
    }

    #[test]
    fn the_sample_config_file_is_valid() {
        let text = include_str!("../samples/ctgo-export.toml");
        let file: FileConfig = toml::from_str(text).unwrap();
        assert!(DestSpec::parse(file.dest.as_deref().unwrap()).is_ok());
        assert!(parse_duration(file.lookback.as_deref().unwrap()).is_some());
        parse_tables(&file.tables.unwrap().joined()).unwrap();
        // The commented-out keys are valid too, once uncommented.
        let uncommented: String = text
            .lines()
            .filter_map(|l| {
                let l = l.strip_prefix("# ").unwrap_or(l);
                let (key, _) = l.split_once(" = ")?;
                key.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
                    .then(|| format!("{l}\n"))
            })
            .collect();
        let all: FileConfig = toml::from_str(&uncommented).unwrap();
        assert!(resolve_timeout(all.timeout).is_ok());
        assert!(all.no_progress.is_some(), "the sample lists no_progress");
    }

    /// A config file holding every yes/no setting as `on`, and the other settings.
    fn file_with(dir: &Path, on: bool) -> PathBuf {
        let file = dir.join(format!("{on}.toml"));
        std::fs::write(
            &file,
            format!(
                "dest = \"csv:out\"\nfull_refresh = {on}\njson = {on}\ncsv_bom = {on}\n\
                 no_progress = {on}\ntimeout = \"5s\"\nrequests_per_minute = 10\n\
                 max_retries = 2\npage_size = 50\n"
            ),
        )
        .unwrap();
        file
    }

    /// (full_refresh, json, csv_bom, progress)
    fn switches(cfg: &JobConfig) -> (bool, bool, bool, bool) {
        (cfg.full_refresh, cfg.json, cfg.csv_bom, cfg.progress)
    }

    #[test]
    fn the_file_applies_when_no_flag_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args("sqlite:x.db");
        let cfg = JobConfig::resolve(&a, Some(KEY.into())).unwrap();
        assert_eq!(switches(&cfg), (false, false, false, true), "defaults");
        assert_eq!(cfg.timeout, api::DEFAULT_TIMEOUT);

        a.config = Some(file_with(dir.path(), true));
        let cfg = JobConfig::resolve(&a, Some(KEY.into())).unwrap();
        assert_eq!(switches(&cfg), (true, true, true, false));
        assert_eq!(cfg.timeout, Duration::from_secs(5));
        assert_eq!((cfg.requests_per_minute, cfg.max_retries), (10, 2));
        assert_eq!(cfg.page_size, 50);

        a.config = Some(file_with(dir.path(), false));
        let cfg = JobConfig::resolve(&a, Some(KEY.into())).unwrap();
        assert_eq!(switches(&cfg), (false, false, false, true));
    }

    #[test]
    fn flags_override_the_file_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        // Off on the command line beats on in the file...
        let mut a = args("sqlite:x.db");
        a.config = Some(file_with(dir.path(), true));
        a.no_full_refresh = true;
        a.no_json = true;
        a.no_csv_bom = true;
        a.progress = true;
        a.timeout = Some("250ms".into());
        a.requests_per_minute = Some("0".into());
        a.max_retries = Some("7".into());
        a.page_size = Some(100);
        let cfg = JobConfig::resolve(&a, Some(KEY.into())).unwrap();
        assert_eq!(switches(&cfg), (false, false, false, true));
        assert_eq!(cfg.timeout, Duration::from_millis(250));
        assert_eq!((cfg.requests_per_minute, cfg.max_retries), (0, 7));
        assert_eq!(cfg.page_size, 100);
        assert_eq!(cfg.client_options().timeout, Duration::from_millis(250));

        // ...and on beats off.
        let mut a = args("sqlite:x.db");
        a.config = Some(file_with(dir.path(), false));
        a.full_refresh = true;
        a.json = true;
        a.csv_bom = true;
        a.no_progress = true;
        let cfg = JobConfig::resolve(&a, Some(KEY.into())).unwrap();
        assert_eq!(switches(&cfg), (true, true, true, false));
    }

    fn parse_sync(argv: &[&str]) -> SyncArgs {
        use clap::Parser;
        let argv = ["ctgo-export", "sync", "--dest", "sqlite:x.db"]
            .iter()
            .chain(argv);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Sync(a) => a,
            other => panic!("not sync: {other:?}"),
        }
    }

    #[test]
    fn of_a_flag_and_its_negation_the_last_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let on = file_with(dir.path(), true).display().to_string();
        let off = file_with(dir.path(), false).display().to_string();
        let resolve = |argv: &[&str]| {
            let mut a = parse_sync(argv);
            a.base_url = Some("http://127.0.0.1:9/api/v2".into());
            switches(&JobConfig::resolve(&a, Some(KEY.into())).unwrap())
        };
        assert_eq!(
            resolve(&["--full-refresh", "--json", "--csv-bom", "--no-progress"]),
            (true, true, true, false),
            "the existing flags keep their meaning"
        );
        assert_eq!(
            resolve(&[
                "--full-refresh",
                "--no-full-refresh",
                "--no-json",
                "--json",
                "--csv-bom",
                "--no-csv-bom",
                "--progress",
                "--no-progress",
            ]),
            (false, true, false, false)
        );
        assert_eq!(
            resolve(&[
                "--config",
                &on,
                "--no-full-refresh",
                "--no-json",
                "--no-csv-bom",
                "--progress",
            ]),
            (false, false, false, true)
        );
        assert_eq!(
            resolve(&[
                "--config",
                &off,
                "--full-refresh",
                "--json",
                "--csv-bom",
                "--no-progress",
            ]),
            (true, true, true, false)
        );
        assert_eq!(resolve(&["--config", &on]), (true, true, true, false));
    }

    /// Runs the calling test again in a child process of this test binary, with `env` set and
    /// every other `CTGO_*` variable removed; returns true in the child, which does the checks.
    /// clap reads the environment of the process, and setting variables in this one would race
    /// with the other tests' threads (`set_var` is unsafe for that reason).
    fn in_child_with_env(test: &str, env: &[(&str, String)]) -> bool {
        const CHILD: &str = "CTGO_TEST_CONFIG_CHILD";
        if std::env::var_os(CHILD).is_some() {
            return true;
        }
        let module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, m)| m);
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            &format!("{module}::{test}"),
            "--exact",
            "--test-threads",
            "1",
        ]);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CTGO_") {
                cmd.env_remove(name);
            }
        }
        cmd.env(CHILD, "1");
        for (name, value) in env {
            cmd.env(name, value);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "the child test failed or did not run:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        false
    }

    #[test]
    fn the_environment_overrides_the_file_and_flags_override_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "dest = \"csv:from-file\"\nbase_url = \"https://file.example/api/v2\"\n\
             tables = [\"sync_runs\"]\nlookback = \"1h\"\nsince = \"2026-01-01\"\n\
             requests_per_minute = 10\nmax_retries = 2\ntimeout = \"5s\"\n",
        )
        .unwrap();
        let env = [
            ("CTGO_CONFIG", file.display().to_string()),
            ("CTGO_DEST", "parquet:from-env".to_string()),
            ("CTGO_BASE_URL", "https://env.example/api/v2".to_string()),
            ("CTGO_TABLES", "leads".to_string()),
            ("CTGO_LOOKBACK", "30m".to_string()),
            ("CTGO_SINCE", "2026-02-01".to_string()),
            ("CTGO_REQUESTS_PER_MINUTE", "20".to_string()),
            ("CTGO_MAX_RETRIES", "4".to_string()),
            ("CTGO_TIMEOUT", "90s".to_string()),
        ];
        if !in_child_with_env(
            "the_environment_overrides_the_file_and_flags_override_both",
            &env,
        ) {
            return;
        }
        use clap::Parser;
        let parse = |argv: &[&str]| {
            let argv = ["ctgo-export", "sync"].iter().chain(argv);
            match crate::cli::Cli::try_parse_from(argv).unwrap().command {
                crate::cli::Command::Sync(a) => JobConfig::resolve(&a, Some(KEY.into())).unwrap(),
                other => panic!("not sync: {other:?}"),
            }
        };
        let cfg = parse(&[]);
        assert_eq!(cfg.dest, DestSpec::Parquet("from-env".into()));
        assert_eq!(cfg.base_url.as_str(), "https://env.example/api/v2");
        assert_eq!(cfg.tables, vec![Table::Leads]);
        assert_eq!(cfg.lookback, Duration::from_secs(30 * 60));
        assert_eq!(cfg.since, parse_since("2026-02-01"));
        assert_eq!((cfg.requests_per_minute, cfg.max_retries), (20, 4));
        assert_eq!(cfg.timeout, Duration::from_secs(90));

        let cfg = parse(&[
            "--dest",
            "sqlite:from-flag.db",
            "--base-url",
            "https://flag.example/api/v2",
            "--tables",
            "sync_runs,leads",
            "--lookback",
            "20m",
            "--since",
            "2026-03-01",
            "--requests-per-minute",
            "30",
            "--max-retries",
            "6",
            "--timeout",
            "2m",
        ]);
        assert_eq!(cfg.dest, DestSpec::Sqlite("from-flag.db".into()));
        assert_eq!(cfg.base_url.as_str(), "https://flag.example/api/v2");
        assert_eq!(cfg.tables, vec![Table::Leads, Table::SyncRuns]);
        assert_eq!(cfg.lookback, Duration::from_secs(20 * 60));
        assert_eq!(cfg.since, parse_since("2026-03-01"));
        assert_eq!((cfg.requests_per_minute, cfg.max_retries), (30, 6));
        assert_eq!(cfg.timeout, Duration::from_secs(120));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let mut a = args("sqlite:x.db");
        a.lookback = Some("soon".into());
        assert!(matches!(
            JobConfig::resolve(&a, Some(KEY.into())),
            Err(ConfigError::BadLookback(_))
        ));
        let mut a = args("sqlite:x.db");
        a.tables = Some("leads,users".into());
        assert!(JobConfig::resolve(&a, Some(KEY.into())).is_err());
        let mut a = args("sqlite:x.db");
        a.since = Some("yesterday".into());
        assert!(JobConfig::resolve(&a, Some(KEY.into())).is_err());
        for bad in ["soon", "0s", ""] {
            let mut a = args("sqlite:x.db");
            a.timeout = Some(bad.into());
            assert!(
                matches!(
                    JobConfig::resolve(&a, Some(KEY.into())),
                    Err(ConfigError::BadTimeout(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            resolve_timeout(Some("1 fortnight".into())),
            Err(ConfigError::BadTimeout(_))
        ));
        let mut a = args("sqlite:x.db");
        a.base_url = Some("http://example.com/api/v2".into());
        assert!(matches!(
            JobConfig::resolve(&a, Some(KEY.into())),
            Err(ConfigError::BadBaseUrl { .. })
        ));
        assert_eq!(
            parse_since("2026-06-01").unwrap().to_rfc3339(),
            "2026-06-01T00:00:00+00:00"
        );
    }
}
