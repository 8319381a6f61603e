//! Routing scenarios that must hold: every topology converges to loop-free shortest
//! paths, and link failures and node kills are repaired with dead routes withdrawn.

use super::*;

fn params(topology: Topology, nodes: usize) -> RouteParams {
    RouteParams {
        nodes,
        topology,
        steady_window: Duration::ZERO,
        ..RouteParams::default()
    }
}

fn assert_healthy(r: &RouteReport) {
    assert_eq!(r.reachable_ratio, 1.0, "{r:?}");
    assert_eq!(r.loops, 0, "{r:?}");
    assert_eq!(r.loops_transient_max, 0, "{r:?}");
    assert_eq!(r.stale_routes, 0, "{r:?}");
    assert_eq!(r.timeouts, 0, "{r:?}");
}

#[test]
fn a_line_converges_on_shortest_paths() {
    let r = run(&params(Topology::Line, 20));
    assert_healthy(&r);
    assert_eq!(r.shortest_ratio, 1.0, "{r:?}");
    assert_eq!(r.stretch_mean, 1.0);
}

#[test]
fn a_ring_reroutes_when_links_fail() {
    let r = run(&RouteParams {
        fail_links: 1,
        ..params(Topology::Ring, 30)
    });
    assert_healthy(&r);
    // A ring with one link cut is a line: one path per pair, the shortest.
    assert_eq!(r.shortest_ratio, 1.0, "{r:?}");
    assert!(r.reconverge_ms_p99 < 3000.0, "{r:?}");
    // A second cut splits it: the far side must be withdrawn, not kept.
    let r = run(&RouteParams {
        fail_links: 2,
        ..params(Topology::Ring, 30)
    });
    assert_healthy(&r);
    assert!(r.reachable_ratio == 1.0 && r.stale_routes == 0);
}

#[test]
fn a_tree_converges_and_withdraws_cut_subtrees() {
    let r = run(&RouteParams {
        fail_links: 3,
        kill_nodes: 2,
        ..params(Topology::Tree, 100)
    });
    assert_healthy(&r);
    assert_eq!(r.shortest_ratio, 1.0, "{r:?}");
}

#[test]
fn a_random_mesh_converges_and_repairs() {
    let r = run(&RouteParams {
        fail_links: 2,
        kill_nodes: 1,
        ..params(Topology::Random, 100)
    });
    assert_healthy(&r);
    assert_eq!(r.shortest_ratio, 1.0, "{r:?}");
    assert!(r.reconverge_ms_p99 < 3000.0, "{r:?}");
}

/// The 500-node mesh. About 25 s in release; the workspace builds this crate and
/// the core with opt-level 2 even in the test profile, which keeps it under a minute.
#[test]
fn a_random_mesh_of_500_converges_and_repairs() {
    let r = run(&RouteParams {
        fail_links: 2,
        kill_nodes: 1,
        ..params(Topology::Random, 500)
    });
    assert_healthy(&r);
    assert_eq!(r.shortest_ratio, 1.0, "{r:?}");
    assert!(r.reconverge_ms_p99 < 3000.0, "{r:?}");
}

#[test]
fn control_traffic_is_measured_and_runs_replay() {
    let p = RouteParams {
        steady_window: Duration::from_secs(40),
        fail_links: 2,
        ..params(Topology::Random, 60)
    };
    let a = run(&p);
    assert_healthy(&a);
    assert!(a.control_bytes_per_node_per_s > 0.0);
    assert_eq!(a, run(&p));
}

#[test]
fn topology_names_parse() {
    for t in [
        Topology::Line,
        Topology::Ring,
        Topology::Tree,
        Topology::Random,
    ] {
        assert_eq!(t.as_str().parse::<Topology>(), Ok(t));
    }
    assert!("star".parse::<Topology>().is_err());
}
