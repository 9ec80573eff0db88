/**
 * Deleting a job through the gateway: HTTP DELETE /v1/jobs/:id and the WebSocket `delete` answer what
 * the jobs room did (the job's former state, whether it was cancelled), map its refusals (404 NOT_FOUND,
 * 409 CONFLICT while uploading) and leave the job gone. Real ws and HTTP; the jobs room is the double.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connect, DcasClientError } from '../node/client/index.ts';
import { eventually, openWelcomedPeer, rejects, startTestGateway } from './support/gateway.ts';

test('HTTP DELETE removes a completed job (200, later 404) and refuses one still uploading with 409 CONFLICT', async () => {
  const node = await startTestGateway();
  try {
    const created = await fetch(`${node.url}/v1/jobs?name=done.txt&wait=true`, { method: 'POST', body: 'finished bytes' });
    const job = (await created.json()) as any;
    assert.is(job.state, 'completed');
    const deleted = await fetch(`${node.url}/v1/jobs/${job.id}`, { method: 'DELETE' });
    assert.is(deleted.status, 200);
    assert.equal(await deleted.json(), { id: job.id, state: 'completed', cancelled: false });
    assert.is((await fetch(`${node.url}/v1/jobs/${job.id}`)).status, 404);
    const again = await fetch(`${node.url}/v1/jobs/${job.id}`, { method: 'DELETE' });
    assert.is(again.status, 404);
    assert.is(((await again.json()) as any).error.code, 'NOT_FOUND');

    const peer = await openWelcomedPeer(node.wsUrl);
    peer.send({ type: 'upload', id: 'u', fileName: 'open.txt', mode: 'compress' });
    const accepted = await peer.nextJson();
    const conflict = await fetch(`${node.url}/v1/jobs/${accepted.jobId}`, { method: 'DELETE' });
    assert.is(conflict.status, 409);
    assert.is(((await conflict.json()) as any).error.code, 'CONFLICT');
    peer.close();
  } finally {
    await node.stop();
  }
});

test('the WebSocket delete answers deleted with cancelled true for a job still processing; the client library and NOT_FOUND', async () => {
  const node = await startTestGateway({ jobs: { autoProcessTickMs: false } });
  try {
    const client = await connect({ server: node.url });
    const job = await client.upload(Buffer.from('never processed'), { fileName: 'p.txt' });
    assert.is(job.state, 'processing');
    assert.equal(await client.delete(job.id), { jobId: job.id, state: 'processing', cancelled: true });
    await eventually(async () => (await node.jobs.getJob(job.id)) === undefined, 'the job is gone');
    const missing = await rejects(client.delete(job.id));
    assert.instance(missing, DcasClientError);
    assert.is((missing as DcasClientError).code, 'NOT_FOUND');
    await client.close();
  } finally {
    await node.stop();
  }
});

test.run();
