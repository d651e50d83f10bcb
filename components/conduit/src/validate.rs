//! Input validation shared by the areas. Strings are checked, never changed:
//! what passes is stored byte for byte as sent.
//!
//! Every text field has a maximum length, enforced here and published in the
//! OpenAPI document (`maxLength`), so what a client may store is the same on
//! every runtime: nothing depends on the host capping request bodies. Lengths
//! are counted in characters (Unicode scalar values), as JSON Schema counts
//! them.

use crate::error::{Error, FieldErrors};

/// Longest username accepted.
pub const MAX_USERNAME_CHARS: usize = 64;
/// RFC 5321's limit on a forward path.
pub const MAX_EMAIL_CHARS: usize = 254;
/// Longest password accepted at registration or change. Far above any
/// passphrase, low enough that hashing it costs what hashing a short one does.
pub const MAX_PASSWORD_CHARS: usize = 1024;
pub const MAX_BIO_CHARS: usize = 2_000;
/// An image is a URL; 2,048 is what browsers and proxies reliably carry.
pub const MAX_IMAGE_CHARS: usize = 2_048;
pub const MAX_TITLE_CHARS: usize = 256;
pub const MAX_DESCRIPTION_CHARS: usize = 1_024;
pub const MAX_ARTICLE_BODY_CHARS: usize = 65_536;
pub const MAX_COMMENT_BODY_CHARS: usize = 8_192;
pub const MAX_TAG_CHARS: usize = 64;
/// Most tags on one article.
pub const MAX_TAGS: usize = 32;

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

    /// A field of at most `max` characters.
    pub fn max_chars(&mut self, field: &str, value: Option<&str>, max: usize) {
        if let Some(text) = value
            && exceeds_chars(text, max)
        {
            self.add(field, too_long(max));
        }
    }

    /// A tag list: at most [`MAX_TAGS`] tags of at most [`MAX_TAG_CHARS`]
    /// characters each.
    pub fn tags(&mut self, tags: &[String]) {
        if tags.len() > MAX_TAGS {
            self.add(
                "tagList",
                format!("has too many tags (maximum is {MAX_TAGS})"),
            );
        }
        if tags.iter().any(|tag| exceeds_chars(tag, MAX_TAG_CHARS)) {
            self.add(
                "tagList",
                format!("has a tag that is too long (maximum is {MAX_TAG_CHARS} characters)"),
            );
        }
    }

    pub fn username(&mut self, value: &str) {
        self.max_chars("username", Some(value), MAX_USERNAME_CHARS);
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

/// Whether `text` has more than `max` characters, without counting past it.
fn exceeds_chars(text: &str, max: usize) -> bool {
    // A character is at most four bytes and at least one.
    text.len() > max && (text.len() > 4 * max || text.chars().nth(max).is_some())
}

fn too_long(max: usize) -> String {
    format!("is too long (maximum is {max} characters)")
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
    fn lengths_are_counted_in_characters_up_to_the_limit() {
        let mut validator = Validator::new();
        validator.max_chars("title", Some(&"ü".repeat(MAX_TITLE_CHARS)), MAX_TITLE_CHARS);
        validator.max_chars("bio", None, MAX_BIO_CHARS);
        assert!(validator.errors().is_empty());
        validator.max_chars(
            "title",
            Some(&"x".repeat(MAX_TITLE_CHARS + 1)),
            MAX_TITLE_CHARS,
        );
        validator.max_chars("body", Some(&"é".repeat(5 * 10)), 10);
        assert_eq!(
            validator.errors()["title"],
            vec![format!(
                "is too long (maximum is {MAX_TITLE_CHARS} characters)"
            )]
        );
        assert_eq!(validator.errors()["body"].len(), 1);
        assert!(!exceeds_chars("abc", 3));
        assert!(exceeds_chars("abcd", 3));
    }

    #[test]
    fn tag_lists_are_bounded_in_count_and_length() {
        let mut validator = Validator::new();
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        validator.tags(&many[..MAX_TAGS]);
        assert!(validator.errors().is_empty());
        validator.tags(&many);
        validator.tags(&["x".repeat(MAX_TAG_CHARS + 1)]);
        assert_eq!(validator.errors()["tagList"].len(), 2);
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
