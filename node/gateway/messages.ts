/**
 * Parsing of client control messages: the one place a text frame is checked. After `parseClientMessage`
 * returns a message, the connection code trusts its fields (types, ranges, job id syntax).
 * Unknown fields are ignored, so a newer client's optional additions do not break an older node.
 */
import * as z from 'zod';
import { jobIdPattern, type ClientMessage, type RequestId } from '../protocol/index.ts';

const requestId = z.union([z.string().min(1).max(64), z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)]).optional();
const jobId = z.string().regex(jobIdPattern, 'expected a job id of letters, digits, "-" and "_" (1 to 64 characters)');
const byteCount = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
// A file name is metadata for the user, never a path on the node: no separators, no control characters.
const fileName = z
  .string()
  .min(1)
  .max(255)
  .refine((name) => !/[/\\\u0000-\u001f]/.test(name) && name !== '.' && name !== '..', 'expected a file name without path separators or control characters');

const schemas = {
  hello: z.object({ type: z.literal('hello'), id: requestId, version: z.number().int(), token: z.string().max(4096).optional() }),
  upload: z.object({
    type: z.literal('upload'),
    id: requestId,
    fileName,
    mode: z.enum(['compress', 'decompress', 'images']),
    chunkSize: z.number().int().min(1).max(2 ** 30).optional(),
    size: byteCount.optional(),
    // Checked by the jobs room against the codec registry (its errors list the valid names).
    codec: z.string().max(40).optional(),
    format: z.string().max(40).optional(),
    // Checked by the jobs room against the image modes and quality syntax.
    image: z.strictObject({ mode: z.string().max(40), quality: z.string().max(20).optional(), strip: z.boolean().optional() }).optional(),
  }),
  'upload-end': z.object({ type: z.literal('upload-end'), id: requestId, jobId }),
  'upload-abort': z.object({ type: z.literal('upload-abort'), id: requestId, jobId, reason: z.string().max(200).optional() }),
  watch: z.object({ type: z.literal('watch'), id: requestId, jobId }),
  unwatch: z.object({ type: z.literal('unwatch'), id: requestId, jobId: jobId.optional() }),
  status: z.object({ type: z.literal('status'), id: requestId, jobId }),
  jobs: z.object({ type: z.literal('jobs'), id: requestId, limit: z.number().int().min(1).max(10_000).optional() }),
  download: z.object({ type: z.literal('download'), id: requestId, jobId, compressed: z.boolean().default(false) }),
  'download-cancel': z.object({ type: z.literal('download-cancel'), id: requestId, jobId }),
  delete: z.object({ type: z.literal('delete'), id: requestId, jobId }),
} satisfies Record<ClientMessage['type'], z.ZodType>;

export type ParseResult =
  | { ok: true; message: ClientMessage }
  | { ok: false; message: string; id?: RequestId };

function describeIssue(issue: z.core.$ZodIssue): string {
  const path = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  return `${path}${issue.message}`;
}

/** Parses one text frame. On failure, `id` is the request's id when it could be read, to echo it. */
export function parseClientMessage(text: string): ParseResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, message: 'not JSON: a control message is one JSON object in a text frame' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, message: 'expected a JSON object with a "type"' };
  const record = value as Record<string, unknown>;
  const id = requestId.safeParse(record.id).data;
  const type = record.type;
  if (typeof type !== 'string' || !Object.hasOwn(schemas, type)) {
    return { ok: false, message: `unknown message type ${JSON.stringify(type)?.slice(0, 40) ?? 'undefined'}`, id };
  }
  const parsed = schemas[type as ClientMessage['type']].safeParse(value);
  if (!parsed.success) return { ok: false, message: `${type}: ${describeIssue(parsed.error.issues[0])}`, id };
  return { ok: true, message: parsed.data as ClientMessage };
}
