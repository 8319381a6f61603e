// A js-libp2p 3.x peer for pheromone's interop suite (crates/pheromone/tests/interop_suite.rs).
//
// One long-running process per test run, driven over stdin/stdout in JSON lines:
//   out: {"event":"ready", ...}            once, when listening
//   in:  {"id":N,"cmd":"...",...}          one command
//   out: {"id":N,"ok":true,"result":...}   or {"id":N,"ok":false,"error":"..."}
//   out: {"event":"...",...}               things seen unasked (sink, probe, identify)
// It serves an echo, a sink and a reset probe, identify (counting the requests it answers),
// ping and Kademlia on pheromone's protocol id. It exits when stdin closes, and in any case
// after HARNESS_LIFETIME_MS (default 300 s): a forgotten harness never outlives its test.

// Node.js 20 lacks Promise.withResolvers, which js-libp2p 3.x uses.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

import { createHash } from 'node:crypto'
import { createInterface } from 'node:readline'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { kadDHT, removePublicAddressesMapper } from '@libp2p/kad-dht'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const ECHO = '/pheromone-interop/echo/1.0.0'
const SINK = '/pheromone-interop/sink/1.0.0'
const PROBE = '/pheromone-interop/probe/1.0.0'
const ID = '/ipfs/id/1.0.0'
const KAD = process.env.HARNESS_KAD_PROTOCOL ?? '/pheromone/kad/1.0.0'
const USER_AGENT = 'js-libp2p-interop/3'
const LIFETIME = Number(process.env.HARNESS_LIFETIME_MS ?? 300000)
const STEP = 20000 // bound on any one command

setTimeout(() => { emit({ event: 'expired' }); process.exit(3) }, LIFETIME).unref()

// Sink and probe reports, kept for `wait_event` in arrival order; bounded.
const pending = []
function emit (obj) {
  if (obj.event === 'sink' || obj.event === 'probe') {
    pending.push(obj)
    if (pending.length > 1000) pending.shift()
  }
  process.stdout.write(JSON.stringify(obj) + '\n')
}
const hex = (bytes) => Buffer.from(bytes).toString('hex')
const sha = (bytes) => createHash('sha256').update(bytes).digest('hex')

/** Every byte of a stream until the remote closes it, or the error that ended it. */
async function readAll (stream) {
  const parts = []
  for await (const chunk of stream) parts.push(chunk.subarray())
  return Buffer.concat(parts)
}

/** Sends `data` in pieces, waiting for the stream to drain when it asks to. */
async function sendAll (stream, data) {
  const piece = 64 * 1024
  for (let at = 0; at < data.length; at += piece) {
    if (!stream.send(data.subarray(at, at + piece))) await stream.onDrain({ signal: AbortSignal.timeout(STEP) })
  }
}

function pattern (len, seed) {
  const out = Buffer.alloc(len)
  for (let i = 0; i < len; i++) out[i] = (i * 31 + seed) & 0xff
  return out
}

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  nodeInfo: { userAgent: USER_AGENT },
  services: {
    identify: identify(),
    ping: ping(),
    dht: kadDHT({
      protocol: KAD,
      clientMode: false,
      // Everything here is on 127.0.0.1: keep loopback addresses, drop public ones.
      peerInfoMapper: removePublicAddressesMapper,
      allowQueryWithZeroPeers: true
    })
  }
})

// Count the identify requests answered per peer: pheromone must ask once per connection.
const identifyAnswered = new Map()
const idRecord = node.components.registrar.getHandler(ID)
await node.unhandle(ID)
await node.handle(ID, (stream, connection) => {
  const peer = connection.remotePeer.toString()
  identifyAnswered.set(peer, (identifyAnswered.get(peer) ?? 0) + 1)
  return idRecord.handler(stream, connection)
}, idRecord.options)

const identified = new Map()
node.addEventListener('peer:identify', (evt) => {
  const r = evt.detail
  const info = {
    peer: r.peerId.toString(),
    protocolVersion: r.protocolVersion ?? null,
    agentVersion: r.agentVersion ?? null,
    publicKey: r.publicKey ? hex(r.publicKey) : null,
    listenAddrs: r.listenAddrs.map((a) => a.toString()),
    protocols: [...r.protocols].sort(),
    observedAddr: r.observedAddr ? r.observedAddr.toString() : null
  }
  identified.set(info.peer, info)
  emit({ event: 'identified', ...info })
})

await node.handle(ECHO, async (stream) => {
  try {
    let n = 0
    for await (const chunk of stream) {
      n += chunk.byteLength
      if (process.env.HARNESS_DEBUG) process.stderr.write(`echo got ${n}\n`)
      if (!stream.send(chunk)) await stream.onDrain()
    }
    if (process.env.HARNESS_DEBUG) process.stderr.write(`echo end ${n}\n`)
    await stream.close()
  } catch (err) {
    stream.abort(err)
  }
}, { maxInboundStreams: 256, maxOutboundStreams: 256 })

await node.handle(SINK, async (stream) => {
  try {
    const data = await readAll(stream)
    emit({ event: 'sink', bytes: data.length, sha256: sha(data) })
    await stream.close()
  } catch (err) {
    emit({ event: 'sink', error: String(err?.name ?? err) })
  }
})

await node.handle(PROBE, async (stream) => {
  let bytes = 0
  try {
    for await (const chunk of stream) bytes += chunk.byteLength
    emit({ event: 'probe', outcome: 'eof', bytes })
  } catch (err) {
    emit({ event: 'probe', outcome: 'reset', bytes, error: String(err?.name ?? err) })
  }
})

const waitFor = async (pred, what) => {
  const until = Date.now() + STEP
  for (;;) {
    const v = pred()
    if (v !== undefined) return v
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

const commands = {
  async dial ({ addr }) {
    const conn = await node.dial(multiaddr(addr), { signal: AbortSignal.timeout(STEP) })
    return { peer: conn.remotePeer.toString(), localAddr: null, remoteAddr: conn.remoteAddr.toString() }
  },
  async identified ({ peer }) {
    return waitFor(() => identified.get(peer), `identify of ${peer}`)
  },
  async identify_answered ({ peer }) {
    return identifyAnswered.get(peer) ?? 0
  },
  async ping ({ peer }) {
    const rtts = []
    for (let i = 0; i < 3; i++) rtts.push(await node.services.ping.ping(peerIdFromString(peer), { signal: AbortSignal.timeout(STEP) }))
    return rtts
  },
  // `count` concurrent streams to the peer's echo, each with its own payload, all checked.
  async echo ({ peer, protocol, count }) {
    const target = peerIdFromString(peer)
    const one = async (i) => {
      const data = pattern(10000 + i * 900, (i * 2 + 1) & 0xff)
      const stream = await node.dialProtocol(target, protocol, { signal: AbortSignal.timeout(STEP) })
      const reading = readAll(stream)
      await sendAll(stream, data)
      await stream.close({ signal: AbortSignal.timeout(STEP) })
      const back = await reading
      if (!back.equals(data)) throw new Error(`stream ${i}: ${back.length} bytes back of ${data.length}`)
    }
    await Promise.all(Array.from({ length: count }, (_, i) => one(i)))
    return count
  },
  async unsupported ({ peer, protocol }) {
    try {
      const stream = await node.dialProtocol(peerIdFromString(peer), protocol, { signal: AbortSignal.timeout(STEP) })
      stream.abort(new Error('unexpected'))
      return { refused: false }
    } catch (err) {
      return { refused: true, error: String(err?.name ?? err) }
    }
  },
  // Sends `size` bytes to the peer's sink, closes the stream and at once the connection.
  async send_then_close ({ peer, protocol, size, seed }) {
    const target = peerIdFromString(peer)
    const data = pattern(size, seed)
    const stream = await node.dialProtocol(target, protocol, { signal: AbortSignal.timeout(STEP) })
    await sendAll(stream, data)
    await stream.close({ signal: AbortSignal.timeout(STEP) })
    await node.hangUp(target, { signal: AbortSignal.timeout(STEP) })
    return { bytes: data.length, sha256: sha(data) }
  },
  // Opens a stream to the peer's probe, sends some bytes, then resets the stream.
  async reset_mid_stream ({ peer, protocol }) {
    const stream = await node.dialProtocol(peerIdFromString(peer), protocol, { signal: AbortSignal.timeout(STEP) })
    await sendAll(stream, pattern(1000, 7))
    await new Promise((resolve) => setTimeout(resolve, 50))
    stream.abort(new Error('reset on purpose'))
    return true
  },
  async wait_event ({ event }) {
    return waitFor(() => {
      const i = pending.findIndex((e) => e.event === event)
      return i >= 0 ? pending.splice(i, 1)[0] : undefined
    }, `event ${event}`)
  },
  // FIND_NODE through the DHT: the peers js learns for `key` (a peer ID).
  async closest ({ key }) {
    const found = new Set()
    const target = peerIdFromString(key).toMultihash().bytes
    for await (const ev of node.services.dht.getClosestPeers(target, { signal: AbortSignal.timeout(STEP) })) {
      if (ev.name === 'PEER_RESPONSE') for (const p of ev.closer) found.add(p.id.toString())
      if (ev.name === 'FINAL_PEER') found.add(ev.peer.id.toString())
    }
    return [...found].sort()
  },
  async routing_table () {
    const table = node.services.dht.routingTable
    return [...(table.kb?.toIterable?.() ?? [])].map((c) => c.peerId.toString())
  },
  async hang_up ({ peer }) {
    await node.hangUp(peerIdFromString(peer), { signal: AbortSignal.timeout(STEP) })
    return true
  },
  async connections ({ peer }) {
    return node.getConnections(peerIdFromString(peer)).length
  }
}

emit({
  event: 'ready',
  peer: node.peerId.toString(),
  publicKey: hex(publicKeyToProtobuf(node.peerId.publicKey)),
  addrs: node.getMultiaddrs().map((a) => a.toString()),
  protocols: node.getProtocols().sort(),
  agentVersion: USER_AGENT,
  protocolVersion: node.services.identify.host?.protocolVersion ?? null
})

const lines = createInterface({ input: process.stdin })
lines.on('line', async (line) => {
  let msg
  try { msg = JSON.parse(line) } catch { return }
  const run = commands[msg.cmd]
  if (!run) return emit({ id: msg.id, ok: false, error: `unknown command ${msg.cmd}` })
  try {
    emit({ id: msg.id, ok: true, result: await run(msg) })
  } catch (err) {
    emit({ id: msg.id, ok: false, error: `${err?.name ?? 'Error'}: ${err?.message ?? err}` })
  }
})
lines.on('close', async () => {
  await node.stop().catch(() => {})
  process.exit(0)
})
