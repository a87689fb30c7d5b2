import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/server/types.ts';
import { bearer, buildTestApp, capturingLogger } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { registerPersonalData } from './support/canary.ts';

/** Secrets and personal data sent to the API never appear in a log line or an error body. */
describe(`log and error hygiene (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let tenant: SeededTenant;
  const capture = capturingLogger('trace');

  beforeAll(async () => {
    db = await createTestDatabase();
    tenant = await seedTenant(db.handles, 'canary');
    app = await buildTestApp(db, { logger: capture.logger });
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('keeps passwords, tokens, phone numbers and e-mails out of logs and problem bodies', async () => {
    const password = 'Canary-Passphrase-4471-Fjord';
    const phone = '+4791234567';
    const email = 'kari.canary@example.no';
    // Also for the suite-wide canary, which searches this file's logs and audit rows on teardown.
    registerPersonalData(phone, password, email);
    const setupToken = new URL(tenant.setupLink).hash.replace('#token=', '');
    const bodies: string[] = [];
    const send = async (options: InjectOptions) => {
      const response = await app.inject(options);
      bodies.push(response.body);
      return response;
    };
    await send({ method: 'POST', url: '/api/v1/setup/complete', payload: { token: setupToken, password } });
    await send({ method: 'POST', url: '/api/v1/setup/complete', payload: { token: setupToken, password: `${password}-again` } });
    await send({ url: `/api/v1/users?after=${encodeURIComponent(phone)}`, headers: bearer(tenant.owner.token) });
    await send({ url: `/api/v1/users/${encodeURIComponent(email)}`, headers: bearer(tenant.owner.token) });
    await send({ url: '/api/v1/tenant', headers: { authorization: `Bearer ${tenant.agent.token}x` } });
    await send({ method: 'POST', url: '/api/v1/setup/complete', payload: `{"token":"${email}","password":"${phone}"`, headers: { 'content-type': 'application/json' } });

    expect(capture.lines.length).toBeGreaterThan(10);
    // The audit ledger and the metrics are searched as well: they must carry ids and digests only.
    const audit = await db.superQuery(`SELECT to_jsonb(e)::text AS row FROM ringvakt.audit_events e`);
    expect(audit.rows.length).toBeGreaterThan(0);
    const metrics = await app.inject({ url: '/metrics' });
    const everything = capture.lines.join('\n') + bodies.join('\n') + audit.rows.map((row) => row.row).join('\n') + metrics.body;
    for (const secret of [password, phone, encodeURIComponent(phone), email, encodeURIComponent(email), setupToken, tenant.owner.token, tenant.agent.token, tenant.owner.email, 'Owner of canary']) {
      expect(everything, secret).not.toContain(secret);
    }
    expect(capture.lines.some((line) => line.includes('"route":"/api/v1/users/:userId"'))).toBe(true);
  });
});
