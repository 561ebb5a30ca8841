//! The test-only crash hooks: abort the process, or interrupt it, at a named commit step.
//!
//! Exactly-once is proven by killing the exporter at exact points of the commit protocol, not
//! by luck in timing. Each step of a destination's commit calls [`point`] with a stable name;
//! when the environment variable `CTGO_TEST_CRASH_AT` is `NAME` or `NAME:N`, the N-th time
//! (default 1st) that point is reached the process kills itself with SIGKILL — no destructor,
//! no flush, no unwinding, as a `kill -9` or a power cut would. `CTGO_TEST_INTERRUPT_AT`, in
//! the same form, sends the process a SIGINT there instead (a user's Ctrl-C at that step; the
//! signal is handled as any other) and, so that the step is exact whichever thread the
//! handler runs on, asks the job to stop right there as the handler would
//! ([`on_interrupt`]). Unset, a point costs one relaxed atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms the kill hook.
pub const CRASH_ENV: &str = "CTGO_TEST_CRASH_AT";
/// The environment variable that arms the interrupt hook.
pub const INTERRUPT_ENV: &str = "CTGO_TEST_INTERRUPT_AT";

/// What a hook does at its step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Kill,
    Interrupt,
}

struct Armed {
    name: String,
    nth: u64,
    hits: AtomicU64,
    action: Action,
}

impl Armed {
    fn from_env(var: &str, action: Action) -> Option<Armed> {
        let spec = std::env::var(var).ok()?;
        let (name, nth) = match spec.rsplit_once(':') {
            Some((name, n)) => (name.to_string(), n.parse().ok()?),
            None => (spec, 1),
        };
        Some(Armed {
            name,
            nth,
            hits: AtomicU64::new(0),
            action,
        })
    }
}

fn armed() -> &'static [Armed] {
    static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();
    ARMED.get_or_init(|| {
        [
            (CRASH_ENV, Action::Kill),
            (INTERRUPT_ENV, Action::Interrupt),
        ]
        .into_iter()
        .filter_map(|(var, action)| Armed::from_env(var, action))
        .collect()
    })
}

/// A named step of a commit protocol. Kills (or interrupts) the process here if a hook is
/// armed for it.
pub fn point(name: &str) {
    for armed in armed() {
        if armed.name != name {
            continue;
        }
        let hit = armed.hits.fetch_add(1, Ordering::Relaxed) + 1;
        if hit != armed.nth {
            continue;
        }
        if armed.action == Action::Kill {
            eprintln!("ctgo-export: test crash hook: killed at {name} (hit {hit})");
            kill_self();
        }
        eprintln!("ctgo-export: test interrupt hook: SIGINT at {name} (hit {hit})");
        // SAFETY: kill(2) on our own pid; no memory is involved.
        unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
        if let Some(stop) = ON_INTERRUPT.get() {
            stop();
        }
    }
}

static ON_INTERRUPT: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();

/// What a SIGINT asks of the job (the `sync` command registers its cancel), for the interrupt
/// hook to do at the exact step.
pub fn on_interrupt(stop: impl Fn() + Send + Sync + 'static) {
    let _ = ON_INTERRUPT.set(Box::new(stop));
}

fn kill_self() -> ! {
    // SIGKILL ourselves: the closest thing to `kill -9` from outside. `abort()` is the fallback
    // (it runs no destructors either).
    // SAFETY: kill(2) on our own pid; no memory is involved.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    std::process::abort()
}
