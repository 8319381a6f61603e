//! Fleet exec through real daemons on loopback: one controller daemon runs commands on
//! hosts that allow it (`up --allow-exec`), driven with `pheromone exec`. Each host gets
//! its own environment so that one command behaves differently per host.

#![allow(clippy::disallowed_methods)] // process tests run on the real clock

mod common;

use common::{eventually, Daemon, Output};
use std::time::Duration;

/// A host named `name` that lets `controller` run commands, with `TEST_HOST=name` and
/// `TEST_EXIT=exit` in its environment, which its commands inherit.
fn host(dir: &std::path::Path, name: &str, controller: &Daemon, exit: &str) -> Daemon {
    Daemon::start_with_env(
        &dir.join(name),
        &[
            "--name",
            name,
            "--allow-exec",
            &controller.peer_id,
            "--exec-inherit-env",
        ],
        &[("TEST_HOST", name), ("TEST_EXIT", exit)],
    )
    .expect("host starts")
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The summary table's row for `host` (after the `HOST` header, so not an output line).
fn summary_row<'a>(out: &'a Output, host: &str) -> &'a str {
    out.stdout
        .lines()
        .skip_while(|l| !l.starts_with("HOST "))
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no summary row for {host}: {out:?}"))
}

const SCRIPT: &str = "echo out-$TEST_HOST; echo err-$TEST_HOST >&2; exit $TEST_EXIT";

#[test]
fn five_hosts_one_failing_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctl = Daemon::start_in(&dir.path().join("ctl"), &["--name", "ctl"]).expect("ctl");
    let names = ["h1", "h2", "h3", "h4", "h5"];
    let hosts: Vec<Daemon> = names
        .iter()
        .map(|n| host(dir.path(), n, &ctl, if *n == "h3" { "3" } else { "0" }))
        .collect();
    assert!(
        hosts[0]
            .banner
            .iter()
            .any(|l| l == "exec: allowed for 1 peer(s): any program (sh included)"),
        "{:?}",
        hosts[0].banner
    );
    for (h, n) in hosts.iter().zip(names) {
        ctl.json(&["connect", &h.addr]);
        // Exec targets are the operator's names, not the ones hosts announce.
        ctl.json(&["alias", n, &h.peer_id]);
    }

    // Every connected peer, output prefixed by host, then the table; exit code 1.
    let out = ctl.cli(&["exec", "--all", "--", "sh", "-c", SCRIPT]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    for n in names {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(n) && l.ends_with(&format!("| out-{n}"))),
            "{n} output missing: {out:?}"
        );
        assert!(
            out.stderr
                .lines()
                .any(|l| l.starts_with(n) && l.ends_with(&format!("! err-{n}"))),
            "{n} stderr missing: {out:?}"
        );
    }
    let table: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("HOST"))
        .collect();
    assert_eq!(table.len(), 6, "{out:?}");
    for row in &table[1..] {
        let host = row.split_whitespace().next().expect("host");
        let want = if host == "h3" { "exit 3" } else { "exit 0" };
        assert!(row.contains(want), "{row}");
    }
    let last = out.stderr.lines().last().expect("error line");
    assert!(last.contains("1 of 5 hosts did not exit 0"), "{out:?}");

    // By name, as JSON: one object per host, in the order given.
    let out = ctl.cli(&[
        "exec",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "--concurrency",
        "2",
        "--json",
        "--",
        "sh",
        "-c",
        SCRIPT,
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let results = lines(&out);
    assert_eq!(results.len(), 5, "{out:?}");
    for (r, (n, h)) in results.iter().zip(names.iter().zip(&hosts)) {
        assert_eq!(r["host"], *n, "{r}");
        assert_eq!(r["peer_id"], h.peer_id.as_str(), "{r}");
        assert_eq!(r["status"], "exited", "{r}");
        let code = if *n == "h3" { 3 } else { 0 };
        assert_eq!(r["exit_code"], code, "{r}");
        assert_eq!(r["success"], code == 0, "{r}");
        assert_eq!(r["stdout"], format!("out-{n}\n"), "{r}");
        assert_eq!(r["stderr"], format!("err-{n}\n"), "{r}");
        assert_eq!(r["stdout_bytes"], 7, "{r}");
        assert_eq!(r["truncated"], false, "{r}");
        assert!(r["duration_ms"].as_u64().is_some(), "{r}");
    }

    // Grouped: one block per host; all succeed, exit code 0.
    let out = ctl.cli(&["exec", "h1", "h2", "--group", "--", "echo", "hello"]);
    assert!(out.status.success(), "{out:?}");
    for n in ["h1", "h2"] {
        let at = out
            .stdout
            .lines()
            .position(|l| l.starts_with(&format!("── {n} (exit 0, ")))
            .unwrap_or_else(|| panic!("no block for {n}: {out:?}"));
        assert_eq!(out.stdout.lines().nth(at + 1), Some("hello"), "{out:?}");
    }
}

#[test]
fn a_command_past_its_timeout_is_killed_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctl = Daemon::start_in(&dir.path().join("ctl"), &["--name", "ctl"]).expect("ctl");
    let h = host(dir.path(), "h1", &ctl, "0");
    ctl.json(&["connect", &h.addr]);
    ctl.json(&["alias", "h1", &h.peer_id]);
    let pid_file = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 60", pid_file.display());

    let out = ctl.cli(&["exec", "h1", "--timeout", "1s", "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let row = summary_row(&out, "h1");
    assert!(row.contains("killed by timeout"), "{out:?}");

    // The program itself is gone, not just our wait for it.
    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    let proc_dir = format!("/proc/{}", pid.trim());
    assert!(
        eventually(Duration::from_secs(5), || !std::path::Path::new(&proc_dir)
            .exists()),
        "sleep still running as {proc_dir}"
    );

    let json = ctl.cli(&[
        "exec",
        "h1",
        "--timeout",
        "500ms",
        "--json",
        "--",
        "sleep",
        "30",
    ]);
    let r = &lines(&json)[0];
    assert_eq!(r["status"], "timeout", "{r}");
    assert_eq!(r["success"], false, "{r}");
    assert!(r["exit_code"].is_null(), "{r}");
}

#[test]
fn output_over_the_cap_is_cut_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctl = Daemon::start_in(&dir.path().join("ctl"), &["--name", "ctl"]).expect("ctl");
    let h = host(dir.path(), "h1", &ctl, "0");
    ctl.json(&["connect", &h.addr]);
    ctl.json(&["alias", "h1", &h.peer_id]);
    let cmd = ["sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x; echo"];

    let mut args = vec!["exec", "h1", "--max-output", "1000", "--json", "--"];
    args.extend(cmd);
    let out = ctl.cli(&args);
    let r = &lines(&out)[0];
    assert_eq!(r["truncated"], true, "{r}");
    let got =
        r["stdout_bytes"].as_u64().expect("bytes") + r["stderr_bytes"].as_u64().expect("bytes");
    assert!(got <= 1000 && got > 0, "{r}");
    assert_eq!(
        r["stdout"].as_str().expect("stdout").len() as u64,
        got,
        "{r}"
    );

    let mut args = vec!["exec", "h1", "--max-output", "1K", "--"];
    args.extend(cmd);
    let out = ctl.cli(&args);
    let row = summary_row(&out, "h1");
    assert!(row.contains("output truncated"), "{out:?}");
}

#[test]
fn a_peer_not_on_the_allow_list_is_refused_and_nothing_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctl = Daemon::start_in(&dir.path().join("ctl"), &["--name", "ctl"]).expect("ctl");
    // Exec is on there, but for another peer only.
    let other = pheromone::Keypair::from_seed([9; 32]).peer_id().to_string();
    let mut h = Daemon::start_in(
        &dir.path().join("h1"),
        &["--name", "h1", "--allow-exec", &other],
    )
    .expect("host");
    // And off entirely here.
    let off = Daemon::start_in(&dir.path().join("h2"), &["--name", "h2"]).expect("host");
    ctl.json(&["connect", &h.addr]);
    ctl.json(&["connect", &off.addr]);
    ctl.json(&["alias", "h1", &h.peer_id]);
    ctl.json(&["alias", "h2", &off.peer_id]);
    let marker = dir.path().join("marker");
    let marker_text = marker.display().to_string();

    let out = ctl.cli(&["exec", "h1", "h2", "--json", "--", "touch", &marker_text]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    for r in lines(&out) {
        assert_eq!(r["status"], "refused", "{r}");
        let error = r["error"].as_str().expect("error");
        assert!(error.contains("refused exec"), "{r}");
        assert!(error.contains("allow-list"), "{r}");
    }
    let human = ctl.cli(&["exec", "h1", "--", "touch", &marker_text]);
    assert!(human.stdout.contains("refused"), "{human:?}");
    assert!(!marker.exists(), "the command ran");

    h.signal(libc::SIGTERM);
    let (_, log) = h.wait_exit(Duration::from_secs(15));
    assert!(
        log.lines()
            .any(|l| l.contains("refused") && l.contains(&ctl.peer_id)),
        "no refusal logged: {log}"
    );
}

#[test]
fn allow_exec_flags_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Daemon::start_in(&dir.path().join("x"), &["--allow-exec", "somebody"])
        .err()
        .expect("a name is not a peer ID");
    assert!(err.stderr.contains("--allow-exec"), "{err:?}");
    let file = dir.path().join("peers");
    let id = pheromone::Keypair::from_seed([4; 32]).peer_id();
    std::fs::write(&file, format!("# ops\n{id} # laptop\n")).expect("write");
    let d = Daemon::start_in(
        &dir.path().join("y"),
        &[
            "--allow-exec-file",
            file.to_str().expect("utf-8"),
            "--allow-exec-shell",
        ],
    )
    .expect("daemon");
    assert!(
        d.banner
            .iter()
            .any(|l| l == "exec: allowed for 1 peer(s): any program and shell command lines"),
        "{:?}",
        d.banner
    );
}

#[test]
fn commands_start_with_a_cleared_environment_and_only_listed_programs_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctl = Daemon::start_in(&dir.path().join("ctl"), &["--name", "ctl"]).expect("ctl");
    // Cleared by default: the daemon's secrets stay behind, PATH is the system's.
    let open = Daemon::start_with_env(
        &dir.path().join("open"),
        &["--name", "open", "--allow-exec", &ctl.peer_id],
        &[
            ("DAEMON_SECRET", "hunter2"),
            ("PATH", "/nonexistent:/usr/bin:/bin"),
        ],
    )
    .expect("host");
    // Only `echo` and `true` may run here.
    let strict = Daemon::start_in(
        &dir.path().join("strict"),
        &[
            "--name",
            "strict",
            "--allow-exec",
            &ctl.peer_id,
            "--allow-exec-program",
            "echo",
            "--allow-exec-program",
            "true",
        ],
    )
    .expect("host");
    assert!(
        strict
            .banner
            .iter()
            .any(|l| l == "exec: allowed for 1 peer(s): only echo, true"),
        "{:?}",
        strict.banner
    );
    ctl.json(&["connect", &open.addr]);
    ctl.json(&["connect", &strict.addr]);
    ctl.json(&["alias", "open", &open.peer_id]);
    ctl.json(&["alias", "strict", &strict.peer_id]);

    let env = ctl.cli(&[
        "exec",
        "open",
        "--json",
        "--",
        "sh",
        "-c",
        "echo secret=${DAEMON_SECRET:-unset} path=$PATH",
    ]);
    assert_eq!(env.status.code(), Some(0), "{env:?}");
    let out = lines(&env)[0]["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        out.contains("secret=unset"),
        "the environment leaked: {env:?}"
    );
    assert!(
        out.contains(&format!("path={}", pheromone::exec::CLEAN_PATH)),
        "{env:?}"
    );

    let allowed = ctl.cli(&["exec", "strict", "--json", "--", "echo", "listed"]);
    assert_eq!(allowed.status.code(), Some(0), "{allowed:?}");
    assert!(
        lines(&allowed)[0]["stdout"]
            .as_str()
            .unwrap_or_default()
            .contains("listed"),
        "{allowed:?}"
    );
    let marker = dir.path().join("marker");
    let marker_text = marker.display().to_string();
    for program in ["sh", "/bin/sh", "touch"] {
        let args: Vec<&str> = match program {
            "touch" => vec!["exec", "strict", "--json", "--", "touch", &marker_text],
            _ => vec![
                "exec",
                "strict",
                "--json",
                "--",
                program,
                "-c",
                "touch \"$0\"",
                &marker_text,
            ],
        };
        let refused = ctl.cli(&args);
        assert_eq!(refused.status.code(), Some(1), "{program}: {refused:?}");
        let r = &lines(&refused)[0];
        let error = r["error"].as_str().unwrap_or_default();
        assert!(error.contains("program not allowed"), "{program}: {r}");
        assert!(error.contains("allow-list"), "{program}: {r}");
    }
    assert!(!marker.exists(), "a program off the list ran");

    let conflict = Daemon::start_in(
        &dir.path().join("bad"),
        &[
            "--allow-exec",
            &ctl.peer_id,
            "--allow-exec-program",
            "no-such-program-here",
        ],
    )
    .err()
    .expect("an unknown program is refused at start");
    assert!(
        conflict.stderr.contains("no-such-program-here"),
        "{conflict:?}"
    );
}
