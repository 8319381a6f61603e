//! Network namespaces for tests that need hosts which cannot all reach each other.
//!
//! A [`Topology`] makes one namespace per host and a veth pair per link (a /30 of
//! 10.231.0.0/16 each), so a host reaches only its direct neighbours: there is no IP
//! forwarding and no route beyond the link's own subnet. A [`Host`] is a thread that
//! entered its namespace with `setns` and runs a current-thread tokio runtime, so every
//! socket its tasks create lives in that namespace; tests hand work to a host with
//! [`Host::run`]. Dropping the topology deletes the namespaces (and with them the veths).
//!
//! Everything needs root and iproute2; [`Topology::new`] returns `None`, after printing why,
//! where either is missing, and the tests skip.

#![allow(dead_code)]

use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::oneshot;

/// Namespaces and links for one test.
pub struct Topology {
    namespaces: Vec<String>,
    /// Per link: (host a, host b, address of a, address of b).
    links: Vec<Link>,
}

/// One veth link between two hosts.
#[derive(Debug, Clone)]
pub struct Link {
    /// Host indices.
    pub a: usize,
    /// Host indices.
    pub b: usize,
    /// `a`'s address on the link.
    pub addr_a: Ipv4Addr,
    /// `b`'s address on the link.
    pub addr_b: Ipv4Addr,
    dev_a: String,
    dev_b: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Topology {
    /// `hosts` namespaces linked by `edges` (pairs of host indices). `None` (after saying
    /// why on stderr) when namespaces cannot be made here.
    pub fn new(hosts: usize, edges: &[(usize, usize)]) -> Option<Topology> {
        Self::named("phr", hosts, edges)
    }

    /// As [`Topology::new`], with namespace and interface names starting with `prefix`
    /// (at most 3 bytes), so that a suite's namespaces are told apart from others'.
    pub fn named(prefix: &str, hosts: usize, edges: &[(usize, usize)]) -> Option<Topology> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{prefix}{}x{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut topo = Topology {
            namespaces: Vec::new(),
            links: Vec::new(),
        };
        for i in 0..hosts {
            let name = format!("{tag}h{i}");
            if let Err(e) = ip(&["netns", "add", &name]) {
                eprintln!(
                    "SKIP: cannot create network namespaces ({e}); run as root with iproute2"
                );
                return None;
            }
            topo.namespaces.push(name.clone());
            if let Err(e) = ip(&["-n", &name, "link", "set", "lo", "up"]) {
                eprintln!("SKIP: {e}");
                return None;
            }
        }
        for (n, &(a, b)) in edges.iter().enumerate() {
            if let Err(e) = topo.add_link(&tag, n, a, b) {
                eprintln!("SKIP: cannot create veth links ({e})");
                return None;
            }
        }
        Some(topo)
    }

    fn add_link(&mut self, tag: &str, n: usize, a: usize, b: usize) -> Result<(), String> {
        // Interface names are at most 15 bytes.
        let dev_a = format!("{}a{n}", &tag[..tag.len().min(9)]);
        let dev_b = format!("{}b{n}", &tag[..tag.len().min(9)]);
        ip(&[
            "link", "add", &dev_a, "type", "veth", "peer", "name", &dev_b,
        ])?;
        let (ns_a, ns_b) = (&self.namespaces[a], &self.namespaces[b]);
        ip(&["link", "set", &dev_a, "netns", ns_a])?;
        ip(&["link", "set", &dev_b, "netns", ns_b])?;
        let third = (n / 64) as u8;
        let base = ((n % 64) * 4) as u8;
        let addr_a = Ipv4Addr::new(10, 231, third, base + 1);
        let addr_b = Ipv4Addr::new(10, 231, third, base + 2);
        ip(&[
            "-n",
            ns_a,
            "addr",
            "add",
            &format!("{addr_a}/30"),
            "dev",
            &dev_a,
        ])?;
        ip(&[
            "-n",
            ns_b,
            "addr",
            "add",
            &format!("{addr_b}/30"),
            "dev",
            &dev_b,
        ])?;
        ip(&["-n", ns_a, "link", "set", &dev_a, "up"])?;
        ip(&["-n", ns_b, "link", "set", &dev_b, "up"])?;
        self.links.push(Link {
            a,
            b,
            addr_a,
            addr_b,
            dev_a,
            dev_b,
        });
        Ok(())
    }

    /// The links, in the order given.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// Takes a link down on both ends (like a cable pulled out).
    pub fn cut(&self, link: usize) {
        let l = &self.links[link];
        let _ = ip(&["-n", &self.namespaces[l.a], "link", "set", &l.dev_a, "down"]);
        let _ = ip(&["-n", &self.namespaces[l.b], "link", "set", &l.dev_b, "down"]);
    }

    /// Starts a host thread inside namespace `i`.
    pub fn host(&self, i: usize) -> Host {
        Host::start(&self.namespaces[i])
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

type Job = Box<dyn FnOnce() -> std::pin::Pin<Box<dyn Future<Output = ()>>> + Send>;

/// A thread living in one namespace, running a current-thread tokio runtime.
pub struct Host {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The namespace's name.
    pub namespace: String,
}

impl Host {
    fn start(namespace: &str) -> Host {
        let path = format!("/var/run/netns/{namespace}");
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open namespace");
            // SAFETY: setns on this thread with a valid namespace descriptor; it changes
            // only this thread's network namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let (jtx, mut jrx) = tokio::sync::mpsc::unbounded_channel::<Job>();
                // Bridge the std channel to the runtime without blocking it.
                std::thread::spawn(move || {
                    while let Ok(job) = rx.recv() {
                        if jtx.send(job).is_err() {
                            break;
                        }
                    }
                });
                while let Some(job) = jrx.recv().await {
                    tokio::task::spawn_local(job());
                }
            });
            // Give spawned node tasks a moment to close their sockets.
            drop(local);
            drop(rt);
        });
        Host {
            jobs: Some(tx),
            thread: Some(thread),
            namespace: namespace.to_owned(),
        }
    }

    /// Runs `f` on the host (inside its namespace) and returns its result.
    pub async fn run<T, F, Fut>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let _ = tx.send(f().await);
            })
        });
        self.jobs
            .as_ref()
            .expect("host running")
            .send(job)
            .expect("host thread alive");
        rx.await.expect("host job finished")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
