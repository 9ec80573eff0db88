/**
 * The gateway's HTTP side: health, readiness, cluster status and a read of the replicated state.
 * Every response is JSON; unknown paths get 404, other methods 405, all with a one-line error.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';

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
  port: number;
  routes: GatewayRoutes;
  logger: Logger;
  /** Header size limit for requests. */
  headerBytesMax?: number;
}

export interface Gateway {
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly server: Server;
  url(): string;
}

function send(response: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  response.end(text);
}

function fail(response: ServerResponse, status: number, code: string, message: string): void {
  send(response, status, { error: { code, message } });
}

export function createGateway(options: GatewayOptions): Gateway {
  const { routes, logger } = options;

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://gateway');
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      fail(response, 405, 'METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${url.pathname}`);
      return;
    }
    switch (url.pathname) {
      case '/healthz':
        send(response, 200, routes.health());
        return;
      case '/readyz': {
        const readiness = routes.ready();
        send(response, readiness.ready ? 200 : 503, readiness);
        return;
      }
      case '/cluster':
        send(response, 200, routes.clusterStatus());
        return;
      case '/state': {
        const prefix = url.searchParams.get('prefix') ?? '';
        const limit = Math.min(Number(url.searchParams.get('limit') ?? 1000) || 1000, 10_000);
        send(response, 200, await routes.state(prefix, limit));
        return;
      }
      default:
        fail(response, 404, 'NOT_FOUND', `no such path: ${url.pathname}`);
    }
  }

  const server = createServer({ maxHeaderSize: options.headerBytesMax ?? 16 * 1024, requestTimeout: 30_000 }, (request, response) => {
    handle(request, response).catch((error: unknown) => {
      logger.error({ err: error, path: request.url }, 'gateway: request failed');
      if (!response.headersSent) fail(response, 500, 'INTERNAL', 'the node could not answer this request');
      else response.destroy();
    });
  });

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
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    url: () => `http://${options.host}:${options.port}`,
  };
}
