/**
 * The machine's own scaling, for the hosts section (bench/hosts.ts): one plain process per worker host,
 * under that host's CPU quota, codes its share of the job's chunks (every Nth, as a round robin) with the
 * job's codec as DCaS's codec threads code it (compressChunk), with no cluster, no Raft and no network. The
 * processes wait for a common start time, so they code at once, as the worker hosts do after their
 * release. What N of them achieve against one is the ceiling N worker hosts can reach on this machine.
 *
 *   node bench/hosts-bare.ts FILE CHUNK_BYTES CODEC SHARE SHARES START_AT_MS
 *
 * Prints one line of JSON: {"chunks", "bytes", "endAtMs", "cpuSeconds"}.
 */
import { readFileSync } from 'node:fs';
import { compressChunk, prepareCoder } from '../node/codec/coders.ts';
import { parseCodecChoice } from '../node/codec/codecs.ts';

const usage = 'usage: node bench/hosts-bare.ts FILE CHUNK_BYTES CODEC SHARE SHARES START_AT_MS (CODEC: NAME[:LEVEL], any codec but huffman)';

async function main(argv: readonly string[]): Promise<void> {
  if (argv.includes('--help')) {
    console.log(usage);
    return;
  }
  const [file, chunkText, codecText, shareText, sharesText, startText] = argv;
  const numbers = [chunkText, shareText, sharesText, startText].map(Number);
  if (startText === undefined || numbers.some((value) => !Number.isSafeInteger(value) || value < 0)) throw new Error(usage);
  const [chunkBytes, share, shares, startAtMs] = numbers as [number, number, number, number];
  const choice = parseCodecChoice(codecText!);
  if (choice.codec.name === 'huffman') throw new Error('huffman is coded by the kernel in place, not by compressChunk');
  await prepareCoder(choice.codec.name);
  const data = readFileSync(file!);
  const mine: Buffer[] = [];
  for (let index = share, offset = share * chunkBytes; offset < data.length; index += shares, offset = index * chunkBytes) mine.push(data.subarray(offset, offset + chunkBytes));
  const waitMs = startAtMs - Date.now();
  if (waitMs > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, waitMs);
  const cpuBefore = process.cpuUsage();
  let bytes = 0;
  for (const chunk of mine) {
    // What a node's codec thread calls for a chunk (node/codec/coders.ts).
    await compressChunk(choice, chunk);
    bytes += chunk.length;
  }
  const cpu = process.cpuUsage(cpuBefore);
  console.log(JSON.stringify({ chunks: mine.length, bytes, endAtMs: Date.now(), cpuSeconds: (cpu.user + cpu.system) / 1e6 }));
}

main(process.argv.slice(2)).catch((error: unknown) => {
  console.error(`hosts-bare: ${(error as Error).message}`);
  process.exit(2);
});
