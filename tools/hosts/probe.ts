/**
 * Run inside a host's namespace (`ip netns exec`) to ask that host's own gateway what it answers while
 * the host is cut off: its view of the cluster, and whether it takes a new upload. Prints one JSON line.
 * Usage: node tools/hosts/probe.ts http://ADDRESS:PORT
 */
import { connect, DcasClientError } from '../../node/client/index.ts';

const deadlineMs = 20_000;
const server = process.argv[2] ?? '';

async function clusterView(): Promise<unknown> {
  const response = await fetch(`${server}/cluster`, { signal: AbortSignal.timeout(5_000) });
  const view = (await response.json()) as { coordinator?: unknown; members?: Array<{ name: string; status: string }> };
  return { coordinator: view.coordinator, members: view.members?.map((member) => `${member.name}:${member.status}`) };
}

async function tryUpload(): Promise<unknown> {
  const started = Date.now();
  try {
    // The first answer is what is asked for: a retry would turn the refusal into a wait for the deadline.
    const client = await connect({ server, deadlineAtMs: Date.now() + deadlineMs, retry: false });
    try {
      const uploaded = await client.upload(new Uint8Array(64 * 1024).fill(7), { fileName: 'cut-off.bin' });
      return { accepted: true, jobId: uploaded.id, elapsedMs: Date.now() - started };
    } finally {
      await client.close().catch(() => undefined);
    }
  } catch (error) {
    const code = error instanceof DcasClientError ? error.code : 'ERROR';
    return { accepted: false, code, message: (error as Error).message.split('\n')[0], elapsedMs: Date.now() - started };
  }
}

if (!/^https?:\/\//.test(server)) {
  console.error('usage: node tools/hosts/probe.ts http://ADDRESS:PORT');
  process.exit(2);
}
console.log(JSON.stringify({ cluster: await clusterView().catch((error: Error) => ({ error: error.message })), upload: await tryUpload() }));
