/**
 * A one-voter Raft state on a real LevelDB in a temporary folder: for tests of what the jobs room
 * proposes, with no peers and no processes.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { pino } from 'pino';
import { createReplicatedState, type RaftTransport, type ReplicatedState } from '../../node/cluster/replicated.ts';
import { eventually } from './gateway.ts';

/** A single voter never sends to a peer; this transport only has to exist. */
const loneTransport: RaftTransport = {
  send() {},
  onMessage() {},
  request: () => Promise.reject(new Error('a single voter has no peers')),
  handle() {},
};

export interface LoneVoter {
  state: ReplicatedState;
  /** The temporary folder holding the state; removed by stop. */
  dataDir: string;
  stop(): Promise<void>;
}

/** Starts the voter and waits until it leads. */
export async function startLoneVoter(name: string): Promise<LoneVoter> {
  const dataDir = await mkdtemp(join(tmpdir(), `dcas-${name}-`));
  const db = new Level<string, unknown>(join(dataDir, 'state'));
  const state = await createReplicatedState({ id: 'node1', voters: ['node1'], db, transport: loneTransport, logger: pino({ level: 'silent' }), tickMs: 20, electionTicks: 5, heartbeatTicks: 1 });
  await state.start();
  await eventually(() => state.isLeader(), 'the lone voter leads', 10_000);
  return {
    state,
    dataDir,
    async stop() {
      await state.stop();
      await db.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
