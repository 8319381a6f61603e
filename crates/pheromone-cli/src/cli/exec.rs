//! `pheromone exec PEER… -- CMD ARGS` and `exec --all -- CMD ARGS`: one command on many
//! hosts at once. The daemon runs the fleet (it owns the node) and streams each host's
//! output here; this prints it line by line prefixed by the host's name (or, with
//! `--group`, in one block per host when it finishes), shows a progress bar when stdout
//! is a terminal, and ends with a summary table. `--json` prints one object per host
//! instead. The exit code is 0 only if every host exited 0.
//!
//! Ctrl-C closes the control connection, which cancels the run: the daemon resets every
//! stream and the hosts kill their commands.

use super::style::{paint, transfer, Paint};
use super::{unexpected, Ctx, Step};
use crate::control_proto::{
    Event, ExecChunk, ExecCommand, HostRef, HostSummary, Op, OutputStream, Reply,
};
use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

/// Output kept per host and stream for `--group` and `--json` (hosts cap what they send
/// anyway; this bounds what a misbehaving one can make us hold).
const MAX_KEPT: usize = 64 << 20;

/// What `exec` was asked to do.
#[derive(Debug, Clone)]
pub struct ExecArgs {
    /// The hosts (peer IDs, names or `/p2p/` addresses).
    pub peers: Vec<String>,
    /// Every connected peer instead.
    pub all: bool,
    /// Run through `sh -c`.
    pub shell: bool,
    /// Kill the command after this long.
    pub timeout: Option<Duration>,
    /// Most output bytes per host.
    pub max_output: Option<u64>,
    /// Most hosts at once.
    pub concurrency: u32,
    /// Print each host's output as one block.
    pub group: bool,
    /// The program and its arguments.
    pub command: Vec<String>,
}

/// One host's output while it runs.
#[derive(Default)]
struct HostOutput {
    /// The unfinished last line of each stream (streaming mode).
    partial: [Vec<u8>; 2],
    /// Everything it sent (group and JSON modes), up to [`MAX_KEPT`] per stream.
    kept: [Vec<u8>; 2],
}

fn index(stream: OutputStream) -> usize {
    match stream {
        OutputStream::Stdout => 0,
        OutputStream::Stderr => 1,
    }
}

struct Printer {
    json: bool,
    group: bool,
    bar: Option<ProgressBar>,
    names: HashMap<String, String>,
    width: usize,
    hosts: HashMap<String, HostOutput>,
}

impl Printer {
    fn plan(&mut self, hosts: Vec<HostRef>) {
        self.width = hosts.iter().map(|h| h.host.len()).max().unwrap_or(4);
        if let Some(bar) = &self.bar {
            bar.set_length(hosts.len() as u64);
        }
        for h in hosts {
            self.names.insert(h.peer_id, h.host);
        }
    }

    fn name(&self, peer_id: &str) -> String {
        self.names
            .get(peer_id)
            .cloned()
            .unwrap_or_else(|| peer_id.to_owned())
    }

    fn line(&self, stream: OutputStream, text: &str) {
        let print = || match stream {
            OutputStream::Stdout => println!("{text}"),
            OutputStream::Stderr => eprintln!("{text}"),
        };
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    fn prefixed(&self, peer_id: &str, stream: OutputStream, line: &[u8]) {
        let host = self.name(peer_id);
        let text = String::from_utf8_lossy(line);
        let sep = match stream {
            OutputStream::Stdout => "|",
            OutputStream::Stderr => "!",
        };
        let head = paint(&format!("{host:<w$} {sep}", w = self.width), Paint::Bold);
        self.line(stream, &format!("{head} {text}"));
    }

    fn output(&mut self, chunk: ExecChunk) {
        let i = index(chunk.stream);
        let out = self.hosts.entry(chunk.peer_id.clone()).or_default();
        if self.json || self.group {
            let room = MAX_KEPT.saturating_sub(out.kept[i].len());
            out.kept[i].extend_from_slice(&chunk.data[..room.min(chunk.data.len())]);
            return;
        }
        out.partial[i].extend_from_slice(&chunk.data);
        let Some(end) = out.partial[i].iter().rposition(|&b| b == b'\n') else {
            // A very long line without a newline is printed in pieces, not held forever.
            if out.partial[i].len() >= MAX_KEPT {
                let piece = std::mem::take(&mut out.partial[i]);
                self.prefixed(&chunk.peer_id, chunk.stream, &piece);
            }
            return;
        };
        let rest = out.partial[i].split_off(end + 1);
        let done = std::mem::replace(&mut out.partial[i], rest);
        for line in done[..end].split(|&b| b == b'\n') {
            self.prefixed(&chunk.peer_id, chunk.stream, line);
        }
    }

    fn finished(&mut self, summary: &HostSummary) {
        let out = self.hosts.remove(&summary.peer_id).unwrap_or_default();
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("{} done", summary.host));
        }
        if self.json {
            self.hosts.insert(summary.peer_id.clone(), out);
            return;
        }
        if self.group {
            let head = format!(
                "── {} ({}, {}) ──",
                summary.host,
                summary.status_text(),
                seconds(summary.duration_ms)
            );
            self.line(OutputStream::Stdout, &paint(&head, Paint::Bold));
            for (stream, kept) in [OutputStream::Stdout, OutputStream::Stderr]
                .into_iter()
                .zip(&out.kept)
            {
                let text = String::from_utf8_lossy(kept);
                for line in text.strip_suffix('\n').unwrap_or(&text).split('\n') {
                    if !kept.is_empty() {
                        self.line(stream, line);
                    }
                }
            }
            return;
        }
        for (stream, partial) in [OutputStream::Stdout, OutputStream::Stderr]
            .into_iter()
            .zip(&out.partial)
        {
            if !partial.is_empty() {
                self.prefixed(&summary.peer_id, stream, partial);
            }
        }
    }
}

fn seconds(ms: u64) -> String {
    format!("{:.3}s", ms as f64 / 1000.0)
}

fn progress_bar() -> Option<ProgressBar> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout());
    let style =
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} hosts {msg} {elapsed}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(100));
    Some(bar)
}

/// Runs `pheromone exec`.
pub async fn run(ctx: &Ctx, args: ExecArgs) -> Result<()> {
    let Some((program, rest)) = args.command.split_first() else {
        bail!("no command given: pheromone exec PEER… -- CMD ARGS");
    };
    let mut client = ctx.client().await?;
    client
        .start(Op::Exec {
            peers: args.peers,
            all: args.all,
            command: ExecCommand {
                program: program.clone(),
                args: rest.to_vec(),
                shell: args.shell,
                timeout_ms: args
                    .timeout
                    .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)),
                max_output: args.max_output,
            },
            concurrency: args.concurrency,
        })
        .await?;
    let mut printer = Printer {
        json: ctx.json,
        group: args.group,
        bar: if ctx.json { None } else { progress_bar() },
        names: HashMap::new(),
        width: 4,
        hosts: HashMap::new(),
    };
    let mut interrupt = super::interrupt()?;
    let summaries = loop {
        let step = tokio::select! {
            _ = interrupt.recv() => {
                if let Some(bar) = &printer.bar {
                    bar.finish_and_clear();
                }
                bail!("interrupted: the commands still running were killed");
            }
            step = client.next() => step,
        };
        let step = match step {
            Ok(step) => step,
            Err(e) => {
                if let Some(bar) = &printer.bar {
                    bar.finish_and_clear();
                }
                return Err(e);
            }
        };
        match step {
            Step::Event(Event::ExecPlan { hosts }) => printer.plan(hosts),
            Step::Event(Event::ExecStarted(host)) => {
                if let Some(bar) = &printer.bar {
                    bar.set_message(format!("{} started", host.host));
                }
            }
            Step::Event(Event::ExecOutput(chunk)) => printer.output(chunk),
            Step::Event(Event::ExecFinished(summary)) => printer.finished(&summary),
            Step::Event(_) => {}
            Step::Done(Reply::Exec(summaries)) => break summaries,
            Step::Done(other) => return Err(unexpected(&other)),
        }
    };
    if let Some(bar) = &printer.bar {
        bar.finish_and_clear();
    }
    if ctx.json {
        for s in &summaries {
            let out = printer.hosts.remove(&s.peer_id).unwrap_or_default();
            let mut value = serde_json::to_value(s)?;
            if let Some(object) = value.as_object_mut() {
                for (key, kept) in ["stdout", "stderr"].into_iter().zip(&out.kept) {
                    let text = String::from_utf8_lossy(kept).into_owned();
                    object.insert(key.to_owned(), serde_json::Value::String(text));
                }
            }
            ctx.print_json(&value)?;
        }
    } else {
        print_table(&summaries);
    }
    let failed = summaries.iter().filter(|s| !s.success).count();
    if failed > 0 {
        bail!(
            "{failed} of {} host{} did not exit 0",
            summaries.len(),
            if summaries.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

fn print_table(summaries: &[HostSummary]) {
    let width = summaries
        .iter()
        .map(|s| s.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!();
    let header = format!(
        "{:<width$}  {:<17}  {:>9}  {:>12}  NOTE",
        "HOST", "STATUS", "DURATION", "BYTES"
    );
    println!("{}", paint(&header, Paint::Bold));
    for s in summaries {
        let status = format!("{:<17}", s.status_text());
        let status = paint(&status, if s.success { Paint::Green } else { Paint::Red });
        let mut notes = Vec::new();
        if s.truncated {
            notes.push("output truncated at the cap".to_owned());
        }
        if let Some(error) = &s.error {
            notes.push(error.clone());
        }
        println!(
            "{:<width$}  {status}  {:>9}  {:>12}  {}",
            s.host,
            seconds(s.duration_ms),
            transfer(s.stdout_bytes + s.stderr_bytes),
            notes.join("; ")
        );
    }
}
