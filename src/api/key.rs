//! The API key: checked locally, never printed.
//!
//! A key comes from `CTGO_API_KEY` or a file, so it is trimmed of surrounding whitespace and
//! newlines, then checked against the documented shape: it starts with `ctgo_` and has 45
//! characters in all. The contract says nothing about the other 40, so any visible ASCII
//! character is accepted (a real key with a `-` must not be refused locally); whitespace,
//! control and non-ASCII characters are not, because the key travels in an HTTP header and
//! such a character is a paste accident, never part of a key. A malformed key is refused here,
//! before any request, with a reason that never repeats the key (a key with one typo is still
//! nearly a secret).
//! `Debug` and `Display` print [`REDACTED_KEY`], so a key inside any struct that derives
//! `Debug` stays hidden.

use std::fmt;

/// The documented prefix of every key.
pub const KEY_PREFIX: &str = "ctgo_";
/// The documented length of a key, prefix included.
pub const KEY_LEN: usize = 45;
/// What a key prints as, everywhere.
pub const REDACTED_KEY: &str = "ctgo_****";

/// The fewest characters of the key's secret part (after `ctgo_`), from its start, that
/// count as the key: a text quoting the key cut short, or without its prefix, is redacted too.
const SECRET_MIN_SHOWN: usize = 6;

/// `text` with `key` redacted wherever it shows: whole, or as any run of at least
/// [`SECRET_MIN_SHOWN`] characters from the start of its secret part (with or without `ctgo_`
/// in any case before it), as it is and as a JSON string holds it (a key may contain `"` or
/// `\`).
pub fn redact_key_in(text: &str, key: &str) -> String {
    let out = redact_secret(text, key.strip_prefix(KEY_PREFIX).unwrap_or(key));
    match serde_json::to_string(key) {
        Ok(quoted) if quoted[1..quoted.len() - 1] != *key => {
            let escaped = &quoted[1..quoted.len() - 1];
            redact_secret(&out, escaped.strip_prefix(KEY_PREFIX).unwrap_or(escaped))
        }
        _ => out,
    }
}

fn redact_secret(text: &str, secret: &str) -> String {
    // In any ASCII case: a URL's host, for one, is lowercased on its way into an error.
    // (Lowercasing ASCII keeps every byte where it was, so positions carry over.)
    let secret = secret.to_ascii_lowercase();
    let Some(needle) = secret.get(..SECRET_MIN_SHOWN) else {
        return text.to_string();
    };
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    while let Some(found) = lower[done..].find(needle) {
        let at = done + found;
        let shown = lower[at..]
            .bytes()
            .zip(secret.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        let before = &text[done..at];
        let start = match before.len().checked_sub(KEY_PREFIX.len()) {
            Some(p)
                if before.is_char_boundary(p) && before[p..].eq_ignore_ascii_case(KEY_PREFIX) =>
            {
                done + p
            }
            _ => at,
        };
        out.push_str(&text[done..start]);
        out.push_str(REDACTED_KEY);
        done = at + shown;
    }
    out.push_str(&text[done..]);
    out
}

/// `text` with anything shaped like a key (`ctgo_` and 40 more visible characters, where the
/// text then ends, has a space, closes a quote or bracket, or goes on as a URL would: `/`,
/// `:`, `?`, ...) shown as [`REDACTED_KEY`]: for
/// text that may quote a key the exporter does not hold, such as a config file's line where a
/// key was pasted by mistake. A path such as `/srv/ctgo_exports/leads.db` is left alone.
pub fn scrub_key_like(text: &str) -> std::borrow::Cow<'_, str> {
    let tail_len = KEY_LEN - KEY_PREFIX.len();
    if !text.contains(KEY_PREFIX) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY_PREFIX) {
        let after = &rest[at + KEY_PREFIX.len()..];
        let bytes = after.as_bytes();
        let whole = bytes.len() >= tail_len
            && bytes[..tail_len].iter().all(u8::is_ascii_graphic)
            && bytes.get(tail_len).is_none_or(|b| {
                !b.is_ascii_graphic()
                    || matches!(
                        b,
                        b'"' | b'\''
                            | b'`'
                            | b')'
                            | b']'
                            | b'}'
                            | b','
                            | b'\\'
                            | b'/'
                            | b':'
                            | b'@'
                            | b'?'
                            | b'#'
                            | b';'
                            | b'&'
                    )
            });
        if whole {
            out.push_str(&rest[..at]);
            out.push_str(REDACTED_KEY);
            rest = &after[tail_len..];
        } else {
            out.push_str(&rest[..at + KEY_PREFIX.len()]);
            rest = after;
        }
    }
    out.push_str(rest);
    out.into()
}

#[cfg(test)]
mod scrub_tests {
    use super::*;

    #[test]
    fn the_key_is_redacted_whole_cut_short_or_without_its_prefix() {
        let key = "ctgo_Zq8XyW3kP9mN2vB7cT4hJ6rL1sD5fG0aQeRuIoYx";
        for (text, want) in [
            (format!("bad key {key}!"), "bad key ctgo_****!"),
            (
                "bad key ctgo_Zq8XyW3kP9mN2vB7cT4hJ6rL1 here".into(),
                "bad key ctgo_**** here",
            ),
            (
                "<html>CTGO_Zq8XyW3k</html>".into(),
                "<html>ctgo_****</html>",
            ),
            (
                "Zq8XyW3kP9mN2vB7cT4hJ6rL1sD5fG0aQeRuIoYx".into(),
                "ctgo_****",
            ),
            ("x Zq8XyW y".into(), "x ctgo_**** y"),
            // Lowercased on its way, as a URL's host is.
            (
                format!("https://{}/leads", key.to_ascii_lowercase()),
                "https://ctgo_****/leads",
            ),
            ("x ZQ8XYW3KP9 y".into(), "x ctgo_**** y"),
            // Five characters of the secret are not taken for it.
            ("Zq8Xy and ctgo_export".into(), "Zq8Xy and ctgo_export"),
        ] {
            assert_eq!(redact_key_in(&text, key), want);
        }
    }

    #[test]
    fn key_shaped_text_is_scrubbed_and_paths_are_not() {
        let key = "ctgo_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_abc";
        assert_eq!(key.len(), KEY_LEN);
        for (text, want) in [
            (
                format!("api_key = \"{key}\""),
                "api_key = \"ctgo_****\"".to_string(),
            ),
            (key.to_string(), "ctgo_****".into()),
            (format!("a {key} b {key}"), "a ctgo_**** b ctgo_****".into()),
            (format!("[{key}]"), "[ctgo_****]".into()),
            (
                format!("https://{key}/leads?limit=5"),
                "https://ctgo_****/leads?limit=5".into(),
            ),
            (format!("http://{key}:8080"), "http://ctgo_****:8080".into()),
        ] {
            assert_eq!(scrub_key_like(&text), want);
        }
        for path in [
            "sqlite:/srv/ctgo_exports/production/leads_2026.db",
            "/var/lib/ctgo_export/a/very/long/directory/name/that/goes/on/leads.db",
            "ctgo_****",
        ] {
            assert_eq!(scrub_key_like(path), path);
        }
    }
}

/// A well-formed key (`ctgo_` + 40 more visible ASCII characters). `Debug` and `Display` print
/// `ctgo_****`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Trim and check a key. The error says what is wrong, never what the key is.
    pub fn parse(s: &str) -> Result<ApiKey, String> {
        let k = s.trim();
        if k.is_empty() {
            return Err("the API key is empty".to_string());
        }
        if !k.starts_with(KEY_PREFIX) {
            return Err(format!(
                "the API key does not start with `{KEY_PREFIX}` (keys look like `{KEY_PREFIX}` followed by 40 more characters)"
            ));
        }
        if let Some((pos, c)) = k.chars().enumerate().find(|(_, c)| !c.is_ascii_graphic()) {
            let what = if c.is_whitespace() {
                "whitespace"
            } else if c.is_control() {
                "a control character"
            } else {
                "a non-ASCII character"
            };
            return Err(format!(
                "the API key contains {what} at position {} (a key is visible ASCII only: letters, digits and punctuation, no spaces)",
                pos + 1
            ));
        }
        // Only ASCII from here on, so bytes == characters.
        if k.len() != KEY_LEN {
            return Err(format!(
                "the API key has {} characters; a key has exactly {KEY_LEN} (was it cut or pasted twice?)",
                k.len()
            ));
        }
        Ok(ApiKey(k.to_string()))
    }

    /// The key itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED_KEY)
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED_KEY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const GOOD: &str = "ctgo_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_abc";

    #[test]
    fn good_key_parses_and_is_trimmed() {
        assert_eq!(GOOD.len(), KEY_LEN);
        let k = ApiKey::parse(&format!("  {GOOD}\r\n")).expect("valid");
        assert_eq!(k.expose(), GOOD);
    }

    #[test]
    fn debug_and_display_hide_the_key() {
        let k = ApiKey::parse(GOOD).expect("valid");
        assert_eq!(format!("{k:?}"), "ctgo_****");
        assert_eq!(format!("{k}"), "ctgo_****");
        assert_eq!(format!("{:?}", Some(k.clone())), "Some(ctgo_****)");
    }

    #[test]
    fn any_visible_ascii_after_the_prefix_is_accepted() {
        // The contract fixes only the prefix and the length.
        for k in [
            "ctgo_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-abc",
            "ctgo_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789.~+/",
            "ctgo_!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~01234567",
        ] {
            assert_eq!(k.len(), KEY_LEN, "{k}");
            assert_eq!(ApiKey::parse(k).expect(k).expose(), k);
        }
    }

    #[test]
    fn bad_keys_are_refused_without_echo() {
        let cases = [
            ("", "empty"),
            ("   \n", "empty"),
            (
                "xtgo_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_abc",
                "start with",
            ),
            (&GOOD[..44], "44 characters"),
            (&format!("{GOOD}x"), "46 characters"),
            (
                "ctgo_AbCdEfGhIjKlMn OpQrStUvWxYz0123456789abc",
                "whitespace at position 20",
            ),
            (
                "ctgo_AbCdEfGhIjKlMn\tOpQrStUvWxYz0123456789abc",
                "whitespace at position 20",
            ),
            (
                "ctgo_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789\u{7f}abc",
                "a control character at position 42",
            ),
            (
                "ctgo_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789\u{1}abc",
                "a control character at position 42",
            ),
            (
                "ctgo_AbCdEfGhIjKlMnOpQrStUvWxYz012345678é_ab",
                "a non-ASCII character at position 41",
            ),
        ];
        for (input, want) in cases {
            let err = ApiKey::parse(input).expect_err(input);
            assert!(err.contains(want), "{input:?}: {err}");
            let trimmed = input.trim();
            if trimmed.len() > 5 {
                assert!(!err.contains(&trimmed[5..]), "error echoes the key: {err}");
            }
        }
    }
}
