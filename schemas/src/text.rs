//! What a message text and a user's identity may contain: the one definition the edge (which
//! refuses early) and the sequencer (which decides) both apply.
//!
//! Texts are normalized, in this order:
//! 1. remove control characters (Unicode `Cc`) except `\n` and `\t`, which multi-line messages
//!    and pasted code need; `\r` goes, so CRLF becomes LF. Bidirectional embedding, override
//!    and isolate controls go too: they make displayed text differ from its content ("trojan
//!    source"). So do the invisible characters no chat text needs (zero-width space, word
//!    joiner, invisible operators, byte-order mark, Mongolian vowel separator).
//! 2. NFC, after removal so a combining mark split off by a stripped control still composes.
//!
//! Lengths are measured on the normalized text. A text that shows nothing (only whitespace and
//! invisible characters such as the zero-width joiner, which emoji sequences keep) is blank.
//!
//! Identities (`sub`, `name`) are not rewritten but refused: a name is shown to others, and a
//! rewritten one could collide with someone else's.

use unicode_normalization::UnicodeNormalization;

/// Longest `sub` or `name`, in bytes (UTF-8).
pub const MAX_IDENTITY_BYTES: usize = 128;

fn bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Invisible characters that only ever hide things in chat: removed from texts.
fn stripped_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{180E}' | '\u{206A}'..='\u{206F}'
    )
}

/// Invisible characters that are kept in texts (they join or shape visible ones) but show
/// nothing on their own.
fn kept_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{200C}'..='\u{200F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

fn removed(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || bidi_control(c) || stripped_invisible(c)
}

/// The normalized form of a message text (steps 1 and 2 above).
pub fn normalize(raw: &str) -> String {
    raw.chars().filter(|c| !removed(*c)).nfc().collect()
}

/// Whether `text` shows nothing: only whitespace and invisible characters.
pub fn is_blank(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_whitespace() || removed(c) || kept_invisible(c))
}

/// Why an identity is refused.
pub fn check_identity(value: &str) -> Result<(), &'static str> {
    if value.is_empty() || value.len() > MAX_IDENTITY_BYTES {
        return Err("must be 1 to 128 bytes");
    }
    if value
        .chars()
        .any(|c| c.is_control() || bidi_control(c) || stripped_invisible(c) || kept_invisible(c))
    {
        return Err("must not contain control, bidirectional or invisible characters");
    }
    if value.trim().is_empty() {
        return Err("must not be blank");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_bidi_and_zero_width_spaces_are_removed() {
        assert_eq!(normalize("a\u{0}b\u{7}c\u{1b}[31m"), "abc[31m");
        assert_eq!(normalize("line1\r\nline2\tx"), "line1\nline2\tx");
        assert_eq!(normalize("abc\u{202E}def"), "abcdef");
        assert_eq!(normalize("a\u{200B}b\u{FEFF}c\u{2060}"), "abc");
        // A control between a letter and its combining mark must not block composition.
        assert_eq!(normalize("e\u{0}\u{301}"), "é");
        // Emoji sequences keep their joiner.
        assert_eq!(normalize("👨\u{200D}👩"), "👨\u{200D}👩");
    }

    #[test]
    fn texts_that_show_nothing_are_blank() {
        for raw in [
            "",
            "  \n\t",
            "\u{200B}\u{200C}\u{200D}",
            "\u{2800}\u{3164}",
            "\u{FE0F}",
        ] {
            assert!(is_blank(&normalize(raw)), "{raw:?}");
        }
        assert!(!is_blank("a\u{200B}"));
        assert!(!is_blank("👍"));
    }

    #[test]
    fn identities_must_be_short_and_visible() {
        assert!(check_identity("ada").is_ok());
        assert!(check_identity("Zoë Smith").is_ok());
        assert!(check_identity(&"x".repeat(128)).is_ok());
        assert!(check_identity(&"x".repeat(129)).is_err());
        assert!(
            check_identity(&"é".repeat(65)).is_err(),
            "bytes, not characters"
        );
        for bad in [
            "",
            " ",
            "a\u{1b}[31m",
            "a\u{0}",
            "a\r\nb",
            "evil\u{202E}txt",
            "a\u{200B}",
            "\u{200D}",
        ] {
            assert!(check_identity(bad).is_err(), "{bad:?}");
        }
    }
}
