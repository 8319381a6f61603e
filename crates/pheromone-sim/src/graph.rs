//! Topologies for simulations: random connected graphs of a given average degree, plus
//! line, ring and complete graphs, and connectivity helpers.
//!
//! Graphs are plain edge lists `(a, b)` over node indices `0..n`, generated from a caller's
//! seeded RNG in a fixed order, so a seed always yields the same graph. Nothing here knows
//! about protocols or the simulator.

use rand::Rng;
use std::collections::HashSet;

/// A random connected graph on `n` nodes with average degree about `degree`.
///
/// Every node dials `degree / 2` distinct random others (as a peer-to-peer node dials a
/// handful of peers and accepts the rest), which gives an average degree of `degree` and a
/// minimum of `degree / 2`; any component left apart is then joined to the first one by
/// one extra edge. With fewer than `degree + 1` nodes the graph is complete.
pub fn random_connected(n: usize, degree: usize, rng: &mut impl Rng) -> Vec<(usize, usize)> {
    if n < 2 {
        return Vec::new();
    }
    if degree + 1 >= n {
        return complete(n);
    }
    let dials = (degree / 2).max(1);
    let mut seen = HashSet::new();
    let mut edges = Vec::with_capacity(n * dials);
    for a in 0..n {
        let mut made = 0;
        let mut tries = 0;
        while made < dials && tries < 16 * dials {
            tries += 1;
            let b = rng.gen_range(0..n);
            if b == a || !seen.insert((a.min(b), a.max(b))) {
                continue;
            }
            edges.push((a, b));
            made += 1;
        }
    }
    // Odd degrees: half the nodes dial one more.
    if degree % 2 == 1 {
        for a in (0..n).filter(|a| a % 2 == 0) {
            let b = rng.gen_range(0..n);
            if b != a && seen.insert((a.min(b), a.max(b))) {
                edges.push((a, b));
            }
        }
    }
    let comps = components(n, &edges, |_| true);
    let mut firsts: Vec<usize> = Vec::new();
    let mut known = HashSet::new();
    for (node, &c) in comps.iter().enumerate() {
        if known.insert(c) {
            firsts.push(node);
        }
    }
    for pair in firsts.windows(2) {
        edges.push((pair[0], pair[1]));
    }
    edges
}

/// `0 – 1 – 2 – … – n−1`.
pub fn line(n: usize) -> Vec<(usize, usize)> {
    (1..n).map(|b| (b - 1, b)).collect()
}

/// A line closed into a cycle (for `n ≥ 3`).
pub fn ring(n: usize) -> Vec<(usize, usize)> {
    let mut edges = line(n);
    if n >= 3 {
        edges.push((n - 1, 0));
    }
    edges
}

/// Every pair of nodes linked.
pub fn complete(n: usize) -> Vec<(usize, usize)> {
    let mut edges = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for a in 0..n {
        for b in a + 1..n {
            edges.push((a, b));
        }
    }
    edges
}

/// Component label of each node (labels are the smallest node index in the component),
/// counting only nodes for which `alive` holds and edges between two such nodes. Dead
/// nodes get `usize::MAX`.
pub fn components(n: usize, edges: &[(usize, usize)], alive: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for &(a, b) in edges {
        if a >= n || b >= n || !alive(a) || !alive(b) {
            continue;
        }
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            parent[hi] = lo;
        }
    }
    (0..n)
        .map(|x| {
            if alive(x) {
                find(&mut parent, x)
            } else {
                usize::MAX
            }
        })
        .collect()
}

/// Whether all `n` nodes form one component.
pub fn is_connected(n: usize, edges: &[(usize, usize)]) -> bool {
    components(n, edges, |_| true).iter().all(|&c| c == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn random_graphs_are_connected_with_the_asked_degree() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for (n, d) in [(2, 8), (9, 8), (100, 8), (1000, 8), (500, 3), (300, 12)] {
            let edges = random_connected(n, d, &mut rng);
            assert!(is_connected(n, &edges), "n={n} d={d}");
            let avg = 2.0 * edges.len() as f64 / n as f64;
            let want = d.min(n - 1) as f64;
            assert!(
                (avg - want).abs() <= want * 0.1 + 0.5,
                "n={n} d={d} avg={avg}"
            );
            let unique: HashSet<_> = edges.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect();
            assert_eq!(unique.len(), edges.len());
            assert!(edges.iter().all(|&(a, b)| a != b));
        }
    }

    #[test]
    fn same_seed_same_graph() {
        let a = random_connected(200, 8, &mut rand::rngs::StdRng::seed_from_u64(9));
        let b = random_connected(200, 8, &mut rand::rngs::StdRng::seed_from_u64(9));
        let c = random_connected(200, 8, &mut rand::rngs::StdRng::seed_from_u64(10));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn components_respect_dead_nodes() {
        let edges = line(5);
        let comps = components(5, &edges, |x| x != 2);
        assert_eq!(comps, vec![0, 0, usize::MAX, 3, 3]);
        assert!(is_connected(4, &ring(4)));
        assert_eq!(complete(4).len(), 6);
    }
}
