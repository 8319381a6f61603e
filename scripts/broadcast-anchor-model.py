#!/usr/bin/env python3
"""A model (not the protocol) of how far a shared broadcast tree can get from flooding's
latency, to choose the next step of issue 23.

Graph and latencies as `pheromone-sim broadcast` draws them (1,000 nodes, each dials 4
random others, links uniform 5-50 ms); messages from random origins. For each scheme it
prints the p50 and p99 of origin-to-node latency over flooding's (shortest paths):

- one tree: breadth-first by hops from a random root (today's tree), or a latency-weighted
  shortest-path tree from a random root or from a central node;
- K anchors: a latency-weighted shortest-path tree per anchor, each message sent along the
  tree of the anchor nearest its origin (every tree gives one copy per node);
- eager radius R: flood the first R hops, then the hop tree (`Config::eager_hops`).

    python3 scripts/broadcast-anchor-model.py     # about a minute
"""

import heapq
import random

rng = random.Random(1)
N, DIALS = 1000, 4
edges = set()
for a in range(N):
    made = 0
    while made < DIALS:
        b = rng.randrange(N)
        if b != a and (min(a, b), max(a, b)) not in edges:
            edges.add((min(a, b), max(a, b)))
            made += 1
adj = [[] for _ in range(N)]
W = {}
for a, b in sorted(edges):
    w = rng.uniform(5, 50)
    adj[a].append(b)
    adj[b].append(a)
    W[(a, b)] = W[(b, a)] = w


def dijkstra(src, by_hops=False):
    dist, parent = [float("inf")] * N, [-1] * N
    dist[src] = 0
    heap = [(0, src)]
    while heap:
        d, u = heapq.heappop(heap)
        if d > dist[u]:
            continue
        for v in adj[u]:
            nd = d + (1 if by_hops else W[(u, v)])
            if nd < dist[v]:
                dist[v], parent[v] = nd, u
                heapq.heappush(heap, (nd, v))
    return dist, parent


def spread(parent, origin, radius=0):
    """First-arrival times when `origin` floods `radius` hops, then follows the tree."""
    tree = [set() for _ in range(N)]
    for v, p in enumerate(parent):
        if p >= 0:
            tree[v].add(p)
            tree[p].add(v)
    first = [None] * N
    heap = [(0.0, origin, -1, 0)]
    while heap:
        t, u, sender, hops = heapq.heappop(heap)
        if first[u] is not None:
            continue
        first[u] = t
        for v in (adj[u] if hops < radius else tree[u]):
            if v != sender:
                heapq.heappush(heap, (t + W[(u, v)], v, u, hops + 1))
    return first


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


origins = rng.sample(range(N), 40)
flood = [d for o in origins for x, d in enumerate(dijkstra(o)[0]) if x != o]
f50, f99 = pct(flood, 50), pct(flood, 99)


def show(name, lat):
    print(f"{name:<34} p50 {pct(lat, 50) / f50:.2f}x  p99 {pct(lat, 99) / f99:.2f}x")


print(f"flooding: p50 {f50:.1f} ms, p99 {f99:.1f} ms")
for name, parent in [
    ("one tree, hops, random root", dijkstra(0, True)[1]),
    ("one tree, latency, random root", dijkstra(0)[1]),
    ("one tree, latency, central root",
     dijkstra(min(range(0, N, 10), key=lambda c: sum(dijkstra(c)[0])))[1]),
]:
    show(name, [d for o in origins for x, d in enumerate(spread(parent, o)) if x != o])
for k in [4, 16, 64, 128, 256]:
    anchors = rng.sample(range(N), k)
    trees = {a: dijkstra(a) for a in anchors}
    lat = []
    for o in origins:
        a = min(anchors, key=lambda a: trees[a][0][o])
        lat += [d for x, d in enumerate(spread(trees[a][1], o)) if x != o]
    show(f"{k} anchors, latency trees", lat)
hop_tree = dijkstra(0, True)[1]
for r in [1, 2, 3]:
    show(f"eager radius {r}, hop tree",
         [d for o in origins for x, d in enumerate(spread(hop_tree, o, r)) if x != o])
