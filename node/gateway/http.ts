/**
 * A node's gateway: one HTTP server that answers health, readiness, cluster and job reads, Prometheus
 * metrics, the REST API under /v1 (rest.ts), the web console at / (node/console), and upgrades /ws to the
 * WebSocket protocol (ws.ts). Every HTTP answer but /metrics is JSON;
 * errors are `{"error":{"code","message"}}` with one line of message.
 *
 * Auth: when the node has a token, /jobs*, /state and /cluster need `Authorization: Bearer <token>`
 * (401 otherwise); /healthz, /readyz and /metrics stay open for probes and scrapers.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { ImagePool } from '../codec/index.ts';
import { JobError, type JobService } from '../jobs/index.ts';
import { createUploadAdmission } from './admission.ts';
import { bearerToken, createTokenCheck } from './auth.ts';
import { createGatewayMetrics, type GatewayStats, type RaftStatus } from './metrics.ts';
import { jobIdPattern, webSocketPath } from '../protocol/index.ts';
import { createHostPolicy } from './origin.ts';
import { createImagesRoute, defaultImageLimits, type ImageLimits } from './images-route.ts';
import { createRestApi, restPrefix } from './rest.ts';
import { consoleAssets, consoleContentSecurityPolicy } from '../console/index.ts';
import { dropIfNotReading, fail, jobErrorStatus, send } from './reply.ts';
import { createWebSocketGateway, defaultGatewayLimits, refuseUpgrade, type GatewayLimits } from './ws.ts';

export interface GatewayRoutes {
  /** Liveness: the process serves requests. */
  health(): unknown;
  /** Readiness: joined and a coordinator is known. */
  ready(): { ready: boolean; reason?: string };
  clusterStatus(): unknown;
  state(prefix: string, limit: number): Promise<unknown>;
}

export interface GatewayOptions {
  host: string;
  /** 0 picks a free port; url() then reports the one chosen. */
  port: number;
  /** PEM certificate and key: the gateway then speaks https:// and wss:// only. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  routes: GatewayRoutes;
  logger: Logger;
  /** This node's name, told to WebSocket clients in the welcome. */
  node?: string;
  /** The jobs room; without it, job requests answer NOT_READY (503). */
  jobs?: JobService;
  /** Client token; undefined turns auth off. */
  token?: string;
  /** Raft term and role for /metrics. */
  raftStatus?: () => RaftStatus;
  limits?: Partial<GatewayLimits>;
  /** Header size limit for requests. */
  headerBytesMax?: number;
  /** Host names clients may use besides loopback, IP literals and `host` (config gateway.allowedHosts). */
  allowedHosts?: readonly string[];
  /** Web origins besides the gateway's own that may use it from a browser (config gateway.cors.origins). */
  allowedOrigins?: readonly string[];
  /** The node's image pool for POST /v1/images; without it that route answers 503 NOT_READY. */
  imagePool?: ImagePool;
  /** config gateway.images; defaults as the config's. */
  imageLimits?: Partial<ImageLimits>;
}

export interface Gateway {
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly server: Server;
  /** http://host:port */
  url(): string;
  /** ws://host:port/ws */
  wsUrl(): string;
  stats(): GatewayStats & { uploadBufferedBytesPeak: number };
}

const jobsListHttpMax = 1_000;
/** A request (or the response it waits on) that moves no byte for this long has its socket closed. */
const requestIdleMs = 30_000;
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

/**
 * The raw path, before any normalisation: `new URL` would quietly turn /jobs/../state into /state.
 * Dot segments, encoded dots or separators, backslashes and NULs are refused, not resolved.
 */
function checkedPath(rawUrl: string): string | undefined {
  const path = rawUrl.split('?')[0];
  if (!path.startsWith('/') || path.includes('//') || path.includes('\\')) return undefined;
  if (/%(2e|2f|5c|00)/i.test(path)) return undefined;
  if (path.split('/').some((segment) => segment === '.' || segment === '..')) return undefined;
  return path;
}


export function createGateway(options: GatewayOptions): Gateway {
  const { routes, logger, jobs } = options;
  const node = options.node ?? 'node';
  const limits: GatewayLimits = { ...defaultGatewayLimits, ...options.limits };
  const tokenCheck = createTokenCheck(options.token);
  const admission = createUploadAdmission(node, limits);
  const webSockets = createWebSocketGateway({ node, jobs, admission, tokenCheck, limits, logger, metrics: () => metrics });
  const stats = () => ({ ...webSockets.stats(), ...admission.stats() });
  const metrics = createGatewayMetrics({ jobs, raftStatus: options.raftStatus, stats });
  const hostPolicy = createHostPolicy({
    bindHost: options.host,
    port: () => (server.address() as AddressInfo | null)?.port ?? options.port,
    allowedHosts: options.allowedHosts,
    allowedOrigins: options.allowedOrigins,
  });

  const restApi = createRestApi({
    node,
    jobs,
    admission,
    uploadsPerAddress: !tokenCheck.enabled,
    clusterStatus: () => routes.clusterStatus(),
    authorized: (request) => authorized(request),
    allowedOrigins: options.allowedOrigins,
    uploadIdleMs: limits.uploadIdleMs,
    heartbeatMs: limits.heartbeatMs,
    logger,
    images: createImagesRoute({ node, imagePool: options.imagePool, limits: { ...defaultImageLimits, ...options.imageLimits }, bodyIdleMs: limits.uploadIdleMs, logger }),
  });

  /** undefined when the request may go on, else the status and reason it is refused with. */
  function checkCaller(request: IncomingMessage): { status: number; code: string; message: string } | undefined {
    const badHost = hostPolicy.checkHost(request.headers.host);
    if (badHost !== undefined) return { status: 421, code: 'MISDIRECTED', message: badHost };
    const badOrigin = hostPolicy.checkOrigin(request.headers.origin, request.headers.host);
    if (badOrigin !== undefined) return { status: 403, code: 'FORBIDDEN_ORIGIN', message: badOrigin };
    return undefined;
  }

  function authorized(request: IncomingMessage): boolean {
    return !tokenCheck.enabled || tokenCheck.matches(bearerToken(request.headers.authorization));
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    // An idle socket is dropped; the REST API lengthens this for uploads and lifts it while ?wait=true waits.
    request.setTimeout(requestIdleMs);
    const refusal = checkCaller(request);
    if (refusal !== undefined) {
      fail(response, refusal.status, refusal.code, refusal.message);
      return;
    }
    const path = checkedPath(request.url ?? '/');
    if (path === undefined) {
      fail(response, 400, 'BAD_REQUEST', 'the path has dot segments, encoded separators or backslashes');
      return;
    }
    const url = new URL(request.url ?? '/', 'http://gateway');
    if (path === restPrefix || path.startsWith(`${restPrefix}/`)) {
      await restApi.handle(request, response, path, url);
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      fail(response, 405, 'METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${path}`, { allow: 'GET, HEAD' });
      return;
    }
    const asset = consoleAssets.get(path);
    if (asset !== undefined) {
      // The console is open: it holds no data, and asks for the token itself when the API needs one.
      response.writeHead(200, { 'content-type': asset.contentType, 'content-length': String(asset.body.length), 'cache-control': 'no-cache', 'content-security-policy': consoleContentSecurityPolicy, 'x-content-type-options': 'nosniff' });
      response.end(request.method === 'HEAD' ? undefined : asset.body);
      return;
    }
    const open = path === '/healthz' || path === '/readyz' || path === '/metrics';
    if (!open && !authorized(request)) {
      fail(response, 401, 'AUTH', 'this node requires Authorization: Bearer <token>', { 'www-authenticate': 'Bearer realm="dcas"' });
      return;
    }
    if (path === '/jobs' || path.startsWith('/jobs/')) {
      await handleJobs(path, url, response);
      return;
    }
    switch (path) {
      case '/healthz':
        send(response, 200, routes.health());
        return;
      case '/readyz': {
        const readiness = routes.ready();
        send(response, readiness.ready ? 200 : 503, readiness);
        return;
      }
      case '/metrics': {
        const text = await metrics.render();
        if (dropIfNotReading(response)) return;
        response.writeHead(200, { 'content-type': metrics.contentType, 'content-length': String(Buffer.byteLength(text)), 'cache-control': 'no-store' });
        response.end(text);
        return;
      }
      case '/cluster':
        send(response, 200, routes.clusterStatus());
        return;
      case '/state': {
        const prefix = url.searchParams.get('prefix') ?? '';
        const limit = clampedLimit(url.searchParams.get('limit'), stateListDefault, stateListMax);
        send(response, 200, await routes.state(prefix, limit));
        return;
      }
      default:
        fail(response, 404, 'NOT_FOUND', `no such path: ${path}`);
    }
  }

  async function handleJobs(path: string, url: URL, response: ServerResponse): Promise<void> {
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

  function upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    // Refused before the upgrade, so a foreign page never gets a WebSocket to send a token over.
    const refusal = checkCaller(request);
    if (refusal !== undefined) {
      refuseUpgrade(socket, refusal.status, refusal.code, refusal.message);
      return;
    }
    const path = checkedPath(request.url ?? '/');
    if (path !== webSocketPath) {
      refuseUpgrade(socket, 404, 'NOT_FOUND', `WebSocket connections go to ${webSocketPath}`);
      return;
    }
    webSockets.handleUpgrade(request, socket, head);
  }

  // No limit on a whole request's time: a streamed upload of many GiB takes minutes. A request that
  // stops moving is dropped by its idle timeout instead (requestIdleMs, uploadIdleMs for uploads).
  const serverOptions = { maxHeaderSize: options.headerBytesMax ?? 16 * 1024, requestTimeout: 0, headersTimeout: 10_000 };
  const onRequest = (request: IncomingMessage, response: ServerResponse) => {
    handle(request, response).catch((error: unknown) => {
      logger.error({ err: error, path: request.url }, 'gateway: request failed');
      if (!response.headersSent) fail(response, 500, 'INTERNAL', 'the node could not answer this request');
      else response.destroy();
    });
  };
  const server: Server = options.tls === undefined ? createServer(serverOptions, onRequest) : createTlsServer({ ...serverOptions, ...options.tls }, onRequest);
  server.on('upgrade', upgrade);

  const url = () => {
    const address = server.address() as AddressInfo | null;
    return `${options.tls === undefined ? 'http' : 'https'}://${options.host}:${address?.port ?? options.port}`;
  };

  return {
    server,
    async start() {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(options.port, options.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    },
    async stop() {
      await webSockets.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    url,
    wsUrl: () => `${url().replace(/^http/, 'ws')}${webSocketPath}`,
    stats,
  };
}
