import { sql } from '../db/kysely.ts';
import { mfaRequiredRoles } from '../modules/access/permissions.ts';
import { loadSecurityPolicy } from '../modules/access/security-policy.ts';
import { DETECTION_RULES, LEDGER_RULE_ID } from '../security/detection-rules.ts';
import { ATTESTATION_VALID_MS } from '../security/attestations.ts';
import { needsRehash } from '../modules/access/passwords.ts';
import { ROTATE_AFTER } from '../crypto/keyring.ts';
import { RETENTION_CATEGORIES } from '../privacy/retention.ts';
import { activeUsers, DAY, notApplicable, SAMPLE, verdict, type Check } from './check-support.ts';
import { OPERATIONS_CHECKS } from './checks-operations.ts';
import { PLATFORM_CHECKS } from './checks-platform.ts';
import { GOVERNANCE_CHECKS } from './checks-governance.ts';

export type { Check, CheckResult, CheckStatus } from './check-support.ts';

/**
 * The automated checks of the compliance center: each measures one control against the live
 * system, in the tenant's own transaction (read-only, one snapshot for the whole run), and says
 * pass, fail or not applicable — with what it measured: the population looked at, how many
 * failed, and a sample of the failing ids (ids only, never personal data). A check that cannot
 * fail is a defect: test/compliance.int.test.ts breaks each control and sees its check fail.
 */

const IDENTITY_AND_PRIVACY_CHECKS: readonly Check[] = [
  {
    id: 'identity.mfa_privileged',
    title: 'Every active user whose role or the policy requires a second factor has one enrolled',
    async run(trx) {
      const policy = await loadSecurityPolicy(trx);
      const users = (await activeUsers(trx)).filter((user) => policy.mfaRequiredForAll || (user.role === 'custom' ? user.requires_mfa !== false : mfaRequiredRoles.has(user.role as never)));
      const failing = users.filter((user) => !user.has_totp && !user.has_passkey).map((user) => user.id);
      return verdict(users.length, failing, (n) => `${users.length} active users must use a second factor; ${n} have none enrolled`);
    },
  },
  {
    id: 'identity.dormant_accounts',
    title: 'No enabled account has gone unused for 90 days',
    async run(trx, now) {
      const users = await activeUsers(trx);
      const cutoff = now.getTime() - 90 * DAY;
      const failing = users.filter((user) => (user.last_sign_in ? new Date(user.last_sign_in).getTime() : user.created_at.getTime()) < cutoff).map((user) => user.id);
      return verdict(users.length, failing, (n) => `${users.length} active users; ${n} not signed in for 90 days or more`);
    },
  },
  {
    id: 'identity.token_lifetime',
    title: 'Every API token expires, within a year',
    async run(trx, now) {
      // The database itself refuses a token valid for more than a year (the constraint holds every write; the scan below covers older rows).
      const constraint = await sql<{ valid: boolean }>`
        SELECT true AS valid FROM pg_constraint
         WHERE conname = 'api_tokens_expiry_within_a_year' AND conrelid = (quote_ident(current_schema()) || '.api_tokens')::regclass`.execute(trx);
      const enforced = constraint.rows[0]?.valid === true;
      const tokens = await trx.selectFrom('api_tokens').select(['id', 'expires_at', 'created_at']).where('revoked_at', 'is', null).where('expires_at', '>', now).orderBy('id').execute();
      const failing = [...(enforced ? [] : ['constraint_missing']), ...tokens.filter((token) => token.expires_at.getTime() > token.created_at.getTime() + 366 * DAY).map((token) => token.id)];
      return verdict(tokens.length, failing, (n) => `${tokens.length} API tokens in force; the one-year limit is ${enforced ? '' : 'NOT '}enforced by the database; ${n} problem(s)`);
    },
  },
  {
    id: 'identity.session_timeouts',
    title: 'Sessions end after at most 30 idle minutes and 12 hours in all',
    async run(trx) {
      const policy = await loadSecurityPolicy(trx);
      const failing = [...(policy.sessionIdleMinutes > 30 ? ['session_idle_minutes'] : []), ...(policy.sessionAbsoluteHours > 12 ? ['session_absolute_hours'] : [])];
      return verdict(2, failing, () => `idle timeout ${policy.sessionIdleMinutes} min (at most 30), absolute ${policy.sessionAbsoluteHours} h (at most 12)`);
    },
  },
  {
    id: 'audit.ledger_sealed',
    title: 'Every audit event is sealed into a signed tree head within 5 minutes',
    async run(trx, now) {
      const row = await trx
        .selectFrom('audit_events')
        .select((eb) => [eb.fn.countAll<string>().as('all'), eb.fn.min(eb.case().when('leaf_index', 'is', null).then(eb.ref('occurred_at')).end()).as('oldest_unsealed')])
        .executeTakeFirstOrThrow();
      const checkpoint = await trx.selectFrom('audit_checkpoints').select((eb) => eb.fn.max('signed_at').as('at')).executeTakeFirst();
      const oldest = row.oldest_unsealed ? new Date(row.oldest_unsealed as unknown as string) : undefined;
      const late = oldest !== undefined && now.getTime() - oldest.getTime() > 5 * 60_000;
      const unsigned = Number(row.all) > 0 && !checkpoint?.at;
      return verdict(Number(row.all), [...(late ? ['unsealed_events'] : []), ...(unsigned ? ['no_checkpoint'] : [])], () =>
        `${row.all} events; oldest unsealed ${oldest ? `${Math.round((now.getTime() - oldest.getTime()) / 1000)} s old` : 'none'}; last checkpoint ${checkpoint?.at ? new Date(checkpoint.at as unknown as string).toISOString() : 'none'}`,
      );
    },
  },
  {
    id: 'audit.ledger_verified',
    title: 'The audit ledger was verified in the last 26 hours, and no verification failure is open',
    async run(trx, now) {
      const cursor = await trx.selectFrom('detection_cursors').select('ledger_checked_at').executeTakeFirst();
      const failed = await trx.selectFrom('security_alerts').select('id').where('rule_id', '=', LEDGER_RULE_ID).where('state', '<>', 'resolved').execute();
      const stale = !cursor?.ledger_checked_at || now.getTime() - cursor.ledger_checked_at.getTime() > 26 * 3_600_000;
      return verdict(1, [...(stale ? ['not_verified_recently'] : []), ...failed.map((alert) => alert.id)], () => `last verified ${cursor?.ledger_checked_at?.toISOString() ?? 'never'}; ${failed.length} open verification failures`);
    },
  },
  {
    id: 'monitoring.rules_enabled',
    title: 'Every detection rule is switched on',
    async run(trx) {
      const off = await trx.selectFrom('detection_rule_settings').select('rule_id').where('enabled', '=', false).orderBy('rule_id').execute();
      return verdict(DETECTION_RULES.length, off.map((row) => row.rule_id), (n) => `${DETECTION_RULES.length} rules; ${n} switched off`);
    },
  },
  {
    id: 'monitoring.alerts_acknowledged',
    title: 'High and critical alerts are acknowledged within an hour',
    async run(trx, now) {
      const alerts = await trx.selectFrom('security_alerts').select(['id', 'raised_at', 'acknowledged_at']).where('severity', 'in', ['high', 'critical']).where((eb) => eb.or([eb('raised_at', '>', new Date(now.getTime() - 90 * DAY)), eb('state', '=', 'open')])).orderBy('raised_at').execute();
      const failing = alerts.filter((alert) => (alert.acknowledged_at ?? now).getTime() - alert.raised_at.getTime() > 3_600_000).map((alert) => alert.id);
      return verdict(alerts.length, failing, (n) => `${alerts.length} high or critical alerts in 90 days; ${n} took more than an hour to acknowledge (or still wait)`);
    },
  },
  {
    id: 'awareness.training_current',
    title: 'A security policy is published, and every active user has acknowledged the current policy and training within a year',
    async run(trx, now) {
      const documents = await trx.selectFrom('security_documents').select(['id', 'kind']).where('superseded_at', 'is', null).execute();
      const users = await trx.selectFrom('users').select('id').where('status', '=', 'active').orderBy('id').execute();
      if (!documents.some((doc) => doc.kind === 'policy')) return { status: 'fail', measured: 'no security policy is published', population: users.length, failures: users.length, sample: [] };
      const acknowledged = await trx
        .selectFrom('security_attestations')
        .select(['user_id', 'document_id'])
        .where('document_id', 'in', documents.map((doc) => doc.id))
        .where('acknowledged_at', '>', new Date(now.getTime() - ATTESTATION_VALID_MS))
        .execute();
      const have = new Set(acknowledged.map((row) => `${row.user_id}:${row.document_id}`));
      const failing = users.filter((user) => documents.some((doc) => !have.has(`${user.id}:${doc.id}`))).map((user) => user.id);
      return verdict(users.length, failing, (n) => `${documents.length} current documents; ${users.length} active users; ${n} owe an acknowledgement`);
    },
  },
  {
    id: 'response.security_contact',
    title: 'Someone is named to answer security alerts (a security contact, or on call now)',
    async run(trx, now) {
      // Only people who can still act: a disabled contact answers nothing.
      const contacts = await trx.selectFrom('security_contacts').innerJoin('users', 'users.id', 'security_contacts.user_id').select('security_contacts.user_id').where('users.status', '=', 'active').execute();
      const onCall = await trx.selectFrom('security_on_call').innerJoin('users', 'users.id', 'security_on_call.user_id').select('security_on_call.user_id').where('users.status', '=', 'active').where('starts_at', '<=', now).where('ends_at', '>', now).execute();
      return verdict(1, contacts.length + onCall.length > 0 ? [] : ['nobody_named'], () => `${contacts.length} security contacts; ${onCall.length} on call now`);
    },
  },
  {
    id: 'privacy.breaches_decided',
    title: 'Every personal-data breach is decided on within 72 hours of awareness',
    async run(trx, now) {
      const breaches = await trx.selectFrom('breaches').select(['id', 'aware_at', 'authority_decision', 'authority_notified_at', 'late_reason']).orderBy('aware_at').execute();
      const due = (aware: Date) => aware.getTime() + 72 * 3_600_000;
      const failing = breaches
        .filter((breach) => (breach.authority_decision === null && now.getTime() > due(breach.aware_at)) || (breach.authority_notified_at !== null && breach.authority_notified_at.getTime() > due(breach.aware_at) && !breach.late_reason))
        .map((breach) => breach.id);
      return verdict(breaches.length, failing, (n) => `${breaches.length} breaches recorded; ${n} undecided past 72 hours or notified late without reasons`);
    },
  },
  {
    id: 'privacy.requests_on_time',
    title: 'No data-subject request is open past its deadline',
    async run(trx, now) {
      const open = await trx.selectFrom('privacy_requests').select(['id', 'due_at']).where('status', 'in', ['received', 'verified']).orderBy('due_at').execute();
      const failing = open.filter((request) => request.due_at.getTime() < now.getTime()).map((request) => request.id);
      return verdict(open.length, failing, (n) => `${open.length} open requests; ${n} past their deadline`);
    },
  },
  {
    id: 'tenancy.row_security',
    title: 'Every table holding tenant data enforces row-level security, for its owner too',
    async run(trx) {
      const tables = await sql<{ table: string; enabled: boolean; forced: boolean }>`
        SELECT c.relname AS table, c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
           AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
         ORDER BY c.relname`.execute(trx);
      const failing = tables.rows.filter((table) => !table.enabled || !table.forced).map((table) => table.table);
      return verdict(tables.rows.length, failing, (n) => `${tables.rows.length} tenant tables; ${n} without forced row-level security`);
    },
  },
  {
    id: 'continuity.backup_recent',
    title: 'A good backup is younger than 24 hours, and a restore drill succeeded within 30 days',
    async run(trx, now) {
      const status = await sql<{ last_backup_at: Date | null; last_drill_at: Date | null }>`SELECT last_backup_at, last_drill_at FROM operations_status()`.execute(trx);
      const row = status.rows[0];
      const failing = [...(!row?.last_backup_at || now.getTime() - row.last_backup_at.getTime() > DAY ? ['backup'] : []), ...(!row?.last_drill_at || now.getTime() - row.last_drill_at.getTime() > 30 * DAY ? ['restore_drill'] : [])];
      return verdict(2, failing, () => `last backup ${row?.last_backup_at?.toISOString() ?? 'never'}; last restore drill ${row?.last_drill_at?.toISOString() ?? 'never'}`);
    },
  },
  {
    id: 'identity.password_hashing',
    title: 'Every stored password is hashed with argon2id at or above the minimum parameters',
    async run(trx) {
      const users = await trx.selectFrom('users').select(['id', 'password_hash']).where('password_hash', 'is not', null).where('status', '<>', 'disabled').orderBy('id').execute();
      const failing = users.filter((user) => needsRehash(user.password_hash ?? '')).map((user) => user.id);
      return verdict(users.length, failing, (n) => `${users.length} stored passwords; ${n} below argon2id m=65536, t=3, p=1 (replaced at their next sign-in)`);
    },
  },
  {
    id: 'keys.tenant_key_age',
    title: 'The organisation’s data key is at most a year old, and no key is near its encryption budget',
    async run(trx, now) {
      const keys = await trx.selectFrom('tenant_keys').select(['purpose', 'version', 'created_at', 'encryptions_reserved']).where('state', '=', 'active').orderBy('purpose').execute();
      // The data key is rotated yearly; the index key is never rotated (blind indexes must keep matching), only watched for its budget.
      const failing = keys.filter((key) => (key.purpose === 'data' && now.getTime() - key.created_at.getTime() > 366 * DAY) || Number(key.encryptions_reserved) > ROTATE_AFTER).map((key) => `${key.purpose}:v${key.version}`);
      if (keys.length === 0) return notApplicable('no key made yet (nothing encrypted)');
      return verdict(keys.length, failing, (n) => `${keys.length} active keys, oldest made ${new Date(Math.min(...keys.map((key) => key.created_at.getTime()))).toISOString()}; ${n} older than a year or past 2^30 encryptions`);
    },
  },
  {
    id: 'vendors.processors_current',
    title: 'Every processor has a data-processing agreement and certifications that have not expired',
    async run(trx, now) {
      const processors = await trx.selectFrom('processors').select(['id', 'dpa_signed_on', 'dpa_expires_on', 'certifications']).orderBy('id').execute();
      // A day counts until its end: expired once the whole day has passed (dates come back as local midnight).
      const expired = (value: unknown) => {
        if (value === null || value === undefined) return false;
        const day = value instanceof Date ? value : new Date(`${String(value)}T00:00:00`);
        return !Number.isNaN(day.getTime()) && day.getTime() + DAY <= now.getTime();
      };
      const failing = processors
        .filter((processor) => !processor.dpa_signed_on || expired(processor.dpa_expires_on) || (processor.certifications as { expiresOn?: string | null }[]).some((certification) => expired(certification.expiresOn)))
        .map((processor) => processor.id);
      return verdict(processors.length, failing, (n) => `${processors.length} processors; ${n} without a signed agreement, or with one or a certification expired`);
    },
  },
  {
    id: 'monitoring.alert_delivery',
    title: 'Alerts reach their webhooks: no delivery given up in the last 30 days',
    async run(trx, now) {
      const deliveries = await trx.selectFrom('alert_deliveries').select(['id', 'state', 'created_at']).where('created_at', '>', new Date(now.getTime() - 30 * DAY)).orderBy('created_at').execute();
      const failing = deliveries.filter((delivery) => delivery.state === 'failed' || (delivery.state === 'pending' && delivery.created_at.getTime() < now.getTime() - 3_600_000)).map((delivery) => delivery.id);
      return verdict(deliveries.length, failing, (n) => `${deliveries.length} webhook deliveries in 30 days; ${n} given up or waiting more than an hour`);
    },
  },
  {
    id: 'response.incidents_contained',
    title: 'High and critical incidents are contained within 24 hours of their first sign',
    async run(trx, now) {
      const incidents = await trx.selectFrom('incidents').select(['id', 'detected_at', 'contained_at']).where('severity', 'in', ['high', 'critical']).where((eb) => eb.or([eb('opened_at', '>', new Date(now.getTime() - 90 * DAY)), eb('state', '=', 'open')])).orderBy('opened_at').execute();
      const failing = incidents.filter((incident) => (incident.contained_at ?? now).getTime() - incident.detected_at.getTime() > DAY).map((incident) => incident.id);
      return verdict(incidents.length, failing, (n) => `${incidents.length} high or critical incidents in 90 days; ${n} took more than 24 hours to contain (or still wait)`);
    },
  },
  {
    id: 'access.review_recent',
    title: 'An access review of every user was completed within the last quarter',
    async run(trx, now) {
      // A completed review that took somebody in (a review of nobody evidences nothing).
      const last = await trx
        .selectFrom('access_reviews')
        .select(['id', 'created_at', 'completed_at'])
        .where('state', '=', 'completed')
        .where((eb) => eb.exists(eb.selectFrom('access_review_items').select('user_id').whereRef('access_review_items.review_id', '=', 'access_reviews.id')))
        .orderBy('completed_at', 'desc')
        .limit(1)
        .executeTakeFirst();
      // Completed this quarter, of a snapshot taken no more than a month before the quarter began.
      const fresh = last?.completed_at && now.getTime() - last.completed_at.getTime() <= 92 * DAY && now.getTime() - last.created_at.getTime() <= 122 * DAY;
      return verdict(1, fresh ? [] : ['no_review_this_quarter'], () => `last access review completed ${last?.completed_at?.toISOString() ?? 'never'}`);
    },
  },
  {
    id: 'encryption.personal_data',
    title: 'Personal data is stored only as field ciphertext: no plaintext column in the personal-data tables, and every sampled value carries the ciphertext header',
    async run(trx) {
      const columns = await sql<{ table: string; column: string; type: string }>`
        SELECT c.table_name AS table, c.column_name AS column, c.data_type AS type FROM information_schema.columns c
         WHERE c.table_schema = current_schema() AND c.table_name = ANY(${Object.keys(PLAINTEXT_ALLOWED)}::text[])
         ORDER BY c.table_name, c.column_name`.execute(trx);
      // Anything that can hold a value as written — text of any kind, JSON, arrays, custom types, dates, bytes — is either
      // field ciphertext, a blind index, or a column known to hold nothing personal.
      const holdsValues = (type: string) => !['uuid', 'boolean', 'integer', 'bigint', 'smallint', 'double precision', 'numeric', 'timestamp with time zone', 'timestamp without time zone', 'inet', 'cidr'].includes(type);
      const unexpected = columns.rows
        .filter((row) => holdsValues(row.type))
        .filter((row) => !((row.column.endsWith('_ciphertext') || row.column.endsWith('_index') || row.column.endsWith('_hash')) && row.type === 'bytea'))
        .filter((row) => !(PLAINTEXT_ALLOWED[row.table] ?? []).includes(row.column) && !(LEGACY_EMPTY[row.table] ?? []).includes(row.column))
        .map((row) => `${row.table}.${row.column}`);
      // Columns from before field encryption stay in the schema for old rows, which must all have moved to ciphertext.
      const legacy = await trx.selectFrom('users').select('id').where((eb) => eb.or([eb('email', 'is not', null), eb('display_name', 'is not', null)])).limit(SAMPLE).execute();
      unexpected.push(...legacy.map((row) => `users:${row.id}:plaintext`));
      // A sample of rows: every ciphertext carries the field-ciphertext header; an external id is no e-mail address.
      const contacts = await trx
        .selectFrom('contacts')
        .select(['id', 'name_ciphertext', 'email_ciphertext', 'address_ciphertext', 'birth_date_ciphertext', 'notes_ciphertext', 'personal_fields_ciphertext', 'record_ciphertext', 'external_id'])
        .limit(200)
        .execute();
      // A number is its phone row's ciphertext, or (migration 0028) in its contact's record: never neither.
      const phones = await trx
        .selectFrom('contact_phones')
        .innerJoin('contacts', (join) => join.onRef('contacts.tenant_id', '=', 'contact_phones.tenant_id').onRef('contacts.id', '=', 'contact_phones.contact_id'))
        .select(['contact_phones.contact_id', 'contact_phones.number_ciphertext', 'contacts.record_ciphertext'])
        .limit(200)
        .execute();
      const header = (value: Buffer | null) => value === null || (value.length > 3 && value[0] === 0x52 && value[1] === 0x56 && value[2] === 0x01);
      const looksLikeEmail = (value: string | null) => value !== null && /[^\s@]+@[^\s@]+\.[a-z]{2,}/i.test(value);
      const badRows = [
        ...contacts
          .filter(
            (row) =>
              ![row.name_ciphertext, row.email_ciphertext, row.address_ciphertext, row.birth_date_ciphertext, row.notes_ciphertext, row.personal_fields_ciphertext, row.record_ciphertext].every(header) ||
              looksLikeEmail(row.external_id),
          )
          .map((row) => `contacts:${row.id}`),
        ...phones.filter((row) => !header(row.number_ciphertext) || (row.number_ciphertext === null && row.record_ciphertext === null)).map((row) => `contact_phones:${row.contact_id}`),
      ];
      const failing = [...unexpected, ...badRows];
      return verdict(columns.rows.length + contacts.length + phones.length, failing, (n) => `${columns.rows.length} columns in personal-data tables, ${contacts.length + phones.length} rows sampled; ${n} problem(s)${n > 0 ? `: ${failing.slice(0, 5).join(', ')}` : ''}`);
    },
  },
  {
    id: 'identity.stale_tokens',
    title: 'No API token in force has gone unused for 90 days',
    async run(trx, now) {
      const tokens = await trx.selectFrom('api_tokens').select(['id', 'created_at', 'last_used_at']).where('revoked_at', 'is', null).where('expires_at', '>', now).orderBy('id').execute();
      const failing = tokens.filter((token) => (token.last_used_at ?? token.created_at).getTime() < now.getTime() - 90 * DAY).map((token) => token.id);
      return verdict(tokens.length, failing, (n) => `${tokens.length} API tokens in force; ${n} unused for 90 days`);
    },
  },
  {
    id: 'privacy.retention_set',
    title: 'Every category of personal data has a retention period, and the periods are applied daily',
    async run(trx, now) {
      const set = new Set((await trx.selectFrom('retention_policies').select('category').execute()).map((row) => row.category as string));
      // And the periods are applied: a sweep (not a dry run) finished within the last two days.
      const swept = await trx.selectFrom('retention_sweeps').select('finished_at').where('state', '=', 'done').where('dry_run', '=', false).where('finished_at', '>', new Date(now.getTime() - 2 * DAY)).limit(1).executeTakeFirst();
      const failing: string[] = [...RETENTION_CATEGORIES.filter((category) => !set.has(category)), ...(swept ? [] : ['no_sweep_in_two_days'])];
      return verdict(RETENTION_CATEGORIES.length + 1, failing, (n) => `${RETENTION_CATEGORIES.length} data categories, ${RETENTION_CATEGORIES.filter((category) => set.has(category)).length} with a retention period; last sweep ${swept ? 'within two days' : 'not within two days'}; ${n} problem(s)`);
    },
  },
  {
    id: 'privacy.controller_named',
    title: 'The controller and its contact point for data protection are named',
    async run(trx) {
      const profile = await trx.selectFrom('privacy_profiles').select(['controller_name', 'dpo_name', 'dpo_email']).executeTakeFirst();
      const failing = [...(profile ? [] : ['no_profile']), ...(profile && !profile.dpo_name && !profile.dpo_email ? ['no_contact_point'] : [])];
      return verdict(1, failing, () => (profile ? `controller named; contact point ${profile.dpo_name || profile.dpo_email ? 'named' : 'missing'}` : 'no privacy profile'));
    },
  },
];

/**
 * The text columns the personal-data tables may hold, none of them personal: states, kinds,
 * references, who did what (as ids). A new text column in these tables fails the encryption
 * check until it is encrypted or added here with a reason in review.
 */
const PLAINTEXT_ALLOWED: Readonly<Record<string, readonly string[]>> = {
  contacts: ['status', 'time_zone', 'time_zone_source', 'time_zones', 'external_id', 'fields'],
  contact_phones: ['kind', 'region'],
  users: ['role', 'status', 'password_hash'],
  privacy_requests: ['reference', 'kind', 'status', 'channel', 'extension_reason', 'verified_by', 'verification_method', 'outcome', 'duplicate_key', 'subject_ids'],
};

/** Plaintext columns of the time before field encryption: kept in the schema, empty in every row. */
const LEGACY_EMPTY: Readonly<Record<string, readonly string[]>> = { users: ['email', 'display_name'] };

export const CHECKS: readonly Check[] = [...IDENTITY_AND_PRIVACY_CHECKS, ...OPERATIONS_CHECKS, ...PLATFORM_CHECKS, ...GOVERNANCE_CHECKS];

export const CHECKS_BY_ID: ReadonlyMap<string, Check> = new Map(CHECKS.map((check) => [check.id, check]));
