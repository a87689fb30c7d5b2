import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { until } from './support/until.ts';
import { freePort } from './support/ports.ts';

const ready = async (url: string) => {
  try {
    return (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1_000) })).status === 200;
  } catch {
    return false;
  }
};

/**
 * Three Ringvakt nodes behind HAProxy (Debian's package, started here on loopback), restarted one
 * by one with SIGTERM while clients keep reading and writing through the proxy: every node drains
 * (its /readyz turns 503 and the proxy takes it out before it closes), exits 0, comes back, and
 * the clients barely notice.
 */
describe(`a rolling restart of three nodes behind HAProxy, under load (${serverLabel()} server)`, () => {
  const rootKey = randomBytes(32).toString('base64');
  let db: TestDatabase;
  let tenant: SeededTenant;
  let folder: string;
  let proxy: ChildProcess | undefined;
  const nodes: { port: number; dataDir: string; process?: ChildProcess; log: string }[] = [];

  beforeAll(async () => {
    db = await createTestDatabase({ env: { RINGVAKT_KEY_PROVIDER: 'env', RINGVAKT_ROOT_KEY: rootKey } });
    tenant = await seedTenant(db.handles, 'rolling');
    folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-rolling-'));
    chmodSync(folder, 0o711);
    for (let index = 0; index < 3; index += 1) {
      const dataDir = path.join(folder, `node-${index}`);
      nodes.push({ port: await freePort(), dataDir, log: '' });
    }
  });
  afterAll(async () => {
    proxy?.kill('SIGKILL');
    for (const node of nodes) node.process?.kill('SIGKILL');
    await db?.drop();
    rmSync(folder, { recursive: true, force: true });
  });

  it('≥ 99.95 % of requests succeed while each node is restarted in turn', async () => {
    const proxyPort = await freePort();
    const start = (node: (typeof nodes)[number]) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'serve'], {
        env: {
          ...process.env,
          DATABASE_URL: db.url,
          DATABASE_APP_URL: db.runtimeUrl,
          RINGVAKT_DATA_DIR: node.dataDir,
          RINGVAKT_HOST: '127.0.0.1',
          RINGVAKT_PORT: String(node.port),
          RINGVAKT_PUBLIC_URL: `http://127.0.0.1:${proxyPort}`,
          RINGVAKT_TRUST_PROXY: '127.0.0.1',
          RINGVAKT_KEY_PROVIDER: 'env',
          RINGVAKT_ROOT_KEY: rootKey,
          RINGVAKT_BACKUP_INTERVAL_HOURS: '0',
          RINGVAKT_SHUTDOWN_DRAIN_MS: '1500',
          RINGVAKT_LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout?.on('data', (chunk: Buffer) => (node.log += chunk.toString()));
      child.stderr?.on('data', (chunk: Buffer) => (node.log += chunk.toString()));
      node.process = child;
      return child;
    };
    for (const node of nodes) start(node);
    for (const node of nodes) await until(() => ready(`http://127.0.0.1:${node.port}`), 60_000);

    const config = path.join(folder, 'haproxy.cfg');
    writeFileSync(
      config,
      [
        'global',
        '  maxconn 1000',
        'defaults',
        '  mode http',
        '  timeout connect 1s',
        '  timeout client 30s',
        '  timeout server 30s',
        '  retries 3',
        '  option redispatch 1',
        // Only requests a client could repeat itself are retried (HAProxy does not replay a POST
        // whose answer may have been lost); the drain is what keeps the POSTs whole.
        '  retry-on conn-failure empty-response response-timeout',
        'frontend ringvakt',
        `  bind 127.0.0.1:${proxyPort}`,
        '  default_backend nodes',
        'backend nodes',
        '  balance roundrobin',
        '  option httpchk GET /readyz',
        '  http-check expect status 200',
        '  default-server inter 300ms fall 1 rise 2',
        ...nodes.map((node, index) => `  server node${index} 127.0.0.1:${node.port} check`),
        '',
      ].join('\n'),
    );
    proxy = spawn('haproxy', ['-db', '-f', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let proxyLog = '';
    proxy.stderr?.on('data', (chunk: Buffer) => (proxyLog += chunk.toString()));
    proxy.on('error', (error) => (proxyLog += `haproxy did not start: ${error.message} (apt-get install haproxy; .ci/run does)`));
    const base = `http://127.0.0.1:${proxyPort}`;
    await until(() => ready(base), 10_000).catch(() => {
      throw new Error(`the proxy does not answer: ${proxyLog}`);
    });

    // Clients: reads (the tenant) and POSTs (suppression checks, a transaction each), through the
    // proxy, for as long as the restart takes (bounded).
    const headers = { authorization: `Bearer ${tenant.owner.token}`, 'content-type': 'application/json' };
    const outcomes = { ok: 0, failed: 0, reads: 0, writes: 0 };
    const failures: string[] = [];
    let running = true;
    const deadline = Date.now() + 120_000;
    const client = async (index: number) => {
      while (running && Date.now() < deadline) {
        const write = index % 4 === 0;
        try {
          const response = write
            ? await fetch(`${base}/api/v1/suppressions/check`, { method: 'POST', headers, body: JSON.stringify({ phone: '+4791234567' }), signal: AbortSignal.timeout(10_000) })
            : await fetch(`${base}/api/v1/tenant`, { headers, signal: AbortSignal.timeout(10_000) });
          await response.arrayBuffer();
          if (response.status === 200) outcomes.ok += 1;
          else {
            outcomes.failed += 1;
            failures.push(`${response.status}`);
          }
        } catch (error) {
          outcomes.failed += 1;
          failures.push((error as Error).name);
        }
        if (write) outcomes.writes += 1;
        else outcomes.reads += 1;
      }
    };
    const load = Promise.all(Array.from({ length: 8 }, (_, index) => client(index)));

    const exits: (number | null)[] = [];
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    for (const node of nodes) {
      const old = node.process as ChildProcess;
      const exited = new Promise<number | null>((resolve) => old.once('exit', (code) => resolve(code)));
      old.kill('SIGTERM');
      exits.push(await exited);
      start(node);
      await until(() => ready(`http://127.0.0.1:${node.port}`), 60_000);
      // The proxy's health check takes it back (rise 2 × 300 ms).
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    running = false;
    await load;

    const total = outcomes.ok + outcomes.failed;
    const share = outcomes.ok / total;
    process.stdout.write(`rolling restart: ${outcomes.ok} of ${total} requests succeeded (${(share * 100).toFixed(3)} %), failures: ${failures.join(', ') || 'none'}\n`);
    expect(exits).toEqual([0, 0, 0]);
    expect(total).toBeGreaterThan(1_000);
    expect(share, failures.slice(0, 20).join(', ')).toBeGreaterThanOrEqual(0.9995);
    for (const node of nodes) expect(node.log).not.toMatch(/"level":(50|60)/);
  }, 180_000);
});
