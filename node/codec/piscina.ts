/**
 * piscina, the thread pool of nodes' codec and image threads, loaded when the first pool is made: the
 * file commands import this room but never make a pool on their usual path, and loading piscina cost
 * each of them about 10 ms of start-up before its own threads could start.
 */
import { createRequire } from 'node:module';
import type * as PiscinaModule from 'piscina';

let loaded: typeof PiscinaModule.Piscina | undefined;

export function piscinaClass(): typeof PiscinaModule.Piscina {
  loaded ??= (createRequire(import.meta.url)('piscina') as typeof PiscinaModule).Piscina;
  return loaded;
}
