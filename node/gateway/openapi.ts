/**
 * The OpenAPI 3.1 description of the REST API (rest.ts), served at /v1/openapi.json. Kept beside the
 * routes it describes; test/http-api.test.ts validates it and calls every path it lists.
 */

const error = { $ref: '#/components/responses/Error' };
const jobId = { name: 'id', in: 'path', required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } };
const json = (schema: unknown) => ({ 'application/json': { schema } });
const job = { $ref: '#/components/schemas/Job' };
const retryAfter = { 'Retry-After': { description: 'Seconds to wait before trying again', schema: { type: 'string' } } };

const uploadParameters = [
  { name: 'mode', in: 'query', schema: { type: 'string', enum: ['compress', 'decompress'], default: 'compress' }, description: 'compress a file into a .dcz, or decompress an uploaded .dcz' },
  { name: 'chunkSize', in: 'query', schema: { type: 'integer' }, description: 'original bytes per chunk (mode compress); the node checks its bounds' },
  { name: 'codec', in: 'query', schema: { type: 'string', pattern: '^[a-z0-9]+(:[0-9]{1,2})?$', default: 'huffman' }, description: 'NAME[:LEVEL] from the codec registry (huffman, store, zstd, gzip, brotli, xz, bzip2), e.g. zstd:9; mode compress' },
  { name: 'format', in: 'query', schema: { type: 'string', enum: ['dcz', 'zst', 'gz', 'xz', 'bz2'], default: 'dcz' }, description: 'the compressed object: a .dcz (any codec) or a standard format that needs, and implies, its codec (zst: zstd, gz: gzip, xz: xz, bz2: bzip2)' },
  { name: 'wait', in: 'query', schema: { type: 'boolean', default: false }, description: 'answer only once the job completed or failed' },
];

const uploadResponses = {
  '201': { description: 'The job, once its upload is recorded (or ended, with wait=true)', headers: { Location: { schema: { type: 'string' } } }, content: json(job) },
  '400': error,
  '401': error,
  '413': error,
  '429': { description: 'This client address has its share of uploads running or waiting (nodes without a token)', headers: retryAfter, content: json({ $ref: '#/components/schemas/Error' }) },
  '503': { description: 'Busy (the admission queue is full or the upload waited too long in it) or not ready', headers: retryAfter, content: json({ $ref: '#/components/schemas/Error' }) },
  '507': error,
};

const imageBody = (type: string) => ({ [type]: { schema: { type: 'string', contentMediaType: type } } });
const imageHeader = (description: string, type: string) => ({ description, schema: { type } });

const imagesOperation = {
  summary: 'Optimise one image, sent as the body (PNG or JPEG, recognised by its bytes; the Content-Type sent is ignored)',
  parameters: [
    { name: 'mode', in: 'query', required: true, schema: { type: 'string', enum: ['png-lossless', 'png-lossy', 'jpeg'] }, description: 'png-lossless: pixel-identical PNG; png-lossy: palette quantisation (pngquant-like); jpeg: mozjpeg re-encoding of a JPEG or PNG' },
    { name: 'quality', in: 'query', schema: { type: 'string', pattern: '^[0-9]{1,3}(-[0-9]{1,3})?$' }, description: 'png-lossy: MIN-MAX as pngquant (default 60-80; one number N is 0-N); jpeg: the quality is MAX (default 80). Not for png-lossless' },
    { name: 'metadata', in: 'query', schema: { type: 'string', enum: ['strip', 'keep'], default: 'strip' }, description: 'keep or strip EXIF, ICC profiles and text chunks' },
    { name: 'dither', in: 'query', schema: { type: 'boolean', default: true }, description: 'png-lossy: Floyd-Steinberg dithering' },
  ],
  requestBody: { required: true, content: imageBody('application/octet-stream') },
  responses: {
    '200': {
      description: 'The smaller image, or the input unchanged when the output was not smaller (X-Dcas-Kept: true)',
      headers: {
        'X-Dcas-Input-Bytes': imageHeader('bytes received', 'integer'),
        'X-Dcas-Output-Bytes': imageHeader('bytes answered', 'integer'),
        'X-Dcas-Kept': imageHeader('true when the input came back unchanged', 'boolean'),
      },
      content: { ...imageBody('image/png'), ...imageBody('image/jpeg') },
    },
    '400': error,
    '401': error,
    '405': error,
    '413': error,
    '415': error,
    '422': error,
    '503': { description: 'Busy (gateway.images.requestsMax or the image queue is full) or no image pool', headers: retryAfter, content: json({ $ref: '#/components/schemas/Error' }) },
  },
};

const downloadOperation = (what: string) => ({
  summary: `Download the ${what}, whole or one byte range`,
  parameters: [jobId, { name: 'Range', in: 'header', schema: { type: 'string' }, description: 'one range: bytes=FIRST-LAST, bytes=FIRST- or bytes=-SUFFIX' }],
  responses: {
    '200': { description: `The ${what}`, headers: { ETag: { schema: { type: 'string' } }, 'Content-Disposition': { schema: { type: 'string' } } }, content: { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } } },
    '206': { description: 'The requested range', headers: { 'Content-Range': { schema: { type: 'string' } } }, content: { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } } },
    '401': error,
    '404': error,
    '409': error,
    '416': error,
  },
});

export const openApiDocument = {
  openapi: '3.1.0',
  info: { title: 'DCaS HTTP API', version: '1.0.0', description: 'Upload, follow and download compression jobs on a DCaS cluster, and optimise single images. See docs/PROTOCOL.md.' },
  servers: [{ url: '/' }],
  security: [{ bearer: [] }, {}],
  paths: {
    '/v1/openapi.json': { get: { summary: 'This document', security: [], responses: { '200': { description: 'OpenAPI 3.1', content: json({ type: 'object' }) } } } },
    '/v1/cluster': { get: { summary: 'Members, roles, coordinator and term as this node sees them', responses: { '200': { description: 'Cluster status', content: json({ type: 'object' }) }, '401': error } } },
    '/v1/jobs': {
      get: {
        summary: 'Jobs, newest first',
        parameters: [{ name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000 } }],
        responses: { '200': { description: 'Jobs', content: json({ type: 'object', properties: { jobs: { type: 'array', items: job } }, required: ['jobs'] }) }, '401': error },
      },
      post: {
        summary: 'Upload a file as the request body (chunked or with Content-Length)',
        parameters: [{ name: 'name', in: 'query', schema: { type: 'string' }, description: 'the file name (default "upload")' }, ...uploadParameters],
        requestBody: { required: true, content: { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } } },
        responses: uploadResponses,
      },
    },
    '/v1/jobs/{id}': {
      get: { summary: 'One job', parameters: [jobId], responses: { '200': { description: 'The job', content: json(job) }, '400': error, '401': error, '404': error } },
      delete: {
        summary: 'Delete a job and its blobs; a job being coded or merged is cancelled first (no more chunks assigned, no merge)',
        parameters: [jobId],
        responses: {
          '200': {
            description: 'Deleted: the job is gone (later reads are 404)',
            content: json({ type: 'object', required: ['id', 'state', 'cancelled'], properties: { id: { type: 'string' }, state: { type: 'string', description: 'the state it was in' }, cancelled: { type: 'boolean', description: 'true when it was still being coded or merged' } } }),
          },
          '400': error,
          '401': error,
          '404': error,
          '409': { description: 'The job is still uploading: abort the upload first', content: json({ $ref: '#/components/schemas/Error' }) },
        },
      },
      put: {
        summary: 'Upload a file named by the last path segment (what curl -T FILE URL/v1/jobs/ sends)',
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' }, description: 'here: the file name' }, ...uploadParameters],
        requestBody: { required: true, content: { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } } },
        responses: uploadResponses,
      },
    },
    '/v1/jobs/{id}/events': {
      get: {
        summary: 'Server-Sent Events: state and progress of one job until it ends',
        parameters: [jobId, { name: 'Last-Event-ID', in: 'header', schema: { type: 'string' }, description: 'resume after this event' }],
        responses: { '200': { description: 'event: state | progress; data: the job', content: { 'text/event-stream': { schema: { type: 'string' } } } }, '401': error, '404': error, '503': error },
      },
    },
    '/v1/images': { post: imagesOperation },
    '/v1/jobs/{id}/original': { get: downloadOperation('original file') },
    '/v1/jobs/{id}/compressed': { get: downloadOperation('compressed object (.dcz, or the job\'s standard format)') },
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    responses: { Error: { description: 'An error', content: json({ $ref: '#/components/schemas/Error' }) } },
    schemas: {
      Error: {
        type: 'object',
        required: ['error'],
        properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' } } } },
      },
      Job: {
        type: 'object',
        required: ['id', 'state', 'mode', 'fileName', 'chunks', 'chunksDone', 'chunkNodes'],
        properties: {
          id: { type: 'string' },
          state: { type: 'string', enum: ['pending', 'uploading', 'processing', 'merging', 'completed', 'failed'] },
          mode: { type: 'string', enum: ['compress', 'decompress'] },
          fileName: { type: 'string' },
          originalSize: { type: ['integer', 'null'] },
          compressedSize: { type: ['integer', 'null'] },
          ratio: { type: ['number', 'null'] },
          sha256: { type: ['string', 'null'] },
          mime: { type: ['string', 'null'] },
          codec: { type: 'string', description: 'the codec registry name (jobs from before codecs read as huffman)' },
          level: { type: 'integer', description: 'the codec level; 0 for codecs without levels' },
          format: { type: 'string', enum: ['dcz', 'zst', 'gz', 'xz', 'bz2'] },
          lines: { type: ['integer', 'null'], description: 'newlines in the original (wc -l), once a compress job completed' },
          words: { type: ['integer', 'null'], description: 'words in the original (wc -w, C locale), once a compress job completed' },
          chunkSize: { type: 'integer' },
          chunks: { type: 'integer' },
          chunksDone: { type: 'integer' },
          uploadedBytes: { type: 'integer' },
          chunkNodes: { type: 'object', additionalProperties: { type: 'integer' }, description: 'which node coded how many chunks' },
          timestamps: { type: 'object', additionalProperties: { type: 'string' } },
          error: { type: ['string', 'null'] },
          gateway: { type: 'string' },
        },
      },
    },
  },
} as const;
