/**
 * The heartbeat each node publishes on the membership topic: JSON, checked field by field on
 * arrival because it comes from the network.
 */

import * as z from 'zod';
import type { LoadInfo, RaftInfo } from './types.ts';
import type { NodeRole } from '../../config/index.ts';

export const heartbeatTopic = '/dcas/membership/1.0.0';
export const heartbeatBytesMax = 16 * 1024;
const heartbeatVersion = 1;

export interface Heartbeat {
  name: string;
  peerId: string;
  role: NodeRole;
  gateway: string;
  addresses: string[];
  load: LoadInfo;
  raft: RaftInfo | undefined;
  seq: number;
  startedAt: number;
  /** Proof of the cluster's join token (see trust.ts), sent by workers that are not pinned. */
  join?: string;
}

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const wireSchema = z.strictObject({
  v: z.literal(heartbeatVersion),
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
  peerId: z.string().min(1).max(128),
  role: z.enum(['voter', 'worker']),
  gateway: z.string().max(512),
  addresses: z.array(z.string().max(512)).max(32),
  load: z.strictObject({ workers: count, inFlight: count, queue: count }),
  raft: z
    .strictObject({ term: count, role: z.string().max(32), leader: z.string().max(63).nullable() })
    .optional(),
  seq: count,
  startedAt: count,
  join: z.string().regex(/^[0-9a-f]{64}$/).optional(),
});

export function encodeHeartbeat(heartbeat: Heartbeat): Uint8Array {
  const { raft, join, ...rest } = heartbeat;
  const wire = { v: heartbeatVersion, ...rest, ...(raft === undefined ? {} : { raft }), ...(join === undefined ? {} : { join }) };
  const bytes = new TextEncoder().encode(JSON.stringify(wire));
  if (bytes.length > heartbeatBytesMax) throw new RangeError(`heartbeat of ${bytes.length} bytes exceeds ${heartbeatBytesMax}`);
  return bytes;
}

/** Returns the heartbeat, or a one-line reason why these bytes are not one. */
export function decodeHeartbeat(bytes: Uint8Array): Heartbeat | string {
  if (bytes.length > heartbeatBytesMax) return `${bytes.length} bytes, more than ${heartbeatBytesMax}`;
  let document: unknown;
  try {
    document = JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    return `not JSON: ${(error as Error).message}`;
  }
  const result = wireSchema.safeParse(document);
  if (!result.success) {
    const issue = result.error.issues[0];
    return `${issue.path.join('.') || 'heartbeat'}: ${issue.message}`;
  }
  const { v: _version, raft, join, ...rest } = result.data;
  return join === undefined ? { ...rest, raft } : { ...rest, raft, join };
}
