//! Errors of the API client, in the user's terms.
//!
//! Every variant is final: the client already retried what can be retried (transient faults,
//! 429 rate limits), so what reaches the caller either needs a person (a refused key, a
//! missing subscription, a wrong base URL) or says how often a transient fault repeated.
//! Messages say what to do next. Text that came from the API is cut to a few hundred bytes and
//! has the key redacted, so no variant can carry the key into a log or a terminal.

use super::DEFAULT_BASE_URL;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the API refused the parameters.
    #[error("the API refused the request parameters of {endpoint} (400 Bad Request{}): check --page-size and --since{}", code_suffix(.code), message_suffix(.message))]
    BadRequest {
        endpoint: String,
        code: Option<String>,
        message: String,
    },
    /// 401: the key is missing, malformed or revoked.
    #[error(
        "the API key was refused (missing, malformed or revoked): check CTGO_API_KEY or --api-key-file (401 Unauthorized from {endpoint})"
    )]
    Unauthorized { endpoint: String },
    /// 403: subscription required or budget exhausted.
    #[error("the API refused access to {endpoint} (403 Forbidden{}): {}{}", code_suffix(.code), forbidden_hint(.code), message_suffix(.message))]
    Forbidden {
        endpoint: String,
        code: Option<String>,
        message: String,
    },
    /// 404.
    #[error("the API has no {endpoint} (404 Not Found{}): {}{}", code_suffix(.code), not_found_hint(.endpoint), message_suffix(.message))]
    NotFound {
        endpoint: String,
        code: Option<String>,
        message: String,
    },
    /// 409: the contract lists it without saying when it happens or whether it clears; for a
    /// read it is taken as permanent (retrying at once is unlikely to help), and the next run
    /// resumes.
    #[error("the API reported a conflict at {endpoint} (409 Conflict{}): run the export again later; it resumes where this one stopped{}", code_suffix(.code), message_suffix(.message))]
    Conflict {
        endpoint: String,
        code: Option<String>,
        message: String,
    },
    /// 410: anything under `/api/v1/`.
    #[error("API v1 was removed; use {DEFAULT_BASE_URL} (--base-url) (410 Gone from {endpoint})")]
    Gone { endpoint: String },
    /// 422.
    #[error("the API could not process {endpoint} (422 Unprocessable Entity{}): check the stream ids given (--stream) and, on a first run, --since; if they are right, the API's message says what it refused{}", code_suffix(.code), message_suffix(.message))]
    Unprocessable {
        endpoint: String,
        code: Option<String>,
        message: String,
    },
    /// 429 with code `credits_exhausted`: waiting does not help.
    #[error("the account's credits are exhausted (429 credits_exhausted from {endpoint}): waiting will not help; add credits, then run again{}", message_suffix(.message))]
    CreditsExhausted { endpoint: String, message: String },
    /// Another status that is neither success nor worth retrying.
    #[error("the API answered {endpoint} with HTTP {status}{}{}", code_suffix(.code), message_suffix(.message))]
    UnexpectedStatus {
        endpoint: String,
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// 429 (rate limited) again and again, or a `Retry-After` longer than we are willing to wait.
    #[error("{}", rate_limited_text(.endpoint, *.waits, *.last_wait_secs, *.max_wait_secs))]
    RateLimitedTooLong {
        endpoint: String,
        waits: u32,
        last_wait_secs: u64,
        /// The longest `Retry-After` a job waits out.
        max_wait_secs: u64,
    },
    /// A transient fault (5xx, timeout, dropped connection, cut body) that did not clear.
    #[error(
        "{endpoint} failed {} (transient faults{}); last: {last}",
        if *.attempts == 1 { "once".to_string() } else { format!("{} times in a row", .attempts) },
        if *.attempts == 1 { ", not retried: --max-retries 0" } else { ", retried with backoff" }
    )]
    RetriesExhausted {
        endpoint: String,
        attempts: u32,
        last: String,
    },
    /// The API kept answering with a body that is not the expected envelope.
    #[error(
        "the API answered something that is not a {what} at {endpoint} ({attempts} attempts): {detail}"
    )]
    Malformed {
        endpoint: String,
        /// What we expected, e.g. "leads page".
        what: &'static str,
        attempts: u32,
        detail: String,
    },
    /// The HTTP client could not be built (TLS backend, options).
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

fn code_suffix(code: &Option<String>) -> String {
    match code {
        Some(c) => format!(", code `{c}`"),
        None => String::new(),
    }
}

/// What a 403 calls for: the API's codes name the account's plan or budget; without a code
/// the answer may not be the API's at all.
fn forbidden_hint(code: &Option<String>) -> &'static str {
    match code {
        Some(_) => {
            "a subscription is required or the budget is exhausted; check the account's plan"
        }
        None => {
            "the answer has no error code of the API's: check the account's plan, and whether a \
             proxy or firewall between this machine and the API refuses the request"
        }
    }
}

fn rate_limited_text(endpoint: &str, waits: u32, last_wait_secs: u64, max: u64) -> String {
    if last_wait_secs > max {
        format!(
            "the API asked to wait {last_wait_secs} s before the next request to {endpoint} (429, `Retry-After`), longer than the {max} s a job waits: run it again after that"
        )
    } else {
        format!(
            "the API kept answering 429 (rate limited) for {endpoint}: {waits} waits in a row, last `Retry-After` {last_wait_secs} s; another client may share the key, or lower --requests-per-minute; try again later"
        )
    }
}

fn message_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": the API says \"{message}\"")
    }
}

impl ApiError {
    /// 401, 403, 410: the API refused us; the process exits 3.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ApiError::Unauthorized { .. } | ApiError::Forbidden { .. } | ApiError::Gone { .. }
        )
    }

    /// The process exit status this error calls for: 3 for a refusal, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.is_refusal() { 3 } else { 1 }
    }

    /// The HTTP status behind this error, when one status explains it.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::BadRequest { .. } => Some(400),
            ApiError::Unauthorized { .. } => Some(401),
            ApiError::Forbidden { .. } => Some(403),
            ApiError::NotFound { .. } => Some(404),
            ApiError::Conflict { .. } => Some(409),
            ApiError::Gone { .. } => Some(410),
            ApiError::Unprocessable { .. } => Some(422),
            ApiError::CreditsExhausted { .. } | ApiError::RateLimitedTooLong { .. } => Some(429),
            ApiError::UnexpectedStatus { status, .. } => Some(*status),
            ApiError::RetriesExhausted { .. }
            | ApiError::Malformed { .. }
            | ApiError::Client(_) => None,
        }
    }
}

/// What to check after a 404: the stream id for a per-stream endpoint, the base URL for the
/// others (a base URL without `/api/v2` answers 404 everywhere).
fn not_found_hint(endpoint: &str) -> &'static str {
    if endpoint.starts_with("/streams/") {
        "check the stream id (--stream): the streams your key reads are in the product, or at GET /streams of the API"
    } else {
        "check --base-url: it should end in /api/v2"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_exit_3() {
        let e = ApiError::Unauthorized {
            endpoint: "/me".into(),
        };
        assert!(e.is_refusal());
        assert_eq!(e.exit_code(), 3);
        let e = ApiError::Gone {
            endpoint: "/leads".into(),
        };
        assert!(e.is_refusal());
        assert!(
            e.to_string()
                .contains("use https://www.catchthegoodones.com/api/v2 (--base-url)")
        );
        let e = ApiError::Forbidden {
            endpoint: "/leads".into(),
            code: Some("subscription_required".into()),
            message: String::new(),
        };
        assert!(e.is_refusal());
        assert!(e.to_string().contains("`subscription_required`"));
        let e = ApiError::CreditsExhausted {
            endpoint: "/leads".into(),
            message: String::new(),
        };
        assert!(!e.is_refusal());
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = ApiError::Unauthorized {
            endpoint: "/me".into(),
        };
        assert!(e.to_string().starts_with(
            "the API key was refused (missing, malformed or revoked): check CTGO_API_KEY or --api-key-file"
        ));
        let e = ApiError::BadRequest {
            endpoint: "/leads".into(),
            code: Some("invalid_parameter".into()),
            message: "limit must be at most 100".into(),
        };
        assert_eq!(
            e.to_string(),
            "the API refused the request parameters of /leads (400 Bad Request, code `invalid_parameter`): check --page-size and --since: the API says \"limit must be at most 100\""
        );
    }
}
