//! `pheromone demo` as a person runs it: no set-up, no arguments, a bounded run, exit 0,
//! and a narration that shows each step happened (counts included).

#![allow(clippy::disallowed_methods)] // process tests run on the real clock

mod common;

use common::run;

#[test]
fn demo_narrates_a_five_node_network_and_exits_zero() {
    // The demo needs no data dir; the harness passes one anyway and the demo ignores it.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(dir.path(), &["demo"]);
    assert!(out.status.success(), "{out:?}");
    let text = &out.stdout;
    assert!(!text.contains('\x1b'), "no colours off a terminal: {text}");
    for name in ["luda", "kefir", "yoghurt", "skyr", "lassi"] {
        let up = text
            .lines()
            .find(|l| l.contains(&format!("✓ {name} ")) && l.contains("listening on"))
            .unwrap_or_else(|| panic!("{name} never came up: {text}"));
        assert!(up.contains("12D3KooW"), "{up}");
        assert!(up.contains("/ip4/127.0.0.1/tcp/"), "{up}");
    }
    let links = text
        .lines()
        .filter(|l| l.contains("connected in") && l.contains("identify says"))
        .count();
    assert_eq!(links, 5, "a ring of five links: {text}");
    assert!(
        text.contains("kefir answers: \"kefir heard \\\"hello from luda\\\" from luda\""),
        "{text}"
    );
    // Both state-machine rounds, every operation in order, twice.
    let ops: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" → ") && !l.contains("connected in"))
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    let round = [
        "ConnectReq",
        "ConnectResp",
        "GetReq",
        "GetResp",
        "FetchReq",
        "FetchResp",
        "NoticeReq",
        "NoticeResp",
    ];
    assert_eq!(ops, [round, round].concat(), "{text}");
    assert!(
        text.contains("over 4 connections, each closed after its reply"),
        "short mode: a connection per request: {text}"
    );
    assert!(
        text.contains("over 1 connection (still open)"),
        "long mode: one connection: {text}"
    );
    for name in ["luda", "kefir", "yoghurt", "skyr"] {
        assert!(
            text.contains(&format!("✓ {name:<8} received \"fresh milk at lassi's\"")),
            "{name} missed the broadcast: {text}"
        );
    }
    // Each copy's hops are read against the shortest way over the open links.
    for name in ["luda", "kefir", "yoghurt", "skyr"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("✓ {name:<8} received")))
            .unwrap_or_default();
        assert!(
            line.contains("hop")
                && (line.contains("(the shortest way)") || line.contains("away; the tree")),
            "{name}: {line}"
        );
    }
    assert!(
        text.contains("4 of 4 nodes received it exactly once; 0 duplicate deliveries"),
        "{text}"
    );
    assert!(
        text.contains("pheromone up"),
        "points at the next step: {text}"
    );
}
