//! The operator console at `/console`: static pages and ES modules embedded in the binary (from
//! `console/`), which drive the public `/api/v1` JSON API from the operator's browser. The server
//! adds nothing the API does not already offer: no session, no cookie, no proxy. The browser keeps
//! the API key in `sessionStorage` and sends it as `x-api-key` itself, so a key never reaches a
//! URL or a log line. `PEAQOS_CONSOLE_ENABLED=false` leaves the routes out (404).
//!
//! Not part of the API: the routes sit outside `/api/v1` and outside the OpenAPI document.

mod routes;

pub use routes::{CONTENT_SECURITY_POLICY, routes};
