//! Names that pick peers for access and commands, through real daemons on loopback: only
//! names the operator bound (`pheromone alias`, the config's `[aliases]`) count for
//! `expose --allow` and the targets of `exec` and `forward`; a name a peer announces is
//! anyone's to claim and stays for display, `ping` and `send`.

#![allow(clippy::disallowed_methods)] // process tests run on the real clock

mod common;

use common::Daemon;

/// The attack of issue 16: a stranger announcing the trusted host's name connects
/// first, so it is the only peer with that name. Before the alias book, `exec web` ran
/// the operator's command on the stranger and `expose --allow web` let the stranger in.
#[test]
fn a_stranger_announcing_a_trusted_name_gets_no_exec_or_forward_access() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctl = Daemon::start_in(&dir.path().join("ctl"), &["--name", "ctl"]).expect("ctl");
    let allow_ctl = ["--name", "web", "--allow-exec", &ctl.peer_id];
    let stranger = Daemon::start_in(&dir.path().join("stranger"), &allow_ctl).expect("stranger");
    let web = Daemon::start_in(&dir.path().join("web"), &allow_ctl).expect("web");
    ctl.json(&["connect", &stranger.addr]);

    // The announced name still works where it grants nothing.
    let ping = ctl.cli(&["ping", "web", "-c", "1"]);
    assert!(ping.status.success(), "{ping:?}");
    let sent = ctl.json(&["send", "web", "hello"]);
    assert_eq!(sent["peer_id"], stranger.peer_id.as_str(), "{sent}");

    // Exec and forward to the claimed name are refused before anything is sent.
    let marker = dir.path().join("ran-on-the-stranger");
    let marker_text = marker.to_string_lossy().into_owned();
    let exec = ctl.cli(&["exec", "web", "--", "touch", &marker_text]);
    let line = exec.one_line_error();
    assert!(line.contains("not an alias you set"), "{line}");
    assert!(!marker.exists(), "the command ran on the stranger");
    let forward = ctl.cli(&["forward", "svc", "web"]);
    assert!(
        forward.one_line_error().contains("not an alias you set"),
        "{forward:?}"
    );
    // So is an allow-list naming it.
    let echo = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = echo.local_addr().expect("addr").to_string();
    // Answers "ok" to whoever gets through, a bounded number of times.
    std::thread::spawn(move || {
        for mut conn in echo.incoming().take(4).flatten() {
            use std::io::Write;
            let _ = conn.write_all(b"ok");
        }
    });
    let expose = ctl.cli(&["expose", "svc", "--target", &target, "--allow", "web"]);
    assert!(
        expose.one_line_error().contains("not an alias you set"),
        "{expose:?}"
    );

    // The operator binds the name to the real host; from now on it means that host, even
    // though the stranger still announces it.
    ctl.json(&["connect", &web.addr]);
    let bound = ctl.json(&["alias", "web", &web.peer_id]);
    assert_eq!(bound["peer_id"], web.peer_id.as_str(), "{bound}");
    let listed = ctl.json(&["alias", "--list"]);
    assert_eq!(listed[0]["name"], "web", "{listed}");
    let exec = ctl.cli(&["exec", "web", "--json", "--", "touch", &marker_text]);
    assert!(exec.status.success(), "{exec:?}");
    assert!(
        exec.stdout.contains(&web.peer_id) && !exec.stdout.contains(&stranger.peer_id),
        "{exec:?}"
    );
    let exposed = ctl.json(&["expose", "svc", "--target", &target, "--allow", "web"]);
    assert_eq!(exposed["allow"][0], web.peer_id.as_str(), "{exposed}");

    // The stranger cannot use the service; the real host can.
    stranger.json(&["connect", &ctl.addr]);
    let refused = stranger.cli(&["forward", "svc", &ctl.peer_id, "--json"]);
    let listen = refused.status.success().then(|| {
        refused.json()["listen"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    if let Some(listen) = listen {
        // The forward is set up lazily; a connection through it must be refused.
        assert!(
            !reaches_echo(&listen),
            "the stranger got through the allow-list"
        );
    }
    web.json(&["connect", &ctl.addr]);
    let allowed = web.json(&["forward", "svc", &ctl.peer_id]);
    let listen = allowed["listen"].as_str().expect("listen").to_owned();
    assert!(reaches_echo(&listen), "the allowed host was refused");

    // unalias: the name is untrusted again.
    ctl.json(&["unalias", "web"]);
    let exec = ctl.cli(&["exec", "web", "--", "true"]);
    assert!(exec.one_line_error().contains("not an alias you set"));
}

/// Whether a connection to `listen` gets the echo server's "ok".
fn reaches_echo(listen: &str) -> bool {
    use std::io::Read;
    let Ok(mut conn) = std::net::TcpStream::connect(listen) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let mut buf = [0u8; 2];
    conn.read_exact(&mut buf).is_ok() && &buf == b"ok"
}

/// Aliases from the config's `[aliases]` table resolve from the start, and a bad entry
/// stops the daemon with the reason.
#[test]
fn config_aliases_resolve_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = Daemon::start("host");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("[aliases]\nbox = \"{}\"\n", host.peer_id)).expect("config");
    let config_text = config.to_string_lossy().into_owned();
    let ctl = Daemon::start_in(&dir.path().join("ctl"), &["--config", &config_text]).expect("ctl");
    let listed = ctl.json(&["alias", "--list"]);
    assert_eq!(listed[0]["name"], "box", "{listed}");
    assert_eq!(listed[0]["source"], "config", "{listed}");
    ctl.json(&["connect", &host.addr]);
    // `box` names the host for a forward (the service does not exist: the error comes
    // from the host, not from name resolution).
    let forward = ctl.cli(&["forward", "nothing", "box"]);
    assert!(
        !forward.stderr.contains("not an alias you set"),
        "{forward:?}"
    );

    std::fs::write(&config, "[aliases]\nbox = \"not-a-peer-id\"\n").expect("config");
    let bad = Daemon::start_in(&dir.path().join("bad"), &["--config", &config_text]);
    let out = bad.err().expect("a bad alias stops the daemon");
    assert!(out.stderr.contains("alias \"box\""), "{out:?}");
}
