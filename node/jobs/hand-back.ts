/**
 * The hand-back of a worker that stops gracefully: once it has stopped taking chunks, every chunk still
 * assigned to it (those it is coding too) goes back to pending (core/hand-back.ts decides the
 * records), so the coordinator gives it to another worker at its next round instead of when the lease
 * lapses or the membership declares this node dead.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { ReplicatedState } from '../cluster/index.ts';
import { chunkCasCommand, chunksToHandBack } from './core/index.ts';
import { activeJobIds, readChunks } from './records.ts';

/**
 * Passes over the state: the coordinator may assign this node a chunk between its last round before the
 * heartbeat saying "no workers" reached it and the first pass, so another pass follows any that found some.
 */
const passesMax = 3;
const passPauseMs = 250;
/** A hand-back waits no longer than this for its proposal: a node cut off from the leader still exits. */
const proposeTimeoutMs = 5_000;

/** Hands back every chunk `node` holds; resolves with how many went back. Never throws: stopping goes on. */
export async function handBackChunks(state: ReplicatedState, node: string, logger: Logger): Promise<number> {
  let handedBack = 0;
  for (let pass = 0; pass < passesMax; pass++) {
    const moves = [];
    try {
      for (const id of await activeJobIds(state)) moves.push(...chunksToHandBack(await readChunks(state, id), node));
    } catch (error) {
      logger.warn({ err: error }, 'jobs: could not read the chunks to hand back; their leases will lapse');
      break;
    }
    if (moves.length === 0) break;
    // One compare-and-set per chunk: a chunk completed meanwhile loses only its own hand-back.
    const results = await Promise.allSettled(moves.map(({ before, after }) => state.propose(chunkCasCommand(before, after), { timeoutMs: proposeTimeoutMs })));
    const applied = results.filter((result) => result.status === 'fulfilled' && result.value.applied).length;
    handedBack += applied;
    logger.info({ chunks: applied, tried: moves.length, pass: pass + 1 }, 'jobs: handed chunks back as this node stops');
    await delay(passPauseMs);
  }
  return handedBack;
}
