//! Input validation shared by the areas. Strings are checked, never changed:
//! what passes is stored byte for byte as sent.

use crate::error::{Error, FieldErrors};

/// Longest username accepted, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;
/// RFC 5321's limit on a forward path.
pub const MAX_EMAIL_CHARS: usize = 254;

/// Collects field errors so one response can report all of them.
#[derive(Debug, Default)]
pub struct Validator {
    errors: FieldErrors,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .entry(field.to_owned())
            .or_default()
            .push(message.into());
    }

    /// A field that must be present and not blank; returns it when it is.
    pub fn required<'a>(&mut self, field: &str, value: Option<&'a str>) -> Option<&'a str> {
        match value {
            Some(text) if !text.trim().is_empty() => Some(text),
            _ => {
                self.add(field, "can't be blank");
                None
            }
        }
    }

    /// A field that may be absent but, when present, must not be blank.
    pub fn not_blank_if_present(&mut self, field: &str, value: Option<&str>) {
        if let Some(text) = value
            && text.trim().is_empty()
        {
            self.add(field, "can't be blank");
        }
    }

    pub fn username(&mut self, value: &str) {
        if value.chars().count() > MAX_USERNAME_CHARS {
            self.add(
                "username",
                format!("is too long (maximum is {MAX_USERNAME_CHARS} characters)"),
            );
        }
        if value.chars().any(char::is_control) {
            self.add("username", "must not contain control characters");
        }
    }

    pub fn email(&mut self, value: &str) {
        if !is_valid_email(value) {
            self.add("email", "is invalid");
        }
    }

    pub fn finish(self) -> Result<(), Error> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Unprocessable(self.errors))
        }
    }

    #[cfg(test)]
    pub fn errors(&self) -> &FieldErrors {
        &self.errors
    }
}

/// A pragmatic address check: one `@`, a non-empty local part, a domain with a
/// dot between non-empty labels, no whitespace or control characters. Full RFC
/// 5322 syntax (quoted local parts, comments) is deliberately not accepted.
pub fn is_valid_email(value: &str) -> bool {
    if value.chars().count() > MAX_EMAIL_CHARS
        || value.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    if local.is_empty() || domain.contains('@') || !domain.contains('.') {
        return false;
    }
    domain.split('.').all(|label| !label.is_empty())
}

/// Keeps the first occurrence of each tag, in the order given, skipping blank
/// ones: an article's tags are a set that remembers the author's order.
pub fn distinct_tags(tags: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    tags.iter()
        .filter(|tag| !tag.trim().is_empty())
        .filter(|tag| seen.insert(tag.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_need_local_part_at_and_dotted_domain() {
        for good in ["jake@jake.jake", "a.b+c@example.co.uk", "ü@exämple.de"] {
            assert!(is_valid_email(good), "{good}");
        }
        for bad in [
            "",
            "jake",
            "@example.com",
            "jake@",
            "jake@localhost",
            "jake@@example.com",
            "ja ke@example.com",
            "jake@example..com",
            "jake@.example.com",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(!is_valid_email(&long));
    }

    #[test]
    fn required_fields_must_be_present_and_not_blank() {
        let mut validator = Validator::new();
        assert_eq!(validator.required("username", Some("jake")), Some("jake"));
        assert_eq!(validator.required("email", None), None);
        assert_eq!(validator.required("password", Some("  ")), None);
        assert_eq!(validator.errors()["email"], vec!["can't be blank"]);
        assert_eq!(validator.errors()["password"], vec!["can't be blank"]);
        assert!(!validator.errors().contains_key("username"));
        assert_eq!(validator.finish().unwrap_err().status(), 422);
    }

    #[test]
    fn valid_input_passes() {
        let mut validator = Validator::new();
        validator.username("jake");
        validator.email("jake@jake.jake");
        validator.not_blank_if_present("bio", None);
        assert!(validator.finish().is_ok());
    }

    #[test]
    fn usernames_have_a_length_limit_and_no_control_characters() {
        let mut validator = Validator::new();
        validator.username(&"x".repeat(MAX_USERNAME_CHARS + 1));
        validator.username("bad\nname");
        assert_eq!(validator.errors()["username"].len(), 2);
    }

    #[test]
    fn tags_are_deduplicated_in_first_seen_order() {
        let tags: Vec<String> = ["b", "a", "b", " ", "c", "a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(distinct_tags(&tags), vec!["b", "a", "c"]);
    }
}
