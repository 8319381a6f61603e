//! The dashboard: a token-guarded web page served by the daemon. The
//! [sampler](super::sampler) takes a snapshot of the daemon once a second; this module
//! pushes each one, and every [`Activity`](super::activity::Activity) event as it
//! happens, to open pages over server-sent events, and answers `/api/snapshot`.
//!
//! The page's HTML, CSS and JavaScript are compiled into the binary; nothing is loaded
//! from anywhere else. Every data path needs the token (a random 32-byte hex string kept
//! in the data dir, mode 0600); the static assets do not (they hold no data).

use super::activity::ActivityEvent;
use super::http::{Request, Response};
use crate::daemon::net::Net;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// File name of the dashboard token inside the data dir.
pub const TOKEN_NAME: &str = "dashboard.token";
/// Events queued for one page before it is dropped as too slow.
const PAGE_QUEUE: usize = 64;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

/// Reads the token from the data dir, or makes one (mode 0600) if there is none.
pub fn load_or_create_token(data_dir: &Path) -> Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(TOKEN_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) if valid_token(text.trim()) => return Ok(text.trim().to_owned()),
        Ok(_) => tracing::warn!(path = %path.display(), "replacing a malformed dashboard token"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let bytes: [u8; 32] = rand::random();
    let token = crate::daemon::net::hex(&bytes);
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{token}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

fn valid_token(t: &str) -> bool {
    t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Compares without leaking where the first difference is.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The running dashboard's shared state.
pub struct Dashboard {
    net: Net,
    token: String,
    /// The bound address, to refuse requests naming another host (DNS rebinding).
    local: SocketAddr,
    snapshots: watch::Receiver<Arc<String>>,
    /// The daemon's tasks: each page's stream runs as one of them.
    tasks: tokio_util::task::TaskTracker,
    /// Byte counters per peer and protocol, one sample a second, oldest first.
    history: super::sampler::History,
}

/// Starts the sampler; the returned dashboard answers requests.
pub fn start(
    net: Net,
    token: String,
    local: SocketAddr,
    cancel: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> Arc<Dashboard> {
    let (tx, rx) = watch::channel(Arc::new(String::from("{}")));
    let history = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
    tasks.spawn(super::sampler::run(
        net.clone(),
        tx,
        history.clone(),
        cancel,
    ));
    Arc::new(Dashboard {
        net,
        token,
        local,
        snapshots: rx,
        tasks: tasks.clone(),
        history,
    })
}

impl Dashboard {
    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: Request) -> Response {
        match req.path.as_str() {
            "/app.js" => return Response::body("text/javascript; charset=utf-8", APP_JS),
            "/style.css" => return Response::body("text/css; charset=utf-8", STYLE_CSS),
            "/favicon.svg" | "/favicon.ico" => return Response::body("image/svg+xml", FAVICON_SVG),
            _ => {}
        }
        if !self.host_ok(req.host.as_deref()) {
            return Response::text(403, "wrong Host header\n");
        }
        let authorized = req.param("token").is_some_and(|t| same(t, &self.token));
        match (req.path.as_str(), authorized) {
            ("/" | "/index.html", true) => Response::body("text/html; charset=utf-8", INDEX_HTML),
            ("/" | "/index.html", false) => Response::Full {
                status: 401,
                content_type: "text/html; charset=utf-8",
                body: UNAUTHORIZED.as_bytes().to_vec(),
                headers: Vec::new(),
            },
            ("/api/snapshot", true) => Response::body(
                "application/json",
                self.snapshots.borrow().as_bytes().to_vec(),
            ),
            ("/api/events", true) => Response::Events(self.events()),
            (p, false) if p.starts_with("/api/") => {
                Response::text(401, "a valid token is needed: run `pheromone dashboard`\n")
            }
            _ => Response::text(404, "not found\n"),
        }
    }

    /// On a loopback address, only loopback host names: a page on another site that
    /// rebinds its name to 127.0.0.1 cannot read the dashboard (it lacks the token too).
    fn host_ok(&self, host: Option<&str>) -> bool {
        if !self.local.ip().is_loopback() {
            return true;
        }
        let Some(host) = host else { return true };
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// A page's live stream: the current snapshot, the recent activity, then each new
    /// snapshot and event.
    fn events(&self) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel(PAGE_QUEUE);
        let mut snapshots = self.snapshots.clone();
        let mut activity = self.net.activity().subscribe();
        let recent = self.net.activity().recent();
        let history: Vec<super::sampler::TrafficSample> = self
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        self.tasks.spawn(async move {
            let history = serde_json::to_string(&history).unwrap_or_else(|_| "[]".to_owned());
            if tx.send(sse("history", &history)).await.is_err() {
                return;
            }
            let first = snapshots.borrow_and_update().clone();
            if tx.send(sse("snapshot", &first)).await.is_err() {
                return;
            }
            for event in recent {
                if tx.try_send(activity_sse(&event)).is_err() {
                    break;
                }
            }
            loop {
                let line = tokio::select! {
                    changed = snapshots.changed() => match changed {
                        Ok(()) => sse("snapshot", &snapshots.borrow_and_update().clone()),
                        Err(_) => return,
                    },
                    event = activity.recv() => match event {
                        Ok(event) => activity_sse(&event),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return,
                    },
                    () = tx.closed() => return,
                };
                // A page that does not keep up is dropped; it reconnects and starts over.
                if tx.try_send(line).is_err() {
                    return;
                }
            }
        });
        rx
    }
}

fn sse(event: &str, data: &str) -> String {
    // JSON has no raw newlines, so the data is one `data:` line.
    format!("event: {event}\ndata: {data}\n\n")
}

fn activity_sse(event: &ActivityEvent) -> String {
    sse(
        "activity",
        &serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned()),
    )
}

const UNAUTHORIZED: &str = "<!doctype html><html><head><meta charset=\"utf-8\">\
<title>pheromone: token needed</title><link rel=\"stylesheet\" href=\"/style.css\"></head>\
<body class=\"refused\"><main><h1>This dashboard needs its token</h1>\
<p>Run <code>pheromone dashboard</code> on the machine of the daemon and open the URL it \
prints.</p></main></body></html>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
        assert!(valid_token(&"a".repeat(64)));
        assert!(!valid_token(&"g".repeat(64)));
    }

    #[test]
    fn the_token_is_kept_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let t1 = load_or_create_token(dir.path()).expect("token");
        let t2 = load_or_create_token(dir.path()).expect("token");
        assert_eq!(t1, t2);
        assert!(valid_token(&t1));
        let mode = std::fs::metadata(dir.path().join(TOKEN_NAME))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
