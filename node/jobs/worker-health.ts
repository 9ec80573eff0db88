/**
 * Workers earn work: the coordinator's record of how each worker has served its leases, and the pure
 * decision of who gets the next chunks. A worker's advertised free slots are only a ceiling; what it
 * may hold is earned by completing chunks (slow start: 1, 2, 4, ... chunks in flight, doubling with
 * each completion since its last lapse), and a worker whose lease lapses is quarantined with
 * exponential backoff, then probed with a single chunk. Nothing here reads a clock or the network:
 * every function takes the time as an argument, so tests replay any history exactly.
 *
 * The record lives in the coordinator's memory only. A new coordinator starts with a clean slate and
 * learns again within a lease or two; a black-hole worker costs it one chunk's lease per probe.
 */

export interface HealthPolicy {
  /** First quarantine after a lapse; each further lapse in a row doubles it. */
  quarantineMsBase: number;
  /** The longest quarantine. */
  quarantineMsMax: number;
}

export interface WorkerHealth {
  /** Completions and lapses, halved together when they grow large, so recent behaviour counts most. */
  completions: number;
  lapses: number;
  /** Completions since the last lapse: the slow-start window is 2^streak chunks. */
  streak: number;
  /** Lapses since the last completion: the quarantine is base * 2^(lapsesInRow - 1). */
  lapsesInRow: number;
  /** No new chunks before this time (ms since the epoch); 0 when never quarantined. */
  quarantinedUntilMs: number;
}

export type HealthBook = Map<string, WorkerHealth>;

/** A worker the coordinator could assign to: its name, what it advertises, what it holds now. */
export interface WorkerSlots {
  name: string;
  /** Slots the worker advertises (threads x in-flight per thread), before subtracting what it holds. */
  slots: number;
  /** Chunks assigned to it now. */
  inFlight: number;
  /** Its reported queue length, to break ties. */
  queue: number;
}

/** Workers remembered at most; a cluster with more members forgets the longest-silent ones. */
export const healthBookSizeMax = 4096;
/** When completions + lapses pass this, both are halved. */
const outcomesDecayAt = 64;
/** The slow-start window stops doubling here (2^10 chunks is more than any node advertises). */
const streakMax = 10;

function fresh(): WorkerHealth {
  return { completions: 0, lapses: 0, streak: 0, lapsesInRow: 0, quarantinedUntilMs: 0 };
}

function entry(book: HealthBook, name: string): WorkerHealth {
  let health = book.get(name);
  if (health === undefined) {
    health = fresh();
    if (book.size >= healthBookSizeMax) book.delete(book.keys().next().value!);
  } else {
    // Re-inserting keeps the map in least-recently-touched order for the eviction above.
    book.delete(name);
  }
  book.set(name, health);
  return health;
}

function decay(health: WorkerHealth): void {
  if (health.completions + health.lapses <= outcomesDecayAt) return;
  health.completions /= 2;
  health.lapses /= 2;
}

/** A chunk the worker held was completed by it. Ends any quarantine. */
export function recordCompletion(book: HealthBook, name: string): void {
  const health = entry(book, name);
  health.completions++;
  health.streak = Math.min(health.streak + 1, streakMax);
  health.lapsesInRow = 0;
  health.quarantinedUntilMs = 0;
  decay(health);
}

/**
 * A chunk's lease lapsed on the worker. A lapse during a quarantine (chunks it held before) is
 * counted but does not extend it; the first lapse after one (the probe) doubles it.
 */
export function recordLapse(book: HealthBook, name: string, nowMs: number, policy: HealthPolicy): void {
  const health = entry(book, name);
  health.lapses++;
  health.streak = 0;
  decay(health);
  if (nowMs < health.quarantinedUntilMs) return;
  health.lapsesInRow++;
  const backoffMs = policy.quarantineMsBase * 2 ** Math.min(health.lapsesInRow - 1, 30);
  health.quarantinedUntilMs = nowMs + Math.min(backoffMs, policy.quarantineMsMax);
}

/**
 * Whether a lapse on this worker (recorded before calling recordLapse) counts as one of the chunk's
 * attempts. Only a worker that proved itself since its last lapse counts: then the chunk, not the
 * worker, is the likelier cause. A new, quarantined or probed worker's lapse says nothing about the
 * chunk, so a black hole cannot fail a job while healthy workers exist; the chunk's separate lapse
 * limit still bounds how often it can go round.
 */
export function lapseCountsAgainstChunk(book: HealthBook, name: string): boolean {
  return (book.get(name)?.streak ?? 0) > 0;
}

/** The share of a worker's recent leases it completed, with one of each assumed (a new worker scores 0.5). */
export function completionRate(book: HealthBook, name: string): number {
  const health = book.get(name) ?? fresh();
  return (health.completions + 1) / (health.completions + health.lapses + 2);
}

/** How many more chunks the worker may take now: its earned window, or one probe, or none. */
export function allowance(book: HealthBook, worker: WorkerSlots, nowMs: number): number {
  const health = book.get(worker.name) ?? fresh();
  if (nowMs < health.quarantinedUntilMs) return 0;
  const window = health.lapsesInRow > 0 ? 1 : 2 ** health.streak;
  return Math.max(0, Math.min(worker.slots, window) - worker.inFlight);
}

/**
 * Picks a worker for each of `chunks` chunks, best first: the highest completion rate, then the most
 * room, then the shortest queue. Returns the names in assignment order (shorter than `chunks` when
 * the workers' allowances run out). Pure: the book is read, not changed.
 */
export function planAssignments(chunks: number, workers: readonly WorkerSlots[], book: HealthBook, nowMs: number): string[] {
  const candidates = workers
    .map((worker) => ({ name: worker.name, queue: worker.queue, rate: completionRate(book, worker.name), room: allowance(book, worker, nowMs) }))
    .filter((candidate) => candidate.room > 0);
  const plan: string[] = [];
  while (plan.length < chunks) {
    candidates.sort((a, b) => b.rate - a.rate || b.room - a.room || a.queue - b.queue || a.name.localeCompare(b.name));
    const best = candidates[0];
    if (best === undefined || best.room <= 0) break;
    best.room--;
    plan.push(best.name);
    if (best.room === 0) candidates.shift();
  }
  return plan;
}
