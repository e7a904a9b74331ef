//! The real server binary as a child process: for what an in-process server cannot show — its
//! logs as written, a clean exit on SIGTERM, and a crash (SIGKILL) in the middle of a request.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_peaqos-orchestrator");

pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
    _dir: tempfile::TempDir,
}

/// A process dropped without `terminate` or `kill` (a failing test) is killed.
impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the process wrote, and how it ended.
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ServerProcess {
    /// Starts the binary with JSON logs at debug on a free loopback port, in a temp dir, on
    /// `database_url` (else a SQLite file in that dir), with only `env` beyond that; waits for
    /// `/health`.
    pub async fn spawn(database_url: Option<&str>, env: &[(&str, &str)]) -> ServerProcess {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let database_url = database_url.map_or_else(
            || format!("sqlite://{}", dir.path().join("o.db").display()),
            str::to_string,
        );
        let mut command = Command::new(BIN);
        command
            .current_dir(dir.path())
            .env_clear()
            .env("PEAQOS_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", database_url)
            .env("PEAQOS_LOG_FORMAT", "json")
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        // Drained as the server writes, so a full pipe never blocks its logging.
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                pipe.read_to_string(&mut text).unwrap();
                text
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..150 {
            if reqwest::get(format!("{base}/health")).await.is_ok() {
                return ServerProcess {
                    child,
                    base,
                    stdout: Some(stdout),
                    stderr: Some(stderr),
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server did not start");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    async fn wait(mut self) -> Exited {
        tokio::task::spawn_blocking(move || {
            let status = self.child.wait().unwrap();
            Exited {
                status,
                stdout: self.stdout.take().unwrap().join().unwrap(),
                stderr: self.stderr.take().unwrap().join().unwrap(),
            }
        })
        .await
        .unwrap()
    }

    /// SIGTERM, then waits for the exit.
    pub async fn terminate(self) -> Exited {
        self.signal("-TERM");
        self.wait().await
    }

    /// SIGKILL: the process dies wherever it is, as in a crash.
    pub async fn kill(self) -> Exited {
        self.signal("-KILL");
        self.wait().await
    }
}
