//! Query strings: unknown parameters are ignored and, for a repeated parameter, the first value
//! wins (spec README §3.1).

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

pub struct QueryParams(HashMap<String, String>);

impl QueryParams {
    pub fn parse(query: &str) -> Self {
        let mut map = HashMap::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            map.entry(key.into_owned())
                .or_insert_with(|| value.into_owned());
        }
        QueryParams(map)
    }

    /// The value of `name`; an empty value counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(QueryParams::parse(parts.uri.query().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_wins_and_empty_is_absent() {
        let q = QueryParams::parse("limit=5&limit=7&type=a%20b&cursor=");
        assert_eq!(q.get("limit"), Some("5"));
        assert_eq!(q.get("type"), Some("a b"));
        assert_eq!(q.get("cursor"), None);
        assert_eq!(q.get("missing"), None);
    }
}
