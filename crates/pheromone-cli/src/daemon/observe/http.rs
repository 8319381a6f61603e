//! A small HTTP/1.1 server for the daemon's metrics and dashboard: GET only, one request
//! per connection (`Connection: close`), or one server-sent-event stream.
//!
//! It is written for a local operator's browser and a Prometheus scraper, not the open
//! internet, and bounds everything a client can make it hold: connections at once, the
//! request head's size, the time to send it, and the time a response may take to write.
//! It parses only the request line and the headers it needs; a request with a body is
//! refused. Nothing here knows what the pages are: [`Handler`] answers.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a response (or one event of a stream) may take to write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Comment line sent on an idle event stream, so proxies and browsers keep it open and a
/// client that went away is noticed.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The whole answer to a connection over the limit.
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// A parsed request: what the handlers need of it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The path, without the query.
    pub path: String,
    /// The query's `key=value` pairs, percent-decoded.
    pub query: Vec<(String, String)>,
    /// The `Host` header, if any.
    pub host: Option<String>,
    /// The client's address.
    pub peer: SocketAddr,
}

impl Request {
    /// The first value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What a handler answers.
pub enum Response {
    /// A whole body.
    Full {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
        /// Extra headers (`name: value`, no line break).
        headers: Vec<String>,
    },
    /// A server-sent-event stream: each string received is written as is (the handler
    /// formats `event:`/`data:` lines); the stream ends when the sender is dropped.
    Events(mpsc::Receiver<String>),
}

impl Response {
    /// A plain-text answer.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response::Full {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
            headers: Vec::new(),
        }
    }

    /// A body of `content_type`.
    pub fn body(content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response::Full {
            status: 200,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }
}

/// Answers requests.
pub type Handler =
    Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

/// Serves `listener` until `cancel` fires, at most `max_connections` at once (more are
/// closed at once with a 503).
pub async fn serve(
    listener: TcpListener,
    handler: Handler,
    max_connections: usize,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handler = handler.clone();
        let cancel = cancel.clone();
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                tasks.spawn(async move {
                    serve_connection(stream, peer, handler, cancel).await;
                    drop(permit);
                });
            }
            Err(_) => {
                // One non-blocking write and the socket is closed: a flood of connections
                // gets no task and holds nothing.
                tracing::debug!(%peer, limit = max_connections, "too many http connections");
                let _ = stream.try_write(BUSY);
            }
        }
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: Handler,
    cancel: CancellationToken,
) {
    let request = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream, peer)).await {
        Ok(Ok(request)) => request,
        Ok(Err(status)) => {
            let message = match status {
                413 => "request head too large\n",
                405 => "only GET is served here\n",
                _ => "bad request\n",
            };
            let _ = tokio::time::timeout(
                WRITE_TIMEOUT,
                write_full(&mut stream, Response::text(status, message)),
            )
            .await;
            return;
        }
        Err(_) => return,
    };
    tracing::debug!(peer = %request.peer, path = %request.path, "http request");
    let response = tokio::select! {
        _ = cancel.cancelled() => return,
        r = handler(request) => r,
    };
    match response {
        full @ Response::Full { .. } => {
            let _ = tokio::time::timeout(WRITE_TIMEOUT, write_full(&mut stream, full)).await;
        }
        Response::Events(rx) => write_events(stream, rx, cancel).await,
    }
}

/// Reads the request head; an HTTP status on a request we will not serve.
async fn read_head(stream: &mut TcpStream, peer: SocketAddr) -> Result<Request, u16> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() >= MAX_HEAD {
            return Err(413);
        }
        let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
        if n == 0 {
            return Err(400);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if end > MAX_HEAD {
        return Err(413);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| 400u16)?;
    parse_head(head, peer)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses a request head (without its blank line).
pub fn parse_head(head: &str, peer: SocketAddr) -> Result<Request, u16> {
    let mut lines = head.split("\r\n");
    let line = lines.next().ok_or(400u16)?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return Err(400);
    };
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return Err(400);
    }
    if method != "GET" {
        return Err(405);
    }
    let mut host = None;
    for header in lines {
        let (name, value) = header.split_once(':').ok_or(400u16)?;
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        match name.as_str() {
            "host" => host = Some(value.to_owned()),
            // A GET with a body is not one of ours; refuse rather than leave it unread.
            "content-length" if value != "0" => return Err(400),
            "transfer-encoding" => return Err(400),
            _ => {}
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !path.starts_with('/') {
        return Err(400);
    }
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Ok(Request {
        path: percent_decode(path),
        query,
        host,
        peer,
    })
}

/// Decodes `%XX` escapes and `+` (as a space); invalid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Headers every answer carries: nothing is cached, nothing is framed by another site,
/// no script or style from anywhere but this server.
const COMMON_HEADERS: &str = "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n\
Content-Security-Policy: default-src 'self'; img-src 'self' data:; connect-src 'self'\r\n";

async fn write_full(stream: &mut TcpStream, response: Response) -> std::io::Result<()> {
    let Response::Full {
        status,
        content_type,
        body,
        headers,
    } = response
    else {
        return Ok(());
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{COMMON_HEADERS}Connection: close\r\n",
        reason(status),
        body.len()
    );
    for h in headers {
        head.push_str(&h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

async fn write_events(
    mut stream: TcpStream,
    mut rx: mpsc::Receiver<String>,
    cancel: CancellationToken,
) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n{COMMON_HEADERS}Connection: close\r\n\r\n"
    );
    if !write_within(&mut stream, head.as_bytes()).await {
        return;
    }
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return,
            next = rx.recv() => next,
            () = tokio::time::sleep(KEEPALIVE) => Some(": keep-alive\n\n".to_owned()),
        };
        let Some(text) = next else { return };
        if !write_within(&mut stream, text.as_bytes()).await {
            // Gone, or not reading: drop the stream (the sender notices and stops).
            return;
        }
    }
}

/// Writes `bytes` within [`WRITE_TIMEOUT`]; false if that failed or took too long.
async fn write_within(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().expect("addr")
    }

    #[test]
    fn a_get_with_a_query_parses() {
        let r = parse_head(
            "GET /api/snapshot?token=ab%2Fc&x=1+2 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAccept: */*",
            peer(),
        )
        .expect("parses");
        assert_eq!(r.path, "/api/snapshot");
        assert_eq!(r.param("token"), Some("ab/c"));
        assert_eq!(r.param("x"), Some("1 2"));
        assert_eq!(r.host.as_deref(), Some("127.0.0.1:9"));
    }

    #[test]
    fn what_we_do_not_serve_is_refused() {
        assert_eq!(parse_head("POST / HTTP/1.1", peer()).err(), Some(405));
        assert_eq!(parse_head("GET / HTTP/2", peer()).err(), Some(400));
        assert_eq!(parse_head("GET nothing HTTP/1.1", peer()).err(), Some(400));
        assert_eq!(parse_head("GET / HTTP/1.1 extra", peer()).err(), Some(400));
        assert_eq!(
            parse_head("GET / HTTP/1.1\r\nContent-Length: 5", peer()).err(),
            Some(400)
        );
        assert_eq!(
            parse_head("GET / HTTP/1.1\r\nno colon here", peer()).err(),
            Some(400)
        );
    }

    #[test]
    fn bad_escapes_stay_as_they_are() {
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41%"), "A%");
    }
}
