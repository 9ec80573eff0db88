/**
 * Free disk space, checked before new work is accepted: a full disk must turn into a clear
 * INSUFFICIENT_STORAGE for the upload that would fill it, never into a node that cannot write its
 * Raft log. The reserve is space kept free for what cannot be refused (Raft's log and state, chunk
 * outputs and merges of work already accepted).
 */
import { statfs } from 'node:fs/promises';
import { CodedError } from '../errors.ts';

export class InsufficientStorageError extends CodedError<'INSUFFICIENT_STORAGE'> {
  constructor(message: string) {
    super('INSUFFICIENT_STORAGE', message);
  }
}

export interface SpaceGuard {
  /**
   * Throws InsufficientStorageError unless `bytes` more would still leave the reserve free on every
   * watched folder. `what` names the work in the message (`upload 3f2a…: chunk 7`).
   */
  check(bytes: number, what: string): Promise<void>;
  /** Bytes free to this process on each watched folder, smallest first. */
  free(): Promise<Array<{ folder: string; bytes: number }>>;
}

export interface SpaceGuardOptions {
  /** Folders whose file systems are written to: the data folder (LevelDB), a local blob folder. */
  folders: readonly string[];
  reserveBytes: number;
  /** Where the user sets the reserve, named in the message (e.g. "jobs.diskReserveBytes"). */
  reserveSetting?: string;
}

export function createSpaceGuard(options: SpaceGuardOptions): SpaceGuard {
  const folders = [...new Set(options.folders)];
  const { reserveBytes } = options;
  if (!Number.isSafeInteger(reserveBytes) || reserveBytes < 0) throw new RangeError(`space guard: reserveBytes must be a non-negative integer, got ${reserveBytes}`);

  async function free(): Promise<Array<{ folder: string; bytes: number }>> {
    const measured = await Promise.all(
      folders.map(async (folder) => {
        const info = await statfs(folder);
        // bavail, not bfree: blocks the file system keeps for root are not ours to plan with.
        return { folder, bytes: info.bavail * info.bsize };
      }),
    );
    return measured.sort((a, b) => a.bytes - b.bytes);
  }

  return {
    free,
    async check(bytes, what) {
      for (const { folder, bytes: available } of await free()) {
        if (available - bytes < reserveBytes) {
          throw new InsufficientStorageError(
            `${what}: not enough disk space on ${folder}: ${mebibytes(available)} free, ${mebibytes(bytes)} needed and ${mebibytes(reserveBytes)} kept in reserve${options.reserveSetting === undefined ? '' : ` (${options.reserveSetting})`}`,
          );
        }
      }
    },
  };
}

function mebibytes(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
