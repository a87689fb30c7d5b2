import { sql } from '../db/kysely.ts';
import { rolePermissions, type Permission } from '../modules/access/permissions.ts';
import { defaultSecurityPolicy, loadSecurityPolicy } from '../modules/access/security-policy.ts';
import { MINIMUM_RETAIN_DAYS } from '../privacy/retention.ts';
import { activeUsers, DAY, notApplicable, verdict, type Check } from './check-support.ts';

/**
 * Checks of the platform under the data: the database rights the server runs with, the ledger's
 * own protections, the root key, and who holds the keys to the organisation (privileged access,
 * leavers, revocations, limits against scraping).
 */

/** Permissions that change who may do what, or read the security record: what makes a user privileged. */
const PRIVILEGED: readonly Permission[] = ['users:manage', 'roles:manage', 'security:manage'];

/** The tables of the audit ledger, each protected by an append-only and a no-truncate trigger. */
const LEDGER_TABLES = ['audit_events', 'audit_tree_nodes', 'audit_checkpoints', 'audit_signing_keys', 'audit_retention_records'] as const;

/** How long a signed head may wait for its witnesses (their retries back off up to a minute). */
const WITNESS_GRACE_MS = 15 * 60_000;

/** The broadest range the allow-list may hold: an IPv4 /16 or an IPv6 /48 (an organisation's own block). */
const BROADEST_PREFIX = { ipv4: 16, ipv6: 48 };

export const PLATFORM_CHECKS: readonly Check[] = [
  {
    id: 'identity.allow_list',
    title: 'Access is allowed only from the organisation’s own networks: an address allow-list is in force, and no range on it is broader than an organisation’s block',
    async run(trx) {
      const policy = await loadSecurityPolicy(trx);
      const broad = policy.ipAllowList.filter((range) => {
        const [address, bits] = range.split('/');
        return Number(bits ?? 128) < (address?.includes(':') ? BROADEST_PREFIX.ipv6 : BROADEST_PREFIX.ipv4);
      });
      const failing = [...(policy.ipAllowList.length === 0 ? ['no_allow_list'] : []), ...broad];
      return verdict(Math.max(1, policy.ipAllowList.length), failing, () =>
        policy.ipAllowList.length === 0 ? 'no address allow-list: every user may sign in from anywhere' : `${policy.ipAllowList.length} ranges allowed; ${broad.length} broader than IPv4 /${BROADEST_PREFIX.ipv4} or IPv6 /${BROADEST_PREFIX.ipv6}`,
      );
    },
  },
  {
    id: 'keys.root_key_age',
    title: 'The root key that wraps the organisation’s keys was rotated within the last year',
    async run(trx, now) {
      const keys = await sql<{ root_key_id: string; first_used: Date | null }>`
        SELECT DISTINCT k.root_key_id, c.created_at AS first_used FROM tenant_keys k LEFT JOIN root_key_checks c ON c.key_id = k.root_key_id
         WHERE k.state = 'active' ORDER BY k.root_key_id`.execute(trx);
      if (keys.rows.length === 0) return notApplicable('no key made yet (nothing encrypted)');
      // A root key never recorded is one nobody can say the age of: it fails too.
      const failing = keys.rows.filter((key) => !key.first_used || now.getTime() - key.first_used.getTime() > 366 * DAY).map((key) => key.root_key_id);
      const oldest = Math.min(...keys.rows.map((key) => key.first_used?.getTime() ?? 0));
      return verdict(keys.rows.length, failing, (n) => `${keys.rows.length} root keys wrap this organisation’s keys, the oldest in use since ${oldest === 0 ? 'an unknown date' : new Date(oldest).toISOString()}; ${n} older than a year`);
    },
  },
  {
    id: 'audit.append_only',
    title: 'The audit ledger’s tables refuse every change and every truncation, for their owner too',
    async run(trx) {
      const expected = LEDGER_TABLES.flatMap((table) => [`${table}_append_only`, `${table}_no_truncate`]);
      const triggers = await sql<{ name: string }>`
        SELECT t.tgname AS name FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relname = ANY(${[...LEDGER_TABLES]}::text[]) AND t.tgenabled IN ('O', 'A') AND NOT t.tgisinternal`.execute(trx);
      const active = new Set(triggers.rows.map((row) => row.name));
      const failing = expected.filter((name) => !active.has(name));
      return verdict(expected.length, failing, (n) => `${expected.length} protecting triggers expected on ${LEDGER_TABLES.length} ledger tables; ${n} missing or disabled`);
    },
  },
  {
    id: 'audit.witness_exported',
    title: 'The audit ledger’s signed heads reach an outside witness: every head signed more than 15 minutes ago has been delivered',
    async run(trx, now) {
      const heads = await trx
        .selectFrom('audit_checkpoints')
        .select((eb) => [eb.fn.max('tree_size').as('newest'), eb.fn.max(eb.case().when('signed_at', '<', new Date(now.getTime() - WITNESS_GRACE_MS)).then(eb.ref('tree_size')).end()).as('due')])
        .executeTakeFirst();
      if (heads?.newest === null || heads?.newest === undefined) return notApplicable('no tree head signed yet');
      const deliveries = await trx.selectFrom('audit_witness_deliveries').select(['witness', 'tree_size', 'delivered_at']).orderBy('witness').execute();
      const delivered = Math.max(0, ...deliveries.map((row) => Number(row.tree_size)));
      const due = heads.due === null ? 0 : Number(heads.due);
      const failing = [...(deliveries.length === 0 ? ['no_witness'] : []), ...(deliveries.length > 0 && delivered < due ? ['behind'] : [])];
      return verdict(1, failing, () =>
        deliveries.length === 0 ? 'no outside witness has taken a tree head (configure RINGVAKT_AUDIT_WITNESS_*)' : `witnesses ${deliveries.map((row) => `${row.witness} at ${row.tree_size} (${row.delivered_at.toISOString()})`).join(', ')}; newest head ${heads.newest}, due ${due}`,
      );
    },
  },
  {
    id: 'tenancy.runtime_privileges',
    title: 'The server runs with least privilege: no superuser, no bypass of row-level security, no table of its own, no right to change or remove the audit ledger',
    async run(trx) {
      const role = await sql<{ name: string; superuser: boolean; bypass: boolean }>`SELECT rolname AS name, rolsuper AS superuser, rolbypassrls AS bypass FROM pg_roles WHERE rolname = current_user`.execute(trx);
      const me = role.rows[0];
      const owned = await sql<{ name: string }>`
        SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm') AND pg_get_userbyid(c.relowner) = current_user`.execute(trx);
      const rights = await sql<{ grant: string }>`
        SELECT t.name || ':' || p.privilege AS grant FROM unnest(${[...LEDGER_TABLES]}::text[]) AS t(name)
         CROSS JOIN unnest(ARRAY['UPDATE', 'DELETE', 'TRUNCATE']) AS p(privilege)
         WHERE has_table_privilege(current_user, quote_ident(current_schema()) || '.' || t.name, p.privilege)`.execute(trx);
      const failing = [...(me?.superuser ? ['superuser'] : []), ...(me?.bypass ? ['bypass_row_security'] : []), ...owned.rows.map((row) => `owns:${row.name}`), ...rights.rows.map((row) => row.grant)];
      return verdict(3 + LEDGER_TABLES.length * 3, failing, (n) => `the server's database role: ${n === 0 ? 'no superuser, no bypass, owns nothing, cannot change the ledger' : `${n} excess right(s): ${failing.slice(0, 5).join(', ')}`}`);
    },
  },
  {
    id: 'access.privileged_few',
    title: 'Few people hold the keys: users who can manage users, roles or security are at most three, or a tenth of the organisation',
    async run(trx) {
      const users = await activeUsers(trx);
      const privileged = users.filter((user) => {
        const granted = rolePermissions(user.role, user.permissions);
        return PRIVILEGED.some((permission) => granted.includes(permission));
      });
      const allowed = Math.max(3, Math.ceil(users.length / 10));
      const failing = privileged.length > allowed ? privileged.map((user) => user.id) : [];
      return verdict(users.length, failing, () => `${privileged.length} of ${users.length} active users may manage users, roles or security (at most ${allowed})`);
    },
  },
  {
    id: 'identity.leavers_cut_off',
    title: 'A disabled account keeps nothing: no session in force, no API token in force',
    async run(trx, now) {
      const rows = await sql<{ id: string }>`
        SELECT u.id FROM users u WHERE u.status = 'disabled' AND (
          EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > ${now})
          OR EXISTS (SELECT 1 FROM api_tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL AND t.expires_at > ${now}))
         ORDER BY u.id`.execute(trx);
      const disabled = await trx.selectFrom('users').select((eb) => eb.fn.countAll<string>().as('n')).where('status', '=', 'disabled').executeTakeFirstOrThrow();
      return verdict(Number(disabled.n), rows.rows.map((row) => row.id), (n) => `${disabled.n} disabled accounts; ${n} still holding a session or API token`);
    },
  },
  {
    id: 'access.revocations_enforced',
    title: 'Access revoked in an access review stays revoked',
    async run(trx, now) {
      const revoked = await sql<{ user_id: string; still: boolean }>`
        SELECT i.user_id, (u.status = 'active' AND u.role = i.role) AS still FROM access_review_items i JOIN users u ON u.id = i.user_id
         WHERE i.decision = 'revoke' AND i.decided_at > ${new Date(now.getTime() - 365 * DAY)} ORDER BY i.user_id`.execute(trx);
      if (revoked.rows.length === 0) return notApplicable('no access revoked in a review within a year');
      const failing = [...new Set(revoked.rows.filter((row) => row.still).map((row) => row.user_id))];
      return verdict(revoked.rows.length, failing, (n) => `${revoked.rows.length} revocations in a year; ${n} users active again with the role that was revoked`);
    },
  },
  {
    id: 'contacts.reveal_limits',
    title: 'Nobody can scrape personal data: reveals and look-ups per user and hour stay within the product’s limits',
    async run(trx) {
      const policy = await loadSecurityPolicy(trx);
      const failing = [
        ...(policy.revealsPerHour > defaultSecurityPolicy.revealsPerHour ? ['reveals_per_hour'] : []),
        ...(policy.lookupsPerHour > defaultSecurityPolicy.lookupsPerHour ? ['lookups_per_hour'] : []),
      ];
      return verdict(2, failing, () => `${policy.revealsPerHour} reveals an hour (at most ${defaultSecurityPolicy.revealsPerHour}), ${policy.lookupsPerHour} look-ups an hour (at most ${defaultSecurityPolicy.lookupsPerHour})`);
    },
  },
  {
    id: 'audit.retention_minimum',
    title: 'The audit ledger is kept at least a year',
    async run(trx) {
      const minimum = MINIMUM_RETAIN_DAYS.audit_events ?? 365;
      const policy = await trx.selectFrom('retention_policies').select('retain_days').where('category', '=', 'audit_events').executeTakeFirst();
      return verdict(1, policy && policy.retain_days < minimum ? ['audit_events'] : [], () => `audit events kept ${policy ? `${policy.retain_days} days` : 'without limit'} (at least ${minimum})`);
    },
  },
  {
    id: 'awareness.policy_reviewed',
    title: 'The security policy was reviewed and republished within the last year',
    async run(trx, now) {
      const policy = await trx.selectFrom('security_documents').select(['version', 'published_at']).where('kind', '=', 'policy').where('superseded_at', 'is', null).orderBy('published_at', 'desc').executeTakeFirst();
      const stale = !policy || now.getTime() - policy.published_at.getTime() > 366 * DAY;
      return verdict(1, stale ? ['policy_not_reviewed'] : [], () => (policy ? `policy version ${policy.version} published ${policy.published_at.toISOString()}` : 'no security policy published'));
    },
  },
];
