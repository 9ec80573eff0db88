/**
 * The web console's static files (page.html, app.js, app.css), read once at start and served by every
 * node's gateway at / and /console/*. No library and no build step: the page needs nothing from outside
 * the node (docs/PROTOCOL.md, "Web console").
 */
import { readFileSync } from 'node:fs';

export interface ConsoleAsset {
  contentType: string;
  body: Buffer;
}

const read = (name: string) => readFileSync(new URL(name, import.meta.url));

/** Path served → file: the page at `/`, its script and style under /console/. */
export const consoleAssets: ReadonlyMap<string, ConsoleAsset> = new Map([
  ['/', { contentType: 'text/html; charset=utf-8', body: read('./page.html') }],
  ['/console/app.js', { contentType: 'text/javascript; charset=utf-8', body: read('./app.js') }],
  ['/console/app.css', { contentType: 'text/css; charset=utf-8', body: read('./app.css') }],
]);

/** Only the node itself: scripts, styles, and API calls to the page's own origin. */
export const consoleContentSecurityPolicy = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
