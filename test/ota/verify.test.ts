/**
 * The device's TUF client against attack repositories, differentially: for
 * every case our verifier and tuf-js (an independent implementation) must
 * agree — both accept the genuine repository, both refuse each attack.
 */
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { Updater } from 'tuf-js';
import { DurableFs } from '../../hw/os/fs.js';
import { generateSigningKey } from '../../ota/keys.js';
import { initRepo, release, rotateKeys } from '../../ota/repo.js';
import type { RepoContext } from '../../ota/repo.js';
import { encodeEnvelope, signEnvelope } from '../../ota/signatures.js';
import { serveStatic, startStaticServer } from '../../ota/static-server.js';
import { FetchTransport } from '../../ota/transport.js';
import { installTrustedRoot, TufClient, VerifyError } from '../../ota/verify.js';
import type { VerifyFailure } from '../../ota/verify.js';
import { repoContext, tempDir } from './helpers.js';

interface Rig {
  ctx: RepoContext;
  url: string;
  replace: Map<string, Buffer>;
  ours: () => Promise<VerifyFailure | 'ok'>;
  theirs: () => Promise<'ok' | 'refused'>;
  now: { d: Date };
  meta: (name: string) => Promise<Buffer>;
}

async function rig(tt: Test): Promise<Rig> {
  const work = await tempDir();
  const now = { d: new Date() };
  const ctx = repoContext(work, { now: () => now.d });
  await initRepo(ctx);
  await release(ctx, {
    bundle: Buffer.from('one'),
    channel: 'stable',
    version: '1.0.0',
    kind: 'app',
  });
  const replace = new Map<string, Buffer>();
  const plain = serveStatic(ctx.repoDir);
  const server = await startStaticServer(ctx.repoDir, {
    handler: (req: IncomingMessage, res: ServerResponse) => {
      const r = replace.get(new URL(req.url ?? '/', 'http://x').pathname);
      if (r) res.writeHead(200, { 'content-length': r.length }).end(r);
      else plain(req, res);
    },
  });
  tt.teardown(async () => {
    await server.close();
    await rm(work, { recursive: true, force: true });
  });
  const rootBytes = await readFile(join(ctx.repoDir, 'metadata', '1.root.json'));
  const ourDir = join(work, 'ours');
  const fs = new DurableFs();
  await installTrustedRoot(fs, ourDir, rootBytes);
  const theirDir = join(work, 'theirs');
  await mkdir(theirDir, { recursive: true });
  await copyFile(join(ctx.repoDir, 'metadata', '1.root.json'), join(theirDir, 'root.json'));
  const ours = async (): Promise<VerifyFailure | 'ok'> => {
    try {
      await new TufClient({
        dir: ourDir,
        fs,
        transport: new FetchTransport(),
        metadataUrl: `${server.url}/metadata`,
        now: () => now.d,
      }).refresh();
      return 'ok';
    } catch (e) {
      if (e instanceof VerifyError) return e.failure;
      throw e;
    }
  };
  const theirs = async (): Promise<'ok' | 'refused'> => {
    try {
      await new Updater({
        metadataDir: theirDir,
        metadataBaseUrl: `${server.url}/metadata`,
        targetBaseUrl: `${server.url}/targets`,
      }).refresh();
      return 'ok';
    } catch {
      return 'refused';
    }
  };
  return {
    ctx,
    url: server.url,
    replace,
    ours,
    theirs,
    now,
    meta: (n) => readFile(join(ctx.repoDir, 'metadata', n)),
  };
}

async function failureOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'no failure';
  } catch (e) {
    return e instanceof VerifyError ? e.failure : `unexpected: ${(e as Error).message}`;
  }
}

async function agree(tt: Test, r: Rig, expect: VerifyFailure | 'ok', what: string): Promise<void> {
  const a = await r.ours();
  const b = await r.theirs();
  tt.equal(a, expect, `ours: ${what}`);
  tt.equal(b, expect === 'ok' ? 'ok' : 'refused', `tuf-js: ${what}`);
}

t.test('genuine repository: both accept; updates are followed', async (tt) => {
  const r = await rig(tt);
  await agree(tt, r, 'ok', 'genuine');
  await release(r.ctx, {
    bundle: Buffer.from('two'),
    channel: 'stable',
    version: '2.0.0',
    kind: 'app',
  });
  await agree(tt, r, 'ok', 'after a release');
});

t.test('arbitrary software: forged signatures and tampered metadata', async (tt) => {
  const r = await rig(tt);
  const ts = JSON.parse((await r.meta('timestamp.json')).toString()) as {
    signed: { version: number };
  };
  r.replace.set(
    '/metadata/timestamp.json',
    Buffer.from(encodeEnvelope(signEnvelope(ts.signed, [generateSigningKey('timestamp')]))),
  );
  await agree(tt, r, 'signature', 'timestamp signed by an unknown key');
  // A signed field changed after signing.
  const env = JSON.parse((await r.meta('timestamp.json')).toString()) as {
    signed: { version: number };
  };
  env.signed.version += 5;
  r.replace.set('/metadata/timestamp.json', Buffer.from(JSON.stringify(env)));
  await agree(tt, r, 'signature', 'timestamp altered after signing');
  r.replace.clear();
  // Targets with a new entry: its signature no longer matches, and the snapshot hash neither.
  const tg = JSON.parse((await r.meta('2.targets.json')).toString()) as {
    signed: { targets: Record<string, unknown> };
  };
  tg.signed.targets['stable/evil.tar.gz'] = { length: 1, hashes: { sha256: '00'.repeat(32) } };
  r.replace.set('/metadata/2.targets.json', Buffer.from(JSON.stringify(tg)));
  const ours = await r.ours();
  tt.ok(['hash', 'length', 'signature'].includes(ours), `ours refuses tampered targets (${ours})`);
  tt.equal(await r.theirs(), 'refused', 'tuf-js refuses tampered targets');
});

t.test('a repeated signature by one key does not meet a threshold of two', async (tt) => {
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  const ctx = repoContext(work);
  await initRepo(ctx, { rootKeys: 2, rootThreshold: 2 });
  const root = JSON.parse(await readFile(join(ctx.repoDir, 'metadata', '1.root.json'), 'utf8')) as {
    signatures: unknown[];
  };
  root.signatures = [root.signatures[0], root.signatures[0]];
  await tt.rejects(
    installTrustedRoot(new DurableFs(), join(work, 'dev'), Buffer.from(JSON.stringify(root))),
    { failure: 'format', message: /signs more than once \(keyids must be unique\)/ },
  );
});

t.test('conformance: a signatures list that repeats a keyid is refused', async (tt) => {
  // Threshold 1 is met by the first copy: the repeat used to be skipped silently.
  const r = await rig(tt);
  const env = JSON.parse((await r.meta('timestamp.json')).toString()) as {
    signatures: unknown[];
  };
  env.signatures = [env.signatures[0], env.signatures[0]];
  r.replace.set('/metadata/timestamp.json', Buffer.from(JSON.stringify(env)));
  await agree(tt, r, 'format', 'timestamp with one signature listed twice');
});

t.test(
  'conformance: an empty sig beside a met threshold does not count, nothing more',
  async (tt) => {
    const r = await rig(tt);
    const root = JSON.parse((await r.meta('1.root.json')).toString()) as {
      signed: { roles: { root: { keyids: string[] } } };
    };
    const env = JSON.parse((await r.meta('timestamp.json')).toString()) as {
      signatures: { keyid: string; sig: string }[];
    };
    // A key the root knows (the root key), signing nothing: an empty sig.
    env.signatures.push({ keyid: root.signed.roles.root.keyids[0] ?? '', sig: '' });
    r.replace.set('/metadata/timestamp.json', Buffer.from(JSON.stringify(env)));
    await agree(tt, r, 'ok', 'timestamp with an extra empty signature');

    // Root with two authorised keys, threshold 1: one valid signature, one empty.
    const work = await tempDir();
    tt.teardown(() => rm(work, { recursive: true, force: true }));
    const ctx = repoContext(work);
    await initRepo(ctx, { rootKeys: 2, rootThreshold: 1 });
    const r2 = JSON.parse(await readFile(join(ctx.repoDir, 'metadata', '1.root.json'), 'utf8')) as {
      signatures: { keyid: string; sig: string }[];
      signed: { roles: { root: { keyids: string[] } } };
    };
    tt.equal(r2.signed.roles.root.keyids.length, 2);
    r2.signatures = [r2.signatures[0]!, { keyid: r2.signatures[1]!.keyid, sig: '' }];
    const installed = await installTrustedRoot(
      new DurableFs(),
      join(work, 'dev'),
      Buffer.from(JSON.stringify(r2)),
    );
    tt.equal(installed.version, 1, 'accepted: the threshold is met');
    r2.signatures = [{ keyid: r2.signatures[0]!.keyid, sig: '' }, r2.signatures[1]!];
    await tt.rejects(
      installTrustedRoot(new DurableFs(), join(work, 'dev2'), Buffer.from(JSON.stringify(r2))),
      { failure: 'signature', message: /not signed by 1 trusted root key/ },
      'empty signatures alone never meet it',
    );
  },
);

t.test('a root with an ECDSA key is refused with a clear reason', async (tt) => {
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  const ctx = repoContext(work);
  await initRepo(ctx);
  const root = JSON.parse(await readFile(join(ctx.repoDir, 'metadata', '1.root.json'), 'utf8')) as {
    signed: { keys: Record<string, { keytype: string; scheme: string }> };
  };
  const first = Object.values(root.signed.keys)[0]!;
  first.keytype = 'ecdsa';
  first.scheme = 'ecdsa-sha2-nistp256';
  await tt.rejects(
    installTrustedRoot(new DurableFs(), join(work, 'dev'), Buffer.from(JSON.stringify(root))),
    {
      failure: 'format',
      message:
        /^root\.json: not TUF root metadata \(keys\.[0-9a-f]{64}\.keytype: only ed25519 keys are supported/,
    },
  );
});

t.test('rollback: an older timestamp is refused after a newer one was seen', async (tt) => {
  const r = await rig(tt);
  const old = await r.meta('timestamp.json');
  await release(r.ctx, {
    bundle: Buffer.from('two'),
    channel: 'stable',
    version: '2.0.0',
    kind: 'app',
  });
  await agree(tt, r, 'ok', 'newer seen');
  r.replace.set('/metadata/timestamp.json', old);
  await agree(tt, r, 'rollback', 'older timestamp replayed');
});

t.test('freeze: expired timestamp refused', async (tt) => {
  const r = await rig(tt);
  r.now.d = new Date(Date.now() - 2 * 86_400_000);
  await release(r.ctx, {
    bundle: Buffer.from('two'),
    channel: 'stable',
    version: '2.0.0',
    kind: 'app',
  });
  r.now.d = new Date();
  await agree(tt, r, 'expired', 'timestamp expired yesterday');
});

t.test('mix-and-match: a snapshot other than the one the timestamp names', async (tt) => {
  const r = await rig(tt);
  const oldSnap = await r.meta('2.snapshot.json');
  await release(r.ctx, {
    bundle: Buffer.from('two'),
    channel: 'stable',
    version: '2.0.0',
    kind: 'app',
  });
  r.replace.set('/metadata/3.snapshot.json', oldSnap);
  const ours = await r.ours();
  tt.ok(['mix-and-match', 'length', 'hash'].includes(ours), `ours refuses (${ours})`);
  tt.equal(await r.theirs(), 'refused', 'tuf-js refuses');
});

t.test('endless data: oversized metadata is cut off', async (tt) => {
  const r = await rig(tt);
  r.replace.set('/metadata/timestamp.json', Buffer.alloc(64 * 1024, 0x20));
  await agree(tt, r, 'length', 'a 64 KiB timestamp');
});

t.test(
  'key rotation: the client follows root v2 and drops floors signed by rotated keys',
  async (tt) => {
    const r = await rig(tt);
    await agree(tt, r, 'ok', 'before rotation');
    r.ctx = { ...r.ctx };
    await rotateKeys(r.ctx, ['timestamp', 'snapshot']);
    await agree(tt, r, 'ok', 'after rotating timestamp+snapshot keys');
    // Metadata signed with the retired timestamp key is now refused.
    const retiredTs = generateSigningKey('timestamp');
    const ts = JSON.parse((await r.meta('timestamp.json')).toString()) as { signed: unknown };
    r.replace.set(
      '/metadata/timestamp.json',
      Buffer.from(encodeEnvelope(signEnvelope(ts.signed, [retiredTs]))),
    );
    await agree(tt, r, 'signature', 'a timestamp by a key not in root v2');
  },
);

t.test('no trusted root and bad roots are reported, not crashed on', async (tt) => {
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  const fs = new DurableFs();
  const c = new TufClient({
    dir: join(work, 'none'),
    fs,
    transport: new FetchTransport(),
    metadataUrl: 'http://127.0.0.1:9/metadata',
    now: () => new Date(),
  });
  tt.equal(await failureOf(c.refresh()), 'no-trusted-root');
  tt.equal(
    await failureOf(installTrustedRoot(fs, join(work, 'x'), Buffer.from('not json'))),
    'format',
  );
  tt.equal(
    await failureOf(
      installTrustedRoot(
        fs,
        join(work, 'x'),
        Buffer.from('{"signed":{"_type":"root"},"signatures":[]}'),
      ),
    ),
    'format',
  );
});
