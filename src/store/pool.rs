//! The connection pool and the two ways a feature talks to the database: a pooled [`Conn`] and
//! a write transaction [`Tx`] on one. Both are `sqlx` executors, so feature SQL reads the same
//! as with sqlx's own pool; what differs is what this pool guarantees:
//!
//! - **Every statement has a deadline** (`PEAQOS_DATABASE_TIMEOUT_MS`). A database that accepts
//!   connections but never answers (a black-holed network path) turns into an I/O error —
//!   `503 SERVICE_UNAVAILABLE` — within that bound, never a hang. A connection whose statement
//!   timed out or failed with an I/O error is discarded (its socket closed), not reused.
//! - **Connections go back without a round trip.** sqlx's own pool pings every connection it
//!   takes back (a Sync/ReadyForQuery exchange), which doubles the round trips of a one-query
//!   request and can hang forever on a silent socket, stranding a pool slot (sqlx issue 4349).
//!   This pool takes a connection back as it is; sqlx itself drains whatever a dropped query left
//!   unread before the connection's next statement (under that statement's deadline). A
//!   connection idle for longer than [`IDLE_CHECK_AFTER`] is pinged, with the deadline, before
//!   it is reused, so connections the server closed while idle are replaced quietly.
//! - **A transaction is never returned open.** [`Tx`] counts as open from before its `BEGIN` is
//!   sent; dropped without [`Tx::commit`], its connection is rolled back (with the deadline) in
//!   the background before anyone else gets it, or discarded when that fails. (sqlx's
//!   `Transaction` can return an open transaction to its pool when a `BEGIN` is cancelled, sqlx
//!   issue 4393.)

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt, TryStreamExt, stream};
use sqlx::any::{AnyConnectOptions, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::{Any, AnyConnection, ConnectOptions, Connection, Either, Execute, Executor};

use super::Backend;

/// A connection idle for longer than this is pinged before it is handed out again.
pub const IDLE_CHECK_AFTER: Duration = Duration::from_secs(30);

/// SQLite settings of every connection: WAL lets readers run beside the one writer; the busy
/// timeout makes writers from several processes queue instead of failing (the statement
/// deadline still bounds the wait).
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode = WAL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
];

/// Opens connections for the pool.
pub(super) struct Connector {
    pub options: AnyConnectOptions,
    pub backend: Backend,
    pub deadline: Duration,
}

impl managed::Manager for Connector {
    type Type = AnyConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<AnyConnection, sqlx::Error> {
        let mut conn = self.options.connect().await?;
        if self.backend == Backend::Sqlite {
            for pragma in SQLITE_PRAGMAS {
                conn.execute(sqlx::raw_sql(*pragma)).await?;
            }
        }
        Ok(conn)
    }

    async fn recycle(
        &self,
        conn: &mut AnyConnection,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        if metrics.last_used() < IDLE_CHECK_AFTER {
            return Ok(());
        }
        match tokio::time::timeout(self.deadline, conn.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(RecycleError::Backend(err)),
            Err(_) => Err(RecycleError::message(
                "idle connection did not answer a ping",
            )),
        }
    }
}

pub(super) type Pool = managed::Pool<Connector>;

/// The error of a statement or checkout that ran past the deadline: an I/O timeout, which
/// answers `503 SERVICE_UNAVAILABLE` like any unreachable database.
pub fn timed_out() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the database did not answer within PEAQOS_DATABASE_TIMEOUT_MS",
    ))
}

pub(super) fn pool_error(err: PoolError<sqlx::Error>) -> sqlx::Error {
    match err {
        PoolError::Backend(err) => err,
        PoolError::Timeout(_) => timed_out(),
        PoolError::Closed => sqlx::Error::PoolClosed,
        PoolError::NoRuntimeSpecified => {
            sqlx::Error::Configuration("the connection pool has no runtime".into())
        }
        PoolError::PostCreateHook(err) => sqlx::Error::Configuration(err.to_string().into()),
    }
}

/// A connection held from the pool. It goes back when dropped, unless a statement on it timed
/// out or failed with an I/O error: then it is closed.
pub struct Conn {
    object: Option<Object<Connector>>,
    deadline: Duration,
    broken: bool,
}

impl Conn {
    pub(super) fn new(object: Object<Connector>, deadline: Duration) -> Conn {
        Conn {
            object: Some(object),
            deadline,
            broken: false,
        }
    }
}

impl Conn {
    /// Closes the connection when dropped instead of returning it to the pool.
    pub fn discard(&mut self) {
        self.broken = true;
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("broken", &self.broken)
            .finish()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.broken
            && let Some(object) = self.object.take()
        {
            // Out of the pool, then closed (its socket dropped; no goodbye on a silent path).
            drop(Object::take(object));
        }
    }
}

/// Runs one statement under the deadline; marks the connection broken when it timed out or the
/// connection failed.
async fn guarded<T>(
    broken: &mut bool,
    deadline: Duration,
    statement: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    match tokio::time::timeout(deadline, statement).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => {
            if super::is_unavailable(&err) {
                *broken = true;
            }
            Err(err)
        }
        Err(_) => {
            *broken = true;
            Err(timed_out())
        }
    }
}

impl<'c> Executor<'c> for &'c mut Conn {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let Conn {
            object,
            deadline,
            broken,
        } = self;
        let raw: &mut AnyConnection = object.as_mut().expect("a live connection");
        // Results are read whole under one deadline: every query here returns a bounded page.
        let results = guarded(
            broken,
            *deadline,
            raw.fetch_many(query).try_collect::<Vec<_>>(),
        );
        stream::once(results)
            .map_ok(|items| stream::iter(items.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let Conn {
            object,
            deadline,
            broken,
        } = self;
        let raw: &mut AnyConnection = object.as_mut().expect("a live connection");
        guarded(broken, *deadline, raw.fetch_optional(query)).boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        let Conn {
            object,
            deadline,
            broken,
        } = self;
        let raw: &mut AnyConnection = object.as_mut().expect("a live connection");
        guarded(broken, *deadline, raw.prepare_with(sql, parameters)).boxed()
    }

    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        let Conn {
            object,
            deadline,
            broken,
        } = self;
        let raw: &mut AnyConnection = object.as_mut().expect("a live connection");
        guarded(broken, *deadline, raw.describe(sql)).boxed()
    }
}

/// A write transaction on one pooled connection. Every state change and its audit events commit
/// in one of these. Statements run on it as on a [`Conn`] (`&mut **tx` in a store function that
/// takes `tx: &mut Tx`).
pub struct Tx {
    conn: Option<Conn>,
    /// `BEGIN` may have been sent and neither `COMMIT` nor `ROLLBACK` has succeeded.
    open: bool,
}

impl Tx {
    pub(super) async fn begin(conn: Conn, begin: &'static str) -> Result<Tx, sqlx::Error> {
        // Open before `BEGIN` is sent: a `BEGIN` that is cancelled or times out half-way still
        // gets its rollback (or its connection discarded).
        let mut tx = Tx {
            conn: Some(conn),
            open: true,
        };
        sqlx::raw_sql(begin).execute(&mut *tx).await?;
        Ok(tx)
    }

    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql("COMMIT").execute(&mut *self).await?;
        self.open = false;
        Ok(())
    }

    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql("ROLLBACK").execute(&mut *self).await?;
        self.open = false;
        Ok(())
    }
}

impl Deref for Tx {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("a live transaction")
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("a live transaction")
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if !self.open || conn.broken {
            return;
        }
        // Rolled back before the connection is handed out again; discarded if that fails.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.is_err() {
                        conn.discard();
                    }
                });
            }
            Err(_) => conn.discard(),
        }
    }
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx").field("open", &self.open).finish()
    }
}
