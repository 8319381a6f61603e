//! The daemon's settings: the `up` flags, the TOML config file that mirrors them, and the
//! merge of the two (flags win; a key the file does not know is an error naming the key).
//!
//! Everything is validated here, before the daemon touches the network, so a typo in an
//! address or a duration stops `up` with one clear line. Nothing here does network IO.

use anyhow::{bail, Context, Result};
use pheromone::{Multiaddr, PeerId};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Addresses `up` listens on when neither flag nor file names any.
pub const DEFAULT_LISTEN: [&str; 2] = ["/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001"];
/// Longest human name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Whether links are kept open between requests (see DESIGN.md, "long and short mode").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One link per peer, kept open and alive.
    #[default]
    Long,
    /// A link per request, closed after the reply.
    Short,
}

impl Mode {
    /// The name used in flags, files and `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Long => "long",
            Mode::Short => "short",
        }
    }
}

/// The flags of `pheromone up`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UpArgs {
    /// Address to listen on (repeatable; default /ip4/0.0.0.0/tcp/4001 and /ip6/::/tcp/4001;
    /// `tcp/0` picks a free port). Each TCP address also gets QUIC (`udp/PORT/quic-v1`)
    /// on the same port number where it is free, unless `--no-quic`; `…/udp/N/quic-v1`
    /// addresses may be given too.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Listen on TCP only: no QUIC beside each TCP listen address.
    #[arg(long)]
    pub no_quic: bool,
    /// Peer to dial at start (repeatable): `host:port` or a multiaddr, ideally with /p2p/.
    #[arg(long, value_name = "ADDR")]
    pub bootstrap: Vec<String>,
    /// This node's human name, shown to its peers.
    #[arg(long)]
    pub name: Option<String>,
    /// long: keep links open; short: a link per request.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// A TOML file with the same settings as these flags (flags win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Keep-alive ping interval on idle links, e.g. `15s`, `500ms`, or `off`.
    #[arg(long, value_name = "DURATION")]
    pub keepalive_interval: Option<String>,
    /// A link silent this long after a keep-alive ping is dropped, e.g. `20s`.
    #[arg(long, value_name = "DURATION")]
    pub keepalive_timeout: Option<String>,
    /// Answer /perf/1.0.0 so peers can measure throughput to this node (off by default:
    /// it lets a peer make this node send a lot of data).
    #[arg(long)]
    pub perf: bool,
    /// Let this peer run commands here with `pheromone exec` (repeatable; a peer ID).
    /// Exec is off unless some peer is allowed.
    #[arg(long, value_name = "PEER")]
    pub allow_exec: Vec<String>,
    /// A file of peer IDs allowed to exec, one per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    pub allow_exec_file: Option<PathBuf>,
    /// Let allowed peers run shell command lines (`exec --shell`, run with `sh -c`).
    #[arg(long)]
    pub allow_exec_shell: bool,
    /// Let allowed peers run only this program (repeatable; a name looked up in the
    /// commands' PATH, or a path). Without it an allowed peer may run any program,
    /// `sh` included.
    #[arg(long, value_name = "PROGRAM", conflicts_with = "allow_exec_shell")]
    pub allow_exec_program: Vec<String>,
    /// Commands get the daemon's whole environment. By default it is cleared: PATH is the
    /// system directories, and only HOME, USER, LOGNAME, LANG and TZ are kept.
    #[arg(long)]
    pub exec_inherit_env: bool,
    /// Run without the DHT: peers are found only through `--bootstrap`, `connect` and the
    /// route table (a relayed connection to a peer with no known address).
    #[arg(long)]
    pub no_dht: bool,
    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics, e.g.
    /// `127.0.0.1:9464`. A loopback address unless `--metrics-public`.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<String>,
    /// Let `--metrics` bind an address other hosts can reach (the metrics need no token).
    #[arg(long)]
    pub metrics_public: bool,
    /// Serve the live web dashboard at http://ADDR/, guarded by a token kept in the data
    /// dir (`pheromone dashboard` prints the URL). A loopback address unless
    /// `--dashboard-public`.
    #[arg(long, value_name = "HOST:PORT")]
    pub dashboard: Option<String>,
    /// Let `--dashboard` bind an address other hosts can reach.
    #[arg(long)]
    pub dashboard_public: bool,
    /// Log lines as text for people (default) or as JSON objects, one per line.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// How the daemon writes its log lines (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per line, with the fields of the event and of its spans.
    Json,
}

/// The config file: the same settings as [`UpArgs`], every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// As `--listen`.
    pub listen: Option<Vec<String>>,
    /// As `--bootstrap`.
    pub bootstrap: Option<Vec<String>>,
    /// As `--name`.
    pub name: Option<String>,
    /// As `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// As `--mode`.
    pub mode: Option<Mode>,
    /// As `--keepalive-interval`.
    pub keepalive_interval: Option<String>,
    /// As `--keepalive-timeout`.
    pub keepalive_timeout: Option<String>,
    /// As `--perf`.
    pub perf: Option<bool>,
    /// As `--allow-exec`.
    pub allow_exec: Option<Vec<String>>,
    /// As `--allow-exec-file` (relative to the working directory).
    pub allow_exec_file: Option<PathBuf>,
    /// As `--allow-exec-shell`.
    pub allow_exec_shell: Option<bool>,
    /// As `--allow-exec-program`.
    pub allow_exec_programs: Option<Vec<String>>,
    /// As `--exec-inherit-env`.
    pub exec_inherit_env: Option<bool>,
    /// `false` is `--no-dht`.
    pub dht: Option<bool>,
    /// `false` is `--no-quic`.
    pub quic: Option<bool>,
    /// How long a dial of a peer known at several addresses waits for one (QUIC first)
    /// before racing the next, e.g. `250ms` (the default).
    pub happy_eyeballs_delay: Option<String>,
    /// Most messages the inbox holds before senders are refused.
    pub inbox_max_messages: Option<usize>,
    /// Most bytes the inbox holds before senders are refused.
    pub inbox_max_bytes: Option<usize>,
    /// As `--metrics`.
    pub metrics: Option<String>,
    /// As `--metrics-public`.
    pub metrics_public: Option<bool>,
    /// As `--dashboard`.
    pub dashboard: Option<String>,
    /// As `--dashboard-public`.
    pub dashboard_public: Option<bool>,
    /// As `--log-format`.
    pub log_format: Option<LogFormat>,
    /// The `[resources]` table: the resource manager's limits (see `resources.rs`).
    pub resources: Option<super::resources::ResourcesFile>,
    /// `[aliases]`: NAME = "PEER_ID", the only names that pick peers for `expose
    /// --allow`, `exec` and `forward`.
    pub aliases: Option<BTreeMap<String, String>>,
}

impl FileConfig {
    /// Reads and parses `path`.
    /// Refused, naming the file and its mode, when it is not ours or others may write it
    /// (they could point the daemon at their own identity or open exec to themselves).
    pub fn load(path: &Path) -> Result<Self> {
        super::datadir::check_strict(path)?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// Parses TOML text; unknown keys are an error naming the key.
    pub fn parse(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.message().trim()))
    }
}

/// Everything the daemon runs with, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the identity, lock and control socket live.
    pub data_dir: PathBuf,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Whether `listen` is the default (then an address that cannot be bound, such as IPv6
    /// on a host without it, is a warning rather than an error).
    pub listen_is_default: bool,
    /// Whether each TCP listen address gets a QUIC sibling on the same port number.
    pub quic: bool,
    /// Happy Eyeballs' connection attempt delay.
    pub happy_eyeballs_delay: Duration,
    /// Peers to dial at start.
    pub bootstrap: Vec<Multiaddr>,
    /// Human name.
    pub name: Option<String>,
    /// Link mode.
    pub mode: Mode,
    /// Yamux keep-alive ping interval; `None` sends none.
    pub keepalive_interval: Option<Duration>,
    /// Yamux keep-alive timeout.
    pub keepalive_timeout: Duration,
    /// Whether to answer `/perf/1.0.0`.
    pub perf: bool,
    /// Inbox cap, in messages.
    pub inbox_max_messages: usize,
    /// Inbox cap, in bytes.
    pub inbox_max_bytes: usize,
    /// Peers allowed to run commands here; empty keeps exec off.
    pub exec_allow: Vec<PeerId>,
    /// Whether allowed peers may run shell command lines.
    pub exec_shell: bool,
    /// The programs allowed peers may run; `None` allows any.
    pub exec_programs: Option<Vec<String>>,
    /// Whether commands get the daemon's environment rather than a cleared one.
    pub exec_inherit_env: bool,
    /// Whether the DHT runs.
    pub dht: bool,
    /// Where to serve `/metrics`, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Where to serve the dashboard, if anywhere.
    pub dashboard: Option<SocketAddr>,
    /// How to write log lines.
    pub log_format: LogFormat,
    /// The resource manager's limits and the relay's per-circuit limits.
    pub resources: super::resources::Resources,
    /// The config's `[aliases]`: the operator's names for peers.
    pub aliases: BTreeMap<String, PeerId>,
}

impl Settings {
    /// Merges the flags over the file (if any) over the defaults. `data_dir_flag` is the
    /// global `--data-dir` (or `PHEROMONE_DATA_DIR`).
    pub fn resolve(args: &UpArgs, data_dir_flag: Option<PathBuf>) -> Result<Self> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file, data_dir_flag)
    }

    fn merge(args: &UpArgs, file: FileConfig, data_dir_flag: Option<PathBuf>) -> Result<Self> {
        let data_dir = match data_dir_flag.or(file.data_dir) {
            Some(dir) => dir,
            None => default_data_dir()?,
        };
        let pick = |flag: &Vec<String>, file: Option<Vec<String>>| {
            if flag.is_empty() {
                file
            } else {
                Some(flag.clone())
            }
        };
        let listen_given = pick(&args.listen, file.listen);
        let listen_is_default = listen_given.is_none();
        let listen = listen_given
            .unwrap_or_else(|| DEFAULT_LISTEN.iter().map(|s| (*s).to_owned()).collect())
            .iter()
            .map(|text| {
                let addr: Multiaddr = text
                    .parse()
                    .with_context(|| format!("bad listen address {text:?}"))?;
                if addr.tcp_socket_addr().is_none() && addr.quic_socket_addr().is_none() {
                    bail!(
                        "bad listen address {text:?}: expected /ip4|/ip6/…/tcp/PORT or …/udp/PORT/quic-v1"
                    );
                }
                Ok(addr)
            })
            .collect::<Result<Vec<_>>>()?;
        let bootstrap = pick(&args.bootstrap, file.bootstrap)
            .unwrap_or_default()
            .iter()
            .map(|text| {
                pheromone::parse_dial_address(text)
                    .with_context(|| format!("bad bootstrap address {text:?}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let name = args.name.clone().or(file.name);
        if let Some(name) = &name {
            validate_name(name)?;
        }
        let interval_text = args.keepalive_interval.clone().or(file.keepalive_interval);
        let keepalive_interval = match interval_text.as_deref() {
            None => pheromone_core::yamux::Config::default().keepalive_interval,
            Some("off") | Some("none") => None,
            Some(text) => {
                let d = parse_duration(text).context("bad keepalive interval")?;
                (!d.is_zero()).then_some(d)
            }
        };
        let keepalive_timeout = match args.keepalive_timeout.clone().or(file.keepalive_timeout) {
            None => pheromone_core::yamux::Config::default().keepalive_timeout,
            Some(text) => {
                let d = parse_duration(&text).context("bad keepalive timeout")?;
                if d.is_zero() {
                    bail!("bad keepalive timeout {text:?}: must be more than zero");
                }
                d
            }
        };
        let happy_eyeballs_delay = match &file.happy_eyeballs_delay {
            None => pheromone::swarm::SwarmConfig::default().happy_eyeballs_delay,
            Some(text) => parse_duration(text).context("bad happy_eyeballs_delay")?,
        };
        let mut exec_allow = pick(&args.allow_exec, file.allow_exec)
            .unwrap_or_default()
            .iter()
            .map(|text| {
                text.trim()
                    .parse::<PeerId>()
                    .map_err(|e| anyhow::anyhow!("bad --allow-exec peer {text:?}: {e} (a peer ID is needed: names are not known at start)"))
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(path) = args.allow_exec_file.clone().or(file.allow_exec_file) {
            exec_allow.extend(load_peer_file(&path)?);
        }
        exec_allow.sort();
        exec_allow.dedup();
        let exec_shell = args.allow_exec_shell || file.allow_exec_shell.unwrap_or(false);
        let exec_programs = pick(&args.allow_exec_program, file.allow_exec_programs);
        if exec_shell && exec_programs.is_some() {
            bail!("a program allow-list (--allow-exec-program) cannot be combined with --allow-exec-shell: sh -c runs anything");
        }
        let metrics = http_addr(
            "metrics",
            args.metrics.clone().or(file.metrics),
            args.metrics_public || file.metrics_public.unwrap_or(false),
        )?;
        let dashboard = http_addr(
            "dashboard",
            args.dashboard.clone().or(file.dashboard),
            args.dashboard_public || file.dashboard_public.unwrap_or(false),
        )?;
        if let (Some(m), Some(d)) = (metrics, dashboard) {
            if m == d && m.port() != 0 {
                bail!("--metrics and --dashboard cannot share {m}");
            }
        }
        let resources = file.resources.unwrap_or_default().resolve()?;
        let mut aliases = BTreeMap::new();
        for (alias, peer) in file.aliases.unwrap_or_default() {
            validate_name(&alias).context("bad name in [aliases]")?;
            let peer = peer.trim().parse::<PeerId>().map_err(|e| {
                anyhow::anyhow!("bad peer ID for alias {alias:?} in [aliases]: {e}")
            })?;
            aliases.insert(alias, peer);
        }
        if aliases.len() > super::aliases::MAX_ALIASES {
            bail!(
                "[aliases] holds {} names; at most {} are kept",
                aliases.len(),
                super::aliases::MAX_ALIASES
            );
        }
        Ok(Self {
            resources,
            aliases,
            metrics,
            dashboard,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            data_dir,
            listen,
            listen_is_default,
            quic: !args.no_quic && file.quic.unwrap_or(true),
            happy_eyeballs_delay,
            bootstrap,
            name,
            mode: args.mode.or(file.mode).unwrap_or_default(),
            keepalive_interval,
            keepalive_timeout,
            perf: args.perf || file.perf.unwrap_or(false),
            inbox_max_messages: file.inbox_max_messages.unwrap_or(1024).max(1),
            inbox_max_bytes: file.inbox_max_bytes.unwrap_or(64 << 20).max(1),
            exec_allow,
            exec_shell,
            exec_programs,
            exec_inherit_env: args.exec_inherit_env || file.exec_inherit_env.unwrap_or(false),
            dht: !args.no_dht && file.dht.unwrap_or(true),
        })
    }
}

/// Parses the address of an HTTP service (`--metrics`, `--dashboard`): `host:port` with an
/// IP host. Only loopback unless `public` was given.
fn http_addr(what: &str, text: Option<String>, public: bool) -> Result<Option<SocketAddr>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let addr: SocketAddr = text.trim().parse().map_err(|_| {
        anyhow::anyhow!("bad --{what} address {text:?}: expected IP:PORT, e.g. 127.0.0.1:9464")
    })?;
    if !addr.ip().is_loopback() && !public {
        bail!(
            "--{what} {addr} is reachable from other hosts; use a loopback address \
             (127.0.0.1) or add --{what}-public"
        );
    }
    Ok(Some(addr))
}

/// Largest allow-list file read, in bytes (a million peer IDs fit).
const MAX_PEER_FILE: u64 = 64 << 20;

/// Reads a file of peer IDs, one per line; `#` starts a comment, blank lines are skipped.
pub fn load_peer_file(path: &Path) -> Result<Vec<PeerId>> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read allow-exec file {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_PEER_FILE + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read allow-exec file {}", path.display()))?;
    if text.len() as u64 > MAX_PEER_FILE {
        bail!("allow-exec file {} is larger than 64 MiB", path.display());
    }
    parse_peer_list(&text).with_context(|| format!("allow-exec file {}", path.display()))
}

/// Parses peer IDs, one per line; `#` starts a comment, blank lines are skipped.
pub fn parse_peer_list(text: &str) -> Result<Vec<PeerId>> {
    let mut peers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let peer = line
            .parse::<PeerId>()
            .map_err(|e| anyhow::anyhow!("line {}: {line:?} is not a peer ID: {e}", i + 1))?;
        peers.push(peer);
    }
    Ok(peers)
}

/// The data dir when none is given: the platform's data dir (`~/.local/share/pheromone`
/// on Linux, honouring `XDG_DATA_HOME`).
pub fn default_data_dir() -> Result<PathBuf> {
    dirs::data_dir()
        .map(|d| d.join("pheromone"))
        .context("cannot find the platform data dir (is HOME set?); pass --data-dir")
}

/// A human name must be printable, short, free of spaces and slashes, and must not look
/// like a peer ID — otherwise `PEER` arguments could not tell names from IDs and addresses.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        bail!("bad name {name:?}: must be 1 to {MAX_NAME_LEN} bytes");
    }
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '/')
    {
        bail!("bad name {name:?}: no spaces, slashes or control characters");
    }
    if name.parse::<pheromone::PeerId>().is_ok() {
        bail!("bad name {name:?}: it reads as a peer ID");
    }
    Ok(())
}

/// Parses `1.5s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration (try 15s, 500ms, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => bail!("{text:?}: unknown unit {other:?} (use ms, s, m or h)"),
    };
    Duration::try_from_secs_f64(value * scale).with_context(|| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> UpArgs {
        UpArgs::default()
    }

    #[test]
    fn defaults() {
        let s = Settings::merge(&args(), FileConfig::default(), Some("/d".into())).expect("ok");
        assert_eq!(s.data_dir, PathBuf::from("/d"));
        assert!(s.listen_is_default);
        assert_eq!(s.listen.len(), 2);
        assert!(s.quic, "QUIC beside TCP by default");
        let mut a = args();
        a.no_quic = true;
        assert!(
            !Settings::merge(&a, FileConfig::default(), Some("/d".into()))
                .expect("ok")
                .quic
        );
        let file = FileConfig::parse("quic = false").expect("parse");
        assert!(
            !Settings::merge(&args(), file, Some("/d".into()))
                .expect("ok")
                .quic
        );
        assert_eq!(s.mode, Mode::Long);
        assert_eq!(s.keepalive_interval, Some(Duration::from_secs(15)));
        assert_eq!(s.keepalive_timeout, Duration::from_secs(20));
        assert!(!s.perf);
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = FileConfig::parse(
            r#"
            listen = ["/ip4/127.0.0.1/tcp/5000"]
            name = "fromfile"
            mode = "short"
            data_dir = "/from/file"
            keepalive_interval = "2s"
            perf = true
            "#,
        )
        .expect("parse");
        let mut a = args();
        a.name = Some("fromflag".into());
        a.keepalive_interval = Some("500ms".into());
        let s = Settings::merge(&a, file, None).expect("ok");
        assert_eq!(s.name.as_deref(), Some("fromflag"));
        assert_eq!(s.mode, Mode::Short);
        assert_eq!(s.data_dir, PathBuf::from("/from/file"));
        assert_eq!(s.listen[0].to_string(), "/ip4/127.0.0.1/tcp/5000");
        assert!(!s.listen_is_default);
        assert_eq!(s.keepalive_interval, Some(Duration::from_millis(500)));
        assert!(s.perf);
        let mut a = args();
        a.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
        let file = FileConfig::parse(r#"listen = ["/ip4/127.0.0.1/tcp/5000"]"#).expect("parse");
        let s = Settings::merge(&a, file, Some("/flag".into())).expect("ok");
        assert_eq!(s.listen[0].to_string(), "/ip4/127.0.0.1/tcp/0");
        assert_eq!(s.data_dir, PathBuf::from("/flag"));
    }

    #[test]
    fn http_services_are_loopback_unless_told() {
        let file = FileConfig::parse(
            "metrics = \"127.0.0.1:9464\"\ndashboard = \"[::1]:8080\"\nlog_format = \"json\"\n",
        )
        .expect("parse");
        let s = Settings::merge(&args(), file, Some("/d".into())).expect("ok");
        assert_eq!(s.metrics, Some("127.0.0.1:9464".parse().expect("addr")));
        assert_eq!(s.dashboard, Some("[::1]:8080".parse().expect("addr")));
        assert_eq!(s.log_format, LogFormat::Json);
        let mut a = args();
        a.metrics = Some("0.0.0.0:9464".into());
        let err = Settings::merge(&a, FileConfig::default(), Some("/d".into())).unwrap_err();
        assert!(err.to_string().contains("--metrics-public"), "{err}");
        a.metrics_public = true;
        assert!(Settings::merge(&a, FileConfig::default(), Some("/d".into())).is_ok());
        let mut a = args();
        a.dashboard = Some("localhost:80".into());
        assert!(Settings::merge(&a, FileConfig::default(), Some("/d".into())).is_err());
        let mut a = args();
        a.dashboard = Some("127.0.0.1:7000".into());
        a.metrics = Some("127.0.0.1:7000".into());
        assert!(Settings::merge(&a, FileConfig::default(), Some("/d".into())).is_err());
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = FileConfig::parse("listen = []\nlisen_addr = 3\n").unwrap_err();
        assert!(err.to_string().contains("lisen_addr"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        let mut a = args();
        a.listen = vec!["/ip4/127.0.0.1/udp/1".into()];
        assert!(Settings::merge(&a, FileConfig::default(), Some("/d".into())).is_err());
        a.listen = vec!["/ip4/127.0.0.1/udp/1/quic-v1".into()];
        assert!(Settings::merge(&a, FileConfig::default(), Some("/d".into())).is_ok());
        a.listen = vec!["/ip4/127.0.0.1/udp/1".into()];
        assert!(Settings::merge(&a, FileConfig::default(), Some("/d".into())).is_err());
        let mut a = args();
        a.keepalive_timeout = Some("0s".into());
        assert!(Settings::merge(&a, FileConfig::default(), Some("/d".into())).is_err());
        assert!(FileConfig::parse("mode = \"medium\"").is_err());
    }

    #[test]
    fn exec_allow_list() {
        let a = pheromone::Keypair::from_seed([1; 32]).peer_id();
        let b = pheromone::Keypair::from_seed([2; 32]).peer_id();
        let text = format!("# fleet\n{a}   # web\n\n  {b}\n");
        assert_eq!(parse_peer_list(&text).expect("parse"), vec![a, b]);
        let err = parse_peer_list("# x\nnot-a-peer\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("peers");
        std::fs::write(&path, format!("{b}\n")).expect("write");
        let mut up = args();
        up.allow_exec = vec![a.to_string(), b.to_string()];
        up.allow_exec_file = Some(path);
        let s = Settings::merge(&up, FileConfig::default(), Some("/d".into())).expect("ok");
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(s.exec_allow, want);
        assert!(!s.exec_shell);
        let file = FileConfig::parse(&format!(
            "allow_exec = [\"{a}\"]\nallow_exec_shell = true\n"
        ))
        .expect("parse");
        let s = Settings::merge(&args(), file, Some("/d".into())).expect("ok");
        assert_eq!(s.exec_allow, vec![a]);
        assert!(s.exec_shell);
        let mut up = args();
        up.allow_exec = vec!["luda".into()];
        assert!(Settings::merge(&up, FileConfig::default(), Some("/d".into())).is_err());
    }

    #[test]
    fn names() {
        assert!(validate_name("luda").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("two words").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
        let id = pheromone::Keypair::from_seed([3; 32]).peer_id().to_string();
        assert!(validate_name(&id).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s").expect("d"), Duration::from_secs(15));
        assert_eq!(
            parse_duration("500ms").expect("d"),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("2").expect("d"), Duration::from_secs(2));
        assert_eq!(
            parse_duration("1.5").expect("d"),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("2m").expect("d"), Duration::from_secs(120));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }
}
