/**
 * The CLI's live lines, drawn by a real cli-progress bar into a stream: what a person watching a job sees.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PassThrough } from 'node:stream';
import { SingleBar } from 'cli-progress';
import { jobLine } from '../node/cli/job-commands.ts';

test('status --watch counts bytes received while a job uploads (its chunk total still grows), and chunks done after', () => {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (data) => (text += data));
  // A schedule that never fires: each line is drawn by render() below, once.
  const bar = new SingleBar({ stream: stream as unknown as NodeJS.WritableStream, format: jobLine, noTTYOutput: true, notTTYSchedule: 1e9, barsize: 10 });
  bar.start(5, 5, { state: 'uploading ', uploading: true, received: '12.0 MiB' });
  bar.render();
  bar.setTotal(8);
  bar.update(3, { state: 'processing', uploading: false, received: '32.0 MiB' });
  bar.render();
  bar.stop();
  const lines = text.split('\n').filter(Boolean);
  assert.is(lines[0], 'job uploading  12.0 MiB received');
  assert.ok(lines.includes('job processing ====------ 3/8 chunks'), JSON.stringify(lines));
  assert.not.match(lines[0], /5\/5/);
});

test.run();
