//! The simulator against a real HTTP client (reqwest), on 127.0.0.1.

use std::collections::HashSet;
use std::time::Instant;

use serde_json::Value;

use super::data::{Store, push_ts, ts};
use super::*;

const KEY: &str = "ctgo_test_key_0000000000000000000000000000000";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

async fn get_with(c: &reqwest::Client, sim: &Simulator, path: &str, key: Option<&str>) -> Answer {
    let url = format!("http://{}{}", sim.addr(), path);
    let mut req = c.get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    Answer {
        status,
        headers,
        text,
    }
}

async fn get(sim: &Simulator, path: &str) -> Answer {
    get_with(&client(), sim, path, Some(KEY)).await
}

fn ids(page: &Value) -> Vec<i64> {
    page["leads"].as_array().map_or_else(Vec::new, |a| {
        a.iter().filter_map(|l| l["id"].as_i64()).collect()
    })
}

fn discovered(page: &Value) -> Vec<String> {
    page["leads"].as_array().map_or_else(Vec::new, |a| {
        a.iter()
            .filter_map(|l| l["discoveredAt"].as_str().map(str::to_string))
            .collect()
    })
}

#[test]
fn timestamps_match_chrono() {
    for secs in [
        0i64,
        BASE_TIME_SECS,
        BASE_TIME_SECS + 86_399,
        951_782_400, /* 2000-02-29 */
        4_102_444_800,
    ] {
        let mut v = Vec::new();
        push_ts(&mut v, secs);
        let want = chrono::DateTime::from_timestamp(secs, 0)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        assert_eq!(String::from_utf8(v).ok(), want);
    }
    assert_eq!(ts(BASE_TIME_SECS), "2026-06-01T00:00:00Z");
}

#[test]
fn data_is_deterministic_and_shaped_as_documented() {
    let a = Store::generate(3000, 9, 5, 12, Some(7));
    let b = Store::generate(3000, 9, 5, 12, Some(7));
    let c = Store::generate(3000, 10, 5, 12, Some(7));
    let texts = |s: &Store| {
        s.leads
            .iter()
            .map(|l| l.json.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(texts(&a), texts(&b));
    assert_ne!(texts(&a), texts(&c));
    assert_eq!(a.leads.first().map(|l| l.id), Some(FIRST_LEAD_ID));
    assert_eq!(a.leads.first().map(|l| l.discovered), Some(BASE_TIME_SECS));
    let mut same_second = 1;
    for w in a.leads.windows(2) {
        let (x, y) = (&w[0], &w[1]);
        assert!(y.id - x.id >= 1 && y.id - x.id <= 3, "id gaps are small");
        assert!(y.discovered >= x.discovered);
        if y.discovered == x.discovered {
            same_second += 1;
            assert!(same_second <= 8, "at most 8 leads share a second");
        } else {
            same_second = 1;
        }
    }
    // Every lead is valid JSON; xUserId is a string above 2^53; extra fields occur.
    let mut extras = HashSet::new();
    let mut exported = 0;
    for l in &a.leads {
        let v: Value = serde_json::from_str(&l.json).expect("valid JSON");
        assert_eq!(v["id"].as_i64(), Some(l.id));
        if let Some(x) = v["profile"]["xUserId"].as_str() {
            assert!(x.parse::<u64>().expect("digits") > (1u64 << 53));
        }
        for k in ["linkedinUrl", "email", "feedbackStatus"] {
            if v.get(k).is_some() {
                extras.insert(k);
            }
        }
        if v["profile"].get("location").is_some() {
            extras.insert("location");
        }
        if !v["exportedAt"].is_null() {
            exported += 1;
        }
    }
    assert_eq!(extras.len(), 4);
    assert!(
        (100..=600).contains(&exported),
        "about 10% exported, got {exported}"
    );
    // Runs: v1 rows, unfinished newest runs, newest first.
    let runs: Vec<Value> = a.runs.iter().map(|r| a.run_json(r)).collect();
    assert_eq!(runs.len(), 60);
    assert!(
        runs.iter()
            .any(|r| r["status"] == "completed" && r["progressLog"][0].is_string())
    );
    assert!(
        runs.iter()
            .any(|r| r["status"] == "succeeded" && r["progressLog"][0].is_object())
    );
    assert_eq!(
        runs.iter().filter(|r| r["completedAt"].is_null()).count(),
        5
    );
    let keys: Vec<(String, i64)> = runs
        .iter()
        .map(|r| {
            (
                r["triggeredAt"].as_str().unwrap_or("").to_string(),
                r["id"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|x, y| y.cmp(x));
    assert_eq!(keys, sorted, "runs newest first");
}

#[tokio::test]
async fn envelope_and_pagination() {
    let sim = Simulator::start(SimConfig::new(1234, 1)).expect("start");
    let first = get(&sim, "/api/v2/leads?limit=500").await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(
        first.header("x-ratelimit-limit").is_none(),
        "no rate-limit headers without a limit"
    );
    let v = first.json();
    assert_eq!(v["total"], 1234);
    assert_eq!(v["hasMore"], true);
    assert_eq!(ids(&v).len(), 500);
    let mut all = ids(&v);
    let mut times = discovered(&v);
    for offset in [500, 1000] {
        let v = get(&sim, &format!("/api/v2/leads?limit=500&offset={offset}"))
            .await
            .json();
        assert_eq!(v["hasMore"], offset == 500);
        all.extend(ids(&v));
        times.extend(discovered(&v));
    }
    assert_eq!(all.len(), 1234);
    let mut sorted_desc = times.clone();
    sorted_desc.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted_desc, "newest first by default");
    all.sort_unstable();
    assert_eq!(all, sim.lead_ids());
    // Default limit, past the end, summary.
    assert_eq!(
        ids(&get(&sim, "/api/v2/leads").await.json()).len(),
        DEFAULT_LEADS_LIMIT
    );
    let past = get(&sim, "/api/v2/leads?offset=5000").await.json();
    assert_eq!(
        (ids(&past).len(), past["hasMore"].clone()),
        (0, Value::Bool(false))
    );
    assert_eq!(
        get(&sim, "/api/v2/leads?summary=true").await.json(),
        serde_json::json!({"total": 1234})
    );
    let stats = sim.requests();
    assert_eq!((stats.leads, stats.total), (6, 6));
    sim.reset_stats();
    assert_eq!(sim.requests(), SimStats::default());
}

#[tokio::test]
async fn since_boundary_at_a_shared_second() {
    let sim = Simulator::start(SimConfig::new(300, 2)).expect("start");
    let added = sim.add_leads(1);
    let shared = sim.add_leads_at_newest_second(3);
    let newest = sim.lead_json(added[0]).expect("lead")["discoveredAt"]
        .as_str()
        .unwrap_or("")
        .to_string();
    for id in &shared {
        assert_eq!(
            sim.lead_json(*id).expect("lead")["discoveredAt"].as_str(),
            Some(newest.as_str())
        );
    }
    let path = format!("/api/v2/leads?since={}", newest.replace(':', "%3A"));
    let excl = get(&sim, &path).await.json();
    assert_eq!(
        excl["total"], 0,
        "exclusive: nothing after the newest second"
    );
    sim.update(|c| c.since = SinceBoundary::Inclusive);
    let incl = get(&sim, &path).await.json();
    assert_eq!(
        incl["total"], 4,
        "inclusive: the four leads of the newest second"
    );
    let mut got = ids(&incl);
    got.sort_unstable();
    let mut want = [added, shared].concat();
    want.sort_unstable();
    assert_eq!(got, want);
    // An offset other than Z is understood, also when its `+` arrives unencoded.
    let one_before = ts(BASE_TIME_SECS);
    let a = get(
        &sim,
        &format!("/api/v2/leads?since={one_before}&summary=true"),
    )
    .await
    .json();
    let b = get(
        &sim,
        "/api/v2/leads?since=2026-06-01T02:00:00+02:00&summary=true",
    )
    .await
    .json();
    assert_eq!(a, b);
}

#[tokio::test]
async fn orderings() {
    let sim = Simulator::start(SimConfig::new(800, 3)).expect("start");
    sim.update(|c| c.ordering = Ordering::OldestFirst);
    let v = get(&sim, "/api/v2/leads?limit=500").await.json();
    let t = discovered(&v);
    let mut asc = t.clone();
    asc.sort();
    assert_eq!(t, asc, "oldest first");
    assert_eq!(ids(&v).first().copied(), Some(FIRST_LEAD_ID));

    sim.update(|c| c.ordering = Ordering::Shuffled);
    let mut pages = Vec::new();
    for offset in [0, 500] {
        let a = ids(
            &get(&sim, &format!("/api/v2/leads?limit=500&offset={offset}"))
                .await
                .json(),
        );
        let b = ids(
            &get(&sim, &format!("/api/v2/leads?limit=500&offset={offset}"))
                .await
                .json(),
        );
        assert_eq!(a, b, "the same permutation on every request");
        pages.extend(a);
    }
    let mut sorted = pages.clone();
    sorted.sort_unstable();
    assert_ne!(pages, sorted, "shuffled is not sorted");
    assert_eq!(sorted, sim.lead_ids(), "pages cover every lead once");

    // Filters work in every order.
    let high = get(
        &sim,
        "/api/v2/leads?matchConfidence=high&streamId=2&limit=500",
    )
    .await
    .json();
    let leads = high["leads"].as_array().cloned().unwrap_or_default();
    assert!(!leads.is_empty());
    assert!(
        leads
            .iter()
            .all(|l| l["matchConfidence"] == "high" && l["streamId"] == 2)
    );
    assert_eq!(high["total"].as_u64(), Some(leads.len() as u64));
}

#[tokio::test]
async fn auth_and_refusals() {
    let mut cfg = SimConfig::new(50, 4);
    cfg.key = Some(KEY.to_string());
    let sim = Simulator::start(cfg).expect("start");
    let c = client();
    let other = "ctgo_other_key_000000000000000000000000000000";
    for key in [Some(other), Some("ctgo_short"), None] {
        let a = get_with(&c, &sim, "/api/v2/leads", key).await;
        assert_eq!(a.status, 401);
        assert_eq!(
            a.json(),
            serde_json::json!({"error": "Invalid or revoked API key."})
        );
    }
    let gone = get_with(&c, &sim, "/api/v1/leads", None).await;
    assert_eq!(gone.status, 410);
    assert_eq!(gone.json()["error"], "gone");
    assert_eq!(
        gone.json()["message"],
        "API v1 has been removed. Use /api/v2."
    );

    let nf = get(&sim, "/api/v2/nothing").await;
    assert_eq!(
        (nf.status, nf.json()),
        (404, serde_json::json!({"error": "not_found"}))
    );
    assert_eq!(get(&sim, "/api/v2/streams/99/leads").await.status, 404);
    assert_eq!(get(&sim, "/api/v2/streams/99/runs").await.status, 404);

    for bad in [
        "limit=501",
        "limit=abc",
        "limit=0",
        "offset=-1",
        "since=yesterday",
        "lifecycle=old",
    ] {
        let a = get(&sim, &format!("/api/v2/leads?{bad}")).await;
        assert_eq!(a.status, 400, "{bad}");
        assert_eq!(a.json()["error"], "invalid_parameter");
        assert!(a.json()["message"].is_string());
    }
    assert_eq!(get(&sim, "/api/v2/runs?limit=101").await.status, 400);
    sim.update(|c| c.refuse_over_max_limit = false);
    let clamped = get(&sim, "/api/v2/leads?limit=501").await;
    assert_eq!(clamped.status, 200);
    assert_eq!(sim.requests().unauthorized, 3);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let mut cfg = SimConfig::new(20, 5);
    cfg.rate_limit = Some(3);
    let sim = Simulator::start(cfg).expect("start");
    for remaining in ["2", "1", "0"] {
        let a = get(&sim, "/api/v2/me").await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(
            a.header("x-ratelimit-remaining").as_deref(),
            Some(remaining)
        );
    }
    let a = get(&sim, "/api/v2/leads").await;
    assert_eq!(a.status, 429);
    assert_eq!(a.json(), serde_json::json!({"error": "rate_limited"}));
    let retry: u64 = a
        .header("retry-after")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        (59..=60).contains(&retry),
        "whole seconds until the oldest leaves: {retry}"
    );
    assert_eq!(sim.requests().rate_limited, 1);
    // Another key has its own window.
    let other = "ctgo_another_key_0000000000000000000000000000";
    assert_eq!(
        get_with(&client(), &sim, "/api/v2/me", Some(other))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn injected_faults() {
    let sim = Simulator::start(SimConfig::new(600, 6)).expect("start");
    let c = client();
    let url = format!("{}/leads?limit=500", sim.base_url());

    sim.inject(FaultKind::CutShort, 1);
    let resp = c
        .get(&url)
        .bearer_auth(KEY)
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err(), "the body is cut short");

    sim.inject(FaultKind::Drop, 1);
    assert!(
        c.get(&url).bearer_auth(KEY).send().await.is_err(),
        "dropped without an answer"
    );

    sim.inject(FaultKind::Nonsense, 1);
    sim.inject(FaultKind::TooManyRequests, 1);
    sim.inject(FaultKind::Unavailable, 1);
    sim.inject(FaultKind::BadGateway, 1);
    let n = get(&sim, "/api/v2/leads").await;
    assert_eq!(n.status, 200);
    assert!(n.text.starts_with("<!DOCTYPE html>"));
    let t = get(&sim, "/api/v2/runs").await;
    assert_eq!(
        (t.status, t.header("retry-after").as_deref()),
        (429, Some("1"))
    );
    assert_eq!(get(&sim, "/api/v2/streams").await.status, 503);
    assert_eq!(get(&sim, "/api/v2/me").await.status, 502);
    let ok = get(&sim, "/api/v2/leads?limit=500").await;
    assert_eq!((ok.status, ids(&ok.json()).len()), (200, 500));
    assert_eq!(sim.requests().faults, 6);
    // Non-data requests never take a fault.
    sim.inject(FaultKind::Unavailable, 1);
    assert_eq!(get(&sim, "/api/v2/unknown").await.status, 404);
    assert_eq!(get(&sim, "/api/v2/me").await.status, 503);
}

#[tokio::test]
async fn random_faults_are_deterministic() {
    async fn statuses() -> Vec<u16> {
        let mut cfg = SimConfig::new(10, 7);
        cfg.faults = FaultPlan {
            rate: 0.5,
            kinds: vec![
                FaultKind::Unavailable,
                FaultKind::BadGateway,
                FaultKind::TooManyRequests,
            ],
            seed: 99,
            ..FaultPlan::default()
        };
        let sim = Simulator::start(cfg).expect("start");
        let mut v = Vec::new();
        for _ in 0..40 {
            v.push(get(&sim, "/api/v2/leads").await.status);
        }
        v
    }
    let a = statuses().await;
    assert_eq!(a, statuses().await);
    let faults = a.iter().filter(|&&s| s != 200).count();
    assert!((8..=32).contains(&faults), "about half: {faults}");
}

#[tokio::test]
async fn late_leads_removed_leads_and_updates() {
    let sim = Simulator::start(SimConfig::new(400, 8)).expect("start");
    let before = sim.lead_ids();
    let max_before = before.iter().copied().max().unwrap_or(0);
    let newest_id = sim.add_leads(1)[0];
    let newest = sim.lead_json(newest_id).expect("lead")["discoveredAt"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let late = sim.add_late_leads(2, 10);
    assert!(
        late.iter().all(|&id| id > newest_id && id > max_before),
        "late leads get new, higher ids"
    );
    let late_at = sim.lead_json(late[0]).expect("lead")["discoveredAt"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let parse = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp())
            .unwrap_or(0)
    };
    assert_eq!(parse(&newest) - parse(&late_at), 600);
    let since = ts(parse(&newest) - 15 * 60);
    let page = get(&sim, &format!("/api/v2/leads?since={since}&limit=500"))
        .await
        .json();
    assert!(
        late.iter().all(|id| ids(&page).contains(id)),
        "late leads visible within the lookback"
    );

    let gone = before[..3].to_vec();
    sim.remove_leads(&gone);
    let all = get(&sim, "/api/v2/leads?limit=500").await.json();
    assert_eq!(all["total"].as_u64(), Some((before.len() + 3 - 3) as u64));
    assert!(gone.iter().all(|id| !ids(&all).contains(id)));
    assert!(gone.iter().all(|id| !sim.lead_ids().contains(id)));
    assert!(sim.lead_json(gone[0]).is_none());

    let target = before[10];
    let old = sim.lead_json(target).expect("lead");
    sim.mark_exported(&[target]);
    let new = sim.lead_json(target).expect("lead");
    assert!(new["exportedAt"].is_string());
    assert_ne!(old["exportedAt"], new["exportedAt"]);
    let exported = get(&sim, "/api/v2/leads?lifecycle=exported&limit=500")
        .await
        .json();
    assert!(ids(&exported).contains(&target));
    let fresh = get(&sim, "/api/v2/leads?lifecycle=new&limit=500")
        .await
        .json();
    assert!(!ids(&fresh).contains(&target));
}

#[tokio::test]
async fn runs_streams_me_and_complete_runs() {
    let sim = Simulator::start(SimConfig::new(100, 9)).expect("start");
    let runs = get(&sim, "/api/v2/runs?limit=100").await.json();
    let list = runs["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 60);
    assert_eq!(runs["hasMore"], false);
    let page = get(&sim, "/api/v2/runs").await.json();
    assert_eq!(
        (
            page["runs"].as_array().map(Vec::len),
            page["hasMore"].clone()
        ),
        (Some(30), Value::Bool(true))
    );
    let mut run_ids: Vec<i64> = list.iter().filter_map(|r| r["id"].as_i64()).collect();
    run_ids.sort_unstable();
    assert_eq!(run_ids, sim.run_ids());
    let unfinished: Vec<Value> = list
        .iter()
        .filter(|r| r["completedAt"].is_null())
        .cloned()
        .collect();
    assert_eq!(unfinished.len(), 5);
    assert!(
        unfinished
            .iter()
            .all(|r| r["status"] == "running" || r["status"] == "queued")
    );
    let one = get(&sim, "/api/v2/streams/1/runs?limit=5").await.json();
    assert_eq!(
        one.as_object().map(|o| o.len()),
        Some(1),
        "per-stream: only `runs`"
    );
    assert!(
        one["runs"]
            .as_array()
            .is_some_and(|a| a.len() == 5 && a.iter().all(|r| r["streamId"] == 1))
    );

    assert_eq!(sim.complete_runs(), 5);
    assert_eq!(sim.complete_runs(), 0);
    let after = get(&sim, "/api/v2/runs?limit=100").await.json();
    let id = unfinished[0]["id"].clone();
    let changed = after["runs"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["id"] == id).cloned())
        .unwrap_or_default();
    assert_eq!(changed["status"], "succeeded");
    assert!(changed["completedAt"].is_string());
    assert_ne!(
        changed["newFollowersCount"],
        unfinished[0]["newFollowersCount"]
    );

    let streams = get(&sim, "/api/v2/streams").await.json();
    assert_eq!(streams["streams"].as_array().map(Vec::len), Some(5));
    assert_eq!(streams["streams"][0]["isActive"], true);
    let per_stream = get(&sim, "/api/v2/streams/3/leads?limit=500").await.json();
    assert!(
        per_stream["leads"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|l| l["streamId"] == 3))
    );

    let me = get(&sim, "/api/v2/me").await.json();
    for ptr in [
        "/user/name",
        "/user/email",
        "/subscription/plan",
        "/subscription/status",
        "/credits/remaining",
        "/credits/monthlyAllowance",
        "/accounts/0/trackedXAccountId",
        "/accounts/0/xHandle",
        "/accounts/0/budget/monthlyLeadLimit",
        "/accounts/0/budget/used",
    ] {
        assert!(me.pointer(ptr).is_some(), "{ptr}");
    }

    sim.update(|c| c.credits_exhausted = true);
    let a = get(&sim, "/api/v2/leads").await;
    assert_eq!(
        (a.status, a.json()["error"].clone()),
        (429, Value::from("credits_exhausted"))
    );
    assert!(a.header("retry-after").is_none());
    assert_eq!(
        get(&sim, "/api/v2/me").await.json()["credits"]["remaining"],
        0
    );
}

#[tokio::test]
async fn malformed_records_are_served_and_listed() {
    let mut cfg = SimConfig::new(200, 10);
    cfg.malformed_every = Some(10);
    cfg.junk_record_per_page = true;
    let sim = Simulator::start(cfg).expect("start");
    let bad = sim.malformed_ids();
    assert_eq!(bad.len(), 20);
    let good = sim.lead_ids();
    assert_eq!(good.len(), 180);
    assert!(bad.iter().all(|id| !good.contains(id)));
    let page = get(&sim, "/api/v2/leads?limit=500").await.json();
    let leads = page["leads"].as_array().cloned().unwrap_or_default();
    assert_eq!(leads.len(), 201, "200 leads plus one junk record");
    assert_eq!(page["total"], 200);
    assert_eq!(leads.iter().filter(|l| l["id"] == "abc").count(), 1);
    let served = |id: i64| {
        leads
            .iter()
            .find(|l| l["id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    let kinds: Vec<bool> = vec![
        bad.iter()
            .any(|&id| served(id)["discoveredAt"] == "yesterday"),
        bad.iter()
            .any(|&id| served(id)["profile"]["followerCount"] == "lots"),
        bad.iter().any(|&id| served(id)["profile"] == "oops"),
        bad.iter()
            .any(|&id| served(id)["exportedAt"] == "not a date"),
    ];
    assert_eq!(kinds, vec![true; 4]);
    // Switching it off at run time re-renders them.
    sim.update(|c| c.malformed_every = None);
    assert!(sim.malformed_ids().is_empty());
    assert_eq!(sim.lead_ids().len(), 200);
    assert!(
        sim.lead_json(bad[0])
            .is_some_and(|v| v["discoveredAt"] != "yesterday")
    );
}

#[tokio::test]
async fn pagination_hazards() {
    let mut cfg = SimConfig::new(1000, 11);
    cfg.ignore_offset = true;
    let sim = Simulator::start(cfg).expect("start");
    let a = ids(&get(&sim, "/api/v2/leads?limit=100").await.json());
    let b = ids(&get(&sim, "/api/v2/leads?limit=100&offset=100").await.json());
    assert_eq!(a, b, "offset ignored");

    sim.update(|c| {
        c.ignore_offset = false;
        c.arrivals_between_pages = 7;
        c.late_arrival_minutes = 5;
    });
    let first = get(&sim, "/api/v2/leads?limit=100").await.json();
    assert_eq!(first["total"], 1000);
    let second = get(&sim, "/api/v2/leads?limit=100&offset=100").await.json();
    assert_eq!(second["total"], 1007, "leads arrived between the pages");
    // Page two does not add more.
    assert_eq!(
        get(&sim, "/api/v2/leads?summary=true").await.json()["total"],
        1007
    );
}

#[tokio::test]
async fn latency_and_slow_are_applied() {
    let mut cfg = SimConfig::new(10, 12);
    cfg.latency_ms = 150;
    let sim = Simulator::start(cfg).expect("start");
    let t = Instant::now();
    assert_eq!(get(&sim, "/api/v2/me").await.status, 200);
    assert!(t.elapsed().as_millis() >= 150);

    // A slow answer waits `slow_ms` (here on top of the latency), then is the real answer...
    sim.update(|c| {
        c.latency_ms = 0;
        c.slow_ms = 200;
    });
    sim.inject(FaultKind::Slow, 1);
    let t = Instant::now();
    let a = get(&sim, "/api/v2/leads?limit=5").await;
    assert!(t.elapsed().as_millis() >= 200);
    assert_eq!((a.status, ids(&a.json()).len()), (200, 5));
    // ...which a client with a shorter timeout never sees.
    sim.update(|c| c.slow_ms = 2_000);
    sim.inject(FaultKind::Slow, 1);
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(100))
        .build()
        .expect("client");
    let err = impatient
        .get(format!("{}/me", sim.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .expect_err("times out");
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn every_error_answer_of_the_contract_can_be_played() {
    let sim = Simulator::start(SimConfig::new(20, 3)).expect("start");
    for kind in FaultKind::ALL {
        let Some((status, code, message)) = kind.error_answer() else {
            continue;
        };
        sim.inject(kind, 1);
        let a = get(&sim, "/api/v2/leads").await;
        assert_eq!(a.status, status, "{kind:?}");
        assert_eq!(a.json()["error"], code, "{kind:?}");
        assert_eq!(a.json()["message"].as_str(), message, "{kind:?}");
        assert_eq!(
            a.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            a.header("retry-after").is_some(),
            kind == FaultKind::TooManyRequests,
            "{kind:?}"
        );
    }
    let permanent: Vec<u16> = FaultKind::ALL
        .iter()
        .filter(|k| k.is_permanent())
        .filter_map(|k| k.error_answer().map(|(status, _, _)| status))
        .collect();
    assert_eq!(permanent, [400, 403, 403, 404, 409, 422]);
    assert_eq!(
        [FaultKind::SubscriptionRequired, FaultKind::BudgetExhausted]
            .map(|k| k.error_answer().map(|(_, code, _)| code)),
        [Some("subscription_required"), Some("budget_exhausted")]
    );
}

#[test]
fn fault_names_round_trip_and_the_default_set_is_transient() {
    for kind in FaultKind::ALL {
        assert_eq!(kind.name().parse::<FaultKind>(), Ok(kind));
    }
    for kind in FaultKind::DEFAULT_KINDS {
        assert!(!kind.is_permanent(), "{kind:?} would stop a job");
    }
    // Every transient kind but the slow one is in the default set.
    for kind in FaultKind::ALL {
        assert_eq!(
            FaultKind::DEFAULT_KINDS.contains(&kind),
            !kind.is_permanent() && kind != FaultKind::Slow,
            "{kind:?}"
        );
    }
    let err = "418".parse::<FaultKind>().expect_err("unknown");
    assert!(err.contains("403-budget") && err.contains("slow"), "{err}");
}

#[tokio::test]
async fn a_plan_can_hit_one_endpoint_from_its_nth_request_on() {
    let mut cfg = SimConfig::new(50, 8);
    cfg.faults = FaultPlan::always(FaultKind::Conflict)
        .on(FaultEndpoint::Leads)
        .after(2);
    let sim = Simulator::start(cfg).expect("start");
    let mut statuses = Vec::new();
    for path in [
        "/api/v2/leads",
        "/api/v2/runs",
        "/api/v2/streams/1/leads",
        "/api/v2/me",
        "/api/v2/leads",
        "/api/v2/streams/2/leads",
        "/api/v2/streams",
    ] {
        statuses.push(get(&sim, path).await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 409, 409, 200]);
    assert_eq!(sim.requests().faults, 2);
    // A new plan counts its own requests from zero.
    sim.update(|c| c.faults = FaultPlan::always(FaultKind::NotFound).after(1));
    assert_eq!(get(&sim, "/api/v2/runs").await.status, 200);
    assert_eq!(get(&sim, "/api/v2/runs").await.status, 404);
    // Other switches changing leave the count alone.
    sim.update(|c| c.latency_ms = 0);
    assert_eq!(get(&sim, "/api/v2/me").await.status, 404);
    sim.update(|c| c.faults = FaultPlan::default());
    assert_eq!(get(&sim, "/api/v2/leads").await.status, 200);
}

#[test]
fn simulate_args_parse() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }
    let cli = Cli::try_parse_from([
        "x",
        "--port",
        "0",
        "--leads",
        "10",
        "--order",
        "shuffled",
        "--since-boundary",
        "inclusive",
        "--faults",
        "503,drop,cut",
        "--fault-rate",
        "0.2",
        "--rate-limit",
        "60",
    ])
    .expect("parse");
    let cfg = cli.args.to_config().expect("config");
    assert_eq!(cfg.ordering, Ordering::Shuffled);
    assert_eq!(cfg.since, SinceBoundary::Inclusive);
    assert_eq!(
        cfg.faults.kinds,
        vec![FaultKind::Unavailable, FaultKind::Drop, FaultKind::CutShort]
    );
    assert_eq!(cfg.rate_limit, Some(60));
    assert!(Cli::try_parse_from(["x", "--faults", "boom"]).is_err());
    let bad = Cli::try_parse_from(["x", "--fault-rate", "2"]).expect("parse");
    assert!(bad.args.to_config().is_err());
    // Permanent answers by name; naming kinds without a rate plays them on every request.
    let cli = Cli::try_parse_from([
        "x",
        "--faults",
        "403,403-budget,400,404,409,422,500,504",
        "--fault-endpoint",
        "leads",
        "--fault-after",
        "3",
        "--slow-ms",
        "250",
    ])
    .expect("parse");
    let cfg = cli.args.to_config().expect("config");
    assert_eq!(
        cfg.faults,
        FaultPlan {
            rate: 1.0,
            kinds: vec![
                FaultKind::SubscriptionRequired,
                FaultKind::BudgetExhausted,
                FaultKind::BadRequest,
                FaultKind::NotFound,
                FaultKind::Conflict,
                FaultKind::Unprocessable,
                FaultKind::InternalError,
                FaultKind::GatewayTimeout,
            ],
            seed: DEFAULT_SEED,
            endpoint: Some(FaultEndpoint::Leads),
            after: 3,
        }
    );
    assert_eq!(cfg.slow_ms, 250);
    let cfg = Cli::try_parse_from(["x"])
        .expect("parse")
        .args
        .to_config()
        .expect("config");
    assert_eq!((cfg.faults.rate, cfg.slow_ms), (0.0, SLOW_FAULT_MS));
    assert!(server::well_formed_key(EXAMPLE_KEY));
    assert!(server::well_formed_key(KEY));
}

#[test]
fn keys_are_checked_as_the_contract_documents_them() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }
    // Prefix and length are all the contract fixes: any visible ASCII after the prefix is a key.
    for good in [
        KEY,
        "ctgo_with-dash.and~tilde000000000000000000000",
        "ctgo_!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~01234567",
    ] {
        assert_eq!(good.len(), 45, "{good}");
        assert!(server::well_formed_key(good), "{good}");
    }
    for bad in [
        "ctgo_short",
        "xtgo_test_key_0000000000000000000000000000000",
        "ctgo_test_key_00000000000000000000000000000000",
        "ctgo_test key_0000000000000000000000000000000",
        "ctgo_test\tkey_0000000000000000000000000000000",
        "ctgo_test_key_00000000000000000000000000000é",
    ] {
        assert!(!server::well_formed_key(bad), "{bad:?}");
    }
    let cli = Cli::try_parse_from([
        "x",
        "--key",
        "ctgo_with-dash.and~tilde000000000000000000000",
    ])
    .expect("parse");
    assert!(
        cli.args.to_config().is_ok(),
        "a key with a dash is accepted"
    );
    let cli = Cli::try_parse_from([
        "x",
        "--key",
        "ctgo_with space000000000000000000000000000000",
    ])
    .expect("parse");
    let err = cli.args.to_config().expect_err("a space is refused");
    assert!(err.to_string().contains("visible ASCII"), "{err}");
}

/// Not an assertion: how fast 100k leads are served in 500-lead pages.
#[tokio::test]
async fn timing_100k_leads_in_500_lead_pages() {
    let t = Instant::now();
    let sim = Simulator::start(SimConfig::new(100_000, 13)).expect("start");
    let started = t.elapsed();
    let c = client();
    let t = Instant::now();
    let mut rows = 0;
    let mut bytes = 0;
    for page in 0..200 {
        let a = get_with(
            &c,
            &sim,
            &format!("/api/v2/leads?limit=500&offset={}", page * 500),
            Some(KEY),
        )
        .await;
        bytes += a.text.len();
        rows += ids(&a.json()).len();
    }
    assert_eq!(rows, 100_000);
    let el = t.elapsed();
    eprintln!(
        "simulator: generated 100k leads in {started:?}; served 200 pages ({} MB) in {el:?} = {:.0} pages/s (client parse included)",
        bytes / 1_000_000,
        200.0 / el.as_secs_f64()
    );
}

/// Not an assertion, and ignored by default (run with `--release -- --ignored`): start-up time
/// and page rate with 1M leads.
#[tokio::test]
#[ignore]
async fn timing_1m_leads() {
    let t = Instant::now();
    let sim = Simulator::start(SimConfig::new(1_000_000, 14)).expect("start");
    let started = t.elapsed();
    let c = client();
    let t = Instant::now();
    let mut bytes = 0;
    for page in 0..2000 {
        let a = get_with(
            &c,
            &sim,
            &format!("/api/v2/leads?limit=500&offset={}", page * 500),
            Some(KEY),
        )
        .await;
        bytes += a.text.len();
    }
    let el = t.elapsed();
    let t2 = Instant::now();
    for page in 0..200 {
        let a = get_with(
            &c,
            &sim,
            &format!(
                "/api/v2/streams/2/leads?limit=500&offset={}&matchConfidence=high",
                page * 500
            ),
            Some(KEY),
        )
        .await;
        bytes += a.text.len();
    }
    eprintln!(
        "simulator: generated 1M leads in {started:?}; served 2000 pages ({} MB) in {el:?} = {:.0} pages/s; 200 filtered pages in {:?}",
        bytes / 1_000_000,
        2000.0 / el.as_secs_f64(),
        t2.elapsed()
    );
}

#[tokio::test]
async fn field_filters_agree_with_the_served_records() {
    let sim = Simulator::start(SimConfig::new(2000, 15)).expect("start");
    let all = get(&sim, "/api/v2/leads?limit=500&offset=0").await.json();
    let mut leads = all["leads"].as_array().cloned().unwrap_or_default();
    for offset in [500, 1000, 1500] {
        let v = get(&sim, &format!("/api/v2/leads?limit=500&offset={offset}"))
            .await
            .json();
        leads.extend(v["leads"].as_array().cloned().unwrap_or_default());
    }
    for (query, field, value) in [
        ("segmentId=13", "segmentId", Value::from(13)),
        ("accountId=8", "trackedXAccountId", Value::from(8)),
        (
            "matchConfidence=medium",
            "matchConfidence",
            Value::from("medium"),
        ),
    ] {
        let want: Vec<i64> = leads
            .iter()
            .filter(|l| l[field] == value)
            .filter_map(|l| l["id"].as_i64())
            .collect();
        let mut got = Vec::new();
        for offset in [0, 500, 1000, 1500] {
            got.extend(ids(&get(
                &sim,
                &format!("/api/v2/leads?{query}&limit=500&offset={offset}"),
            )
            .await
            .json()));
        }
        assert!(!want.is_empty());
        assert_eq!(got, want, "{query}");
    }
}
