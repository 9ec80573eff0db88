/**
 * The libp2p private-network key file (the "swarm.key" format that go-ipfs and @libp2p/pnet share):
 *
 *   /key/swarm/psk/1.0.0/
 *   /base16/
 *   <64 hex digits: a 32-byte key>
 *
 * The config room only checks the shape of the file, so that a bad key is reported at the edge with
 * the file's name; the host hands the file's bytes to @libp2p/pnet unchanged.
 */

import { randomBytes } from 'node:crypto';

const header = '/key/swarm/psk/1.0.0/\n/base16/\n';
const keyBytes = 32;

/** Returns a fresh key in the pnet file format (what @libp2p/pnet's generateKey writes). */
export function formatPsk(key: Uint8Array = randomBytes(keyBytes)): string {
  if (key.length !== keyBytes) throw new RangeError(`a pnet key has ${keyBytes} bytes, got ${key.length}`);
  return header + Buffer.from(key).toString('hex');
}

/** Returns '' when the text is a valid pnet key file, otherwise what is wrong with it. */
export function pskProblem(text: string): string {
  const lines = text.replace(/\r\n/g, '\n').trim().split('\n');
  if (lines.length !== 3) return `expected 3 lines (codec path, encoding, key), got ${lines.length}`;
  if (lines[0] !== '/key/swarm/psk/1.0.0/') return `expected first line "/key/swarm/psk/1.0.0/", got "${lines[0]}"`;
  if (lines[1] !== '/base16/') return `expected second line "/base16/", got "${lines[1]}"`;
  if (!/^[0-9a-fA-F]{64}$/.test(lines[2])) return 'expected third line to be 64 hex digits (a 32-byte key)';
  return '';
}
