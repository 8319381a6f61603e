//! The client side of every subcommand but `up`: connect to the daemon's control socket,
//! send one request, print its events and result for a person or, with `--json`, as JSON
//! (one object per line for streams).
//!
//! Layout: [`node`] (id, status, peers, routes, connect, disconnect), [`alias`], [`ping`], [`msg`]
//! (send, recv, broadcast, subscribe), [`perf`], [`forward`] (expose, forward, forwards,
//! unexpose, unforward), [`exec`]; [`style`] holds colours, progress bars and
//! number formatting. Nothing here touches the network; everything goes through the daemon.

pub mod alias;
pub mod dht;
pub mod exec;
pub mod forward;
pub mod msg;
pub mod node;
pub mod perf;
pub mod ping;
pub mod style;

use crate::control_proto::{
    read_line, write_line, Body, Event, Line, Op, Reply, Request, Response, IDENTITY_NAME,
    SOCKET_NAME,
};
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::BufReader;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

/// How long a request that does not stream may take before the CLI gives up.
const CALL_TIMEOUT: Duration = Duration::from_secs(90);

/// What the subcommands share: which daemon, and how to print.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The data dir whose daemon we talk to.
    pub data_dir: PathBuf,
    /// Whether the data dir was chosen explicitly (so hints repeat `--data-dir`).
    pub data_dir_given: bool,
    /// Machine output.
    pub json: bool,
}

impl Ctx {
    /// A spinner for a step that can take seconds: on a terminal only, and never with
    /// `--json` (piped or machine output stays plain).
    pub fn spinner(&self, message: String) -> Option<indicatif::ProgressBar> {
        if self.json {
            None
        } else {
            style::spinner(message)
        }
    }

    /// Connects to the daemon.
    pub async fn client(&self) -> Result<Client> {
        Client::connect(self).await
    }

    /// Prints `value` as one JSON line.
    pub fn print_json<T: Serialize>(&self, value: &T) -> Result<()> {
        println!("{}", serde_json::to_string(value)?);
        Ok(())
    }

    /// The `up` command a person should run to start this daemon.
    fn up_hint(&self) -> String {
        if self.data_dir_given {
            format!("pheromone up --data-dir {}", self.data_dir.display())
        } else {
            "pheromone up".to_owned()
        }
    }
}

/// One step of a running request.
#[derive(Debug)]
pub enum Step {
    /// Progress.
    Event(Event),
    /// The final result.
    Done(Reply),
}

/// A connection to the daemon's control socket.
pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    current: u64,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(ctx: &Ctx) -> Result<Self> {
        let path = ctx.data_dir.join(SOCKET_NAME);
        let stream = match UnixStream::connect(&path).await {
            Ok(stream) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                bail!(
                    "no pheromone daemon is running for data dir {} (no control socket at {}); start one with `{}`",
                    ctx.data_dir.display(),
                    path.display(),
                    ctx.up_hint()
                );
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot reach the daemon at {}", path.display()))
            }
        };
        let (read, writer) = stream.into_split();
        Ok(Self {
            reader: BufReader::new(read),
            writer,
            next_id: 1,
            current: 0,
            buf: Vec::new(),
        })
    }

    /// Sends a request; read its steps with [`Client::next`].
    pub async fn start(&mut self, op: Op) -> Result<()> {
        self.current = self.next_id;
        self.next_id += 1;
        let request = Request {
            id: self.current,
            op,
        };
        write_line(&mut self.writer, &request)
            .await
            .context("cannot send the request to the daemon")
    }

    /// Sends a request whose answer nobody waits for (an ack), beside the current one.
    pub async fn send_only(&mut self, op: Op) -> Result<()> {
        let request = Request {
            id: self.next_id,
            op,
        };
        self.next_id += 1;
        write_line(&mut self.writer, &request)
            .await
            .context("cannot send the request to the daemon")
    }

    /// The next event or the final result of the current request; the daemon's error as
    /// an error.
    pub async fn next(&mut self) -> Result<Step> {
        loop {
            let line = read_line(&mut self.reader, &mut self.buf)
                .await
                .context("lost the connection to the daemon")?;
            match line {
                Line::Complete => {}
                Line::Eof => bail!("the daemon closed the connection (did it shut down?)"),
                Line::TooLong => bail!("the daemon sent a response line that is too long"),
            }
            let response: Response = serde_json::from_slice(&self.buf).context(
                "the daemon sent a response this CLI does not understand (versions differ?)",
            )?;
            if response.id != self.current {
                // An answer to an earlier request of ours; nothing waits for it any more.
                continue;
            }
            return match response.body {
                Body::Event { event } => Ok(Step::Event(event)),
                Body::Ok { result } => Ok(Step::Done(result)),
                Body::Error { error } => Err(error.into()),
            };
        }
    }

    /// Runs a request that does not stream and returns its result.
    pub async fn call(&mut self, op: Op) -> Result<Reply> {
        self.start(op).await?;
        let wait = async {
            loop {
                if let Step::Done(reply) = self.next().await? {
                    return Ok(reply);
                }
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, wait)
            .await
            .map_err(|_| anyhow!("timeout: the daemon did not answer within {CALL_TIMEOUT:?}"))?
    }
}

/// The error for a reply of the wrong type (a daemon of another version).
pub fn unexpected(reply: &Reply) -> anyhow::Error {
    anyhow!("the daemon answered with an unexpected {reply:?}")
}

/// The data dir chosen by flag or environment, else the platform default.
pub fn data_dir(flag: Option<PathBuf>) -> Result<(PathBuf, bool)> {
    match flag {
        Some(dir) => Ok((dir, true)),
        None => Ok((crate::daemon::config::default_data_dir()?, false)),
    }
}

/// `pheromone id`: the peer ID, creating the identity if there is none (no daemon needed).
pub fn id(ctx: &Ctx) -> Result<()> {
    crate::daemon::create_private_dir(&ctx.data_dir)?;
    let keypair = pheromone::identity_file::load_or_generate(&identity_path(&ctx.data_dir))?;
    let peer_id = keypair.peer_id().to_string();
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "peer_id": peer_id }))
    } else {
        println!("{peer_id}");
        Ok(())
    }
}

/// Ctrl-C as a stream, registered once so no press between two waits is lost.
pub fn interrupt() -> Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot watch Ctrl-C")
}

/// Where the identity key lives in a data dir.
pub fn identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join(IDENTITY_NAME)
}
