//! The database: backend selection, pool, transactions, migrations and the helpers every
//! feature's `store.rs` shares. Backend differences stay in this folder and the two migration
//! folders; feature SQL is written once, in the dialect both backends accept (`$n` placeholders,
//! `BIGINT` epoch milliseconds for timestamps, `TEXT` for JSON and exact decimals).

pub mod idempotency;
pub mod leader;
mod pool;
pub mod secrets;

use std::str::FromStr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt, TryStreamExt, stream};
use sqlx::any::{
    AnyConnectOptions, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo, install_default_drivers,
};
use sqlx::{Any, AnyConnection, ConnectOptions, Either, Execute, Executor};

use crate::config::DatabaseTarget;
pub use pool::{Conn, Tx, timed_out};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database. Cloning shares the pool. `&Store` is an executor: each statement takes a
/// pooled connection for its own duration.
#[derive(Clone)]
pub struct Store {
    pool: pool::Pool,
    backend: Backend,
    options: AnyConnectOptions,
    deadline: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreStartError {
    #[error("cannot create the SQLite directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid DATABASE_URL: {0}")]
    Url(String),
    #[error("database unreachable after {waited_s} s: {cause}")]
    Unreachable { waited_s: u64, cause: String },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How the pool is sized and bounded.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// The deadline of every statement and of every checkout (`PEAQOS_DATABASE_TIMEOUT_MS`).
    pub deadline: Duration,
    pub max_connections: usize,
}

impl PoolSettings {
    pub fn for_backend(backend: Backend, deadline: Duration) -> PoolSettings {
        PoolSettings {
            deadline,
            max_connections: match backend {
                Backend::Postgres => 16,
                Backend::Sqlite => 8,
            },
        }
    }
}

impl Store {
    /// Opens the pool, retrying an unreachable database until `wait` has passed. Statements and
    /// checkouts are bounded by `deadline`.
    pub async fn connect(
        target: &DatabaseTarget,
        wait: Duration,
        deadline: Duration,
    ) -> Result<Store, StoreStartError> {
        install_default_drivers();
        let (url, backend) = match target {
            DatabaseTarget::Postgres(url) => (url.expose().to_string(), Backend::Postgres),
            DatabaseTarget::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| StoreStartError::CreateDir {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    Backend::Sqlite,
                )
            }
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|err| StoreStartError::Url(redact_url(&err.to_string(), &url)))?
            .disable_statement_logging();
        let settings = PoolSettings::for_backend(backend, deadline);
        let pool = pool::Pool::builder(pool::Connector {
            options: options.clone(),
            backend,
            deadline,
        })
        .max_size(settings.max_connections)
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|err| StoreStartError::Url(err.to_string()))?;
        let store = Store {
            pool,
            backend,
            options,
            deadline,
        };

        let started = std::time::Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            match store.acquire().await {
                Ok(_) => return Ok(store),
                Err(err) if started.elapsed() < wait => {
                    tracing::warn!(error = %redact_url(&err.to_string(), &url), "database not reachable yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(err) => {
                    return Err(StoreStartError::Unreachable {
                        waited_s: started.elapsed().as_secs(),
                        cause: redact_url(&err.to_string(), &url),
                    });
                }
            }
        }
    }

    /// Applies the migrations, on a connection of their own (outside the pool and its
    /// statement deadline: a migration may take long).
    pub async fn migrate(&self) -> Result<(), StoreStartError> {
        let migrator = match self.backend {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        };
        let mut conn: AnyConnection =
            self.options
                .connect()
                .await
                .map_err(|err| StoreStartError::Unreachable {
                    waited_s: 0,
                    cause: err.to_string(),
                })?;
        migrator.run(&mut conn).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The statement deadline.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Connections open and idle, and the pool's maximum, for metrics.
    pub fn pool_status(&self) -> (usize, usize, usize) {
        let status = self.pool.status();
        (status.size, status.available, status.max_size)
    }

    /// Begins a write transaction. SQLite takes its write lock up front (`BEGIN IMMEDIATE`) so
    /// that two writers queue on the busy timeout instead of failing on a lock upgrade.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let conn = self.acquire().await?;
        self.begin_on(conn).await
    }

    /// One connection for a request that reads, then writes ([`Store::begin_on`]).
    pub async fn acquire(&self) -> Result<Conn, sqlx::Error> {
        match tokio::time::timeout(self.deadline, self.pool.get()).await {
            Ok(Ok(object)) => Ok(Conn::new(object, self.deadline)),
            Ok(Err(err)) => Err(pool::pool_error(err)),
            Err(_) => Err(timed_out()),
        }
    }

    /// Begins a write transaction (as [`Store::begin`]) on a connection already held.
    pub async fn begin_on(&self, conn: Conn) -> Result<Tx, sqlx::Error> {
        let statement = match self.backend {
            Backend::Postgres => "BEGIN",
            Backend::Sqlite => "BEGIN IMMEDIATE",
        };
        Tx::begin(conn, statement).await
    }

    /// Serialises the writers of one row for the rest of `tx` (a pairing's spend, say):
    /// `SELECT … FOR UPDATE` on PostgreSQL. On SQLite every write transaction already holds the
    /// database's write lock (`BEGIN IMMEDIATE`), across processes too. `false` when the row
    /// does not exist.
    pub async fn lock_row(
        &self,
        tx: &mut Tx,
        table: &'static str,
        id: &str,
    ) -> Result<bool, sqlx::Error> {
        self.lock_row_by(tx, table, "id", id).await
    }

    /// [`Store::lock_row`] for a table keyed by `column`.
    pub async fn lock_row_by(
        &self,
        tx: &mut Tx,
        table: &'static str,
        column: &'static str,
        key: &str,
    ) -> Result<bool, sqlx::Error> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let found: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT {column} FROM {table} WHERE {column} = $1{lock}"
        )))
        .bind(key.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        Ok(found.is_some())
    }

    /// A trivial query, for readiness.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(self).await.map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close();
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

impl<'c> Executor<'c> for &'c Store {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let results = async move {
            let mut conn = self.acquire().await?;
            (&mut conn).fetch_many(query).try_collect::<Vec<_>>().await
        };
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
        async move {
            let mut conn = self.acquire().await?;
            (&mut conn).fetch_optional(query).await
        }
        .boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        async move {
            let mut conn = self.acquire().await?;
            (&mut conn).prepare_with(sql, parameters).await
        }
        .boxed()
    }

    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        async move {
            let mut conn = self.acquire().await?;
            (&mut conn).describe(sql).await
        }
        .boxed()
    }
}

/// A keyset position: the `(createdAt, id)` of the last row served. Lists read the rows after it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub t: i64,
    pub id: String,
}

/// A change ready to commit, with the value to answer: handlers commit it, together with the
/// idempotency record when there is one (`http::idempotency::commit`).
pub struct Staged<T> {
    pub tx: Tx,
    pub value: T,
}

/// Whether an error means "the database cannot be reached" (answered 503), as opposed to a bug.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // PostgreSQL: connection exceptions (08…), shutdown and "cannot connect now" (57P0…),
            // insufficient resources (53…). SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6) after
            // the busy timeout, SQLITE_CANTOPEN (14).
            code.starts_with("08")
                || code.starts_with("57P0")
                || code.starts_with("53")
                || matches!(code.as_ref(), "5" | "6" | "14")
        }),
        _ => false,
    }
}

/// Whether an error is a violation of a unique constraint.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn redact_url(message: &str, url: &str) -> String {
    message.replace(url, "[DATABASE_URL]")
}

/// One page of a machine's rows in `table`, oldest first, after the keyset position `after`
/// (`created_at`, `id`). Every machine-scoped list (pairings, agents, endpoints) reads this way.
pub async fn machine_page<T>(
    store: &Store,
    table: &str,
    columns: &str,
    machine_id: &str,
    after: Option<&Position>,
    limit: i64,
    from_row: fn(&sqlx::any::AnyRow) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, sqlx::Error> {
    let (t, id) = after.map_or((i64::MIN, String::new()), |p| (p.t, p.id.clone()));
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM {table}
         WHERE machine_id = $1 AND (created_at > $2 OR (created_at = $2 AND id > $3))
         ORDER BY created_at, id LIMIT $4"
    )))
    .bind(machine_id.to_string())
    .bind(t)
    .bind(id)
    .bind(limit)
    .fetch_all(store)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Reads a row's columns in order. Decoders read their table's `COLUMNS` list this way, so one
/// decoder serves the table's own `SELECT` and a join that lists a second table's columns after
/// the first's (by name, the two would collide).
pub struct Columns<'r> {
    row: &'r sqlx::any::AnyRow,
    next: usize,
}

impl<'r> Columns<'r> {
    pub fn new(row: &'r sqlx::any::AnyRow) -> Self {
        Columns { row, next: 0 }
    }

    /// The next column's value.
    pub fn take<T>(&mut self) -> Result<T, sqlx::Error>
    where
        T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
    {
        use sqlx::Row;
        let value = self.row.try_get(self.next)?;
        self.next += 1;
        Ok(value)
    }

    /// The next column, a JSON document stored as text.
    pub fn take_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, sqlx::Error> {
        let text: &str = self.take()?;
        serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }
}

/// A JSON document column's text, as [`Columns::take_json`] reads it back. Only for values whose
/// serialisation cannot fail (plain data, string-keyed maps).
pub fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("stored JSON values serialise")
}

/// `columns` (a comma-separated list) with each name qualified by `table`, for joins.
pub fn qualified(table: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{table}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A new server-assigned id: prefix + ULID (URL-safe, time-sortable, random).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", ulid::Ulid::generate())
}

/// `n` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes
}

/// Builds SQL whose `WHERE` clause depends on optional filters, numbering `$n` placeholders
/// (the `Any` driver's query builder writes `?`, which PostgreSQL does not accept).
pub struct SqlBuilder {
    sql: String,
    args: sqlx::any::AnyArguments,
    count: usize,
}

impl SqlBuilder {
    pub fn new(sql: &str) -> Self {
        SqlBuilder {
            sql: sql.to_string(),
            args: Default::default(),
            count: 0,
        }
    }

    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends `$n` and binds `value` to it.
    pub fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'static + Send + sqlx::Encode<'static, Any> + sqlx::Type<Any>,
    {
        use sqlx::Arguments;
        self.count += 1;
        self.sql.push('$');
        self.sql.push_str(&self.count.to_string());
        self.args
            .add(value)
            .expect("encoding a bound value into Any arguments");
        self
    }

    pub fn build(self) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
        sqlx::query_with(sqlx::AssertSqlSafe(self.sql), self.args)
    }
}
