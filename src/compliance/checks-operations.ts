import { sql } from '../db/kysely.ts';
import { FieldCipherError } from '../crypto/field-cipher.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';
import { loadProfiles, type JurisdictionProfile } from '../modules/campaigns/campaign-settings.ts';
import { DECLARED_AMD_ACCURACY } from '../modules/reports/reports.routes.ts';
import { rowHeld } from '../privacy/legal-holds.ts';
import { DIAL_CHECKS } from '../dialer/dial-checks.ts';
import { abandonmentMeasures } from '../dialer/dial-stats.ts';
import { matchPhonesInBulk } from '../modules/suppression/suppression.service.ts';
import { openNumbers, rowsByContact } from '../modules/contacts/open-contact.ts';
import { DAY, notApplicable, SAMPLE, verdict, type Check } from './check-support.ts';

/** Objecting people looked at per query: their numbers and suppression candidates decrypted a page at a time. */
const OBJECTION_PAGE = 1_000;

/**
 * Checks of what the product does with people's data day to day: the dialer's legal limits, the
 * dial-time checks, retention applied, erasure complete, consent and objections honoured. Every
 * population is counted in SQL (a tenant may hold millions of contacts and calls); only a sample
 * of failing ids leaves the database.
 */


/** Days of grace past a retention period before a row counts as kept too long: the sweep runs daily. */
const RETENTION_GRACE_DAYS = 2;

type Count = { population: string; n: string; sample: string[] | null };
/** A population, how many of it fail, and a sample of their ids — all from one query. */
const counted = async (trx: TenantTransaction, query: ReturnType<typeof sql<Count>>) => {
  const row = (await query.execute(trx)).rows[0];
  return { population: Number(row?.population ?? 0), n: Number(row?.n ?? 0), sample: row?.sample ?? [] };
};

export const OPERATIONS_CHECKS: readonly Check[] = [
  {
    id: 'dialer.abandonment_within_cap',
    title: 'Every campaign that dialed in the last 30 days kept its abandonment rate under its legal cap over its last two completed windows',
    async run(trx, now) {
      const campaigns = await sql<{ id: string; jurisdiction: string | null; amd: boolean; started_at: Date | null; created_at: Date }>`
        SELECT c.id, c.jurisdiction, c.amd, c.started_at, c.created_at FROM campaigns c
         WHERE EXISTS (SELECT 1 FROM dial_attempts a WHERE a.campaign_id = c.id AND a.dialed_at > ${new Date(now.getTime() - 30 * DAY)})
         ORDER BY c.id`.execute(trx);
      if (campaigns.rows.length === 0) return notApplicable('no campaign dialed in the last 30 days');
      const profiles = new Map((await loadProfiles(trx)).map((profile) => [profile.code, profile]));
      const failing: string[] = [];
      let worst = 0;
      let judged = 0;
      const judgedCampaigns = new Set<string>();
      for (const campaign of campaigns.rows) {
        const profile: JurisdictionProfile | undefined = campaign.jurisdiction ? profiles.get(campaign.jurisdiction) : undefined;
        // Without a profile the strictest cap in use anywhere (3 %, on the measure that counts AMD's mistakes) applies.
        const cap = profile?.abandonCap ?? 0.03;
        const measure = profile?.abandonMeasure === 'live_answers' ? 'us' : 'uk';
        const windowMs = profile?.abandonWindowMs ?? DAY;
        // The legal windows run from the campaign's start; a window still running breaches nothing yet, so the
        // last two completed ones are judged.
        const started = (campaign.started_at ?? campaign.created_at).getTime();
        const currentStart = started + Math.floor(Math.max(0, now.getTime() - started) / windowMs) * windowMs;
        for (const back of [1, 2]) {
          const from = new Date(currentStart - back * windowMs);
          const to = new Date(currentStart - (back - 1) * windowMs);
          if (to.getTime() <= started) continue;
          const counts = await sql<{ live: string; abandoned: string; human: string; machine: string }>`
            SELECT count(*) FILTER (WHERE answered_at IS NOT NULL AND amd_result IS DISTINCT FROM 'machine') AS live,
                   count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned,
                   count(*) FILTER (WHERE amd_result IN ('human', 'unknown')) AS human,
                   count(*) FILTER (WHERE amd_result = 'machine') AS machine
              FROM dial_attempts WHERE campaign_id = ${campaign.id} AND dialed_at >= ${from} AND dialed_at < ${to}`.execute(trx);
          const row = counts.rows[0];
          const rate = abandonmentMeasures({ liveAnswers: Number(row?.live ?? 0), abandoned: Number(row?.abandoned ?? 0), humanVerdicts: Number(row?.human ?? 0), machineVerdicts: Number(row?.machine ?? 0), accuracy: campaign.amd ? DECLARED_AMD_ACCURACY : null })[measure].rate;
          judged += 1;
          judgedCampaigns.add(campaign.id);
          worst = Math.max(worst, rate);
          if (rate > cap && !failing.includes(campaign.id)) failing.push(campaign.id);
        }
      }
      if (judged === 0) return notApplicable(`${campaigns.rows.length} campaigns dialed in 30 days; none has a completed legal window yet`);
      return verdict(judgedCampaigns.size, failing, (n) => `${campaigns.rows.length} campaigns dialed in 30 days, ${judgedCampaigns.size} with completed windows (${judged} judged); highest abandonment ${(worst * 100).toFixed(2)} %; ${n} over their cap`);
    },
  },
  {
    id: 'dialer.dial_checks_recorded',
    title: 'Every call placed in the last 30 days passed every dial-time check (status, attempts, hours, consent, number, suppression) at the moment it was dialed',
    async run(trx, now) {
      const { population, n, sample } = await counted(trx, sql<Count>`
        SELECT count(*) AS population, count(*) FILTER (WHERE NOT (a.checks @> ${[...DIAL_CHECKS]}::text[])) AS n,
               (array_agg(a.id::text ORDER BY a.dialed_at) FILTER (WHERE NOT (a.checks @> ${[...DIAL_CHECKS]}::text[])))[1:${SAMPLE}] AS sample
          FROM campaigns c JOIN dial_attempts a ON a.campaign_id = c.id AND a.dialed_at > ${new Date(now.getTime() - 30 * DAY)}`);
      if (population === 0) return notApplicable('no call placed in the last 30 days');
      return { ...verdict(population, sample, () => `${population} calls placed in 30 days; ${n} without a record of every dial-time check`), failures: n };
    },
  },
  {
    id: 'dialer.jurisdiction_set',
    title: 'Every campaign that can dial follows a jurisdiction profile (abandonment cap, calling hours, registries)',
    async run(trx) {
      const campaigns = await trx.selectFrom('campaigns').select(['id', 'jurisdiction']).where('state', 'in', ['active', 'paused']).orderBy('id').execute();
      if (campaigns.length === 0) return notApplicable('no active or paused campaign');
      const failing = campaigns.filter((campaign) => campaign.jurisdiction === null).map((campaign) => campaign.id);
      return verdict(campaigns.length, failing, (n) => `${campaigns.length} active or paused campaigns; ${n} without a jurisdiction profile`);
    },
  },
  {
    id: 'dialer.registries_current',
    title: 'Every active campaign is screened against the national do-not-call registries its profile requires, imported recently enough',
    async run(trx, now) {
      const campaigns = await trx.selectFrom('campaigns').select(['id', 'jurisdiction']).where('state', '=', 'active').where('jurisdiction', 'is not', null).orderBy('id').execute();
      if (campaigns.length === 0) return notApplicable('no active campaign under a jurisdiction profile');
      const profiles = new Map((await loadProfiles(trx)).map((profile) => [profile.code, profile]));
      const registries = new Map((await trx.selectFrom('suppression_registries').select(['format', 'imported_at', 'valid_until']).execute()).map((row) => [row.format as string, row]));
      const failing: string[] = [];
      const stale = new Set<string>();
      for (const campaign of campaigns) {
        const profile = profiles.get(campaign.jurisdiction as string);
        for (const format of profile?.requiredRegistries ?? []) {
          const registry = registries.get(format);
          const tooOld = !registry || (profile?.registryMaxAgeMs !== null && profile?.registryMaxAgeMs !== undefined && now.getTime() - registry.imported_at.getTime() > profile.registryMaxAgeMs) || (registry.valid_until !== null && registry.valid_until < now);
          if (tooOld) stale.add(format);
          if (tooOld && !failing.includes(campaign.id)) failing.push(campaign.id);
        }
      }
      return verdict(campaigns.length, failing, (n) => `${campaigns.length} active campaigns; ${n} dialing on a missing or outdated registry${stale.size > 0 ? ` (${[...stale].sort().join(', ')})` : ''}`);
    },
  },
  {
    id: 'privacy.retention_applied',
    title: 'Nothing is kept past its retention period: calls, notes, recordings, import rejects and export bundles older than their period are gone (legal holds aside)',
    async run(trx, now) {
      const policies = await trx.selectFrom('retention_policies').select(['category', 'retain_days']).execute();
      const cutoff = (category: string) => {
        const policy = policies.find((row) => row.category === category);
        return policy ? new Date(now.getTime() - (policy.retain_days + RETENTION_GRACE_DAYS) * DAY) : undefined;
      };
      const held = rowHeld(sql.ref('a.campaign_id'), sql.ref('a.contact_id'));
      const recordingHeld = rowHeld(sql.ref('r.campaign_id'), sql.ref('r.contact_id'));
      const overdue: Record<string, number> = {};
      const measure = async (category: string, query: (cut: Date) => ReturnType<typeof sql<{ n: string }>>) => {
        const cut = cutoff(category);
        if (!cut) return;
        overdue[category] = Number((await query(cut).execute(trx)).rows[0]?.n ?? 0);
      };
      await measure('interactions', (cut) => sql<{ n: string }>`SELECT (SELECT count(*) FROM dial_attempts a WHERE a.contact_id IS NOT NULL AND a.ended_at < ${cut} AND NOT ${held}) + (SELECT count(*) FROM inbound_calls i WHERE i.caller_index IS NOT NULL AND i.ended_at < ${cut}) AS n`);
      await measure('notes', (cut) => sql<{ n: string }>`SELECT count(*) AS n FROM dial_attempts a WHERE a.notes_ciphertext IS NOT NULL AND coalesce(a.disposed_at, a.ended_at, a.reserved_at) < ${cut} AND NOT ${held}`);
      await measure('recordings', (cut) => sql<{ n: string }>`SELECT count(*) AS n FROM recordings r WHERE r.started_at < ${cut} AND r.state IN ('saved', 'failed') AND NOT ${recordingHeld}`);
      await measure('import_rejects', (cut) => sql<{ n: string }>`SELECT count(*) AS n FROM contact_import_rejects r WHERE r.import_id IN (SELECT i.id FROM contact_imports i WHERE i.finished_at < ${cut})`);
      await measure('exports', (cut) => sql<{ n: string }>`SELECT count(*) AS n FROM privacy_exports e WHERE e.bundle_sealed IS NOT NULL AND e.created_at < ${cut}`);
      const categories = Object.keys(overdue);
      if (categories.length === 0) return notApplicable('no retention period set (the retention-period check fails instead)');
      const failing = categories.filter((category) => (overdue[category] ?? 0) > 0);
      return verdict(categories.length, failing, (n) =>
        `${categories.length} categories measured (${RETENTION_GRACE_DAYS} days' grace); ${n} with rows past their period${n > 0 ? `: ${failing.map((category) => `${category} ${overdue[category]}`).join(', ')}` : ''}`,
      );
    },
  },
  {
    id: 'privacy.erasure_complete',
    title: 'Every erased person is unreadable: their subject key destroyed, no number or personal field left',
    async run(trx) {
      const result = await sql<{ erased: string; n: string; sample: string[] | null }>`
        WITH erased AS (
          SELECT subject_id AS id FROM erasure_ledger
          UNION SELECT id FROM contacts WHERE status = 'erased'),
        bad AS (
          SELECT e.id FROM erased e
           WHERE EXISTS (SELECT 1 FROM subject_keys k WHERE k.subject_id = e.id AND k.wrapped_key IS NOT NULL)
              OR EXISTS (SELECT 1 FROM contact_phones p WHERE p.contact_id = e.id)
              OR EXISTS (SELECT 1 FROM contacts c WHERE c.id = e.id AND (c.status <> 'erased' OR c.record_ciphertext IS NOT NULL)))
        SELECT (SELECT count(*) FROM erased) AS erased, (SELECT count(*) FROM bad) AS n, (SELECT array_agg(id::text) FROM (SELECT id FROM bad ORDER BY id LIMIT ${SAMPLE}) s) AS sample`.execute(trx);
      const row = result.rows[0];
      const erased = Number(row?.erased ?? 0);
      if (erased === 0) return notApplicable('nobody erased yet');
      return { ...verdict(erased, row?.sample ?? [], () => `${erased} people erased; ${row?.n ?? 0} with a live key, a number or a record left`), failures: Number(row?.n ?? 0) };
    },
  },
  {
    id: 'privacy.consent_evidenced',
    title: 'Every consent given in the last year can be demonstrated: it names its source and a reference to the evidence',
    async run(trx, now) {
      const { population, n, sample } = await counted(trx, sql<Count>`
        SELECT count(*) AS population, count(*) FILTER (WHERE evidence_ref IS NULL) AS n,
               (array_agg(id::text ORDER BY recorded_at) FILTER (WHERE evidence_ref IS NULL))[1:${SAMPLE}] AS sample
          FROM consent_events WHERE action = 'grant' AND basis = 'consent' AND recorded_at > ${new Date(now.getTime() - 365 * DAY)}`);
      if (population === 0) return notApplicable('no consent recorded in the last year (other lawful bases need no consent evidence)');
      return { ...verdict(population, sample, () => `${population} consents in a year; ${n} without a reference to their evidence`), failures: n };
    },
  },
  {
    id: 'privacy.objections_suppressed',
    title: 'Every objection to direct marketing stands as a suppression of the person’s numbers',
    async run(trx, _now, { crypto }) {
      // The newest sales entry per contact is the one in force (an objection to direct marketing is
      // about sales calls; a later consent ends it). Each of the objector's numbers must stand as a
      // permanent tenant-wide suppression — whoever's record created it (a shared household number
      // is suppressed once) — as the dialer itself finds it: its numbers decrypted and put to the
      // dialer's own matcher, so a suppression of another number that shares the short blind index
      // does not count. The objectors come through a cursor, a page at a time: a tenant may have millions.
      await sql`
        DECLARE compliance_objectors NO SCROLL CURSOR FOR
        WITH standing AS (
          SELECT DISTINCT ON (contact_id) contact_id, action FROM consent_events WHERE purpose = 'sales' ORDER BY contact_id, recorded_at DESC, id)
        SELECT s.contact_id AS id FROM standing s JOIN contacts c ON c.id = s.contact_id
         WHERE s.action = 'object' AND c.status <> 'erased' AND EXISTS (SELECT 1 FROM contact_phones p WHERE p.contact_id = s.contact_id)
         ORDER BY s.contact_id`.execute(trx);
      let all = 0;
      let failures = 0;
      const sample: string[] = [];
      let unreadable = 0;
      for (;;) {
        const ids = (await sql<{ id: string }>`FETCH FORWARD ${sql.raw(String(OBJECTION_PAGE))} FROM compliance_objectors`.execute(trx)).rows.map((row) => row.id);
        if (ids.length === 0) break;
        all += ids.length;
        const phones = await trx
          .selectFrom('contact_phones')
          .innerJoin('contacts', (join) => join.onRef('contacts.tenant_id', '=', 'contact_phones.tenant_id').onRef('contacts.id', '=', 'contact_phones.contact_id'))
          .select(['contact_phones.contact_id', 'contact_phones.position', 'contact_phones.number_ciphertext', 'contacts.record_ciphertext'])
          .where('contact_phones.contact_id', 'in', ids)
          .orderBy('contact_phones.contact_id')
          .orderBy('contact_phones.position')
          .execute();
        const keys = await crypto.keyring.subjectKeys(trx, ids);
        // Each objector's numbers, or null when one cannot be read (its key gone while the contact is
        // not erased, or its ciphertext altered): such a number cannot be shown suppressed.
        const phonesOf = rowsByContact(phones);
        const numbers = new Map<string, string[] | null>();
        for (const id of ids) {
          const own = phonesOf.get(id) ?? [];
          const key = keys.get(id);
          if (own.length === 0) {
            numbers.set(id, []);
            continue;
          }
          try {
            if (!key) throw new FieldCipherError('No key exists for this data subject');
            // One open of the contact's record for all its numbers.
            numbers.set(id, openNumbers(crypto.cipher, trx.tenantId, id, key, own[0]?.record_ciphertext ?? null, own).map((number) => number.e164));
          } catch (error) {
            if (!(error instanceof FieldCipherError)) throw error;
            numbers.set(id, null);
          }
        }
        const matches = await matchPhonesInBulk(trx, crypto, [...numbers.values()].flatMap((list) => list ?? []), null);
        // Of what the dialer matches, only a permanent tenant-wide entry stands for an objection.
        const matched = [...new Set([...matches.values()].flat())];
        const permanent = new Set(
          matched.length === 0 ? [] : (await trx.selectFrom('suppressions').select('id').where('id', 'in', matched).where('scope', '=', 'tenant').where('expires_at', 'is', null).execute()).map((row) => row.id),
        );
        for (const [id, list] of numbers) {
          if (list === null) unreadable += 1;
          if (list !== null && list.every((number) => (matches.get(number) ?? []).some((entry) => permanent.has(entry)))) continue;
          failures += 1;
          if (sample.length < SAMPLE) sample.push(id);
        }
      }
      await sql`CLOSE compliance_objectors`.execute(trx);
      if (all === 0) return notApplicable('no objection standing');
      return { ...verdict(all, sample, () => `${all} people objecting; ${failures} of them not suppressed${unreadable > 0 ? ` (${unreadable} whose numbers could not be read)` : ''}`), failures };
    },
  },
  {
    id: 'encryption.recordings',
    title: 'Call recordings are stored only as ciphertext',
    async run(trx) {
      // The first bytes only: a recording is megabytes.
      const saved = await sql<{ attempt_id: string; head: Buffer }>`
        SELECT attempt_id, substring(audio_ciphertext FROM 1 FOR 4) AS head FROM recordings WHERE audio_ciphertext IS NOT NULL ORDER BY started_at DESC LIMIT 200`.execute(trx);
      if (saved.rows.length === 0) return notApplicable('no recording stored');
      const header = (value: Buffer) => value.length > 3 && value[0] === 0x52 && value[1] === 0x56 && value[2] === 0x01;
      const failing = saved.rows.filter((row) => !header(row.head)).map((row) => row.attempt_id);
      return verdict(saved.rows.length, failing, (n) => `${saved.rows.length} newest recordings sampled; ${n} not field ciphertext`);
    },
  },
];
