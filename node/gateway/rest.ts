/**
 * The REST API under /v1 (docs/PROTOCOL.md, "HTTP API"): jobs listed, read, uploaded as a streaming
 * request body, followed as Server-Sent Events and downloaded with HTTP Range; the cluster's status; the
 * OpenAPI document; CORS for the origins in `gateway.cors.origins`. Same token as the WebSocket protocol.
 * http.ts has already checked Host, Origin and the path's shape before a request gets here.
 *
 * A route table of small handlers: each path shape has its handlers by method and the Allow header a
 * 405 lists. The concerns live beside this file: rest-uploads.ts, rest-events.ts, rest-downloads.ts,
 * rest-cors.ts, and the shared errors in rest-common.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { JobError, type JobService } from '../jobs/index.ts';
import type { UploadAdmission } from './admission.ts';
import type { ImagesRoute } from './images-route.ts';
import { openApiDocument } from './openapi.ts';
import { jobIdPattern } from '../protocol/index.ts';
import { fail, send } from './reply.ts';
import { fromJobError, HttpError, restPrefix, RestJobs } from './rest-common.ts';
import { RestCors } from './rest-cors.ts';
import { RestDownloads } from './rest-downloads.ts';
import { RestEvents } from './rest-events.ts';
import { decodedName, RestUploads } from './rest-uploads.ts';

export { restPrefix } from './rest-common.ts';
export { parseRange } from './rest-downloads.ts';

export interface RestApiOptions {
  node: string;
  jobs?: JobService;
  /** Upload slots and their queue, shared with the WebSocket protocol. */
  admission: UploadAdmission;
  /** Count uploads per client address (the node has no token, so the address is all that tells clients apart). */
  uploadsPerAddress: boolean;
  clusterStatus(): unknown;
  authorized(request: IncomingMessage): boolean;
  /** config gateway.cors.origins: pages on these origins get CORS headers. */
  allowedOrigins?: readonly string[];
  /** A streaming upload whose client sends nothing for this long is dropped. */
  uploadIdleMs: number;
  /** SSE streams send a comment this often so proxies and the idle timeout keep them open. */
  heartbeatMs: number;
  logger: Logger;
  /** POST /v1/images (images-route.ts). */
  images: ImagesRoute;
}

export interface RestApi {
  handle(request: IncomingMessage, response: ServerResponse, path: string, url: URL): Promise<void>;
}

const jobsListMax = 1_000;

/** One request as a handler sees it; `parts` are the path's segments after /v1. */
interface RestCall {
  request: IncomingMessage;
  response: ServerResponse;
  method: string;
  path: string;
  url: URL;
  parts: readonly string[];
}

type RestHandler = (call: RestCall) => Promise<void> | void;

interface RestRoute {
  /** What a 405 lists in Allow for a method without a handler. */
  allow: string;
  /** By method; `any` takes every method (the route answers 405 itself). */
  handlers: Readonly<Record<string, RestHandler>>;
}

/** The path shapes under /v1, resolved in order by resolveRoute. */
interface RestRoutes {
  /** /v1/NAME */
  top: Readonly<Record<string, RestRoute>>;
  /** PUT /v1/jobs/FILE: the segment names a file, not a job, so it is not checked as a job id. */
  namedUpload: RestRoute;
  /** /v1/jobs/:id */
  job: RestRoute;
  /** /v1/jobs/:id/NAME */
  jobParts: Readonly<Record<string, RestRoute>>;
  /** /v1/jobs/:id/anything-else: 405 for a write, 404 for a read, as for the known parts. */
  jobPartUnknown: RestRoute;
}

const reads = (handler: RestHandler) => ({ GET: handler, HEAD: handler });
const notFound = (path: string) => new HttpError(404, 'NOT_FOUND', `no such path: ${path}`);

function restRoutes(options: RestApiOptions): RestRoutes {
  const jobs = new RestJobs(options.node, options.jobs);
  const uploads = new RestUploads({ jobs, admission: options.admission, uploadsPerAddress: options.uploadsPerAddress, uploadIdleMs: options.uploadIdleMs, logger: options.logger });
  const events = new RestEvents({ node: options.node, jobs, heartbeatMs: options.heartbeatMs, logger: options.logger });
  const downloads = new RestDownloads(jobs, options.logger);
  const listJobs = async ({ response, url }: RestCall) => {
    const limit = Math.min(Math.max(Number(url.searchParams.get('limit')) || jobsListMax, 1), jobsListMax);
    send(response, 200, { jobs: (await jobs.service().listJobs({ limit })).slice(0, limit) });
  };
  const download = (compressed: boolean) => reads(({ request, response, parts }: RestCall) => downloads.download(request, response, parts[1], compressed));
  return {
    top: {
      'openapi.json': { allow: 'GET, HEAD', handlers: reads(({ response }) => send(response, 200, openApiDocument)) },
      cluster: { allow: 'GET, HEAD', handlers: reads(({ response }) => send(response, 200, options.clusterStatus())) },
      images: { allow: '', handlers: { any: ({ request, response, url }) => options.images.handle(request, response, url) } },
      jobs: { allow: 'GET, HEAD, POST', handlers: { ...reads(listJobs), POST: ({ request, response, url }) => uploads.upload(request, response, url, url.searchParams.get('name') ?? 'upload') } },
    },
    namedUpload: { allow: 'PUT', handlers: { PUT: ({ request, response, url, parts }) => uploads.upload(request, response, url, decodedName(parts[1])) } },
    job: {
      allow: 'GET, HEAD, PUT, DELETE',
      handlers: {
        ...reads(async ({ response, parts }) => send(response, 200, await jobs.jobOrNotFound(parts[1]))),
        DELETE: async ({ response, parts }) => send(response, 200, await jobs.service().deleteJob(parts[1])),
      },
    },
    jobParts: {
      events: { allow: 'GET, HEAD', handlers: { GET: ({ request, response, parts }) => events.stream(request, response, parts[1]), HEAD: ({ response, parts }) => events.head(response, parts[1]) } },
      original: { allow: 'GET, HEAD', handlers: download(false) },
      compressed: { allow: 'GET, HEAD', handlers: download(true) },
    },
    jobPartUnknown: {
      allow: 'GET, HEAD',
      handlers: reads(({ path }) => {
        throw notFound(path);
      }),
    },
  };
}

const entry = <T>(table: Readonly<Record<string, T>>, key: string | undefined): T | undefined => (key !== undefined && Object.hasOwn(table, key) ? table[key] : undefined);

/** The route of an authorized request's path; throws 404 for no such path and 400 for a bad job id. */
function resolveRoute(routes: RestRoutes, { parts, method, path }: RestCall): RestRoute {
  const top = parts.length === 1 ? entry(routes.top, parts[0]) : undefined;
  if (top !== undefined) return top;
  if (parts[0] !== 'jobs' || parts.length > 3) throw notFound(path);
  if (parts.length === 2 && method === 'PUT') return routes.namedUpload;
  const id = parts[1];
  if (!jobIdPattern.test(id)) throw new HttpError(400, 'BAD_REQUEST', `not a job id: ${JSON.stringify(id.slice(0, 80))} (letters, digits, "-" and "_", 1 to 64)`);
  if (parts.length === 2) return routes.job;
  return entry(routes.jobParts, parts[2]) ?? routes.jobPartUnknown;
}

async function dispatch(routes: RestRoutes, authorized: (request: IncomingMessage) => boolean, call: RestCall): Promise<void> {
  // The OpenAPI document is open, like /healthz: a client reads it before it has a token.
  const open = call.parts.length === 1 && call.parts[0] === 'openapi.json';
  if (!open && !authorized(call.request)) throw new HttpError(401, 'AUTH', 'this node requires Authorization: Bearer <token>', { 'www-authenticate': 'Bearer realm="dcas"' });
  const route = resolveRoute(routes, call);
  const handler = entry(route.handlers, call.method) ?? route.handlers.any;
  if (handler === undefined) throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${call.method} is not allowed on ${call.path}`, { allow: route.allow });
  await handler(call);
}

/** An HttpError or a jobs-room error answered as JSON (or the stream cut once it started); others rethrown. */
function answerError(response: ServerResponse, error: unknown): void {
  const known = error instanceof HttpError ? error : error instanceof JobError ? fromJobError(error) : undefined;
  if (known === undefined) throw error;
  if (response.headersSent) {
    response.destroy();
    return;
  }
  fail(response, known.status, known.code, known.message, known.headers);
}

export function createRestApi(options: RestApiOptions): RestApi {
  const cors = new RestCors(options.allowedOrigins);
  const routes = restRoutes(options);
  return {
    async handle(request, response, path, url) {
      const corsAllowed = cors.apply(request, response);
      if (request.method === 'OPTIONS') {
        cors.preflight(response, corsAllowed);
        return;
      }
      const parts = path.slice(restPrefix.length).split('/').filter((part) => part !== '');
      try {
        await dispatch(routes, options.authorized, { request, response, method: request.method ?? 'GET', path, url, parts });
      } catch (error) {
        answerError(response, error);
      }
    },
  };
}
