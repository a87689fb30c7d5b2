import http from 'node:http';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/logger.ts';
import { startServer } from '../src/server/serve.ts';
import { adminQuery, serverLabel, urlFor } from './support/database.ts';
import { seedTenant } from './support/seed.ts';
import { openDatabase } from '../src/db/database.ts';

const get = (url: string, headers: Record<string, string> = {}, agent?: http.Agent) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    http
      .get(url, { headers, ...(agent ? { agent } : {}) }, (response) => {
        let body = '';
        response.on('data', (chunk) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });

describe(`graceful shutdown (${serverLabel()} server)`, () => {
  const name = `rv_test_serve_${process.pid}`;
  beforeAll(async () => {
    await adminQuery(`CREATE DATABASE ${name}`);
  });
  afterAll(async () => {
    await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await adminQuery(`DROP ROLE IF EXISTS ${name}_app`);
    await adminQuery(`DROP ROLE IF EXISTS ${name}_owner`);
  });

  it('finishes in-flight requests, refuses new work, then closes the pool', async () => {
    const config = loadConfig({ DATABASE_URL: urlFor(name), RINGVAKT_PORT: '0', RINGVAKT_DATA_DIR: `/tmp/${name}` });
    const logger = createLogger('silent');
    const seeding = await openDatabase(config, logger, { applyMigrations: true });
    const tenant = await seedTenant(seeding, 'drain');
    await seeding.close();

    const server = await startServer(config, logger);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    expect((await get(`${server.url}/readyz`, {}, agent)).status).toBe(200);

    // Hold a lock so one request is still running when the shutdown starts.
    const blocker = new pg.Client({ connectionString: urlFor(name) });
    await blocker.connect();
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE ringvakt.users IN ACCESS EXCLUSIVE MODE');
    const inFlight = get(`${server.url}/api/v1/users`, { authorization: `Bearer ${tenant.owner.token}` });
    await new Promise((resolve) => setTimeout(resolve, 200));

    const stopped = server.stop('test');
    // The listener closes once the node has handed its campaigns over (a few queries): until then
    // /readyz says 503. Asked again for up to 5 s — while the request in flight is still held.
    for (const started = Date.now(); Date.now() - started < 5_000; ) {
      const ready = await get(`${server.url}/readyz`).catch(() => undefined);
      if (!ready) break;
      expect(ready.status).toBe(503);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await expect(get(`${server.url}/readyz`)).rejects.toThrow(/ECONNREFUSED/);
    await blocker.query('COMMIT');
    await blocker.end();

    const finished = await inFlight;
    expect(finished.status).toBe(200);
    expect(JSON.parse(finished.body).items).toHaveLength(2);
    await stopped;
    agent.destroy();
    const sessions = await adminQuery(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND usename = $2`, [name, `${name}_app`]);
    expect(sessions.rows[0]!.n).toBe(0);
  });
});
