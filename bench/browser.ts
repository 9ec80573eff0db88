/**
 * Opens a bench report in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
 * and reads back what each chart drew; also takes screenshots.
 *
 *   node bench/browser.ts REPORT.html [-o SCREENSHOT.png]    prints each chart's datasets and points
 *
 * Every launch gets a fresh profile folder, removed afterwards, and the page may load nothing but the
 * report file itself: any other request is refused and listed, so a report that needs the network fails.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { chromiumPath } from '../tools/chromium.ts';

const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * The few browser globals the in-page functions use (the project's tsconfig has no DOM library).
 * Those functions run in the page, so each takes them from its own globalThis.
 */
interface PageCanvas {
  id: string;
  width: number;
  height: number;
  getContext(kind: '2d'): { getImageData(x: number, y: number, width: number, height: number): { data: Uint8ClampedArray } } | null;
}
interface PageGlobals {
  document: {
    body: { dataset: Record<string, string | undefined> };
    getElementById(id: string): PageCanvas | null;
    querySelectorAll(selector: string): Iterable<PageCanvas>;
  };
  benchCharts?: Record<string, unknown>;
}

/** What one chart drew: per dataset, how many points have finite coordinates; and non-blank pixels. */
export interface ChartInspection {
  id: string;
  found: boolean;
  datasets: Array<{ label: string; points: number; drawn: number }>;
  paintedPixels: number;
}

export interface ReportInspection {
  rendered: boolean;
  error: string | null;
  pageErrors: string[];
  /** URLs the page tried to load other than the report file. */
  blockedRequests: string[];
  charts: ChartInspection[];
}

export interface OpenedReport {
  page: Page;
  inspect(chartIds: string[]): Promise<ReportInspection>;
  screenshot(path: string): Promise<void>;
  close(): Promise<void>;
}

export async function openReport(htmlPath: string, viewport = { width: 1400, height: 900 }): Promise<OpenedReport> {
  const profile = await mkdtemp(join(tmpdir(), 'dcas-chromium-'));
  let context: BrowserContext | undefined;
  try {
    context = await chromium.launchPersistentContext(profile, { executablePath: chromiumPath, headless: true, args: chromiumArgs, viewport });
    const page = context.pages()[0] ?? (await context.newPage());
    const reportUrl = pathToFileURL(resolve(htmlPath)).href;
    const blockedRequests: string[] = [];
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(String(error)));
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url === reportUrl) return route.continue();
      blockedRequests.push(url);
      return route.abort();
    });
    await page.goto(reportUrl, { waitUntil: 'load' });
    await page
      .waitForFunction(() => {
        const { document } = globalThis as unknown as PageGlobals;
        return document.body.dataset.rendered === 'true' || document.body.dataset.error !== undefined;
      }, undefined, { timeout: 15_000 })
      .catch(() => {});
    const opened = context;
    return {
      page,
      async inspect(chartIds) {
        const state = await page.evaluate(() => {
          const { document } = globalThis as unknown as PageGlobals;
          return { rendered: document.body.dataset.rendered === 'true', error: document.body.dataset.error ?? null };
        });
        const charts = await page.evaluate(inspectCharts, chartIds);
        return { ...state, pageErrors, blockedRequests, charts };
      },
      async screenshot(path) {
        await page.screenshot({ path, fullPage: true });
      },
      async close() {
        await opened.close();
        await rm(profile, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await context?.close().catch(() => {});
    await rm(profile, { recursive: true, force: true });
    throw error;
  }
}

/** Runs in the page: reads window.benchCharts (Chart.js instances) and the canvases' pixels. */
function inspectCharts(chartIds: string[]): ChartInspection[] {
  interface ElementLike { x: number; y: number }
  interface ChartLike {
    data: { datasets: Array<{ label?: string; data: unknown[] }> };
    getDatasetMeta(index: number): { data: ElementLike[]; hidden: boolean | null };
  }
  const page = globalThis as unknown as PageGlobals;
  const charts = (page.benchCharts ?? {}) as Record<string, ChartLike>;
  const hasValue = (point: unknown) => {
    if (point === null || point === undefined) return false;
    if (typeof point === 'number') return Number.isFinite(point);
    if (Array.isArray(point)) return point.every((value) => Number.isFinite(value));
    const { x, y } = point as { x?: unknown; y?: unknown };
    return Number.isFinite(x) && Number.isFinite(y);
  };
  return chartIds.map((id) => {
    const canvas = page.document.getElementById(id);
    const chart = charts[id];
    if (canvas === null || chart === undefined) return { id, found: false, datasets: [], paintedPixels: 0 };
    const datasets = chart.data.datasets.map((dataset, index) => {
      const meta = chart.getDatasetMeta(index);
      const drawn = meta.data.filter((element, pointIndex) => hasValue(dataset.data[pointIndex]) && Number.isFinite(element.x) && Number.isFinite(element.y)).length;
      return { label: dataset.label ?? `#${index}`, points: dataset.data.filter(hasValue).length, drawn };
    });
    const pixels = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
    let paintedPixels = 0;
    for (let offset = 3; offset < pixels.length; offset += 4) if (pixels[offset] !== 0) paintedPixels++;
    return { id, found: true, datasets, paintedPixels };
  });
}

/** Problems with an inspection, one line each; none means every chart drew data. */
export function chartProblems(inspection: ReportInspection): string[] {
  const problems: string[] = [];
  if (!inspection.rendered) problems.push(`the page did not finish drawing: ${inspection.error ?? 'no error recorded'}`);
  for (const error of inspection.pageErrors) problems.push(`page error: ${error}`);
  for (const url of inspection.blockedRequests) problems.push(`the report tried to load ${url}`);
  for (const chart of inspection.charts) {
    if (!chart.found) problems.push(`${chart.id}: no chart`);
    else if (chart.datasets.length === 0) problems.push(`${chart.id}: no datasets`);
    else {
      for (const dataset of chart.datasets) if (dataset.drawn === 0) problems.push(`${chart.id}: dataset "${dataset.label}" drew no point`);
      if (chart.paintedPixels === 0) problems.push(`${chart.id}: the canvas is blank`);
    }
  }
  return problems;
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { output: { type: 'string', short: 'o' } } });
  if (positionals.length !== 1) {
    console.error('usage: node bench/browser.ts REPORT.html [-o SCREENSHOT.png]');
    process.exitCode = 2;
    return;
  }
  const report = await openReport(positionals[0]);
  try {
    const ids = await report.page.evaluate(() => [...(globalThis as unknown as PageGlobals).document.querySelectorAll('canvas')].map((canvas) => canvas.id));
    const inspection = await report.inspect(ids);
    for (const chart of inspection.charts) {
      console.log(`${chart.id.padEnd(24)} ${chart.datasets.map((dataset) => `${dataset.label}:${dataset.drawn}`).join(' ')}  (${chart.paintedPixels} painted pixels)`);
    }
    const problems = chartProblems(inspection);
    for (const problem of problems) console.error(`problem: ${problem}`);
    if (problems.length > 0) process.exitCode = 1;
    if (values.output !== undefined) {
      await report.screenshot(values.output);
      console.log(`screenshot: ${values.output}`);
    }
  } finally {
    await report.close();
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) await main(process.argv.slice(2));
