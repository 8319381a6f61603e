//! The `pheromone` binary: runs a node and talks to a running one.

#![allow(clippy::disallowed_methods)]

fn main() {}
