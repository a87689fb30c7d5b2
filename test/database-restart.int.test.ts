import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { startEmbeddedPostgres, type EmbeddedCluster } from '../src/db/embedded-postgres.ts';
import { createLogger } from '../src/logger.ts';
import { seedTenant } from './support/seed.ts';
import { until } from './support/until.ts';
import { freePort } from './support/ports.ts';

/**
 * PostgreSQL restarted under a running Ringvakt: a PostgreSQL server of this test's own (the
 * shared test server must not go down under other tests) is stopped and started again while a
 * node serves requests. Meanwhile /readyz says the database is unreachable; afterwards the node
 * answers again by itself — no restart of Ringvakt, no request lost to a stale connection.
 */
describe('PostgreSQL restarted under load', () => {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-pg-restart-'));
  chmodSync(folder, 0o711);
  const logger = createLogger('silent');
  let cluster: EmbeddedCluster | undefined;
  let node: ChildProcess | undefined;

  afterAll(async () => {
    node?.kill('SIGKILL');
    await cluster?.stop();
    rmSync(folder, { recursive: true, force: true });
  });

  it('the node reports the outage on /readyz and recovers on its own when the database is back', async () => {
    const pgDir = path.join(folder, 'postgres');
    cluster = await startEmbeddedPostgres({ dataDir: pgDir, logger });
    const admin = new pg.Client({ connectionString: cluster.adminUrl });
    await admin.connect();
    await admin.query('CREATE DATABASE rv_restart');
    await admin.end();
    const url = new URL(cluster.adminUrl);
    url.pathname = '/rv_restart';
    const dataDir = path.join(folder, 'node');
    const env = { DATABASE_URL: url.toString(), RINGVAKT_DATA_DIR: dataDir, RINGVAKT_KEY_PROVIDER: 'env', RINGVAKT_ROOT_KEY: randomBytes(32).toString('base64') };

    // The schema, a tenant and its owner's token, then the test's own connections close.
    const handles = await openDatabase(loadConfig({ ...env, RINGVAKT_LOG_LEVEL: 'silent' }), logger, { applyMigrations: true });
    const tenant = await seedTenant(handles, 'pg-restart');
    await handles.close();

    const port = await freePort();
    let log = '';
    node = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'serve'], {
      env: { ...process.env, ...env, RINGVAKT_PORT: String(port), RINGVAKT_HOST: '127.0.0.1', RINGVAKT_BACKUP_INTERVAL_HOURS: '0', RINGVAKT_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    node.stdout?.on('data', (chunk: Buffer) => (log += chunk.toString()));
    node.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
    let exited: number | null | undefined;
    node.on('exit', (code) => (exited = code));
    const base = `http://127.0.0.1:${port}`;
    const readyz = async () => {
      try {
        const response = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(3_000) });
        return { status: response.status, body: (await response.json()) as { detail?: string } };
      } catch {
        return { status: 0, body: {} };
      }
    };
    await until(async () => (await readyz()).status === 200, 60_000);

    // Load: authenticated reads, two at a time, all along (bounded).
    const read = async () => {
      try {
        const response = await fetch(`${base}/api/v1/users/${tenant.owner.id}`, { headers: { authorization: `Bearer ${tenant.owner.token}` }, signal: AbortSignal.timeout(5_000) });
        await response.arrayBuffer();
        return response.status;
      } catch {
        return 0;
      }
    };
    const statuses: { at: number; done: number; status: number }[] = [];
    let running = true;
    const deadline = Date.now() + 90_000;
    const load = Promise.all(
      [0, 1].map(async () => {
        while (running && Date.now() < deadline) {
          const at = Date.now();
          const status = await read();
          statuses.push({ at, done: Date.now(), status });
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(statuses.length).toBeGreaterThan(10);
    expect(statuses.every((entry) => entry.status === 200)).toBe(true);

    // The database goes away.
    await cluster.stop();
    const down = Date.now();
    await until(async () => {
      const answer = await readyz();
      return answer.status === 503 && answer.body.detail === 'The database is unreachable.';
    }, 15_000);
    await new Promise((resolve) => setTimeout(resolve, 1_500));

    // … and comes back, on the same socket.
    // From this moment it may be back (it accepts connections before the start returns).
    const up = Date.now();
    cluster = await startEmbeddedPostgres({ dataDir: pgDir, logger });
    await until(async () => (await readyz()).status === 200, 30_000);
    const recovered = Date.now();
    // Requests succeed again, from fresh connections (none fails on a dead one for long).
    await until(() => statuses.slice(-20).length === 20 && statuses.slice(-20).every((entry) => entry.at > recovered && entry.status === 200), 20_000);
    running = false;
    await load;

    expect(exited).toBeUndefined();
    const during = statuses.filter((entry) => entry.at > down && entry.done < up);
    // Requests sent and answered while the database was down failed as 503 (try again), never as
    // a 500; one sent just before it came back may wait for it and succeed.
    expect(during.length).toBeGreaterThan(0);
    expect([...new Set(during.map((entry) => entry.status))]).toEqual([503]);
    process.stdout.write(`database restart: ready again ${recovered - up} ms after PostgreSQL was started again; ${during.length} requests failed while it was down\n`);
    expect(log).not.toMatch(/"level":60/);
  }, 150_000);
});
