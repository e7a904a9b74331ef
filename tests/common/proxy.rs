//! A TCP proxy on loopback that a test can cut and restore, or black-hole, to take a database
//! "down" without touching the real server other tests use.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    silent: watch::Sender<bool>,
}

/// Copies `from` to `to` while the path is not silent; while it is, reads nothing (the peer's
/// bytes pile up unanswered, as on a network path that drops everything).
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut silent: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if *silent.borrow_and_update() {
            if silent.changed().await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if to.write_all(&buf[..n]).await.is_err() { return },
            },
            _ = silent.changed() => {}
        }
    }
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let (cut, _) = watch::channel(0u64);
        let (silent, _) = watch::channel(false);
        let (accept_down, accept_cut, accept_silent) = (down.clone(), cut.clone(), silent.clone());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if accept_down.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut_rx = accept_cut.subscribe();
                let mut silent_rx = accept_silent.subscribe();
                tokio::spawn(async move {
                    // A connection made while the path is silent is accepted and then left
                    // unanswered, like one to a black-holed host behind a load balancer.
                    while *silent_rx.borrow_and_update() {
                        if silent_rx.changed().await.is_err() {
                            return;
                        }
                    }
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::select! {
                        _ = pump(in_read, out_write, silent_rx.clone()) => {}
                        _ = pump(out_read, in_write, silent_rx) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            down,
            cut,
            silent,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub fn take_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn bring_up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// Keeps every connection open but forwards nothing, either way, and accepts new ones
    /// without ever answering: the database "accepts but never answers".
    pub fn black_hole(&self) {
        self.silent.send_replace(true);
    }

    /// Ends [`Proxy::black_hole`]: held bytes flow again.
    pub fn restore(&self) {
        self.silent.send_replace(false);
    }
}
