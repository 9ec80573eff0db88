/**
 * Which pages and names may use this gateway: the browser-facing trust boundary.
 *
 * - `Host` (every HTTP request and WebSocket upgrade) defeats DNS rebinding: a page on evil.example
 *   whose name is re-pointed at 127.0.0.1 still sends `Host: evil.example`, so only names the node
 *   knows are served. Known names: IP literals (a rebinding attack needs a DNS name, so an address
 *   is never one), `localhost`, the gateway's configured host, all with the gateway's port, and
 *   `gateway.allowedHosts` (a bare name matches any port, `name:port` only that port).
 * - `Origin` (sent by browsers only) keeps other sites' pages off the WebSocket: allowed when the
 *   page is this gateway's own (same host and port as the request's `Host`, or a loopback name with
 *   the gateway's port) or listed in `gateway.cors.origins`. No `Origin` means not a browser (CLI,
 *   curl, programs) and is allowed: the token is what guards those.
 */

export interface HostPolicyOptions {
  /** The host the gateway binds and advertises (config `gateway.host`). */
  bindHost: string;
  /** The port it listens on; read lazily because port 0 is chosen at start. */
  port: () => number;
  /** config `gateway.allowedHosts`: `name` or `name:port`. */
  allowedHosts?: readonly string[];
  /** config `gateway.cors.origins`: `scheme://host[:port]`. */
  allowedOrigins?: readonly string[];
}

export interface HostPolicy {
  /** undefined when allowed, else the reason (one line) for the refusal. */
  checkHost(host: string | undefined): string | undefined;
  checkOrigin(origin: string | undefined, host: string | undefined): string | undefined;
}

const loopbackNames = new Set(['localhost', '127.0.0.1', '[::1]']);
/** Longest Host or Origin header considered; anything longer is refused without parsing. */
const headerCharactersMax = 300;

interface HostName {
  name: string;
  /** undefined when the header named no port. */
  port: number | undefined;
}

/** `name[:port]` with `name` lowercased; IPv6 stays bracketed. undefined when malformed. */
export function parseHostHeader(text: string): HostName | undefined {
  if (text.length === 0 || text.length > headerCharactersMax) return undefined;
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(text);
  if (match === null) return undefined;
  const port = match[2] === undefined ? undefined : Number(match[2]);
  if (port !== undefined && port > 65535) return undefined;
  return { name: match[1].toLowerCase().replace(/\.$/, ''), port };
}

function isIpLiteral(name: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name.startsWith('[');
}

/** The origin as browsers serialise it: scheme://host[:port], lowercased, default port dropped. */
export function normaliseOrigin(text: string): string | undefined {
  if (text.length > headerCharactersMax) return undefined;
  try {
    const url = new URL(text);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
    return url.origin;
  } catch {
    return undefined;
  }
}

export function createHostPolicy(options: HostPolicyOptions): HostPolicy {
  const bindName = parseHostHeader(options.bindHost.includes(':') && !options.bindHost.startsWith('[') ? `[${options.bindHost}]` : options.bindHost)?.name;
  const extraHosts = (options.allowedHosts ?? []).map((entry) => parseHostHeader(entry)).filter((entry) => entry !== undefined);
  const extraOrigins = new Set((options.allowedOrigins ?? []).map((entry) => normaliseOrigin(entry)).filter((entry) => entry !== undefined));

  /** A Host without a port means the scheme's default; the gateway speaks plain HTTP. */
  const portOf = (host: HostName) => host.port ?? 80;
  const ownName = (host: HostName) => host.name === bindName || loopbackNames.has(host.name) || isIpLiteral(host.name);

  function hostAllowed(host: HostName): boolean {
    if (ownName(host) && portOf(host) === options.port()) return true;
    return extraHosts.some((entry) => entry.name === host.name && (entry.port === undefined || entry.port === portOf(host)));
  }

  return {
    checkHost(header) {
      // HTTP/1.0 clients may leave Host out; browsers always send it, so its absence is no rebinding.
      if (header === undefined) return undefined;
      const host = parseHostHeader(header);
      if (host === undefined) return `Host ${JSON.stringify(header.slice(0, 80))} is not a host name`;
      if (!hostAllowed(host)) return `Host ${host.name}:${portOf(host)} is not a name of this gateway (add it to gateway.allowedHosts)`;
      return undefined;
    },
    checkOrigin(header, hostHeader) {
      if (header === undefined) return undefined;
      const origin = normaliseOrigin(header);
      if (origin === undefined) return `Origin ${JSON.stringify(header.slice(0, 80))} is not allowed`;
      if (extraOrigins.has(origin)) return undefined;
      const url = new URL(origin);
      const page = { name: url.hostname.toLowerCase().replace(/\.$/, ''), port: url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port) };
      const requestHost = hostHeader === undefined ? undefined : parseHostHeader(hostHeader);
      const samePage = requestHost !== undefined && page.name === requestHost.name && page.port === portOf(requestHost);
      const loopbackPage = loopbackNames.has(page.name) && page.port === options.port();
      if (samePage || loopbackPage) return undefined;
      return `Origin ${origin} is not allowed to use this gateway (add it to gateway.cors.origins)`;
    },
  };
}
