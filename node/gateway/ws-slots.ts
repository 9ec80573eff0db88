/**
 * Connection admission. Sockets not yet past hello ("pending") and welcomed ones are counted apart, so
 * idle sockets can never take the slots of clients that proved themselves (docs/PROTOCOL.md, Limits).
 */
import type { Logger } from 'pino';
import type { SocketAdmission } from './ws-connection.ts';
import type { GatewayLimits } from './ws-limits.ts';
import { assert } from './ws-parts.ts';

export class ConnectionSlots {
  readonly #node: string;
  readonly #limits: GatewayLimits;
  /** Whether connections per address are limited: only for anonymous clients (a node without a token). */
  readonly #perAddress: boolean;
  readonly #logger: Logger;
  readonly #pendingByAddress = new Map<string, SocketAdmission[]>();
  readonly #welcomedByAddress = new Map<string, number>();
  #pendingCount = 0;
  #welcomedCount = 0;
  #stopping = false;

  constructor(node: string, limits: GatewayLimits, perAddress: boolean, logger: Logger) {
    this.#node = node;
    this.#limits = limits;
    this.#perAddress = perAddress;
    this.#logger = logger;
  }

  get pendingCount(): number {
    return this.#pendingCount;
  }

  /** The node is stopping: every new socket is refused. */
  stop(): void {
    this.#stopping = true;
  }

  /** undefined when the socket may proceed, else why it is refused (HTTP 503). */
  admit(admission: SocketAdmission): string | undefined {
    const node = this.#node;
    const limits = this.#limits;
    if (this.#stopping) return `node ${node} is stopping`;
    if (this.#welcomedCount >= limits.connectionsMax) return `node ${node} has ${limits.connectionsMax} connections open; try another node or later`;
    const fromAddress = this.#pendingByAddress.get(admission.address) ?? [];
    if (fromAddress.length >= limits.pendingConnectionsPerAddressMax) {
      // The oldest has had the longest to say hello; a live client says it within a round trip.
      const oldest = fromAddress[0];
      this.#logger.info({ remote: admission.address }, 'gateway: too many connections without hello from one address; closing the oldest');
      this.release(oldest);
      oldest.socket.destroy();
    } else if (this.#pendingCount >= limits.pendingConnectionsMax) {
      return `node ${node} has ${limits.pendingConnectionsMax} connections waiting for hello; try again later`;
    }
    fromAddress.push(admission);
    this.#pendingByAddress.set(admission.address, fromAddress);
    this.#pendingCount++;
    return undefined;
  }

  release(admission: SocketAdmission): void {
    if (admission.released) return;
    admission.released = true;
    if (admission.welcomed) {
      this.#welcomedCount--;
      const left = (this.#welcomedByAddress.get(admission.address) ?? 1) - 1;
      if (left === 0) this.#welcomedByAddress.delete(admission.address);
      else this.#welcomedByAddress.set(admission.address, left);
      return;
    }
    this.#forgetPending(admission);
  }

  /** At hello: the socket moves from the pending count to the welcomed one, or gets why not. */
  welcome(admission: SocketAdmission): string | undefined {
    const node = this.#node;
    const limits = this.#limits;
    if (admission.released) return `node ${node} closed this connection`;
    if (this.#welcomedCount >= limits.connectionsMax) return `node ${node} has ${limits.connectionsMax} connections open; try another node or later`;
    const fromAddress = this.#welcomedByAddress.get(admission.address) ?? 0;
    if (this.#perAddress && fromAddress >= limits.connectionsPerAddressMax) {
      return `node ${node} has ${limits.connectionsPerAddressMax} connections open from ${admission.address}; close some first`;
    }
    this.#forgetPending(admission);
    admission.welcomed = true;
    this.#welcomedCount++;
    this.#welcomedByAddress.set(admission.address, fromAddress + 1);
    return undefined;
  }

  #forgetPending(admission: SocketAdmission): void {
    const fromAddress = this.#pendingByAddress.get(admission.address) ?? [];
    const at = fromAddress.indexOf(admission);
    assert(at >= 0, `a pending connection from ${admission.address} is not counted`);
    fromAddress.splice(at, 1);
    if (fromAddress.length === 0) this.#pendingByAddress.delete(admission.address);
    this.#pendingCount--;
  }
}
