import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type pg from 'pg';
import { recordAuditEvent } from '../src/audit/audit-event.ts';
import { sealTenantLedger } from '../src/audit/seal-audit-log.ts';
import { loadSigningKey } from '../src/audit/signing-key.ts';
import { pruneAuditLedger } from '../src/audit/retention.ts';
import { rotateTenantDataKey } from '../src/crypto/reencrypt.ts';
import { createFieldCipher } from '../src/crypto/field-cipher.ts';
import { createKeyring } from '../src/crypto/keyring.ts';
import { createLocalKeyProvider } from '../src/crypto/root-keys/local-key-provider.ts';
import { defaultSecurityPolicy, saveSecurityPolicy } from '../src/modules/access/security-policy.ts';
import { createSession } from '../src/modules/auth/sessions.ts';
import { replaceRecoveryCodes } from '../src/modules/auth/mfa.ts';
import { takeAccountAttempt } from '../src/modules/auth/throttle.ts';
import { createMailer } from '../src/modules/mail/mailer.ts';
import { createContact, takeRevealBudget } from '../src/modules/contacts/contacts.service.ts';
import { addSuppression, checkSuppressed, replaceRegistry } from '../src/modules/suppression/suppression.service.ts';
import { createRequest } from '../src/privacy/requests.ts';
import { createImport } from '../src/modules/imports/imports.routes.ts';
import { chunkAt } from '../src/modules/imports/import-upload.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reserveDue } from '../src/dialer/hopper.ts';
import { setAgentState } from '../src/modules/agents/agent-states.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';

/** Row-level security as the runtime role sees it, on the embedded server and on PostgreSQL 15. */
describe(`tenant isolation (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let a: SeededTenant;
  let b: SeededTenant;
  let runtime: pg.Client;
  let tenantTables: string[];

  beforeAll(async () => {
    db = await createTestDatabase({ ownerAccess: true });
    a = await seedTenant(db.handles, 'tenant-a');
    b = await seedTenant(db.handles, 'tenant-b');
    // Rows in the key tables too, written the way the product writes them.
    const root = createLocalKeyProvider(path.join(db.config.dataDir, 'secrets', 'root-keys.json'));
    const keyring = createKeyring(root);
    const cipher = createFieldCipher(keyring);
    const crypto = { cipher, keyring };
    const signingKey = await loadSigningKey(db.handles.systemDb, root);
    for (const tenant of [a, b]) {
      await db.handles.forTenant(tenant.tenantId).transaction(async (trx) => {
        await cipher.encrypt(trx, { table: 't', recordId: tenant.owner.id, field: 'f' }, 'x', tenant.owner.id);
        await cipher.blindIndex(trx, 'i', 'x');
        for (let index = 0; index < 3; index += 1) await recordAuditEvent(trx, { action: 'user.create', outcome: 'success', actor: { type: 'system' } });
        // Identity rows, written by the services that write them.
        const policy = { ...defaultSecurityPolicy, ipAllowList: ['127.0.0.0/8'] };
        await saveSecurityPolicy(trx, policy);
        await createSession(trx, { userId: tenant.owner.id, stage: 'active', methods: ['password'], policy });
        await trx.insertInto('roles').values({ name: 'reviewer', permissions: ['audit:read'] }).execute();
        await trx.insertInto('trusted_devices').values({ user_id: tenant.owner.id, token_hash: Buffer.alloc(32, 7), expires_at: new Date(Date.now() + 86_400_000) }).execute();
        await replaceRecoveryCodes(trx, tenant.owner.id);
        await takeAccountAttempt(trx, Buffer.alloc(32, 1), new Date());
        await createMailer(cipher, db.logger).queue(trx, 'test', { to: tenant.owner.email, subject: 's', text: 't' });
        await trx.insertInto('webauthn_credentials').values({ user_id: tenant.owner.id, credential_id: `cred-${tenant.slug}-0123456789`, public_key: Buffer.alloc(77, 1), name: 'key' }).execute();
        await trx.insertInto('webauthn_challenges').values({ challenge: `${tenant.slug.replace('-', '_')}_challenge_0123456789abcdef0123456789`, purpose: 'login', session_id: null, expires_at: new Date(Date.now() + 60_000) }).execute();
        await trx.insertInto('oidc_providers').values({ issuer: 'https://idp.example', client_id: 'ringvakt', role_mappings: '[]' }).execute();
        await trx.insertInto('oidc_login_states').values({ state_hash: Buffer.alloc(32, 3), nonce: 'n'.repeat(20), code_verifier_ciphertext: Buffer.alloc(40, 2), browser_hash: Buffer.alloc(32, 4), expires_at: new Date(Date.now() + 60_000) }).execute();
        await trx.insertInto('sso_identities').values({ issuer: 'https://idp.example', subject: 'subject-1', user_id: tenant.owner.id }).execute();
        // Contacts, lists, consent, suppression and imports.
        await trx.insertInto('contact_fields').values({ key: 'segment', label: 'Segment', type: 'text', personal: false }).execute();
        const contact = await createContact(trx, crypto, { name: 'Tenancy Person', phones: [{ kind: 'mobile', number: '+4790000001' }], fields: { segment: 'a' } }, { defaultRegion: 'NO' });
        await takeRevealBudget(trx, tenant.owner.id, 1);
        const campaign = await trx.insertInto('campaigns').values({ name: 'Spring' }).returning('id').executeTakeFirstOrThrow();
        const list = await trx.insertInto('contact_lists').values({ name: 'List', default_region: 'NO', campaign_id: campaign.id }).returning('id').executeTakeFirstOrThrow();
        await trx.insertInto('contact_list_members').values({ list_id: list.id, contact_id: contact.id }).execute();
        await trx.insertInto('consent_events').values({ contact_id: contact.id, purpose: 'sales', action: 'object', source: 'call', occurred_at: new Date(), recorded_by: 'test' }).execute();
        await addSuppression(trx, crypto, { channel: 'phone', value: '+4790000001', scope: 'tenant', reason: 'objection', source: 'test', createdBy: 'test' });
        await replaceRegistry(trx, crypto, { format: 'e164_list', name: 'Registry', validUntil: null, createdBy: 'test' }, (async function* () {
          yield ['+4790000002'];
        })());
        expect(await checkSuppressed(trx, crypto, 'phone', '+4790000001', { context: 'check' })).toHaveLength(1);
        const importId = await createImport(trx, { listId: list.id, mapping: { Navn: 'name' }, onExisting: 'link', onSuppressed: 'skip' }, 'test');
        await trx.insertInto('contact_import_chunks').values({ import_id: importId, seq: 0, ciphertext: await cipher.encryptBytes(trx, chunkAt(importId, 0), Buffer.from('Navn\nx\n')) }).execute();
        await trx.insertInto('contact_import_rejects').values({ import_id: importId, row_number: 2, reason: 'no_identifier', column_name: null, detail: 'no phone number, e-mail or external id' }).execute();
        // The contact created above moved the tenant's import epoch already (migration 0029).
        await trx.updateTable('contact_import_epochs').set({ import_id: importId, lease_owner: 'test' }).execute();
        // The campaign engine: hopper, an attempt, an agent's state and its history.
        await trx.insertInto('campaign_contacts').values({ campaign_id: campaign.id, contact_id: contact.id }).execute();
        const [reserved] = await reserveDue(trx, campaign.id, 1, 'tenancy', new Date(Date.now() + 1000));
        await trx.insertInto('recordings').values({ attempt_id: reserved?.id as string, campaign_id: campaign.id, contact_id: contact.id, started_at: new Date() }).execute();
        await setAgentState(trx, tenant.agent.id, { state: 'available', campaignId: campaign.id, now: new Date() });
        const queue = await trx.insertInto('queues').values({ name: 'Support', number: '+4722000001' }).returning('id').executeTakeFirstOrThrow();
        await trx.insertInto('inbound_calls').values({ id: '00000000-0000-4000-8000-0000000000c1', queue_id: queue.id, first_queue_id: queue.id, offered_at: new Date() }).execute();
        await trx.insertInto('campaign_pacing').values({ campaign_id: campaign.id, decided_at: new Date(), dialer: 'tenancy', pacer: 'progressive', lines: 1, explanation: 'test' }).execute();
        // Privacy: requests with their timeline and an export, erasure ledger, retention, holds, registers.
        const request = await createRequest(trx, crypto, { kind: 'access', channel: 'email', requester: { name: 'Tenancy Requester' }, identifiers: { phone: '+4790000001' }, receivedAt: new Date() }, 'test');
        await trx.insertInto('privacy_exports').values({ request_id: request.id, token_sha256: randomBytes(32), bundle_sealed: Buffer.alloc(40, 1), bundle_bytes: 40, files: 1, created_by: 'test', expires_at: new Date(Date.now() + 60_000) }).execute();
        await trx.insertInto('erasure_ledger').values({ subject_id: contact.id, method: 'crypto_shredding', reason: 'operator' }).execute();
        await trx.insertInto('contact_activity').values({ contact_id: contact.id, last_at: new Date() }).execute();
        await trx.insertInto('privacy_reminders_sent').values({ kind: 'processor.dpa', item_id: contact.id, due_at: new Date() }).execute();
        await trx.insertInto('privacy_profiles').values({ controller_name: 'Tenancy AS' }).execute();
        await trx.insertInto('retention_policies').values({ category: 'recordings', retain_days: 30, action: 'delete', updated_by: 'test' }).execute();
        await trx.insertInto('legal_holds').values({ scope: 'campaign', campaign_id: campaign.id, reason: 'test', created_by: 'test' }).execute();
        // Security monitoring: a tuned rule, an alert, the detector's cursor, a webhook and a delivery.
        await trx.insertInto('detection_rule_settings').values({ rule_id: 'auth.credential_stuffing', enabled: true, threshold: 30, window_seconds: 300, severity: 'high', updated_by: 'test' }).execute();
        const alert = await trx.insertInto('security_alerts').values({ rule_id: 'privilege.mfa_removed', severity: 'high', subject: 'user:x', summary: 'test', first_seen: new Date(), last_seen: new Date() }).returning('id').executeTakeFirstOrThrow();
        await trx.insertInto('detection_cursors').values({ last_leaf: -1 }).execute();
        const hook = await trx.insertInto('alert_webhooks').values({ url: 'https://siem.example/hook', secret_ciphertext: Buffer.alloc(40, 5), created_by: 'test' }).returning('id').executeTakeFirstOrThrow();
        await trx.insertInto('alert_deliveries').values({ alert_id: alert.id, webhook_id: hook.id, hits: 1 }).execute();
        await trx.insertInto('retention_sweeps').values({ dry_run: true, node: 'test', requested_by: 'test' }).execute();
        await trx.insertInto('processors').values({ name: 'Carrier', service: 'telephony', location: 'EU' }).execute();
        const breach = await trx.insertInto('breaches').values({ reference: 'BR-2026-001', title: 'T', description: 'D', detected_at: new Date(), aware_at: new Date(), created_by: 'test' }).returning('id').executeTakeFirstOrThrow();
        await trx.insertInto('breach_events').values({ breach_id: breach.id, actor: 'test', entry: 'recorded' }).execute();
        // Incident response and security awareness.
        await trx.insertInto('security_contacts').values({ user_id: tenant.owner.id, created_by: 'test' }).execute();
        await trx.insertInto('security_on_call').values({ user_id: tenant.owner.id, starts_at: new Date(), ends_at: new Date(Date.now() + 3_600_000), created_by: 'test' }).execute();
        const incident = await trx.insertInto('incidents').values({ reference: 'INC-2026-001', title: 'T', severity: 'high', detected_at: new Date(Date.now() - 1000), opened_by: 'test', breach_id: breach.id }).returning('id').executeTakeFirstOrThrow();
        await trx.insertInto('incident_events').values({ incident_id: incident.id, actor: 'test', kind: 'opened', entry: 'opened' }).execute();
        await trx.insertInto('incident_alerts').values({ incident_id: incident.id, alert_id: alert.id }).execute();
        await trx.insertInto('incident_audit_events').values({ incident_id: incident.id, audit_event_id: 1 }).execute();
        await trx.insertInto('blocked_networks').values({ network: '198.51.100.0/24', reason: 'test', incident_id: incident.id, created_by: 'test' }).execute();
        const document = await trx.insertInto('security_documents').values({ kind: 'policy', title: 'Policy', version: '1', url: 'https://policy.example', content_sha256: Buffer.alloc(32, 1), published_by: 'test' }).returning('id').executeTakeFirstOrThrow();
        await trx.insertInto('security_attestations').values({ user_id: tenant.owner.id, document_id: document.id }).execute();
        const run = await trx.insertInto('compliance_runs').values({ started_at: new Date(), finished_at: new Date(), trigger: 'request', catalogue_version: 't', measured_by: 'test', digest: Buffer.alloc(32, 1), passed: 1, failed: 0 }).returning('id').executeTakeFirstOrThrow();
        await trx.insertInto('compliance_results').values({ run_id: run.id, check_id: 'identity.mfa_privileged', status: 'pass', measured: 'test', population: 1, failures: 0, sample: [] }).execute();
        const review = await trx.insertInto('access_reviews').values({ title: 'Q', due_at: new Date(), created_by: 'test' }).returning('id').executeTakeFirstOrThrow();
        await trx.insertInto('access_review_items').values({ review_id: review.id, user_id: tenant.owner.id, role: 'owner', permissions: [] }).execute();
        await trx.insertInto('audit_witness_deliveries').values({ witness: 'file', tree_size: 1, delivered_at: new Date() }).execute();
        await trx.insertInto('compliance_documents').values({ kind: 'control_evidence', control_id: 'RV-ORG-01', title: 'Screening procedure', url: 'https://hr.example/screening', evidence_date: '2026-01-01', expires_on: '2027-01-01', added_by: 'test' }).execute();
        await trx.insertInto('security_working_hours').values({ time_zone: 'Europe/Oslo', work_from: 8, work_to: 16, work_days: [1, 2, 3, 4, 5], updated_by: 'test' }).execute();
      });
      await db.handles.forTenant(tenant.tenantId).transaction((trx) => sealTenantLedger(trx, signingKey));
      await pruneAuditLedger(db.handles, signingKey, { tenantId: tenant.tenantId, cutoff: new Date(), reason: 'test', executedBy: 'test' });
      await db.handles.forTenant(tenant.tenantId).transaction(async (trx) => rotateTenantDataKey(trx, (await db.handles.crypto()).keyring, { type: 'operator' }));
    }
    runtime = await db.runtimeClient();
    const tables = await db.superQuery<{ table_name: string }>(
      `SELECT table_name FROM information_schema.columns
        WHERE table_schema = 'ringvakt' AND column_name = 'tenant_id' ORDER BY table_name`,
    );
    tenantTables = tables.rows.map((row) => row.table_name);
  });
  afterAll(async () => {
    await runtime?.end();
    await db?.drop();
  });

  const inTenant = async <T>(tenantId: string, work: () => Promise<T>): Promise<T> => {
    await runtime.query('BEGIN');
    try {
      await runtime.query(`SELECT set_config('app.tenant_id', $1, true)`, [tenantId]);
      return await work();
    } finally {
      await runtime.query('ROLLBACK');
    }
  };

  it('finds the tenant tables it is meant to guard', () => {
    expect(tenantTables).toEqual(expect.arrayContaining(['api_tokens', 'audit_checkpoints', 'audit_events', 'audit_retention_records', 'audit_tree_nodes', 'key_rotation_jobs', 'setup_tokens', 'subject_keys', 'tenant_keys', 'users']));
  });

  it('with no tenant set, every tenant table reads as empty, though rows exist', async () => {
    for (const table of [...tenantTables, 'tenants']) {
      const seen = await runtime.query(`SELECT count(*)::int AS n FROM ${table}`);
      expect(seen.rows[0]!.n, table).toBe(0);
      const real = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.${table}`);
      expect(real.rows[0]!.n, table).toBeGreaterThan(0);
    }
  });

  it('with no tenant set, inserts fail even when they name a tenant', async () => {
    await expect(
      runtime.query(`INSERT INTO users (tenant_id, email, display_name, role) VALUES ($1, 'x@y.example', 'X', 'agent')`, [a.tenantId]),
    ).rejects.toThrow(/row-level security/);
    await expect(runtime.query(`INSERT INTO users (email, display_name, role) VALUES ('x@y.example', 'X', 'agent')`)).rejects.toThrow(
      /row-level security|null value in column "tenant_id"/,
    );
  });

  it('a transaction-local tenant does not outlive its transaction on a pooled connection', async () => {
    await inTenant(a.tenantId, async () => {
      const inside = await runtime.query('SELECT count(*)::int AS n FROM users');
      expect(inside.rows[0]!.n).toBe(2);
    });
    const after = await runtime.query('SELECT count(*)::int AS n FROM users');
    expect(after.rows[0]!.n).toBe(0);
  });

  it('tenant A never reads tenant B rows, by id or by naming tenant B', async () => {
    await inTenant(a.tenantId, async () => {
      const byId = await runtime.query('SELECT id FROM users WHERE id = $1', [b.owner.id]);
      expect(byId.rowCount).toBe(0);
      const byTenant = await runtime.query('SELECT id FROM users WHERE tenant_id = $1', [b.tenantId]);
      expect(byTenant.rowCount).toBe(0);
      const tenants = await runtime.query('SELECT id FROM tenants');
      expect(tenants.rows.map((row) => row.id)).toEqual([a.tenantId]);
      const tokens = await runtime.query('SELECT tenant_id FROM api_tokens');
      expect(new Set(tokens.rows.map((row) => row.tenant_id))).toEqual(new Set([a.tenantId]));
      const joined = await runtime.query(
        'SELECT u.id FROM users u JOIN api_tokens t ON t.user_id = u.id WHERE t.tenant_id = $1',
        [b.tenantId],
      );
      expect(joined.rowCount).toBe(0);
    });
  });

  it('tenant A never updates or deletes tenant B rows, and cannot move rows to B', async () => {
    await inTenant(a.tenantId, async () => {
      const updated = await runtime.query(`UPDATE users SET status = 'disabled' WHERE id = $1`, [b.owner.id]);
      expect(updated.rowCount).toBe(0);
      const deleted = await runtime.query('DELETE FROM api_tokens WHERE tenant_id = $1', [b.tenantId]);
      expect(deleted.rowCount).toBe(0);
      await expect(
        runtime.query(`INSERT INTO users (tenant_id, email, display_name, role) VALUES ($1, 'x@y.example', 'X', 'agent')`, [b.tenantId]),
      ).rejects.toThrow(/row-level security/);
    });
    await inTenant(a.tenantId, async () => {
      await expect(runtime.query('UPDATE users SET email = email WHERE id = $1 RETURNING id', [a.owner.id])).resolves.toBeTruthy();
    });
    const b_owner = await db.superQuery('SELECT status FROM ringvakt.users WHERE id = $1', [b.owner.id]);
    expect(b_owner.rows[0]!.status).toBe('active');
    const b_tokens = await db.superQuery('SELECT count(*)::int AS n FROM ringvakt.api_tokens WHERE tenant_id = $1', [b.tenantId]);
    expect(b_tokens.rows[0]!.n).toBe(2);
  });

  it('the tenant handle sees only its own tenant through every table', async () => {
    const seen = await db.handles.forTenant(a.tenantId).transaction(async (trx) => ({
      users: await trx.selectFrom('users').select('tenant_id').execute(),
      tokens: await trx.selectFrom('api_tokens').select('tenant_id').execute(),
      setup: await trx.selectFrom('setup_tokens').select('tenant_id').execute(),
      tenants: await trx.selectFrom('tenants').select('id').execute(),
    }));
    for (const rows of [seen.users, seen.tokens, seen.setup]) {
      expect(rows.length).toBeGreaterThan(0);
      expect(rows.every((row) => row.tenant_id === a.tenantId)).toBe(true);
    }
    expect(seen.tenants).toEqual([{ id: a.tenantId }]);
  });

  it('a read-only tenant transaction refuses writes', async () => {
    await expect(
      db.handles.forTenant(a.tenantId).read((trx) => trx.updateTable('users').set({ status: 'disabled' }).execute()),
    ).rejects.toThrow(/read-only transaction/);
    const unchanged = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.users WHERE status = 'disabled'`);
    expect(unchanged.rows[0]!.n).toBe(0);
  });

  it('many interleaved reads and writes of two tenants on a small pipelined pool never see each other', async () => {
    const tenants = [a, b];
    const work = Array.from({ length: 300 }, async (_, index) => {
      const tenant = tenants[index % 2]!;
      const handle = db.handles.forTenant(tenant.tenantId);
      const rows =
        index % 3 === 0
          ? await handle.transaction((trx) => trx.selectFrom('users').select('tenant_id').execute())
          : await handle.read((trx) => trx.selectFrom('users').select('tenant_id').execute());
      return { tenant: tenant.tenantId, seen: rows.map((row) => row.tenant_id) };
    });
    const results = await Promise.all(work);
    for (const result of results) {
      expect(result.seen.length).toBeGreaterThan(0);
      expect(result.seen.every((seen) => seen === result.tenant)).toBe(true);
    }
    // And no tenant stays behind on the pool's connections afterwards.
    const leftovers = await Promise.all(
      Array.from({ length: 40 }, () => db.handles.pool.query<{ n: number; tenant: string | null }>(`SELECT count(*)::int AS n, current_tenant_id()::text AS tenant FROM users`)),
    );
    expect(leftovers.map((result) => result.rows[0])).toEqual(Array(40).fill({ n: 0, tenant: null }));
  });

  it('the runtime role cannot switch to the owner, change policies or tables, or turn row security off', async () => {
    const attempts: [string, RegExp][] = [
      [`SET ROLE ${db.handles.roles.owner}`, /permission denied/],
      ['ALTER TABLE users DISABLE ROW LEVEL SECURITY', /must be owner/],
      ['ALTER TABLE users NO FORCE ROW LEVEL SECURITY', /must be owner/],
      ['DROP POLICY tenant_isolation ON users', /must be owner/],
      [`CREATE POLICY open_door ON users USING (true)`, /must be owner/],
      ['ALTER TABLE users ADD COLUMN note text', /must be owner/],
      ['DROP TABLE users', /must be owner/],
      ['TRUNCATE users', /permission denied/],
      ['CREATE TABLE ringvakt.sneaky (id int)', /permission denied/],
      ['CREATE OR REPLACE FUNCTION current_tenant_id() RETURNS uuid LANGUAGE sql AS $$ SELECT NULL::uuid $$', /must be owner|permission denied/],
      ['SET SESSION AUTHORIZATION postgres', /permission denied/],
      ['INSERT INTO tenants (slug, name) VALUES ($$x$$, $$x$$)', /permission denied/],
      ['UPDATE schema_migrations SET checksum = $$x$$', /permission denied/],
    ];
    for (const [statement, expected] of attempts) {
      await expect(runtime.query(statement), statement).rejects.toThrow(expected);
    }
    // With row_security off, a query that a policy would filter fails instead of bypassing it.
    await runtime.query('SET row_security = off');
    try {
      await expect(runtime.query('SELECT * FROM users')).rejects.toThrow(/row-level security/);
    } finally {
      await runtime.query('RESET row_security');
    }
    const rights = await db.superQuery(
      'SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1',
      [db.handles.roles.runtime],
    );
    expect(rights.rows[0]!).toEqual({ rolsuper: false, rolbypassrls: false, rolcreaterole: false, rolcreatedb: false });
  });
});
