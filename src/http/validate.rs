//! Field rules shared by every request body (spec README §3.2): non-blank strings, length
//! limits, string lists.

use crate::error::ApiError;

/// Names, keys, ids and labels.
pub const MAX_NAME: usize = 255;
/// Descriptions and reasons.
pub const MAX_TEXT: usize = 4096;
/// Array entries.
pub const MAX_ITEMS: usize = 100;

fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::validation(
            field,
            "non-blank",
            format!("{field} must not be blank"),
        ));
    }
    if value.chars().count() > max {
        return Err(ApiError::validation(
            field,
            &format!("at most {max} characters"),
            format!("{field} must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// A required non-blank string of at most `max` characters.
pub fn required_text(field: &str, value: Option<String>, max: usize) -> Result<String, ApiError> {
    let value = value
        .ok_or_else(|| ApiError::validation(field, "required", format!("{field} is required")))?;
    check_text(field, &value, max)?;
    Ok(value)
}

/// An optional non-blank string of at most `max` characters.
pub fn optional_text(
    field: &str,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match value {
        None => Ok(None),
        Some(value) => check_text(field, &value, max).map(|()| Some(value)),
    }
}

/// A list of non-blank names; duplicates removed, first kept.
pub fn name_list(
    field: &str,
    values: Option<Vec<String>>,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(values) = values else {
        return Ok(None);
    };
    if values.len() > MAX_ITEMS {
        return Err(ApiError::validation(
            field,
            &format!("at most {MAX_ITEMS} entries"),
            format!("{field} may have at most {MAX_ITEMS} entries"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for (i, value) in values.into_iter().enumerate() {
        check_text(&format!("{field}[{i}]"), &value, MAX_NAME)?;
        if !out.contains(&value) {
            out.push(value);
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        assert_eq!(required_text("a", Some("x".into()), 3).unwrap(), "x");
        for (value, constraint) in [
            (None, "required"),
            (Some(" \t".to_string()), "non-blank"),
            (Some("abcd".into()), "at most 3 characters"),
        ] {
            let err = required_text("a", value, 3).unwrap_err();
            assert_eq!(err.details["field"], "a");
            assert_eq!(err.details["constraint"], constraint);
        }
        assert_eq!(optional_text("a", None, 3).unwrap(), None);
    }

    #[test]
    fn lists_dedupe_and_name_the_entry() {
        let out = name_list("caps", Some(vec!["b".into(), "a".into(), "b".into()]))
            .unwrap()
            .unwrap();
        assert_eq!(out, ["b", "a"]);
        let err = name_list("caps", Some(vec!["ok".into(), " ".into()])).unwrap_err();
        assert_eq!(err.details["field"], "caps[1]");
        assert!(name_list("caps", Some(vec!["x".into(); 101])).is_err());
    }
}
