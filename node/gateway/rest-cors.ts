/** CORS for the REST API: pages on the origins in `gateway.cors.origins` may call /v1 from a browser. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { normaliseOrigin } from './origin.ts';

const corsMethods = 'GET, HEAD, POST, PUT, DELETE, OPTIONS';
const corsHeaders = 'authorization, content-type, last-event-id, range';
const corsExposed = 'location, etag, content-length, content-range, content-disposition, accept-ranges, retry-after';

export class RestCors {
  readonly #origins: ReadonlySet<string>;

  constructor(allowedOrigins: readonly string[] = []) {
    this.#origins = new Set(allowedOrigins.map((entry) => normaliseOrigin(entry)).filter((entry) => entry !== undefined));
  }

  /** CORS headers go on every answer to a listed origin, errors included, so the page can read them. */
  apply(request: IncomingMessage, response: ServerResponse): boolean {
    const origin = request.headers.origin === undefined ? undefined : normaliseOrigin(request.headers.origin);
    if (origin === undefined || !this.#origins.has(origin)) return false;
    response.setHeader('access-control-allow-origin', origin);
    response.setHeader('vary', 'Origin');
    response.setHeader('access-control-expose-headers', corsExposed);
    return true;
  }

  /** OPTIONS on any /v1 path: 204, with what a listed origin may send when `corsAllowed`. */
  preflight(response: ServerResponse, corsAllowed: boolean): void {
    if (corsAllowed) {
      response.setHeader('access-control-allow-methods', corsMethods);
      response.setHeader('access-control-allow-headers', corsHeaders);
      response.setHeader('access-control-max-age', '600');
    }
    response.writeHead(204, { allow: corsMethods });
    response.end();
  }
}
