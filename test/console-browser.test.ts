/**
 * The web console in a real browser (Debian's chromium driven by playwright-core) against a real
 * 3-node cluster with a token: the token prompt, an upload through the file input, the job reaching
 * completed in the table without a reload, a download compared byte for byte, the cluster panel's
 * members and coordinator, and a killed node shown dead. Every request outside the node is refused.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { chromiumPath } from '../tools/chromium.ts';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';
import { textLike } from './helpers.ts';

const token = 'console-test-token-0123456789';
let cluster: TestCluster;
let browser: Browser;
let page: Page;
let folder: string;
const outsideRequests: string[] = [];

test.before(async () => {
  cluster = await createTestCluster({ nodes: 3, edit: (config) => ({ ...config, token }) });
  for (const config of cluster.configs) cluster.start(config.name);
  await waitFor('3 alive members and one coordinator', 60_000, () => cluster.agreed(3), () => cluster.logs());
  folder = await mkdtemp(join(tmpdir(), 'dcas-console-'));
  browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox', '--disable-gpu', '--no-first-run'] });
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 390, height: 844 } });
  const origin = cluster.gateway('node2');
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(origin) || url.startsWith('blob:')) return route.continue();
    outsideRequests.push(url);
    return route.abort();
  });
  page = await context.newPage();
});

test.after(async () => {
  await browser?.close();
  await cluster.destroy();
  await rm(folder, { recursive: true, force: true });
});

const text = (selector: string) => page.locator(selector).innerText();

test('the console asks for the token, then shows the three members and the coordinator', async () => {
  await page.goto(`${cluster.gateway('node2')}/`);
  await page.locator('#token-form').waitFor({ state: 'visible', timeout: 30_000 });
  await page.fill('#token', token);
  await page.click('#token-form button[type=submit]');
  await page.locator('#members tbody tr').nth(2).waitFor({ timeout: 30_000 });
  assert.is(await page.locator('#members tbody tr').count(), 3);
  const coordinator = (await cluster.status('node2'))!.coordinator!;
  assert.match(await text('#cluster-summary'), `coordinator: ${coordinator}`);
  assert.match(await text(`#members tr[data-member="${coordinator}"]`), '(coordinator)');
});

test('a file chosen in the file input uploads, reaches completed in the table without a reload, and downloads byte-identical', async () => {
  const data = textLike(12 * 64 * 1024 + 321, 5);
  const file = join(folder, 'page.txt');
  await writeFile(file, data);
  await page.fill('#chunk-size', '64');
  await page.setInputFiles('#file', file);
  const row = page.locator('#jobs tbody tr[data-state="completed"]', { hasText: 'page.txt' });
  await row.waitFor({ timeout: 120_000 });
  assert.match(await row.innerText(), 'completed');
  assert.match(await text('#job-summary'), '13 of 13 chunks coded');
  assert.is(await page.locator('#chunk-map li.done').count(), 13);
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 60_000 }), row.locator('button[data-download=original]').click()]);
  const saved = join(folder, 'downloaded.txt');
  await download.saveAs(saved);
  assert.ok((await readFile(saved)).equals(Buffer.from(data)), 'the downloaded bytes are the uploaded file');
  assert.is(download.suggestedFilename(), 'page.txt');
});

test('a killed node is shown dead in the cluster panel', async () => {
  await cluster.stop('node3', 'SIGKILL');
  const cell = page.locator('#members tr[data-member="node3"] td.status-dead');
  await cell.waitFor({ timeout: 60_000 });
  assert.is(await cell.innerText(), 'dead');
  assert.equal(outsideRequests, [], 'the page fetched nothing from outside the node');
});

test.run();
