//! The API key: checked locally, never printed.
//!
//! A key comes from `CTGO_API_KEY` or a file, so it is trimmed of surrounding whitespace and
//! newlines, then checked against the documented shape (`ctgo_` + 40 more characters, 45 in
//! all, only `[A-Za-z0-9_]`). A malformed key is refused here, before any request, with a
//! reason that never repeats the key (a key with one typo is still nearly a secret).
//! `Debug` and `Display` print [`REDACTED_KEY`], so a key inside any struct that derives
//! `Debug` stays hidden.

use std::fmt;

/// The documented prefix of every key.
pub const KEY_PREFIX: &str = "ctgo_";
/// The documented length of a key, prefix included.
pub const KEY_LEN: usize = 45;
/// What a key prints as, everywhere.
pub const REDACTED_KEY: &str = "ctgo_****";

/// A well-formed key (`ctgo_` + 40 more characters). `Debug` and `Display` print `ctgo_****`.
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
                "the API key does not start with `{KEY_PREFIX}` (keys look like `{KEY_PREFIX}` followed by 40 letters, digits or underscores)"
            ));
        }
        if let Some(pos) = k
            .chars()
            .position(|c| !(c.is_ascii_alphanumeric() || c == '_'))
        {
            let what = match k.chars().nth(pos) {
                Some(c) if c.is_whitespace() => "whitespace",
                _ => "a character other than letters, digits and `_`",
            };
            return Err(format!(
                "the API key contains {what} at position {} (only A-Z, a-z, 0-9 and `_` are allowed)",
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
                "ctgo_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-abc",
                "position 42",
            ),
            (
                "ctgo_AbCdEfGhIjKlMn OpQrStUvWxYz0123456789abc",
                "whitespace",
            ),
            ("ctgo_AbCdEfGhIjKlMnOpQrStUvWxYz012345678é_ab", "other than"),
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
