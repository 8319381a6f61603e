//! `send`, `recv`, `broadcast` and `subscribe`: messages to one peer through the daemon's
//! inbox, and to every node subscribed to a topic.
//!
//! `recv` and `subscribe` print each message as it arrives — sender, size, and the text
//! when it is UTF-8 — or with `--json` one object per line with the bytes in base64
//! (`data`) and, for UTF-8, the `text`.

use super::style::{paint, peer_label, transfer, Paint};
use super::{unexpected, Ctx, Step};
use crate::control_proto::{DirectMessage, Event, Op, Reply, TopicMessage, MAX_MESSAGE};
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;

/// What to send: the text argument or a file's bytes.
pub fn payload(text: Option<String>, file: Option<&Path>) -> Result<Vec<u8>> {
    match (text, file) {
        (Some(text), None) => Ok(text.into_bytes()),
        (None, Some(path)) => read_file(path),
        (None, None) => bail!("nothing to send: give TEXT or --file FILE"),
        (Some(_), Some(_)) => bail!("give TEXT or --file FILE, not both"),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut data = Vec::new();
    // Read one byte past the cap so an over-long file is refused without reading it all.
    file.take(MAX_MESSAGE as u64 + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if data.len() > MAX_MESSAGE {
        bail!(
            "{} is larger than the message limit of {}",
            path.display(),
            transfer(MAX_MESSAGE as u64)
        );
    }
    Ok(data)
}

/// `pheromone send PEER TEXT | --file F`.
pub async fn send(ctx: &Ctx, peer: String, data: Vec<u8>) -> Result<()> {
    let mut client = ctx.client().await?;
    let bar = ctx.spinner(format!("sending {} to {peer}", transfer(data.len() as u64)));
    let reply = client.call(Op::Send { peer, data }).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let reply = reply?;
    let Reply::Sent { peer_id, bytes } = &reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(&serde_json::json!({ "peer_id": peer_id, "bytes": bytes }));
    }
    println!("sent {bytes} bytes to {peer_id}");
    Ok(())
}

/// `pheromone recv [--count N]`: each message is printed (and stdout flushed) before it
/// is acknowledged, so the daemon removes only what was shown.
pub async fn recv(ctx: &Ctx, count: Option<u64>) -> Result<()> {
    let mut client = ctx.client().await?;
    client.start(Op::Recv { count, ack: true }).await?;
    let mut interrupt = super::interrupt()?;
    loop {
        let step = tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            step = client.next() => step?,
        };
        match step {
            Step::Event(Event::Message(message)) => {
                let id = message.message_id.clone();
                print_message(ctx, message)?;
                std::io::Write::flush(&mut std::io::stdout()).context("cannot write stdout")?;
                client.send_only(Op::RecvAck { message_id: id }).await?;
            }
            Step::Event(_) => {}
            Step::Done(Reply::Received { .. }) => return Ok(()),
            Step::Done(other) => return Err(unexpected(&other)),
        }
    }
}

fn print_message(ctx: &Ctx, message: DirectMessage) -> Result<()> {
    let text = std::str::from_utf8(&message.data).ok().map(str::to_owned);
    if ctx.json {
        let mut value = serde_json::to_value(&message)?;
        if let (Some(text), Some(object)) = (text, value.as_object_mut()) {
            object.insert("text".to_owned(), serde_json::Value::String(text));
        }
        return ctx.print_json(&value);
    }
    let from = peer_label(&message.from, message.from_name.as_deref());
    let head = paint(
        &format!("from {from}, {} bytes", message.bytes),
        Paint::Bold,
    );
    match text {
        Some(text) => println!("{head}: {text}"),
        None => println!("{head} {}", paint("(binary)", Paint::Dim)),
    }
    Ok(())
}

/// `pheromone broadcast TOPIC TEXT`.
pub async fn broadcast(ctx: &Ctx, topic: String, text: String) -> Result<()> {
    let reply = ctx
        .client()
        .await?
        .call(Op::Broadcast {
            topic,
            data: text.into_bytes(),
        })
        .await?;
    let Reply::Published {
        topic,
        message_id,
        bytes,
    } = &reply
    else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(&reply_json(topic, message_id, *bytes));
    }
    println!("published {bytes} bytes on {topic} (message {message_id})");
    Ok(())
}

fn reply_json(topic: &str, message_id: &str, bytes: u64) -> serde_json::Value {
    serde_json::json!({ "topic": topic, "message_id": message_id, "bytes": bytes })
}

/// `pheromone subscribe TOPIC [--count N]`.
pub async fn subscribe(ctx: &Ctx, topic: String, count: Option<u64>) -> Result<()> {
    let mut client = ctx.client().await?;
    client.start(Op::Subscribe { topic, count }).await?;
    let mut interrupt = super::interrupt()?;
    loop {
        let step = tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            step = client.next() => step?,
        };
        match step {
            Step::Event(Event::Subscribed { topic }) if !ctx.json => {
                // On stderr, so stdout holds only messages.
                eprintln!("subscribed to {topic}; waiting for messages");
            }
            Step::Event(Event::TopicMessage(message)) => print_topic_message(ctx, message)?,
            Step::Event(_) => {}
            Step::Done(Reply::Received { .. }) => return Ok(()),
            Step::Done(other) => return Err(unexpected(&other)),
        }
    }
}

fn print_topic_message(ctx: &Ctx, message: TopicMessage) -> Result<()> {
    let text = std::str::from_utf8(&message.data).ok().map(str::to_owned);
    if ctx.json {
        let mut value = serde_json::to_value(&message)?;
        if let (Some(text), Some(object)) = (text, value.as_object_mut()) {
            object.insert("text".to_owned(), serde_json::Value::String(text));
        }
        return ctx.print_json(&value);
    }
    let from = peer_label(&message.from, message.from_name.as_deref());
    let plural = if message.hops == 1 { "" } else { "s" };
    let head = paint(
        &format!(
            "[{}] from {from}, {} bytes, {} hop{plural}",
            message.topic, message.bytes, message.hops
        ),
        Paint::Bold,
    );
    match text {
        Some(text) => println!("{head}: {text}"),
        None => println!("{head} {}", paint("(binary)", Paint::Dim)),
    }
    Ok(())
}
