/**
 * Keeps @libp2p/pnet's cipher from growing its WebAssembly memory.
 *
 * pnet encrypts with xsalsa20 1.2.0, whose WASM build shares one memory among all ciphers in the
 * process, and each cipher caches its own view of it. A message larger than the free memory (about
 * 640 KiB) grows the memory, which detaches every other cipher's view; each of those then grows the
 * memory again on its next message, by that message's size. Under steady traffic the memory grows
 * without bound until `WebAssembly.Memory.grow(): Maximum memory size exceeded` kills the node (seen
 * here when a peer returned 4 MiB decoded chunks). Upstream fixed it by encrypting in bounded
 * windows (libp2p/js-libp2p#3585, not yet released as of @libp2p/pnet 3.0.27); this does the same
 * from outside: xsalsa20 is a stream cipher, so updating in consecutive windows gives the same bytes.
 */
import { createRequire } from 'node:module';

interface XSalsa20Cipher {
  update(input: Uint8Array, output?: Uint8Array): Uint8Array;
}

const windowBytes = 64 * 1024;
const require = createRequire(import.meta.url);
const XSalsa20 = require('xsalsa20') as { prototype: XSalsa20Cipher & { __dcasWindowed?: boolean } };

if (XSalsa20.prototype.__dcasWindowed !== true) {
  const update = XSalsa20.prototype.update;
  XSalsa20.prototype.update = function windowedUpdate(this: XSalsa20Cipher, input: Uint8Array, output?: Uint8Array): Uint8Array {
    if (input.length <= windowBytes) return update.call(this, input, output);
    const out = output ?? new Uint8Array(input.length);
    for (let at = 0; at < input.length; at += windowBytes) {
      const end = Math.min(at + windowBytes, input.length);
      update.call(this, input.subarray(at, end), out.subarray(at, end));
    }
    return out;
  };
  XSalsa20.prototype.__dcasWindowed = true;
}

export const xsalsa20WindowBytes = windowBytes;
