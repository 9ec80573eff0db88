/**
 * The machine's own scaling, for the hosts section (bench/hosts.ts): one plain process per worker host,
 * under that host's CPU quota, codes its share of the job's chunks (every Nth, as a round robin) with the
 * job's codec and the options DCaS's codec threads use, with no cluster, no Raft and no network. The
 * processes wait for a common start time, so they code at once, as the worker hosts do after their
 * release. What N of them achieve against one is the ceiling N worker hosts can reach on this machine.
 *
 *   node bench/hosts-bare.ts FILE CHUNK_BYTES CODEC SHARE SHARES START_AT_MS
 *
 * Prints one line of JSON: {"chunks", "bytes", "endAtMs", "cpuSeconds"}.
 */
import { readFileSync } from 'node:fs';
import { brotliCompressSync, gzipSync, zstdCompressSync } from 'node:zlib';
import { parseCodecChoice } from '../node/codec/codecs.ts';
import { isZlibCodec, zlibCompressOptions } from '../node/codec/zlib-options.ts';

const usage = 'usage: node bench/hosts-bare.ts FILE CHUNK_BYTES CODEC SHARE SHARES START_AT_MS (CODEC: zstd, gzip or brotli, NAME[:LEVEL])';

function main(argv: readonly string[]): void {
  if (argv.includes('--help')) {
    console.log(usage);
    return;
  }
  const [file, chunkText, codecText, shareText, sharesText, startText] = argv;
  const numbers = [chunkText, shareText, sharesText, startText].map(Number);
  if (startText === undefined || numbers.some((value) => !Number.isSafeInteger(value) || value < 0)) throw new Error(usage);
  const [chunkBytes, share, shares, startAtMs] = numbers as [number, number, number, number];
  const choice = parseCodecChoice(codecText!);
  const name = choice.codec.name;
  if (!isZlibCodec(name)) throw new Error(`${name} is not a node:zlib codec (zstd, gzip, brotli)`);
  const code = { zstd: zstdCompressSync, gzip: gzipSync, brotli: brotliCompressSync }[name];
  const data = readFileSync(file!);
  const mine: Buffer[] = [];
  for (let index = share, offset = share * chunkBytes; offset < data.length; index += shares, offset = index * chunkBytes) mine.push(data.subarray(offset, offset + chunkBytes));
  const waitMs = startAtMs - Date.now();
  if (waitMs > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, waitMs);
  const cpuBefore = process.cpuUsage();
  let bytes = 0;
  for (const chunk of mine) {
    code(chunk, zlibCompressOptions(choice, chunk.length));
    bytes += chunk.length;
  }
  const cpu = process.cpuUsage(cpuBefore);
  console.log(JSON.stringify({ chunks: mine.length, bytes, endAtMs: Date.now(), cpuSeconds: (cpu.user + cpu.system) / 1e6 }));
}

try {
  main(process.argv.slice(2));
} catch (error) {
  console.error(`hosts-bare: ${(error as Error).message}`);
  process.exit(2);
}
