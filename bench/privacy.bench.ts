import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { createLogger } from '../src/logger.ts';
import { createTenantWithOwner } from '../src/modules/setup/setup.service.ts';
import { createContact } from '../src/modules/contacts/contacts.service.ts';
import { createUser } from '../src/modules/users/users.repo.ts';
import { setAgentState } from '../src/modules/agents/agent-states.ts';
import { startCampaign } from '../src/modules/campaigns/campaign-lifecycle.ts';
import { createCampaignDialer } from '../src/dialer/campaign-dialer.ts';
import { predictivePacer } from '../src/dialer/pacers.ts';
import { VirtualClock } from '../src/telephony/clock.ts';
import { seededRandom } from '../src/telephony/random.ts';
import { createSimulator } from '../src/telephony/simulator.ts';
import { DEFAULT_CALLEE_MODEL } from '../src/telephony/callee-model.ts';
import { createRequest, loadRequest, verifyRequest } from '../src/privacy/requests.ts';
import { buildBundle, newDownloadToken, sealBundle } from '../src/privacy/export-bundle.ts';
import { eraseSubject } from '../src/privacy/erasure.ts';
import { beginSweep, runSweep } from '../src/privacy/retention.ts';
import { zoneOpenNow } from './floor-scale.bench.ts';
import type { BenchRow } from './support.ts';

const CONTACTS = Number(process.env.BENCH_PRIVACY_CONTACTS ?? 1_000_000);
const INTERACTIONS = Number(process.env.BENCH_PRIVACY_INTERACTIONS ?? 5_000_000);
/** Expired interactions our sweep anonymises; and a second, smaller expired set for the baseline. */
const EXPIRED = Math.min(1_000_000, Math.floor(INTERACTIONS / 5));
const BASELINE_EXPIRED = Math.floor(EXPIRED / 5);

const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
};

/**
 * GDPR operations at scale, on the embedded PostgreSQL: one real subject (encrypted, with calls
 * and notes) among 1,000,000 contacts and 5,000,000 interactions (synthetic rows: random
 * ciphertext, no subject keys, random blind indexes — the shape and the index collisions of real
 * data). Measured: finding the subject by phone through the blind index and building its sealed
 * export bundle; erasing it; and a retention sweep anonymising 1,000,000 expired interactions
 * while a campaign dialer runs in real time, with the dialer's decision p99 before and during.
 * Baselines: the subject's rows read by primary key without crypto or bundle; a plain UPDATE
 * erasing one row; one UPDATE statement anonymising an expired set (rows/s).
 */
export async function privacyBench(): Promise<BenchRow[]> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-bench-privacy-'));
  chmodSync(folder, 0o711);
  const logger = createLogger('warn');
  const config = loadConfig({ RINGVAKT_DATA_DIR: folder, RINGVAKT_LOG_LEVEL: 'warn' });
  const database = await openDatabase(config, logger, { applyMigrations: true, ownerAccess: true });
  const admin = new pg.Client({ connectionString: database.migratorUrl(), options: '-c search_path=ringvakt' });
  await admin.connect();
  try {
    const tenant = await createTenantWithOwner(database, { slug: 'gdpr', name: 'GDPR', ownerEmail: 'owner@gdpr.example', ownerName: 'Owner', publicUrl: 'http://127.0.0.1' });
    const tenantDb = database.forTenant(tenant.tenantId);
    const crypto = await database.crypto();
    const zone = zoneOpenNow();

    // The real subject, and the campaigns the synthetic interactions belong to.
    const setup = await tenantDb.transaction(async (trx) => {
      const subject = await createContact(trx, crypto, { name: 'Kari Nordmann', email: 'kari@gdpr.example', phones: [{ kind: 'mobile', number: '+4791234567' }], notes: 'Real subject' }, { defaultRegion: 'NO' });
      const old = (await trx.insertInto('campaigns').values({ name: 'Old campaign' }).returning('id').executeTakeFirstOrThrow()).id;
      const baseline = (await trx.insertInto('campaigns').values({ name: 'Baseline campaign' }).returning('id').executeTakeFirstOrThrow()).id;
      const recent = (await trx.insertInto('campaigns').values({ name: 'Recent campaign' }).returning('id').executeTakeFirstOrThrow()).id;
      for (let attempt = 1; attempt <= 5; attempt += 1) {
        const id = globalThis.crypto.randomUUID();
        const notes = await crypto.cipher.encrypt(trx, { table: 'dial_attempts', recordId: id, field: 'notes' }, `Call ${attempt} notes`, subject.id);
        await trx.insertInto('dial_attempts').values({ id, campaign_id: recent, contact_id: subject.id, attempt, dialer: 'bench', state: 'ended', outcome: 'live', reserved_at: new Date(), ended_at: new Date(), notes_ciphertext: notes, disposition: 'sale' }).execute();
      }
      return { subject: subject.id, old, baseline, recent };
    });

    process.stderr.write(`  privacy: generating ${CONTACTS} contacts and ${INTERACTIONS} interactions…\n`);
    const generated = performance.now();
    await admin.query("SET session_replication_role = 'replica'");
    await admin.query(
      `INSERT INTO contacts (tenant_id, id, status, name_ciphertext, time_zones, created_at, updated_at)
       SELECT $1, md5('c' || g)::uuid, 'active', decode(md5('n' || g) || md5('m' || g), 'hex'), '{Europe/Oslo}', now() - interval '30 days', now() - interval '30 days'
         FROM generate_series(1, $2::int) g`,
      [tenant.tenantId, CONTACTS],
    );
    await admin.query(
      `INSERT INTO contact_phones (tenant_id, contact_id, position, kind, number_ciphertext, number_index)
       SELECT $1, md5('c' || g)::uuid, 0, 'mobile', decode(md5('p' || g), 'hex'), substring(decode(md5('i' || g), 'hex') from 1 for 3)
         FROM generate_series(1, $2::int) g`,
      [tenant.tenantId, CONTACTS],
    );
    // Interactions: EXPIRED in the old campaign and BASELINE_EXPIRED in the baseline one, 500 days
    // back; the rest yesterday. (campaign, contact, attempt) stays unique.
    await admin.query(
      `INSERT INTO dial_attempts (tenant_id, id, campaign_id, contact_id, attempt, dialer, state, outcome, reserved_at, dialed_at, ended_at, ring_ms)
       SELECT $1, md5('a' || g)::uuid,
              CASE WHEN g <= $3::int THEN $4::uuid WHEN g <= $3::int + $5::int THEN $6::uuid ELSE $7::uuid END,
              md5('c' || (1 + g % $8::int))::uuid, 1 + g / $8::int, 'bench', 'ended', 'no_answer',
              t, t, t + interval '20 seconds', 20000
         FROM generate_series(1, $2::int) g,
              LATERAL (SELECT CASE WHEN g <= $3::int + $5::int THEN now() - interval '500 days' ELSE now() - interval '1 day' END AS t) times`,
      [tenant.tenantId, INTERACTIONS, EXPIRED, setup.old, BASELINE_EXPIRED, setup.baseline, setup.recent, CONTACTS],
    );
    await admin.query("SET session_replication_role = 'origin'");
    await admin.query('ANALYZE contacts, contact_phones, dial_attempts');
    const generationSeconds = (performance.now() - generated) / 1000;

    // 1. Find and export: intake, identity check (the blind-index lookup), sealed bundle.
    const exportStarted = performance.now();
    const bundleBytes = await tenantDb.transaction(async (trx) => {
      const created = await createRequest(trx, crypto, { kind: 'access', channel: 'email', requester: { name: 'Kari Nordmann' }, identifiers: { phone: '+47 912 34 567' }, receivedAt: new Date() }, 'bench');
      const verified = await verifyRequest(trx, crypto, created.id, { method: 'document' }, 'bench');
      if (verified.subject_ids.length !== 1) throw new Error(`the bench subject was found ${verified.subject_ids.length} times`);
      const { zip } = await buildBundle(trx, crypto, await loadRequest(trx, created.id), 'GDPR');
      const { key } = newDownloadToken();
      return sealBundle(key, zip, trx.tenantId, created.id).length;
    });
    const exportMs = performance.now() - exportStarted;
    const rawStarted = performance.now();
    await admin.query('SELECT * FROM contacts WHERE tenant_id = $1 AND id = $2', [tenant.tenantId, setup.subject]);
    await admin.query('SELECT * FROM dial_attempts WHERE tenant_id = $1 AND contact_id = $2', [tenant.tenantId, setup.subject]);
    const rawMs = performance.now() - rawStarted;

    // 2. Erasure of the subject, and a plain one-row UPDATE for comparison.
    const eraseStarted = performance.now();
    await tenantDb.transaction((trx) => eraseSubject(trx, crypto, setup.subject, { reason: 'request' }));
    const eraseMs = performance.now() - eraseStarted;
    const plainStarted = performance.now();
    await admin.query("UPDATE contacts SET name_ciphertext = NULL WHERE tenant_id = $1 AND id = md5('c1')::uuid", [tenant.tenantId]);
    const plainEraseMs = performance.now() - plainStarted;

    // 3. A dialer in real time: 50 agents, predictive, on real contacts in a zone open now.
    const dialer = await startBenchDialer(tenantDb, crypto, zone, logger);
    process.stderr.write('  privacy: dialer running; measuring its decisions before the sweep…\n');
    await new Promise((resolve) => setTimeout(resolve, 15_000));
    const before = dialer.decisions.splice(0);

    // Baseline: one UPDATE statement anonymising the baseline campaign's expired set.
    const baselineStarted = performance.now();
    const baselineRows = await admin.query(`UPDATE dial_attempts SET contact_id = NULL, anonymised_at = now() WHERE tenant_id = $1 AND campaign_id = $2 AND contact_id IS NOT NULL`, [tenant.tenantId, setup.baseline]);
    const baselineRate = (baselineRows.rowCount ?? 0) / ((performance.now() - baselineStarted) / 1000);
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    dialer.decisions.splice(0);

    // Our sweep over the expired set, while the dialer runs.
    await tenantDb.transaction((trx) => trx.insertInto('retention_policies').values({ category: 'interactions', retain_days: 365, action: 'anonymise', updated_by: 'bench' }).execute());
    const sweepOptions = { dryRun: false, requestedBy: 'bench', node: 'bench' };
    const sweepId = await beginSweep(tenantDb, sweepOptions);
    const sweepStarted = performance.now();
    const report = await runSweep(tenantDb, crypto, sweepId ?? '', sweepOptions);
    const sweepSeconds = (performance.now() - sweepStarted) / 1000;
    const during = dialer.decisions.splice(0);
    const counters = await dialer.stop();
    const swept = report.interactions?.done ?? 0;
    const sweepRate = swept / sweepSeconds;
    const beforeP99 = quantile(before, 0.99);
    const duringP99 = quantile(during, 0.99);

    process.stderr.write(
      `  privacy: generated in ${generationSeconds.toFixed(0)} s; find + export ${exportMs.toFixed(0)} ms (${bundleBytes} bytes sealed), raw rows ${rawMs.toFixed(1)} ms; ` +
        `erasure ${eraseMs.toFixed(0)} ms (plain update ${plainEraseMs.toFixed(1)} ms); sweep ${swept} interactions in ${sweepSeconds.toFixed(1)} s = ${sweepRate.toFixed(0)} rows/s ` +
        `(one UPDATE statement: ${baselineRate.toFixed(0)} rows/s); dialer decision p99 ${beforeP99.toFixed(1)} ms before (${before.length} rounds), ${duringP99.toFixed(1)} ms during the sweep (${during.length} rounds); ` +
        `dialer dialed ${counters.dialed}, errors ${counters.errors}\n`,
    );
    return [
      { name: `privacy: find + export one subject (${CONTACTS} contacts, ${INTERACTIONS} interactions)`, unit: 'ms', ours: exportMs, baseline: rawMs, higherIsBetter: false, target: '≤ 2000 ms', met: exportMs <= 2000 },
      { name: 'privacy: erasure of one subject', unit: 'ms', ours: eraseMs, baseline: plainEraseMs, higherIsBetter: false, target: '≤ 1000 ms', met: eraseMs <= 1000 },
      { name: `privacy: retention sweep (${swept} expired interactions, dialer running)`, unit: 'rows/s', ours: sweepRate, baseline: baselineRate, higherIsBetter: true, target: '≥ 20000 rows/s', met: sweepRate >= 20_000 && swept >= EXPIRED },
      { name: 'privacy: dialer decision p99 during the sweep', unit: 'ms', ours: duringP99, baseline: beforeP99, higherIsBetter: false, target: 'reported (≤ 50 ms as on the floor)', met: duringP99 <= 50 },
    ];
  } finally {
    await admin.end();
    await database.close();
    rmSync(folder, { recursive: true, force: true });
  }
}

async function startBenchDialer(
  tenantDb: ReturnType<Awaited<ReturnType<typeof openDatabase>>['forTenant']>,
  crypto: Awaited<ReturnType<Awaited<ReturnType<typeof openDatabase>>['crypto']>>,
  zone: string,
  logger: ReturnType<typeof createLogger>,
) {
  const AGENTS = 50;
  const campaignId = await tenantDb.transaction(async (trx) => {
    const campaign = await trx
      .insertInto('campaigns')
      .values({ name: 'Live', jurisdiction: 'uk_ofcom', caller_id: '+441632960000', mode: 'predictive', amd: true, wrap_up_ms: 5_000 })
      .returning('id')
      .executeTakeFirstOrThrow();
    const list = await trx.insertInto('contact_lists').values({ name: 'Live list', default_region: 'NO', campaign_id: campaign.id }).returning('id').executeTakeFirstOrThrow();
    const ids: string[] = [];
    for (let index = 0; index < 3_000; index += 1) {
      ids.push((await createContact(trx, crypto, { name: `Live ${index}`, phones: [{ kind: 'mobile', number: `+4741${String(index).padStart(6, '0')}` }], timeZone: zone }, { defaultRegion: 'NO' })).id);
    }
    await trx.insertInto('contact_list_members').values(ids.map((contactId) => ({ list_id: list.id, contact_id: contactId }))).execute();
    await trx.insertInto('suppression_registries').values({ format: 'uk_tps', name: 'TPS' }).execute();
    await startCampaign(trx, campaign.id);
    for (let index = 0; index < AGENTS; index += 1) {
      const user = await createUser(trx, crypto.cipher, { email: `live${index}@gdpr.example`, displayName: `Live ${index}`, role: 'agent' });
      await setAgentState(trx, user.id, { state: 'available', campaignId: campaign.id, now: new Date() });
    }
    return campaign.id;
  });
  const clock = new VirtualClock(Date.now());
  const stopClock = clock.followRealTime();
  const simulator = createSimulator({ clock, random: seededRandom(29), model: { ...DEFAULT_CALLEE_MODEL, talkMs: { kind: 'lognormal', medianMs: 20_000, sigma: 0.5 } } });
  const decisions: number[] = [];
  const dialer = createCampaignDialer({ tenantDb, crypto, provider: simulator, clock, campaignId, dialerId: 'bench', logger, pacer: predictivePacer({ cap: 0.03, margin: 0.01 }), onRound: (round) => decisions.push(round.decisionMs) });
  await dialer.start();
  return {
    decisions,
    async stop() {
      const counters = dialer.counters();
      dialer.pause();
      await dialer.stop();
      stopClock();
      return counters;
    },
  };
}
