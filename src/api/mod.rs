//! The Catch The Good Ones API client.
//!
//! Everything that talks to the API goes through [`ApiClient`], which guarantees:
//! - **polite**: never more requests than the sliding-window budget ([`ratelimit`]), a 429
//!   waits exactly as `Retry-After` says, transient faults back off with jitter ([`retry`]);
//! - **classified errors**: permanent failures come back as [`ApiError`] variants that say
//!   what to do, decided on the status and the API's `error` code, never on message text;
//! - **exact records**: each lead and run is handed on as its exact JSON text
//!   ([`RawValue`]), so mapping and content hashing see what the API sent;
//! - **a secret key**: the key travels only in the `Authorization` header (marked sensitive),
//!   is redacted from any text the API sends back, and prints as `ctgo_****`. Headers are
//!   never logged; URLs (which reqwest errors print) hold no key.
//!
//! Bodies are read fully as bytes, then parsed: a body cut short is a transport fault
//! (retried), and a body that parses but is not the expected envelope (HTML from a proxy,
//! `leads` missing) is "nonsense", also retried because it may be a truncated answer, and
//! reported as [`ApiError::Malformed`] if it persists.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;

pub mod clock;
pub mod error;
pub mod key;
pub mod ratelimit;
pub mod retry;

pub use error::ApiError;
pub use key::ApiKey;
pub use retry::RetryTuning;

use retry::{Fault, Outcome};

pub const DEFAULT_BASE_URL: &str = "https://www.catchthegoodones.com/api/v2";
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 60;
pub const MAX_LEADS_LIMIT: u32 = 500;
pub const MAX_RUNS_LIMIT: u32 = 100;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_RETRIES: u32 = 8;
/// The documented default page size of the leads endpoints (sent when `limit` is 0).
pub const DEFAULT_LEADS_LIMIT: u32 = 100;
/// The documented default page size of the runs endpoints.
pub const DEFAULT_RUNS_LIMIT: u32 = 30;
/// The page size used after the API refused a larger one with 400 (contract open point 5).
pub const FALLBACK_LEADS_LIMIT: u32 = 100;
/// How much of an unexpected body an error shows.
pub const BODY_SNIPPET_BYTES: usize = 200;
/// How much of a body is redacted before [`BODY_SNIPPET_BYTES`] of it are quoted.
const REDACT_WINDOW_BYTES: usize = 64 * 1024;
/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("ctgo-export/", env!("CARGO_PKG_VERSION"));

/// How the client behaves; every field has a named default.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub base_url: reqwest::Url,
    pub requests_per_minute: u32,
    pub max_retries: u32,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct LeadsQuery {
    /// `Some` → `GET /streams/{id}/leads`, `None` → `GET /leads`.
    pub stream_id: Option<i64>,
    pub since: Option<DateTime<Utc>>,
    /// 0 → the API's default (100); above [`MAX_LEADS_LIMIT`] → [`MAX_LEADS_LIMIT`].
    pub limit: u32,
    pub offset: u64,
}

/// The records of a page: the page's JSON text and where each record is in it (one buffer
/// per page rather than an allocation per record).
#[derive(Debug, Default)]
pub struct Records {
    text: Box<str>,
    spans: Vec<std::ops::Range<usize>>,
}

impl Records {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The JSON text of record `i`.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.spans.get(i).map(|r| &self.text[r.clone()])
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.spans.iter().map(|r| &self.text[r.clone()])
    }

    pub fn first(&self) -> Option<&str> {
        self.get(0)
    }

    pub fn last(&self) -> Option<&str> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }
}

impl LeadsPage {
    /// A `/leads` answer, asked with `limit`; why not, in the API's terms.
    pub fn parse(body: &[u8], limit: u32) -> Result<LeadsPage, String> {
        parse_forgiving(body, "leads page", |text| {
            let env: LeadsEnvelope<'_> = serde_json::from_str(text).map_err(|e| {
                envelope_error(text, r#"{"leads": [...], "total": n, "hasMore": b}"#, &e)
            })?;
            // Where each record is in the page's text: its address less the text's.
            let base = text.as_ptr() as usize;
            let spans = env
                .leads
                .iter()
                .map(|r| {
                    let start = r.get().as_ptr() as usize - base;
                    start..start + r.get().len()
                })
                .collect();
            Ok(LeadsPage {
                records: Records {
                    text: text.into(),
                    spans,
                },
                total: env.total.as_ref().and_then(count),
                has_more: env.has_more.as_ref().and_then(flag),
                limit_used: limit,
            })
        })
    }
}

/// Why a body is not the envelope `expected`. (serde reads a top-level array as the
/// envelope's fields in order, and would complain of its first element instead.)
fn envelope_error(text: &str, expected: &str, e: &serde_json::Error) -> String {
    match text.trim_start().as_bytes().first() {
        Some(b'[') => format!("expected {expected}, got a JSON array"),
        _ => format!("expected {expected} ({e})"),
    }
}

/// Parse a body with `parse`, forgiving what does not change its meaning: a UTF-8 byte order
/// mark before the JSON; bytes that are not UTF-8 (each becomes U+FFFD, as a lone surrogate
/// does); raw control characters inside strings (escaped, as JSON wants them). Otherwise one
/// bad byte in one lead's bio would stop every export at that page, run after run. The
/// repaired text is parsed only after the body as sent failed, and the repair is logged.
fn parse_forgiving<T>(
    body: &[u8],
    what: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, String> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    // Borrowed (no copy) when the body is UTF-8, as it nearly always is; `from_utf8` first, as
    // it checks faster than the lossy decoder's own loop.
    let text = match std::str::from_utf8(body) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(body),
    };
    let not_utf8 = matches!(text, std::borrow::Cow::Owned(_));
    let err = match parse(&text) {
        Ok(v) => {
            if not_utf8 {
                tracing::warn!(
                    what,
                    "A {what} held bytes that are not UTF-8; each was read as U+FFFD."
                );
            }
            return Ok(v);
        }
        Err(e) => e,
    };
    let Some(escaped) = escape_controls_in_strings(&text) else {
        return Err(err);
    };
    match parse(&escaped) {
        Ok(v) => {
            tracing::warn!(
                what,
                not_utf8,
                "A {what} held raw control characters inside strings (JSON wants them escaped); \
                 read them as if escaped."
            );
            Ok(v)
        }
        Err(_) => Err(err),
    }
}

/// `text` with JSON's escapes of single characters (`\u0079`, `\/`, `\\`, `\"`) decoded, so
/// that a quote of a body shows, and redacts, what the escapes stand for.
fn decode_json_escapes(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\\') {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (decoded, used) = match after.as_bytes().first() {
            Some(b'/') => (Some('/'), 1),
            Some(b'\\') => (Some('\\'), 1),
            Some(b'"') => (Some('"'), 1),
            Some(b'u') => (
                after
                    .get(1..5)
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .and_then(char::from_u32),
                5,
            ),
            _ => (None, 0),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[used..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.into()
}

/// `text` with every raw control character inside a JSON string escaped (`\t`, `\u0000`, ...);
/// `None` when there is none.
fn escape_controls_in_strings(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let (mut in_string, mut escaped) = (false, false);
    let mut out: Option<Vec<u8>> = None;
    for (i, &b) in bytes.iter().enumerate() {
        let raw_control = in_string && !escaped && b < 0x20;
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        }
        if raw_control {
            let out = out.get_or_insert_with(|| {
                let mut v = Vec::with_capacity(bytes.len() + 16);
                v.extend_from_slice(&bytes[..i]);
                v
            });
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            }
        } else if let Some(out) = out.as_mut() {
            out.push(b);
        }
    }
    // Only ASCII bytes were replaced, by ASCII: still UTF-8.
    out.map(|v| String::from_utf8(v).expect("ASCII replaced by ASCII"))
}

/// `hasMore` as the API may spell it: `true`/`false`, `1`/`0`, or those as strings.
fn flag(v: &serde_json::Value) -> Option<bool> {
    match v {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        serde_json::Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// `total` as the API may spell it: a whole number, `47.0`, or `"47"`.
fn count(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15)
                .map(|f| f as u64)
        }),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[derive(Debug)]
pub struct LeadsPage {
    pub records: Records,
    pub total: Option<u64>,
    pub has_more: Option<bool>,
    /// The `limit` this page was actually requested with (lower than asked when the API
    /// refused a larger one, or the asked one was above the maximum).
    pub limit_used: u32,
}

#[derive(Debug, Clone, Default)]
pub struct RunsQuery {
    /// `Some` → `GET /streams/{id}/runs` (no offset), `None` → `GET /runs`.
    pub stream_id: Option<i64>,
    /// 0 → the API's default; above [`MAX_RUNS_LIMIT`] → [`MAX_RUNS_LIMIT`].
    pub limit: u32,
    pub offset: Option<u64>,
}

#[derive(Debug)]
pub struct RunsPage {
    pub records: Vec<Box<RawValue>>,
    pub total: Option<u64>,
    pub has_more: Option<bool>,
    /// The page size this page was asked with (the API's default when none was sent).
    pub limit_used: u32,
}

/// Counters of what the client did, for the job summary and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests sent (every attempt).
    pub requests: u64,
    /// Transient retries.
    pub retries: u64,
    /// 429 waits.
    pub rate_limited: u64,
    /// Time spent waiting for the rate limit (see [`ratelimit::RateLimiter::waited`]).
    pub rate_wait: Duration,
}

/// The live counters behind [`ClientStats`].
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub rate_limited: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ClientStats {
        ClientStats {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            rate_wait: Duration::ZERO,
        }
    }
}

pub struct ApiClient {
    http: reqwest::Client,
    key: ApiKey,
    opts: ClientOptions,
    tuning: RetryTuning,
    limiter: ratelimit::RateLimiter,
    counters: Counters,
    /// Lowered to [`FALLBACK_LEADS_LIMIT`] once the API refused a larger page.
    leads_limit_cap: AtomicU32,
    /// Finds the key in an answer's body ([`ApiClient::without_key`]). (Not in `Debug`.)
    key_finder: memchr::memmem::Finder<'static>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("key", &self.key)
            .field("base_url", &self.opts.base_url.as_str())
            .field("requests_per_minute", &self.opts.requests_per_minute)
            .field("max_retries", &self.opts.max_retries)
            .field("timeout", &self.opts.timeout)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct LeadsEnvelope<'a> {
    #[serde(borrow)]
    leads: Vec<&'a RawValue>,
    #[serde(default)]
    total: Option<serde_json::Value>,
    #[serde(default, rename = "hasMore")]
    has_more: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RunsEnvelope {
    runs: Vec<Box<RawValue>>,
    #[serde(default)]
    total: Option<serde_json::Value>,
    #[serde(default, rename = "hasMore")]
    has_more: Option<serde_json::Value>,
}

impl ApiClient {
    pub fn new(key: ApiKey, opts: ClientOptions) -> Result<Self, ApiError> {
        Self::with_tuning(key, opts, RetryTuning::default())
    }

    /// Like [`ApiClient::new`], with other backoff and 429 limits (tests use tiny backoffs).
    pub fn with_tuning(
        key: ApiKey,
        opts: ClientOptions,
        tuning: RetryTuning,
    ) -> Result<Self, ApiError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
            .map_err(|_| ApiError::Client("the API key cannot be sent as a header".into()))?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, auth);
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .timeout(opts.timeout)
            // A redirect to another host would drop the key and read as "key refused"; one to
            // plain http must not happen. The API documents none, so a 3xx is reported.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ApiError::Client(error_chain(&e)))?;
        // The secret after `ctgo_`: found with or without its prefix (or with the prefix
        // JSON-escaped), and replaced by `****`, so a whole key becomes `ctgo_****`.
        let secret = key.expose();
        let secret = secret.strip_prefix(key::KEY_PREFIX).unwrap_or(secret);
        let key_finder = memchr::memmem::Finder::new(secret.as_bytes()).into_owned();
        Ok(ApiClient {
            http,
            limiter: ratelimit::RateLimiter::new(opts.requests_per_minute),
            key,
            opts,
            tuning,
            counters: Counters::default(),
            leads_limit_cap: AtomicU32::new(MAX_LEADS_LIMIT),
            key_finder,
        })
    }

    pub async fn leads(&self, q: &LeadsQuery) -> Result<LeadsPage, ApiError> {
        let asked = if q.limit == 0 {
            DEFAULT_LEADS_LIMIT
        } else {
            q.limit
        };
        let limit = asked.min(self.leads_limit_cap.load(Ordering::Relaxed));
        match self.leads_once(q, limit).await {
            Err(ApiError::BadRequest {
                endpoint, message, ..
            }) if limit > FALLBACK_LEADS_LIMIT => {
                tracing::warn!(
                    endpoint,
                    limit,
                    fallback = FALLBACK_LEADS_LIMIT,
                    api_message = message,
                    "The API refused the request (400), perhaps for its page size; retrying with the fallback limit and keeping it for this client."
                );
                self.leads_limit_cap
                    .store(FALLBACK_LEADS_LIMIT, Ordering::Relaxed);
                self.leads_once(q, FALLBACK_LEADS_LIMIT).await
            }
            other => other,
        }
    }

    async fn leads_once(&self, q: &LeadsQuery, limit: u32) -> Result<LeadsPage, ApiError> {
        let (endpoint, mut url) = match q.stream_id {
            Some(id) => self.url(&format!("/streams/{id}/leads")),
            None => self.url("/leads"),
        };
        {
            let mut qp = url.query_pairs_mut();
            if let Some(since) = q.since {
                qp.append_pair("since", &since.to_rfc3339_opts(SecondsFormat::Secs, true));
            }
            qp.append_pair("limit", &limit.to_string());
            qp.append_pair("offset", &q.offset.to_string());
        }
        self.get(&endpoint, url, "leads page", |body| {
            LeadsPage::parse(body, limit)
        })
        .await
    }

    pub async fn runs(&self, q: &RunsQuery) -> Result<RunsPage, ApiError> {
        // Not sent when 0: the API's default applies.
        let limit = match q.limit {
            0 => DEFAULT_RUNS_LIMIT,
            l => l.min(MAX_RUNS_LIMIT),
        };
        let (endpoint, mut url) = match q.stream_id {
            Some(id) => self.url(&format!("/streams/{id}/runs")),
            None => self.url("/runs"),
        };
        {
            let mut qp = url.query_pairs_mut();
            if q.limit > 0 {
                qp.append_pair("limit", &limit.to_string());
            }
            if q.stream_id.is_none()
                && let Some(offset) = q.offset
            {
                qp.append_pair("offset", &offset.to_string());
            }
        }
        self.get(&endpoint, url, "runs page", |body| {
            parse_forgiving(body, "runs page", |text| {
                let env: RunsEnvelope = serde_json::from_str(text)
                    .map_err(|e| envelope_error(text, r#"{"runs": [...]}"#, &e))?;
                Ok(RunsPage {
                    records: env.runs,
                    total: env.total.as_ref().and_then(count),
                    has_more: env.has_more.as_ref().and_then(flag),
                    limit_used: limit,
                })
            })
        })
        .await
    }

    /// `GET /streams`, as JSON values (shape open: `{"streams": [...]}`, or a bare array).
    pub async fn streams(&self) -> Result<Vec<serde_json::Value>, ApiError> {
        let (endpoint, url) = self.url("/streams");
        self.get(&endpoint, url, "streams list", |body| {
            parse_forgiving(body, "streams list", |text| {
                match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(serde_json::Value::Object(mut o)) => match o.remove("streams") {
                        Some(serde_json::Value::Array(a)) => Ok(a),
                        _ => Err("expected {\"streams\": [...]}".to_string()),
                    },
                    Ok(serde_json::Value::Array(a)) => Ok(a),
                    Ok(_) => Err("expected {\"streams\": [...]}".to_string()),
                    Err(e) => Err(format!("not JSON ({e})")),
                }
            })
        })
        .await
    }

    /// `GET /me`, as returned, but with the key redacted from every string in it (`check
    /// --json` prints it: an account endpoint may well echo the key).
    pub async fn me(&self) -> Result<serde_json::Value, ApiError> {
        let (endpoint, url) = self.url("/me");
        let mut me = self
            .get(&endpoint, url, "JSON object", |body| {
                parse_forgiving(body, "JSON object", |text| {
                    match serde_json::from_str::<serde_json::Value>(text) {
                        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
                        Ok(_) => Err("expected a JSON object".to_string()),
                        Err(e) => Err(format!("not JSON ({e})")),
                    }
                })
            })
            .await?;
        self.redact_strings(&mut me);
        Ok(me)
    }

    /// Every string in `v` (decoded, so escapes hide nothing) with the key redacted.
    fn redact_strings(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => *s = self.redact(s),
            serde_json::Value::Array(items) => {
                items.iter_mut().for_each(|i| self.redact_strings(i))
            }
            serde_json::Value::Object(map) => {
                let redacted: serde_json::Map<String, serde_json::Value> = std::mem::take(map)
                    .into_iter()
                    .map(|(k, mut v)| {
                        self.redact_strings(&mut v);
                        (self.redact(&k), v)
                    })
                    .collect();
                *map = redacted;
            }
            _ => {}
        }
    }

    pub fn stats(&self) -> ClientStats {
        ClientStats {
            rate_wait: self.limiter.waited(),
            ..self.counters.snapshot()
        }
    }

    /// The endpoint name (for logs and errors) and its URL under the base.
    fn url(&self, path: &str) -> (String, reqwest::Url) {
        let mut url = self.opts.base_url.clone();
        // The base has no query or fragment (checked by `parse_base_url`), so appending to the
        // path is enough; `set_path` percent-encodes anything odd.
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}{path}"));
        (path.to_string(), url)
    }

    /// One GET with rate limit and retries; `parse` turns a 2xx body into `T` or says why not.
    async fn get<T>(
        &self,
        endpoint: &str,
        url: reqwest::Url,
        what: &'static str,
        parse: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, ApiError> {
        retry::run(
            endpoint,
            self.opts.max_retries,
            &self.tuning,
            &self.counters,
            &clock::TokioClock,
            || self.attempt(endpoint, &url, what, &parse),
        )
        .await
    }

    async fn attempt<T>(
        &self,
        endpoint: &str,
        url: &reqwest::Url,
        what: &'static str,
        parse: &impl Fn(&[u8]) -> Result<T, String>,
    ) -> Outcome<T> {
        self.limiter.acquire().await;
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        let elapsed_ms = || started.elapsed().as_millis() as u64;
        let resp = match self.http.get(url.clone()).send().await {
            Ok(r) => r,
            Err(e) => {
                let reason = self.redact(&describe_transport_error(&e, self.opts.timeout));
                tracing::debug!(endpoint, elapsed_ms = elapsed_ms(), error = %reason, "API request failed.");
                return Outcome::Transient(Fault::Failed(reason));
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        // On a 429, `Retry-After` says when to come back; `Remaining: 0` on it would only
        // stretch that wait to a guess.
        let remaining = if status == 429 {
            None
        } else {
            header_u32(&headers, "x-ratelimit-remaining")
        };
        self.limiter
            .observe(header_u32(&headers, "x-ratelimit-limit"), remaining)
            .await;
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                let reason = self.redact(&format!(
                    "HTTP {status}, but the body was cut short: {}",
                    describe_transport_error(&e, self.opts.timeout)
                ));
                tracing::debug!(endpoint, status, elapsed_ms = elapsed_ms(), error = %reason, "API request failed.");
                return Outcome::Transient(Fault::Failed(reason));
            }
        };
        tracing::debug!(endpoint, status, elapsed_ms = elapsed_ms(), "API request.");
        let outcome = self.classify(endpoint, status, &headers, &body, what, parse);
        if let Outcome::RateLimited { retry_after } = &outcome
            && *retry_after <= self.tuning.max_retry_after
        {
            // Every request waits it out, not only this one: the other in flight, or one
            // retrying a 5xx, would only draw another 429 inside the server's window.
            self.limiter.hold_for(*retry_after).await;
        }
        outcome
    }

    fn classify<T>(
        &self,
        endpoint: &str,
        status: u16,
        headers: &HeaderMap,
        body: &Bytes,
        what: &'static str,
        parse: &impl Fn(&[u8]) -> Result<T, String>,
    ) -> Outcome<T> {
        let endpoint_s = endpoint.to_string();
        if (200..300).contains(&status) {
            let scrubbed = self.without_key(body);
            return match parse(scrubbed.as_deref().unwrap_or(body)) {
                Ok(v) => Outcome::Done(v),
                Err(why) => Outcome::Transient(Fault::Malformed {
                    what,
                    detail: format!(
                        "{}; {}{}",
                        self.redact(&why),
                        self.snippet(body),
                        self.redact(&encoding_note(headers))
                    ),
                }),
            };
        }
        let (code, message) = self.error_body(body);
        let transient = |label: &str| {
            let mut s = format!("HTTP {status} {label}");
            if !message.is_empty() {
                s += &format!(" (\"{message}\")");
            }
            Outcome::Transient(Fault::Failed(s))
        };
        match status {
            429 if code.as_deref() == Some("credits_exhausted") => {
                Outcome::Permanent(ApiError::CreditsExhausted {
                    endpoint: endpoint_s,
                    message,
                })
            }
            429 => Outcome::RateLimited {
                retry_after: retry_after(headers),
            },
            400 => Outcome::Permanent(ApiError::BadRequest {
                endpoint: endpoint_s,
                code,
                message,
            }),
            401 => Outcome::Permanent(ApiError::Unauthorized {
                endpoint: endpoint_s,
            }),
            403 => Outcome::Permanent(ApiError::Forbidden {
                endpoint: endpoint_s,
                code,
                message,
            }),
            404 => Outcome::Permanent(ApiError::NotFound {
                endpoint: endpoint_s,
                code,
                message,
            }),
            409 => Outcome::Permanent(ApiError::Conflict {
                endpoint: endpoint_s,
                code,
                message,
            }),
            410 => Outcome::Permanent(ApiError::Gone {
                endpoint: endpoint_s,
            }),
            422 => Outcome::Permanent(ApiError::Unprocessable {
                endpoint: endpoint_s,
                code,
                message,
            }),
            408 => transient("Request Timeout"),
            500 => transient("Internal Server Error"),
            502 => transient("Bad Gateway"),
            503 => transient("Service Unavailable"),
            504 => transient("Gateway Timeout"),
            // CDN "origin unreachable" family: the same as a 502/504 behind a proxy.
            520..=524 => transient("from the CDN (origin unreachable)"),
            300..=399 => {
                let location = headers
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(|l| truncate(&self.redact(l), BODY_SNIPPET_BYTES))
                    .unwrap_or_default();
                Outcome::Permanent(ApiError::UnexpectedStatus {
                    endpoint: endpoint_s,
                    status,
                    code: None,
                    message: format!(
                        "a redirect to `{location}`; give the final address as --base-url"
                    ),
                })
            }
            _ => Outcome::Permanent(ApiError::UnexpectedStatus {
                endpoint: endpoint_s,
                status,
                code,
                message,
            }),
        }
    }

    /// The `error` code and a message from an error body (`{"error": "...", "message": ...}`).
    /// `error` is a code when it looks like one (snake_case), otherwise it is the message.
    fn error_body(&self, body: &[u8]) -> (Option<String>, String) {
        let v: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) if body.iter().all(|b| b.is_ascii_whitespace()) => {
                return (None, String::new());
            }
            Err(_) => return (None, self.snippet_text(body)),
        };
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        let (mut error, mut message) = (text(&v["error"]), text(&v["message"]));
        if let Some(obj) = v["error"].as_object() {
            error = obj.get("code").and_then(text);
            message = message.or_else(|| obj.get("message").and_then(text));
        }
        let is_code = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        let (code, message) = match error {
            Some(e) if is_code(&e) => (Some(e), message.unwrap_or_default()),
            Some(e) => (None, message.unwrap_or(e)),
            None => (None, message.unwrap_or_default()),
        };
        (
            code.map(|c| self.redact(&c)),
            truncate(
                &self.redact(&crate::term::one_line(&message)),
                BODY_SNIPPET_BYTES,
            ),
        )
    }

    /// `body` with every occurrence of the key's secret (the key less its `ctgo_` prefix)
    /// replaced by `****`, so a whole key reads [`key::REDACTED_KEY`], when it holds any: an
    /// API that echoes the key inside a record (a field, an error text) would otherwise have
    /// it written into the destination. `None`, the usual case, costs one scan.
    fn without_key(&self, body: &[u8]) -> Option<Vec<u8>> {
        let key_len = self.key_finder.needle().len();
        if key_len == 0 {
            return None;
        }
        self.key_finder.find(body)?;
        let mut out = Vec::with_capacity(body.len());
        let (mut from, mut count) = (0, 0);
        for at in self.key_finder.find_iter(body) {
            out.extend_from_slice(&body[from..at]);
            out.extend_from_slice(b"****");
            from = at + key_len;
            count += 1;
        }
        out.extend_from_slice(&body[from..]);
        tracing::warn!(
            occurrences = count,
            "The API's answer holds the API key itself; it is replaced by {} in what is exported.",
            key::REDACTED_KEY
        );
        Some(out)
    }

    /// "the body starts with: ..." for an unexpected body, key redacted.
    fn snippet(&self, body: &[u8]) -> String {
        if body.is_empty() {
            return "the body is empty".to_string();
        }
        format!(
            "the body ({} bytes) starts with: {}",
            body.len(),
            self.snippet_text(body)
        )
    }

    /// The start of a body as one line, key redacted. Redacted before it is cut: cut first, a
    /// key across the cut would survive in part.
    fn snippet_text(&self, body: &[u8]) -> String {
        // The quote starts where the text does: leading blanks are skipped before the window
        // is taken, or a key behind a long run of them would be cut by the window's end (and
        // so not redacted) and then quoted once the blanks were trimmed.
        let start = body
            .iter()
            .position(|b| !(b.is_ascii_whitespace() || b.is_ascii_control()))
            .unwrap_or(body.len());
        let body = &body[start..];
        // Redacted over far more than is quoted: each key redacted pulls the text after it
        // forward (the mark is shorter than a key), so a window only a little longer than the
        // quote would let a key from past its end slide under the cut half redacted.
        let head = &body[..body.len().min(REDACT_WINDOW_BYTES)];
        let lossy = String::from_utf8_lossy(head);
        let text = decode_json_escapes(&lossy);
        let mut text = self.redact(&crate::term::one_line(&text));
        if head.len() < body.len() {
            self.redact_cut_key(&mut text);
        }
        truncate(text.trim(), BODY_SNIPPET_BYTES)
    }

    /// The start of a key at the very end of `text` (a window cut through it) is redacted too.
    fn redact_cut_key(&self, text: &mut String) {
        let key = self.key.expose();
        let Some(l) = (1..key.len())
            .rev()
            .find(|&l| key.is_char_boundary(l) && text.ends_with(&key[..l]))
        else {
            return;
        };
        text.truncate(text.len() - l);
        text.push_str(key::REDACTED_KEY);
    }

    /// Replace the key wherever it occurs in text that came from outside ([`key::redact_key_in`]).
    /// `s` with this client's key redacted, and anything else shaped like a key (an API may
    /// quote another one).
    fn redact(&self, s: &str) -> String {
        key::redact_key_in(&key::scrub_key_like(s), self.key.expose())
    }
}

/// A word on a body the server encoded although this client asks for no encoding (a proxy
/// in between may add one): it is not read as JSON, and this says why.
fn encoding_note(headers: &HeaderMap) -> String {
    match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
    {
        Some(e) => format!(
            " (the body came with `Content-Encoding: {}`, which this client neither asks for nor \
             decodes: a proxy between here and the API?)",
            crate::term::one_line(&truncate(e, 40))
        ),
        None => String::new(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn header_u32(h: &HeaderMap, name: &str) -> Option<u32> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `Retry-After` as seconds, or as an HTTP date; anything else → [`retry::DEFAULT_RETRY_AFTER`].
fn retry_after(h: &HeaderMap) -> Duration {
    let Some(v) = h.get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()) else {
        return retry::DEFAULT_RETRY_AFTER;
    };
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Duration::from_secs(secs);
    }
    // Seconds too many for a u64, or written as `1e9` or `2.5`: still a number of seconds
    // (capped far above any wait a job takes, so it is refused as too long, not guessed).
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Duration::from_secs_f64(secs.min(1e12));
    }
    if let Ok(at) = DateTime::parse_from_rfc2822(v) {
        let secs = (at.with_timezone(&Utc) - Utc::now()).num_seconds().max(0);
        return Duration::from_secs(secs.unsigned_abs());
    }
    retry::DEFAULT_RETRY_AFTER
}

/// A reqwest error with its causes ("error sending request for url (...): ... : connection
/// refused"), and what kind of failure it was.
fn describe_transport_error(e: &reqwest::Error, timeout: Duration) -> String {
    let kind = if e.is_timeout() {
        format!("timed out after {} s", timeout.as_secs_f64())
    } else if e.is_connect() {
        "could not connect".to_string()
    } else if e.is_body() || e.is_decode() {
        "the connection dropped during the body".to_string()
    } else {
        "the connection failed".to_string()
    };
    format!("{kind}: {}", error_chain(e))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let c_s = c.to_string();
        if !s.contains(&c_s) {
            s += ": ";
            s += &c_s;
        }
        cur = c.source();
    }
    s
}

/// Whether `url` names this machine (127.0.0.0/8, ::1, localhost): the simulator, not the API.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost."),
    }
}

/// Parse and check a base URL: `https://` anywhere, plain `http://` only for loopback hosts.
/// The result has no trailing slash, so `…/api/v2` and `…/api/v2/` are the same base.
pub fn parse_base_url(s: &str) -> Result<reqwest::Url, String> {
    let s = s.trim();
    if !s.contains("://") {
        return Err(format!("not a URL: it needs its scheme, as in https://{s}"));
    }
    let mut url = reqwest::Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err("not an http(s) URL with a host".to_string());
    }
    match url.scheme() {
        "https" => {}
        "http" => {
            if !is_loopback(&url) {
                return Err(format!(
                    "plain http is refused for {} (the key would travel unencrypted): use https://, or http:// only for a loopback host (127.0.0.1, ::1, localhost)",
                    url.host_str().unwrap_or("this host")
                ));
            }
        }
        other => {
            return Err(format!(
                "the scheme `{other}` is not supported: use https://"
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "a base URL must not hold a user name or password (the key comes from CTGO_API_KEY)"
                .to_string(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a base URL has no query (`?…`) or fragment (`#…`)".to_string());
    }
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

#[cfg(test)]
mod paused_tests;
#[cfg(test)]
mod tests;
