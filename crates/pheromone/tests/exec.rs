//! Fleet exec between real nodes on 127.0.0.1: output streamed as it comes, statuses of
//! many hosts, timeouts that kill the process group, the output cap, refusals (not on the
//! allow-list, exec off, shell not allowed) with nothing run.
//!
//! Every test runs over TCP and over QUIC (`name::tcp`, `name::quic`; `transports/mod.rs`).

#![cfg(unix)]
#![allow(clippy::disallowed_methods)] // tests measure wall time

mod node_util;

use bytes::Bytes;
use node_util::{addr, bounded, node, transports};
use pheromone::exec::{
    self, ExecConfig, ExecError, ExecOutput, ExecRequest, ExitStatus, FailureKind, FleetEvent,
    FleetOptions,
};
use pheromone::node::Node;
use std::path::Path;
use std::time::Duration;

fn request(program: &str, args: &[&str]) -> ExecRequest {
    let mut r = ExecRequest::new(program, args.iter().copied());
    r.timeout = Duration::from_secs(20);
    r
}

/// A server node with exec allowing `client`, and the route from the client to it.
async fn exec_server(name: &str, client: &Node, config: ExecConfig) -> (Node, exec::ExecService) {
    let server = node(name).await;
    let service = server.serve_exec(config).expect("serve");
    client
        .add_contact(name, addr(&server))
        .await
        .expect("route");
    (server, service)
}

fn allowing(client: &Node) -> ExecConfig {
    ExecConfig::allowing([client.peer_id()])
}

/// Runs `request` on `peer`; all stdout, all stderr, and the status.
async fn run(
    client: &Node,
    peer: &str,
    request: &ExecRequest,
) -> Result<(Vec<u8>, Vec<u8>, exec::Exit), ExecError> {
    let session = exec::exec(client, peer, request).await?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = session
        .wait(|o| match o {
            ExecOutput::Stdout(b) => out.extend_from_slice(b),
            ExecOutput::Stderr(b) => err.extend_from_slice(b),
            ExecOutput::Exit(_) => {}
        })
        .await?;
    Ok((out, err, exit))
}

over_transports! {
    #[tokio::test]
    async fn output_streams_as_it_comes_and_stdin_is_passed() {
        bounded(async {
            let client = node("client").await;
            let (server, service) = exec_server("box", &client, allowing(&client)).await;

            let mut session = exec::exec(
                &client,
                "box",
                &request(
                    "sh",
                    &["-c", "echo one; echo oops >&2; sleep 1; echo two; exit 3"],
                ),
            )
            .await
            .expect("exec");
            // stdout and stderr are separate pipes: "oops" may come first. What shows that
            // output streams as it comes is that "one" arrives alone, not with "two" (printed
            // a second later), as it would if the output were buffered until the exit.
            let mut rest = Vec::new();
            let first = loop {
                match session.next().await.expect("event").expect("output") {
                    ExecOutput::Stdout(b) => break b,
                    other => rest.push(other),
                }
            };
            assert_eq!(first, Bytes::from_static(b"one\n"));
            while let Some(event) = session.next().await {
                rest.push(event.expect("event"));
            }
            assert!(rest.contains(&ExecOutput::Stderr(Bytes::from_static(b"oops\n"))));
            assert!(rest.contains(&ExecOutput::Stdout(Bytes::from_static(b"two\n"))));
            match rest.last() {
                Some(ExecOutput::Exit(exit)) => {
                    assert_eq!(exit.status, ExitStatus::Code(3));
                    assert!(!exit.output_truncated);
                }
                other => panic!("expected the exit last, got {other:?}"),
            }

            let mut cat = request("cat", &[]);
            cat.stdin = Some(Bytes::from_static(b"from stdin"));
            let (out, _, exit) = run(&client, "box", &cat).await.expect("cat");
            assert_eq!(out, b"from stdin");
            assert_eq!(exit.status, ExitStatus::Code(0));

            match run(&client, "box", &request("/no/such/program", &[])).await {
                Err(ExecError::Remote {
                    kind: FailureKind::NotFound,
                    ..
                }) => {}
                other => panic!("expected not found, got {other:?}"),
            }
            assert_eq!((service.stats().started, service.stats().rejected), (2, 1));
            assert_eq!(service.stats().running, 0);
            service.close().await;
            client.close().await;
            server.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn five_hosts_one_failing_and_a_refused_one() {
        bounded(async {
            let client = node("client").await;
            let mut servers = Vec::new();
            for i in 0..5 {
                servers.push(exec_server(&format!("host{i}"), &client, allowing(&client)).await);
            }
            let (closed, _off) = exec_server("closed", &client, ExecConfig::default()).await;
            let dir = tempfile::tempdir().expect("tempdir");
            let lock = dir.path().join("lock");
            // mkdir is atomic: exactly one host creates the directory and fails with 7.
            let script = format!(
                "echo hi; mkdir {} 2>/dev/null && exit 7; exit 0",
                lock.display()
            );
            let mut peers: Vec<_> = servers.iter().map(|(s, _)| s.peer_id()).collect();
            peers.push(closed.peer_id());

            let mut fleet = exec::exec_fleet(
                &client,
                peers.clone(),
                request("sh", &["-c", &script]),
                FleetOptions::default().concurrency(3),
            );
            let (mut started, mut outputs, mut first) = (0, 0, Vec::new());
            while let Some(event) = fleet.next_event().await {
                match event {
                    FleetEvent::Started { .. } => started += 1,
                    FleetEvent::Output { .. } => outputs += 1,
                    FleetEvent::Finished(result) => first.push(result),
                    _ => {}
                }
            }
            assert_eq!((started, outputs, first.len()), (6, 5, 6));
            // One host exited 7, four exited 0, the one with exec off refused; every host that
            // ran printed its line and had its bytes and duration counted.
            let mut codes: Vec<_> = first
                .iter()
                .filter_map(|r| r.outcome.as_ref().ok().map(|e| e.status))
                .collect();
            codes.sort_by_key(|s| format!("{s}"));
            assert_eq!(
                codes,
                [0, 0, 0, 0, 7].map(ExitStatus::Code).to_vec(),
                "statuses: {first:?}"
            );
            assert_eq!(first.iter().filter(|r| r.success()).count(), 4);
            for r in first.iter().filter(|r| r.outcome.is_ok()) {
                assert_eq!((r.stdout_bytes, r.bytes()), (3, 3));
                assert!(r.duration > Duration::ZERO);
            }
            let refused: Vec<_> = first.iter().filter(|r| r.outcome.is_err()).collect();
            assert_eq!(refused.len(), 1);
            assert_eq!(refused[0].peer, closed.peer_id());
            assert!(matches!(refused[0].outcome, Err(ExecError::Refused { .. })));

            let results = exec::exec_many(
                &client,
                peers.clone(),
                request("sh", &["-c", "echo hi"]),
                FleetOptions::default(),
            )
            .await;
            let hosts: Vec<_> = results.iter().map(|r| r.host.as_str()).collect();
            assert_eq!(
                hosts,
                ["host0", "host1", "host2", "host3", "host4", "closed"]
            );
            assert!(results[..5]
                .iter()
                .all(|r| r.success() && r.stdout == "hi\n"));
            assert!(matches!(results[5].outcome, Err(ExecError::Refused { .. })));

            for (s, service) in servers {
                service.close().await;
                s.close().await;
            }
            closed.close().await;
            client.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_with_its_group() {
        bounded(async {
            let client = node("client").await;
            let (server, service) = exec_server("box", &client, allowing(&client)).await;
            let dir = tempfile::tempdir().expect("tempdir");
            let pidfile = dir.path().join("pid");
            // A background child in the same process group, a mark half-way through the
            // allowed second (it ran until then: not cut early), and a foreground sleep far
            // past it (ending early means it was killed, not finished).
            let script = format!(
                "sleep 30 & echo $! > {}; sleep 0.5; echo half; sleep 30",
                pidfile.display()
            );
            let mut slow = request("sh", &["-c", &script]);
            slow.timeout = Duration::from_secs(1);
            let (stdout, _, exit) = run(&client, "box", &slow).await.expect("run");
            assert_eq!(exit.status, ExitStatus::KilledByTimeout);
            assert_eq!(
                String::from_utf8_lossy(&stdout),
                "half\n",
                "ran until its timeout"
            );
            assert_eq!(service.stats().timed_out, 1);

            // The background sleep went with the group (gone, or a zombie awaiting its reaper).
            let pid = std::fs::read_to_string(&pidfile).expect("pid file");
            let stat = Path::new("/proc").join(pid.trim()).join("stat");
            node_util::eventually(|| match std::fs::read_to_string(&stat) {
                Err(_) => true,
                Ok(s) => s.split(' ').nth(2) == Some("Z"),
            })
            .await;
            service.close().await;
            client.close().await;
            server.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn output_over_the_cap_is_cut_and_reported() {
        bounded(async {
            let client = node("client").await;
            let config = ExecConfig {
                max_output: 100_000,
                ..allowing(&client)
            };
            let (server, service) = exec_server("box", &client, config).await;

            let mut capped = request("head", &["-c", "300000", "/dev/zero"]);
            capped.max_output = 1000;
            let (out, err, exit) = run(&client, "box", &capped).await.expect("run");
            assert_eq!(out.len() + err.len(), 1000);
            assert!(exit.output_truncated);
            assert_eq!(exit.status, ExitStatus::Code(0));

            // No cap in the request: the server's maximum applies.
            capped.max_output = 0;
            let (out, _, exit) = run(&client, "box", &capped).await.expect("run");
            assert_eq!(out.len(), 100_000);
            assert!(exit.output_truncated);

            // Under the cap nothing is cut.
            let (out, _, exit) = run(&client, "box", &request("echo", &["fits"]))
                .await
                .expect("run");
            assert_eq!(out, b"fits\n");
            assert!(!exit.output_truncated);
            service.close().await;
            client.close().await;
            server.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn peers_not_allowed_are_refused_and_nothing_runs() {
        bounded(async {
            let friend = node("friend").await;
            let stranger = node("stranger").await;
            let (server, service) = exec_server("box", &friend, allowing(&friend)).await;
            stranger
                .add_contact("box", addr(&server))
                .await
                .expect("route");
            let dir = tempfile::tempdir().expect("tempdir");
            let marker = dir.path().join("ran");
            let touch = request("touch", &[marker.to_str().expect("path")]);

            match run(&stranger, "box", &touch).await {
                Err(e @ ExecError::Refused { .. }) => {
                    assert!(e.to_string().contains("allow-list"), "a clear refusal: {e}");
                }
                other => panic!("expected a refusal, got {other:?}"),
            }
            assert!(!marker.exists(), "nothing ran for the stranger");
            assert_eq!(service.stats().started, 0);

            // A node with exec off refuses everyone, the same way.
            let (off, off_service) = exec_server("off", &friend, ExecConfig::default()).await;
            assert!(!off_service.is_enabled());
            assert!(matches!(
                run(&friend, "off", &touch).await,
                Err(ExecError::Refused { .. })
            ));
            assert!(!marker.exists());

            // The friend is allowed.
            run(&friend, "box", &touch).await.expect("friend runs");
            assert!(marker.exists());
            off.close().await;
            service.close().await;
            server.close().await;
            stranger.close().await;
            friend.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn shell_is_refused_unless_allowed() {
        bounded(async {
            let client = node("client").await;
            let (strict, strict_service) = exec_server("strict", &client, allowing(&client)).await;
            let config = ExecConfig {
                allow_shell: true,
                ..allowing(&client)
            };
            let (lenient, lenient_service) = exec_server("lenient", &client, config).await;
            let dir = tempfile::tempdir().expect("tempdir");
            let marker = dir.path().join("ran");
            let mut shell = request(
                "echo abc | tr a x; touch",
                &[marker.to_str().expect("path")],
            );
            shell.shell = true;

            match run(&client, "strict", &shell).await {
                Err(ExecError::Remote {
                    kind: FailureKind::ShellNotAllowed,
                    ..
                }) => {}
                other => panic!("expected the shell to be refused, got {other:?}"),
            }
            assert!(!marker.exists(), "nothing ran");
            assert_eq!(strict_service.stats().started, 0);

            let (out, _, exit) = run(&client, "lenient", &shell).await.expect("shell");
            assert_eq!(out, b"xbc\n");
            assert_eq!(exit.status, ExitStatus::Code(0));
            assert!(marker.exists());
            strict_service.close().await;
            lenient_service.close().await;
            strict.close().await;
            lenient.close().await;
            client.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn the_concurrency_cap_answers_busy() {
        bounded(async {
            let client = node("client").await;
            let config = ExecConfig {
                max_concurrent: 1,
                ..allowing(&client)
            };
            let (server, service) = exec_server("box", &client, config).await;
            let mut slow = exec::exec(&client, "box", &request("sleep", &["1"]))
                .await
                .expect("exec");
            node_util::eventually(|| service.stats().running == 1).await;
            match run(&client, "box", &request("true", &[])).await {
                Err(ExecError::Remote {
                    kind: FailureKind::Busy,
                    ..
                }) => {}
                other => panic!("expected busy, got {other:?}"),
            }
            match slow.next().await {
                Some(Ok(ExecOutput::Exit(exit))) => assert_eq!(exit.status, ExitStatus::Code(0)),
                other => panic!("expected the exit, got {other:?}"),
            }
            // Dropping a session mid-run kills the remote command.
            let dropped = exec::exec(&client, "box", &request("sleep", &["30"]))
                .await
                .expect("exec");
            node_util::eventually(|| service.stats().running == 1).await;
            drop(dropped);
            node_util::eventually(|| service.stats().running == 0).await;
            service.close().await;
            client.close().await;
            server.close().await;
        })
        .await;
    }
}
