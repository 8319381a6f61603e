//! Drives `examples/state_machine.rs` in short and long mode: the full
//! ConnectReq … NoticeResp exchange in order, each handler seeing the right sender, and an
//! unparseable message answered with `UnknownOp` instead of a crash.

#[path = "../examples/state_machine.rs"]
#[allow(dead_code)]
mod demo;

use demo::{Demo, Message};
use pheromone::node::ConnectionMode;
use std::time::Duration;

async fn drive(mode: ConnectionMode) {
    let demo = Demo::start(mode).await.expect("start");
    let transcript = demo.run().await.expect("exchange");
    assert_eq!(transcript, demo::expected(), "{mode:?}");
    let seen = |s: &demo::Seen| s.lock().expect("lock").clone();
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        seen(&demo.yoghurt_seen),
        vec![pair("luda", "ConnectReq"), pair("luda", "FetchReq")]
    );
    assert_eq!(
        seen(&demo.luda_seen),
        vec![pair("yoghurt", "GetReq"), pair("yoghurt", "NoticeReq")]
    );

    // Garbage, and a well-formed message with an unknown operation: UnknownOp, no crash.
    let reply = Demo::send_raw(&demo.luda, "yoghurt", b"{this is not json".to_vec())
        .await
        .expect("an answer");
    assert_eq!(reply.operation, "UnknownOp");
    assert_eq!(reply.name, "yoghurt");
    assert!(reply.data.contains("unparseable"), "{}", reply.data);
    let reply = Demo::send(&demo.yoghurt, "luda", "DanceReq")
        .await
        .expect("an answer");
    assert_eq!(reply.operation, "UnknownOp");
    // The nodes still work afterwards.
    let again: Message = Demo::send(&demo.luda, "yoghurt", "GetReq")
        .await
        .expect("again");
    assert_eq!(again.operation, "GetResp");

    match mode {
        ConnectionMode::Long => {
            // Both directions used the one connection luda dialled.
            assert_eq!(demo.luda.endpoint().connections().len(), 1);
            assert_eq!(demo.yoghurt.endpoint().connections().len(), 1);
        }
        ConnectionMode::Short => {
            // Every connection was closed after its reply.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while !(demo.luda.endpoint().connections().is_empty()
                && demo.yoghurt.endpoint().connections().is_empty())
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "short connections left open"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    demo.close().await;
}

#[tokio::test]
async fn state_machine_long_mode() {
    tokio::time::timeout(Duration::from_secs(60), drive(ConnectionMode::Long))
        .await
        .expect("test timed out");
}

#[tokio::test]
async fn state_machine_short_mode() {
    tokio::time::timeout(Duration::from_secs(60), drive(ConnectionMode::Short))
        .await
        .expect("test timed out");
}
