/**
 * Shared test helpers: seeded data, temporary folders.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seededRandom } from '../bench/generate.ts';

/** The benchmark's seeded generator (mulberry32), so a failing case replays exactly. */
export { seededRandom };

/** Text-like bytes with a skewed distribution: words from a small vocabulary, seeded. */
export function textLike(length: number, seed = 1): Uint8Array {
  const random = seededRandom(seed);
  const words = ['the', 'quick', 'brown', 'fox', 'jumps', 'over', 'lazy', 'dog', 'Subject:', 'From:', 'mail', 'compress', '\n', 'DCaS', '2026'];
  const out = new Uint8Array(length);
  let at = 0;
  while (at < length) {
    const word = words[Math.floor(random() * random() * words.length)];
    for (let i = 0; i < word.length && at < length; i++) out[at++] = word.charCodeAt(i);
    if (at < length) out[at++] = 32;
  }
  return out;
}

export function randomBytesSeeded(length: number, seed = 1): Uint8Array {
  const random = seededRandom(seed);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(random() * 256);
  return out;
}

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'dcas-test-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
