//! The test-only crash hook: abort the process at a named commit step.
//!
//! Exactly-once is proven by killing the exporter at exact points of the commit protocol, not
//! by luck in timing. Each step of a destination's commit calls [`point`] with a stable name;
//! when the environment variable `CTGO_TEST_CRASH_AT` is `NAME` or `NAME:N`, the N-th time
//! (default 1st) that point is reached the process kills itself with SIGKILL — no destructor,
//! no flush, no unwinding, as a `kill -9` or a power cut would. Unset, a point costs one relaxed
//! atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms the hook.
pub const CRASH_ENV: &str = "CTGO_TEST_CRASH_AT";

struct Armed {
    name: String,
    nth: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(CRASH_ENV).ok()?;
            let (name, nth) = match spec.rsplit_once(':') {
                Some((name, n)) => (name.to_string(), n.parse().ok()?),
                None => (spec, 1),
            };
            Some(Armed {
                name,
                nth,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// A named step of a commit protocol. Kills the process here if the hook is armed for it.
pub fn point(name: &str) {
    let Some(armed) = armed() else { return };
    if armed.name != name {
        return;
    }
    let hit = armed.hits.fetch_add(1, Ordering::Relaxed) + 1;
    if hit == armed.nth {
        eprintln!("ctgo-export: test crash hook: killed at {name} (hit {hit})");
        kill_self();
    }
}

fn kill_self() -> ! {
    // SIGKILL ourselves: the closest thing to `kill -9` from outside. `abort()` is the fallback
    // (it runs no destructors either).
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status();
    std::process::abort()
}
