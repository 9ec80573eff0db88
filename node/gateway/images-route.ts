/**
 * POST /v1/images (docs/PROTOCOL.md, "Images"): one image as the request body, answered with the smaller
 * image, coded on the node's image pool (worker threads). rest.ts has already checked the token.
 *
 * Everything that needs no decoding is refused before the pool sees the image: the query (before the body
 * is read), the declared and the actual body size (while reading), then the format, the PNG's chunk
 * structure and the pixel count from its header (checkImage), so a decompression bomb is never decoded.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { checkImage, ImageError, parseImageQuality, type ImageErrorCode, type ImageMode, type ImageOptions, type ImagePool, imageModes } from '../codec/index.ts';
import { fail } from './reply.ts';

export interface ImageLimits {
  /** Largest body accepted, bytes (config gateway.images.bytesMax). */
  bytesMax: number;
  /** Largest width x height accepted (config gateway.images.pixelsMax). */
  pixelsMax: number;
  /** Image requests held at once; one more is 503 BUSY (config gateway.images.requestsMax). */
  requestsMax: number;
}

export interface ImagesRouteOptions {
  node: string;
  /** The node's image pool; without it the route answers 503 NOT_READY. */
  imagePool?: ImagePool;
  limits: ImageLimits;
  /** A body whose client sends nothing for this long is dropped. */
  bodyIdleMs: number;
  logger: Logger;
}

export interface ImagesRoute {
  /** Answers one request to /v1/images, errors included; never throws for a client's mistake. */
  handle(request: IncomingMessage, response: ServerResponse, url: URL): Promise<void>;
}

/** The config's defaults (gateway.images), for gateways started without a config (tests, tools). */
export const defaultImageLimits: ImageLimits = { bytesMax: 32 * 1024 * 1024, pixelsMax: 50_000_000, requestsMax: 8 };

export const imagesPath = '/v1/images';
/** Seconds a client is told to wait after a 503 before trying again. */
const retryAfterSeconds = '5';
const imageParameters = new Set(['mode', 'quality', 'metadata', 'dither']);
const exposedHeaders = 'x-dcas-input-bytes, x-dcas-output-bytes, x-dcas-kept';
const contentTypes = { png: 'image/png', jpeg: 'image/jpeg' } as const;

/** HTTP status for each image error: what the client sent decides it, never the node's state but a full queue. */
export const imageErrorStatus: Record<ImageErrorCode, number> = {
  NOT_IMAGE: 415,
  WRONG_IMAGE_FORMAT: 415,
  TRUNCATED_IMAGE: 422,
  CORRUPT_IMAGE: 422,
  ANIMATED_IMAGE: 422,
  TOO_MANY_PIXELS: 422,
  IMAGE_TOO_LARGE: 413,
  BAD_IMAGE_OPTIONS: 400,
  IMAGE_QUEUE_FULL: 503,
};

class ImageRequestError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const badRequest = (message: string) => new ImageRequestError(400, 'BAD_REQUEST', message);
const quoted = (text: string) => JSON.stringify(text.slice(0, 40));

function oneOf<T extends string>(name: string, text: string | null, allowed: readonly T[]): T | undefined {
  if (text === null) return undefined;
  if (!(allowed as readonly string[]).includes(text)) throw badRequest(`${name} ${quoted(text)}: expected ${allowed.join(' or ')}`);
  return text as T;
}

/** The query as image options; every mistake is a 400 before the body is read. */
export function parseImageQuery(url: URL, limits: ImageLimits): ImageOptions {
  for (const key of url.searchParams.keys()) {
    if (!imageParameters.has(key)) throw badRequest(`unknown query parameter ${quoted(key)}; expected one of ${[...imageParameters].join(', ')}`);
  }
  const mode = oneOf<ImageMode>('mode', url.searchParams.get('mode'), imageModes);
  if (mode === undefined) throw badRequest(`mode is required: one of ${imageModes.join(', ')}`);
  const qualityText = url.searchParams.get('quality');
  if (qualityText !== null && mode === 'png-lossless') throw badRequest('quality applies to png-lossy and jpeg, not png-lossless');
  const dither = oneOf('dither', url.searchParams.get('dither'), ['true', 'false'] as const);
  if (dither !== undefined && mode !== 'png-lossy') throw badRequest('dither applies to png-lossy only');
  const metadata = oneOf('metadata', url.searchParams.get('metadata'), ['strip', 'keep'] as const);
  const options: ImageOptions = { mode, keepMetadata: metadata === 'keep', inputBytesMax: limits.bytesMax, pixelsMax: limits.pixelsMax };
  if (qualityText !== null) options.quality = parseImageQuality(qualityText);
  if (dither !== undefined) options.dither = dither === 'true';
  return options;
}

/**
 * The whole body, refused with 413 as soon as it is known to exceed the limit: from Content-Length
 * before a byte is read, or while reading a chunked body.
 */
async function readBody(request: IncomingMessage, bytesMax: number): Promise<Buffer> {
  const tooLarge = (bytes: string) => new ImageRequestError(413, 'IMAGE_TOO_LARGE', `image of ${bytes} bytes: above the limit of ${bytesMax} bytes (gateway.images.bytesMax)`);
  const declared = request.headers['content-length'];
  if (declared !== undefined && Number(declared) > bytesMax) throw tooLarge(declared);
  const pieces: Buffer[] = [];
  let received = 0;
  for await (const piece of request) {
    received += (piece as Buffer).length;
    if (received > bytesMax) throw tooLarge(`more than ${bytesMax}`);
    pieces.push(piece as Buffer);
  }
  if (received === 0) throw badRequest('the request body is empty: send the image as the body (curl --data-binary @photo.png)');
  return Buffer.concat(pieces, received);
}

export function createImagesRoute(options: ImagesRouteOptions): ImagesRoute {
  const { node, imagePool, limits, logger } = options;
  let requests = 0;

  async function optimize(request: IncomingMessage, response: ServerResponse, url: URL): Promise<void> {
    if (request.method !== 'POST') {
      fail(response, 405, 'METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${imagesPath}`, { allow: 'POST' });
      return;
    }
    const imageOptions = parseImageQuery(url, limits);
    if (imagePool === undefined) throw new ImageRequestError(503, 'NOT_READY', `node ${node} has no image pool`);
    if (requests >= limits.requestsMax) throw new ImageRequestError(503, 'BUSY', `node ${node} is coding ${limits.requestsMax} images (gateway.images.requestsMax); try again later`);
    requests++;
    try {
      request.setTimeout(options.bodyIdleMs, () => request.destroy(new Error(`no bytes for ${options.bodyIdleMs} ms`)));
      const body = await readBody(request, limits.bytesMax);
      // A bomb or a non-image is refused here, on the gateway's thread, without waiting for a pool thread.
      checkImage(body, imageOptions);
      // The client waits while its image is coded: no bytes move, which is not idleness.
      request.setTimeout(0);
      const result = await imagePool.optimize(body, imageOptions);
      if (response.destroyed) return;
      const exposed = response.getHeader('access-control-expose-headers');
      if (exposed !== undefined) response.setHeader('access-control-expose-headers', `${String(exposed)}, ${exposedHeaders}`);
      response.writeHead(200, {
        'content-type': contentTypes[result.format],
        'content-length': String(result.bytes.length),
        'cache-control': 'no-store',
        'x-dcas-input-bytes': String(result.inputBytes),
        'x-dcas-output-bytes': String(result.outputBytes),
        'x-dcas-kept': String(result.kept),
      });
      response.end(result.bytes);
    } finally {
      requests--;
    }
  }

  return {
    async handle(request, response, url) {
      try {
        await optimize(request, response, url);
      } catch (error) {
        const known = error instanceof ImageRequestError ? error : error instanceof ImageError ? new ImageRequestError(imageErrorStatus[error.code], error.code, error.message) : undefined;
        if (known === undefined && request.destroyed) {
          logger.info({ reason: (error as Error).message }, 'images: the client went away before its image was read');
          response.destroy();
          return;
        }
        if (known === undefined) throw error;
        if (response.headersSent || response.destroyed) return;
        // The unread rest of a refused body is not waited for: the connection closes after the answer.
        if (!request.complete) response.setHeader('connection', 'close');
        fail(response, known.status, known.code, known.message, known.status === 503 ? { 'retry-after': retryAfterSeconds } : {});
      }
    },
  };
}
