//! Port forwarding through real daemons on loopback: a TCP service exposed on one daemon
//! and forwarded from another, driven with the CLI. The services are tiny std::net
//! servers in the test process; each stops when its [`Server`] guard drops.

#![allow(clippy::disallowed_methods)] // process tests run on the real clock

mod common;

use common::{eventually, Daemon};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest any socket operation of a test may block.
const IO_LIMIT: Duration = Duration::from_secs(30);

/// A TCP server on 127.0.0.1 running `serve` per connection, stopped on drop.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(serve: fn(TcpStream)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                accepted2.fetch_add(1, Ordering::SeqCst);
                let _ = conn.set_read_timeout(Some(IO_LIMIT));
                let _ = conn.set_write_timeout(Some(IO_LIMIT));
                std::thread::spawn(move || serve(conn));
            }
        });
        Self {
            addr,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A body of `len` bytes nobody could produce by accident.
fn body(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

/// HTTP/1.0: reads the request head, answers with `/big` (10 MB) or a 64 KiB body.
fn http(mut conn: TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
        if head.len() > 8192 {
            return;
        }
    }
    let big = head.starts_with(b"GET /big ");
    let data = body(if big { 10 << 20 } else { 64 << 10 });
    let header = format!(
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
        data.len()
    );
    let _ = conn.write_all(header.as_bytes());
    let _ = conn.write_all(&data);
}

/// Reads until EOF, then writes everything back and closes: only works when the
/// client's half-close arrives and the reply still flows after it.
fn echo_after_eof(mut conn: TcpStream) {
    let mut all = Vec::new();
    if conn.read_to_end(&mut all).is_ok() {
        let _ = conn.write_all(&all);
    }
}

/// GETs `path` through `addr`; the body, checked against the Content-Length.
fn get(addr: &str, path: &str) -> Vec<u8> {
    let mut conn = TcpStream::connect(addr).expect("connect to the forward");
    conn.set_read_timeout(Some(IO_LIMIT)).expect("timeout");
    write!(conn, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").expect("request");
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).expect("reply");
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header");
    let head = String::from_utf8_lossy(&reply[..split]).into_owned();
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("length")
        .parse()
        .expect("number");
    let data = reply[split + 4..].to_vec();
    assert_eq!(data.len(), len, "body cut short");
    data
}

/// B exposes `server` as `web` to A; A forwards a local port to it. The listen address.
fn forward_pair(a: &Daemon, b: &Daemon, server: &Server) -> String {
    let peer = a.json(&["connect", &b.addr]);
    assert_eq!(peer["peer_id"], b.peer_id.as_str(), "{peer}");
    // Forward targets are the operator's names, not the ones peers announce.
    a.json(&["alias", "beta", &b.peer_id]);
    let exposed = b.json(&[
        "expose",
        "web",
        "--target",
        &server.addr.to_string(),
        "--allow",
        &a.peer_id,
    ]);
    assert_eq!(exposed["protocol"], "/x/web", "{exposed}");
    assert_eq!(exposed["allow"][0], a.peer_id.as_str(), "{exposed}");
    let forwarded = a.json(&["forward", "web", "beta", "--listen", "127.0.0.1:0"]);
    let listen = forwarded["listen"].as_str().expect("listen").to_owned();
    assert!(
        listen.starts_with("127.0.0.1:") && !listen.ends_with(":0"),
        "the real port is reported: {forwarded}"
    );
    assert_eq!(forwarded["peer_id"], b.peer_id.as_str(), "{forwarded}");
    listen
}

#[test]
fn ten_megabytes_through_two_daemons_arrive_byte_exact() {
    let server = Server::start(http);
    let a = Daemon::start("alpha");
    let b = Daemon::start("beta");
    let listen = forward_pair(&a, &b, &server);

    let human = a.cli(&["forward", "web", "beta", "--listen", "127.0.0.1:0"]);
    assert!(human.status.success(), "{human:?}");
    assert!(
        human.stdout.starts_with("forwarding 127.0.0.1:") && human.stdout.contains("/x/web"),
        "{human:?}"
    );

    let data = get(&listen, "/big");
    assert_eq!(data.len(), 10 << 20);
    assert!(data == body(10 << 20), "the 10 MB body differs");

    // Counters: A sent the request and got the body; B the other way round.
    let on_a = a.json(&["forwards"]);
    let fwd = on_a["forwarded"]
        .as_array()
        .expect("forwarded")
        .iter()
        .find(|f| f["listen"] == listen.as_str())
        .expect("our forward")
        .clone();
    assert_eq!(fwd["name"], "web", "{fwd}");
    assert_eq!(fwd["stats"]["total"], 1, "{fwd}");
    assert!(
        fwd["stats"]["bytes_in"].as_u64().expect("in") > 10 << 20,
        "{fwd}"
    );
    assert!(eventually(Duration::from_secs(5), || {
        a.json(&["forwards"])["forwarded"]
            .as_array()
            .expect("forwarded")
            .iter()
            .all(|f| f["stats"]["open"] == 0)
    }));
    let on_b = b.json(&["forwards"]);
    let exposed = &on_b["exposed"][0];
    assert_eq!(exposed["name"], "web", "{on_b}");
    assert_eq!(exposed["target"], server.addr.to_string().as_str());
    assert!(
        exposed["stats"]["bytes_out"].as_u64().expect("out") > 10 << 20,
        "{on_b}"
    );
    let table = b.cli(&["forwards"]);
    assert!(
        table.stdout.contains("exposed") && table.stdout.contains("web"),
        "{table:?}"
    );

    // Removing both: the port is closed, the service gone.
    let gone = a.json(&["unforward", &listen]);
    assert_eq!(gone["listen"], listen.as_str(), "{gone}");
    assert!(TcpStream::connect(&listen).is_err(), "port still open");
    let gone = b.json(&["unexpose", "web"]);
    assert_eq!(gone["name"], "web", "{gone}");
    assert!(b.json(&["forwards"])["exposed"]
        .as_array()
        .expect("exposed")
        .is_empty());
    let line = b.cli(&["unexpose", "web"]).one_line_error();
    assert!(line.contains("nothing is exposed"), "{line}");
}

#[test]
fn fifty_concurrent_forwarded_connections() {
    let server = Server::start(http);
    let a = Daemon::start("alpha");
    let b = Daemon::start("beta");
    let listen = forward_pair(&a, &b, &server);
    let want = body(64 << 10);
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let listen = listen.clone();
            std::thread::spawn(move || get(&listen, "/small"))
        })
        .collect();
    for t in threads {
        assert!(t.join().expect("client thread") == want, "a body differs");
    }
    assert_eq!(server.accepted(), 50);
    let fwd = &a.json(&["forwards"])["forwarded"][0];
    assert_eq!(fwd["stats"]["total"], 50, "{fwd}");
    assert_eq!(fwd["stats"]["failed"], 0, "{fwd}");
    assert!(eventually(Duration::from_secs(5), || {
        a.json(&["forwards"])["forwarded"][0]["stats"]["open"] == 0
            && b.json(&["forwards"])["exposed"][0]["stats"]["open"] == 0
    }));
    assert_eq!(b.json(&["forwards"])["exposed"][0]["stats"]["total"], 50);
}

#[test]
fn half_close_reaches_the_service_and_the_reply_still_flows() {
    let server = Server::start(echo_after_eof);
    let a = Daemon::start("alpha");
    let b = Daemon::start("beta");
    let listen = forward_pair(&a, &b, &server);
    let data = body(300_000);
    let mut conn = TcpStream::connect(&listen).expect("connect");
    conn.set_read_timeout(Some(IO_LIMIT)).expect("timeout");
    conn.write_all(&data).expect("write");
    conn.shutdown(Shutdown::Write).expect("half-close");
    let mut back = Vec::new();
    conn.read_to_end(&mut back).expect("read the echo");
    assert!(
        back == data,
        "echo differs: {} of {} bytes",
        back.len(),
        data.len()
    );
}

#[test]
fn a_peer_not_on_the_allow_list_is_refused() {
    let server = Server::start(http);
    let mut b = Daemon::start("beta");
    let a = Daemon::start("alpha");
    let c = Daemon::start("gamma");
    // B lets only A in; C connects and forwards anyway.
    forward_pair(&a, &b, &server);
    c.json(&["connect", &b.addr]);
    let forwarded = c.json(&["forward", "web", &b.peer_id]);
    let listen = forwarded["listen"].as_str().expect("listen").to_owned();

    let mut conn = TcpStream::connect(&listen).expect("connect");
    conn.set_read_timeout(Some(IO_LIMIT)).expect("timeout");
    let _ = conn.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let mut reply = Vec::new();
    // Reset (an error) or closed: either way, no byte of the service.
    let _ = conn.read_to_end(&mut reply);
    assert!(reply.is_empty(), "got {} bytes", reply.len());
    assert!(eventually(Duration::from_secs(5), || {
        c.json(&["forwards"])["forwarded"][0]["stats"]["failed"] == 1
    }));
    assert_eq!(server.accepted(), 0, "the target was contacted");
    assert_eq!(b.json(&["forwards"])["exposed"][0]["stats"]["total"], 0);

    // A peer that is allowed still gets in.
    let on_a = a.json(&["forwards"]);
    let a_listen = on_a["forwarded"][0]["listen"].as_str().expect("listen");
    assert_eq!(get(a_listen, "/small").len(), 64 << 10);

    // B logged the refusal, naming C.
    b.signal(libc::SIGTERM);
    let (_, log) = b.wait_exit(Duration::from_secs(15));
    assert!(
        log.lines()
            .any(|l| l.contains("refused") && l.contains(&c.peer_id) && l.contains("/x/web")),
        "no refusal logged: {log}"
    );
}

#[test]
fn expose_needs_an_allow_list() {
    let a = Daemon::start("alpha");
    let line = a
        .cli(&["expose", "web", "--target", "127.0.0.1:9"])
        .one_line_error();
    assert!(line.contains("--allow"), "{line}");
    let line = a
        .cli(&[
            "expose",
            "bad/name",
            "--target",
            "127.0.0.1:9",
            "--allow-any",
        ])
        .one_line_error();
    assert!(line.contains("invalid service name"), "{line}");
    let open = a.json(&["expose", "web", "--target", "127.0.0.1:9", "--allow-any"]);
    assert!(open["allow"].is_null(), "{open}");
    let line = a
        .cli(&["expose", "web", "--target", "127.0.0.1:9", "--allow-any"])
        .one_line_error();
    assert!(line.contains("already"), "{line}");
}
