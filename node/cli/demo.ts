/**
 * `npm start` until the cluster lands: compresses and decompresses a sample file locally on all
 * cores with embedded defaults, checks the bytes round-trip, and prints what happened.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { compressFile, decompressFile } from '../codec/index.ts';
import { formatBytes } from './output.ts';

const dir = join(process.cwd(), '.dcas', 'demo');
await mkdir(dir, { recursive: true });
const input = join(dir, 'sample.csv');
const lines = ['timestamp,sensor,temperature,humidity,status'];
let state = 12345;
for (let i = 0; lines.length < 600_000; i++) {
  state = (state * 1103515245 + 12345) >>> 0;
  lines.push(`2026-11-21T${String(i % 24).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}:00Z,sensor-${state % 97},${(15 + (state % 200) / 10).toFixed(1)},${40 + (state % 50)},${state % 17 === 0 ? 'WARN' : 'OK'}`);
}
await writeFile(input, lines.join('\n'));
const compressed = await compressFile(input, `${input}.dcz`, { force: true });
const restored = await decompressFile(`${input}.dcz`, join(dir, 'restored.csv'), { force: true });
const sha = async (path: string) => createHash('sha256').update(await readFile(path)).digest('hex');
const same = (await sha(input)) === (await sha(restored.output));
console.log(`compressed   ${formatBytes(compressed.originalBytes)} -> ${formatBytes(compressed.compressedBytes)} (ratio ${(compressed.compressedBytes / compressed.originalBytes).toFixed(3)}) in ${compressed.seconds.toFixed(2)} s on ${compressed.threads} threads`);
console.log(`decompressed ${formatBytes(restored.compressedBytes)} -> ${formatBytes(restored.originalBytes)} in ${restored.seconds.toFixed(2)} s`);
console.log(same ? `round trip OK: ${restored.output} is identical to ${input}` : 'round trip FAILED: bytes differ');
await rm(join(dir, 'restored.csv'));
process.exitCode = same ? 0 : 1;
