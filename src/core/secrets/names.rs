//! What a secret's or config's name and data may be (SPEC §9, Docker's rules): a name of
//! 1 to 64 characters, letters and digits at both ends and `-`, `_` or `.` inside; data not
//! empty and at most 500 KiB.

use crate::core::CoreError;

/// The longest name Docker accepts.
pub const NAME_CHARS_MAX: usize = 64;
/// The largest secret or config (500 KiB, as Docker).
pub const DATA_BYTES_MAX: usize = 500 * 1024;

/// Checks a secret (`kind` = `secret`) or config name.
pub fn validate_name(kind: &'static str, name: &str) -> Result<(), CoreError> {
    let refuse = |reason: String| CoreError::Parse {
        what: if kind == "secret" {
            "secret name"
        } else {
            "config name"
        },
        value: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(refuse("a name is needed".into()));
    }
    if name.chars().count() > NAME_CHARS_MAX {
        return Err(refuse(format!("longer than {NAME_CHARS_MAX} characters")));
    }
    let inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if let Some(bad) = name.chars().find(|c| !inner(*c)) {
        return Err(refuse(format!(
            "{bad:?} is not allowed: only letters, digits, '-', '_' and '.'"
        )));
    }
    let ends_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ends_ok {
        return Err(refuse("must start and end with a letter or digit".into()));
    }
    Ok(())
}

/// Checks a secret's or config's data: not empty, at most [`DATA_BYTES_MAX`].
pub fn validate_data(kind: &'static str, data: &[u8]) -> Result<(), CoreError> {
    if data.is_empty() {
        return Err(CoreError::InvalidSpec(format!("{kind} data is empty")));
    }
    if data.len() > DATA_BYTES_MAX {
        return Err(CoreError::InvalidSpec(format!(
            "{kind} data is {} bytes; at most {DATA_BYTES_MAX} (500 KiB) are allowed",
            data.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_names_are_accepted() {
        for name in [
            "a",
            "db_password",
            "tls.key",
            "site-cert-2026",
            "A1",
            "x.y-z_0",
        ] {
            assert_eq!(validate_name("secret", name), Ok(()), "{name}");
        }
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        let cases = [
            ("", "a name is needed"),
            ("-lead", "must start and end"),
            ("trail.", "must start and end"),
            ("has space", "' ' is not allowed"),
            ("slash/name", "'/' is not allowed"),
            ("ünï", "is not allowed"),
        ];
        for (name, reason) in cases {
            let error = validate_name("secret", name).expect_err(name).to_string();
            assert!(error.contains(reason), "{name}: {error}");
            assert!(error.starts_with("invalid secret name"), "{error}");
        }
        let long = "a".repeat(NAME_CHARS_MAX + 1);
        assert!(validate_name("config", &long)
            .expect_err("too long")
            .to_string()
            .contains("longer than 64"));
        assert_eq!(validate_name("config", &"a".repeat(NAME_CHARS_MAX)), Ok(()));
    }

    #[test]
    fn data_must_be_present_and_at_most_500_kib() {
        assert!(validate_data("secret", b"")
            .expect_err("empty")
            .to_string()
            .contains("secret data is empty"));
        assert_eq!(validate_data("secret", &vec![1; DATA_BYTES_MAX]), Ok(()));
        let error = validate_data("config", &vec![1; DATA_BYTES_MAX + 1])
            .expect_err("too big")
            .to_string();
        assert!(error.contains("512001 bytes"), "{error}");
    }
}
