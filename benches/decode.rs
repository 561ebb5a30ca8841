//! JSON → Arrow decoding against the ceiling of simply parsing the same bytes with serde_json.
//!
//! Pages are captured from the built-in simulator over loopback (exact bytes as served, 500
//! leads a page), then timed in memory, many iterations each, with plain `Instant`:
//!
//! 1. `Value`: `serde_json::from_slice::<serde_json::Value>` of the page (a full DOM).
//! 2. `split`: the envelope into `Vec<&RawValue>` (what the exporter needs before mapping; the
//!    ceiling of "parse the bytes and keep nothing").
//! 3. `client split`: `api::LeadsPage::parse`, as the client does it: the text checked as
//!    UTF-8, split into `Vec<&RawValue>`, each record's place noted, the text copied once.
//! 4. `map_leads`: `ctgo_export::mapping::map_leads` on the split records (typed Arrow columns,
//!    `extra`, content hashes).
//! 5. `split + map_leads`: 2 then 4, the whole decode of a page.
//!
//! Prints leads/s for each and the ratios of (5) to (1) and to (2). No assertion: figures only
//! (`cargo bench --bench decode`; `DECODE_LEADS` and `DECODE_ROUNDS` tune it). Under
//! `cargo test --all-targets` it only makes a smoke run of two pages.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ctgo_export::api::LeadsPage;
use ctgo_export::mapping::{MapContext, map_leads};
use ctgo_export::simulator::{SimConfig, Simulator};
use serde::Deserialize;
use serde_json::value::RawValue;

const DEFAULT_LEADS: usize = 20_000;
const DEFAULT_ROUNDS: usize = 30;
const SMOKE_LEADS: usize = 1_000;
const PAGE: usize = 500;
const KEY: &str = "ctgo_benchbenchbenchbenchbenchbenchbenchbench";

#[derive(Deserialize)]
struct Borrowed<'a> {
    #[serde(borrow)]
    leads: Vec<&'a RawValue>,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

fn capture(leads: usize) -> anyhow::Result<Vec<bytes::Bytes>> {
    let sim = Simulator::start(SimConfig::new(leads, 42))?;
    let base = sim.base_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let pages = rt.block_on(async {
        let client = reqwest::Client::new();
        let mut pages = Vec::new();
        let mut offset = 0;
        while offset < leads {
            let body = client
                .get(format!("{base}/leads?limit={PAGE}&offset={offset}"))
                .bearer_auth(KEY)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            pages.push(body);
            offset += PAGE;
        }
        anyhow::Ok(pages)
    })?;
    drop(sim);
    Ok(pages)
}

/// Runs `f` over every page `rounds` times (after one warm-up round); returns the best round.
fn time_best(pages: &[bytes::Bytes], rounds: usize, mut f: impl FnMut(&[u8]) -> usize) -> Duration {
    let mut best = Duration::MAX;
    for round in 0..=rounds {
        let t = Instant::now();
        let mut n = 0;
        for p in pages {
            n += f(p);
        }
        black_box(n);
        let e = t.elapsed();
        if round > 0 && e < best {
            best = e;
        }
    }
    best
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it:
    // then only a smoke run (a few pages, one round) so the test suite stays fast.
    let benching = std::env::args().any(|a| a == "--bench");
    let (leads, rounds) = if benching {
        (
            env_usize("DECODE_LEADS", DEFAULT_LEADS),
            env_usize("DECODE_ROUNDS", DEFAULT_ROUNDS),
        )
    } else {
        (SMOKE_LEADS, 1)
    };
    let pages = capture(leads)?;
    let bytes: usize = pages.iter().map(|p| p.len()).sum();
    let n: usize = pages
        .iter()
        .map(|p| serde_json::from_slice::<Borrowed>(p).map_or(0, |b| b.leads.len()))
        .sum();
    println!(
        "decode bench: {n} leads in {} pages of {PAGE}, {:.1} MB ({} bytes/lead), best of {rounds} rounds",
        pages.len(),
        bytes as f64 / 1e6,
        bytes / n.max(1)
    );
    let ctx = MapContext {
        extracted_at_ms: 1_790_000_000_000,
        job_id: "01a20a1e-3e82-779a-90d0-61fa9321fdfd".into(),
        floor_ms: None,
    };

    let value = time_best(&pages, rounds, |p| {
        serde_json::from_slice::<serde_json::Value>(p)
            .map(|v| v["leads"].as_array().map_or(0, |a| a.len()))
            .unwrap_or(0)
    });
    let split = time_best(&pages, rounds, |p| {
        serde_json::from_slice::<Borrowed>(p).map_or(0, |b| b.leads.len())
    });
    let owned = time_best(&pages, rounds, |p| {
        LeadsPage::parse(p, PAGE as u32).map_or(0, |page| page.records.len())
    });
    let splits: Vec<Vec<&str>> = pages
        .iter()
        .map(|p| {
            serde_json::from_slice::<Borrowed>(p).map_or_else(
                |_| Vec::new(),
                |b| b.leads.into_iter().map(RawValue::get).collect(),
            )
        })
        .collect();
    let mut i = 0;
    let map_only = time_best(&pages, rounds, |_| {
        let recs = &splits[i % splits.len()];
        i += 1;
        let m = map_leads(recs, &ctx);
        m.batch.num_rows()
    });
    let whole = time_best(&pages, rounds, |p| {
        serde_json::from_slice::<Borrowed>(p)
            .map(|b| {
                let texts: Vec<&str> = b.leads.iter().map(|r| r.get()).collect();
                map_leads(&texts, &ctx).batch.num_rows()
            })
            .unwrap_or(0)
    });

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let mbps = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    println!(
        "{:<34} {:>12} {:>9} {:>10}",
        "", "leads/s", "MB/s", "ns/lead"
    );
    for (name, d) in [
        ("serde_json Value (DOM)", value),
        ("split into Vec<&RawValue>", split),
        ("client split (text + places)", owned),
        ("map_leads (on split records)", map_only),
        ("split + map_leads", whole),
    ] {
        println!(
            "{name:<34} {:>12.0} {:>9.0} {:>10.0}",
            rate(d),
            mbps(d),
            d.as_nanos() as f64 / n.max(1) as f64
        );
    }
    println!(
        "ratio: split + map_leads takes {:.2}x the time of parsing into Value, {:.2}x of the split alone",
        whole.as_secs_f64() / value.as_secs_f64(),
        whole.as_secs_f64() / split.as_secs_f64()
    );
    Ok(())
}
