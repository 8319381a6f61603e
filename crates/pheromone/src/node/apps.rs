//! The node's run-time resources, each started by a method that returns its handle: the
//! exec service, exposed services and forwarded ports. The work is done in
//! [`crate::exec`] and [`crate::forward`]; these are the one way in.

use super::{Access, Node, Target};
use crate::exec::{ExecConfig, ExecServeError, ExecService};
use crate::forward::{Exposed, ForwardError, Forwarded};
use std::net::SocketAddr;

impl Node {
    /// Starts answering `/pheromone/exec/1.0.0` for the peers `config` allows (see
    /// [`crate::exec`]). With an empty allow-list exec stays off.
    pub fn serve_exec(&self, config: ExecConfig) -> Result<ExecService, ExecServeError> {
        crate::exec::serve(self, config)
    }

    /// Exposes the TCP service at `target` as `/x/NAME` to the peers `allow` admits (see
    /// [`crate::forward`]).
    pub fn expose(
        &self,
        name: &str,
        target: SocketAddr,
        allow: Access,
    ) -> Result<Exposed, ForwardError> {
        crate::forward::expose(self, name, target, allow)
    }

    /// Listens on `listen` and splices every accepted TCP connection to `peer`'s exposed
    /// service `name` (see [`crate::forward`]).
    pub async fn forward(
        &self,
        name: &str,
        peer: impl Into<Target>,
        listen: SocketAddr,
    ) -> Result<Forwarded, ForwardError> {
        crate::forward::forward(self, name, peer, listen).await
    }
}
