//! Real-HTTP tests of [`ApiClient`] against a tiny canned server on 127.0.0.1 (not paused:
//! paused time and sockets do not mix), plus base-URL checks and the key-secrecy checks.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

const KEY: &str = "ctgo_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_abc";

/// A server that answers the i-th connection with `responses[i]` (the last one forever),
/// closing each connection after the response, and records every request head.
struct Canned {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Canned {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Canned {
    async fn start(responses: Vec<Vec<u8>>) -> Canned {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            let mut i = 0usize;
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&head).into_owned());
                let resp = &responses[i.min(responses.len() - 1)];
                i += 1;
                if resp.is_empty() {
                    // Hang: never answer (for the timeout test).
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                let _ = sock.write_all(resp).await;
                let _ = sock.shutdown().await;
            }
        });
        Canned {
            addr,
            requests,
            task,
        }
    }

    fn base(&self) -> String {
        format!("http://{}/api/v2", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

fn http(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut s = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        s += &format!("{k}: {v}\r\n");
    }
    s += "\r\n";
    s += body;
    s.into_bytes()
}

/// Announces more body than it sends, then closes.
fn cut_short(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len() + 500,
        body
    )
    .into_bytes()
}

const PAGE: &str = r#"{"leads":[{"id":1,"discoveredAt":"2026-06-02T09:01:00Z","score":  1.50},{"id":2,"profile":{"xUserId":"18446744073709551615"}}],"total":2,"hasMore":false}"#;

fn tiny() -> RetryTuning {
    RetryTuning {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(4),
        ..RetryTuning::default()
    }
}

fn client(base: &str, max_retries: u32) -> ApiClient {
    let opts = ClientOptions {
        base_url: parse_base_url(base).expect("base url"),
        requests_per_minute: 0,
        max_retries,
        timeout: Duration::from_secs(5),
    };
    ApiClient::with_tuning(ApiKey::parse(KEY).expect("key"), opts, tiny()).expect("client")
}

fn leads_q() -> LeadsQuery {
    LeadsQuery {
        stream_id: None,
        since: None,
        limit: 100,
        offset: 0,
    }
}

#[tokio::test]
async fn a_leads_page_parses_with_exact_record_text() {
    let srv = Canned::start(vec![http(
        "200 OK",
        &[("X-RateLimit-Limit", "60"), ("X-RateLimit-Remaining", "59")],
        PAGE,
    )])
    .await;
    let c = client(&srv.base(), 2);
    let since = DateTime::parse_from_rfc3339("2026-06-02T09:01:00.789Z")
        .expect("ts")
        .with_timezone(&Utc);
    let page = c
        .leads(&LeadsQuery {
            stream_id: None,
            since: Some(since),
            limit: 50,
            offset: 100,
        })
        .await
        .expect("page");
    assert_eq!(page.records.len(), 2);
    assert_eq!(
        page.records.get(0).expect("record"),
        r#"{"id":1,"discoveredAt":"2026-06-02T09:01:00Z","score":  1.50}"#
    );
    assert!(
        page.records
            .get(1)
            .expect("record")
            .contains("18446744073709551615")
    );
    assert_eq!(page.total, Some(2));
    assert_eq!(page.has_more, Some(false));
    assert_eq!(page.limit_used, 50);
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 1);
    let head = reqs[0].to_ascii_lowercase();
    assert!(
        head.starts_with(
            "get /api/v2/leads?since=2026-06-02t09%3a01%3a00z&limit=50&offset=100 http/1.1"
        ),
        "{head}"
    );
    assert!(head.contains(&format!(
        "authorization: bearer {}",
        KEY.to_ascii_lowercase()
    )));
    assert!(head.contains(&format!(
        "user-agent: ctgo-export/{}",
        env!("CARGO_PKG_VERSION")
    )));
    assert_eq!(
        c.stats(),
        ClientStats {
            requests: 1,
            retries: 0,
            rate_limited: 0,
            rate_wait: std::time::Duration::ZERO,
        }
    );
}

#[tokio::test]
async fn per_stream_leads_and_runs_use_the_stream_paths() {
    let srv = Canned::start(vec![
        http("200 OK", &[], PAGE),
        http("200 OK", &[], r#"{"runs":[{"id":9}]}"#),
        http("200 OK", &[], r#"{"runs":[],"hasMore":true}"#),
    ])
    .await;
    let c = client(&format!("{}/", srv.base()), 0);
    c.leads(&LeadsQuery {
        stream_id: Some(42),
        ..leads_q()
    })
    .await
    .expect("leads");
    let runs = c
        .runs(&RunsQuery {
            stream_id: Some(42),
            limit: 500,
            offset: Some(30),
        })
        .await
        .expect("runs");
    assert_eq!(runs.records.len(), 1);
    assert_eq!(runs.records[0].get(), r#"{"id":9}"#);
    assert_eq!(runs.has_more, None);
    let all = c
        .runs(&RunsQuery {
            stream_id: None,
            limit: 30,
            offset: Some(60),
        })
        .await
        .expect("runs");
    assert_eq!(all.has_more, Some(true));
    let reqs = srv.requests();
    assert!(
        reqs[0].starts_with("GET /api/v2/streams/42/leads?limit=100&offset=0 "),
        "{}",
        reqs[0]
    );
    assert!(
        reqs[1].starts_with("GET /api/v2/streams/42/runs?limit=100 "),
        "{}",
        reqs[1]
    );
    assert!(
        reqs[2].starts_with("GET /api/v2/runs?limit=30&offset=60 "),
        "{}",
        reqs[2]
    );
}

#[tokio::test]
async fn streams_and_me_parse() {
    let srv = Canned::start(vec![
        http(
            "200 OK",
            &[],
            r#"{"streams":[{"id":42,"name":"A"},{"id":43}]}"#,
        ),
        http(
            "200 OK",
            &[],
            &format!(
                r#"{{"user":{{"name":"Ann"}},"apiKey":"{KEY}","keys":[{{"prefix":"{}"}}]}}"#,
                &KEY[..14]
            ),
        ),
    ])
    .await;
    let c = client(&srv.base(), 0);
    let s = c.streams().await.expect("streams");
    assert_eq!(s.len(), 2);
    assert_eq!(s[0]["id"], 42);
    let me = c.me().await.expect("me");
    assert_eq!(me["user"]["name"], "Ann");
    // An account endpoint that echoes the key: `check --json` prints this value.
    assert_eq!(me["apiKey"], "ctgo_****");
    assert_eq!(me["keys"][0]["prefix"], "ctgo_****");
}

#[tokio::test]
async fn status_401_is_unauthorized_without_retry() {
    let srv = Canned::start(vec![http(
        "401 Unauthorized",
        &[],
        r#"{"error":"Invalid or revoked API key."}"#,
    )])
    .await;
    let c = client(&srv.base(), 3);
    let err = c.me().await.expect_err("refused");
    assert!(matches!(err, ApiError::Unauthorized { .. }), "{err:?}");
    assert!(err.is_refusal());
    assert_eq!(err.exit_code(), 3);
    assert!(
        err.to_string()
            .contains("check CTGO_API_KEY or --api-key-file")
    );
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test]
async fn status_410_is_gone_with_the_v2_hint() {
    let srv = Canned::start(vec![http("410 Gone", &[], r#"{"error":"gone"}"#)]).await;
    let c = client(&format!("http://{}/api/v1", srv.addr), 3);
    let err = c.leads(&leads_q()).await.expect_err("gone");
    assert!(matches!(err, ApiError::Gone { .. }), "{err:?}");
    assert!(err.is_refusal());
    assert!(
        err.to_string().contains(
            "API v1 was removed; use https://www.catchthegoodones.com/api/v2 (--base-url)"
        ),
        "{err}"
    );
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test]
async fn status_403_shows_the_code() {
    let srv = Canned::start(vec![http(
        "403 Forbidden",
        &[],
        r#"{"error":"subscription_required","message":"Upgrade to use the API."}"#,
    )])
    .await;
    let err = client(&srv.base(), 3)
        .leads(&leads_q())
        .await
        .expect_err("forbidden");
    match &err {
        ApiError::Forbidden { code, message, .. } => {
            assert_eq!(code.as_deref(), Some("subscription_required"));
            assert_eq!(message, "Upgrade to use the API.");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("`subscription_required`"));
}

#[tokio::test]
async fn a_body_cut_short_is_retried() {
    let srv = Canned::start(vec![cut_short(&PAGE[..40]), http("200 OK", &[], PAGE)]).await;
    let c = client(&srv.base(), 2);
    let page = c.leads(&leads_q()).await.expect("page after retry");
    assert_eq!(page.records.len(), 2);
    assert_eq!(c.stats().requests, 2);
    assert_eq!(c.stats().retries, 1);
}

#[tokio::test]
async fn a_body_always_cut_short_ends_in_retries_exhausted() {
    let srv = Canned::start(vec![cut_short(&PAGE[..40])]).await;
    let c = client(&srv.base(), 2);
    let err = c.leads(&leads_q()).await.expect_err("gives up");
    match &err {
        ApiError::RetriesExhausted { attempts, last, .. } => {
            assert_eq!(*attempts, 3);
            assert!(last.contains("cut short"), "{last}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(srv.requests().len(), 3);
}

#[tokio::test]
async fn html_instead_of_json_is_retried_then_malformed() {
    let html =
        "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
    let mut resp = http("200 OK", &[], html);
    // Same bytes, but say what it is.
    let text = String::from_utf8_lossy(&resp).replace("application/json", "text/html");
    resp = text.into_bytes();
    let srv = Canned::start(vec![resp]).await;
    let c = client(&srv.base(), 2);
    let err = c.leads(&leads_q()).await.expect_err("malformed");
    assert!(
        matches!(err, ApiError::Malformed { attempts: 3, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("the API answered something that is not a leads page"),
        "{msg}"
    );
    assert!(msg.contains("<!DOCTYPE html>"), "{msg}");
    assert_eq!(srv.requests().len(), 3);
    assert_eq!(c.stats().retries, 2);
}

#[tokio::test]
async fn a_page_without_leads_is_nonsense_but_can_clear() {
    let srv = Canned::start(vec![
        http("200 OK", &[], r#"{"items":[]}"#),
        http("200 OK", &[], r#"{"leads":{"id":1}}"#),
        http("200 OK", &[], PAGE),
    ])
    .await;
    let c = client(&srv.base(), 3);
    assert_eq!(c.leads(&leads_q()).await.expect("page").records.len(), 2);
    assert_eq!(c.stats().retries, 2);
}

#[tokio::test]
async fn a_503_then_success_is_retried() {
    let srv = Canned::start(vec![
        http("503 Service Unavailable", &[], r#"{"error":"unavailable"}"#),
        http("502 Bad Gateway", &[], ""),
        http("200 OK", &[], PAGE),
    ])
    .await;
    let c = client(&srv.base(), 3);
    assert_eq!(c.leads(&leads_q()).await.expect("page").records.len(), 2);
    assert_eq!(c.stats().retries, 2);
}

#[tokio::test]
async fn a_429_waits_and_credits_exhausted_does_not() {
    let srv = Canned::start(vec![
        http(
            "429 Too Many Requests",
            &[("Retry-After", "0"), ("X-RateLimit-Remaining", "0")],
            r#"{"error":"rate_limited"}"#,
        ),
        http("200 OK", &[], PAGE),
        http(
            "429 Too Many Requests",
            &[("Retry-After", "0")],
            r#"{"error":"credits_exhausted","message":"No credits left."}"#,
        ),
    ])
    .await;
    let c = client(&srv.base(), 3);
    let t0 = std::time::Instant::now();
    c.leads(&leads_q()).await.expect("page after 429");
    // Retry-After (0 s) governs, not `Remaining: 0` (which would mean a minute).
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(c.stats().rate_limited, 1);
    assert_eq!(c.stats().retries, 0);
    let err = c.leads(&leads_q()).await.expect_err("credits");
    assert!(matches!(err, ApiError::CreditsExhausted { .. }), "{err:?}");
    assert!(!err.is_refusal());
    assert_eq!(srv.requests().len(), 3);
}

#[tokio::test]
async fn a_400_for_a_large_limit_falls_back_to_100_once_and_remembers() {
    let srv = Canned::start(vec![
        http(
            "400 Bad Request",
            &[],
            r#"{"error":"invalid_parameter","message":"limit must be <= 100"}"#,
        ),
        http("200 OK", &[], PAGE),
    ])
    .await;
    let c = client(&srv.base(), 3);
    let q = LeadsQuery {
        limit: 500,
        ..leads_q()
    };
    let page = c.leads(&q).await.expect("fallback page");
    assert_eq!(page.limit_used, 100);
    let page = c.leads(&q).await.expect("second page");
    assert_eq!(page.limit_used, 100);
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[0].contains("limit=500"), "{}", reqs[0]);
    assert!(reqs[1].contains("limit=100"), "{}", reqs[1]);
    assert!(reqs[2].contains("limit=100"), "{}", reqs[2]);
}

#[tokio::test]
async fn a_400_at_a_small_limit_is_reported() {
    let srv = Canned::start(vec![http(
        "400 Bad Request",
        &[],
        r#"{"error":"invalid_parameter","message":"since is not a date"}"#,
    )])
    .await;
    let err = client(&srv.base(), 3)
        .leads(&leads_q())
        .await
        .expect_err("bad request");
    assert!(matches!(err, ApiError::BadRequest { .. }));
    assert!(err.to_string().contains("since is not a date"), "{err}");
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let srv = Canned::start(vec![http(
        "301 Moved Permanently",
        &[("Location", "https://catchthegoodones.com/api/v2/leads")],
        "",
    )])
    .await;
    let err = client(&srv.base(), 3)
        .leads(&leads_q())
        .await
        .expect_err("redirect");
    assert!(
        matches!(err, ApiError::UnexpectedStatus { status: 301, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("--base-url"), "{err}");
}

#[tokio::test]
async fn connection_refused_ends_in_retries_exhausted() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let c = client(&format!("http://{addr}/api/v2"), 1);
    let err = c.me().await.expect_err("refused");
    match &err {
        ApiError::RetriesExhausted { attempts, last, .. } => {
            assert_eq!(*attempts, 2);
            assert!(last.contains("could not connect"), "{last}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_hanging_server_times_out() {
    let srv = Canned::start(vec![Vec::new()]).await;
    let opts = ClientOptions {
        base_url: parse_base_url(&srv.base()).expect("url"),
        requests_per_minute: 0,
        max_retries: 0,
        timeout: Duration::from_millis(300),
    };
    let c = ApiClient::with_tuning(ApiKey::parse(KEY).expect("key"), opts, tiny()).expect("client");
    let err = c.me().await.expect_err("timeout");
    match &err {
        ApiError::RetriesExhausted {
            attempts: 1, last, ..
        } => {
            assert!(last.contains("timed out"), "{last}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// The client against the project's simulator: every error answer the simulator plays (one
/// per status of the contract) is retried or stops at once, as the contract says.
#[tokio::test]
async fn every_error_answer_the_simulator_plays_is_classified_as_the_contract_says() {
    use crate::simulator::{FaultKind, SimConfig, Simulator};
    let sim = Simulator::start(SimConfig::new(30, 5)).expect("simulator");
    let c = client(&sim.base_url(), 3);
    for kind in FaultKind::ALL {
        // 429 waits a whole second of Retry-After: covered by the tests above.
        let Some((status, code, _)) = kind.error_answer().filter(|a| a.0 != 429) else {
            continue;
        };
        let before = c.stats();
        sim.inject(kind, 1);
        let result = c.leads(&leads_q()).await;
        let sent = c.stats().requests - before.requests;
        if kind.is_permanent() {
            let Err(err) = result else {
                panic!("{kind:?} answered a page");
            };
            assert_eq!(err.status(), Some(status), "{kind:?}: {err:?}");
            assert_eq!(sent, 1, "{kind:?} is not retried");
            assert_eq!(err.is_refusal(), status == 403, "{kind:?}");
            let text = err.to_string();
            assert!(
                text.contains(&status.to_string()) && text.contains(code),
                "{kind:?}: the message names the status and the code: {text}"
            );
        } else {
            let page = result.unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(page.records.len(), 30, "{kind:?}");
            assert_eq!(sent, 2, "{kind:?} is retried once, then answered");
        }
    }
    // A slow answer past the timeout is a transient fault too.
    let opts = ClientOptions {
        base_url: parse_base_url(&sim.base_url()).expect("url"),
        requests_per_minute: 0,
        max_retries: 2,
        // Far above a normal answer, even on a loaded machine; far below the slow one.
        timeout: Duration::from_secs(2),
    };
    let c = ApiClient::with_tuning(ApiKey::parse(KEY).expect("key"), opts, tiny()).expect("client");
    sim.update(|s| s.slow_ms = 120_000);
    sim.inject(FaultKind::Slow, 1);
    assert_eq!(c.leads(&leads_q()).await.expect("page").records.len(), 30);
    assert_eq!((c.stats().requests, c.stats().retries), (2, 1));
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn the_key_appears_in_no_debug_error_or_log_line() {
    // Forward `log` records (reqwest, rustls) to tracing, so they are captured too. Whoever
    // installs the global subscriber first wins; ours is a TRACE sink.
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(std::io::sink)
        .try_init();
    let captured = Captured::default();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(sub);

    let echo = format!(r#"{{"error":"bad_request","message":"key {KEY} is not allowed here"}}"#);
    let srv = Canned::start(vec![
        http(
            "503 Service Unavailable",
            &[],
            &format!(r#"{{"message":"{KEY}"}}"#),
        ),
        http("200 OK", &[], &format!("<html>{KEY}</html>")),
        http("429 Too Many Requests", &[("Retry-After", "0")], "{}"),
        http("200 OK", &[], PAGE),
        http("401 Unauthorized", &[], &format!(r#"{{"error":"{KEY}"}}"#)),
        http("400 Bad Request", &[], &echo),
        http("403 Forbidden", &[], &format!(r#"{{"error":"{}"}}"#, KEY)),
        // The key across the end of what an error quotes: redacted before the cut.
        http(
            "400 Bad Request",
            &[],
            &format!(
                r#"{{"error":"bad_request","message":"{}{KEY}"}}"#,
                "x".repeat(180)
            ),
        ),
        // Keys before the cut shorten the text when redacted: one from past the cut slides in.
        http(
            "400 Bad Request",
            &[],
            &format!("not json: {KEY} {KEY} {}{KEY}", "z".repeat(150)),
        ),
        // A key behind more (non-ASCII) blanks than the redacted window holds, cut by its end.
        http(
            "400 Bad Request",
            &[("Content-Type", "text/plain; charset=utf-8")],
            &format!("{}{KEY}", "\u{3000}".repeat(21_840)),
        ),
        // A key behind more blank lines than the redacted window holds, cut by its end.
        http(
            "400 Bad Request",
            &[("Content-Type", "text/html")],
            &format!("{}{KEY}", "\n".repeat(65_492)),
        ),
        http(
            "301 Moved Permanently",
            &[("Location", &format!("/{}{KEY}", "y".repeat(185)))],
            "",
        ),
        http("200 OK", &[], &format!("not json {KEY}")),
    ])
    .await;
    let c = client(&srv.base(), 3);
    let mut texts = vec![format!("{c:?}")];
    c.leads(&leads_q()).await.expect("page after faults");
    for _ in 0..9 {
        let err = c.leads(&leads_q()).await.expect_err("error");
        texts.push(err.to_string());
        texts.push(format!("{err:?}"));
        texts.push(format!("{:#}", anyhow::Error::from(err)));
    }
    drop(_guard);
    let logs = String::from_utf8_lossy(&captured.0.lock().expect("lock")).into_owned();
    assert!(
        logs.contains("API request."),
        "no request logs captured: {logs}"
    );
    assert!(logs.contains("Transient API failure; retrying."), "{logs}");
    texts.push(logs);
    for t in &texts {
        assert!(!t.contains(KEY), "key leaked: {t}");
        assert!(!t.contains(&KEY[5..]), "key leaked: {t}");
        assert!(!t.contains(&KEY[5..15]), "part of the key leaked: {t}");
    }
    assert!(texts[0].contains("ctgo_****"), "{}", texts[0]);
    assert!(
        texts
            .iter()
            .any(|t| t.contains("key ctgo_**** is not allowed here")),
        "the echoed key is redacted, not dropped"
    );
}

#[test]
fn a_page_with_a_bom_bytes_not_utf8_or_raw_control_characters_is_read_repaired() {
    let page = |body: &[u8]| LeadsPage::parse(body, 100).expect("read");
    let p = page(b"\xEF\xBB\xBF{\"leads\":[{\"id\":1}],\"total\":1,\"hasMore\":false}");
    assert_eq!(p.records.first(), Some(r#"{"id":1}"#));
    let p = page(b"{\"leads\":[{\"id\":1,\"bio\":\"a\xFFb\"}],\"total\":\"1\",\"hasMore\":0}");
    assert_eq!(p.records.first(), Some("{\"id\":1,\"bio\":\"a\u{FFFD}b\"}"));
    assert_eq!((p.total, p.has_more), (Some(1), Some(false)));
    let p = page(b"{\"leads\":[{\"id\":1,\"bio\":\"a\tb\x00c\\\"\n\"}],\"hasMore\":\"true\"}");
    assert_eq!(
        p.records.first(),
        Some(r#"{"id":1,"bio":"a\tb\u0000c\"\n"}"#)
    );
    assert_eq!((p.total, p.has_more), (None, Some(true)));
    // `hasMore` and `total` the API spells oddly, or not at all.
    let p = page(br#"{"leads":[],"total":3.0,"hasMore":"maybe"}"#);
    assert_eq!((p.total, p.has_more), (Some(3), None));
    // Still refused: not JSON, and a control character outside any string.
    for bad in [&b"<html>"[..], b"{\"leads\":[]\x00}"] {
        assert!(LeadsPage::parse(bad, 100).is_err());
    }
}

#[test]
fn a_quoted_body_shows_json_escapes_decoded_so_an_escaped_key_is_redacted() {
    let c = client("http://127.0.0.1:9/api/v2", 0);
    let escaped = format!("{}\\u{:04x}{}", &KEY[..7], KEY.as_bytes()[7], &KEY[8..]);
    let body = format!(r#"{{"message":"{escaped}","leads":5,"path":"a\/b"}}"#);
    let quoted = c.snippet_text(body.as_bytes());
    assert!(!quoted.contains(&KEY[8..20]), "{quoted}");
    assert!(
        quoted.contains("ctgo_****") && quoted.contains("a/b"),
        "{quoted}"
    );
}

#[test]
fn base_urls() {
    let ok = |s: &str| parse_base_url(s).map(|u| u.to_string());
    assert_eq!(ok(DEFAULT_BASE_URL).as_deref(), Ok(DEFAULT_BASE_URL));
    assert_eq!(
        ok(&format!("{DEFAULT_BASE_URL}/")).as_deref(),
        Ok(DEFAULT_BASE_URL)
    );
    assert_eq!(
        ok(&format!(" {DEFAULT_BASE_URL}//\n")).as_deref(),
        Ok(DEFAULT_BASE_URL)
    );
    assert!(ok("http://127.0.0.1:8080/api/v2").is_ok());
    assert!(ok("http://127.1.2.3/api/v2").is_ok());
    assert!(ok("http://[::1]:9/api/v2").is_ok());
    assert!(ok("http://localhost:9/api/v2/").is_ok());
    assert!(ok("http://LOCALHOST/api/v2").is_ok());
    assert!(ok("https://www.catchthegoodones.com/api/v1").is_ok());
    for bad in [
        "http://www.catchthegoodones.com/api/v2",
        "http://10.0.0.1/api/v2",
        "http://localhost.evil.com/api/v2",
        "http://[::2]/api/v2",
    ] {
        let e = parse_base_url(bad).expect_err(bad);
        assert!(e.contains("plain http is refused"), "{bad}: {e}");
    }
    assert!(parse_base_url("ftp://x/api").is_err());
    assert!(parse_base_url("www.catchthegoodones.com/api/v2").is_err());
    assert!(parse_base_url("").is_err());
    assert!(parse_base_url("https://u:p@host/api/v2").is_err());
    assert!(parse_base_url("https://host/api/v2?x=1").is_err());
    assert!(parse_base_url("mailto:a@b").is_err());
}

#[test]
fn retry_after_header_forms() {
    let h = |v: &str| {
        let mut m = HeaderMap::new();
        m.insert(header::RETRY_AFTER, HeaderValue::from_str(v).expect("hv"));
        retry_after(&m)
    };
    assert_eq!(h("7"), Duration::from_secs(7));
    assert_eq!(h(" 0 "), Duration::ZERO);
    assert_eq!(h("Wed, 21 Oct 2015 07:28:00 GMT"), Duration::ZERO);
    assert_eq!(h("soon"), retry::DEFAULT_RETRY_AFTER);
    assert_eq!(h("-3"), retry::DEFAULT_RETRY_AFTER);
    // Seconds past a u64, or in another number form: long waits, refused as such.
    assert_eq!(h("2.5"), Duration::from_millis(2_500));
    assert_eq!(h("1e9"), Duration::from_secs(1_000_000_000));
    assert!(h("999999999999999999999") > retry::DEFAULT_MAX_RETRY_AFTER);
    assert_eq!(retry_after(&HeaderMap::new()), retry::DEFAULT_RETRY_AFTER);
}

#[test]
fn mistakes_in_the_base_url_get_advice() {
    let err = parse_base_url("127.0.0.1:8787/api/v2").unwrap_err();
    assert!(err.contains("https://127.0.0.1:8787/api/v2"), "{err}");
    let not_found = |endpoint: &str| {
        ApiError::NotFound {
            endpoint: endpoint.into(),
            code: None,
            message: String::new(),
        }
        .to_string()
    };
    assert!(not_found("/leads").contains("it should end in /api/v2"));
    assert!(not_found("/streams/42/leads").contains("check the stream id"));
    let once = ApiError::RetriesExhausted {
        endpoint: "/leads".into(),
        attempts: 1,
        last: "HTTP 503".into(),
    }
    .to_string();
    assert!(
        once.contains("failed once") && once.contains("--max-retries 0"),
        "{once}"
    );
}

#[tokio::test]
async fn a_key_shaped_string_the_api_quotes_is_redacted_too() {
    // Not this client's key: another one the API echoes (a mix-up on its side).
    let other = "ctgo_Zz9yXw8vUt7sRq6pOn5mLk4jIh3gFe2dCb1aZz9y";
    let srv = Canned::start(vec![http(
        "400 Bad Request",
        &[],
        &format!(r#"{{"error":"bad_request","message":"key {other} is not allowed here"}}"#),
    )])
    .await;
    let err = client(&srv.base(), 0)
        .leads(&leads_q())
        .await
        .expect_err("400");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(&other[5..]), "{text}");
        assert!(text.contains("ctgo_****"), "{text}");
    }
}

#[tokio::test]
async fn the_key_echoed_inside_a_record_is_replaced_before_anything_is_exported() {
    // An API that quotes the key in a lead (a bio, an enrichment field): the guarantee is that
    // it reaches no file, so it is replaced in the page before the page is read.
    // Whole, without its prefix, and with the prefix's `_` escaped.
    let secret = &KEY[5..];
    let body = format!(
        r#"{{"leads":[{{"id":1,"discoveredAt":"2026-06-02T09:00:00Z","profile":{{"bio":"a {KEY} b {KEY}"}},"x":"{secret}","y":"ctgo\u005f{secret}"}},{{"id":2,"discoveredAt":"2026-06-02T09:00:00Z"}}],"total":2,"hasMore":false}}"#
    );
    let srv = Canned::start(vec![http("200 OK", &[], &body)]).await;
    let page = client(&srv.base(), 0)
        .leads(&leads_q())
        .await
        .expect("page");
    assert_eq!(page.records.len(), 2);
    let first = page.records.get(0).expect("record");
    assert!(!first.contains(&KEY[5..]), "{first}");
    assert!(
        first.contains(r#""bio":"a ctgo_**** b ctgo_****"},"x":"****","y":"ctgo\u005f****""#),
        "{first}"
    );
    assert_eq!(
        page.records.get(1),
        Some(r#"{"id":2,"discoveredAt":"2026-06-02T09:00:00Z"}"#)
    );
}

#[tokio::test]
async fn control_characters_in_an_api_message_reach_no_terminal_or_log() {
    // Escape sequences could clear the screen or colour it; a CR/LF could forge a line.
    let srv = Canned::start(vec![http(
        "404 Not Found",
        &[],
        r#"{"error":"not_found","message":"\u001b[2J\u001b[31mRED\r\nJob COMPLETED\u0007"}"#,
    )])
    .await;
    let err = client(&srv.base(), 0)
        .leads(&leads_q())
        .await
        .expect_err("404");
    let text = err.to_string();
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(text.contains("[31mRED  Job COMPLETED"), "{text}");
}

#[tokio::test]
async fn an_envelope_of_the_wrong_shape_or_encoding_is_named_for_what_it_is() {
    // A top-level array, and a body encoded although no encoding was asked for.
    let srv = Canned::start(vec![
        http("200 OK", &[], r#"[{"id":1}]"#),
        http(
            "200 OK",
            &[("Content-Encoding", "gzip")],
            "\u{1f}\u{8b}\u{8}garbage",
        ),
    ])
    .await;
    let c = client(&srv.base(), 0);
    let err = c.leads(&leads_q()).await.expect_err("an array").to_string();
    assert!(
        err.contains(r#"expected {"leads": [...], "total": n, "hasMore": b}, got a JSON array"#),
        "{err}"
    );
    let err = c.leads(&leads_q()).await.expect_err("gzip").to_string();
    assert!(
        err.contains("the body came with `Content-Encoding: gzip`, which this client neither"),
        "{err}"
    );
}
