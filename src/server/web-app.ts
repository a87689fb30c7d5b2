import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { App } from './types.ts';
import { PAGE_TABS } from '../../web/src/pages.ts';

/** Where `npm run build` writes the web application (web/vite.config.ts). */
export const WEB_DIST = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'web');

/**
 * The application's pages, each by name (no wildcard: an unknown path is a 404 problem, like any
 * other): each answers index.html, and the browser-side router shows the page. The tabbed pages
 * come from the list the browser's router uses (web/src/pages.ts).
 */
export const PAGES = [
  '/',
  '/signin',
  '/setup',
  '/account',
  '/agent',
  '/wallboard',
  ...Object.entries(PAGE_TABS).flatMap(([area, tabs]) => [`/${area}`, ...tabs.map((tab) => `/${area}/${tab}`)]),
];

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.woff2': 'font/woff2',
  '.png': 'image/png',
  '.json': 'application/json; charset=utf-8',
};

type Asset = { type: string; body: Buffer; gzipped: Buffer | null };

/**
 * Serves the built single-page application from memory: every file is read (and gzipped) once at
 * start, and only names found in the build directory are ever answered — no path from a request
 * reaches the file system. Hashed assets are immutable; index.html is never cached, so a new
 * release is picked up at the next load. The CSP of every response (security-headers.ts) applies:
 * the build has no inline script or style.
 */
export async function webAppRoutes(app: App, options: { dir?: string } = {}): Promise<void> {
  const dir = options.dir ?? WEB_DIST;
  const indexFile = path.join(dir, 'index.html');
  const built = existsSync(indexFile);
  const assets = new Map<string, Asset>();
  if (built) {
    const assetDir = path.join(dir, 'assets');
    for (const name of existsSync(assetDir) ? readdirSync(assetDir) : []) {
      const type = TYPES[path.extname(name)];
      if (!type) continue;
      const body = readFileSync(path.join(assetDir, name));
      assets.set(name, { type, body, gzipped: type.startsWith('text/') || type === 'image/svg+xml' ? gzipSync(body, { level: 9 }) : null });
    }
  }
  const index = built ? readFileSync(indexFile) : Buffer.from(notBuiltPage, 'utf8');
  const indexGzipped = gzipSync(index);

  const acceptsGzip = (header: string | undefined) => header !== undefined && /\bgzip\b/.test(header);

  for (const url of PAGES) {
    app.get(url, { config: { access: 'public' }, schema: { hide: true } }, async (request, reply) => {
      reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').header('vary', 'accept-encoding');
      if (!built) reply.code(503);
      if (acceptsGzip(request.headers['accept-encoding'])) return reply.header('content-encoding', 'gzip').send(indexGzipped);
      return reply.send(index);
    });
  }

  app.get<{ Params: { name: string } }>('/assets/:name', { config: { access: 'public' }, schema: { hide: true } }, async (request, reply) => {
    const asset = assets.get(request.params.name);
    if (!asset) return reply.code(404).type('text/plain; charset=utf-8').send('Not found');
    reply.type(asset.type).header('cache-control', 'public, max-age=31536000, immutable').header('vary', 'accept-encoding');
    if (asset.gzipped && acceptsGzip(request.headers['accept-encoding'])) return reply.header('content-encoding', 'gzip').send(asset.gzipped);
    return reply.send(asset.body);
  });
}

const notBuiltPage = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Ringvakt</title></head>
<body><main><h1>Ringvakt</h1><p>The web application has not been built. Run <code>npm run build</code> (npm start does it for you), then reload.</p></main></body></html>`;
