//! The simulator's data: leads, runs and streams, generated deterministically from
//! `(leads, seed)`, kept in sorted indexes so that a page is a binary search plus a
//! concatenation of cached JSON texts.
//!
//! Guarantees:
//! - The same `(leads, seed, streams, runs_per_stream, malformed_every)` always yields the same
//!   ids, timestamps and JSON texts, byte for byte.
//! - Ids only grow: every added lead gets an id above every id ever served, so `leads` (the
//!   arena) stays sorted by id and an id lookup is a binary search.
//! - Each lead's JSON is rendered once and cached; it is re-rendered only when the lead
//!   changes (`mark_exported`) or when the malformed switch changes.

use std::io::Write;

use serde_json::json;

/// 2026-06-01T00:00:00Z, the discoveredAt of the first generated lead.
pub const BASE_TIME_SECS: i64 = 1_780_272_000;
/// The id of the first generated lead; later ids follow with gaps of 1 to 3.
pub const FIRST_LEAD_ID: i64 = 1000;
/// The id of the oldest generated run.
pub const FIRST_RUN_ID: i64 = 100;
/// `profile.xUserId` = this + the lead id: always above 2^53, so a float parse loses digits.
pub const X_USER_ID_BASE: i64 = 1_700_000_000_000_000_000;

/// A small, fast, seedable generator (SplitMix64). Not for cryptography; it only has to be
/// deterministic and spread well.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(mix(seed))
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// Uniform in `0..n` (n > 0; 0 yields 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items
            .get(self.below(items.len() as u64) as usize)
            .copied()
            .unwrap_or("")
    }
}

/// How a malformed lead is broken, rotating in this order over the malformed leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malform {
    /// `"discoveredAt": "yesterday"`
    DiscoveredAt,
    /// `"profile": {…, "followerCount": "lots", …}`
    FollowerCount,
    /// `"profile": "oops"`
    Profile,
    /// `"exportedAt": "not a date"`
    ExportedAt,
}

impl Malform {
    /// The kind for the lead at arena position `pos` (0-based) when every `n`th lead is
    /// malformed: positions n-1, 2n-1, 3n-1, … rotate through the four kinds.
    pub(crate) fn for_position(pos: usize, every: Option<usize>) -> Option<Malform> {
        let n = every?;
        if n == 0 || !(pos + 1).is_multiple_of(n) {
            return None;
        }
        Some(match ((pos + 1) / n - 1) % 4 {
            0 => Malform::DiscoveredAt,
            1 => Malform::FollowerCount,
            2 => Malform::Profile,
            _ => Malform::ExportedAt,
        })
    }
}

#[derive(Debug)]
pub(crate) struct Lead {
    pub id: i64,
    /// Unix seconds.
    pub discovered: i64,
    pub exported: Option<i64>,
    pub stream: u32,
    pub high: bool,
    pub removed: bool,
    pub malformed: Option<Malform>,
    /// The cached JSON text of the record as served.
    pub json: Box<str>,
}

#[derive(Debug, Clone)]
pub(crate) struct StreamInfo {
    pub id: u32,
    pub name: String,
    pub account: i64,
    pub x_handle: String,
    pub segment: i64,
    pub segment_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub id: i64,
    pub stream: u32,
    pub v1: bool,
    pub status: RunStatus,
    pub source: &'static str,
    pub mode: &'static str,
    pub triggered: i64,
    pub completed: Option<i64>,
    /// new followers, candidates passed, medium fit, enriched
    pub counts: [i64; 4],
    /// v1 only: existing followers, likers, tier filtered, gender filtered, filtered out,
    /// deep crawl, backfilled
    pub v1_counts: [i64; 7],
    pub search_label: Option<String>,
    pub error: Option<String>,
}

impl Run {
    fn finished(&self) -> bool {
        matches!(self.status, RunStatus::Succeeded | RunStatus::Failed)
    }
}

/// What a leads request asks for, after validation.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeadFilter {
    pub stream: Option<u32>,
    /// Milliseconds since the epoch.
    pub since_ms: Option<i64>,
    pub since_inclusive: bool,
    /// `Some(true)` = lifecycle=exported, `Some(false)` = lifecycle=new.
    pub exported: Option<bool>,
    pub high: Option<bool>,
    pub account: Option<i64>,
    pub segment: Option<i64>,
}

impl LeadFilter {
    fn has_field_filters(&self) -> bool {
        self.exported.is_some()
            || self.high.is_some()
            || self.account.is_some()
            || self.segment.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    NewestFirst,
    OldestFirst,
    Shuffled,
}

const STREAM_NAMES: &[&str] = &[
    "AI founders watching Yongfook",
    "Indie hackers — bootstrapped SaaS",
    "Rustaceans in fintech",
    "Growth marketers, EU",
    "数据工程师 (data engineers)",
    "Designers, \"design systems\" crowd",
];
const SEGMENT_NAMES: &[&str] = &[
    "AI founders building developer tools",
    "Solo founders with revenue",
    "Backend engineers at banks",
    "B2B growth leads",
    "Data platform builders",
    "Product designers",
];
const X_HANDLES: &[&str] = &[
    "yongfook",
    "levelsio",
    "rustlang",
    "growthhq",
    "dataeng",
    "designsys",
];
const HANDLE_PREFIXES: &[&str] = &[
    "alice", "bob", "yuki", "omar", "noa", "li_wei", "maker", "founder", "sam", "dev", "olga",
    "jose",
];
const DISPLAY_NAMES: &[&str] = &[
    "Alice Smith",
    "Zoë Ångström",
    "José Núñez",
    "Björk Guðmundsdóttir",
    "李小龍",
    "山田 太郎",
    "김민준",
    "محمد علي",
    "דוד כהן",
    "Ольга Петрова",
    "Ελένη Παπαδοπούλου",
    "नमस्ते दुनिया",
    "🚀 Rocket Builder 🚀",
    "Dr. \"Quotes\" O'Brien",
    "Smith, John",
    "=HYPERLINK(\"http://evil.example\",\"click\")",
    "+1 Growth Hacker",
    "-minimalist-",
    "@founder_of_things",
    "Tab\tSeparated",
    "Line\nBreak",
    "Ünïcödé 🧪 Tester",
    "",
    "\u{202e}desrever",
    "Back\\slash",
];
const BIOS: &[&str] = &[
    "Building developer tools. Ex-@stripe. Views my own.",
    "Founder @acme 🚀 | AI, infra, and coffee ☕",
    "机器学习工程师，热爱开源。在上海。",
    "مطور برمجيات | أحب القهوة والكتب",
    "מפתח תוכנה, אוהב קפה",
    "Shipping things.\nSecond line of the bio.\tAnd a tab.",
    "=1+2 is not a formula",
    "+44 20 7946 0958 (call me)",
    "-- dashes first --",
    "@mention at the start",
    "\"Quoted\" bio, with commas, and \"more quotes\"",
    "Emoji only: 🦀🦀🦀 👩‍💻 🏳️‍🌈",
    "Backslash \\ slash / and <b>html</b> &amp; entities",
    "Carriage\r\nreturn line",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud.",
    "",
];
const LOCATIONS: &[&str] = &[
    "San Francisco, CA",
    "東京",
    "Berlin 🇩🇪",
    "Remote",
    "",
    "São Paulo",
];
const SOURCE_TYPES: &[&str] = &[
    "new_follower",
    "new_follower",
    "new_follower",
    "liker",
    "search",
    "others",
];
const FEEDBACK: &[&str] = &["positive", "negative", "none"];

/// Writes `secs` as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn push_ts(out: &mut Vec<u8>, secs: i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
}

pub(crate) fn ts(secs: i64) -> String {
    let mut v = Vec::with_capacity(20);
    push_ts(&mut v, secs);
    String::from_utf8_lossy(&v).into_owned()
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// All leads, runs and streams the simulator serves.
#[derive(Debug)]
pub(crate) struct Store {
    seed: u64,
    malformed_every: Option<usize>,
    /// Every lead ever created (removed ones too), sorted by id (ids only grow).
    pub leads: Vec<Lead>,
    /// Visible leads as arena positions, sorted by (discoveredAt, id).
    by_time: Vec<u32>,
    /// The same per stream (index = stream id − 1).
    by_stream: Vec<Vec<u32>>,
    /// Visible leads in the fixed pseudo-random order of `shuffle_key`.
    shuffled: Vec<u32>,
    next_id: i64,
    /// The newest discoveredAt ever created (unix seconds).
    newest: i64,
    /// Bumped on every `mark_exported`, so exporting twice still changes the record.
    export_clock: i64,
    /// Drives the timing of added leads (deterministic in call order).
    rng: Rng,
    pub streams: Vec<StreamInfo>,
    /// Sorted newest first (triggeredAt, then id, descending).
    pub runs: Vec<Run>,
}

impl Store {
    pub(crate) fn generate(
        leads: usize,
        seed: u64,
        streams: u32,
        runs_per_stream: u32,
        malformed_every: Option<usize>,
    ) -> Store {
        let streams = streams.max(1);
        let stream_infos: Vec<StreamInfo> = (1..=streams)
            .map(|s| {
                let i = (s - 1) as usize;
                StreamInfo {
                    id: s,
                    name: STREAM_NAMES
                        .get(i % STREAM_NAMES.len())
                        .map_or_else(String::new, |n| {
                            if i < STREAM_NAMES.len() {
                                (*n).to_string()
                            } else {
                                format!("{n} #{s}")
                            }
                        }),
                    account: 7 + i64::from((s - 1) / 2),
                    x_handle: X_HANDLES
                        .get(((s - 1) / 2) as usize % X_HANDLES.len())
                        .copied()
                        .unwrap_or("x")
                        .to_string(),
                    segment: 11 + i64::from(s),
                    segment_name: SEGMENT_NAMES
                        .get(i % SEGMENT_NAMES.len())
                        .copied()
                        .unwrap_or("")
                        .to_string(),
                }
            })
            .collect();
        let mut store = Store {
            seed,
            malformed_every,
            leads: Vec::with_capacity(leads),
            by_time: Vec::with_capacity(leads),
            by_stream: vec![Vec::with_capacity(leads / streams as usize + 1); streams as usize],
            shuffled: Vec::new(),
            next_id: FIRST_LEAD_ID,
            newest: BASE_TIME_SECS,
            export_clock: 0,
            rng: Rng::new(seed ^ 0x0add_1ead),
            streams: stream_infos,
            runs: Vec::new(),
        };
        let mut rng = Rng::new(seed ^ 0x1ead_5eed);
        let mut t = BASE_TIME_SECS;
        let mut left = 1 + rng.below(8);
        let mut buf = Vec::with_capacity(1024);
        for _ in 0..leads {
            if left == 0 {
                t += 1 + rng.below(20) as i64;
                left = 1 + rng.below(8);
            }
            left -= 1;
            let id = store.next_id;
            store.next_id += 1 + rng.below(3) as i64;
            store.push_lead(id, t, true, &mut buf);
        }
        // Generated leads are created in (discoveredAt, id) order: the indexes are sorted.
        store.by_time = (0..store.leads.len() as u32).collect();
        for (pos, l) in store.leads.iter().enumerate() {
            if let Some(v) = store.by_stream.get_mut((l.stream - 1) as usize) {
                v.push(pos as u32);
            }
        }
        store.shuffled = store.by_time.clone();
        let keys: Vec<(u64, i64)> = store
            .leads
            .iter()
            .map(|l| (shuffle_key(seed, l.id), l.id))
            .collect();
        store
            .shuffled
            .sort_unstable_by_key(|&p| keys.get(p as usize).copied().unwrap_or((0, 0)));
        store.generate_runs(runs_per_stream);
        store
    }

    /// Creates a lead in the arena (not in the indexes unless `bulk` is false).
    fn push_lead(&mut self, id: i64, discovered: i64, bulk: bool, buf: &mut Vec<u8>) -> u32 {
        let mut r = Rng::new(self.seed ^ mix(id as u64));
        let stream = 1 + r.below(self.streams.len() as u64) as u32;
        let high = r.chance(60);
        let exported = if bulk && r.chance(10) {
            Some(discovered + 3600 + r.below(86_400) as i64)
        } else {
            None
        };
        let pos = self.leads.len();
        let malformed = Malform::for_position(pos, self.malformed_every);
        let mut lead = Lead {
            id,
            discovered,
            exported,
            stream,
            high,
            removed: false,
            malformed,
            json: Box::from(""),
        };
        buf.clear();
        self.render(&lead, buf);
        lead.json = String::from_utf8_lossy(buf).into();
        self.leads.push(lead);
        self.newest = self.newest.max(discovered);
        if !bulk {
            self.index_insert(pos as u32);
        }
        pos as u32
    }

    fn time_key(&self, pos: u32) -> (i64, i64) {
        self.leads
            .get(pos as usize)
            .map_or((i64::MAX, i64::MAX), |l| (l.discovered, l.id))
    }

    fn index_insert(&mut self, pos: u32) {
        let key = self.time_key(pos);
        let at = self.by_time.partition_point(|&p| self.time_key(p) < key);
        self.by_time.insert(at, pos);
        let stream = self.leads.get(pos as usize).map_or(1, |l| l.stream);
        if let Some(v) = self.by_stream.get((stream - 1) as usize) {
            let at = v.partition_point(|&p| self.time_key(p) < key);
            if let Some(v) = self.by_stream.get_mut((stream - 1) as usize) {
                v.insert(at, pos);
            }
        }
        let id = key.1;
        let sk = (shuffle_key(self.seed, id), id);
        let at = self.shuffled.partition_point(|&p| {
            let pid = self.time_key(p).1;
            (shuffle_key(self.seed, pid), pid) < sk
        });
        self.shuffled.insert(at, pos);
    }

    fn render(&self, lead: &Lead, out: &mut Vec<u8>) {
        let mut r = content_rng(self.seed, lead.id);
        let stream = self.streams.get((lead.stream - 1) as usize);
        let _ = write!(out, "{{\"id\":{},\"streamId\":{}", lead.id, lead.stream);
        if let Some(s) = stream {
            let _ = write!(out, ",\"trackedXAccountId\":{}", s.account);
            match r.below(100) {
                0..=2 => out.extend_from_slice(b",\"segmentId\":null"),
                3..=4 => {}
                _ => {
                    let _ = write!(out, ",\"segmentId\":{}", s.segment);
                }
            }
        }
        out.extend_from_slice(if lead.high {
            b",\"matchConfidence\":\"high\""
        } else {
            b",\"matchConfidence\":\"medium\""
        });
        out.extend_from_slice(b",\"sourceType\":");
        push_json_str(out, r.pick(SOURCE_TYPES));
        out.extend_from_slice(b",\"discoveredAt\":");
        if lead.malformed == Some(Malform::DiscoveredAt) {
            out.extend_from_slice(b"\"yesterday\"");
        } else {
            out.push(b'"');
            push_ts(out, lead.discovered);
            out.push(b'"');
        }
        out.extend_from_slice(b",\"exportedAt\":");
        match (lead.malformed, lead.exported) {
            (Some(Malform::ExportedAt), _) => out.extend_from_slice(b"\"not a date\""),
            (_, Some(e)) => {
                out.push(b'"');
                push_ts(out, e);
                out.push(b'"');
            }
            (_, None) => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"profile\":");
        if lead.malformed == Some(Malform::Profile) {
            out.extend_from_slice(b"\"oops\"");
        } else if r.chance(1) {
            out.extend_from_slice(b"null");
        } else {
            let prefix = r.pick(HANDLE_PREFIXES);
            let _ = write!(
                out,
                "{{\"xUserId\":\"{}\",\"handle\":\"{prefix}{}\",\"displayName\":",
                X_USER_ID_BASE.saturating_add(lead.id),
                lead.id
            );
            push_json_str(out, r.pick(DISPLAY_NAMES));
            if !r.chance(3) {
                let _ = write!(
                    out,
                    ",\"profileImageUrl\":\"https://pbs.twimg.com/profile_images/{}/{prefix}_normal.jpg\"",
                    X_USER_ID_BASE.saturating_add(lead.id)
                );
            }
            out.extend_from_slice(b",\"followerCount\":");
            if lead.malformed == Some(Malform::FollowerCount) {
                out.extend_from_slice(b"\"lots\"");
            } else {
                let followers = match r.below(100) {
                    0..=4 => 0,
                    5..=59 => r.below(2_000),
                    60..=94 => r.below(100_000),
                    95..=98 => r.below(1_000_000),
                    _ => r.below(10_000_001),
                };
                let _ = write!(out, "{followers}");
            }
            match r.below(100) {
                0..=9 => out.extend_from_slice(b",\"bio\":null"),
                10..=14 => {}
                _ => {
                    out.extend_from_slice(b",\"bio\":");
                    push_json_str(out, r.pick(BIOS));
                }
            }
            if r.chance(30) {
                out.extend_from_slice(b",\"location\":");
                push_json_str(out, r.pick(LOCATIONS));
            }
            out.push(b'}');
        }
        if r.chance(15) {
            let _ = write!(
                out,
                ",\"linkedinUrl\":\"https://www.linkedin.com/in/lead-{}\"",
                lead.id
            );
        }
        if r.chance(10) {
            let _ = write!(out, ",\"email\":\"lead{}@example.com\"", lead.id);
        }
        if r.chance(20) {
            out.extend_from_slice(b",\"feedbackStatus\":");
            push_json_str(out, r.pick(FEEDBACK));
        }
        out.push(b'}');
    }

    fn rerender(&mut self, pos: usize) {
        let mut buf = Vec::with_capacity(1024);
        if let Some(l) = self.leads.get(pos) {
            self.render(l, &mut buf);
        }
        if let Some(l) = self.leads.get_mut(pos) {
            l.json = String::from_utf8_lossy(&buf).into();
        }
    }

    pub(crate) fn set_malformed_every(&mut self, every: Option<usize>) {
        if self.malformed_every == every {
            return;
        }
        self.malformed_every = every;
        for pos in 0..self.leads.len() {
            let m = Malform::for_position(pos, every);
            let changed = self.leads.get(pos).is_some_and(|l| l.malformed != m);
            if changed {
                if let Some(l) = self.leads.get_mut(pos) {
                    l.malformed = m;
                }
                self.rerender(pos);
            }
        }
    }

    pub(crate) fn newest(&self) -> i64 {
        self.newest
    }

    fn position(&self, id: i64) -> Option<usize> {
        self.leads.binary_search_by_key(&id, |l| l.id).ok()
    }

    pub(crate) fn lead(&self, id: i64) -> Option<&Lead> {
        self.position(id)
            .and_then(|p| self.leads.get(p))
            .filter(|l| !l.removed)
    }

    /// Adds `n` leads after the newest one, 1 to 4 per second.
    pub(crate) fn add_leads(&mut self, n: usize) -> Vec<i64> {
        let mut ids = Vec::with_capacity(n);
        let mut buf = Vec::with_capacity(1024);
        let mut t = self.newest + 1;
        let mut left = 1 + self.rng.below(4);
        for _ in 0..n {
            if left == 0 {
                t += 1;
                left = 1 + self.rng.below(4);
            }
            left -= 1;
            ids.push(self.add_one(t, &mut buf));
        }
        ids
    }

    /// Adds `n` leads with discoveredAt = `at` (unix seconds).
    pub(crate) fn add_leads_at(&mut self, n: usize, at: i64) -> Vec<i64> {
        let mut buf = Vec::with_capacity(1024);
        (0..n).map(|_| self.add_one(at, &mut buf)).collect()
    }

    fn add_one(&mut self, at: i64, buf: &mut Vec<u8>) -> i64 {
        let id = self.next_id;
        self.next_id += 1 + self.rng.below(3) as i64;
        self.push_lead(id, at, false, buf);
        id
    }

    pub(crate) fn mark_exported(&mut self, ids: &[i64]) {
        self.export_clock += 1;
        let at = self.newest + 3600 + self.export_clock;
        for &id in ids {
            if let Some(pos) = self.position(id) {
                if let Some(l) = self.leads.get_mut(pos) {
                    l.exported = Some(at);
                }
                self.rerender(pos);
            }
        }
    }

    pub(crate) fn remove_leads(&mut self, ids: &[i64]) {
        let mut any = false;
        for &id in ids {
            if let Some(l) = self.position(id).and_then(|p| self.leads.get_mut(p)) {
                any |= !l.removed;
                l.removed = true;
            }
        }
        if any {
            let leads = &self.leads;
            let visible = |p: &u32| leads.get(*p as usize).is_some_and(|l| !l.removed);
            self.by_time.retain(visible);
            self.shuffled.retain(visible);
            for v in &mut self.by_stream {
                v.retain(visible);
            }
        }
    }

    /// Visible leads that a correct exporter must end up with: malformed ones excluded.
    pub(crate) fn good_ids(&self) -> Vec<i64> {
        self.leads
            .iter()
            .filter(|l| !l.removed && l.malformed.is_none())
            .map(|l| l.id)
            .collect()
    }

    pub(crate) fn malformed_ids(&self) -> Vec<i64> {
        self.leads
            .iter()
            .filter(|l| !l.removed && l.malformed.is_some())
            .map(|l| l.id)
            .collect()
    }

    fn matches(&self, l: &Lead, f: &LeadFilter) -> bool {
        if f.stream.is_some_and(|s| s != l.stream) {
            return false;
        }
        if let Some(s) = f.since_ms {
            let d = l.discovered.saturating_mul(1000);
            if if f.since_inclusive { d < s } else { d <= s } {
                return false;
            }
        }
        if f.exported.is_some_and(|e| e != l.exported.is_some())
            || f.high.is_some_and(|h| h != l.high)
        {
            return false;
        }
        let info = self.streams.get((l.stream - 1) as usize);
        if f.account
            .is_some_and(|a| info.is_none_or(|s| s.account != a))
        {
            return false;
        }
        // A lead served without a segment matches no segment filter.
        if f.segment.is_some_and(|g| {
            info.is_none_or(|s| s.segment != g) || content_rng(self.seed, l.id).below(100) < 5
        }) {
            return false;
        }
        true
    }

    /// The leads matching `f` in `order`: `(total, the page's arena positions)`.
    pub(crate) fn query(
        &self,
        f: &LeadFilter,
        order: Order,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<u32>) {
        if order == Order::Shuffled {
            return self.collect(self.shuffled.iter().copied(), f, offset, limit);
        }
        let index: &[u32] = match f.stream {
            Some(s) => self
                .by_stream
                .get((s as usize).wrapping_sub(1))
                .map_or(&[], |v| v.as_slice()),
            None => &self.by_time,
        };
        let start = match f.since_ms {
            None => 0,
            Some(s) => index.partition_point(|&p| {
                let d = self
                    .leads
                    .get(p as usize)
                    .map_or(i64::MAX, |l| l.discovered.saturating_mul(1000));
                if f.since_inclusive { d < s } else { d <= s }
            }),
        };
        let range = index.get(start..).unwrap_or(&[]);
        if !f.has_field_filters() {
            let total = range.len();
            let from = offset.min(total);
            let to = offset.saturating_add(limit).min(total);
            let page = match order {
                Order::OldestFirst => range.get(from..to).unwrap_or(&[]).to_vec(),
                _ => range
                    .get(total - to..total - from)
                    .unwrap_or(&[])
                    .iter()
                    .rev()
                    .copied()
                    .collect(),
            };
            return (total, page);
        }
        match order {
            Order::OldestFirst => self.collect(range.iter().copied(), f, offset, limit),
            _ => self.collect(range.iter().rev().copied(), f, offset, limit),
        }
    }

    fn collect(
        &self,
        it: impl Iterator<Item = u32>,
        f: &LeadFilter,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<u32>) {
        let mut total = 0usize;
        let mut page = Vec::with_capacity(limit.min(1024));
        for p in it {
            let Some(l) = self.leads.get(p as usize) else {
                continue;
            };
            if self.matches(l, f) {
                if total >= offset && page.len() < limit {
                    page.push(p);
                }
                total += 1;
            }
        }
        (total, page)
    }

    /// Appends the page's cached JSON texts, comma separated.
    pub(crate) fn write_page(&self, page: &[u32], out: &mut Vec<u8>) {
        for (i, &p) in page.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if let Some(l) = self.leads.get(p as usize) {
                out.extend_from_slice(l.json.as_bytes());
            }
        }
    }

    pub(crate) fn page_bytes(&self, page: &[u32]) -> usize {
        page.iter()
            .filter_map(|&p| self.leads.get(p as usize))
            .map(|l| l.json.len() + 1)
            .sum()
    }

    fn generate_runs(&mut self, runs_per_stream: u32) {
        let mut r = Rng::new(self.seed ^ 0x5eed_0f2a);
        let newest_run_at = self.newest - 600;
        let mut runs = Vec::new();
        for s in &self.streams {
            for j in 0..runs_per_stream {
                let age = i64::from(runs_per_stream - 1 - j);
                let triggered =
                    newest_run_at - age * 4 * 3600 - i64::from(s.id - 1) * 300 - r.below(60) as i64;
                let newest = j + 1 == runs_per_stream;
                let v1 = !newest && j % 3 == 0;
                let status = if newest {
                    if s.id % 2 == 1 {
                        RunStatus::Running
                    } else {
                        RunStatus::Queued
                    }
                } else if !v1 && r.chance(12) {
                    RunStatus::Failed
                } else {
                    RunStatus::Succeeded
                };
                let new_followers = 10 + r.below(90) as i64;
                let passed = new_followers / 4 + r.below(5) as i64;
                let mut counts = [new_followers, passed, passed / 3, passed * 2 / 3];
                match status {
                    RunStatus::Queued => counts = [0; 4],
                    RunStatus::Running => counts = [new_followers / 2, passed / 3, 0, 0],
                    _ => {}
                }
                let v1_counts = [
                    200 + r.below(800) as i64,
                    r.below(40) as i64,
                    r.below(20) as i64,
                    r.below(10) as i64,
                    r.below(30) as i64,
                    r.below(5) as i64,
                    r.below(3) as i64,
                ];
                runs.push(Run {
                    id: 0,
                    stream: s.id,
                    v1,
                    status,
                    source: if r.chance(80) { "cron" } else { "manual" },
                    mode: ["sync-then-search", "sync-only", "search-only"]
                        .get(r.below(3) as usize)
                        .copied()
                        .unwrap_or("sync-only"),
                    triggered,
                    completed: if matches!(status, RunStatus::Succeeded | RunStatus::Failed) {
                        Some(triggered + 60 + r.below(300) as i64)
                    } else {
                        None
                    },
                    counts,
                    v1_counts,
                    search_label: v1.then(|| format!("{} lookalikes", s.x_handle)),
                    error: (status == RunStatus::Failed)
                        .then(|| "X API rate limit hit; will retry at the next run".to_string()),
                });
            }
        }
        runs.sort_by_key(|run| (run.triggered, run.stream));
        let mut id = FIRST_RUN_ID;
        for run in &mut runs {
            run.id = id;
            id += 1 + r.below(3) as i64;
        }
        runs.reverse();
        self.runs = runs;
    }

    /// Finishes every unfinished run; returns how many changed.
    pub(crate) fn complete_runs(&mut self) -> usize {
        let mut n = 0;
        for run in self.runs.iter_mut().filter(|run| !run.finished()) {
            run.status = RunStatus::Succeeded;
            run.completed = Some(run.triggered + 83 + (run.id % 200));
            let new_followers = 40 + run.id % 50;
            let passed = new_followers / 4;
            run.counts = [new_followers, passed, passed / 3, passed * 2 / 3];
            n += 1;
        }
        n
    }

    /// Runs newest first, optionally of one stream.
    pub(crate) fn runs_of(&self, stream: Option<u32>) -> impl Iterator<Item = &Run> {
        self.runs
            .iter()
            .filter(move |run| stream.is_none_or(|s| s == run.stream))
    }

    pub(crate) fn run_json(&self, run: &Run) -> serde_json::Value {
        let s = self.streams.get((run.stream - 1) as usize);
        let status = match (run.status, run.v1) {
            (RunStatus::Queued, _) => "queued",
            (RunStatus::Running, _) => "running",
            (RunStatus::Succeeded, true) => "completed",
            (RunStatus::Succeeded, false) => "succeeded",
            (RunStatus::Failed, _) => "failed",
        };
        let at = |secs: i64| ts(secs);
        let steps: Vec<(&str, String, i64)> = {
            let mut v = vec![("queued", "Run queued".to_string(), run.triggered)];
            if run.status != RunStatus::Queued {
                v.push((
                    "fetch_followers",
                    format!("Fetched {} new followers", run.counts[0]),
                    run.triggered + 20,
                ));
            }
            if run.finished() {
                v.push((
                    "score",
                    format!("{} candidates passed", run.counts[1]),
                    run.triggered + 50,
                ));
                v.push((
                    if run.status == RunStatus::Failed {
                        "error"
                    } else {
                        "done"
                    },
                    run.error
                        .clone()
                        .unwrap_or_else(|| "Run finished".to_string()),
                    run.completed.unwrap_or(run.triggered),
                ));
            }
            v
        };
        let progress: Vec<serde_json::Value> = if run.v1 {
            steps.iter().map(|(_, m, _)| json!(m)).collect()
        } else {
            steps
                .iter()
                .map(|(step, m, t)| json!({"step": step, "message": m, "timestamp": at(*t)}))
                .collect()
        };
        let mut v = json!({
            "id": run.id,
            "streamId": run.stream,
            "streamName": s.map(|s| s.name.as_str()),
            "trackedXAccountId": s.map(|s| s.account),
            "xHandle": s.map(|s| s.x_handle.as_str()),
            "segmentId": s.map(|s| s.segment),
            "segmentName": s.map(|s| s.segment_name.as_str()),
            "source": run.source,
            "status": status,
            "mode": run.mode,
            "triggeredAt": at(run.triggered),
            "completedAt": run.completed.map(at),
            "newFollowersCount": run.counts[0],
            "candidatesPassedCount": run.counts[1],
            "mediumFitCount": run.counts[2],
            "enrichedCount": run.counts[3],
            "errorMessage": run.error,
            "progressLog": progress,
        });
        if run.v1
            && let Some(o) = v.as_object_mut()
        {
            let names = [
                "existingFollowersCount",
                "likersCount",
                "tierFilteredCount",
                "genderFilteredCount",
                "filteredOutCount",
                "deepCrawlCount",
                "backfilledCount",
            ];
            for (name, value) in names.iter().zip(run.v1_counts) {
                o.insert((*name).to_string(), json!(value));
            }
            o.insert("searchLabel".to_string(), json!(run.search_label));
        }
        v
    }

    pub(crate) fn stream_json(&self, s: &StreamInfo) -> serde_json::Value {
        json!({
            "id": s.id,
            "name": s.name,
            "isActive": true,
            "isArchived": false,
            "trackedXAccountId": s.account,
            "xHandle": s.x_handle,
            "segmentId": s.segment,
            "segmentName": s.segment_name,
            "createdAt": ts(BASE_TIME_SECS - 30 * 86_400 + i64::from(s.id) * 3600),
        })
    }
}

/// The generator of a lead's content; its first draw decides `segmentId` (below 3: null,
/// below 5: missing).
fn content_rng(seed: u64, id: i64) -> Rng {
    Rng::new(seed ^ mix(id as u64) ^ 0x00c0_ffee)
}

/// The fixed pseudo-random rank of a lead in `Shuffled` order.
pub(crate) fn shuffle_key(seed: u64, id: i64) -> u64 {
    mix(seed.rotate_left(17) ^ mix(id as u64))
}
