//! The built-in API simulator: a deterministic stand-in for the Catch The Good Ones API on
//! 127.0.0.1, for tests, the `demo` and `simulate` commands and the benchmarks.
//!
//! It exists because the real API leaves several points open (`api-contract.md`): the
//! simulator can play every listed answer, one switch per open point, so tests cover all of
//! them, and it plays every error answer the contract lists: the transient faults the client
//! must survive and the permanent answers that must stop a job ([`FaultKind`]).
//!
//! # Guarantees
//!
//! - **Deterministic.** The same [`SimConfig::leads`] and [`SimConfig::seed`] (and `streams`,
//!   `runs_per_stream`, `malformed_every`) give the same ids, timestamps and JSON bytes.
//!   Random faults are drawn from their own seeded generator, one draw per eligible data
//!   request ([`FaultPlan`]), so they are deterministic for a seed and a request order. Leads added at run time get their
//!   timing from a generator that depends only on the seed and the order of the calls.
//! - **Data.** Ids ascend from 1000 with gaps of 1–3; `discoveredAt` ascends with the id from
//!   2026-06-01T00:00:00Z in groups of 1–8 leads sharing one second, 1–20 s apart. Every later
//!   lead gets an id above every id before it (also late ones, whose `discoveredAt` is older).
//! - **Malformed leads** (`malformed_every: Some(n)`): the leads at arena positions n−1, 2n−1,
//!   3n−1, … (0-based creation order, added leads included) are served broken, rotating
//!   through exactly these four kinds, each keeping an integer `id`:
//!   1. `"discoveredAt": "yesterday"`,
//!   2. `"profile": {…, "followerCount": "lots", …}`,
//!   3. `"profile": "oops"`,
//!   4. `"exportedAt": "not a date"`.
//!
//!   They are listed by [`Simulator::malformed_ids`] and never by [`Simulator::lead_ids`].
//!   With [`SimConfig::junk_record_per_page`] each non-empty leads page also carries one record
//!   `{"id":"abc",…}` that is not counted in `total` and is listed nowhere.
//! - **Fast.** Each lead's JSON is rendered once and cached; a page is a binary search on
//!   `since` plus a concatenation of cached texts. 1M leads take a few hundred MB and start in
//!   seconds.
//! - **Isolated.** [`Simulator`] runs its own thread and current-thread tokio runtime, so
//!   synchronous tests and async code (paused time included) can both use it; dropping it stops
//!   the server.

mod data;
mod server;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;

use anyhow::Context;

pub use data::{BASE_TIME_SECS, FIRST_LEAD_ID, FIRST_RUN_ID, Malform, X_USER_ID_BASE};

/// Leads generated when nothing else is asked for.
pub const DEFAULT_LEADS: usize = 2_000;
/// Seed of the generated data.
pub const DEFAULT_SEED: u64 = 42;
/// Streams `1..=DEFAULT_STREAMS`.
pub const DEFAULT_STREAMS: u32 = 5;
/// Runs per stream.
pub const DEFAULT_RUNS_PER_STREAM: u32 = 12;
/// Port of `ctgo-export simulate`.
pub const DEFAULT_PORT: u16 = 8787;
/// `limit` of `GET /leads` when none is given.
pub const DEFAULT_LEADS_LIMIT: usize = 100;
/// The largest `limit` of `GET /leads` (above: 400 or clamp, per the switch).
pub const MAX_LEADS_LIMIT: usize = 500;
/// `limit` of `GET /runs` when none is given.
pub const DEFAULT_RUNS_LIMIT: usize = 30;
/// The largest `limit` of `GET /runs`.
pub const MAX_RUNS_LIMIT: usize = 100;
/// Rate-limit window.
pub const RATE_WINDOW_SECS: u64 = 60;
/// How long a [`FaultKind::Slow`] answer waits unless [`SimConfig::slow_ms`] says otherwise.
pub const SLOW_FAULT_MS: u64 = 3_000;
/// How long a [`FaultKind::CutShort`] answer waits between the half body and the abort (so the
/// half is surely on the wire before the connection is torn down).
pub const CUT_SHORT_PAUSE_MS: u64 = 30;
/// A well-formed key printed by `ctgo-export simulate` as an example (no real key).
pub const EXAMPLE_KEY: &str = "ctgo_sim4Kq8Zr2Wx7Nv3Tb9Hd6Lm1Pf5Jc0Gy8Us2Ea4";

/// Order of the leads within a response (contract open point 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Ordering {
    /// Newest `discoveredAt` first (ties: higher id first).
    #[default]
    #[value(name = "newest")]
    NewestFirst,
    /// Oldest `discoveredAt` first (ties: lower id first).
    #[value(name = "oldest")]
    OldestFirst,
    /// A fixed pseudo-random permutation derived from seed and id, the same on every request.
    #[value(name = "shuffled")]
    Shuffled,
}

/// How `since` compares with `discoveredAt` (contract open point 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SinceBoundary {
    /// `discoveredAt > since`.
    #[default]
    Exclusive,
    /// `discoveredAt >= since`.
    Inclusive,
}

/// A fault the simulator can play instead of (or around) an answer: the transient ones a
/// client must survive (retry), and the permanent error answers of the contract that must stop
/// a job ([`FaultKind::is_permanent`]). Error answers carry the contract's body,
/// `{"error": "<snake_case_code>", "message": "..."}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// 429 `{"error":"rate_limited"}` with `Retry-After: 1`.
    TooManyRequests,
    /// 503 `{"error":"service_unavailable"}`.
    Unavailable,
    /// 502 `{"error":"bad_gateway"}`.
    BadGateway,
    /// 500 `{"error":"internal_error"}`.
    InternalError,
    /// 504 `{"error":"gateway_timeout"}`.
    GatewayTimeout,
    /// The connection is closed without an answer.
    Drop,
    /// The real answer's headers with its full `Content-Length`, half the body, then the
    /// connection is aborted.
    CutShort,
    /// 200 with an HTML body.
    Nonsense,
    /// The real answer, after [`SimConfig::slow_ms`] (a client with a shorter timeout sees a
    /// timeout).
    Slow,
    /// *Permanent.* 400 `{"error":"invalid_parameter"}`.
    BadRequest,
    /// *Permanent.* 403 `{"error":"subscription_required"}`.
    SubscriptionRequired,
    /// *Permanent.* 403 `{"error":"budget_exhausted"}`: the account's lead budget is used up.
    BudgetExhausted,
    /// *Permanent.* 404 `{"error":"not_found"}`.
    NotFound,
    /// *Permanent.* 409 `{"error":"conflict"}`.
    Conflict,
    /// *Permanent.* 422 `{"error":"unprocessable_entity"}`.
    Unprocessable,
}

impl FaultKind {
    /// Every kind, in declaration order.
    pub const ALL: [FaultKind; 15] = [
        FaultKind::TooManyRequests,
        FaultKind::Unavailable,
        FaultKind::BadGateway,
        FaultKind::InternalError,
        FaultKind::GatewayTimeout,
        FaultKind::Drop,
        FaultKind::CutShort,
        FaultKind::Nonsense,
        FaultKind::Slow,
        FaultKind::BadRequest,
        FaultKind::SubscriptionRequired,
        FaultKind::BudgetExhausted,
        FaultKind::NotFound,
        FaultKind::Conflict,
        FaultKind::Unprocessable,
    ];
    /// What a [`FaultPlan`] with a rate but no kinds plays: every transient kind except
    /// [`FaultKind::Slow`] (seconds per answer). Permanent kinds are never in it: one of them
    /// stops the job, so they are played only when named.
    pub const DEFAULT_KINDS: [FaultKind; 8] = [
        FaultKind::TooManyRequests,
        FaultKind::Unavailable,
        FaultKind::BadGateway,
        FaultKind::InternalError,
        FaultKind::GatewayTimeout,
        FaultKind::Drop,
        FaultKind::CutShort,
        FaultKind::Nonsense,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::TooManyRequests => "429",
            FaultKind::Unavailable => "503",
            FaultKind::BadGateway => "502",
            FaultKind::InternalError => "500",
            FaultKind::GatewayTimeout => "504",
            FaultKind::Drop => "drop",
            FaultKind::CutShort => "cut",
            FaultKind::Nonsense => "nonsense",
            FaultKind::Slow => "slow",
            FaultKind::BadRequest => "400",
            FaultKind::SubscriptionRequired => "403",
            FaultKind::BudgetExhausted => "403-budget",
            FaultKind::NotFound => "404",
            FaultKind::Conflict => "409",
            FaultKind::Unprocessable => "422",
        }
    }

    /// An answer the contract lists as permanent ("stop and report"): a client must not retry
    /// it, so a job that meets one fails.
    pub fn is_permanent(self) -> bool {
        self.error_answer()
            .is_some_and(|(status, _, _)| !matches!(status, 429 | 500 | 502 | 503 | 504))
    }

    /// The status, `error` code and `message` of the error answer this kind plays; `None` for
    /// the kinds that are not an error answer (drop, cut, nonsense, slow).
    pub fn error_answer(self) -> Option<(u16, &'static str, Option<&'static str>)> {
        Some(match self {
            FaultKind::TooManyRequests => (429, "rate_limited", None),
            FaultKind::Unavailable => (
                503,
                "service_unavailable",
                Some("Temporarily unavailable, try again shortly."),
            ),
            FaultKind::BadGateway => (502, "bad_gateway", None),
            FaultKind::InternalError => (
                500,
                "internal_error",
                Some("Something went wrong on our side."),
            ),
            FaultKind::GatewayTimeout => (
                504,
                "gateway_timeout",
                Some("The upstream server did not answer in time."),
            ),
            FaultKind::BadRequest => (
                400,
                "invalid_parameter",
                Some("The request parameters are invalid."),
            ),
            FaultKind::SubscriptionRequired => (
                403,
                "subscription_required",
                Some("An active subscription is required to use the API."),
            ),
            FaultKind::BudgetExhausted => (
                403,
                "budget_exhausted",
                Some("The monthly lead budget of this account is exhausted."),
            ),
            FaultKind::NotFound => (404, "not_found", Some("Not found.")),
            FaultKind::Conflict => (
                409,
                "conflict",
                Some("The request conflicts with the current state of the account."),
            ),
            FaultKind::Unprocessable => (
                422,
                "unprocessable_entity",
                Some("The request could not be processed."),
            ),
            FaultKind::Drop | FaultKind::CutShort | FaultKind::Nonsense | FaultKind::Slow => {
                return None;
            }
        })
    }
}

impl std::str::FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "429" | "too-many-requests" | "rate" => FaultKind::TooManyRequests,
            "503" | "unavailable" => FaultKind::Unavailable,
            "502" | "bad-gateway" => FaultKind::BadGateway,
            "500" | "internal-error" => FaultKind::InternalError,
            "504" | "gateway-timeout" => FaultKind::GatewayTimeout,
            "drop" => FaultKind::Drop,
            "cut" | "cut-short" => FaultKind::CutShort,
            "nonsense" | "html" => FaultKind::Nonsense,
            "slow" => FaultKind::Slow,
            "400" | "bad-request" => FaultKind::BadRequest,
            "403" | "subscription-required" => FaultKind::SubscriptionRequired,
            "403-budget" | "budget-exhausted" => FaultKind::BudgetExhausted,
            "404" | "not-found" => FaultKind::NotFound,
            "409" | "conflict" => FaultKind::Conflict,
            "422" | "unprocessable" => FaultKind::Unprocessable,
            other => {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                return Err(format!(
                    "unknown fault {other:?}: use one of {}",
                    names.join(", ")
                ));
            }
        })
    }
}

/// The data endpoints a [`FaultPlan`] can be limited to (cross-stream and per-stream paths
/// together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultEndpoint {
    /// `GET /leads` and `GET /streams/{id}/leads`.
    Leads,
    /// `GET /runs` and `GET /streams/{id}/runs`.
    Runs,
    /// `GET /streams`.
    Streams,
    /// `GET /me`.
    Me,
}

/// Random faults: `rate` (0..=1) of the eligible data requests (leads, runs, streams, me) get
/// a kind drawn from `kinds` (empty = [`FaultKind::DEFAULT_KINDS`]), from a generator seeded
/// with `seed`. `endpoint` limits the eligible requests to one endpoint, and the first `after`
/// eligible requests answer normally, counted from when the plan was set (at start, or by a
/// [`Simulator::update`] that changed it). So a test makes the Nth leads request and every
/// later one answer 409 with `FaultPlan::always(FaultKind::Conflict).on(FaultEndpoint::Leads)
/// .after(n - 1)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    pub rate: f64,
    pub kinds: Vec<FaultKind>,
    pub seed: u64,
    /// Only requests to this endpoint are eligible (`None`: every data endpoint).
    pub endpoint: Option<FaultEndpoint>,
    /// The first this many eligible requests get no fault.
    pub after: u64,
}

impl FaultPlan {
    /// Every eligible request gets `kind`: how a test plays a permanent answer.
    pub fn always(kind: FaultKind) -> FaultPlan {
        FaultPlan {
            rate: 1.0,
            kinds: vec![kind],
            ..FaultPlan::default()
        }
    }

    /// Only requests to `endpoint` are eligible.
    pub fn on(self, endpoint: FaultEndpoint) -> FaultPlan {
        FaultPlan {
            endpoint: Some(endpoint),
            ..self
        }
    }

    /// The first `n` eligible requests answer normally; faults start with request `n + 1`.
    pub fn after(self, n: u64) -> FaultPlan {
        FaultPlan { after: n, ..self }
    }
}

/// Every switch of the simulator. Fields marked *start only* shape the generated data and are
/// read once by [`Simulator::start`]; the others may change at run time with
/// [`Simulator::update`].
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// *Start only.* Leads generated.
    pub leads: usize,
    /// *Start only.* Seed of the data.
    pub seed: u64,
    /// *Start only.* Streams `1..=streams` (at least 1).
    pub streams: u32,
    /// *Start only.* Runs per stream.
    pub runs_per_stream: u32,
    /// `None`: any well-formed key (`ctgo_` + 40 more visible ASCII characters); `Some`: only
    /// this one.
    pub key: Option<String>,
    /// Requests per sliding 60 s window per key; `None` = no limit and no rate-limit headers.
    /// When set, every answer to a request with an accepted key carries `X-RateLimit-Limit`
    /// and `X-RateLimit-Remaining` (410 and 401 answers do not); requests refused with 429
    /// do not count against the window.
    pub rate_limit: Option<u32>,
    pub ordering: Ordering,
    pub since: SinceBoundary,
    /// Play a server that ignores `offset` (always the first page).
    pub ignore_offset: bool,
    /// `limit` above the maximum: 400 (true) or clamp to the maximum (false).
    pub refuse_over_max_limit: bool,
    /// Serve at most this many records per leads or runs page, whatever `limit` asks (a
    /// server whose own maximum is lower than the documented one, answering without a word).
    pub page_cap: Option<usize>,
    /// Serve leads pages of varying size: from half of what would be served to all of it,
    /// by offset (a server that caps its pages by bytes, say).
    pub vary_page_sizes: bool,
    /// Leave `hasMore` out of leads and runs pages (the envelope is open: `total` only).
    pub omit_has_more: bool,
    /// Leave `total` out of leads and runs pages.
    pub omit_total: bool,
    /// The first leads page that has more says `hasMore: false` (a server whose `hasMore`
    /// is wrong; its `total` stays right). Once: it goes back to false.
    pub wrong_has_more_once: bool,
    /// Added to the `total` of leads pages: a server whose count is a little off.
    pub total_skew: i64,
    /// After serving a leads page requested with offset 0 that has more, remove this many of
    /// the leads it held (offsets shift back: the next request would skip as many later
    /// leads). Once: it goes back to 0.
    pub removals_between_pages: usize,
    /// After serving a leads page requested with offset 0 that has more, add this many leads.
    /// Once: it goes back to 0.
    pub arrivals_between_pages: usize,
    /// Before serving each leads page, add this many leads (a listing that grows as fast as
    /// it is read).
    pub arrivals_per_request: usize,
    /// Date those per-request arrivals by the wall clock, as a real API dates a lead it finds
    /// now, instead of just after the newest lead (which runs the simulator's own calendar
    /// forward with every request: a long export there spans hours of `discoveredAt`).
    pub arrivals_at_wall_clock: bool,
    /// `discoveredAt` of the arrivals between pages: this many minutes before the newest lead
    /// (0 = the newest lead's second).
    pub late_arrival_minutes: i64,
    /// Every nth lead is served malformed (see the module docs). Changing it at run time
    /// re-renders the affected leads.
    pub malformed_every: Option<usize>,
    /// Each non-empty leads page also carries one record with `"id": "abc"` (not counted in
    /// `total`, listed nowhere).
    pub junk_record_per_page: bool,
    pub faults: FaultPlan,
    /// Every leads, runs and streams request → 429 `{"error":"credits_exhausted"}` (no
    /// `Retry-After`); `GET /me` still answers, with `credits.remaining` 0.
    pub credits_exhausted: bool,
    /// Added to every answer.
    pub latency_ms: u64,
    /// How long a [`FaultKind::Slow`] answer waits (tests make it short, and the client's
    /// timeout shorter still).
    pub slow_ms: u64,
}

impl SimConfig {
    pub fn new(leads: usize, seed: u64) -> Self {
        SimConfig {
            leads,
            seed,
            streams: DEFAULT_STREAMS,
            runs_per_stream: DEFAULT_RUNS_PER_STREAM,
            key: None,
            rate_limit: None,
            ordering: Ordering::NewestFirst,
            since: SinceBoundary::Exclusive,
            ignore_offset: false,
            refuse_over_max_limit: true,
            page_cap: None,
            vary_page_sizes: false,
            omit_has_more: false,
            omit_total: false,
            wrong_has_more_once: false,
            total_skew: 0,
            removals_between_pages: 0,
            arrivals_between_pages: 0,
            arrivals_per_request: 0,
            arrivals_at_wall_clock: false,
            late_arrival_minutes: 0,
            malformed_every: None,
            junk_record_per_page: false,
            faults: FaultPlan::default(),
            credits_exhausted: false,
            latency_ms: 0,
            slow_ms: SLOW_FAULT_MS,
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig::new(DEFAULT_LEADS, DEFAULT_SEED)
    }
}

/// Requests received, per endpoint (cross-stream and per-stream together) and in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    pub leads: u64,
    pub runs: u64,
    pub streams: u64,
    pub me: u64,
    /// Every request, including refused ones and unknown paths.
    pub total: u64,
    /// Requests answered with a fault (injected or random).
    pub faults: u64,
    /// Requests refused with 429 `rate_limited` by the rate limit (not by a fault).
    pub rate_limited: u64,
    /// Requests refused with 401.
    pub unauthorized: u64,
}

/// A running simulator on 127.0.0.1 with its own thread and tokio runtime (so synchronous tests
/// and async code can both use it). Dropping it stops the server.
pub struct Simulator {
    shared: Arc<server::Shared>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Generates the data and serves it on an ephemeral port of 127.0.0.1.
    pub fn start(cfg: SimConfig) -> std::io::Result<Simulator> {
        Simulator::start_on(cfg, 0)
    }

    /// Generates the data and serves it on `127.0.0.1:port` (0 = ephemeral).
    pub fn start_on(cfg: SimConfig, port: u16) -> std::io::Result<Simulator> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shared = Arc::new(server::Shared::new(cfg));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ctgo-sim-{}", addr.port()))
            .spawn(move || runtime.block_on(server::serve(serving, listener, rx)))?;
        tracing::debug!(%addr, "Simulator started.");
        Ok(Simulator {
            shared,
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/api/v2`
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v2", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, server::State> {
        self.shared.lock()
    }

    /// Changes switches at run time (the *start only* fields are ignored).
    pub fn update(&self, f: impl FnOnce(&mut SimConfig)) {
        let mut st = self.state();
        f(&mut st.cfg);
        st.apply_config();
    }

    /// Adds `n` leads after the newest one (1 to 4 per second); returns their ids.
    pub fn add_leads(&self, n: usize) -> Vec<i64> {
        self.state().store.add_leads(n)
    }

    /// Adds `n` leads whose `discoveredAt` is `minutes_late` minutes before the newest lead
    /// (new, higher ids: they arrive late); returns their ids.
    pub fn add_late_leads(&self, n: usize, minutes_late: i64) -> Vec<i64> {
        let mut st = self.state();
        let at = st
            .store
            .newest()
            .saturating_sub(minutes_late.saturating_mul(60));
        st.store.add_leads_at(n, at)
    }

    /// Adds `n` leads discovered at `at` (unix seconds; new, higher ids); returns their ids.
    pub fn add_leads_dated(&self, n: usize, at: i64) -> Vec<i64> {
        self.state().store.add_leads_at(n, at)
    }

    /// Adds `n` leads sharing the newest lead's exact second; returns their ids.
    pub fn add_leads_at_newest_second(&self, n: usize) -> Vec<i64> {
        let mut st = self.state();
        let at = st.store.newest();
        st.store.add_leads_at(n, at)
    }

    /// Sets `exportedAt` on these leads (an update; a later call sets a later time).
    pub fn mark_exported(&self, ids: &[i64]) {
        self.state().store.mark_exported(ids);
    }

    /// The API stops returning these leads.
    pub fn remove_leads(&self, ids: &[i64]) {
        self.state().store.remove_leads(ids);
    }

    /// Unfinished runs finish (`succeeded`, final counts, `completedAt`); returns how many.
    pub fn complete_runs(&self) -> usize {
        self.state().store.complete_runs()
    }

    /// The next `count` data requests (of any endpoint) get this fault, before any random
    /// fault.
    pub fn inject(&self, kind: FaultKind, count: usize) {
        let mut st = self.state();
        st.injected.extend(std::iter::repeat_n(kind, count));
    }

    /// The ids a correct exporter must end up with, sorted: every lead the API currently
    /// returns, **excluding** the malformed ones (those belong in rejects; see
    /// [`Simulator::malformed_ids`]) and the junk `"id":"abc"` records.
    pub fn lead_ids(&self) -> Vec<i64> {
        self.state().store.good_ids()
    }

    /// The lead's record exactly as currently served (malformed ones too), or `None` when
    /// unknown or removed.
    pub fn lead_json(&self, id: i64) -> Option<serde_json::Value> {
        let st = self.state();
        st.store
            .lead(id)
            .and_then(|l| serde_json::from_str(&l.json).ok())
    }

    /// All run ids, sorted ascending.
    pub fn run_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.state().store.runs.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids
    }

    /// The currently returned leads that are served malformed (by their integer id), sorted.
    pub fn malformed_ids(&self) -> Vec<i64> {
        self.state().store.malformed_ids()
    }

    /// Requests received since the start or the last [`Simulator::reset_stats`].
    pub fn requests(&self) -> SimStats {
        self.state().stats
    }

    pub fn reset_stats(&self) {
        self.state().stats = SimStats::default();
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `ctgo-export simulate` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Leads to generate.
    #[arg(long, default_value_t = DEFAULT_LEADS)]
    pub leads: usize,
    /// Seed of the generated data and of random faults.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Accept only this key (default: any well-formed key: `ctgo_` and 40 more visible ASCII
    /// characters, as a real one). A test key, not a real one.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Requests per sliding minute per key (default: no limit).
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<u32>,
    /// Order of leads within a response.
    #[arg(long, value_enum, default_value = "newest")]
    pub order: Ordering,
    /// Whether `since` is exclusive (>) or inclusive (>=).
    #[arg(long, value_enum, default_value = "exclusive")]
    pub since_boundary: SinceBoundary,
    /// Ignore `offset` (always serve the first page).
    #[arg(long)]
    pub ignore_offset: bool,
    /// Clamp `limit` above 500 instead of answering 400.
    #[arg(long)]
    pub clamp_limit: bool,
    /// Serve at most N records per leads or runs page, whatever `limit` asks.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub page_cap: Option<u32>,
    /// Serve leads pages of varying size (half to all of what would be served, by offset).
    #[arg(long)]
    pub vary_page_sizes: bool,
    /// Leave `hasMore` out of leads and runs pages.
    #[arg(long)]
    pub no_has_more: bool,
    /// Leave `total` out of leads and runs pages.
    #[arg(long)]
    pub no_total: bool,
    /// The first leads page that has more says `hasMore: false` (a wrong `hasMore`; `total`
    /// stays right); once.
    #[arg(long)]
    pub wrong_has_more_once: bool,
    /// After the first page that has more, remove N of its leads (offsets shift back); once.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub removals_between_pages: usize,
    /// Fraction (0 to 1) of data requests that get a random fault [default: 0, or 1 when
    /// --faults is given].
    #[arg(long, value_name = "F")]
    pub fault_rate: Option<f64>,
    /// Fault kinds, comma-separated. Transient: 429, 503, 502, 500, 504, drop, cut, nonsense,
    /// slow (default with --fault-rate: all but slow). Permanent, only when named (they stop a
    /// job): 400, 403 (subscription_required), 403-budget (budget_exhausted), 404, 409, 422.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub faults: Vec<FaultKind>,
    /// Only requests to this endpoint get faults.
    #[arg(long, value_enum, value_name = "ENDPOINT")]
    pub fault_endpoint: Option<FaultEndpoint>,
    /// The first N requests that could get a fault answer normally (e.g. --faults 409
    /// --fault-endpoint leads --fault-after 2: the third leads request and later ones get 409).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub fault_after: u64,
    /// How long a `slow` fault waits before answering.
    #[arg(long, default_value_t = SLOW_FAULT_MS, value_name = "MS")]
    pub slow_ms: u64,
    /// Serve every Nth lead malformed.
    #[arg(long, value_name = "N")]
    pub malformed_every: Option<usize>,
    /// Added to every answer.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency_ms: u64,
    /// After the first page that has more, add N new leads (offsets shift); once.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub arrivals_between_pages: usize,
    /// discoveredAt of those arrivals, minutes before the newest lead.
    #[arg(long, default_value_t = 0, value_name = "MIN")]
    pub late_arrival_minutes: i64,
    /// Before every leads page, add N new leads (a listing that grows as it is read).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub arrivals_per_request: usize,
    /// Date those arrivals by the wall clock (as a real API would), not just after the newest
    /// lead.
    #[arg(long)]
    pub arrivals_at_wall_clock: bool,
    /// Answer every data request with 429 credits_exhausted.
    #[arg(long)]
    pub credits_exhausted: bool,
}

impl SimulateArgs {
    /// The simulator configuration these flags describe; a bad value is a usage error.
    pub fn to_config(&self) -> Result<SimConfig, crate::config::ConfigError> {
        let usage = |m: &str| Err(crate::config::ConfigError::Usage(m.to_string()));
        // Naming kinds without a rate means "play them": every eligible request.
        let fault_rate = self
            .fault_rate
            .unwrap_or(if self.faults.is_empty() { 0.0 } else { 1.0 });
        if !(0.0..=1.0).contains(&fault_rate) {
            return usage(&format!(
                "--fault-rate must be between 0 and 1, got {fault_rate}"
            ));
        }
        if self.malformed_every == Some(0) {
            return usage("--malformed-every must be at least 1");
        }
        if let Some(k) = &self.key
            && !server::well_formed_key(k)
        {
            return usage(
                "--key must be `ctgo_` followed by 40 more visible ASCII characters (no spaces)",
            );
        }
        let mut cfg = SimConfig::new(self.leads, self.seed);
        cfg.key = self.key.clone();
        cfg.rate_limit = self.rate_limit.filter(|&n| n > 0);
        cfg.ordering = self.order;
        cfg.since = self.since_boundary;
        cfg.ignore_offset = self.ignore_offset;
        cfg.refuse_over_max_limit = !self.clamp_limit;
        cfg.page_cap = self.page_cap.map(|n| n as usize);
        cfg.omit_has_more = self.no_has_more;
        cfg.vary_page_sizes = self.vary_page_sizes;
        cfg.omit_total = self.no_total;
        cfg.wrong_has_more_once = self.wrong_has_more_once;
        cfg.removals_between_pages = self.removals_between_pages;
        cfg.faults = FaultPlan {
            rate: fault_rate,
            kinds: self.faults.clone(),
            seed: self.seed,
            endpoint: self.fault_endpoint,
            after: self.fault_after,
        };
        cfg.malformed_every = self.malformed_every;
        cfg.latency_ms = self.latency_ms;
        cfg.slow_ms = self.slow_ms;
        cfg.arrivals_between_pages = self.arrivals_between_pages;
        cfg.late_arrival_minutes = self.late_arrival_minutes;
        cfg.arrivals_per_request = self.arrivals_per_request;
        cfg.arrivals_at_wall_clock = self.arrivals_at_wall_clock;
        cfg.credits_exhausted = self.credits_exhausted;
        Ok(cfg)
    }
}

/// One line about the faults `simulate` plays, `None` when it plays none.
fn describe_faults(plan: &FaultPlan) -> Option<String> {
    if plan.rate <= 0.0 {
        return None;
    }
    let kinds: &[FaultKind] = if plan.kinds.is_empty() {
        &FaultKind::DEFAULT_KINDS
    } else {
        &plan.kinds
    };
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    let endpoint = match plan.endpoint {
        None => "data",
        Some(FaultEndpoint::Leads) => "leads",
        Some(FaultEndpoint::Runs) => "runs",
        Some(FaultEndpoint::Streams) => "streams",
        Some(FaultEndpoint::Me) => "me",
    };
    let mut s = format!(
        "Faults: {} on {}% of {endpoint} requests",
        names.join(", "),
        plan.rate * 100.0
    );
    if plan.after > 0 {
        s += &format!(" after the first {}", plan.after);
    }
    if kinds.iter().any(|k| k.is_permanent()) {
        s += " (permanent answers stop a sync job)";
    }
    Some(s)
}

/// Serves in the foreground until Ctrl-C; prints the base URL, an example key and an example
/// sync command to stderr.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let cfg = args.to_config()?;
    let faults = cfg.faults.clone();
    let port = args.port;
    let sim = tokio::task::spawn_blocking(move || Simulator::start_on(cfg, port))
        .await
        .context("starting the simulator")?
        .with_context(|| format!("serving on 127.0.0.1:{port}"))?;
    let base = sim.base_url();
    let key = args.key.as_deref().unwrap_or(EXAMPLE_KEY);
    crate::errln!("Simulator serving {} leads on {base}", args.leads);
    crate::errln!("Example key: {key}");
    if let Some(faults) = describe_faults(&faults) {
        crate::errln!("{faults}");
    }
    crate::errln!(
        "Try:  CTGO_API_KEY={key} ctgo-export sync --base-url {base} --dest sqlite:leads.db --requests-per-minute {}",
        if args.rate_limit.is_some() {
            "60"
        } else {
            "0   # no budget of our own: the simulator has no rate limit"
        }
    );
    crate::errln!("Press Ctrl-C to stop.");
    let stopped = tokio::signal::ctrl_c().await;
    tokio::task::spawn_blocking(move || drop(sim))
        .await
        .context("stopping the simulator")?;
    stopped.context("waiting for Ctrl-C")?;
    Ok(())
}
