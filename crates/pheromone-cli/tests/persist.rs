//! What survives a crash, with real `pheromone` processes: a message `send` reported is on
//! the receiver's disk (SIGKILL and restart, then `recv` prints it exactly once); `recv`
//! removes a message only once its client acknowledged it; a restarted daemon redials the
//! peers it remembers without `--bootstrap` and lists them in `hosts`; a garbage peer store
//! is a logged fallback; the data dir is checked like OpenSSH's StrictModes.

mod common;

use common::{eventually, peer_ids, Daemon};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

fn connect(from: &Daemon, to: &Daemon) {
    let out = from.cli(&["connect", &to.addr, "--json"]);
    assert!(out.status.success(), "connect failed: {out:?}");
}

fn restart(d: &mut Daemon, extra: &[&str]) -> Daemon {
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(10));
    Daemon::start_in(&d.data_dir, extra).expect("restart on the same data dir")
}

#[test]
fn a_sent_message_survives_sigkill_of_the_receiver_and_is_received_once() {
    let a = Daemon::start("alpha");
    let mut b = Daemon::start("beta");
    connect(&a, &b);
    let sent = a.json(&["send", "beta", "kept through a crash"]);
    assert_eq!(sent["peer_id"], b.peer_id.as_str());

    // Killed before anyone ran `recv`: what `send` acknowledged must be on disk.
    let b = restart(&mut b, &["--name", "beta"]);
    assert_eq!(b.json(&["status"])["inbox_messages"], 1);
    let got = b.cli(&["recv", "--count", "1", "--json"]).json_lines();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["text"], "kept through a crash");
    assert_eq!(got[0]["from"], a.peer_id.as_str());
    assert_eq!(got[0]["message_id"].as_str().expect("id").len(), 32);

    // Read once: gone now, and still gone after another crash.
    assert_eq!(b.json(&["status"])["inbox_messages"], 0);
    let mut b = b;
    let b = restart(&mut b, &["--name", "beta"]);
    assert_eq!(b.json(&["status"])["inbox_messages"], 0);
}

/// A raw control client: sends request lines, reads response lines.
struct Control {
    write: UnixStream,
    read: BufReader<UnixStream>,
}

impl Control {
    fn open(d: &Daemon) -> Self {
        let stream = UnixStream::connect(d.socket()).expect("control socket");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Self {
            read: BufReader::new(stream.try_clone().expect("clone")),
            write: stream,
        }
    }

    fn send(&mut self, request: serde_json::Value) {
        let mut line = request.to_string();
        line.push('\n');
        self.write.write_all(line.as_bytes()).expect("write");
    }

    fn line(&mut self) -> serde_json::Value {
        let mut line = String::new();
        self.read
            .read_line(&mut line)
            .expect("read a response line");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"))
    }
}

#[test]
fn recv_removes_a_message_only_after_its_client_acknowledged_it() {
    let a = Daemon::start_no_dht("alpha");
    let b = Daemon::start_no_dht("beta");
    connect(&a, &b);
    a.json(&["send", "beta", "first"]);
    a.json(&["send", "beta", "second"]);

    // A client that gets the message and goes away without acknowledging it.
    let mut client = Control::open(&b);
    client.send(serde_json::json!({"id": 1, "op": "recv", "count": 1, "ack": true}));
    let event = client.line();
    assert_eq!(event["kind"], "event", "{event}");
    let data = event["event"]["data"].clone();
    assert_eq!(data["data"], "Zmlyc3Q=", "{event}"); // "first"
    let id = data["message_id"].as_str().expect("id").to_owned();
    drop(client);

    // Still there: the next `recv` gets the same message, with the same id.
    assert!(eventually(Duration::from_secs(5), || {
        b.json(&["status"])["inbox_messages"] == 2
    }));
    let got = b.cli(&["recv", "--count", "1", "--json"]).json_lines();
    assert_eq!(got[0]["text"], "first");
    assert_eq!(got[0]["message_id"], id.as_str());

    // An acknowledged one is gone; an ack for a message not being received is refused.
    let mut client = Control::open(&b);
    client.send(serde_json::json!({"id": 1, "op": "recv", "count": 1, "ack": true}));
    let event = client.line();
    let second = event["event"]["data"]["message_id"]
        .as_str()
        .expect("id")
        .to_owned();
    client.send(serde_json::json!({"id": 2, "op": "recv_ack", "message_id": second}));
    let mut answers = vec![client.line(), client.line()];
    answers.sort_by_key(|a| a["id"].as_u64());
    assert_eq!(answers[0]["kind"], "ok", "{answers:?}");
    assert_eq!(answers[0]["result"]["data"]["count"], 1);
    assert_eq!(answers[1]["result"]["data"]["message_id"], second.as_str());
    client.send(serde_json::json!({"id": 3, "op": "recv_ack", "message_id": id}));
    let refused = client.line();
    assert_eq!(refused["error"]["code"], "not_found", "{refused}");
    assert_eq!(b.json(&["status"])["inbox_messages"], 0);
}

#[test]
fn a_restarted_daemon_redials_its_remembered_peers_without_bootstrap() {
    let mut a = Daemon::start("alpha");
    let b = Daemon::start("beta");
    connect(&a, &b);
    // The store is written half a second after a change.
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(a.data_dir.join("peers.json"))
            .is_ok_and(|text| text.contains(&b.peer_id))
    }));
    let hosts = a.json(&["hosts"]);
    let beta = &hosts.as_array().expect("array")[0];
    assert_eq!(beta["peer_id"], b.peer_id.as_str());
    assert_eq!(beta["name"], "beta");
    assert_eq!(beta["reached"], "direct");
    assert!(beta["addrs"].as_array().is_some_and(|a| !a.is_empty()));

    a.signal(libc::SIGKILL);
    a.wait_exit(Duration::from_secs(10));
    // B notices and shows A as remembered but not connected.
    assert!(eventually(Duration::from_secs(10), || {
        b.json(&["hosts"])
            .as_array()
            .and_then(|h| h.first().cloned())
            .is_some_and(|h| h["reached"] == "not_connected")
    }));

    // No --bootstrap: the peer store is all it has.
    let mut a = Daemon::start_in(&a.data_dir, &["--name", "alpha"]).expect("restart");
    let linked = eventually(Duration::from_secs(15), || {
        peer_ids(&a.json(&["peers"])).contains(&b.peer_id)
    });
    let text = a.cli(&["hosts"]);
    a.signal(libc::SIGTERM);
    let (_, log) = a.wait_exit(Duration::from_secs(15));
    assert!(linked, "not reconnected; log: {log}");
    assert!(
        log.contains("reconnecting to 1 remembered peers"),
        "log: {log}"
    );
    assert!(
        text.stdout.contains("beta") && text.stdout.contains("direct"),
        "{text:?}"
    );
}

#[test]
fn a_garbage_peer_store_is_a_logged_fallback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("node");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(
        data.join("peers.json"),
        b"\x00\xff\xfe not json at all \x01",
    )
    .expect("write");
    std::fs::write(data.join("inbox.log"), b"\x13\x37 nor an inbox").expect("write");
    let mut d = Daemon::start_in(&data, &["--name", "solo"]).expect("starts anyway");
    assert_eq!(d.json(&["hosts"]), serde_json::json!([]));
    assert_eq!(d.json(&["status"])["inbox_messages"], 0);
    d.signal(libc::SIGTERM);
    let (status, log) = d.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{log}");
    assert!(log.contains("the peer store is unusable"), "log: {log}");
    assert!(log.contains("not an inbox log"), "log: {log}");
    let names: Vec<String> = std::fs::read_dir(&data)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("peers.json.corrupt-")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("inbox.log.corrupt-")),
        "{names:?}"
    );
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn a_data_dir_others_can_write_is_refused_naming_the_file_and_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("node");
    let d = Daemon::start_in(&data, &[]).expect("first start");
    drop(d);

    chmod(&data, 0o777);
    let refused = Daemon::start_in(&data, &[]).err().expect("refused");
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains(&data.display().to_string())
            && refused.stderr.contains("mode 777")
            && refused.stderr.contains("writable by group or others"),
        "{refused:?}"
    );
    chmod(&data, 0o700);

    let config = dir.path().join("pheromone.toml");
    std::fs::write(&config, "name = \"x\"\n").expect("write");
    chmod(&config, 0o666);
    let config_arg = config.to_str().expect("utf-8");
    let refused = Daemon::start_in(&data, &["--config", config_arg])
        .err()
        .expect("refused");
    assert!(
        refused.stderr.contains("pheromone.toml") && refused.stderr.contains("mode 666"),
        "{refused:?}"
    );
    chmod(&config, 0o644);
    Daemon::start_in(&data, &["--config", config_arg]).expect("fine once fixed");
}

#[test]
fn the_lock_file_is_not_opened_through_a_symlink() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("node");
    drop(Daemon::start_in(&data, &[]).expect("first start"));
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").expect("write");
    std::fs::remove_file(data.join("daemon.lock")).expect("rm lock");
    std::os::unix::fs::symlink(&victim, data.join("daemon.lock")).expect("symlink");
    let refused = Daemon::start_in(&data, &[]).err().expect("refused");
    assert!(
        refused.stderr.contains("daemon.lock") && refused.stderr.contains("symlink"),
        "{refused:?}"
    );
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
}

#[test]
fn sighup_reloads_the_exec_allow_list_without_dropping_links() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctl = Daemon::start_in(&dir.path().join("ctl"), &["--name", "ctl"]).expect("ctl");
    let other = pheromone::Keypair::from_seed([9; 32]).peer_id().to_string();
    let allow = dir.path().join("exec-peers");
    std::fs::write(&allow, format!("{other}\n")).expect("write");
    let allow_arg = allow.to_str().expect("utf-8");
    let h = Daemon::start_in(
        &dir.path().join("h1"),
        &["--name", "h1", "--allow-exec-file", allow_arg],
    )
    .expect("host");
    connect(&ctl, &h);
    // By peer ID: exec targets are IDs or the operator's own aliases.
    let refused = ctl.cli(&["exec", &h.peer_id, "--json", "--", "true"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");

    std::fs::write(&allow, format!("{other}\n{}\n", ctl.peer_id)).expect("write");
    h.signal(libc::SIGHUP);
    let allowed = eventually(Duration::from_secs(10), || {
        ctl.cli(&["exec", &h.peer_id, "--", "true"])
            .status
            .success()
    });
    assert!(allowed, "the new allow-list was not applied");
    // The link stayed up and the daemon did not stop.
    assert_eq!(peer_ids(&ctl.json(&["peers"])), vec![h.peer_id.clone()]);
}

#[test]
fn systemd_is_told_when_the_daemon_is_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let notify = socket_path.to_str().expect("utf-8");
    let _d = Daemon::start_with_env(&dir.path().join("node"), &[], &[("NOTIFY_SOCKET", notify)])
        .expect("daemon");
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).expect("a notification");
    assert_eq!(&buf[..n], b"READY=1");
}
