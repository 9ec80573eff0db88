/**
 * Load held (issue 13), at a size CI affords: 60 uploads at once to one gateway of a real 3-node
 * cluster whose uploadsMax is 2 and queue 8 — 50 through the client library, each on its own
 * connection, and 10 `dcas upload --wait` processes. The queue fills, clients past it are refused BUSY
 * and retry with backoff; every job completes with its file's SHA-256 and no node's peak RSS reaches
 * 300 MiB. `npm run bench:load` runs the same at full size (200 + 100 uploads of 1-5 MB).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatLoadResult, nodeRssBytesMax, runLoadBench } from '../bench/load.ts';

test('60 concurrent uploads to one gateway with uploadsMax 2 all complete with their SHA-256, through the queue and BUSY retries, each node under 300 MiB', async () => {
  const result = await runLoadBench({
    libraryUploads: 50,
    cliUploads: 10,
    sizeBytesMin: 64 * 1024,
    sizeBytesMax: 256 * 1024,
    uploadsMax: 2,
    uploadQueueMax: 8,
    timeoutSeconds: 600,
    connectsAtOnce: 25,
    seed: 7,
  });
  console.log(formatLoadResult(result));
  assert.equal(result.failures, [], result.failures.join('\n'));
  assert.is(result.uploads.length, 60);
  assert.is(Object.keys(result.peakRssBytes).length, 3);
  for (const [name, bytes] of Object.entries(result.peakRssBytes)) assert.ok(bytes < nodeRssBytesMax, `${name}: peak RSS ${bytes} bytes`);
  // 50 uploads asked for at once against 2 slots: the queue was used, and reached at most its bound.
  assert.ok(result.queueDepthMax >= 1, `max queue depth ${result.queueDepthMax}`);
  assert.ok(result.queueDepthMax <= 8, `max queue depth ${result.queueDepthMax}`);
  // Every refusal is retried by its client (none gave up), so the clients saw at least as many retries.
  assert.ok(result.retries.library + result.retries.cli >= result.busyRefusals, JSON.stringify({ retries: result.retries, busy: result.busyRefusals }));
});

test.run();
