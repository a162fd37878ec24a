/**
 * GET /docs: the OpenAPI document (/openapi.json) in Swagger UI, served from the swagger-ui-dist package
 * (no CDN). A page for people, not an API operation: like /openapi.json it names no key and is open, and
 * it is not in the document itself. Its content-security-policy allows only this origin, so the page
 * loads nothing from elsewhere and "Try it out" calls this same server.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';

const distDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

/** The package's files the page uses, by the name it is served under (/docs/<name>). */
const assets: Readonly<Record<string, string>> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
  'favicon-16x16.png': 'image/png',
};

/** No inline script or style: the settings are this script, served as a file. No online validator (swagger.io). */
const initializer = `window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true, validatorUrl: null });\n`;

const indexPage = `<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>hsm-bridge API</title>
    <link rel="stylesheet" href="/docs/swagger-ui.css">
    <link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
    <link rel="icon" type="image/png" href="/docs/favicon-16x16.png" sizes="16x16">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/swagger-ui-bundle.js"></script>
    <script src="/docs/initializer.js"></script>
  </body>
</html>
`;

// Swagger UI's icons are data: images in its stylesheet; everything else comes from this origin.
const CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/** The package's files change only with the package: browsers keep them for a day. */
const ASSET_CACHE = 'public, max-age=86400';

function send(reply: FastifyReply, type: string, body: string | Buffer, cache?: string): FastifyReply {
  if (cache) reply.header('cache-control', cache);
  return reply
    .header('content-type', type)
    .header('content-security-policy', CONTENT_SECURITY_POLICY)
    .header('x-content-type-options', 'nosniff')
    .send(body);
}

export function docsPageRoutes(app: FastifyInstance): void {
  // Each file is read once, on its first request (the bundle is 1.7 MB, and these routes are open).
  const loaded = new Map<string, Promise<Buffer>>();
  const contentOf = (asset: string) => {
    let content = loaded.get(asset);
    if (!content) {
      content = readFile(join(distDir, asset));
      content.catch(() => loaded.delete(asset));
      loaded.set(asset, content);
    }
    return content;
  };
  app.get('/docs', async (_request, reply) => send(reply, 'text/html; charset=utf-8', indexPage));
  app.get('/docs/initializer.js', async (_request, reply) => send(reply, 'text/javascript; charset=utf-8', initializer));
  app.get('/docs/:asset', async (request, reply) => {
    const { asset } = request.params as { asset: string };
    const type = Object.hasOwn(assets, asset) ? assets[asset] : undefined;
    if (!type) return reply.callNotFound();
    return send(reply, type, await contentOf(asset), ASSET_CACHE);
  });
}
