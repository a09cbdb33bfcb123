// One WebTorrent peer for the baseline of bench:broadcast, loopback only, no trackers,
// DHT or LSD. argv: seed <bytes> <seed>   -> prints "ready <port> <infoHash-torrent-file-base64>"
//                   leech <torrent-base64> <peer ports, comma separated>  -> prints "ready <port>", then "done <ms>"
// run.ts installs WebTorrent outside the source tree and says where (WEBTORRENT_ENTRY).
const { default: WebTorrent } = await import(process.env.WEBTORRENT_ENTRY)

const [role, a, b] = process.argv.slice(2)
const client = new WebTorrent({ dht: false, tracker: false, lsd: false, utp: false, webSeeds: false, natUpnp: false, natPmp: false })
client.on('error', err => { console.error(err.message); process.exit(1) })
const opts = { announce: [], private: true, path: `/tmp/wt-bench-${process.pid}` }
if (role === 'seed') {
  const size = Number(a)
  const data = Buffer.alloc(size)
  for (let i = 0; i < size; i += 4096) data[i] = (i / 4096 + Number(b)) & 255
  data.name = 'object'
  client.seed(data, { ...opts, name: 'object', pieceLength: 1 << 20 }, torrent => {
    console.log(`ready ${client.torrentPort} ${Buffer.from(torrent.torrentFile).toString('base64')}`)
  })
} else {
  const torrentFile = Buffer.from(a, 'base64')
  const ports = (b ?? '').split(',').filter(p => p.length > 0)
  const torrent = client.add(torrentFile, opts)
  torrent.on('ready', () => { console.log(`ready ${client.torrentPort}`) })
  let started = 0
  process.stdin.on('data', d => {
    for (const line of d.toString().split('\n')) {
      if (line.startsWith('peers ')) {
        started = performance.now()
        for (const p of line.slice(6).split(',').filter(x => x.length > 0)) torrent.addPeer(`127.0.0.1:${p}`)
      }
    }
  })
  for (const p of ports) torrent.addPeer(`127.0.0.1:${p}`)
  torrent.on('done', () => { console.log(`done ${performance.now() - started}`) })
}
process.stdin.on('end', () => { client.destroy(() => process.exit(0)) })
