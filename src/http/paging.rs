//! List envelopes and keyset cursors (spec README §3.8). A cursor is base64url (no padding) of a
//! small JSON position, bound to the endpoint and filters it was issued for.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::query::QueryParams;
use crate::error::ApiError;
pub use crate::store::Position;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 500;

/// `{"items": [...], "nextCursor"?: "..."}`; `nextCursor` is absent on the last page (C5).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListPage<T> {
    pub items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `limit` and `cursor`, as every list endpoint takes them (OpenAPI parameters).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// 1..500, default 100.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// A cursor's position: `{"t": createdAt, "id": id}` for time-ordered lists, `{"k": key}` for
/// catalogue lists ordered by key.
#[derive(Serialize, Deserialize)]
struct CursorToken {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    /// Fingerprint of the endpoint and filters; a cursor is valid only with the same ones.
    f: String,
}

/// `limit` and `cursor` of a list request.
#[derive(Debug)]
pub struct PageRequest {
    pub limit: usize,
    /// The `(createdAt, id)` position of a time-ordered list.
    pub after: Option<Position>,
    /// The last key served by a list ordered by key.
    pub after_key: Option<String>,
    scope: String,
}

impl PageRequest {
    /// Reads `limit` and `cursor`. `scope` names the endpoint and its filter values.
    pub fn parse(query: &QueryParams, scope: &[&str]) -> Result<PageRequest, ApiError> {
        let limit = match query.get("limit") {
            None => DEFAULT_LIMIT,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::validation(
                        "limit",
                        "1..500",
                        format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                    )
                })?,
        };
        let scope = fingerprint(scope);
        let (after, after_key) = match query.get("cursor") {
            None => (None, None),
            Some(raw) => {
                let token: CursorToken = URL_SAFE_NO_PAD
                    .decode(raw)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .ok_or_else(|| {
                        ApiError::validation("cursor", "cursor", "cursor is malformed")
                            .with_reason("invalid-cursor")
                    })?;
                if token.f != scope {
                    return Err(ApiError::validation(
                        "cursor",
                        "cursor",
                        "cursor was issued for another endpoint or other filters",
                    )
                    .with_reason("cursor-filter-mismatch"));
                }
                match token {
                    CursorToken {
                        t: Some(t),
                        id: Some(id),
                        ..
                    } => (Some(Position { t, id }), None),
                    CursorToken { k: Some(k), .. } => (None, Some(k)),
                    _ => {
                        return Err(ApiError::validation(
                            "cursor",
                            "cursor",
                            "cursor is malformed",
                        )
                        .with_reason("invalid-cursor"));
                    }
                }
            }
        };
        Ok(PageRequest {
            limit,
            after,
            after_key,
            scope,
        })
    }

    /// A page of a list ordered by key: the items after `after_key`, and the cursor of the next
    /// page when there is one. `items` yields `(key, item)` in key order.
    pub fn keyed<'a, T: 'a>(&self, items: impl Iterator<Item = (&'a str, T)>) -> ListPage<T> {
        let mut page: Vec<T> = Vec::with_capacity(self.limit.min(64));
        let mut last_key: Option<&str> = None;
        let mut more = false;
        for (key, item) in items
            .skip_while(|(key, _)| self.after_key.as_deref().is_some_and(|after| *key <= after))
        {
            if page.len() == self.limit {
                more = true;
                break;
            }
            last_key = Some(key);
            page.push(item);
        }
        let next_cursor = match (more, last_key) {
            (true, Some(key)) => Some(self.key_cursor(key)),
            _ => None,
        };
        ListPage {
            items: page,
            next_cursor,
        }
    }

    fn key_cursor(&self, key: &str) -> String {
        let token = CursorToken {
            t: None,
            id: None,
            k: Some(key.to_string()),
            f: self.scope.clone(),
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("cursor serialises"))
    }

    /// How many rows to fetch: one more than the page, to learn whether another page exists.
    pub fn fetch_limit(&self) -> i64 {
        self.limit as i64 + 1
    }

    /// Trims the over-fetched row and issues the cursor for the next page.
    pub fn finish<T>(&self, mut rows: Vec<T>, position_of: impl Fn(&T) -> Position) -> ListPage<T> {
        let next_cursor = if rows.len() > self.limit {
            rows.truncate(self.limit);
            rows.last().map(|last| self.cursor_at(position_of(last)))
        } else {
            None
        };
        ListPage {
            items: rows,
            next_cursor,
        }
    }

    /// The cursor of a page that continues after `position`.
    pub fn cursor_at(&self, position: Position) -> String {
        let token = CursorToken {
            t: Some(position.t),
            id: Some(position.id),
            k: None,
            f: self.scope.clone(),
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("cursor serialises"))
    }
}

fn fingerprint(scope: &[&str]) -> String {
    crate::crypto::sha256_hex(scope.join("\u{1f}").as_bytes())[..12].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str, scope: &[&str]) -> Result<PageRequest, ApiError> {
        PageRequest::parse(&QueryParams::parse(query), scope)
    }

    #[test]
    fn limits() {
        assert_eq!(request("", &["e"]).unwrap().limit, 100);
        assert_eq!(request("limit=500", &["e"]).unwrap().limit, 500);
        for bad in ["limit=0", "limit=501", "limit=-1", "limit=1.5", "limit=ten"] {
            let err = request(bad, &["e"]).unwrap_err();
            assert_eq!(err.details["field"], "limit", "{bad}");
        }
    }

    #[test]
    fn cursor_round_trip_and_binding() {
        let page = request("limit=2", &["e", "f=1"]).unwrap();
        let out = page.finish(vec![(1, "a"), (2, "b"), (3, "c")], |(t, id)| Position {
            t: *t,
            id: id.to_string(),
        });
        assert_eq!(out.items.len(), 2);
        let cursor = out.next_cursor.unwrap();
        let next = request(&format!("cursor={cursor}"), &["e", "f=1"]).unwrap();
        assert_eq!(
            next.after,
            Some(Position {
                t: 2,
                id: "b".into()
            })
        );
        let err = request(&format!("cursor={cursor}"), &["e", "f=2"]).unwrap_err();
        assert_eq!(err.details["reason"], "cursor-filter-mismatch");
        for bad in ["cursor=%%%", "cursor=bm90LWpzb24", "cursor=e30"] {
            assert_eq!(request(bad, &["e"]).unwrap_err().details["field"], "cursor");
        }
    }

    #[test]
    fn keyed_pages_continue_after_the_last_key() {
        let keys = ["a", "b", "c", "d", "e"];
        let page = request("limit=2", &["skills"]).unwrap();
        let out = page.keyed(keys.iter().map(|k| (*k, *k)));
        assert_eq!(out.items, ["a", "b"]);
        let cursor = out.next_cursor.unwrap();
        let next = request(&format!("limit=2&cursor={cursor}"), &["skills"]).unwrap();
        let out = next.keyed(keys.iter().map(|k| (*k, *k)));
        assert_eq!(out.items, ["c", "d"]);
        let last = request(
            &format!("limit=2&cursor={}", out.next_cursor.unwrap()),
            &["skills"],
        )
        .unwrap();
        let out = last.keyed(keys.iter().map(|k| (*k, *k)));
        assert_eq!(out.items, ["e"]);
        assert!(out.next_cursor.is_none());
        let exact = request("limit=5", &["skills"])
            .unwrap()
            .keyed(keys.iter().map(|k| (*k, *k)));
        assert!(
            exact.next_cursor.is_none(),
            "a full last page has no cursor"
        );
    }

    #[test]
    fn last_page_has_no_cursor() {
        let page = request("limit=3", &["e"]).unwrap();
        let out = page.finish(vec![(1, "a")], |(t, id)| Position {
            t: *t,
            id: id.to_string(),
        });
        assert!(out.next_cursor.is_none());
        let json = serde_json::to_value(&out).unwrap();
        assert!(json.get("nextCursor").is_none());
    }
}
