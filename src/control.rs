//! The control socket of `mimi dp serve` and `mimi resolver serve` (`[control] socket`,
//! docs/operations.md), and `mimi ctl`'s side of it: a Unix socket of mode 0600, so only
//! the server's user (and root) may steer the server; one JSON request line, one JSON
//! reply line per connection. The server's own loop carries the commands out, beside the
//! signals ([`Job`]), so a command acts exactly as the signal of the same meaning does.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::debug;

/// The longest request line read.
const MAX_REQUEST: u64 = 64 * 1024;
/// How long a command may take before `mimi ctl` gives up (a reload of a big zone).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(600);

/// One command: `status`, `reload`, `zone-status`, `flush`, `stats` or `stop`, with a zone
/// for those that take one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Request {
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// The answer: done or not, a line for people, and the details for `--json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    pub ok: bool,
    pub message: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Reply {
    pub fn done(message: impl Into<String>, data: serde_json::Value) -> Reply {
        Reply {
            ok: true,
            message: message.into(),
            data,
        }
    }

    pub fn refused(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            message: message.into(),
            data: serde_json::Value::Null,
        }
    }
}

/// A request handed to the server's loop, and where its reply goes.
pub struct Job {
    pub request: Request,
    pub reply: oneshot::Sender<Reply>,
}

#[derive(Debug, Error)]
pub enum ControlError {
    // The io error is in the message, not the source chain, so `mimi ctl` says it once.
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("control socket {path}: {what} is not a socket; not replacing it")]
    NotASocket { path: PathBuf, what: &'static str },
    #[error("control socket {path}: bad reply: {reason}")]
    BadReply { path: PathBuf, reason: String },
    #[error("control socket {path}: no reply within {after:?}")]
    Timeout { path: PathBuf, after: Duration },
}

/// Listens on `path` (mode 0600; a socket left by an earlier run is replaced, any other
/// file is an error). Requests come out of the receiver as [`Job`]s.
pub fn listen(path: &Path) -> Result<(mpsc::Receiver<Job>, JoinHandle<()>), ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path).map_err(io)?,
        Ok(_) => {
            return Err(ControlError::NotASocket {
                path: path.to_path_buf(),
                what: "the file there",
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_one(stream, tx).await {
                    debug!("control connection: {e}");
                }
            });
        }
    });
    Ok((rx, task))
}

async fn serve_one(stream: UnixStream, jobs: mpsc::Sender<Job>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let reply = match serde_json::from_str::<Request>(line.trim()) {
        Err(e) => Reply::refused(format!("not a control request: {e}")),
        Ok(request) => {
            let (tx, rx) = oneshot::channel();
            let job = Job { request, reply: tx };
            match jobs.send(job).await {
                Ok(()) => rx
                    .await
                    .unwrap_or_else(|_| Reply::refused("the server is stopping")),
                Err(_) => Reply::refused("the server is stopping"),
            }
        }
    };
    let mut text = serde_json::to_string(&reply).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

/// A server's control socket, when its config names one: the requests for its loop, and
/// the socket removed when the server stops.
pub struct Control {
    open: Option<(mpsc::Receiver<Job>, JoinHandle<()>, PathBuf)>,
}

impl Control {
    /// Listens on `path`, if any ([`listen`]).
    pub fn open(path: Option<&Path>) -> Result<Control, ControlError> {
        let open = match path {
            Some(path) => {
                let (jobs, task) = listen(path)?;
                tracing::info!(socket = %path.display(), "control socket (mimi ctl)");
                Some((jobs, task, path.to_path_buf()))
            }
            None => None,
        };
        Ok(Control { open })
    }

    /// The next request; without a socket, never (so a loop's `select!` can always ask).
    pub async fn next(&mut self) -> Option<Job> {
        match &mut self.open {
            Some((jobs, _, _)) => jobs.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Stops listening and removes the socket.
    pub fn close(self) {
        if let Some((_, task, path)) = self.open {
            task.abort();
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Sends `request` to the server at `path` and waits for its reply (`mimi ctl`).
pub async fn send(path: &Path, request: &Request) -> Result<Reply, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let exchange = async {
        let stream = UnixStream::connect(path).await.map_err(io)?;
        let (read, mut write) = stream.into_split();
        let mut text = serde_json::to_string(request).map_err(|e| ControlError::BadReply {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        write.write_all(text.as_bytes()).await.map_err(io)?;
        let mut line = String::new();
        BufReader::new(read.take(16 * 1024 * 1024))
            .read_line(&mut line)
            .await
            .map_err(io)?;
        serde_json::from_str(line.trim()).map_err(|e| ControlError::BadReply {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    };
    tokio::time::timeout(CLIENT_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(ControlError::Timeout {
                path: path.to_path_buf(),
                after: CLIENT_TIMEOUT,
            })
        })
}

/// `k=v k=v` (the servers' counter lines) as a JSON object of numbers.
pub fn counters_json(summary: &str) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = summary
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = v
                .parse::<u64>()
                .map_or_else(|_| serde_json::Value::from(v), serde_json::Value::from);
            (k.to_string(), v)
        })
        .collect();
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_reaches_the_loop_and_its_reply_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let (mut jobs, task) = listen(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let server = tokio::spawn(async move {
            let job = jobs.recv().await.unwrap();
            let zone = job.request.zone.clone();
            let _ = job.reply.send(Reply::done(
                format!("{} done", job.request.command),
                serde_json::json!({ "zone": zone }),
            ));
        });
        let reply = send(
            &path,
            &Request {
                command: "status".into(),
                zone: Some("a.".into()),
            },
        )
        .await
        .unwrap();
        assert_eq!(reply.message, "status done");
        assert_eq!(reply.data["zone"], "a.");
        server.await.unwrap();
        task.abort();
        // A regular file where the socket would go is left alone.
        let file = dir.path().join("file");
        std::fs::write(&file, "keep").unwrap();
        assert!(matches!(
            listen(&file),
            Err(ControlError::NotASocket { .. })
        ));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
        assert_eq!(
            counters_json("queries=3 refused=0")["queries"],
            serde_json::json!(3)
        );
    }
}
