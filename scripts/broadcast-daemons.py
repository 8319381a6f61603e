#!/usr/bin/env python3
"""Broadcast from real processes, compared with the simulator on the same graph.

Starts N `pheromone up` daemons on 127.0.0.1 (no DHT, so the links are only the ones made
here), links them into a random graph of average degree 4 (each node dials 2 random others;
components joined), subscribes every node to one topic, publishes M broadcasts from random
origins, and reads each daemon's own counters from its Prometheus endpoint:
copies received (pheromone_broadcast_gossip_received), deliveries and the hop counts of the
delivered copies (pheromone_broadcast_delivered_hops). Then it runs `pheromone-sim
broadcast` on the links the daemons actually reported (`peers --json`), with equal link
latencies (loopback has no latency to emulate, so hops stand in for time), and prints both:
copies per node per message and hop stretch (hops taken / shortest hops).

    scripts/broadcast-daemons.py                     # the full run: 50 daemons, 200 broadcasts
    scripts/broadcast-daemons.py --nodes 10 --broadcasts 20 --check   # the CI-sized slice

--check exits 1 unless every broadcast reached every node and both figures are within
10% of the simulator's. Binaries: target/debug/pheromone and target/release/pheromone-sim
unless --bin / --sim say otherwise. Everything runs on loopback and is torn down at exit.
"""

import argparse
import collections
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

TOPIC = "bench/broadcast"


def free_ports(count, rng):
    """Distinct bindable ports below the kernel's ephemeral range, so that no outgoing
    connection takes one before its daemon binds it."""
    ports = set()
    while len(ports) < count:
        port = rng.randrange(20000, 32000)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.add(port)
    return sorted(ports)


def random_graph(n, degree, rng):
    dials = max(1, degree // 2)
    edges = set()
    for a in range(n):
        made = tries = 0
        while made < dials and tries < 16 * dials and n > 1:
            tries += 1
            b = rng.randrange(n)
            if b == a or (min(a, b), max(a, b)) in edges:
                continue
            edges.add((min(a, b), max(a, b)))
            made += 1
    comp = components(n, edges)
    firsts = sorted({min(x for x in range(n) if comp[x] == c) for c in set(comp)})
    for a, b in zip(firsts, firsts[1:]):
        edges.add((a, b))
    return sorted(edges)


def components(n, edges):
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        parent[find(a)] = find(b)
    return [find(x) for x in range(n)]


def bfs(n, edges, origin):
    adj = collections.defaultdict(list)
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    dist = [None] * n
    dist[origin] = 0
    queue = collections.deque([origin])
    while queue:
        x = queue.popleft()
        for y in adj[x]:
            if dist[y] is None:
                dist[y] = dist[x] + 1
                queue.append(y)
    return dist


class Fleet:
    def __init__(self, binary, n, base):
        self.binary, self.n, self.base = binary, n, base
        self.procs, self.subs = [], []
        ports = free_ports(2 * n, random.Random())
        random.Random().shuffle(ports)
        self.ports, self.metrics = ports[:n], ports[n:]

    def dir(self, i):
        return os.path.join(self.base, f"n{i}")

    def cli(self, i, *args, timeout=30):
        cmd = [self.binary, "--data-dir", self.dir(i), "--json", *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")
        return out.stdout

    def up(self):
        for i in range(self.n):
            os.makedirs(self.dir(i))
            cmd = [
                self.binary, "--data-dir", self.dir(i), "up", "--no-dht",
                "--name", f"n{i}",
                "--listen", f"/ip4/127.0.0.1/tcp/{self.ports[i]}",
                "--metrics", f"127.0.0.1:{self.metrics[i]}",
            ]
            log = open(os.path.join(self.dir(i), "daemon.log"), "w")
            self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=log))
        for i in range(self.n):
            # Debug daemons start slowly on a busy machine: a minute each, at most.
            deadline = time.time() + 60
            while True:
                try:
                    status = json.loads(self.cli(i, "status"))
                    self.peer_ids = getattr(self, "peer_ids", {})
                    self.peer_ids[status["peer_id"]] = i
                    break
                except (RuntimeError, ValueError, subprocess.TimeoutExpired):
                    if time.time() > deadline:
                        raise RuntimeError(f"daemon n{i} did not come up")
                    time.sleep(0.2)

    def links(self):
        edges = set()
        for i in range(self.n):
            for peer in json.loads(self.cli(i, "peers")):
                j = self.peer_ids.get(peer["peer_id"])
                if j is not None and j != i:
                    edges.add((min(i, j), max(i, j)))
        return sorted(edges)

    def counters(self, i):
        url = f"http://127.0.0.1:{self.metrics[i]}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        values = {}
        for line in text.splitlines():
            if line.startswith("pheromone_broadcast_"):
                name, _, value = line.rpartition(" ")
                name = name.split("{")[0].removesuffix("_total")
                if "{" not in line:
                    values[name] = float(value)
        return values

    def down(self):
        for p in self.subs + self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.subs + self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--degree", type=int, default=4)
    ap.add_argument("--broadcasts", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin", default="target/debug/pheromone")
    ap.add_argument("--sim", default="target/release/pheromone-sim")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    n = args.nodes
    base = tempfile.mkdtemp(prefix="pheromone-broadcast-")
    fleet = Fleet(os.path.abspath(args.bin), n, base)
    started = time.time()
    try:
        fleet.up()
        wanted = random_graph(n, args.degree, rng)
        for a, b in wanted:
            fleet.cli(a, "connect", f"/ip4/127.0.0.1/tcp/{fleet.ports[b]}")
        time.sleep(1.0)
        edges = fleet.links()
        if set(edges) != set(wanted):
            print(f"note: daemons report {len(edges)} links, {len(wanted)} were made; "
                  "the simulator runs on the reported ones", file=sys.stderr)
        for i in range(n):
            cmd = [fleet.binary, "--data-dir", fleet.dir(i), "subscribe", TOPIC]
            fleet.subs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        time.sleep(3.0)
        before = [fleet.counters(i) for i in range(n)]
        origins = [rng.randrange(n) for _ in range(args.broadcasts)]
        for k, origin in enumerate(origins):
            fleet.cli(origin, "broadcast", TOPIC, f"message {k} from n{origin}")
        time.sleep(3.0)
        after = [fleet.counters(i) for i in range(n)]
    except BaseException:
        fleet.down()
        shutil.rmtree(base, ignore_errors=True)
        raise
    fleet.down()
    wall = time.time() - started

    def total(name):
        return sum(a.get(name, 0) - b.get(name, 0) for a, b in zip(after, before))

    pairs = len(origins) * (n - 1)
    copies = total("pheromone_broadcast_gossip_received") / pairs
    delivered = total("pheromone_broadcast_delivered")
    hops = total("pheromone_broadcast_delivered_hops")
    dist = {o: bfs(n, edges, o) for o in set(origins)}
    shortest = sum(d for o in origins for d in dist[o] if d)
    stretch = hops / shortest if shortest else 1.0

    graph_file = os.path.join(base, "graph.txt")
    with open(graph_file, "w") as f:
        f.write("".join(f"{a} {b}\n" for a, b in edges))
    # The daemons' own keys, so that the simulated tree has the same root.
    keys_file = os.path.join(base, "identities.txt")
    with open(keys_file, "w") as f:
        f.write("".join(os.path.join(fleet.dir(i), "identity.key") + "\n" for i in range(n)))
    sim = subprocess.run(
        [args.sim, "broadcast", "--nodes", str(n), "--graph", graph_file,
         "--identities", keys_file,
         "--messages", str(len(origins)), "--latency-ms", "1,1", "--seed", str(args.seed)],
        capture_output=True, text=True, check=True)
    shutil.rmtree(base, ignore_errors=True)
    report = json.loads(sim.stdout.splitlines()[0])
    result = {
        "nodes": n,
        "links": len(edges),
        "broadcasts": len(origins),
        "daemons": {
            "delivery_ratio": delivered / pairs,
            "copies_per_node_per_msg": copies,
            "hops_mean": hops / max(delivered, 1),
            "hop_stretch": stretch,
        },
        "sim": {
            "delivery_ratio": report["delivery_ratio"],
            "copies_per_node_per_msg": report["duplicates_per_node_per_msg"],
            "hops_mean": report["hops_mean"],
            "hop_stretch": report["hop_stretch"],
        },
        "wall_s": round(wall, 1),
    }
    result["copies_ratio"] = copies / report["duplicates_per_node_per_msg"]
    result["stretch_ratio"] = stretch / report["hop_stretch"]
    print(json.dumps(result, indent=2))
    if args.check:
        ok = (delivered == pairs and abs(result["copies_ratio"] - 1) <= 0.10
              and abs(result["stretch_ratio"] - 1) <= 0.10)
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
