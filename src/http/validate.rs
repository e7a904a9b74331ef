//! Field rules shared by every request body (spec README §3.2): non-blank strings, length
//! limits, string lists; and the one place that keeps control characters out of every string a
//! request carries — body, path and query — so both backends store the same things (PostgreSQL
//! cannot store NUL at all).

use axum::extract::{RawPathParams, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

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

/// C0 control characters other than tab, line feed and carriage return.
pub fn is_forbidden_control(c: char) -> bool {
    c < '\u{20}' && !matches!(c, '\t' | '\n' | '\r')
}

fn control_character(field: &str) -> ApiError {
    ApiError::validation(
        field,
        "no control characters",
        format!("{field} must not contain control characters (other than tab, CR and LF)"),
    )
    .with_reason("control-character")
}

/// Every string of a JSON body, keys included, is free of [`is_forbidden_control`] characters;
/// the error names the first offending field (`labels.site`, `endpoints[0].label`).
pub fn check_json_strings(value: &Value) -> Result<(), ApiError> {
    fn walk(value: &Value, at: &mut String) -> Result<(), ApiError> {
        match value {
            Value::String(s) if s.chars().any(is_forbidden_control) => {
                Err(control_character(if at.is_empty() { "body" } else { at }))
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = at.len();
                    at.push_str(&format!("[{i}]"));
                    walk(item, at)?;
                    at.truncate(len);
                }
                Ok(())
            }
            Value::Object(map) => {
                for (key, item) in map {
                    let len = at.len();
                    if !at.is_empty() {
                        at.push('.');
                    }
                    at.push_str(key);
                    if key.chars().any(is_forbidden_control) {
                        return Err(control_character(at));
                    }
                    walk(item, at)?;
                    at.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    walk(value, &mut String::new())
}

/// `machine_id` → `machineId`: route templates name parameters in snake_case, the API in
/// camelCase.
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Route middleware: path parameters and query values (after percent-decoding) carry no
/// [`is_forbidden_control`] characters, else `400 VALIDATION_ERROR` naming the parameter.
pub async fn reject_control_characters(
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    if let Ok(params) = &params {
        for (name, value) in params {
            if value.chars().any(is_forbidden_control) {
                return control_character(&camel(name)).into_response();
            }
        }
    }
    if let Some(query) = req.uri().query() {
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if key.chars().any(is_forbidden_control) {
                return control_character("query").into_response();
            }
            if value.chars().any(is_forbidden_control) {
                return control_character(&key).into_response();
            }
        }
    }
    next.run(req).await
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
    fn control_characters_are_found_and_named() {
        use serde_json::json;
        assert!(check_json_strings(&json!({"a": "tab\there\r\n", "b": [1, "x"]})).is_ok());
        for (body, field) in [
            (json!({"displayName": "x\u{0}y"}), "displayName"),
            (json!({"labels": {"site": "a\u{1b}[31m"}}), "labels.site"),
            (
                json!({"endpoints": [{}, {"label": "\u{7}"}]}),
                "endpoints[1].label",
            ),
            (json!({"labels": {"k\u{0}": "v"}}), "labels.k\u{0}"),
        ] {
            let err = check_json_strings(&body).unwrap_err();
            assert_eq!(err.details["field"], field, "{body}");
            assert_eq!(err.details["reason"], "control-character");
        }
        assert_eq!(camel("machine_id"), "machineId");
        assert_eq!(camel("provider_key"), "providerKey");
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
