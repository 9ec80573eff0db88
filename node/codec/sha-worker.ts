/**
 * The whole-file SHA-256 on a thread of its own, so it runs beside the coding threads instead of after
 * them. It reads the file itself (from the page cache, where the coders' reads or writes left it), in
 * order, up to the limit the main thread last announced: the whole input at once when compressing; each
 * chunk as it is written when decompressing.
 */
import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

export interface ShaWorkerData {
  fd: number;
  readBytesMax: number;
}

/** Messages to the thread: hash up to `upTo` bytes, or finish and answer with the digest. */
export type ShaMessage = { upTo: number } | { digest: true };
export type ShaAnswer = { digest: Uint8Array } | { error: string; errno: string };

const { fd, readBytesMax } = workerData as ShaWorkerData;
const hash = createHash('sha256');
const buffer = Buffer.allocUnsafeSlow(readBytesMax);
let hashed = 0;
let failure: ShaAnswer | undefined;

function hashUpTo(upTo: number): void {
  while (hashed < upTo) {
    const bytesRead = readSync(fd, buffer, 0, Math.min(readBytesMax, upTo - hashed), hashed);
    if (bytesRead === 0) throw Object.assign(new Error(`file ended at byte ${hashed} while hashing up to ${upTo}`), { code: 'INPUT_CHANGED' });
    hash.update(buffer.subarray(0, bytesRead));
    hashed += bytesRead;
  }
}

parentPort?.on('message', (message: ShaMessage) => {
  if (failure !== undefined) return;
  try {
    if ('upTo' in message) hashUpTo(message.upTo);
    else parentPort?.postMessage({ digest: new Uint8Array(hash.digest()) } satisfies ShaAnswer);
  } catch (error) {
    const errno = (error as NodeJS.ErrnoException).code;
    failure = { error: (error as Error).message, errno: typeof errno === 'string' ? errno : 'EIO' };
    parentPort?.postMessage(failure);
  }
});
