import { spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyTrustReport, type SignedTrustReport } from '../src/compliance/trust-report.ts';
import { sealTenantLedger } from '../src/audit/seal-audit-log.ts';
import { loadSigningKey } from '../src/audit/signing-key.ts';
import { recordAuditEvent } from '../src/audit/audit-event.ts';
import { CHECKS } from '../src/compliance/checks.ts';
import { DIAL_CHECKS as DIAL_CHECK_NAMES } from '../src/dialer/dial-checks.ts';
import { loadCatalogue, parseCatalogue } from '../src/compliance/catalogue.ts';
import { runEvidence, runScheduledEvidence } from '../src/compliance/evidence.ts';
import { answerQuestionnaire, loadQuestionnaire, parseQuestionnaire, type AnsweredQuestionnaire } from '../src/compliance/questionnaire.ts';
import { parse } from 'csv-parse/sync';
import type { App } from '../src/server/types.ts';
import { createUser } from '../src/modules/users/users.repo.ts';
import { createContact } from '../src/modules/contacts/contacts.service.ts';
import { addSuppression } from '../src/modules/suppression/suppression.service.ts';
import { openQuarterlyReview, quarterOf } from '../src/compliance/access-reviews.ts';
import { send, sessionFor, type Browser } from './support/auth.ts';
import { buildTestApp, PUBLIC_URL } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';

/**
 * The compliance center's automated checks, each made to fail: the control is broken directly in
 * the database (as a careless administrator or an attacker would leave it), the check must say
 * fail, the control is restored, and the check must say pass again. A check that cannot fail is
 * a defect, so every check of the registry must appear below.
 */
describe(`compliance evidence: every check fails when its control is broken (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let tenant: SeededTenant;
  let owner: Browser;
  let leaver: string;
  let revoked: string;
  let campaignId: string;
  let contactId: string;
  let erasedId: string;
  const attemptId = randomUUID();
  const DIAL_CHECKS = [...DIAL_CHECK_NAMES];
  const q = (text: string, values: unknown[] = []) => db.superQuery(text, values);

  const seal = async () => {
    const key = await loadSigningKey(db.handles.systemDb, (await db.handles.crypto()).root);
    await db.handles.forTenant(tenant.tenantId).transaction((trx) => sealTenantLedger(trx, key));
  };
  const statusOf = async (checkId: string, sealFirst = true) => {
    if (sealFirst) await seal();
    const run = await runEvidence(db.handles.forTenant(tenant.tenantId), { crypto: await db.handles.crypto() }, 'request', { type: 'operator' });
    const result = run.results.find((entry) => entry.checkId === checkId);
    if (!result) throw new Error(`no result for ${checkId}`);
    return result;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    tenant = await seedTenant(db.handles, 'compliance');
    app = await buildTestApp(db);
    owner = await sessionFor(db.handles, tenant.tenantId, tenant.owner.id);
    // A tenant that keeps every control: the owner has a second factor, someone is on call, the
    // policy is published and acknowledged, the ledger is verified, a backup and a drill are fresh.
    await q(`UPDATE ringvakt.users SET totp_secret_ciphertext = '\\x00' WHERE id = $1`, [tenant.owner.id]);
    await q(`INSERT INTO ringvakt.security_contacts (tenant_id, user_id, created_by) VALUES ($1, $2, 'test')`, [tenant.tenantId, tenant.owner.id]);
    // People beyond the seed: one still working (with a session), one whose access a review revoked.
    const cipher = (await db.handles.crypto()).cipher;
    const makeUser = async (email: string, status: 'active' | 'disabled') => {
      const user = await db.handles.forTenant(tenant.tenantId).transaction((trx) => createUser(trx, cipher, { email, displayName: email, role: 'agent' }));
      await q(`UPDATE ringvakt.users SET status = $2 WHERE id = $1`, [user.id, status]);
      return user.id;
    };
    leaver = await makeUser('leaver@compliance.example', 'active');
    revoked = await makeUser('revoked@compliance.example', 'disabled');
    await q(`INSERT INTO ringvakt.sessions (tenant_id, user_id, token_hash, stage, methods, expires_at) VALUES ($1, $2, $3, 'active', '{password}', now() + interval '1 hour')`, [tenant.tenantId, leaver, Buffer.alloc(32, 3)]);
    await q(`INSERT INTO ringvakt.tenant_security_policies (tenant_id, ip_allow_list) VALUES ($1, '{127.0.0.0/16,2001:db8:1::/48}')`, [tenant.tenantId]);
    const policy = await q(`INSERT INTO ringvakt.security_documents (tenant_id, kind, title, version, content, content_sha256, published_by) VALUES ($1, 'policy', 'Policy', '1', 'Be careful.', '\\x${'ab'.repeat(32)}', 'test') RETURNING id`, [tenant.tenantId]);
    for (const user of [tenant.owner.id, tenant.agent.id, leaver]) await q(`INSERT INTO ringvakt.security_attestations (tenant_id, user_id, document_id) VALUES ($1, $2, $3)`, [tenant.tenantId, user, policy.rows[0]!.id]);
    await q(`INSERT INTO ringvakt.detection_cursors (tenant_id, last_leaf, ledger_checked_at) VALUES ($1, -1, now())`, [tenant.tenantId]);
    const review = await q(`INSERT INTO ringvakt.access_reviews (tenant_id, title, due_at, created_by) VALUES ($1, 'Q4', now(), 'test') RETURNING id`, [tenant.tenantId]);
    await q(`INSERT INTO ringvakt.access_review_items (tenant_id, review_id, user_id, role, permissions, decision, decided_by, decided_at) VALUES ($1, $2, $3, 'agent', '{calls:handle}', 'revoke', 'test', now())`, [tenant.tenantId, review.rows[0]!.id, revoked]);
    await q(`UPDATE ringvakt.access_reviews SET state = 'completed', completed_at = now(), completed_by = 'test' WHERE id = $1`, [review.rows[0]!.id]);
    // A campaign that dials under its profile, screened against a fresh registry: one person called
    // (consent with its evidence, the call recorded), one objecting and suppressed, one erased.
    const campaign = await q(`INSERT INTO ringvakt.campaigns (tenant_id, name, state, jurisdiction, amd, started_at) VALUES ($1, 'Winter', 'active', 'nordic_eu', false, now() - interval '25 hours') RETURNING id`, [tenant.tenantId]);
    campaignId = (campaign.rows[0] as { id: string }).id;
    await q(`INSERT INTO ringvakt.suppression_registries (tenant_id, format, name, entries) VALUES ($1, 'no_reservasjon', 'Reservasjonsregisteret', 10)`, [tenant.tenantId]);
    const [called, erased] = [randomUUID(), randomUUID()];
    contactId = called;
    erasedId = erased;
    await q(`INSERT INTO ringvakt.contacts (tenant_id, id) VALUES ($1, $2)`, [tenant.tenantId, called]);
    await q(`INSERT INTO ringvakt.contacts (tenant_id, id, status, erased_at) VALUES ($1, $2, 'erased', now())`, [tenant.tenantId, erased]);
    await q(`INSERT INTO ringvakt.subject_keys (tenant_id, subject_id, destroyed_at) VALUES ($1, $2, now())`, [tenant.tenantId, erased]);
    await q(`INSERT INTO ringvakt.erasure_ledger (tenant_id, subject_id, method, reason) VALUES ($1, $2, 'crypto_shredding', 'request')`, [tenant.tenantId, erased]);
    await q(`INSERT INTO ringvakt.consent_events (tenant_id, contact_id, purpose, action, basis, source, evidence_ref, occurred_at, recorded_by) VALUES ($1, $2, 'sales', 'grant', 'consent', 'web form', 'form-2026-0042', now(), 'test')`, [tenant.tenantId, called]);
    // The objection goes the product's way: a contact with two numbers objects through the API, and both are suppressed.
    const crypto = await db.handles.crypto();
    const objecting = (await db.handles.forTenant(tenant.tenantId).transaction((trx) => createContact(trx, crypto, { name: 'Objecting person', phones: [{ kind: 'mobile', number: '+4790000021' }, { kind: 'home', number: '+4722000021' }] }, { defaultRegion: 'NO' }))).id;
    const objected = await send(app, owner, 'POST', `/api/v1/contacts/${objecting}/consents`, { purpose: 'sales', action: 'object', source: 'phone call' });
    if (objected.statusCode !== 201) throw new Error(`objection not recorded: ${objected.body}`);
    await q(`INSERT INTO ringvakt.dial_attempts (tenant_id, id, campaign_id, contact_id, attempt, state, dialer, checks, dialed_at, answered_at, outcome, ended_at) VALUES ($1, $2, $3, $4, 1, 'ended', 'test', $5, now() - interval '2 hours', now() - interval '119 minutes', 'live', now() - interval '115 minutes')`, [tenant.tenantId, attemptId, campaignId, called, DIAL_CHECKS]);
    await q(`INSERT INTO ringvakt.recordings (tenant_id, attempt_id, campaign_id, contact_id, state, started_at, saved_at, audio_ciphertext) VALUES ($1, $2, $3, $4, 'saved', now() - interval '9 minutes', now() - interval '5 minutes', '\\x5256010000')`, [tenant.tenantId, attemptId, campaignId, called]);
    for (const category of ['contacts_inactive', 'interactions', 'notes', 'recordings', 'audit_events', 'import_rejects', 'exports']) {
      await q(`INSERT INTO ringvakt.retention_policies (tenant_id, category, retain_days, action, updated_by) VALUES ($1, $2, 400, $3, 'test')`, [tenant.tenantId, category, category === 'contacts_inactive' || category === 'interactions' ? 'anonymise' : 'delete']);
    }
    await q(`INSERT INTO ringvakt.retention_sweeps (tenant_id, dry_run, state, node, requested_by, finished_at) VALUES ($1, false, 'done', 'test', 'test', now())`, [tenant.tenantId]);
    await q(`INSERT INTO ringvakt.privacy_profiles (tenant_id, controller_name, dpo_email) VALUES ($1, 'Compliance AS', 'dpo@compliance.example')`, [tenant.tenantId]);
    // A witness has taken the ledger's heads.
    await q(`INSERT INTO ringvakt.audit_witness_deliveries (tenant_id, witness, tree_size, delivered_at) VALUES ($1, 'file', 1, now())`, [tenant.tenantId]);
    // The organisational controls, each evidenced by a dated link.
    for (const control of ['RV-ORG-01', 'RV-ORG-02', 'RV-ORG-03']) await q(`INSERT INTO ringvakt.compliance_documents (tenant_id, kind, control_id, title, url, evidence_date, expires_on, added_by) VALUES ($1, 'control_evidence', $2, 'Procedure', 'https://hr.example/procedure', current_date - 10, current_date + 355, 'test')`, [tenant.tenantId, control]);
    for (const kind of ['backup', 'drill']) await q(`INSERT INTO ringvakt.backup_runs (kind, trigger, outcome, started_at, finished_at, node) VALUES ($1, 'operator', 'success', now(), now(), 'test')`, [kind]);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('a tenant that keeps every control passes every check', async () => {
    await seal();
    const run = await runEvidence(db.handles.forTenant(tenant.tenantId), { crypto: await db.handles.crypto() }, 'request', { type: 'operator' });
    expect(run.results.filter((result) => result.status !== 'pass').map((result) => `${result.checkId}: ${result.measured}`)).toEqual([]);
    expect(run.results.map((result) => result.checkId).sort()).toEqual(CHECKS.map((check) => check.id).sort());
  });

  /** For every check: how to break its control, and how to restore it. */
  const mutations: Record<string, { breakIt: () => Promise<unknown>; restore: () => Promise<unknown>; sealerStopped?: boolean }> = {
    'identity.mfa_privileged': {
      breakIt: () => q(`UPDATE ringvakt.users SET totp_secret_ciphertext = NULL WHERE id = $1`, [tenant.owner.id]),
      restore: () => q(`UPDATE ringvakt.users SET totp_secret_ciphertext = '\\x00' WHERE id = $1`, [tenant.owner.id]),
    },
    'identity.dormant_accounts': {
      breakIt: () => q(`UPDATE ringvakt.users SET created_at = now() - interval '120 days' WHERE id = $1`, [tenant.agent.id]),
      restore: () => q(`INSERT INTO ringvakt.sessions (tenant_id, user_id, token_hash, stage, methods, expires_at) VALUES ($1, $2, $3, 'active', '{password}', now() + interval '1 hour')`, [tenant.tenantId, tenant.agent.id, Buffer.alloc(32, 7)]),
    },
    'identity.token_lifetime': {
      // The limit lives in the database: dropped (a migration gone wrong), a five-year token gets in.
      breakIt: async () => {
        await q(`ALTER TABLE ringvakt.api_tokens DROP CONSTRAINT api_tokens_expiry_within_a_year`);
        await q(`UPDATE ringvakt.api_tokens SET expires_at = now() + interval '5 years' WHERE user_id = $1`, [tenant.agent.id]);
      },
      restore: async () => {
        await q(`UPDATE ringvakt.api_tokens SET expires_at = now() + interval '30 days' WHERE user_id = $1`, [tenant.agent.id]);
        await q(`ALTER TABLE ringvakt.api_tokens ADD CONSTRAINT api_tokens_expiry_within_a_year CHECK (expires_at <= created_at + interval '366 days') NOT VALID`);
      },
    },
    'identity.session_timeouts': {
      breakIt: () => q(`INSERT INTO ringvakt.tenant_security_policies (tenant_id, session_idle_minutes) VALUES ($1, 240) ON CONFLICT (tenant_id) DO UPDATE SET session_idle_minutes = 240`, [tenant.tenantId]),
      restore: () => q(`UPDATE ringvakt.tenant_security_policies SET session_idle_minutes = 30 WHERE tenant_id = $1`, [tenant.tenantId]),
    },
    'audit.ledger_sealed': {
      // Stuck sealing: an event ten minutes old that nothing sealed.
      breakIt: () => db.handles.forTenant(tenant.tenantId).transaction((trx) => recordAuditEvent(trx, { action: 'audit.search', outcome: 'success', actor: { type: 'system' }, occurredAt: new Date(Date.now() - 600_000) })),
      restore: () => seal(),
      sealerStopped: true,
    },
    'audit.ledger_verified': {
      breakIt: () => q(`UPDATE ringvakt.detection_cursors SET ledger_checked_at = now() - interval '2 days' WHERE tenant_id = $1`, [tenant.tenantId]),
      restore: () => q(`UPDATE ringvakt.detection_cursors SET ledger_checked_at = now() WHERE tenant_id = $1`, [tenant.tenantId]),
    },
    'monitoring.rules_enabled': {
      breakIt: () => q(`INSERT INTO ringvakt.detection_rule_settings (tenant_id, rule_id, enabled, threshold, window_seconds, severity, updated_by) VALUES ($1, 'data.reveal_burst', false, 40, 600, 'high', 'test')`, [tenant.tenantId]),
      restore: () => q(`UPDATE ringvakt.detection_rule_settings SET enabled = true WHERE tenant_id = $1`, [tenant.tenantId]),
    },
    'monitoring.alerts_acknowledged': {
      breakIt: () => q(`INSERT INTO ringvakt.security_alerts (tenant_id, rule_id, severity, subject, summary, first_seen, last_seen, raised_at) VALUES ($1, 'privilege.mfa_removed', 'high', 'user:x', 'test', now() - interval '2 hours', now() - interval '2 hours', now() - interval '2 hours')`, [tenant.tenantId]),
      restore: () => q(`UPDATE ringvakt.security_alerts SET state = 'acknowledged', acknowledged_by = 'user:y', acknowledged_at = raised_at + interval '10 minutes' WHERE tenant_id = $1`, [tenant.tenantId]),
    },
    'awareness.training_current': {
      breakIt: () => q(`INSERT INTO ringvakt.security_documents (tenant_id, kind, title, version, url, content_sha256, published_by) VALUES ($1, 'training', 'Phishing', '1', 'https://learn.example/phishing', '\\x${'cd'.repeat(32)}', 'test')`, [tenant.tenantId]),
      restore: async () => {
        const training = await q(`SELECT id FROM ringvakt.security_documents WHERE tenant_id = $1 AND kind = 'training'`, [tenant.tenantId]);
        for (const user of [tenant.owner.id, tenant.agent.id, leaver]) await q(`INSERT INTO ringvakt.security_attestations (tenant_id, user_id, document_id) VALUES ($1, $2, $3)`, [tenant.tenantId, user, (training.rows[0] as { id: string }).id]);
      },
    },
    'response.security_contact': {
      breakIt: () => q(`DELETE FROM ringvakt.security_contacts WHERE tenant_id = $1`, [tenant.tenantId]),
      restore: () => q(`INSERT INTO ringvakt.security_contacts (tenant_id, user_id, created_by) VALUES ($1, $2, 'test')`, [tenant.tenantId, tenant.owner.id]),
    },
    'privacy.breaches_decided': {
      breakIt: () => q(`INSERT INTO ringvakt.breaches (tenant_id, reference, title, description, detected_at, aware_at, created_by) VALUES ($1, 'BR-2026-001', 'Lost laptop', 'An export on a lost laptop', now() - interval '4 days', now() - interval '4 days', 'test')`, [tenant.tenantId]),
      restore: () => q(`UPDATE ringvakt.breaches SET authority_decision = 'not_required', authority_reason = 'The export was encrypted; the key was not on the laptop.' WHERE tenant_id = $1`, [tenant.tenantId]),
    },
    'privacy.requests_on_time': {
      breakIt: () => q(`INSERT INTO ringvakt.privacy_requests (tenant_id, reference, kind, channel, requester_ciphertext, duplicate_key, received_at, due_at) VALUES ($1, 'DSR-2026-0001', 'access', 'email', '\\x00', $2, now() - interval '40 days', now() - interval '9 days')`, [tenant.tenantId, Buffer.alloc(32, 9)]),
      restore: () => q(`UPDATE ringvakt.privacy_requests SET status = 'rejected', closed_at = now(), outcome = 'test' WHERE tenant_id = $1`, [tenant.tenantId]),
    },
    'tenancy.row_security': {
      breakIt: () => q(`ALTER TABLE ringvakt.contacts NO FORCE ROW LEVEL SECURITY`),
      restore: () => q(`ALTER TABLE ringvakt.contacts FORCE ROW LEVEL SECURITY`),
    },
    'identity.password_hashing': {
      breakIt: () => q(`UPDATE ringvakt.users SET password_hash = '$argon2id$v=19$m=4096,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g' WHERE id = $1`, [tenant.agent.id]),
      restore: () => q(`UPDATE ringvakt.users SET password_hash = '$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2g' WHERE id = $1`, [tenant.agent.id]),
    },
    'keys.tenant_key_age': {
      breakIt: () => q(`UPDATE ringvakt.tenant_keys SET created_at = now() - interval '400 days' WHERE tenant_id = $1 AND purpose = 'data'`, [tenant.tenantId]),
      restore: () => q(`UPDATE ringvakt.tenant_keys SET created_at = now() WHERE tenant_id = $1`, [tenant.tenantId]),
    },
    'vendors.processors_current': {
      breakIt: () => q(`INSERT INTO ringvakt.processors (tenant_id, name, service, location, certifications) VALUES ($1, 'Carrier', 'telephony', 'EU', '[{"kind": "iso27001", "reference": "C-1", "expiresOn": "2020-01-01"}]')`, [tenant.tenantId]),
      restore: () => q(`UPDATE ringvakt.processors SET dpa_signed_on = current_date, dpa_expires_on = current_date + 365, certifications = jsonb_build_array(jsonb_build_object('kind', 'iso27001', 'reference', 'C-2', 'expiresOn', (current_date + 365)::text)) WHERE tenant_id = $1`, [tenant.tenantId]),
    },
    'monitoring.alert_delivery': {
      // A receiver that never took it: the delivery was given up after its last attempt.
      breakIt: () =>
        db.handles.forTenant(tenant.tenantId).transaction(async (trx) => {
          const hook = await trx.insertInto('alert_webhooks').values({ url: 'https://siem.example/hook', secret_ciphertext: Buffer.alloc(40, 5), created_by: 'test' }).returning('id').executeTakeFirstOrThrow();
          const alert = await trx.insertInto('security_alerts').values({ rule_id: 'auth.credential_stuffing', severity: 'medium', subject: 'tenant', summary: 'test', first_seen: new Date(), last_seen: new Date(), state: 'acknowledged', acknowledged_by: 'user:y', acknowledged_at: new Date() }).returning('id').executeTakeFirstOrThrow();
          await trx.insertInto('alert_deliveries').values({ alert_id: alert.id, webhook_id: hook.id, hits: 1 }).execute();
          await trx.updateTable('alert_deliveries').set({ state: 'failed', attempts: 20 }).where('alert_id', '=', alert.id).execute();
        }),
      restore: () => q(`UPDATE ringvakt.alert_deliveries SET state = 'delivered', delivered_at = now() WHERE tenant_id = $1`, [tenant.tenantId]),
    },
    'response.incidents_contained': {
      breakIt: () => q(`INSERT INTO ringvakt.incidents (tenant_id, reference, title, severity, detected_at, opened_at, opened_by) VALUES ($1, 'INC-2026-001', 'Scraping', 'high', now() - interval '2 days', now() - interval '2 days', 'test')`, [tenant.tenantId]),
      restore: () => q(`UPDATE ringvakt.incidents SET state = 'contained', contained_at = detected_at + interval '3 hours' WHERE tenant_id = $1`, [tenant.tenantId]),
    },
    'access.review_recent': {
      // A quarter passes without a review: the completed one is aged (a completed review is fixed, so
      // its guard steps aside for the test's clock only), and a new one completed today restores it.
      breakIt: async () => {
        await q(`ALTER TABLE ringvakt.access_reviews DISABLE TRIGGER access_reviews_fixed`);
        await q(`UPDATE ringvakt.access_reviews SET completed_at = now() - interval '100 days', created_at = now() - interval '110 days' WHERE tenant_id = $1`, [tenant.tenantId]);
        await q(`ALTER TABLE ringvakt.access_reviews ENABLE TRIGGER access_reviews_fixed`);
      },
      restore: async () => {
        const next = await q(`INSERT INTO ringvakt.access_reviews (tenant_id, title, due_at, created_by) VALUES ($1, 'Q1', now(), 'test') RETURNING id`, [tenant.tenantId]);
        await q(`INSERT INTO ringvakt.access_review_items (tenant_id, review_id, user_id, role, permissions, decision, decided_by, decided_at) VALUES ($1, $2, $3, 'owner', '{}', 'keep', 'test', now())`, [tenant.tenantId, next.rows[0]!.id, tenant.owner.id]);
        await q(`UPDATE ringvakt.access_reviews SET state = 'completed', completed_at = now(), completed_by = 'test' WHERE id = $1`, [next.rows[0]!.id]);
      },
    },
    'encryption.personal_data': {
      // A plaintext column slipped into a personal-data table (a careless migration).
      breakIt: () => q(`ALTER TABLE ringvakt.contacts ADD COLUMN mobile text`),
      restore: () => q(`ALTER TABLE ringvakt.contacts DROP COLUMN mobile`),
    },
    'identity.stale_tokens': {
      breakIt: () => q(`UPDATE ringvakt.api_tokens SET created_at = now() - interval '120 days', last_used_at = NULL WHERE user_id = $1`, [tenant.agent.id]),
      restore: () => q(`UPDATE ringvakt.api_tokens SET last_used_at = now() WHERE user_id = $1`, [tenant.agent.id]),
    },
    'privacy.retention_set': {
      breakIt: () => q(`DELETE FROM ringvakt.retention_policies WHERE tenant_id = $1 AND category = 'recordings'`, [tenant.tenantId]),
      restore: () => q(`INSERT INTO ringvakt.retention_policies (tenant_id, category, retain_days, action, updated_by) VALUES ($1, 'recordings', 90, 'delete', 'test')`, [tenant.tenantId]),
    },
    'privacy.controller_named': {
      breakIt: () => q(`UPDATE ringvakt.privacy_profiles SET dpo_email = NULL, dpo_name = NULL WHERE tenant_id = $1`, [tenant.tenantId]),
      restore: () => q(`UPDATE ringvakt.privacy_profiles SET dpo_name = 'Data protection officer' WHERE tenant_id = $1`, [tenant.tenantId]),
    },
    'identity.allow_list': {
      // Someone "fixes" a sign-in problem by allowing half the internet.
      breakIt: () => q(`UPDATE ringvakt.tenant_security_policies SET ip_allow_list = '{127.0.0.0/16,0.0.0.0/1}' WHERE tenant_id = $1`, [tenant.tenantId]),
      restore: () => q(`UPDATE ringvakt.tenant_security_policies SET ip_allow_list = '{127.0.0.0/16}' WHERE tenant_id = $1`, [tenant.tenantId]),
    },
    'keys.root_key_age': {
      breakIt: () => q(`UPDATE ringvakt.root_key_checks SET created_at = now() - interval '400 days'`),
      restore: () => q(`UPDATE ringvakt.root_key_checks SET created_at = now()`),
    },
    'audit.append_only': {
      breakIt: () => q(`ALTER TABLE ringvakt.audit_checkpoints DISABLE TRIGGER audit_checkpoints_append_only`),
      restore: () => q(`ALTER TABLE ringvakt.audit_checkpoints ENABLE TRIGGER audit_checkpoints_append_only`),
    },
    'tenancy.runtime_privileges': {
      breakIt: () => q(`GRANT DELETE ON ringvakt.audit_events TO ${db.handles.roles.runtime}`),
      restore: () => q(`REVOKE DELETE ON ringvakt.audit_events FROM ${db.handles.roles.runtime}`),
    },
    'access.privileged_few': {
      breakIt: async () => {
        const cipher = (await db.handles.crypto()).cipher;
        for (const name of ['a', 'b', 'c']) {
          const admin = await db.handles.forTenant(tenant.tenantId).transaction((trx) => createUser(trx, cipher, { email: `admin-${name}@compliance.example`, displayName: `Admin ${name}`, role: 'admin' }));
          await q(`UPDATE ringvakt.users SET status = 'active', totp_secret_ciphertext = '\\x00' WHERE id = $1`, [admin.id]);
        }
      },
      restore: () => q(`UPDATE ringvakt.users SET status = 'disabled' WHERE tenant_id = $1 AND role = 'admin'`, [tenant.tenantId]),
    },
    'identity.leavers_cut_off': {
      // Disabled straight in the database: the session that should have ended with the account lives on.
      breakIt: () => q(`UPDATE ringvakt.users SET status = 'disabled' WHERE id = $1`, [leaver]),
      restore: () => q(`UPDATE ringvakt.sessions SET revoked_at = now(), revoke_reason = 'user_disabled' WHERE user_id = $1`, [leaver]),
    },
    'access.revocations_enforced': {
      breakIt: () => q(`UPDATE ringvakt.users SET status = 'active' WHERE id = $1`, [revoked]),
      restore: () => q(`UPDATE ringvakt.users SET status = 'disabled' WHERE id = $1`, [revoked]),
    },
    'contacts.reveal_limits': {
      breakIt: () => q(`UPDATE ringvakt.tenant_security_policies SET reveals_per_hour = 500 WHERE tenant_id = $1`, [tenant.tenantId]),
      restore: () => q(`UPDATE ringvakt.tenant_security_policies SET reveals_per_hour = 50 WHERE tenant_id = $1`, [tenant.tenantId]),
    },
    'audit.retention_minimum': {
      breakIt: () => q(`UPDATE ringvakt.retention_policies SET retain_days = 30 WHERE tenant_id = $1 AND category = 'audit_events'`, [tenant.tenantId]),
      restore: () => q(`UPDATE ringvakt.retention_policies SET retain_days = 400 WHERE tenant_id = $1 AND category = 'audit_events'`, [tenant.tenantId]),
    },
    'awareness.policy_reviewed': {
      breakIt: () => q(`UPDATE ringvakt.security_documents SET published_at = now() - interval '400 days' WHERE tenant_id = $1 AND kind = 'policy'`, [tenant.tenantId]),
      restore: () => q(`UPDATE ringvakt.security_documents SET published_at = now() WHERE tenant_id = $1 AND kind = 'policy'`, [tenant.tenantId]),
    },
    'dialer.abandonment_within_cap': {
      // Two people answered and heard nobody, against one call put through: far over 3 %. Restored as
      // time restores it: three days on, both are outside this window and the one before.
      breakIt: async () => {
        // (In the window that completed an hour ago: the one running now is not judged until it ends.)
        for (const attempt of [2, 3]) await q(`INSERT INTO ringvakt.dial_attempts (tenant_id, id, campaign_id, contact_id, attempt, state, dialer, checks, dialed_at, answered_at, outcome, ended_at) VALUES ($1, $2, $3, $4, $5, 'ended', 'test', $6, now() - interval '3 hours', now() - interval '179 minutes', 'abandoned', now() - interval '179 minutes')`, [tenant.tenantId, randomUUID(), campaignId, contactId, attempt, DIAL_CHECKS]);
      },
      restore: () => q(`UPDATE ringvakt.dial_attempts SET dialed_at = dialed_at - interval '3 days', answered_at = answered_at - interval '3 days', ended_at = ended_at - interval '3 days' WHERE tenant_id = $1 AND outcome = 'abandoned'`, [tenant.tenantId]),
    },
    'dialer.dial_checks_recorded': {
      breakIt: () => q(`UPDATE ringvakt.dial_attempts SET checks = '{status,attempts,window,consent,number}' WHERE id = $1`, [attemptId]),
      restore: () => q(`UPDATE ringvakt.dial_attempts SET checks = $2 WHERE id = $1`, [attemptId, DIAL_CHECKS]),
    },
    'dialer.jurisdiction_set': {
      breakIt: () => q(`UPDATE ringvakt.campaigns SET jurisdiction = NULL WHERE id = $1`, [campaignId]),
      restore: () => q(`UPDATE ringvakt.campaigns SET jurisdiction = 'nordic_eu' WHERE id = $1`, [campaignId]),
    },
    'dialer.registries_current': {
      breakIt: () => q(`UPDATE ringvakt.suppression_registries SET imported_at = now() - interval '40 days' WHERE tenant_id = $1`, [tenant.tenantId]),
      restore: () => q(`UPDATE ringvakt.suppression_registries SET imported_at = now() WHERE tenant_id = $1`, [tenant.tenantId]),
    },
    'privacy.retention_applied': {
      // A call from 500 days ago still names its person; anonymised as the sweep does.
      breakIt: () => q(`INSERT INTO ringvakt.dial_attempts (tenant_id, id, campaign_id, contact_id, attempt, state, dialer, checks, reserved_at, dialed_at, outcome, ended_at) VALUES ($1, $2, $3, $4, 9, 'ended', 'test', $5, now() - interval '500 days', now() - interval '500 days', 'no_answer', now() - interval '500 days')`, [tenant.tenantId, randomUUID(), campaignId, contactId, DIAL_CHECKS]),
      restore: () => q(`UPDATE ringvakt.dial_attempts SET contact_id = NULL, anonymised_at = now() WHERE tenant_id = $1 AND attempt = 9`, [tenant.tenantId]),
    },
    'privacy.erasure_complete': {
      // An erasure that left a number behind (a destroyed key cannot come back: the database refuses).
      breakIt: () => q(`INSERT INTO ringvakt.contact_phones (tenant_id, contact_id, position, kind, number_ciphertext, number_index) VALUES ($1, $2, 0, 'mobile', '\\x5256010000', '\\x02')`, [tenant.tenantId, erasedId]),
      restore: () => q(`DELETE FROM ringvakt.contact_phones WHERE contact_id = $1`, [erasedId]),
    },
    'privacy.consent_evidenced': {
      breakIt: () => q(`INSERT INTO ringvakt.consent_events (tenant_id, contact_id, purpose, action, basis, source, occurred_at, recorded_by) VALUES ($1, $2, 'survey', 'grant', 'consent', 'phone call', now(), 'test')`, [tenant.tenantId, contactId]),
      restore: () => q(`UPDATE ringvakt.consent_events SET evidence_ref = 'recording of the call' WHERE tenant_id = $1 AND evidence_ref IS NULL AND basis = 'consent'`, [tenant.tenantId]),
    },
    'privacy.objections_suppressed': {
      // One of the objector's two numbers lifted (the other still stands): the person can be called on it.
      breakIt: () => q(`UPDATE ringvakt.suppressions SET lifted_at = now(), lifted_by = 'test' WHERE id = (SELECT id FROM ringvakt.suppressions WHERE tenant_id = $1 AND reason = 'objection' ORDER BY id LIMIT 1)`, [tenant.tenantId]),
      restore: () => q(`UPDATE ringvakt.suppressions SET lifted_at = NULL, lifted_by = NULL WHERE tenant_id = $1 AND reason = 'objection'`, [tenant.tenantId]),
    },
    'encryption.recordings': {
      breakIt: () => q(`UPDATE ringvakt.recordings SET audio_ciphertext = '\\x4944330400' WHERE attempt_id = $1`, [attemptId]),
      restore: () => q(`UPDATE ringvakt.recordings SET audio_ciphertext = '\\x5256010000' WHERE attempt_id = $1`, [attemptId]),
    },
    'audit.witness_exported': {
      // The witness went away (its configuration dropped in a redeploy): no head leaves the database.
      breakIt: () => q(`DELETE FROM ringvakt.audit_witness_deliveries WHERE tenant_id = $1`, [tenant.tenantId]),
      restore: () => q(`INSERT INTO ringvakt.audit_witness_deliveries (tenant_id, witness, tree_size, delivered_at) SELECT $1, 'syslog', max(tree_size), now() FROM ringvakt.audit_checkpoints WHERE tenant_id = $1`, [tenant.tenantId]),
    },
    'compliance.organisational_evidence': {
      // The confidentiality agreements' evidence withdrawn (it was the wrong file); a new one dated today restores it.
      breakIt: () => q(`UPDATE ringvakt.compliance_documents SET withdrawn_at = now(), withdrawn_by = 'test' WHERE tenant_id = $1 AND control_id = 'RV-ORG-02'`, [tenant.tenantId]),
      restore: () => q(`INSERT INTO ringvakt.compliance_documents (tenant_id, kind, control_id, title, url, evidence_date, expires_on, added_by) VALUES ($1, 'control_evidence', 'RV-ORG-02', 'Signed agreements, register', 'https://hr.example/nda', current_date, current_date + 365, 'test')`, [tenant.tenantId]),
    },
    'continuity.backup_recent': {
      breakIt: () => q(`DELETE FROM ringvakt.backup_runs WHERE kind = 'drill'`),
      restore: () => q(`INSERT INTO ringvakt.backup_runs (kind, trigger, outcome, started_at, finished_at, node) VALUES ('drill', 'operator', 'success', now(), now(), 'test')`),
    },
  };

  it('audit.witness_exported: a head not delivered within 15 minutes fails, as soon as it is due', async () => {
    await seal();
    // The check itself at a later moment (a run is stored at the time it ran).
    const check = CHECKS.find((entry) => entry.id === 'audit.witness_exported')!;
    const crypto = await db.handles.crypto();
    const witnessAt = (minutes: number) => db.handles.forTenant(tenant.tenantId).read((trx) => check.run(trx, new Date(Date.now() + minutes * 60_000), { crypto }));
    await q(`UPDATE ringvakt.audit_witness_deliveries SET tree_size = 1 WHERE tenant_id = $1`, [tenant.tenantId]);
    // Just signed: the witness has time yet.
    expect((await witnessAt(0)).status).toBe('pass');
    // Twenty minutes on, the newest head has not arrived: the witness is behind.
    const behind = await witnessAt(20);
    expect(behind).toMatchObject({ status: 'fail', sample: ['behind'] });
    await q(`UPDATE ringvakt.audit_witness_deliveries SET tree_size = (SELECT max(tree_size) FROM ringvakt.audit_checkpoints WHERE tenant_id = $1) WHERE tenant_id = $1`, [tenant.tenantId]);
    expect((await witnessAt(20)).status).toBe('pass');
  });

  it('privacy.objections_suppressed: a suppression of another number that shares the short blind index does not count', async () => {
    const crypto = await db.handles.crypto();
    expect((await statusOf('privacy.objections_suppressed')).status).toBe('pass');
    // One of the objector's numbers loses its suppression; a suppression of some other number, whose
    // 3-byte blind index happens to be the same, is all that is left at that index.
    const lifted = await q(`UPDATE ringvakt.suppressions SET lifted_at = now(), lifted_by = 'test' WHERE id = (SELECT id FROM ringvakt.suppressions WHERE tenant_id = $1 AND reason = 'objection' ORDER BY id LIMIT 1) RETURNING id, contact_id, value_index`, [tenant.tenantId]);
    const { id: liftedId, contact_id: objector, value_index: index } = lifted.rows[0] as { id: string; contact_id: string; value_index: Buffer };
    const other = await db.handles.forTenant(tenant.tenantId).transaction((trx) => addSuppression(trx, crypto, { channel: 'phone', value: '+4791234599', scope: 'tenant', reason: 'request', source: 'test', createdBy: 'test' }));
    await q(`UPDATE ringvakt.suppressions SET value_index = $2 WHERE id = $1`, [other, index]);
    // The dialer decrypts what the index finds and would call the number: so the check fails.
    const collided = await statusOf('privacy.objections_suppressed');
    expect(collided, collided.measured).toMatchObject({ status: 'fail', failures: 1, sample: [objector] });
    await q(`UPDATE ringvakt.suppressions SET lifted_at = NULL, lifted_by = NULL WHERE id = $1`, [liftedId]);
    await q(`DELETE FROM ringvakt.suppressions WHERE id = $1`, [other]);
    expect((await statusOf('privacy.objections_suppressed')).status).toBe('pass');
    // A number altered in the database cannot be read, so it cannot be shown suppressed: that person
    // fails, said so, and the rest are still measured.
    const record = await q(`SELECT record_ciphertext FROM ringvakt.contacts WHERE id = $1`, [objector]);
    const { record_ciphertext: original } = record.rows[0] as { record_ciphertext: Buffer };
    const altered = Buffer.from(original);
    altered.writeUInt8(altered.readUInt8(altered.length - 1) ^ 0x01, altered.length - 1);
    await q(`UPDATE ringvakt.contacts SET record_ciphertext = $2 WHERE id = $1`, [objector, altered]);
    const unreadable = await statusOf('privacy.objections_suppressed');
    expect(unreadable).toMatchObject({ status: 'fail', failures: 1, sample: [objector] });
    expect(unreadable.measured).toMatch(/1 of them not suppressed \(1 whose numbers could not be read\)/);
    await q(`UPDATE ringvakt.contacts SET record_ciphertext = $2 WHERE id = $1`, [objector, original]);
    expect((await statusOf('privacy.objections_suppressed')).status).toBe('pass');
  });

  it('has a mutation below for every check of the registry', () => {
    expect(Object.keys(mutations).sort()).toEqual(CHECKS.map((check) => check.id).sort());
  });

  for (const [checkId, mutation] of Object.entries(mutations)) {
    it(`${checkId}: fails when its control is broken, passes when it is restored`, async () => {
      expect((await statusOf(checkId)).status).toBe('pass');
      await mutation.breakIt();
      const broken = await statusOf(checkId, !mutation.sealerStopped);
      expect(broken.status, broken.measured).toBe('fail');
      expect(broken.failures).toBeGreaterThan(0);
      await mutation.restore();
      const restored = await statusOf(checkId);
      expect(restored.status, restored.measured).toBe('pass');
    });
  }

  it('keeps every run as evidence, anchored in the audit ledger by its digest; the API shows controls, runs and a check’s history', async () => {
    const created = await send(app, owner, 'POST', '/api/v1/compliance/runs');
    expect(created.statusCode, created.body).toBe(201);
    const run = created.json() as { id: string; sha256: string; passed: number; failed: number; results: { checkId: string }[] };
    expect(run.failed).toBe(0);
    expect(run.results).toHaveLength(CHECKS.length);
    const anchored = await q(`SELECT details->>'sha256' AS sha256 FROM ringvakt.audit_events WHERE tenant_id = $1 AND action = 'compliance.run' AND target_id = $2`, [tenant.tenantId, run.id]);
    expect((anchored.rows[0] as { sha256: string }).sha256).toBe(run.sha256);
    // A past run proves itself: its stored results recompute to the digest the run and the ledger hold — until someone edits a result.
    await seal();
    const verified = await send(app, owner, 'GET', `/api/v1/compliance/runs/${run.id}/verify`);
    expect(verified.json()).toEqual({ runId: run.id, storedSha256: run.sha256, recomputedSha256: run.sha256, ledgerSha256: run.sha256, ledgerEventId: expect.any(String), sealed: true, holds: true, problem: null });
    await q(`UPDATE ringvakt.compliance_results SET status = 'pass', measured = 'all fine' WHERE run_id = $1 AND check_id = 'identity.mfa_privileged'`, [run.id]);
    const altered = (await send(app, owner, 'GET', `/api/v1/compliance/runs/${run.id}/verify`)).json() as { holds: boolean; problem: string; recomputedSha256: string };
    expect(altered).toMatchObject({ holds: false, problem: expect.stringMatching(/changed after the run/) });
    expect(altered.recomputedSha256).not.toBe(run.sha256);
    expect((await send(app, owner, 'GET', `/api/v1/compliance/runs/${randomUUID()}/verify`)).statusCode).toBe(404);
    const controls = (await send(app, owner, 'GET', '/api/v1/compliance/controls')).json() as { controls: { id: string; status: string; frameworks: Record<string, string[]> }[] };
    expect(controls.controls.length).toBe(loadCatalogue().controls.length);
    expect(controls.controls.find((control) => control.id === 'RV-IAM-01')).toMatchObject({ status: 'pass', frameworks: { soc2: ['CC6.1'], iso27001: ['A.5.17', 'A.8.5'] } });
    expect(controls.controls.find((control) => control.id === 'RV-ORG-01')?.status).toBe('manual');
    const history = (await send(app, owner, 'GET', '/api/v1/compliance/checks/identity.mfa_privileged/history?days=30')).json() as { passRate: number; items: { status: string }[] };
    // The mutation above left one failing run among the passing ones.
    expect(history.items.filter((item) => item.status === 'fail')).toHaveLength(1);
    expect(history.passRate).toBeLessThan(100);
    expect((await send(app, owner, 'GET', '/api/v1/compliance/checks/no.such_check/history')).statusCode).toBe(404);
    // The daily run is stored once a day, however many nodes try.
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    const [first, second] = await Promise.all([runScheduledEvidence(tenantDb, { crypto: await db.handles.crypto() }), runScheduledEvidence(tenantDb, { crypto: await db.handles.crypto() })]);
    expect([first, second].filter((entry) => entry !== undefined)).toHaveLength(1);
    expect(await runScheduledEvidence(tenantDb, { crypto: await db.handles.crypto() })).toBeUndefined();
  });

  it('an access review: every active user taken in, decided by someone else who may manage them, revoking at once; complete only when all are decided', async () => {
    const reviewed = await seedTenant(db.handles, 'reviews');
    const cipher = (await db.handles.crypto()).cipher;
    const second = await db.handles.forTenant(reviewed.tenantId).transaction((trx) => createUser(trx, cipher, { email: 'second-owner@reviews.example', displayName: 'Second owner', role: 'owner' }));
    await q(`UPDATE ringvakt.users SET status = 'active' WHERE id = $1`, [second.id]);
    const first = await sessionFor(db.handles, reviewed.tenantId, reviewed.owner.id);
    const other = await sessionFor(db.handles, reviewed.tenantId, second.id);
    const opened = await send(app, first, 'POST', '/api/v1/access-reviews', { title: 'Q4 2026', dueInDays: 14 });
    expect(opened.statusCode, opened.body).toBe(201);
    const review = opened.json() as { id: string; pending: number };
    expect(review.pending).toBe(3);
    expect((await send(app, first, 'POST', '/api/v1/access-reviews', { title: 'Again' })).statusCode).toBe(409);
    // Nobody decides on their own access.
    expect((await send(app, first, 'POST', `/api/v1/access-reviews/${review.id}/users/${reviewed.owner.id}`, { decision: 'keep' })).statusCode).toBe(403);
    expect((await send(app, other, 'POST', `/api/v1/access-reviews/${review.id}/users/${reviewed.owner.id}`, { decision: 'keep', note: 'Runs the floor' })).statusCode).toBe(200);
    expect((await send(app, first, 'POST', `/api/v1/access-reviews/${review.id}/users/${second.id}`, { decision: 'keep' })).statusCode).toBe(200);
    // Decided once: a second decision is refused, not written over the first.
    expect((await send(app, first, 'POST', `/api/v1/access-reviews/${review.id}/users/${second.id}`, { decision: 'revoke' })).statusCode).toBe(409);
    // Not complete while someone is undecided.
    expect((await send(app, first, 'POST', `/api/v1/access-reviews/${review.id}/complete`)).statusCode).toBe(409);
    // Revoking ends the agent's access at once.
    expect((await app.inject({ method: 'GET', url: '/api/v1/tenant', headers: { authorization: `Bearer ${reviewed.agent.token}` } })).statusCode).toBe(200);
    expect((await send(app, first, 'POST', `/api/v1/access-reviews/${review.id}/users/${reviewed.agent.id}`, { decision: 'revoke', note: 'Left the team' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/api/v1/tenant', headers: { authorization: `Bearer ${reviewed.agent.token}` } })).statusCode).toBe(401);
    const completed = await send(app, first, 'POST', `/api/v1/access-reviews/${review.id}/complete`);
    expect(completed.statusCode, completed.body).toBe(200);
    expect(completed.json()).toMatchObject({ state: 'completed', kept: 2, revoked: 1, pending: 0 });
    // The completed review is evidence: no decision in it changes, not even in the database.
    await expect(q(`UPDATE ringvakt.access_review_items SET decision = 'keep' WHERE review_id = $1 AND user_id = $2`, [review.id, reviewed.agent.id])).rejects.toThrow(/completed access review cannot change/);
    await expect(q(`UPDATE ringvakt.access_reviews SET title = 'Renamed' WHERE id = $1`, [review.id])).rejects.toThrow(/completed access review cannot change/);
    const detail = (await send(app, first, 'GET', `/api/v1/access-reviews/${review.id}`)).json() as { items: { userId: string; role: string; decision: string }[] };
    expect(detail.items.find((item) => item.userId === reviewed.agent.id)).toMatchObject({ role: 'agent', decision: 'revoke' });
    const run = await runEvidence(db.handles.forTenant(reviewed.tenantId), { crypto: await db.handles.crypto() }, 'request', { type: 'operator' });
    expect(run.results.find((result) => result.checkId === 'access.review_recent')?.status).toBe('pass');
  });

  it('the periodic campaign: the system opens a review of every user when a quarter begins, once, and again the next quarter', async () => {
    const periodic = await seedTenant(db.handles, 'periodic');
    const tenantDb = db.handles.forTenant(periodic.tenantId);
    const now = new Date();
    // Two nodes at once: one review.
    const both = await Promise.all([tenantDb.transaction((trx) => openQuarterlyReview(trx, now)), tenantDb.transaction((trx) => openQuarterlyReview(trx, now))]);
    expect(both.filter((id) => id !== undefined)).toHaveLength(1);
    const opened = both.find((id) => id !== undefined)!;
    expect(await tenantDb.transaction((trx) => openQuarterlyReview(trx, now))).toBeUndefined();
    // Nobody active yet (the owner has not used the setup link): no review of nobody is opened.
    const empty = await db.handles.systemDb.createTenant('periodic-empty', 'Periodic empty');
    expect(await db.handles.forTenant(empty).transaction((trx) => openQuarterlyReview(trx, now))).toBeUndefined();
    const reviews = await q(`SELECT title, created_by, (SELECT count(*)::int FROM ringvakt.access_review_items i WHERE i.review_id = r.id) AS users FROM ringvakt.access_reviews r WHERE tenant_id = $1`, [periodic.tenantId]);
    expect(reviews.rows).toEqual([{ title: `${quarterOf(now).name} access review`, created_by: 'system:compliance', users: 2 }]);
    // Completed, nothing new this quarter; the next quarter brings the next review.
    await q(`UPDATE ringvakt.access_review_items SET decision = 'keep', decided_by = 'test', decided_at = now() WHERE review_id = $1`, [opened]);
    await q(`UPDATE ringvakt.access_reviews SET state = 'completed', completed_at = now(), completed_by = 'test' WHERE id = $1`, [opened]);
    expect(await tenantDb.transaction((trx) => openQuarterlyReview(trx, now))).toBeUndefined();
    const nextQuarter = new Date(quarterOf(now).start.getTime() + 100 * 86_400_000);
    expect(await tenantDb.transaction((trx) => openQuarterlyReview(trx, nextQuarter))).toEqual(expect.any(String));
  });

  it('an organisation whose owner is its only manager can still complete a review: the owner confirms their own access, on the record', async () => {
    const solo = await seedTenant(db.handles, 'solo-owner');
    const ownerOnly = await sessionFor(db.handles, solo.tenantId, solo.owner.id);
    const review = (await send(app, ownerOnly, 'POST', '/api/v1/access-reviews', { title: 'Q4 2026' })).json() as { id: string };
    expect((await send(app, ownerOnly, 'POST', `/api/v1/access-reviews/${review.id}/users/${solo.owner.id}`, { decision: 'revoke' })).statusCode).toBe(403);
    expect((await send(app, ownerOnly, 'POST', `/api/v1/access-reviews/${review.id}/users/${solo.owner.id}`, { decision: 'keep', note: 'The only manager' })).statusCode).toBe(200);
    expect((await send(app, ownerOnly, 'POST', `/api/v1/access-reviews/${review.id}/users/${solo.agent.id}`, { decision: 'keep' })).statusCode).toBe(200);
    expect((await send(app, ownerOnly, 'POST', `/api/v1/access-reviews/${review.id}/complete`)).json()).toMatchObject({ state: 'completed', kept: 2 });
  });

  it('the trust report: signed JSON that verifies offline (and not once changed), with HTML and PDF of the same document', async () => {
    const json = await send(app, owner, 'GET', '/api/v1/compliance/trust-report?days=30');
    expect(json.statusCode, json.body).toBe(200);
    expect(json.headers['content-disposition']).toMatch(/^attachment; filename="trust-report-\d{4}-\d{2}-\d{2}\.json"$/);
    const signed = JSON.parse(json.body) as SignedTrustReport;
    expect(signed.report.controls.length).toBe(loadCatalogue().controls.length);
    expect(signed.report.controls.find((control) => control.id === 'RV-IAM-01')).toMatchObject({ status: 'pass', checks: [{ id: 'identity.mfa_privileged', runs: expect.any(Number) }] });
    expect(signed.report.ledger?.treeSize).toBeGreaterThan(0);
    expect(verifyTrustReport(json.body)).toBeUndefined();
    expect(verifyTrustReport(json.body, signed.signature.publicKey)).toBeUndefined();
    // Another key, or any change after signing, and it no longer holds.
    const other = (await import('node:crypto')).generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
    expect(verifyTrustReport(json.body, other)).toMatch(/another key/);
    const tampered = JSON.stringify({ ...signed, report: { ...signed.report, summary: { ...signed.report.summary, failing: 0, passing: signed.report.summary.passing + signed.report.summary.failing + 1 } } });
    expect(verifyTrustReport(tampered)).toMatch(/does not match/);
    // The command line says the same, offline.
    const folder = mkdtempSync(path.join(os.tmpdir(), 'rv-report-'));
    try {
      writeFileSync(path.join(folder, 'good.json'), json.body);
      writeFileSync(path.join(folder, 'bad.json'), tampered);
      const cli = (file: string) => spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'report', 'verify', path.join(folder, file), '--public-key', signed.signature.publicKey], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: process.env.HOME }, timeout: 60_000 });
      const good = cli('good.json');
      expect(good.status, good.stderr).toBe(0);
      expect(good.stdout).toMatch(/^ok {4}.*the signature holds and is by the key you trust/);
      const bad = cli('bad.json');
      expect(bad.status).toBe(1);
      expect(bad.stdout).toMatch(/^FAIL {2}.*does not match/);
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
    const html = await send(app, owner, 'GET', '/api/v1/compliance/trust-report?format=html');
    expect(html.statusCode).toBe(200);
    expect(html.headers['content-type']).toMatch(/^text\/html/);
    expect(html.body).toContain('RV-IAM-01');
    expect(html.body).toContain(signed.signature.keyId);
    expect(html.body).not.toMatch(/<script/i);
    const pdf = await app.inject({ method: 'GET', url: '/api/v1/compliance/trust-report?format=pdf', cookies: owner.cookies });
    expect(pdf.statusCode).toBe(200);
    expect(pdf.rawPayload.subarray(0, 5).toString()).toBe('%PDF-');
    const audited = await q(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE tenant_id = $1 AND action = 'compliance.trust_report'`, [tenant.tenantId]);
    expect((audited.rows[0] as { n: number }).n).toBe(3);
  });

  it('the statement of applicability lists all 93 Annex A controls with how each is met; the risk register rates residual risk only while its controls hold', async () => {
    const soa = (await send(app, owner, 'GET', '/api/v1/compliance/statement-of-applicability')).json() as { controls: { control: string; meansOfMeeting: string; ringvaktControls: string[]; status: string; justification: string }[] };
    expect(soa.controls).toHaveLength(93);
    expect(soa.controls.filter((row) => row.control.startsWith('A.7.'))).toHaveLength(14);
    expect(soa.controls.find((row) => row.control === 'A.8.24')).toMatchObject({ meansOfMeeting: 'ringvakt', status: 'pass' });
    expect(soa.controls.find((row) => row.control === 'A.8.24')?.ringvaktControls).toEqual(expect.arrayContaining(['RV-CRY-01', 'RV-CRY-02']));
    expect(soa.controls.find((row) => row.control === 'A.7.1')).toMatchObject({ meansOfMeeting: 'organisation' });
    const csv = await send(app, owner, 'GET', '/api/v1/compliance/statement-of-applicability?format=csv');
    expect(csv.headers['content-type']).toMatch(/^text\/csv/);
    expect(csv.body.split('\n').filter(Boolean)).toHaveLength(94);
    const register = async () => ((await send(app, owner, 'GET', '/api/v1/compliance/risk-register')).json() as { risks: { id: string; inherent: number; residual: number; treatmentHolds: boolean }[] }).risks;
    const takeover = (await register()).find((risk) => risk.id === 'RISK-01')!;
    expect(takeover).toMatchObject({ inherent: 20, residual: 10, treatmentHolds: true });
    // A privileged user without a second factor: the treatment no longer holds, the residual risk is the inherent one.
    await q(`UPDATE ringvakt.users SET totp_secret_ciphertext = NULL WHERE id = $1`, [tenant.owner.id]);
    await runEvidence(db.handles.forTenant(tenant.tenantId), { crypto: await db.handles.crypto() }, 'request', { type: 'operator' });
    expect((await register()).find((risk) => risk.id === 'RISK-01')).toMatchObject({ residual: 20, treatmentHolds: false });
    await q(`UPDATE ringvakt.users SET totp_secret_ciphertext = '\\x00' WHERE id = $1`, [tenant.owner.id]);
    await runEvidence(db.handles.forTenant(tenant.tenantId), { crypto: await db.handles.crypto() }, 'request', { type: 'operator' });
  });

  it('documents: evidence and certifications with their files sealed, checked for their type, never replaced; shared ones in the trust report by digest; every download audited', async () => {
    // Dates from today: the evidence speaks for a month ago and holds for a year.
    const day = (offset: number) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
    const [dated, expires, earlier, certified, certifiedTo] = [day(-30), day(335), day(-60), day(-180), day(900)];
    const pdf = Buffer.concat([Buffer.from('%PDF-1.7\n'), Buffer.from('Screening of new staff: procedure signed 2026-11-01 by the HR director.\n'), Buffer.from('%%EOF\n')]);
    const add = (body: Record<string, unknown>) => send(app, owner, 'POST', '/api/v1/compliance/documents', body);
    const upload = (id: string, file: Buffer, type: string) => app.inject({ method: 'PUT', url: `/api/v1/compliance/documents/${id}/file`, cookies: owner.cookies, headers: { origin: PUBLIC_URL, 'x-csrf-token': owner.csrf, 'content-type': type, 'content-disposition': 'attachment; filename="screening.pdf"' }, payload: file });

    // Bad input: a clear error, nothing stored.
    expect((await add({ kind: 'control_evidence', title: 'No control', evidenceDate: dated, expiresOn: expires })).json()).toMatchObject({ code: 'validation_failed' });
    expect((await add({ kind: 'control_evidence', controlId: 'RV-NO-99', title: 'Unknown', evidenceDate: dated, expiresOn: expires })).json()).toMatchObject({ code: 'validation_failed' });
    expect((await add({ kind: 'certification', title: 'ISO 27001', evidenceDate: dated, expiresOn: expires })).json()).toMatchObject({ code: 'validation_failed' });
    expect((await add({ kind: 'control_evidence', controlId: 'RV-ORG-01', title: 'Backwards', evidenceDate: dated, expiresOn: earlier })).statusCode).toBe(400);
    expect((await add({ kind: 'control_evidence', controlId: 'RV-ORG-01', title: 'Forever', evidenceDate: dated, expiresOn: '9999-12-31' })).statusCode).toBe(400);
    expect((await add({ kind: 'control_evidence', controlId: 'RV-ORG-01', title: 'Plain link', url: 'http://hr.example/x', evidenceDate: dated, expiresOn: expires })).statusCode).toBe(400);
    const before = await q(`SELECT count(*)::int AS n FROM ringvakt.compliance_documents WHERE tenant_id = $1`, [tenant.tenantId]);

    const evidence = await add({ kind: 'control_evidence', controlId: 'RV-ORG-01', title: 'Screening procedure, signed', evidenceDate: dated, expiresOn: expires });
    expect(evidence.statusCode, evidence.body).toBe(201);
    const evidenceId = (evidence.json() as { id: string }).id;
    // Not a PDF though it says so; an empty body; an unsupported type.
    expect((await upload(evidenceId, Buffer.from('\x89PNG\r\n\x1a\nnot a pdf', 'latin1'), 'application/pdf')).json()).toMatchObject({ code: 'validation_failed' });
    expect((await upload(evidenceId, Buffer.from('<svg/>'), 'image/svg+xml')).statusCode).toBe(415);
    const uploaded = await upload(evidenceId, pdf, 'application/pdf');
    expect(uploaded.statusCode, uploaded.body).toBe(200);
    const sha256 = createHash('sha256').update(pdf).digest('hex');
    expect(uploaded.json()).toMatchObject({ file: { mediaType: 'application/pdf', bytes: pdf.length, sha256, name: 'screening.pdf' }, current: true });
    // Never replaced, through the API or in the database.
    expect((await upload(evidenceId, Buffer.from('%PDF-other'), 'application/pdf')).statusCode).toBe(409);
    await expect(q(`UPDATE ringvakt.compliance_documents SET expires_on = '2099-01-01' WHERE id = $1`, [evidenceId])).rejects.toThrow(/cannot be edited/);
    await expect(q(`UPDATE ringvakt.compliance_documents SET file_sha256 = $2 WHERE id = $1`, [evidenceId, Buffer.alloc(32, 1)])).rejects.toThrow(/cannot be replaced/);
    // Nor its sealed bytes: only a re-seal under a newer key (same length and format) gets through, as rotation does it.
    await expect(q(`UPDATE ringvakt.compliance_documents SET file_ciphertext = '\\x00' WHERE id = $1`, [evidenceId])).rejects.toThrow(/cannot be replaced/);
    await expect(q(`UPDATE ringvakt.compliance_documents SET file_ciphertext = overlay(file_ciphertext PLACING '\\x00000000'::bytea FROM 5) WHERE id = $1`, [evidenceId])).rejects.toThrow(/cannot be replaced/);
    await expect(q(`UPDATE ringvakt.compliance_documents SET shared_in_report = true, file_ciphertext = overlay(file_ciphertext PLACING '\\xffffffff'::bytea FROM 5) WHERE id = $1`, [evidenceId])).rejects.toThrow(/cannot be replaced/);
    // Sealed: the stored bytes are field ciphertext, and do not hold the text.
    const stored = await q(`SELECT file_ciphertext FROM ringvakt.compliance_documents WHERE id = $1`, [evidenceId]);
    const sealed = (stored.rows[0] as { file_ciphertext: Buffer }).file_ciphertext;
    expect(sealed.subarray(0, 3).toString('latin1')).toBe('RV\x01');
    expect(sealed.includes(Buffer.from('Screening of new staff'))).toBe(false);
    const downloaded = await app.inject({ method: 'GET', url: `/api/v1/compliance/documents/${evidenceId}/file`, cookies: owner.cookies });
    expect(downloaded.statusCode).toBe(200);
    expect(downloaded.headers['content-type']).toBe('application/pdf');
    expect(downloaded.headers['content-disposition']).toBe(`attachment; filename="document.pdf"; filename*=UTF-8''screening.pdf`);
    expect(downloaded.rawPayload.equals(pdf)).toBe(true);
    // A name cannot smuggle another type past the check: kept with the extension the bytes proved; no right-to-left tricks.
    const note = (await add({ kind: 'control_evidence', controlId: 'RV-ORG-02', title: 'Agreement register', evidenceDate: dated, expiresOn: expires })).json() as { id: string };
    // The name comes in the upload's Content-Disposition (a name can be personal data: never in the URL).
    const putNote = (headers: Record<string, string>, url = `/api/v1/compliance/documents/${note.id}/file`) => app.inject({ method: 'PUT', url, cookies: owner.cookies, headers: { origin: PUBLIC_URL, 'x-csrf-token': owner.csrf, 'content-type': 'text/plain', ...headers }, payload: Buffer.from('Signed: 14 of 14 staff.\n') });
    const namedUpload = (name: string) => putNote({ 'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(name).replace(/['()*!]/g, (char) => `%${char.charCodeAt(0).toString(16)}`)}` });
    expect((await namedUpload('register\u202Etxt.exe')).json()).toMatchObject({ status: 400, code: 'validation_failed' });
    expect((await putNote({ 'content-disposition': 'attachment; filename="a"; filename="b"' })).json()).toMatchObject({ status: 400, code: 'validation_failed' });
    expect((await putNote({ 'content-disposition': "attachment; filename*=UTF-8''a%2Fb.txt" })).json()).toMatchObject({ status: 400, code: 'validation_failed' });
    for (const query of ['name=Kari%20Nordmann%20NDA.txt', 'Kari%20Nordmann%20NDA.txt']) {
      const inUrl = await putNote({}, `/api/v1/compliance/documents/${note.id}/file?${query}`);
      expect(inUrl.statusCode).toBe(400);
      expect(inUrl.body).not.toContain('Kari');
    }
    // Raw UTF-8 in a plain filename would be read as Latin-1 and stored garbled: refused, named filename* instead.
    const raw = await putNote({ 'content-disposition': `attachment; filename="${Buffer.from('Særavtale.txt', 'utf8').toString('latin1')}"` });
    expect(raw.json()).toMatchObject({ status: 400, code: 'validation_failed' });
    expect(raw.json().detail).toContain('filename*');
    expect((await namedUpload("Særavtale (final)*.html")).json()).toMatchObject({ file: { name: 'Særavtale (final)*.txt', mediaType: 'text/plain' } });
    const noteFile = await app.inject({ method: 'GET', url: `/api/v1/compliance/documents/${note.id}/file`, cookies: owner.cookies });
    expect(noteFile.headers['content-disposition']).toBe(`attachment; filename="document.txt"; filename*=UTF-8''S%C3%A6ravtale%20%28final%29%2A.txt`);
    const audited = await q(`SELECT action FROM ringvakt.audit_events WHERE tenant_id = $1 AND target_id = $2 ORDER BY id`, [tenant.tenantId, evidenceId]);
    expect(audited.rows.map((row) => (row as { action: string }).action)).toEqual(['compliance.document_add', 'compliance.document_upload', 'compliance.document_download']);
    const controls = (await send(app, owner, 'GET', '/api/v1/compliance/controls')).json() as { controls: { id: string; evidence: { id: string }[] }[] };
    expect(controls.controls.find((control) => control.id === 'RV-ORG-01')?.evidence.map((entry) => entry.id)).toContain(evidenceId);

    // A certification, shared in the trust report by its digest; withdrawn, it leaves the report and stays on the record.
    const certificate = Buffer.from('%PDF-1.4\nISO/IEC 27001:2022 certificate, scope: contact center operations\n%%EOF\n');
    const certification = (await add({ kind: 'certification', title: 'ISO/IEC 27001:2022', issuer: 'Nordic Certification AS', evidenceDate: certified, expiresOn: certifiedTo, sharedInReport: true })).json() as { id: string };
    expect((await upload(certification.id, certificate, 'application/pdf')).statusCode).toBe(200);
    const report = (await send(app, owner, 'GET', '/api/v1/compliance/trust-report')).json() as SignedTrustReport;
    expect(report.report.attestations).toEqual([{ kind: 'certification', title: 'ISO/IEC 27001:2022', issuer: 'Nordic Certification AS', evidenceDate: certified, expiresOn: certifiedTo, sha256: createHash('sha256').update(certificate).digest('hex') }]);
    expect(report.report.controls.find((control) => control.id === 'RV-ORG-01')?.evidence).toContainEqual({ title: 'Screening procedure, signed', evidenceDate: dated, expiresOn: expires, sha256, link: false });
    const html = await send(app, owner, 'GET', '/api/v1/compliance/trust-report?format=html');
    expect(html.body).toContain('Nordic Certification AS');
    expect((await send(app, owner, 'POST', `/api/v1/compliance/documents/${evidenceId}/share`, { shared: true })).statusCode).toBe(409);
    expect((await send(app, owner, 'POST', `/api/v1/compliance/documents/${certification.id}/withdraw`)).json()).toMatchObject({ withdrawnAt: expect.any(String), current: false });
    expect((await send(app, owner, 'POST', `/api/v1/compliance/documents/${certification.id}/withdraw`)).statusCode).toBe(409);
    expect(((await send(app, owner, 'GET', '/api/v1/compliance/trust-report')).json() as SignedTrustReport).report.attestations).toEqual([]);
    const listed = (await send(app, owner, 'GET', '/api/v1/compliance/documents?withdrawn=true')).json() as { items: { id: string }[] };
    expect(listed.items.map((item) => item.id)).toContain(certification.id);
    const after = await q(`SELECT count(*)::int AS n FROM ringvakt.compliance_documents WHERE tenant_id = $1`, [tenant.tenantId]);
    expect((after.rows[0] as { n: number }).n).toBe((before.rows[0] as { n: number }).n + 3);
    // An agent may neither read nor add them.
    const agent = await sessionFor(db.handles, tenant.tenantId, tenant.agent.id);
    expect((await send(app, agent, 'GET', '/api/v1/compliance/documents')).statusCode).toBe(403);
  });

  it('the security questionnaire: answered from live evidence — "Yes" only while the named controls pass — as JSON, CSV and XLSX with the same cells', async () => {
    await seal();
    await runEvidence(db.handles.forTenant(tenant.tenantId), { crypto: await db.handles.crypto() }, 'request', { type: 'operator' });
    const answered = (await send(app, owner, 'GET', '/api/v1/compliance/questionnaire')).json() as AnsweredQuestionnaire;
    expect(answered.questions.length).toBe(loadQuestionnaire().questions.length);
    expect(answered.questions.length).toBeGreaterThanOrEqual(30);
    expect(answered.questions.filter((question) => question.answer !== 'Yes').map((question) => `${question.id}: ${question.evidence}`)).toEqual([]);
    expect(answered.questions.find((question) => question.id === 'HR-01')?.evidence).toMatch(/^RV-ORG-01: Procedure \(\d{4}-\d{2}-\d{2}, valid to \d{4}-\d{2}-\d{2}\)$/m);
    // An administrator loses the second factor: after the next run the questionnaire says no, and why.
    await q(`UPDATE ringvakt.users SET totp_secret_ciphertext = NULL WHERE id = $1`, [tenant.owner.id]);
    await seal();
    await runEvidence(db.handles.forTenant(tenant.tenantId), { crypto: await db.handles.crypto() }, 'request', { type: 'operator' });
    const broken = (await send(app, owner, 'GET', '/api/v1/compliance/questionnaire')).json() as AnsweredQuestionnaire;
    expect(broken.questions.find((question) => question.id === 'IAM-01')).toMatchObject({ answer: 'No', evidence: expect.stringMatching(/^RV-IAM-01 fail: .* 1 have none enrolled/) });
    const csv = await send(app, owner, 'GET', '/api/v1/compliance/questionnaire?format=csv');
    expect(csv.headers['content-type']).toMatch(/^text\/csv/);
    const parsedCsv = parse(csv.body, { bom: true }) as string[][];
    expect(parsedCsv[0]).toEqual(['id', 'domain', 'question', 'answer', 'explanation', 'evidence', 'controls', 'frameworks']);
    expect(parsedCsv).toHaveLength(broken.questions.length + 1);
    expect(parsedCsv.find((row) => row[0] === 'IAM-01')?.[3]).toBe('No');
    const xlsx = await app.inject({ method: 'GET', url: '/api/v1/compliance/questionnaire?format=xlsx', cookies: owner.cookies });
    expect(xlsx.headers['content-type']).toBe('application/vnd.openxmlformats-officedocument.spreadsheetml.sheet');
    const { default: ExcelJS } = await import('exceljs');
    const workbook = new ExcelJS.Workbook();
    await workbook.xlsx.load(xlsx.rawPayload as unknown as ArrayBuffer);
    const sheet = workbook.getWorksheet('Questionnaire')!;
    expect(sheet.rowCount).toBe(broken.questions.length + 1);
    const cells = (row: number) => (sheet.getRow(row).values as unknown[]).slice(1).map(String);
    for (let row = 2; row <= sheet.rowCount; row += 1) expect(cells(row)).toEqual(parsedCsv[row - 1]);
    expect(String(workbook.getWorksheet('About')!.getCell('B5').value)).toBe(broken.runSha256);
    await q(`UPDATE ringvakt.users SET totp_secret_ciphertext = '\\x00' WHERE id = $1`, [tenant.owner.id]);
    await runEvidence(db.handles.forTenant(tenant.tenantId), { crypto: await db.handles.crypto() }, 'request', { type: 'operator' });
    const audited = await q(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE tenant_id = $1 AND action = 'compliance.questionnaire'`, [tenant.tenantId]);
    expect((audited.rows[0] as { n: number }).n).toBe(4);
    // Evidence from two days ago answers nothing that needs measuring; an organisational control's current document still does.
    const later = await db.handles.forTenant(tenant.tenantId).read((trx) => answerQuestionnaire(trx, new Date(Date.now() + 40 * 3_600_000)));
    expect(later.questions.find((question) => question.id === 'IAM-01')?.answer).toBe('Evidence out of date');
    expect(later.questions.find((question) => question.id === 'HR-01')?.answer).toBe('Yes');
    // Nothing to measure is no yes: an organisation that erased nobody and dials nothing.
    const quiet = await seedTenant(db.handles, 'quiet');
    await runEvidence(db.handles.forTenant(quiet.tenantId), { crypto: await db.handles.crypto() }, 'request', { type: 'operator' });
    const quietAnswers = await db.handles.forTenant(quiet.tenantId).read((trx) => answerQuestionnaire(trx));
    expect(quietAnswers.questions.find((question) => question.id === 'DSP-06')?.answer).toBe('Not applicable');
    expect(quietAnswers.questions.find((question) => question.id === 'TEL-01')?.answer).toBe('Not applicable');
    expect(() => parseQuestionnaire(JSON.stringify({ version: 't', note: '', questions: [{ id: 'XX-01', domain: 'Test', question: 'Is this a question?', controls: ['RV-NO-01'], answer: 'An answer long enough.' }] }))).toThrow(/unknown control RV-NO-01/);
  });

  it('refuses a catalogue that names an unknown check, an automated control without checks, or a malformed identifier', () => {
    const base = { version: 't', note: '', controls: [{ id: 'RV-XX-01', title: 'Title', statement: 'A statement long enough.', frameworks: { soc2: ['CC6.1'], iso27001: ['A.8.5'], gdpr: ['Art. 32'], asvs: ['6.3.3'] }, kind: 'automated', checks: ['identity.mfa_privileged'] }] };
    expect(parseCatalogue(JSON.stringify(base)).controls).toHaveLength(1);
    const variant = (change: Record<string, unknown>) => JSON.stringify({ ...base, controls: [{ ...base.controls[0], ...change }] });
    expect(() => parseCatalogue(variant({ checks: ['no.such_check'] }))).toThrow(/unknown check no\.such_check/);
    expect(() => parseCatalogue(variant({ checks: [] }))).toThrow(/names no check/);
    expect(() => parseCatalogue(variant({ frameworks: { soc2: ['CC99'], iso27001: [], gdpr: [], asvs: [] } }))).toThrow(/not valid/);
    expect(() => parseCatalogue(JSON.stringify(base), { requireEveryCheck: true })).toThrow(/no control names the check identity\.dormant_accounts/);
    expect(() => parseCatalogue(JSON.stringify({ ...base, risks: [{ id: 'RISK-01', title: 'A risk', threat: 'Something bad happens.', likelihood: 3, residualLikelihood: 2, impact: 3, controls: ['RV-NO-01'] }] }))).toThrow(/unknown control RV-NO-01/);
    // The shipped catalogue names every check, and parses as the server loads it.
    expect(loadCatalogue().controls.flatMap((control) => control.checks).sort()).toEqual(expect.arrayContaining(CHECKS.map((check) => check.id).sort()));
  });
});
