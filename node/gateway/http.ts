/**
 * A node's gateway: one HTTP server that answers health, readiness, cluster and job reads, Prometheus
 * metrics, the REST API under /v1 (rest.ts), the web console at / (node/console), and upgrades /ws to the
 * WebSocket protocol (ws.ts). Every HTTP answer but /metrics is JSON;
 * errors are `{"error":{"code","message"}}` with one line of message. This file checks every request's
 * Host, Origin and path, then hands it on; the routes outside /v1 are in http-routes.ts.
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
import type { JobService } from '../jobs/index.ts';
import { createUploadAdmission, type UploadAdmission } from './admission.ts';
import { bearerToken, createTokenCheck } from './auth.ts';
import { createNodeRoutes, type GatewayRoutes, type NodeRoutes } from './http-routes.ts';
import { createGatewayMetrics, type GatewayMetrics, type GatewayStats, type RaftStatus } from './metrics.ts';
import { webSocketPath } from '../protocol/index.ts';
import { createHostPolicy, type HostPolicy } from './origin.ts';
import { createImagesRoute, defaultImageLimits, type ImageLimits } from './images-route.ts';
import { createRestApi, restPrefix, type RestApi } from './rest.ts';
import { consoleAssets, consoleContentSecurityPolicy } from '../console/index.ts';
import { fail } from './reply.ts';
import { createWebSocketGateway, defaultGatewayLimits, refuseUpgrade, type GatewayLimits, type WebSocketGateway } from './ws.ts';

export { clampedLimit, type GatewayRoutes } from './http-routes.ts';

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

/** A request (or the response it waits on) that moves no byte for this long has its socket closed. */
const requestIdleMs = 30_000;

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

/** The web console's page or script at `path`; false when there is none. */
function answerConsoleAsset(request: IncomingMessage, response: ServerResponse, path: string): boolean {
  const asset = consoleAssets.get(path);
  if (asset === undefined) return false;
  // The console is open: it holds no data, and asks for the token itself when the API needs one.
  response.writeHead(200, { 'content-type': asset.contentType, 'content-length': String(asset.body.length), 'cache-control': 'no-cache', 'content-security-policy': consoleContentSecurityPolicy, 'x-content-type-options': 'nosniff' });
  response.end(request.method === 'HEAD' ? undefined : asset.body);
  return true;
}

/** The gateway's parts, built once from its options; the server is the one they all answer on. */
class HttpGateway implements Gateway {
  readonly server: Server;
  readonly #options: GatewayOptions;
  readonly #admission: UploadAdmission;
  readonly #webSockets: WebSocketGateway;
  readonly #metrics: GatewayMetrics;
  readonly #hostPolicy: HostPolicy;
  readonly #restApi: RestApi;
  readonly #nodeRoutes: NodeRoutes;

  constructor(options: GatewayOptions) {
    const { logger, jobs } = options;
    const node = options.node ?? 'node';
    const limits: GatewayLimits = { ...defaultGatewayLimits, ...options.limits };
    const tokenCheck = createTokenCheck(options.token);
    const authorized = (request: IncomingMessage) => !tokenCheck.enabled || tokenCheck.matches(bearerToken(request.headers.authorization));
    this.#options = options;
    this.#admission = createUploadAdmission(node, limits);
    this.#webSockets = createWebSocketGateway({ node, jobs, admission: this.#admission, tokenCheck, limits, logger, metrics: () => this.#metrics });
    this.#metrics = createGatewayMetrics({ jobs, raftStatus: options.raftStatus, stats: () => this.stats() });
    this.#hostPolicy = createHostPolicy({ bindHost: options.host, port: () => this.#port(), allowedHosts: options.allowedHosts, allowedOrigins: options.allowedOrigins });
    this.#restApi = createRestApi({
      node,
      jobs,
      admission: this.#admission,
      uploadsPerAddress: !tokenCheck.enabled,
      clusterStatus: () => options.routes.clusterStatus(),
      authorized,
      allowedOrigins: options.allowedOrigins,
      uploadIdleMs: limits.uploadIdleMs,
      heartbeatMs: limits.heartbeatMs,
      logger,
      images: createImagesRoute({ node, imagePool: options.imagePool, limits: { ...defaultImageLimits, ...options.imageLimits }, bodyIdleMs: limits.uploadIdleMs, logger }),
    });
    this.#nodeRoutes = createNodeRoutes({ node, jobs, routes: options.routes, metrics: this.#metrics, authorized });
    this.server = this.#createServer();
  }

  async start(): Promise<void> {
    const server = this.server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#options.port, this.#options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  async stop(): Promise<void> {
    await this.#webSockets.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  url(): string {
    return `${this.#options.tls === undefined ? 'http' : 'https'}://${this.#options.host}:${this.#port()}`;
  }

  wsUrl(): string {
    return `${this.url().replace(/^http/, 'ws')}${webSocketPath}`;
  }

  stats(): GatewayStats & { uploadBufferedBytesPeak: number } {
    return { ...this.#webSockets.stats(), ...this.#admission.stats() };
  }

  #port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? this.#options.port;
  }

  #createServer(): Server {
    // No limit on a whole request's time: a streamed upload of many GiB takes minutes. A request that
    // stops moving is dropped by its idle timeout instead (requestIdleMs, uploadIdleMs for uploads).
    const serverOptions = { maxHeaderSize: this.#options.headerBytesMax ?? 16 * 1024, requestTimeout: 0, headersTimeout: 10_000 };
    const onRequest = (request: IncomingMessage, response: ServerResponse) => {
      this.#handle(request, response).catch((error: unknown) => {
        this.#options.logger.error({ err: error, path: request.url }, 'gateway: request failed');
        if (!response.headersSent) fail(response, 500, 'INTERNAL', 'the node could not answer this request');
        else response.destroy();
      });
    };
    const tls = this.#options.tls;
    const server: Server = tls === undefined ? createServer(serverOptions, onRequest) : createTlsServer({ ...serverOptions, ...tls }, onRequest);
    server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(request, socket, head));
    return server;
  }

  /** undefined when the request may go on, else the status and reason it is refused with. */
  #checkCaller(request: IncomingMessage): { status: number; code: string; message: string } | undefined {
    const badHost = this.#hostPolicy.checkHost(request.headers.host);
    if (badHost !== undefined) return { status: 421, code: 'MISDIRECTED', message: badHost };
    const badOrigin = this.#hostPolicy.checkOrigin(request.headers.origin, request.headers.host);
    if (badOrigin !== undefined) return { status: 403, code: 'FORBIDDEN_ORIGIN', message: badOrigin };
    return undefined;
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    // An idle socket is dropped; the REST API lengthens this for uploads and lifts it while ?wait=true waits.
    request.setTimeout(requestIdleMs);
    const refusal = this.#checkCaller(request);
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
      await this.#restApi.handle(request, response, path, url);
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      fail(response, 405, 'METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${path}`, { allow: 'GET, HEAD' });
      return;
    }
    if (answerConsoleAsset(request, response, path)) return;
    await this.#nodeRoutes.handle(request, response, path, url);
  }

  #upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    // Refused before the upgrade, so a foreign page never gets a WebSocket to send a token over.
    const refusal = this.#checkCaller(request);
    if (refusal !== undefined) {
      refuseUpgrade(socket, refusal.status, refusal.code, refusal.message);
      return;
    }
    const path = checkedPath(request.url ?? '/');
    if (path !== webSocketPath) {
      refuseUpgrade(socket, 404, 'NOT_FOUND', `WebSocket connections go to ${webSocketPath}`);
      return;
    }
    this.#webSockets.handleUpgrade(request, socket, head);
  }
}

export function createGateway(options: GatewayOptions): Gateway {
  return new HttpGateway(options);
}
