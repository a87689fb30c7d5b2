import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/server/types.ts';
import { bearer, buildTestApp } from './support/app.ts';
import { until } from './support/until.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';


/** Cached authentication never outlives a revocation made anywhere, even by another node. */
describe(`cached credentials and revocation (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let tenant: SeededTenant;
  beforeAll(async () => {
    db = await createTestDatabase();
    tenant = await seedTenant(db.handles, 'cache');
    app = await buildTestApp(db);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const status = async (token: string) => (await app.inject({ url: '/api/v1/tenant', headers: bearer(token) })).statusCode;

  it('a token revoked by another connection stops working within a second', async () => {
    expect(await status(tenant.agent.token)).toBe(200);
    expect(await status(tenant.agent.token)).toBe(200); // now served from the cache
    await db.superQuery(`UPDATE ringvakt.api_tokens SET revoked_at = now() WHERE user_id = $1`, [tenant.agent.id]);
    const took = await until(async () => (await status(tenant.agent.token)) === 401, 2000);
    expect(took).toBeLessThan(1000);
  });

  it('a user disabled or given another role elsewhere loses the cached rights at once', async () => {
    expect((await app.inject({ url: '/api/v1/users', headers: bearer(tenant.owner.token) })).statusCode).toBe(200);
    await db.superQuery(`UPDATE ringvakt.users SET role = 'agent' WHERE id = $1`, [tenant.owner.id]);
    await until(async () => (await app.inject({ url: '/api/v1/users', headers: bearer(tenant.owner.token) })).statusCode === 403, 2000);
    await db.superQuery(`UPDATE ringvakt.users SET status = 'disabled' WHERE id = $1`, [tenant.owner.id]);
    await until(async () => (await status(tenant.owner.token)) === 401, 2000);
  });

  it('while the notification connection is down, every request is checked against the database', async () => {
    const other = await seedTenant(db.handles, 'cache-down');
    expect(await status(other.agent.token)).toBe(200);
    await db.superQuery(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'ringvakt-listen' AND datname = current_database()`,
    );
    await until(() => !db.handles.changes.isUp(), 2000);
    await db.superQuery(`UPDATE ringvakt.api_tokens SET revoked_at = now() WHERE user_id = $1`, [other.agent.id]);
    expect(await status(other.agent.token)).toBe(401);
    expect(await status(other.owner.token)).toBe(200);
    await until(() => db.handles.changes.isUp(), 5000);
    await db.superQuery(`UPDATE ringvakt.api_tokens SET revoked_at = now() WHERE user_id = $1`, [other.owner.id]);
    await until(async () => (await status(other.owner.token)) === 401, 2000);
  });
});
