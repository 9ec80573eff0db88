/**
 * The node's own HTTP routes outside /v1: /healthz, /readyz and /metrics (open for probes and scrapers),
 * and /cluster, /state, /jobs and /jobs/:id (behind the token when the node has one). A table of small
 * handlers by path; /jobs reads answer the jobs room's errors with its codes.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { JobError, type JobService } from '../jobs/index.ts';
import type { GatewayMetrics } from './metrics.ts';
import { jobIdPattern } from '../protocol/index.ts';
import { dropIfNotReading, fail, jobErrorStatus, send } from './reply.ts';

export interface GatewayRoutes {
  /** Liveness: the process serves requests. */
  health(): unknown;
  /** Readiness: joined and a coordinator is known. */
  ready(): { ready: boolean; reason?: string };
  clusterStatus(): unknown;
  state(prefix: string, limit: number): Promise<unknown>;
}

export interface NodeRoutesOptions {
  node: string;
  /** The jobs room; without it, job reads answer NOT_READY (503). */
  jobs?: JobService;
  routes: GatewayRoutes;
  metrics: GatewayMetrics;
  authorized(request: IncomingMessage): boolean;
}

export interface NodeRoutes {
  /** Answers a GET or HEAD of `path` (already checked by http.ts), errors included. */
  handle(request: IncomingMessage, response: ServerResponse, path: string, url: URL): Promise<void>;
}

const jobsListHttpMax = 1_000;
const stateListDefault = 1_000;
const stateListMax = 10_000;

/**
 * A `limit` query parameter as a whole number from 1 to `max`: absent or not a number gives the
 * default, anything else is clamped (`limit=-1` or `0` lists one entry, never everything).
 */
export function clampedLimit(text: string | null, fallback: number, max: number): number {
  const value = text === null || text.trim() === '' ? Number.NaN : Number(text);
  if (!Number.isFinite(value)) return fallback;
  return Math.min(Math.max(Math.floor(value), 1), max);
}

interface NodeRoute {
  /** Served without the token: probes and scrapers have none. */
  open: boolean;
  answer(response: ServerResponse, url: URL): Promise<void> | void;
}

function routeTable({ routes, metrics }: NodeRoutesOptions): ReadonlyMap<string, NodeRoute> {
  return new Map<string, NodeRoute>([
    ['/healthz', { open: true, answer: (response) => send(response, 200, routes.health()) }],
    [
      '/readyz',
      {
        open: true,
        answer: (response) => {
          const readiness = routes.ready();
          send(response, readiness.ready ? 200 : 503, readiness);
        },
      },
    ],
    [
      '/metrics',
      {
        open: true,
        answer: async (response) => {
          const text = await metrics.render();
          if (dropIfNotReading(response)) return;
          response.writeHead(200, { 'content-type': metrics.contentType, 'content-length': String(Buffer.byteLength(text)), 'cache-control': 'no-store' });
          response.end(text);
        },
      },
    ],
    ['/cluster', { open: false, answer: (response) => send(response, 200, routes.clusterStatus()) }],
    [
      '/state',
      {
        open: false,
        answer: async (response, url) => {
          const prefix = url.searchParams.get('prefix') ?? '';
          const limit = clampedLimit(url.searchParams.get('limit'), stateListDefault, stateListMax);
          send(response, 200, await routes.state(prefix, limit));
        },
      },
    ],
  ]);
}

async function answerJobs(options: NodeRoutesOptions, path: string, url: URL, response: ServerResponse): Promise<void> {
  const { jobs, node } = options;
  const jobId = path === '/jobs' ? undefined : path.slice('/jobs/'.length);
  if (jobId !== undefined && !jobIdPattern.test(jobId)) {
    fail(response, 400, 'BAD_REQUEST', `not a job id: ${JSON.stringify(jobId.slice(0, 80))} (letters, digits, "-" and "_", 1 to 64)`);
    return;
  }
  if (jobs === undefined) {
    fail(response, 503, 'NOT_READY', `node ${node} has no jobs service running yet`);
    return;
  }
  try {
    if (jobId === undefined) {
      const limit = clampedLimit(url.searchParams.get('limit'), jobsListHttpMax, jobsListHttpMax);
      send(response, 200, { jobs: (await jobs.listJobs({ limit })).slice(0, limit) });
      return;
    }
    const job = await jobs.getJob(jobId);
    if (job === undefined) fail(response, 404, 'NOT_FOUND', `job ${jobId}: not found on node ${node}`);
    else send(response, 200, job);
  } catch (error) {
    if (!(error instanceof JobError)) throw error;
    fail(response, jobErrorStatus[error.code] ?? 500, error.code, error.message);
  }
}

export function createNodeRoutes(options: NodeRoutesOptions): NodeRoutes {
  const table = routeTable(options);
  return {
    async handle(request, response, path, url) {
      const route = table.get(path);
      if (route?.open !== true && !options.authorized(request)) {
        fail(response, 401, 'AUTH', 'this node requires Authorization: Bearer <token>', { 'www-authenticate': 'Bearer realm="dcas"' });
        return;
      }
      if (path === '/jobs' || path.startsWith('/jobs/')) {
        await answerJobs(options, path, url, response);
        return;
      }
      if (route === undefined) {
        fail(response, 404, 'NOT_FOUND', `no such path: ${path}`);
        return;
      }
      await route.answer(response, url);
    },
  };
}
