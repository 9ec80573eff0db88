/**
 * The door of the GCS server room: a GCS JSON-API server on loopback, for tests, CI and benchmarks
 * of the GCS blob store (no emulator, Java or Docker needed).
 */

export { composeSourcesMax, startGcsServer } from './server.ts';
export type { GcsFaults, GcsServer, GcsServerOptions, GcsServerStats, RequestFacts, RequestFilter } from './server.ts';
export type { ObjectResource } from './objects.ts';
