/**
 * A plain static file server for a TUF repository: GET and HEAD, single
 * byte ranges (`Range: bytes=N-` / `N-M`) for resumable downloads, no
 * directory listings, nothing outside the root. The relay or any web server
 * can serve the same tree; this one is for development and tests
 * (`vigil ota serve`).
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { listen } from '../hw/os/net.js';
import { join, normalize, sep } from 'node:path';

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

function parseRange(
  header: string,
  size: number,
): { start: number; end: number } | 'invalid' | undefined {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined; // multi-range or unknown unit: serve the whole file
  const [, a = '', b = ''] = m;
  if (a === '' && b === '') return 'invalid';
  let start: number;
  let end: number;
  if (a === '') {
    start = Math.max(0, size - Number(b));
    end = size - 1;
  } else {
    start = Number(a);
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  }
  if (start >= size || start > end) return 'invalid';
  return { start, end };
}

/** A request handler serving files under `root`. */
export function serveStatic(root: string): RequestHandler {
  const base = normalize(root + sep);
  return (req, res) => {
    void (async () => {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      let path: string;
      try {
        const url = new URL(req.url ?? '/', 'http://x');
        path = normalize(join(base, decodeURIComponent(url.pathname)));
      } catch {
        res.writeHead(400).end();
        return;
      }
      if (!path.startsWith(base)) {
        res.writeHead(403).end();
        return;
      }
      let size: number;
      try {
        const s = await stat(path);
        if (!s.isFile()) throw new Error('not a file');
        size = s.size;
      } catch {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      const headers: Record<string, string | number> = {
        'accept-ranges': 'bytes',
        'content-type': path.endsWith('.json') ? 'application/json' : 'application/octet-stream',
        'cache-control': 'no-cache',
      };
      const range =
        req.headers.range === undefined ? undefined : parseRange(req.headers.range, size);
      if (range === 'invalid') {
        res.writeHead(416, { 'content-range': `bytes */${String(size)}` }).end();
        return;
      }
      const { start, end } = range ?? { start: 0, end: size - 1 };
      const status = range ? 206 : 200;
      if (range) headers['content-range'] = `bytes ${String(start)}-${String(end)}/${String(size)}`;
      headers['content-length'] = size === 0 ? 0 : end - start + 1;
      res.writeHead(status, headers);
      if (req.method === 'HEAD' || size === 0) {
        res.end();
        return;
      }
      const stream = createReadStream(path, { start, end });
      stream.on('error', () => res.destroy());
      stream.pipe(res);
    })();
  };
}

export interface StaticServer {
  readonly server: Server;
  readonly url: string;
  close(): Promise<void>;
}

/** Listen on loopback (port 0 = any free port) with `handler` or a plain static handler. */
export async function startStaticServer(
  root: string,
  opts: { host?: string; port?: number; handler?: RequestHandler } = {},
): Promise<StaticServer> {
  const handler = opts.handler ?? serveStatic(root);
  const server = createServer(handler);
  const host = opts.host ?? '127.0.0.1';
  await listen(server, { port: opts.port ?? 0, host });
  const addr = server.address() as AddressInfo;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    server,
    url: `http://${shown}:${String(addr.port)}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}
