/**
 * Shared test helpers: temporary folders, and the seeded data helpers of tools/data.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The seeded data helpers live in tools/ (the bench's chaos runner uses them too); tests import them from here. */
export { randomBytesSeeded, seededRandom, textLike } from '../tools/data.ts';

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'dcas-test-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
