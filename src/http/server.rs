//! The HTTP/1.1 listener: accepts connections up to a cap and cuts off clients that are too slow
//! (a slow-loris attack, or a client that went away without closing), with graceful shutdown.
//!
//! Per connection, with the settings of [`ConnectionLimits`]:
//! - a request's headers must arrive within `header_read`, counted from the first byte of the
//!   request, or from the moment the connection was opened for its first request;
//! - between requests, a keep-alive connection may stay idle for `keep_alive`;
//! - the request body must arrive within `body_read` (enforced where the body is read, see
//!   `http::body`);
//! - at most `max_connections` connections are open at once; beyond that the listener stops
//!   accepting until one closes (the kernel queues the rest).
//!
//! A connection past one of its deadlines is closed. A request being handled is never cut off.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

/// How long and how many clients may hold the server's connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read: Duration,
    pub keep_alive: Duration,
    pub max_connections: usize,
}

/// What one connection is doing, for its deadline.
struct Activity {
    /// Requests being handled (HTTP/1.1: 0 or 1).
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` of the last phase change: the connection went idle, or the
    /// first byte of a request head arrived.
    since_ms: AtomicU64,
    /// 0 idle and never served, 1 idle after a response, 2 reading a request head.
    phase: AtomicU64,
    changed: Notify,
    epoch: Instant,
}

const FRESH: u64 = 0;
const IDLE: u64 = 1;
const HEAD: u64 = 2;

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            since_ms: AtomicU64::new(0),
            phase: AtomicU64::new(FRESH),
            changed: Notify::new(),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Bytes arrived: an idle connection starts reading a request head.
    fn read_some(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0 && self.phase.load(Ordering::Relaxed) != HEAD
        {
            self.since_ms.store(self.now_ms(), Ordering::Relaxed);
            self.phase.store(HEAD, Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
    }

    fn request_finished(&self) {
        self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        self.phase.store(IDLE, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// Resolves when the connection has passed a deadline of `limits`.
    async fn expired(&self, limits: ConnectionLimits) {
        loop {
            let notified = self.changed.notified();
            if self.in_flight.load(Ordering::Relaxed) > 0 {
                notified.await;
                continue;
            }
            let allowed = match self.phase.load(Ordering::Relaxed) {
                IDLE => limits.keep_alive,
                _ => limits.header_read,
            };
            let deadline =
                self.epoch + Duration::from_millis(self.since_ms.load(Ordering::Relaxed)) + allowed;
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    if self.in_flight.load(Ordering::Relaxed) == 0
                        && Instant::now() >= self.epoch
                            + Duration::from_millis(self.since_ms.load(Ordering::Relaxed))
                            + allowed
                    {
                        return;
                    }
                }
                () = notified => {}
            }
        }
    }
}

/// The connection's socket, noting when bytes arrive.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read_some();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Marks the request finished when the response future completes or is dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http1 = hyper::server::conn::http1::Builder::new();
    // The deadlines are this module's (see `Activity`); hyper's own header timer would also
    // count keep-alive idle time as header time.
    http1.keep_alive(true).header_read_timeout(None);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the slot semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    accept_error(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let io = TokioIo::new(Tracked {
            stream,
            activity: activity.clone(),
        });
        let router = router.clone();
        let requests = activity.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            requests.request_started();
            let in_flight = InFlight(requests.clone());
            let router = router.clone();
            async move {
                let response = router.oneshot(req.map(axum::body::Body::new)).await;
                drop(in_flight);
                Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
            }
        });
        let connection = graceful.watch(http1.serve_connection(io, service));
        tokio::spawn(async move {
            tokio::select! {
                served = connection => {
                    if let Err(err) = served {
                        tracing::debug!(error = %err, "connection ended with an error");
                    }
                }
                () = activity.expired(limits) => {
                    tracing::debug!("closing a connection past its header or keep-alive deadline");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Accept errors are mostly transient (a client that reset before accept, or no file
/// descriptors left): wait a moment instead of spinning.
async fn accept_error(err: io::Error) {
    let transient = matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    );
    if !transient {
        tracing::warn!(error = %err, "accepting a connection failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
