//! Checks every aggregate's commands share, written once: bounded text (ids are checked by
//! their types in `esr-schema`).
//! Each answers why a value is refused, in words a client can act on; the aggregate wraps the
//! reason in its own rejection (with the field's name).
//!
//! ```
//! use esr_kernel::validate;
//!
//! assert_eq!(validate::bounded_text("  Daffy ", 100), Ok("Daffy".to_owned()));
//! assert_eq!(
//!     validate::bounded_text("", 100),
//!     Err("must not be empty".to_owned())
//! );
//! ```

/// `raw` trimmed, if it is not empty, has at most `max_chars` characters, and holds no control
/// characters (which break logs and terminals).
pub fn bounded_text(raw: &str, max_chars: usize) -> Result<String, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.chars().count() > max_chars {
        return Err(format!("at most {max_chars} characters"));
    }
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(text.to_owned())
}

/// [`bounded_text`]'s rule without the length, as a regular expression for documents (JSON
/// Schema `pattern`, with `minLength` 1 and `maxLength` the bound): at least one character that
/// is not white space, and no control characters.
pub const TEXT_PATTERN: &str =
    r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(bounded_text(" a b ", 3), Ok("a b".to_owned()));
        assert_eq!(
            bounded_text("abcd", 3),
            Err("at most 3 characters".to_owned())
        );
        assert_eq!(
            bounded_text("a\u{7}b", 3),
            Err("must not contain control characters".to_owned())
        );
        // Characters, not bytes.
        assert!(bounded_text("ééé", 3).is_ok());
    }
}
