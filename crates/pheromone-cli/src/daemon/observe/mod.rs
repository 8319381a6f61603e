//! What the daemon shows about itself beyond the control socket: Prometheus metrics over
//! HTTP (`up --metrics`), the live web dashboard (`up --dashboard`), and the activity log
//! the dashboard shows.
//!
//! Layout:
//! - [`http`]: the small HTTP/1.1 server both use (bounded connections, heads, timeouts).
//! - [`dashboard`]: the token, the JSON and event-stream endpoints, the page (`assets/`,
//!   compiled in); [`sampler`]: the snapshot a second it serves.
//! - [`activity`]: the bounded log of recent events.
//!
//! Both services are off unless asked for and bind loopback unless told otherwise (the
//! settings check that). Nothing here changes the node; it only reads.

pub mod activity;
pub mod dashboard;
pub mod http;
pub mod sampler;

use super::net::Net;
use super::Settings;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connections the metrics server serves at once (scrapers are few).
const METRICS_CONNECTIONS: usize = 16;
/// Connections the dashboard serves at once (each open page holds one for its stream).
const DASHBOARD_CONNECTIONS: usize = 32;

/// Where the services listen, once started.
#[derive(Debug, Clone, Default)]
pub struct Urls {
    /// `http://ADDR/metrics`.
    pub metrics: Option<String>,
    /// `http://ADDR/?token=…`.
    pub dashboard: Option<String>,
}

/// Binds and starts the services `settings` ask for; their URLs.
pub async fn start(
    net: &Net,
    settings: &Settings,
    cancel: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<Urls> {
    let mut urls = Urls::default();
    if let Some(addr) = settings.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for --metrics on {addr}"))?;
        let local = listener.local_addr()?;
        let handler = metrics_handler(net);
        tasks.spawn(http::serve(
            listener,
            handler,
            METRICS_CONNECTIONS,
            cancel.clone(),
            tasks.clone(),
        ));
        urls.metrics = Some(format!("http://{}/metrics", url_host(local)));
        tracing::info!(addr = %local, "serving metrics");
    }
    if let Some(addr) = settings.dashboard {
        let token = dashboard::load_or_create_token(&settings.data_dir)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for --dashboard on {addr}"))?;
        let local = listener.local_addr()?;
        let board = dashboard::start(net.clone(), token.clone(), local, cancel.clone(), tasks);
        let handler: http::Handler = Arc::new(move |req| Box::pin(board.clone().handle(req)));
        tasks.spawn(http::serve(
            listener,
            handler,
            DASHBOARD_CONNECTIONS,
            cancel.clone(),
            tasks.clone(),
        ));
        urls.dashboard = Some(format!("http://{}/?token={token}", url_host(local)));
        tracing::info!(addr = %local, "serving the dashboard");
    }
    Ok(urls)
}

fn url_host(addr: SocketAddr) -> String {
    // A wildcard bind is reached at loopback from this machine.
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port()).to_string()
}

/// `/metrics`: the node's collector, the exec service's and the forwards', refreshed on
/// every scrape.
fn metrics_handler(net: &Net) -> http::Handler {
    let metrics = net.node().metrics();
    let mut registry = metrics.registry();
    if let Some(exec) = net.exec_service(|s| s.collector()) {
        registry.register_collector(Box::new(exec));
    }
    registry.register_collector(Box::new(pheromone::metrics::ForwardsCollector::new(
        net.forwards().clone(),
    )));
    let registry = Arc::new(registry);
    Arc::new(move |req: http::Request| {
        let metrics = metrics.clone();
        let registry = registry.clone();
        Box::pin(async move {
            match req.path.as_str() {
                "/metrics" => {
                    metrics.refresh().await;
                    let text = pheromone::metrics::encode_registry(&registry);
                    http::Response::body(pheromone::metrics::CONTENT_TYPE, text)
                }
                "/" => http::Response::text(200, "pheromone metrics: see /metrics\n"),
                _ => http::Response::text(404, "not found\n"),
            }
        })
    })
}
