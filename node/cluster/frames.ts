/**
 * The frames the replicated state takes from the network, checked field by field before anything
 * reaches the Raft core or the state store: a Raft message, and a forwarded proposal. Which sender
 * may send which message is decided here too, by the sender's admitted name (never by a name the
 * frame claims).
 */

import { decode } from 'cborg';
import * as z from 'zod';
import type { Message, MessageType, NodeId } from './raft/index.ts';
import type { StateCommand } from '../storage/index.ts';

/** More than any configured AppendEntries batch; the frame size bounds the bytes anyway. */
const entriesMax = 65_536;
const opsMax = 65_536;
const guardsMax = 65_536;
const keyCharsMax = 1024;

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const nodeId = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/);
const bytes = z.instanceof(Uint8Array);
const base = { from: nodeId, to: nodeId, term: count };
const entry = z.strictObject({ index: count, term: count, type: z.enum(['normal', 'noop']), data: bytes });

const messageSchema = z.discriminatedUnion('type', [
  z.strictObject({ ...base, type: z.literal('vote-request'), lastLogIndex: count, lastLogTerm: count }),
  z.strictObject({ ...base, type: z.literal('pre-vote-request'), lastLogIndex: count, lastLogTerm: count }),
  z.strictObject({ ...base, type: z.literal('vote-response'), granted: z.boolean() }),
  z.strictObject({ ...base, type: z.literal('pre-vote-response'), granted: z.boolean() }),
  z.strictObject({
    ...base,
    type: z.literal('append'),
    prevLogIndex: count,
    prevLogTerm: count,
    entries: z.array(entry).max(entriesMax),
    commit: count,
  }),
  z.strictObject({ ...base, type: z.literal('append-response'), success: z.boolean(), index: count, hintIndex: count, hintTerm: count }),
  z.strictObject({ ...base, type: z.literal('heartbeat'), commit: count }),
  z.strictObject({ ...base, type: z.literal('heartbeat-response') }),
  z.strictObject({ ...base, type: z.literal('install-snapshot'), snapshot: z.strictObject({ index: count, term: count, data: bytes }) }),
]);

const stateValue: z.ZodType<unknown> = z.lazy(() =>
  z.union([z.null(), z.boolean(), z.number(), z.string(), z.array(stateValue), z.record(z.string(), stateValue)]),
);
const key = z.string().min(1).max(keyCharsMax);
const commandSchema = z.strictObject({
  id: z.string().min(1).max(128),
  guards: z.array(z.strictObject({ key, equals: stateValue })).max(guardsMax).optional(),
  ops: z
    .array(z.union([z.strictObject({ op: z.literal('put'), key, value: stateValue }), z.strictObject({ op: z.literal('del'), key })]))
    .max(opsMax),
});
const proposalSchema = z.strictObject({ command: commandSchema, timeoutMs: z.number().int().min(1).max(3_600_000) });

export interface ProposalFrame {
  command: StateCommand;
  timeoutMs: number;
}

/** Messages only a leader or a candidate sends: they count only from a voter. */
const fromVotersOnly: ReadonlySet<MessageType> = new Set<MessageType>([
  'append',
  'heartbeat',
  'install-snapshot',
  'vote-request',
  'pre-vote-request',
  'vote-response',
  'pre-vote-response',
]);

/** Decodes and checks a frame; returns the value, or a one-line reason it is not one. */
function parseFrame<T>(schema: z.ZodType<T>, frame: Uint8Array, what: string): T | string {
  let document: unknown;
  try {
    document = decode(frame);
  } catch (error) {
    return `${what}: not CBOR: ${(error as Error).message}`;
  }
  const result = schema.safeParse(document);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  return `${what}: ${issue.path.join('.') || 'frame'}: ${issue.message}`;
}

export function parseRaftMessage(frame: Uint8Array): Message | string {
  return parseFrame(messageSchema, frame, 'raft message') as Message | string;
}

export function parseProposalFrame(frame: Uint8Array): ProposalFrame | string {
  return parseFrame(proposalSchema, frame, 'proposal') as ProposalFrame | string;
}

export interface Senders {
  voters: ReadonlySet<NodeId>;
  learners: ReadonlySet<NodeId>;
}

/**
 * Why `message`, which arrived from the admitted member `from`, must not reach the core on node
 * `self`; undefined when it may. Learners only ever answer a leader.
 */
export function senderProblem(message: Message, from: NodeId, self: NodeId, senders: Senders): string | undefined {
  if (message.to !== self) return `addressed to ${message.to}`;
  if (message.from !== from) return `claims to be from ${message.from}`;
  if (senders.voters.has(from)) return undefined;
  if (!senders.learners.has(from)) return 'sender is neither a voter nor a learner';
  if (fromVotersOnly.has(message.type)) return `a ${message.type} from learner ${from}`;
  return undefined;
}
