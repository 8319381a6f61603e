//! The js-libp2p cells: `interop/js/harness.mjs` (js-libp2p 3.x with TCP, Noise, yamux,
//! identify, ping and kad-dht on our protocol id) driven through `tests/js_peer`. There is
//! no perf package for js-libp2p in the registry this project reaches, so perf is marked
//! not applicable rather than claimed.

use super::ours::{kad_node, Ours};
use super::{
    ensure, sha256_hex, Cell, Dir, Impl, Outcome, Recorder, Scenario, Transport, CLOSE_BYTES, ECHO,
    MISSING, PROBE, SINK, STREAMS,
};
use crate::js_peer::{harness_dir, JsPeer};
use pheromone::discovery::DiscoveryConfig;
use pheromone::{Connection, Direction, Multiaddr, PeerId};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// The js-libp2p version installed for the harness.
pub fn version() -> String {
    std::fs::read_to_string(harness_dir().join("node_modules/libp2p/package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn connection(ours: &Ours, peer: PeerId, direction: Direction) -> Connection {
    loop {
        let found =
            ours.node.endpoint().connections().into_iter().find(|c| {
                c.remote_peer() == peer && c.info().direction == direction && !c.is_closed()
            });
        if let Some(c) = found {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn run(transport: Transport) -> Vec<Cell> {
    let mut rec = Recorder::new(Impl::Js, transport);
    if transport != Transport::Tcp {
        // js-libp2p ships no QUIC transport for Node.js; `@chainsafe/libp2p-quic` (a native
        // module) and `@libp2p/tls` are not in the harness's lock file yet.
        let why = if transport == Transport::Quic {
            "not run: no QUIC in the js harness"
        } else {
            "not run: no TLS in the js harness"
        };
        for scenario in Scenario::ALL {
            for dir in Dir::ALL {
                rec.record(scenario, dir, Outcome::NotApplicable(why));
            }
        }
        return rec.cells;
    }
    let ours = match Ours::spawn(transport).await {
        Ok(ours) => ours,
        Err(e) => {
            rec.fail_rest(&e);
            return rec.cells;
        }
    };
    let mut js = match JsPeer::spawn().await {
        Ok(js) => js,
        Err(e) => {
            rec.fail_rest(&format!("start the js harness: {e}"));
            return rec.cells;
        }
    };
    let them: PeerId = match js.peer.parse() {
        Ok(p) => p,
        Err(e) => {
            rec.fail_rest(&format!("js peer id {}: {e:?}", js.peer));
            return rec.cells;
        }
    };
    let their_addr: Multiaddr = js.addrs[0].parse().expect("js listen address");
    let us = ours.peer().to_string();

    // Us → them, on a connection our node dials.
    rec.run(Scenario::Connect, Dir::Ours, async {
        let route = ours
            .node
            .add_contact("js-libp2p", their_addr.clone())
            .await
            .map_err(|e| format!("dial js-libp2p: {e}"))?;
        ensure(route.peer == them, || format!("dialled {}", route.peer))?;
        let count = js.call("connections", json!({ "peer": us })).await?;
        ensure(count.as_u64() >= Some(1), || {
            format!("js sees {count} connections")
        })
    })
    .await;
    let conn = connection(&ours, them, Direction::Outbound).await;
    rec.run(Scenario::Identify, Dir::Ours, async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let answered = js.call("identify_answered", json!({ "peer": us })).await?;
        ensure(answered.as_u64() == Some(1), || {
            format!("js answered {answered} identify requests on one connection")
        })?;
        let info = ours
            .node
            .endpoint()
            .identify(&conn)
            .await
            .map_err(|e| format!("identify: {e}"))?;
        let key: String = info
            .public_key
            .to_protobuf_encoding()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ensure(key == js.public_key, || "public key".into())?;
        let listen: Vec<String> = info.listen_addrs.iter().map(|a| a.to_string()).collect();
        let expected: Vec<String> = js
            .addrs
            .iter()
            .map(|a| a.split("/p2p/").next().unwrap_or(a).to_owned())
            .collect();
        ensure(listen == expected, || format!("listen addrs {listen:?}"))?;
        let got: BTreeSet<&str> = info.protocols.iter().map(String::as_str).collect();
        let want: BTreeSet<&str> = js.protocols.iter().map(String::as_str).collect();
        ensure(got == want, || format!("protocols {got:?} vs {want:?}"))?;
        // js adds the observed peer's ID (ours) to the address it saw us at.
        let local = Multiaddr::from_socket_addr(conn.info().local_addr);
        let observed = info.observed_addr.clone().map(|a| {
            let id = a.peer_id();
            (a.without_p2p(), id)
        });
        ensure(
            matches!(&observed, Some((addr, id)) if *addr == local
                && id.is_none_or(|id| id == ours.peer())),
            || format!("observed addr {:?}", info.observed_addr),
        )?;
        ensure(info.protocol_version == js.protocol_version, || {
            info.protocol_version.clone()
        })?;
        ensure(info.agent_version == js.agent_version, || {
            info.agent_version.clone()
        })
    })
    .await;
    rec.run(Scenario::Ping, Dir::Ours, ours.ping(&conn)).await;
    rec.run(Scenario::Streams, Dir::Ours, ours.echo_many(&conn))
        .await;
    rec.run(Scenario::Unsupported, Dir::Ours, ours.unsupported(&conn))
        .await;
    rec.run(Scenario::FindNode, Dir::Ours, async {
        // X is known to js only (js dialled it); a fresh node of ours bootstraps from js
        // and finds X through js's FIND_NODE answers.
        let x = kad_node(transport, DiscoveryConfig::default()).await?;
        let x_addr = x.listen_addrs()[0].clone();
        js.call("dial", json!({ "addr": x_addr.to_string() }))
            .await?;
        let config = DiscoveryConfig {
            bootstrap: vec![their_addr.clone()],
            ..DiscoveryConfig::default()
        };
        let asker = kad_node(transport, config).await?;
        let discovery = asker.discovery().ok_or("no discovery")?;
        let mut result = Err("not tried".to_owned());
        // js adds X to its table once identify showed X's kad protocol: retry briefly.
        for _ in 0..20 {
            discovery
                .bootstrap()
                .await
                .map_err(|e| format!("bootstrap from js: {e}"))?;
            result = match discovery.find_peer(x.peer_id()).await {
                Ok(found)
                    if found.addrs.contains(&x_addr.clone().without_p2p())
                        || found.addrs.contains(&x_addr) =>
                {
                    Ok(())
                }
                Ok(found) => Err(format!("X found at {:?}", found.addrs)),
                Err(e) => Err(format!("find X through js: {e}")),
            };
            if result.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        asker.close().await;
        x.close().await;
        result
    })
    .await;
    rec.record(
        Scenario::Perf,
        Dir::Ours,
        Outcome::NotApplicable("n/a: no js perf package"),
    );
    rec.run(Scenario::Reset, Dir::Ours, async {
        ours.reset_mid_stream(&conn).await?;
        let probe = js.call("wait_event", json!({ "event": "probe" })).await?;
        ensure(probe["outcome"] == "reset", || {
            format!("js's probe saw {probe}")
        })?;
        ours.ping(&conn).await
    })
    .await;
    rec.run(Scenario::GracefulClose, Dir::Ours, async {
        let (bytes, sha) = ours.send_then_close(&conn).await?;
        let sink = js.call("wait_event", json!({ "event": "sink" })).await?;
        ensure(
            sink["bytes"].as_u64() == Some(bytes as u64) && sink["sha256"] == sha.as_str(),
            || format!("sent {bytes} bytes, js got {sink}"),
        )
    })
    .await;

    // Them → us, on a connection js dials.
    let answered_before = js
        .call("identify_answered", json!({ "peer": us }))
        .await
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    rec.run(Scenario::Connect, Dir::Theirs, async {
        let dialled = js
            .call("dial", json!({ "addr": ours.addr().to_string() }))
            .await?;
        ensure(dialled["peer"] == us.as_str(), || {
            format!("js reached {dialled}")
        })
    })
    .await;
    let conn = connection(&ours, them, Direction::Inbound).await;
    rec.run(Scenario::Identify, Dir::Theirs, async {
        let info = js.call("identified", json!({ "peer": us })).await?;
        let ep = ours.node.endpoint();
        let key: String = ep
            .keypair()
            .public()
            .to_protobuf_encoding()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ensure(info["publicKey"] == key.as_str(), || {
            format!("public key {}", info["publicKey"])
        })?;
        let listen: Vec<String> = ep
            .listen_addrs()
            .into_iter()
            .map(|a| a.without_p2p().to_string())
            .collect();
        ensure(strings(&info["listenAddrs"]) == listen, || {
            format!("listen addrs {}", info["listenAddrs"])
        })?;
        let mut protocols = ep.protocols();
        protocols.sort();
        ensure(strings(&info["protocols"]) == protocols, || {
            format!("protocols {} vs {protocols:?}", info["protocols"])
        })?;
        ensure(info["protocolVersion"] == "/pheromone/1.0.0", || {
            format!("protocol version {}", info["protocolVersion"])
        })?;
        ensure(
            info["agentVersion"] == ep.config().agent_version.as_str(),
            || format!("agent version {}", info["agentVersion"]),
        )?;
        // What we saw js at: the socket it dialled from.
        let observed = Multiaddr::from_socket_addr(conn.info().remote_addr).to_string();
        ensure(info["observedAddr"] == observed.as_str(), || {
            format!("observed addr {}", info["observedAddr"])
        })?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let answered = js
            .call("identify_answered", json!({ "peer": us }))
            .await?
            .as_u64()
            .unwrap_or(0)
            - answered_before;
        // At most one: our node skips a peer it identified in the last 30 s.
        ensure(answered <= 1, || {
            format!("our node sent {answered} identify requests on the connection js dialled")
        })
    })
    .await;
    rec.run(Scenario::Ping, Dir::Theirs, async {
        js.call("ping", json!({ "peer": us })).await.map(drop)
    })
    .await;
    rec.run(Scenario::Streams, Dir::Theirs, async {
        let n = js
            .call(
                "echo",
                json!({ "peer": us, "protocol": ECHO, "count": STREAMS }),
            )
            .await?;
        ensure(n.as_u64() == Some(STREAMS as u64), || format!("{n}"))
    })
    .await;
    rec.run(Scenario::Unsupported, Dir::Theirs, async {
        let r = js
            .call("unsupported", json!({ "peer": us, "protocol": MISSING }))
            .await?;
        ensure(r["refused"] == true, || format!("js: {r}"))?;
        ours.ping(&conn).await
    })
    .await;
    rec.run(Scenario::FindNode, Dir::Theirs, async {
        // Y is known to our node only; js's lookup asks us and learns Y.
        let y = kad_node(transport, DiscoveryConfig::default()).await?;
        let y_addr = y.listen_addrs()[0].clone();
        ours.node
            .discovery()
            .ok_or("no discovery")?
            .add_address(y.peer_id(), y_addr)
            .await
            .map_err(|e| format!("add Y: {e}"))?;
        let key = y.peer_id().to_string();
        let mut result = Err("not tried".to_owned());
        for _ in 0..20 {
            let found = js.call("closest", json!({ "key": key })).await?;
            if strings(&found).contains(&key) {
                result = Ok(());
                break;
            }
            result = Err(format!("js found {found}"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        y.close().await;
        result
    })
    .await;
    rec.record(
        Scenario::Perf,
        Dir::Theirs,
        Outcome::NotApplicable("n/a: no js perf package"),
    );
    rec.run(Scenario::Reset, Dir::Theirs, async {
        js.call("reset_mid_stream", json!({ "peer": us, "protocol": PROBE }))
            .await?;
        ours.survived_reset(&conn).await
    })
    .await;
    rec.run(Scenario::GracefulClose, Dir::Theirs, async {
        let sent = js
            .call(
                "send_then_close",
                json!({ "peer": us, "protocol": SINK, "size": CLOSE_BYTES, "seed": 11 }),
            )
            .await?;
        let (bytes, sha) = ours.sink_report().await?;
        ensure(
            sent["bytes"].as_u64() == Some(bytes as u64) && sent["sha256"] == sha.as_str(),
            || format!("js sent {sent}, our sink got {bytes} bytes"),
        )?;
        ensure(
            sha == sha256_hex(&crate::common::pattern(CLOSE_BYTES, 11)),
            || "js's bytes differ from the pattern".into(),
        )
    })
    .await;
    js.stop().await;
    ours.node.close().await;
    rec.cells
}
