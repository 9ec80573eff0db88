/**
 * The simulated world the jobs core runs in: a replicated state that applies compare-and-set commands
 * in one order, a blob store, nodes that crash, restart and slow down, and a discrete-event scheduler.
 * Every await of a simulated actor is an event with a due time; among the events that are due, a seeded
 * generator picks which runs next, so one seed replays one history exactly. An event belongs to a node's
 * run: when the node crashes, the events of that run never fire, and its async code simply stops there.
 */
import { isDeepStrictEqual } from 'node:util';
import { SeededRandom } from '../../cluster/index.ts';
import type { StateValue } from '../../storage/index.ts';
import type { Command, MemberFacts } from '../core/index.ts';

export interface SimNode {
  name: string;
  up: boolean;
  /** Increments on every crash: events of an earlier run are dropped. */
  run: number;
  startedAtMs: number;
  downSinceMs: number;
  slow: boolean;
}

interface SimEvent {
  dueMs: number;
  /** The node run this event belongs to; undefined for the log, which outlives any one node. */
  owner: { node: SimNode; run: number } | undefined;
  fire: () => void;
}

/** Events run at most per seed: a guard against a history that never settles. */
export const eventsMax = 400_000;
/** A node unheard of for this long is dead to the coordinator (below that, suspect). */
export const deadMs = 1_000;

export class World {
  readonly random: SeededRandom;
  readonly state = new Map<string, StateValue>();
  readonly blobs = new Map<string, string>();
  readonly nodes: SimNode[] = [];
  nowMs = Date.UTC(2026, 0, 1);
  leader: SimNode | undefined;
  eventsRun = 0;
  readonly trace: string[] = [];
  /** Called after a command applied, with what each key held before. */
  onApply: (command: Command, before: Map<string, StateValue | undefined>) => void = () => {};
  #events: SimEvent[] = [];

  constructor(seed: number, nodeCount: number) {
    this.random = new SeededRandom(seed);
    for (let i = 0; i < nodeCount; i += 1) this.nodes.push({ name: `n${i}`, up: true, run: 0, startedAtMs: this.nowMs, downSinceMs: 0, slow: false });
  }

  note(line: string): void {
    this.trace.push(`${this.nowMs - Date.UTC(2026, 0, 1)}ms ${line}`);
  }

  /** Runs `fire` after `delayMs` (times ten on a slow node), unless the node crashed meanwhile. */
  schedule(node: SimNode | undefined, delayMs: number, fire: () => void, run = node?.run): void {
    const slowFactor = node?.slow === true ? 10 : 1;
    this.#events.push({ dueMs: this.nowMs + delayMs * slowFactor, owner: node === undefined ? undefined : { node, run: run! }, fire });
  }

  /** An awaitable step of `node`: resolves with `work()`'s result, done when the event fires. */
  step<T>(node: SimNode, work: () => T, delayMs = this.random.int(1, 30)): Promise<T> {
    return new Promise<T>((resolve, reject) =>
      this.schedule(node, delayMs, () => {
        try {
          resolve(work());
        } catch (error) {
          reject(error as Error);
        }
      }),
    );
  }

  /** Proposes through the log: the command applies (or is dropped, as in a leader change) even if `node` crashes meanwhile; only the reply is lost. */
  propose(node: SimNode, command: Command): Promise<boolean> {
    // The reply goes to the run that proposed, never to a later run of the node.
    const run = node.run;
    return new Promise<boolean>((resolve, reject) =>
      // Most commits are quick; one in ten waits out a slow leader or an election.
      this.schedule(undefined, this.random.chance(0.1) ? this.random.int(200, 3_000) : this.random.int(2, 120), () => {
        if (this.random.chance(0.02)) {
          this.schedule(node, 1, () => reject(new Error('proposal dropped by a leader change')), run);
          return;
        }
        const applied = this.apply(command);
        this.schedule(node, this.random.int(1, 20), () => resolve(applied), run);
      }),
    );
  }

  apply(command: Command): boolean {
    if (!command.guards.every((guard) => isDeepStrictEqual(this.state.get(guard.key) ?? null, guard.equals))) return false;
    const before = new Map(command.ops.map((op) => [op.key, this.state.get(op.key)]));
    for (const op of command.ops) {
      if (op.op === 'put') this.state.set(op.key, structuredClone(op.value));
      else this.state.delete(op.key);
    }
    this.onApply(command, before);
    return true;
  }

  /** Runs the next due event (advancing the clock to it if none is due); false when nothing is left. */
  runNext(): boolean {
    const live = this.#events.filter((event) => event.owner === undefined || (event.owner.node.up && event.owner.node.run === event.owner.run));
    if (live.length === 0) return false;
    const earliestMs = Math.min(...live.map((event) => event.dueMs));
    if (earliestMs > this.nowMs) this.nowMs = earliestMs;
    const due = live.filter((event) => event.dueMs <= this.nowMs);
    const chosen = this.random.pick(due);
    this.#events = live.filter((event) => event !== chosen);
    this.eventsRun += 1;
    chosen.fire();
    return true;
  }

  members(): MemberFacts[] {
    return this.nodes.map((node) => {
      const downMs = node.up ? 0 : this.nowMs - node.downSinceMs;
      return { name: node.name, status: node.up ? 'alive' : downMs > deadMs ? 'dead' : 'suspect', startedAt: node.startedAtMs, heartbeatAgeMs: downMs, load: { workers: 1, queue: 0 } };
    });
  }

  crash(node: SimNode): void {
    node.up = false;
    node.run += 1;
    node.downSinceMs = this.nowMs;
    if (this.leader === node) this.leader = undefined;
    this.note(`crash ${node.name}`);
  }

  restart(node: SimNode): void {
    node.up = true;
    node.startedAtMs = this.nowMs;
    this.note(`restart ${node.name}`);
  }

  keys(prefix: string): string[] {
    return [...this.state.keys()].filter((key) => key.startsWith(prefix)).sort();
  }
}
