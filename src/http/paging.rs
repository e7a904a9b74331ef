//! List envelopes and keyset cursors (spec README §3.8). A cursor is base64url (no padding) of a
//! small JSON position, bound to the endpoint and filters it was issued for.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::query::QueryParams;
use crate::error::ApiError;

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

/// A keyset position: the `(createdAt, id)` of the last item served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub t: i64,
    pub id: String,
}

#[derive(Serialize, Deserialize)]
struct CursorToken {
    t: i64,
    id: String,
    /// Fingerprint of the endpoint and filters; a cursor is valid only with the same ones.
    f: String,
}

/// `limit` and `cursor` of a list request.
#[derive(Debug)]
pub struct PageRequest {
    pub limit: usize,
    pub after: Option<Position>,
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
        let after = match query.get("cursor") {
            None => None,
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
                Some(Position {
                    t: token.t,
                    id: token.id,
                })
            }
        };
        Ok(PageRequest {
            limit,
            after,
            scope,
        })
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
            t: position.t,
            id: position.id,
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
