//! The HTTP side of the simulator: routing, auth, the sliding-window rate limit, faults and
//! the answers, on hyper 1 (HTTP/1.1, keep-alive).
//!
//! Every request is decided synchronously under one lock ([`State::plan`]), then the async
//! part only waits (latency, slow faults) and writes. The order of checks is: `/api/v1/` → 410,
//! key → 401, rate limit → 429, method → 405, path → 404, faults (data requests only),
//! credits → 429, parameters → 400, then the answer.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::sync::oneshot;
use tracing::debug;

use super::data::{LeadFilter, Order, Rng, Store};
use super::{
    CUT_SHORT_PAUSE_MS, DEFAULT_LEADS_LIMIT, DEFAULT_RUNS_LIMIT, FaultEndpoint, FaultKind,
    FaultPlan, MAX_LEADS_LIMIT, MAX_RUNS_LIMIT, Ordering, RATE_WINDOW_SECS, SimConfig, SimStats,
    SinceBoundary,
};

/// What the contract documents of a key, and no more: it starts with `ctgo_` and has 45
/// characters. Visible ASCII only, as anything else cannot be a header value's token (and the
/// client refuses it too).
pub(crate) fn well_formed_key(k: &str) -> bool {
    k.len() == 45 && k.starts_with("ctgo_") && k.bytes().all(|b| b.is_ascii_graphic())
}

pub(crate) struct Shared {
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn new(cfg: SimConfig) -> Shared {
        let store = Store::generate(
            cfg.leads,
            cfg.seed,
            cfg.streams,
            cfg.runs_per_stream,
            cfg.malformed_every,
        );
        let fault_seed = cfg.faults.seed;
        let fault_plan = cfg.faults.clone();
        Shared {
            state: Mutex::new(State {
                fault_plan,
                eligible: 0,
                cfg,
                store,
                stats: SimStats::default(),
                injected: VecDeque::new(),
                fault_rng: Rng::new(fault_seed),
                fault_seed,
                windows: HashMap::new(),
            }),
        }
    }

    /// The state; a panic elsewhere never makes the simulator unusable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct State {
    pub cfg: SimConfig,
    pub store: Store,
    pub stats: SimStats,
    pub injected: VecDeque<FaultKind>,
    fault_rng: Rng,
    fault_seed: u64,
    /// The fault plan as last set, and the eligible requests it has seen since (for
    /// [`FaultPlan::after`]).
    fault_plan: FaultPlan,
    eligible: u64,
    /// Send times of the requests in the current window, per key.
    windows: HashMap<String, VecDeque<Instant>>,
}

/// An answer decided under the lock, written after the waits.
struct Planned {
    status: StatusCode,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// `Drop`, `CutShort` and `Slow` act while writing; the others are already in the body.
    fault: Option<FaultKind>,
    latency_ms: u64,
    /// How long a [`FaultKind::Slow`] answer waits.
    slow_ms: u64,
}

impl Planned {
    fn json(status: StatusCode, body: Vec<u8>) -> Planned {
        Planned {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
            fault: None,
            latency_ms: 0,
            slow_ms: 0,
        }
    }
    fn value(status: StatusCode, v: serde_json::Value) -> Planned {
        Planned::json(status, v.to_string().into_bytes())
    }
    fn error(status: StatusCode, code: &str, message: Option<&str>) -> Planned {
        match message {
            Some(m) => Planned::value(status, json!({"error": code, "message": m})),
            None => Planned::value(status, json!({"error": code})),
        }
    }
    fn bad_param(message: String) -> Planned {
        Planned::error(StatusCode::BAD_REQUEST, "invalid_parameter", Some(&message))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Leads(Option<u32>),
    Runs(Option<u32>),
    Streams,
    Me,
    Unknown,
}

fn route(path: &str) -> Endpoint {
    let Some(rest) = path.strip_prefix("/api/v2/") else {
        return Endpoint::Unknown;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["leads"] => Endpoint::Leads(None),
        ["runs"] => Endpoint::Runs(None),
        ["streams"] => Endpoint::Streams,
        ["me"] => Endpoint::Me,
        ["streams", id, "leads"] => id
            .parse()
            .map_or(Endpoint::Unknown, |s| Endpoint::Leads(Some(s))),
        ["streams", id, "runs"] => id
            .parse()
            .map_or(Endpoint::Unknown, |s| Endpoint::Runs(Some(s))),
        _ => Endpoint::Unknown,
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `application/x-www-form-urlencoded` decoding; invalid escapes are kept literally.
fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b.get(i) {
            Some(b'+') => out.push(b' '),
            Some(b'%') => match (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            Some(&c) => out.push(c),
            None => break,
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        Query(
            q.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (pct_decode(k), pct_decode(v))
                })
                .collect(),
        )
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn int(&self, name: &str) -> Result<Option<i64>, Planned> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => {
                v.trim().parse::<i64>().map(Some).map_err(|_| {
                    Planned::bad_param(format!("{name} must be an integer, got {v:?}"))
                })
            }
        }
    }
    fn limit(&self, default: usize, max: usize, refuse_over: bool) -> Result<usize, Planned> {
        match self.int("limit")? {
            None => Ok(default),
            Some(n) if n < 1 => Err(Planned::bad_param(format!(
                "limit must be between 1 and {max}, got {n}"
            ))),
            Some(n) if n as u64 > max as u64 => {
                if refuse_over {
                    Err(Planned::bad_param(format!(
                        "limit must be between 1 and {max}, got {n}"
                    )))
                } else {
                    Ok(max)
                }
            }
            Some(n) => Ok(n as usize),
        }
    }
    fn offset(&self) -> Result<usize, Planned> {
        match self.int("offset")? {
            None => Ok(0),
            Some(n) if n < 0 => Err(Planned::bad_param(format!(
                "offset must not be negative, got {n}"
            ))),
            Some(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        }
    }
    fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }
}

/// `since` as milliseconds since the epoch: RFC 3339, or without offset (UTC), or a date.
fn parse_since(v: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let v = v.trim();
    let rfc = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.timestamp_millis())
    };
    rfc(v)
        // A `+01:00` offset sent unencoded arrives as a space.
        .or_else(|| rfc(&v.replace(' ', "+")))
        .or_else(|| {
            NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|d| d.and_utc().timestamp_millis())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc().timestamp_millis())
        })
}

impl State {
    /// Re-applies the run-time switches after [`super::Simulator::update`].
    pub(crate) fn apply_config(&mut self) {
        let every = self.cfg.malformed_every;
        self.store.set_malformed_every(every);
        if self.cfg.faults.seed != self.fault_seed {
            self.fault_seed = self.cfg.faults.seed;
            self.fault_rng = Rng::new(self.fault_seed);
        }
        // `after` counts from when the plan was set, so a test can change the plan between
        // two exports and count the second export's requests.
        if self.cfg.faults != self.fault_plan {
            self.fault_plan = self.cfg.faults.clone();
            self.eligible = 0;
        }
    }

    fn plan(
        &mut self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        auth: Option<&[u8]>,
    ) -> Planned {
        self.stats.total += 1;
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        if path == "/api/v1" || path.starts_with("/api/v1/") {
            return Planned::error(
                StatusCode::GONE,
                "gone",
                Some("API v1 has been removed. Use /api/v2."),
            );
        }
        let key = auth
            .and_then(|a| std::str::from_utf8(a).ok())
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| {
                well_formed_key(k) && self.cfg.key.as_deref().is_none_or(|want| want == *k)
            });
        let Some(key) = key else {
            self.stats.unauthorized += 1;
            return Planned::value(
                StatusCode::UNAUTHORIZED,
                json!({"error": "Invalid or revoked API key."}),
            );
        };
        let mut rate_headers = Vec::new();
        if let Some(limit) = self.cfg.rate_limit {
            let now = Instant::now();
            let window = Duration::from_secs(RATE_WINDOW_SECS);
            let sent = self.windows.entry(key.to_string()).or_default();
            while sent
                .front()
                .is_some_and(|&t| now.duration_since(t) >= window)
            {
                sent.pop_front();
            }
            rate_headers.push(("x-ratelimit-limit", limit.to_string()));
            if sent.len() >= limit as usize {
                let wait = sent
                    .front()
                    .map_or(window, |&t| window.saturating_sub(now.duration_since(t)));
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                self.stats.rate_limited += 1;
                let mut p = Planned::error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
                rate_headers.push(("x-ratelimit-remaining", "0".to_string()));
                rate_headers.push(("retry-after", secs.max(1).to_string()));
                p.headers = rate_headers;
                return p;
            }
            sent.push_back(now);
            rate_headers.push((
                "x-ratelimit-remaining",
                (limit as usize - sent.len()).to_string(),
            ));
        }
        let mut planned = self.answer(method, path, query);
        planned.headers.splice(0..0, rate_headers);
        planned.latency_ms = self.cfg.latency_ms;
        planned.slow_ms = self.cfg.slow_ms;
        planned
    }

    fn next_fault(&mut self, endpoint: FaultEndpoint) -> Option<FaultKind> {
        if let Some(k) = self.injected.pop_front() {
            return Some(k);
        }
        let plan = &self.cfg.faults;
        if plan.rate <= 0.0 || plan.endpoint.is_some_and(|only| only != endpoint) {
            return None;
        }
        self.eligible += 1;
        if self.eligible <= plan.after {
            return None;
        }
        let hit = self.fault_rng.unit() < plan.rate;
        let kinds: &[FaultKind] = if plan.kinds.is_empty() {
            &FaultKind::DEFAULT_KINDS
        } else {
            &plan.kinds
        };
        let pick = self.fault_rng.below(kinds.len() as u64) as usize;
        if hit { kinds.get(pick).copied() } else { None }
    }

    fn answer(&mut self, method: &Method, path: &str, query: Option<&str>) -> Planned {
        if method != Method::GET {
            return Planned::error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
        }
        let endpoint = route(path);
        let fault_endpoint = match endpoint {
            Endpoint::Leads(_) => {
                self.stats.leads += 1;
                FaultEndpoint::Leads
            }
            Endpoint::Runs(_) => {
                self.stats.runs += 1;
                FaultEndpoint::Runs
            }
            Endpoint::Streams => {
                self.stats.streams += 1;
                FaultEndpoint::Streams
            }
            Endpoint::Me => {
                self.stats.me += 1;
                FaultEndpoint::Me
            }
            Endpoint::Unknown => return Planned::error(StatusCode::NOT_FOUND, "not_found", None),
        };
        let fault = self.next_fault(fault_endpoint);
        if let Some(kind) = fault {
            self.stats.faults += 1;
            debug!(fault = kind.name(), path, "Simulator plays a fault.");
            if let Some((status, code, message)) = kind.error_answer() {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut p = Planned::error(status, code, message);
                if kind == FaultKind::TooManyRequests {
                    p.headers.push(("retry-after", "1".to_string()));
                }
                return p;
            }
            match kind {
                FaultKind::Nonsense => {
                    return Planned {
                        content_type: "text/html; charset=utf-8",
                        ..Planned::json(
                            StatusCode::OK,
                            b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body><h1>Checking your browser</h1></body></html>".to_vec(),
                        )
                    };
                }
                FaultKind::Drop => {
                    return Planned {
                        fault: Some(kind),
                        ..Planned::json(StatusCode::OK, Vec::new())
                    };
                }
                // Cut short and slow act on the real answer, while it is written.
                _ => {}
            }
        }
        if self.cfg.credits_exhausted && endpoint != Endpoint::Me {
            return Planned::error(
                StatusCode::TOO_MANY_REQUESTS,
                "credits_exhausted",
                Some("Your lead credits for this month are used up."),
            );
        }
        let q = Query::parse(query);
        let result = match endpoint {
            Endpoint::Leads(stream) => self.leads(stream, &q),
            Endpoint::Runs(stream) => self.runs(stream, &q),
            Endpoint::Streams => Ok(self.streams()),
            Endpoint::Me => Ok(self.me()),
            Endpoint::Unknown => Ok(Planned::error(StatusCode::NOT_FOUND, "not_found", None)),
        };
        let mut p = result.unwrap_or_else(|e| e);
        if p.status == StatusCode::OK {
            p.fault = fault;
        }
        p
    }

    fn stream_known(&self, s: u32) -> bool {
        self.store.streams.iter().any(|i| i.id == s)
    }

    fn stream_not_found(s: u32) -> Planned {
        Planned::error(
            StatusCode::NOT_FOUND,
            "not_found",
            Some(&format!("Stream {s} not found.")),
        )
    }

    fn leads(&mut self, path_stream: Option<u32>, q: &Query) -> Result<Planned, Planned> {
        if let Some(s) = path_stream
            && !self.stream_known(s)
        {
            return Err(Self::stream_not_found(s));
        }
        let limit = q.limit(
            DEFAULT_LEADS_LIMIT,
            MAX_LEADS_LIMIT,
            self.cfg.refuse_over_max_limit,
        )?;
        let requested_offset = q.offset()?;
        if self.cfg.arrivals_per_request > 0 {
            let n = self.cfg.arrivals_per_request;
            if self.cfg.arrivals_at_wall_clock {
                self.store.add_leads_at(n, chrono::Utc::now().timestamp());
            } else {
                self.store.add_leads(n);
            }
        }
        let since_ms = match q.get("since") {
            None => None,
            Some(v) => Some(parse_since(v).ok_or_else(|| {
                Planned::bad_param(format!(
                    "since must be an ISO 8601 timestamp such as 2026-06-01T00:00:00Z, got {v:?}"
                ))
            })?),
        };
        let stream = match path_stream {
            Some(s) => Some(s),
            // An id that cannot exist matches nothing.
            None => q
                .int("streamId")?
                .map(|s| u32::try_from(s).unwrap_or(u32::MAX)),
        };
        let exported = match q.get("lifecycle") {
            None => None,
            Some("new") => Some(false),
            Some("exported") => Some(true),
            Some(v) => {
                return Err(Planned::bad_param(format!(
                    "lifecycle must be new or exported, got {v:?}"
                )));
            }
        };
        let high = match q.get("matchConfidence") {
            None => None,
            Some("high") => Some(true),
            Some("medium") => Some(false),
            Some(v) => {
                return Err(Planned::bad_param(format!(
                    "matchConfidence must be high or medium, got {v:?}"
                )));
            }
        };
        let filter = LeadFilter {
            stream,
            since_ms,
            since_inclusive: self.cfg.since == SinceBoundary::Inclusive,
            exported,
            high,
            account: q.int("accountId")?,
            segment: q.int("segmentId")?,
        };
        let order = match self.cfg.ordering {
            Ordering::NewestFirst => Order::NewestFirst,
            Ordering::OldestFirst => Order::OldestFirst,
            Ordering::Shuffled => Order::Shuffled,
        };
        let offset = if self.cfg.ignore_offset {
            0
        } else {
            requested_offset
        };
        if q.flag("summary") {
            let (total, _) = self.store.query(&filter, order, 0, 0);
            return Ok(Planned::value(StatusCode::OK, json!({"total": total})));
        }
        let mut limit = self.cfg.page_cap.map_or(limit, |cap| limit.min(cap));
        if self.cfg.vary_page_sizes && limit > 1 {
            let half = limit / 2;
            let mix = (offset as u64 ^ self.cfg.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 33;
            limit = half + (mix as usize % (limit - half + 1));
        }
        let (total, page) = self.store.query(&filter, order, offset, limit);
        let has_more = offset.saturating_add(page.len()) < total;
        let mut body = Vec::with_capacity(self.store.page_bytes(&page) + 128);
        body.extend_from_slice(b"{\"leads\":[");
        self.store.write_page(&page, &mut body);
        if self.cfg.junk_record_per_page && !page.is_empty() {
            body.extend_from_slice(
                b",{\"id\":\"abc\",\"discoveredAt\":\"2026-06-01T00:00:00Z\",\"profile\":null}",
            );
        }
        body.push(b']');
        if !self.cfg.omit_total {
            let shown = (total as i64).saturating_add(self.cfg.total_skew).max(0);
            let _ = write!(body, ",\"total\":{shown}");
        }
        if !self.cfg.omit_has_more {
            let said = has_more && !std::mem::take(&mut self.cfg.wrong_has_more_once);
            let _ = write!(body, ",\"hasMore\":{said}");
        }
        body.push(b'}');
        debug!(
            offset,
            limit,
            rows = page.len(),
            total,
            "Simulator served a leads page."
        );
        // Once each: the listing changes under one export, as it would in life (and an
        // exporter that reads the start again does not change it again).
        let removals = self.cfg.removals_between_pages;
        if removals > 0 && requested_offset == 0 && has_more {
            self.cfg.removals_between_pages = 0;
            let ids: Vec<i64> = page
                .iter()
                .take(removals)
                .filter_map(|&p| self.store.leads.get(p as usize).map(|l| l.id))
                .collect();
            self.store.remove_leads(&ids);
        }
        let arrivals = self.cfg.arrivals_between_pages;
        if arrivals > 0 && requested_offset == 0 && has_more {
            self.cfg.arrivals_between_pages = 0;
            let at = self
                .store
                .newest()
                .saturating_sub(self.cfg.late_arrival_minutes.saturating_mul(60));
            self.store.add_leads_at(arrivals, at);
        }
        Ok(Planned::json(StatusCode::OK, body))
    }

    fn runs(&mut self, path_stream: Option<u32>, q: &Query) -> Result<Planned, Planned> {
        if let Some(s) = path_stream
            && !self.stream_known(s)
        {
            return Err(Self::stream_not_found(s));
        }
        let limit = q.limit(
            DEFAULT_RUNS_LIMIT,
            MAX_RUNS_LIMIT,
            self.cfg.refuse_over_max_limit,
        )?;
        if path_stream.is_some() {
            // Documented: `limit` only, no offset, no hasMore.
            let runs: Vec<_> = self
                .store
                .runs_of(path_stream)
                .take(limit)
                .map(|r| self.store.run_json(r))
                .collect();
            return Ok(Planned::value(StatusCode::OK, json!({"runs": runs})));
        }
        let offset = if self.cfg.ignore_offset {
            0
        } else {
            q.offset()?
        };
        let total = self.store.runs.len();
        let limit = self.cfg.page_cap.map_or(limit, |cap| limit.min(cap));
        let runs: Vec<_> = self
            .store
            .runs_of(None)
            .skip(offset)
            .take(limit)
            .map(|r| self.store.run_json(r))
            .collect();
        let has_more = offset.saturating_add(runs.len()) < total;
        let mut page = json!({ "runs": runs });
        if !self.cfg.omit_total {
            page["total"] = json!(total);
        }
        if !self.cfg.omit_has_more {
            page["hasMore"] = json!(has_more);
        }
        Ok(Planned::value(StatusCode::OK, page))
    }

    fn streams(&self) -> Planned {
        let streams: Vec<_> = self
            .store
            .streams
            .iter()
            .map(|s| self.store.stream_json(s))
            .collect();
        Planned::value(StatusCode::OK, json!({"streams": streams}))
    }

    fn me(&self) -> Planned {
        let mut accounts: Vec<serde_json::Value> = Vec::new();
        let mut seen = Vec::new();
        for s in &self.store.streams {
            if seen.contains(&s.account) {
                continue;
            }
            seen.push(s.account);
            accounts.push(json!({
                "trackedXAccountId": s.account,
                "xHandle": s.x_handle,
                "budget": {"monthlyLeadLimit": 1000, "used": (s.account * 37) % 1000},
            }));
        }
        Planned::value(
            StatusCode::OK,
            json!({
                "user": {"name": "Simulated User", "email": "simulated.user@example.com"},
                "subscription": {"plan": "pro", "status": "active"},
                "credits": {
                    "remaining": if self.cfg.credits_exhausted { 0 } else { 4200 },
                    "monthlyAllowance": 5000,
                },
                "accounts": accounts,
            }),
        )
    }
}

/// A response body: whole, or cut short (half the bytes, a pause, then an error that makes
/// hyper abort the connection while `Content-Length` still promises the full size).
pub(crate) enum SimBody {
    Full(Option<Bytes>),
    Cut {
        half: Option<Bytes>,
        pause: Pin<Box<tokio::time::Sleep>>,
        full_len: u64,
    },
}

impl SimBody {
    fn full(b: Vec<u8>) -> SimBody {
        SimBody::Full(if b.is_empty() {
            None
        } else {
            Some(Bytes::from(b))
        })
    }
    fn cut(b: Vec<u8>) -> SimBody {
        let full_len = b.len() as u64;
        let mut b = Bytes::from(b);
        let half = b.split_to(b.len() / 2);
        SimBody::Cut {
            half: if half.is_empty() { None } else { Some(half) },
            pause: Box::pin(tokio::time::sleep(Duration::from_millis(
                CUT_SHORT_PAUSE_MS,
            ))),
            full_len,
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            SimBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            SimBody::Cut { half, pause, .. } => {
                if let Some(h) = half.take() {
                    return Poll::Ready(Some(Ok(Frame::data(h))));
                }
                match pause.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::other(
                        "simulated fault: body cut short",
                    )))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, SimBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            SimBody::Cut { full_len, .. } => SizeHint::with_exact(*full_len),
        }
    }
}

/// Returned by the service to make hyper close the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("simulated fault: connection dropped")]
pub(crate) struct Dropped;

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<SimBody>, Dropped> {
    let planned = {
        let mut st = shared.lock();
        st.plan(
            req.method(),
            req.uri().path(),
            req.uri().query(),
            req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes),
        )
    };
    if planned.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(planned.latency_ms)).await;
    }
    match planned.fault {
        Some(FaultKind::Drop) => return Err(Dropped),
        Some(FaultKind::Slow) => tokio::time::sleep(Duration::from_millis(planned.slow_ms)).await,
        _ => {}
    }
    let body = if planned.fault == Some(FaultKind::CutShort) {
        SimBody::cut(planned.body)
    } else {
        SimBody::full(planned.body)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = planned.status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(planned.content_type));
    for (name, value) in planned.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            let name = if name == "retry-after" {
                RETRY_AFTER
            } else {
                hyper::header::HeaderName::from_static(name)
            };
            h.insert(name, v);
        }
    }
    Ok(resp)
}

/// Accepts connections until `stop` fires (or its sender is dropped).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(error) => {
            tracing::warn!(%error, "The simulator cannot listen.");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| handle(shared.clone(), req));
                        if let Err(error) = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await {
                            debug!(%error, "Simulator connection ended.");
                        }
                    });
                }
                Err(error) => {
                    debug!(%error, "Simulator accept failed.");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}
