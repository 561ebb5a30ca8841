//! Lines for the terminal that never end the process: a reader that went away (`| head`, a
//! dead `| logger`) or a full disk behind a redirect must not turn a finished job into a
//! panic (exit 101). `println!` and `eprintln!` panic on a failed write; these do not.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// A line could not be written to stdout for another reason than a reader that went away.
static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);

/// Print a line on stdout (`--json` records, listings). A reader that went away is not an
/// error of ours; another failure (a full disk) is said on stderr, once, and remembered
/// ([`stdout_failed`]).
pub fn out_line(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
        && !STDOUT_FAILED.swap(true, Ordering::Relaxed)
    {
        err_line(&format!(
            "ctgo-export: cannot write to standard output: {e}"
        ));
    }
}

/// Whether a line could not be written to stdout (a reader that went away aside): a command
/// whose output is its whole work (`jobs`, `schema`, `check`) then failed.
pub fn stdout_failed() -> bool {
    STDOUT_FAILED.load(Ordering::Relaxed)
}

/// Print a line on stderr, around the progress bar; a failed write is dropped (there is no
/// one left to tell).
pub fn err_line(line: &str) {
    let _ = crate::extract::write_around_progress(format!("{line}\n").as_bytes());
}

/// `println!` that cannot panic ([`out_line`]).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::term::out_line(&format!($($arg)*)) };
}

/// `eprintln!` that cannot panic ([`err_line`]).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::term::err_line(&format!($($arg)*)) };
}

/// Text from outside (an API's message, a field of its answer) with every control character
/// (escape sequences, carriage returns, newlines, bells), Unicode line and paragraph
/// separator, and bidirectional control as a space: it can neither drive the terminal, nor
/// forge a line of its own in a log, nor make the text around it read backwards.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
            )
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    }
    if text.chars().any(unsafe_char) {
        text.chars()
            .map(|c| if unsafe_char(c) { ' ' } else { c })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_leaves_no_control_character() {
        assert_eq!(super::one_line("plain é"), "plain é");
        assert_eq!(
            super::one_line("\u{1b}[2J\u{1b}[31mRED\r\nJob COMPLETED\u{7}"),
            " [2J [31mRED  Job COMPLETED "
        );
        assert_eq!(
            super::one_line("a\u{2028}b\u{202e}c\u{85}d\u{2066}"),
            "a b c d "
        );
    }
}
