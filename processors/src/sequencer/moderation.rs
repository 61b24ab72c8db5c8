//! Moderation of a message's text (G5), pure: normalize, then refuse with a code.
//!
//! Normalization (controls, bidirectional overrides and zero-width spaces removed, then NFC)
//! is `tidings_schemas::text`, shared with the edge. Then, on the normalized text: blank (only
//! whitespace or invisible characters) → `invalid`; more than `max_text_chars` characters, or
//! more bytes than the store keeps → `too_large`; contains a blocked term (case-insensitive
//! substring, terms NFC-normalized too) → `rejected`.

use crate::ModerationConfig;
use tidings_schemas::text::{is_blank, normalize};

/// Why a message was refused: the client-facing code and a short explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Moderation with its terms prepared once per session.
pub(crate) struct Moderator {
    max_chars: usize,
    /// NFC, lowercased, no blanks (a blank term would match every message).
    terms: Vec<String>,
}

impl Moderator {
    pub(crate) fn new(config: &ModerationConfig) -> Self {
        let terms = config
            .blocked_terms
            .iter()
            .map(|t| normalize(t.trim()).to_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        Self {
            max_chars: config.max_text_chars,
            terms,
        }
    }

    /// The text to sequence, or why it is refused.
    pub(crate) fn check(&self, raw: &str) -> Result<String, Rejection> {
        let text = normalize(raw);
        if is_blank(&text) {
            return Err(Rejection::new("invalid", "message text is empty"));
        }
        let chars = text.chars().count();
        if chars > self.max_chars {
            return Err(Rejection::new(
                "too_large",
                format!(
                    "message has {chars} characters; the limit is {}",
                    self.max_chars
                ),
            ));
        }
        if text.len() > tidings_store::MAX_TEXT_BYTES {
            return Err(Rejection::new(
                "too_large",
                "message text is too large to store",
            ));
        }
        if !self.terms.is_empty() {
            let lower = text.to_lowercase();
            if self.terms.iter().any(|t| lower.contains(t.as_str())) {
                return Err(Rejection::new("rejected", "message refused by moderation"));
            }
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moderator(max: usize, terms: &[&str]) -> Moderator {
        Moderator::new(&ModerationConfig {
            max_text_chars: max,
            blocked_terms: terms.iter().map(|t| t.to_string()).collect(),
        })
    }

    #[test]
    fn nfc_and_control_characters() {
        let m = moderator(100, &[]);
        assert_eq!(m.check("e\u{301}").as_deref(), Ok("é"));
        assert_eq!(m.check("a\u{0}b\u{7}c\u{1b}[31m").as_deref(), Ok("abc[31m"));
        assert_eq!(
            m.check("line1\r\nline2\tx").as_deref(),
            Ok("line1\nline2\tx")
        );
        assert_eq!(m.check("abc\u{202E}def").as_deref(), Ok("abcdef"));
        // A control between a letter and its combining mark must not block composition.
        assert_eq!(m.check("e\u{0}\u{301}").as_deref(), Ok("é"));
    }

    #[test]
    fn empty_and_blank_are_invalid() {
        let m = moderator(100, &[]);
        for raw in ["", "   ", "\u{0}\u{1}", "\n\t", "\u{200B}\u{200D}\u{FEFF}"] {
            assert_eq!(m.check(raw).map_err(|r| r.code), Err("invalid"), "{raw:?}");
        }
    }

    #[test]
    fn length_counts_characters_after_normalization() {
        let m = moderator(3, &[]);
        assert!(m.check("abc").is_ok());
        assert_eq!(m.check("abcd").map_err(|r| r.code), Err("too_large"));
        // Three decomposed characters are three after NFC, not six.
        assert!(m.check("e\u{301}e\u{301}e\u{301}").is_ok());
        // Multi-byte characters count once.
        assert!(m.check("日本語").is_ok());
        // Stripped controls do not count.
        assert!(m.check("a\u{0}\u{0}bc").is_ok());
    }

    #[test]
    fn blocked_terms_are_case_insensitive_substrings() {
        let m = moderator(100, &["Spam", " ", "café"]);
        assert_eq!(m.check("buy SPAM now").map_err(|r| r.code), Err("rejected"));
        assert_eq!(m.check("xxspamxx").map_err(|r| r.code), Err("rejected"));
        assert_eq!(m.check("CAFE\u{301}").map_err(|r| r.code), Err("rejected"));
        // The blank term is ignored rather than matching everything.
        assert!(m.check("hello there").is_ok());
    }

    #[test]
    fn terms_parse_from_csv() {
        assert_eq!(ModerationConfig::parse_terms(" a, ,b,,c "), ["a", "b", "c"]);
        assert!(ModerationConfig::parse_terms("").is_empty());
    }
}
