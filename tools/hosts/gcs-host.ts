/**
 * The GCS-compatible server as a host of its own: run inside a namespace (`ip netns exec`), it serves
 * the bucket on the host's address, prints one line `ready URL` once listening, and keeps its request
 * counts in a JSON file (rewritten each second and at SIGTERM) so the harness in the root namespace can
 * read how many requests the cluster made.
 * Usage: node tools/hosts/gcs-host.ts ADDRESS PORT BUCKET ROOT STATS_FILE
 */
import { renameSync, writeFileSync } from 'node:fs';
import { startGcsServer } from '../gcs-server/index.ts';

const statsIntervalMs = 1_000;
const [host, portText, bucket, root, statsFile] = process.argv.slice(2);
const port = Number(portText);

if (host === undefined || !Number.isInteger(port) || port < 1 || port > 65_535 || bucket === undefined || root === undefined || statsFile === undefined) {
  console.error('usage: node tools/hosts/gcs-host.ts ADDRESS PORT BUCKET ROOT STATS_FILE');
  process.exit(2);
}

const server = await startGcsServer({ host, port, root, buckets: [bucket] });

function writeStats(): void {
  // Written aside and renamed, so a reader never sees half a file.
  writeFileSync(`${statsFile}.tmp`, JSON.stringify(server.stats));
  renameSync(`${statsFile}.tmp`, statsFile!);
}

writeStats();
const timer = setInterval(writeStats, statsIntervalMs);
process.once('SIGTERM', () => {
  clearInterval(timer);
  writeStats();
  void server.stop().finally(() => process.exit(0));
});
console.log(`ready ${server.url}`);
