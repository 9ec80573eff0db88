/**
 * The gateway's HTTP side: job reads, metrics, bearer-token auth on everything but probes and metrics,
 * and refusal of path traversal and malformed job ids. A real server; the jobs room is the test double.
 */
import { request } from 'node:http';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connect } from 'node:net';
import { startTestGateway, type TestGateway } from './support/gateway.ts';

const token = 's3cret-token';
let node: TestGateway;
let jobId: string;

test.before(async () => {
  node = await startTestGateway({ token });
  const session = await node.jobs.startUpload({ fileName: 'report.csv', mode: 'compress' });
  await session.write(Buffer.from('a,b\n1,2\n'));
  await session.finish();
  node.jobs.complete(session.jobId);
  jobId = session.jobId;
});

test.after(async () => {
  await node.stop();
});

/** A GET with the path sent exactly as given (fetch would normalise "/a/../b" before sending). */
function rawGet(path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; body: any; headers: Record<string, unknown> }> {
  const { hostname, port } = new URL(node.url);
  return new Promise((resolve, reject) => {
    const outgoing = request({ host: hostname, port, path, method, headers }, (response) => {
      let text = '';
      response.on('data', (data) => (text += data));
      response.on('end', () => {
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // Not JSON (metrics): keep the text.
        }
        resolve({ status: response.statusCode!, body, headers: response.headers });
      });
    });
    outgoing.on('error', reject);
    outgoing.end();
  });
}

const bearer = { authorization: `Bearer ${token}` };

test('GET /jobs/:id answers the JobView and GET /jobs the list, with the bearer token', async () => {
  const one = await rawGet(`/jobs/${jobId}`, bearer);
  assert.is(one.status, 200);
  assert.equal([one.body.id, one.body.state, one.body.fileName, one.body.originalSize], [jobId, 'completed', 'report.csv', 8]);
  const list = await rawGet('/jobs?limit=5', bearer);
  assert.is(list.status, 200);
  assert.ok(list.body.jobs.some((job: { id: string }) => job.id === jobId));
});

test('an unknown job is 404 with a JSON error', async () => {
  const missing = await rawGet('/jobs/nope', bearer);
  assert.is(missing.status, 404);
  assert.equal(missing.body.error.code, 'NOT_FOUND');
  assert.match(missing.body.error.message, /nope/);
});

test('/jobs*, /state and /cluster need the token (401 JSON with WWW-Authenticate); probes and /metrics stay open', async () => {
  for (const path of ['/jobs', `/jobs/${jobId}`, '/state', '/cluster']) {
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: `Basic ${token}` }] as Array<Record<string, string>>) {
      const refused = await rawGet(path, headers);
      assert.is(refused.status, 401, `${path} ${JSON.stringify(headers)}`);
      assert.is(refused.body.error.code, 'AUTH');
      assert.match(String(refused.headers['www-authenticate']), /^Bearer/);
    }
    assert.is((await rawGet(path, bearer)).status, 200, path);
  }
  for (const path of ['/healthz', '/readyz', '/metrics']) assert.is((await rawGet(path)).status, 200, path);
});

test('path traversal and malformed job ids are refused with 400 before any lookup', async () => {
  for (const path of ['/jobs/../state', '/jobs/%2e%2e/state', '/jobs/..%2fstate', '/jobs/a%2Fb', '/jobs/./x', '/jobs//x', '/jobs/a\\b', '/jobs/%00']) {
    const refused = await rawGet(path, bearer);
    assert.is(refused.status, 400, path);
    assert.is(refused.body.error.code, 'BAD_REQUEST', path);
  }
  for (const path of ['/jobs/has.dot', '/jobs/' + 'x'.repeat(65), '/jobs/sp%20ace', '/jobs/']) {
    const refused = await rawGet(path, bearer);
    assert.is(refused.status, 400, path);
    assert.match(refused.body.error.message, /not a job id/, path);
  }
});

test('/metrics serves Prometheus text: jobs by state, kernel, queue, in-flight, Raft term and role, gateway and process metrics', async () => {
  const metrics = await rawGet('/metrics');
  assert.match(String(metrics.headers['content-type']), /text\/plain/);
  const text = metrics.body as string;
  for (const line of [
    /^dcas_jobs\{state="completed"\} [1-9]/m,
    /^dcas_jobs\{state="failed"\} 0/m,
    /^dcas_chunks_coded_total \d+/m,
    /^dcas_job_bytes_in_total \d+/m,
    /^dcas_kernel_megabytes_per_second 123.5/m,
    /^dcas_queue_depth 2/m,
    /^dcas_chunks_in_flight 1/m,
    /^dcas_raft_term 7/m,
    /^dcas_raft_role\{role="leader"\} 1/m,
    /^dcas_gateway_connections \d+/m,
    /^dcas_gateway_upload_buffered_bytes 0/m,
    /^process_cpu_user_seconds_total /m,
    /^nodejs_heap_size_used_bytes /m,
  ]) {
    assert.match(text, line);
  }
});

test('other methods get 405, unknown paths 404, both JSON', async () => {
  const post = await rawGet('/jobs', bearer, 'POST');
  assert.is(post.status, 405);
  assert.is(post.body.error.code, 'METHOD_NOT_ALLOWED');
  const unknown = await rawGet('/nothing', bearer);
  assert.is(unknown.status, 404);
  assert.is(unknown.body.error.code, 'NOT_FOUND');
});

test('an event stream of an ended job gives its place back: 300 in a row (the node holds 256 at once) all answer 200 with the job', async () => {
  for (let index = 0; index < 300; index++) {
    const response = await fetch(`${node.url}/v1/jobs/${jobId}/events`, { headers: bearer, signal: AbortSignal.timeout(30_000) });
    assert.is(response.status, 200, `stream ${index + 1}: ${response.status}`);
    assert.match(await response.text(), 'event: state');
  }
});

/** Sends raw bytes on a TCP connection and returns the status line the server answers, if any. */
function rawExchange(bytes: string): Promise<string> {
  const { hostname, port } = new URL(node.url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname, () => socket.end(bytes));
    let answer = '';
    socket.on('data', (data) => (answer += data));
    // The server may answer and reset while a large request is still being written: keep the answer.
    socket.on('error', () => {});
    socket.on('close', () => resolve(answer.split('\r\n')[0] ?? ''));
  });
}

test('malformed requests and huge headers get a clear 4xx, and the node keeps serving', async () => {
  assert.match(await rawExchange('GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400 /);
  assert.match(await rawExchange('GET /jobs HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n'), /^HTTP\/1\.1 400 /);
  const huge = `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: ${'a'.repeat(64 * 1024)}\r\n\r\n`;
  assert.match(await rawExchange(huge), /^HTTP\/1\.1 431 /);
  assert.is((await fetch(`${node.url}/healthz`)).status, 200);
});

test('without a jobs service, /jobs answers 503 NOT_READY; without a token, no auth is asked', async () => {
  const bare = await startTestGateway({ withoutJobs: true });
  try {
    const response = await fetch(`${bare.url}/jobs`);
    assert.is(response.status, 503);
    assert.is(((await response.json()) as any).error.code, 'NOT_READY');
    assert.is((await fetch(`${bare.url}/cluster`)).status, 200);
  } finally {
    await bare.stop();
  }
});

test.run();
