/**
 * Where jobs, chunks and their blobs live: replicated-state keys and blob keys. Pure names, shared by
 * the core, its I/O shells and the simulation.
 */

export const jobKey = (id: string) => `jobs/${id}`;
export const activeKey = (id: string) => `active/${id}`;
export const chunkPrefix = (id: string) => `chunks/${id}/`;
export const chunkKey = (id: string, index: number) => `${chunkPrefix(id)}${String(index).padStart(8, '0')}`;

/** Blob keys: staged inputs and outputs per job, and the final objects. */
export const blobKeys = {
  stagingPrefix: (id: string) => `staging/${id}/`,
  input: (id: string, index: number) => `staging/${id}/in/${String(index).padStart(8, '0')}`,
  /**
   * One key per run, not per attempt: a node that restarts runs its still-assigned attempt again, and
   * the losing run deletes its own output, which must never be the winner's.
   */
  output: (id: string, index: number, attempt: number, run: string) => `staging/${id}/out/${String(index).padStart(8, '0')}.${attempt}.${run}`,
  header: (id: string) => `staging/${id}/header`,
  tail: (id: string) => `staging/${id}/tail`,
  /** The compressed object, whatever its format (the key keeps its first name). */
  dcz: (id: string) => `jobs/${id}.dcz`,
  /**
   * For a job in a standard format: a .dcz-style index of its pieces (offset, lengths, CRC32C of the
   * original), which those formats do not carry, so a download decodes pieces in parallel and names a
   * corrupt one.
   */
  pieces: (id: string) => `jobs/${id}.pieces`,
  original: (id: string) => `jobs/${id}.original`,
};
