/**
 * Client tokens of local clusters, found without being told. `dcas cluster up` makes a random token
 * per data folder (`client.token`, 0600) and records, for each of its gateways, where that file is;
 * a CLI command aimed at one of those gateways without `--token` or `DCAS_TOKEN` reads it from there.
 * The record lives in `$DCAS_HOME/local-clusters.json` (default `~/.dcas`), private to the user, and
 * `cluster up` removes its entries when it stops, so a token is never offered to whatever listens on
 * the port later.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, rename } from 'node:fs/promises';
import { homedir } from 'node:os';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { join } from 'node:path';
import { privateFolder, writePrivateFile } from '../runtime/index.ts';
import { CliError, exitUsage } from './output.ts';

export const clientTokenFileName = 'client.token';
/** Random bytes in a generated token: 256 bits, written as base64url. */
const tokenBytes = 32;

type Registry = Record<string, string>;

function registryPath(): string {
  return join(process.env.DCAS_HOME ?? join(homedir(), '.dcas'), 'local-clusters.json');
}

/** `http://127.0.0.1:7701`, whatever the scheme (ws, wss, https) and path the user wrote. */
function gatewayKey(url: string): string | undefined {
  try {
    const parsed = new URL(url);
    const scheme = parsed.protocol === 'wss:' || parsed.protocol === 'https:' ? 'https:' : 'http:';
    return `${scheme}//${parsed.host}`;
  } catch {
    return undefined;
  }
}

function readRegistry(): Registry {
  try {
    const parsed = JSON.parse(readFileSync(registryPath(), 'utf8')) as unknown;
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Registry) : {};
  } catch {
    return {};
  }
}

async function writeRegistry(registry: Registry): Promise<void> {
  const path = registryPath();
  await privateFolder(join(path, '..'));
  const temporary = `${path}.${process.pid}.partial`;
  await writePrivateFile(temporary, `${JSON.stringify(registry, null, 2)}\n`);
  await rename(temporary, path);
}

/** The data folder's client token, made now if it has none. */
export async function ensureClientToken(dataDir: string): Promise<{ token: string; file: string }> {
  const file = join(dataDir, clientTokenFileName);
  const existing = (await readFile(file, 'utf8').catch(() => '')).trim();
  if (existing !== '') return { token: existing, file };
  const token = randomBytes(tokenBytes).toString('base64url');
  await writePrivateFile(file, `${token}\n`);
  return { token, file };
}

/** Records that these gateways take the token in `tokenFile`; `undefined` records that they take none. */
export async function recordLocalGateways(gateways: readonly string[], tokenFile: string | undefined): Promise<void> {
  const registry = readRegistry();
  for (const gateway of gateways) {
    const key = gatewayKey(gateway);
    if (key === undefined) continue;
    if (tokenFile === undefined) delete registry[key];
    else registry[key] = tokenFile;
  }
  await writeRegistry(registry);
}

/** The token `cluster up` recorded for this gateway, if it recorded one and its file is readable. */
export function localGatewayToken(server: string): string | undefined {
  const key = gatewayKey(server);
  const file = key === undefined ? undefined : readRegistry()[key];
  if (file === undefined) return undefined;
  try {
    const token = readFileSync(file, 'utf8').trim();
    return token === '' ? undefined : token;
  } catch {
    return undefined;
  }
}

/**
 * Trusts the certificates in a PEM file (`--ca`, or `DCAS_CA`) besides the system's, for every TLS
 * connection this process makes (WebSocket and fetch alike): how a client reaches a gateway whose
 * certificate a private or self-signed authority issued.
 */
export function trustCertificateAuthority(file: string | undefined): void {
  const path = file ?? process.env.DCAS_CA;
  if (path === undefined || path === '') return;
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (error) {
    throw new CliError(`--ca ${path}: cannot read: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`, exitUsage);
  }
  const certificates = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (certificates === null) throw new CliError(`--ca ${path}: no PEM certificate in it`, exitUsage);
  setDefaultCACertificates([...getCACertificates('default'), ...certificates]);
}

/** The token for a command: `--token`, else `DCAS_TOKEN`, else what a local cluster recorded for `server`. */
export function tokenFor(server: string, optionToken: string | undefined): string | undefined {
  const given = optionToken ?? process.env.DCAS_TOKEN;
  if (given !== undefined) return given === '' ? undefined : given;
  return localGatewayToken(server);
}
