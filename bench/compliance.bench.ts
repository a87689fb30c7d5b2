import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { createLogger } from '../src/logger.ts';
import { loadSigningKey } from '../src/audit/signing-key.ts';
import { runEvidence } from '../src/compliance/evidence.ts';
import { buildTrustReport, signTrustReport, trustReportPdf } from '../src/compliance/trust-report.ts';
import { createContact } from '../src/modules/contacts/contacts.service.ts';
import { addSuppression } from '../src/modules/suppression/suppression.service.ts';
import type { BenchRow } from './support.ts';

const CONTACTS = Number(process.env.BENCH_COMPLIANCE_CONTACTS ?? 1_000_000);
const OBJECTING = Math.floor(CONTACTS / 100);

/**
 * The compliance center on a large tenant: CONTACTS contacts with a phone each (written directly
 * in SQL as field ciphertext would look: the header and random bytes), a consent each, 1 % objecting
 * (real contacts, keys and suppressions, made the product's way)
 * and 1 % erased, and 30 days of calls for 30 % of them; then a full evidence run
 * (every automated check, stored and anchored in the ledger) and the trust report (built, signed,
 * and rendered as PDF). Baseline: one sequential count of the tenant's contacts and phones — the
 * least it costs to touch that data once. Targets: evidence run ≤ 30 s, report ≤ 5 s.
 */
export async function complianceBench(): Promise<BenchRow[]> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-bench-compliance-'));
  chmodSync(folder, 0o711);
  const database = await openDatabase(loadConfig({ RINGVAKT_DATA_DIR: folder }), createLogger('warn'), { applyMigrations: true });
  const superuserUrl = new URL(database.embedded?.adminUrl ?? '');
  superuserUrl.pathname = '/ringvakt';
  const plain = new pg.Client({ connectionString: superuserUrl.toString() });
  await plain.connect();
  try {
    const tenantId = await database.systemDb.createTenant('compliance-bench', 'Compliance bench');
    const seeded = Date.now();
    await plain.query(
      `INSERT INTO ringvakt.contacts (tenant_id, id, name_ciphertext, email_ciphertext, email_index)
       SELECT $1, gen_random_uuid(), '\\x525601'::bytea || decode(md5(i::text) || md5((i + 1)::text), 'hex'), '\\x525601'::bytea || decode(md5((i + 2)::text), 'hex'), decode(substr(md5((i + 3)::text), 1, 16), 'hex')
         FROM generate_series(1, $2) AS i`,
      [tenantId, CONTACTS - OBJECTING],
    );
    await plain.query(
      `INSERT INTO ringvakt.contact_phones (tenant_id, contact_id, position, kind, number_ciphertext, number_index)
       SELECT tenant_id, id, 0, 'mobile', '\\x525601'::bytea || decode(md5(id::text), 'hex'), decode(substr(md5(id::text), 1, 16), 'hex') FROM ringvakt.contacts WHERE tenant_id = $1`,
      [tenantId],
    );
    // One in a hundred objects, and those are real: contacts with their own keys and a number each,
    // and the objection's suppression sealed as the product seals it, since the objection check
    // decrypts both to compare them, as the dialer does.
    const crypto = await database.crypto();
    const objecting: string[] = [];
    for (let start = 0; start < OBJECTING; start += 500) {
      await database.forTenant(tenantId).transaction(async (trx) => {
        for (let index = start; index < Math.min(OBJECTING, start + 500); index += 1) {
          const number = `+479${String(index).padStart(7, '0')}`;
          const contact = await createContact(trx, crypto, { name: `Objecting ${index}`, phones: [{ kind: 'mobile', number }] }, { defaultRegion: 'NO' });
          await addSuppression(trx, crypto, { channel: 'phone', value: number, scope: 'tenant', reason: 'objection', source: 'consent objection', contactId: contact.id, createdBy: 'bench' });
          objecting.push(contact.id);
        }
      });
    }
    // What a working tenant holds besides: a consent per contact (imported with its evidence), one in
    // a hundred objecting (and suppressed), one in a hundred erased, and 30 days of calls from one
    // campaign for three in ten contacts (one in a hundred abandoned).
    await plain.query(
      `INSERT INTO ringvakt.consent_events (tenant_id, contact_id, purpose, action, basis, source, evidence_ref, occurred_at, recorded_by)
       SELECT tenant_id, id, 'sales', 'grant', 'consent', 'import', 'form archive', now() - interval '40 days', 'bench' FROM ringvakt.contacts WHERE tenant_id = $1`,
      [tenantId],
    );
    await plain.query(
      `INSERT INTO ringvakt.consent_events (tenant_id, contact_id, purpose, action, source, occurred_at, recorded_by)
       SELECT $1, id, 'sales', 'object', 'phone call', now() - interval '20 days', 'bench' FROM unnest($2::uuid[]) AS u(id)`,
      [tenantId, objecting],
    );
    await plain.query(
      `WITH picked AS (SELECT c.id FROM ringvakt.contacts c WHERE c.tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM ringvakt.subject_keys k WHERE k.tenant_id = $1 AND k.subject_id = c.id) ORDER BY c.id DESC LIMIT $2 / 100),
       gone AS (DELETE FROM ringvakt.contact_phones p USING picked WHERE p.tenant_id = $1 AND p.contact_id = picked.id RETURNING p.contact_id),
       erased AS (UPDATE ringvakt.contacts c SET status = 'erased', erased_at = now(), name_ciphertext = NULL, email_ciphertext = NULL, email_index = NULL FROM picked WHERE c.tenant_id = $1 AND c.id = picked.id RETURNING c.id),
       keys AS (INSERT INTO ringvakt.subject_keys (tenant_id, subject_id, destroyed_at) SELECT $1, id, now() FROM erased)
       INSERT INTO ringvakt.erasure_ledger (tenant_id, subject_id, method, reason) SELECT $1, id, 'crypto_shredding', 'request' FROM erased`,
      [tenantId, CONTACTS],
    );
    const campaign = await plain.query<{ id: string }>(`INSERT INTO ringvakt.campaigns (tenant_id, name, state, jurisdiction, amd, started_at) VALUES ($1, 'Bench', 'active', 'nordic_eu', false, now() - interval '30 days') RETURNING id`, [tenantId]);
    await plain.query(`INSERT INTO ringvakt.suppression_registries (tenant_id, format, name, entries) VALUES ($1, 'no_reservasjon', 'Reservasjonsregisteret', 1)`, [tenantId]);
    await plain.query(
      `INSERT INTO ringvakt.dial_attempts (tenant_id, id, campaign_id, contact_id, attempt, state, dialer, checks, reserved_at, dialed_at, answered_at, outcome, ended_at)
       SELECT $1, gen_random_uuid(), $2, id, 1, 'ended', 'bench', '{status,attempts,window,consent,number,suppression}', at, at, at + interval '10 seconds',
              CASE WHEN n % 100 = 0 THEN 'abandoned' ELSE 'live' END, at + interval '3 minutes'
         FROM (SELECT id, row_number() OVER () AS n, now() - (random() * interval '30 days') AS at FROM ringvakt.contacts WHERE tenant_id = $1 AND status = 'active' LIMIT $3) picked`,
      [tenantId, campaign.rows[0]!.id, Math.floor(CONTACTS * 0.3)],
    );
    await plain.query('VACUUM ANALYZE ringvakt.contacts, ringvakt.contact_phones, ringvakt.consent_events, ringvakt.suppressions, ringvakt.dial_attempts, ringvakt.subject_keys, ringvakt.erasure_ledger');
    process.stderr.write(`  compliance: ${CONTACTS} contacts with phones, consents, objections, erasures and ${Math.floor(CONTACTS * 0.3)} calls seeded in ${((Date.now() - seeded) / 1000).toFixed(1)} s\n`);

    const countStarted = process.hrtime.bigint();
    await plain.query('SELECT (SELECT count(*) FROM ringvakt.contacts WHERE tenant_id = $1) + (SELECT count(*) FROM ringvakt.contact_phones WHERE tenant_id = $1)', [tenantId]);
    const baselineMs = Number(process.hrtime.bigint() - countStarted) / 1e6;

    const tenantDb = database.forTenant(tenantId);
    const evidenceStarted = process.hrtime.bigint();
    const run = await runEvidence(tenantDb, { crypto: await database.crypto() }, 'request', { type: 'operator' });
    const evidenceMs = Number(process.hrtime.bigint() - evidenceStarted) / 1e6;
    // The objection check decrypts every objector's numbers and their suppressions: it must have measured them all.
    const objections = run.results.find((result) => result.checkId === 'privacy.objections_suppressed');
    if (objections?.status !== 'pass' || objections.population !== OBJECTING) throw new Error(`the objection check did not measure the ${OBJECTING} objectors: ${objections?.measured}`);
    process.stderr.write(`  compliance: ${run.results.length} checks, ${run.results.filter((result) => result.status === 'fail').length} failing (a bench tenant keeps few controls), in ${evidenceMs.toFixed(0)} ms\n`);

    const key = await loadSigningKey(database.systemDb, (await database.crypto()).root);
    const reportStarted = process.hrtime.bigint();
    const report = await tenantDb.snapshot((trx) => buildTrustReport(trx, 'Compliance bench', 90));
    const pdf = await trustReportPdf(signTrustReport(report, key));
    const reportMs = Number(process.hrtime.bigint() - reportStarted) / 1e6;
    process.stderr.write(`  compliance: trust report of ${report.controls.length} controls, PDF ${pdf.length} bytes, in ${reportMs.toFixed(0)} ms\n`);
    process.stderr.write(`  compliance: failing ${run.results.filter((result) => result.status === 'fail').map((result) => result.checkId).join(' ')}\n`);
    return [
      { name: `compliance: full evidence run, ${run.results.length} checks, tenant with ${CONTACTS} contacts (baseline: one count of its contacts and phones)`, unit: 'ms', ours: Math.round(evidenceMs), baseline: Math.round(baselineMs), higherIsBetter: false, target: '≤ 30,000 ms', met: evidenceMs <= 30_000 },
      { name: `compliance: trust report built, signed and rendered as PDF (baseline: the same count)`, unit: 'ms', ours: Math.round(reportMs), baseline: Math.round(baselineMs), higherIsBetter: false, target: '≤ 5,000 ms', met: reportMs <= 5_000 },
    ];
  } finally {
    await plain.end();
    await database.close();
    rmSync(folder, { recursive: true, force: true });
  }
}
