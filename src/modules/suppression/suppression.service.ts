import { randomUUID } from 'node:crypto';
import { binaryArray } from '../../db/binary-array.ts';
import { sql, type CompiledQuery } from '../../db/kysely.ts';
import { deferWrite, type TenantTransaction } from '../../db/tenant-db.ts';
import type { RegistryFormat, SuppressionReason, SuppressionScope } from '../../db/schema.ts';
import { AppError } from '../../server/errors.ts';
import { emailIndex, phoneIndex } from '../contacts/contact-record.ts';
import type { ContactsCrypto } from '../contacts/contacts.service.ts';

/**
 * Do-not-call: suppressed numbers and e-mail addresses, tenant-wide, per campaign, and from national
 * registry files. Everything matches on the normal form (E.164, lower-cased e-mail) through the
 * same blind index as the contacts, so `+358…`, `00358…` and a local form are one entry; candidates
 * of the truncated index are decrypted and compared. Every match is recorded.
 */
export type Channel = 'phone' | 'email';

export type NewSuppression = {
  channel: Channel;
  /** Normalised: E.164 or lower-cased e-mail. */
  value: string;
  scope: SuppressionScope;
  campaignId?: string | null;
  reason: SuppressionReason;
  source: string;
  contactId?: string | null;
  expiresAt?: Date | null;
  createdBy: string;
};

const valueAt = (id: string) => ({ table: 'suppressions', recordId: id, field: 'value' });

const indexOf = (crypto: ContactsCrypto, trx: TenantTransaction, channel: Channel, value: string) =>
  channel === 'phone' ? phoneIndex(crypto.cipher, trx, value) : emailIndex(crypto.cipher, trx, value);

export async function addSuppression(trx: TenantTransaction, crypto: ContactsCrypto, entry: NewSuppression): Promise<string> {
  if (entry.scope === 'campaign') {
    if (!entry.campaignId) throw new AppError('validation_failed', 'A campaign suppression names its campaign.');
    const campaign = await trx.selectFrom('campaigns').select('id').where('id', '=', entry.campaignId).executeTakeFirst();
    if (!campaign) throw new AppError('not_found', 'No such campaign.');
  }
  // The same value in the same scope is one entry: a second request extends it, never duplicates.
  const existing = await findMatches(trx, crypto, entry.channel, entry.value, { campaignId: entry.scope === 'campaign' ? (entry.campaignId ?? undefined) : undefined, includeExpired: true });
  const same = existing.find((match) => match.scope === entry.scope && (entry.scope !== 'campaign' || match.campaignId === entry.campaignId));
  if (same) {
    const expiresAt = entry.expiresAt ?? null;
    if (same.expiresAt !== null && (expiresAt === null || expiresAt > same.expiresAt)) {
      await trx.updateTable('suppressions').set({ expires_at: expiresAt }).where('id', '=', same.id).execute();
    }
    // An objection outranks any other reason: the entry becomes one, so it can no longer be lifted
    // as if it were an ordinary request.
    if (entry.reason === 'objection' && same.reason !== 'objection') {
      await trx.updateTable('suppressions').set({ reason: 'objection', source: entry.source, contact_id: entry.contactId ?? null }).where('id', '=', same.id).execute();
    }
    return same.id;
  }
  const id = randomUUID();
  await trx
    .insertInto('suppressions')
    .values({
      id,
      scope: entry.scope,
      campaign_id: entry.scope === 'campaign' ? (entry.campaignId ?? null) : null,
      channel: entry.channel,
      value_index: await indexOf(crypto, trx, entry.channel, entry.value),
      value_ciphertext: await crypto.cipher.encrypt(trx, valueAt(id), entry.value),
      reason: entry.reason,
      source: entry.source,
      contact_id: entry.contactId ?? null,
      expires_at: entry.expiresAt ?? null,
      created_by: entry.createdBy,
    })
    .execute();
  return id;
}

export type SuppressionMatch = {
  id: string;
  scope: SuppressionScope;
  campaignId: string | null;
  registryId: string | null;
  reason: SuppressionReason;
  expiresAt: Date | null;
};

/**
 * Suppressions in force for one value: tenant-wide and registry entries always, campaign entries of
 * the campaign named. Not recorded; `checkSuppressed` records.
 */
export async function findMatches(
  trx: TenantTransaction,
  crypto: ContactsCrypto,
  channel: Channel,
  value: string,
  options: { campaignId?: string | undefined; includeExpired?: boolean } = {},
): Promise<SuppressionMatch[]> {
  const index = await indexOf(crypto, trx, channel, value);
  let query = trx
    .selectFrom('suppressions')
    .select(['id', 'scope', 'campaign_id', 'registry_id', 'reason', 'expires_at', 'value_ciphertext'])
    .where('channel', '=', channel)
    .where('value_index', '=', index)
    .where('lifted_at', 'is', null)
    .where((eb) => (options.campaignId ? eb.or([eb('scope', '<>', 'campaign'), eb('campaign_id', '=', options.campaignId)]) : eb('scope', '<>', 'campaign')));
  if (!options.includeExpired) query = query.where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', sql<Date>`now()`)]));
  const candidates = await query.limit(1000).execute();
  const matches: SuppressionMatch[] = [];
  for (const candidate of candidates) {
    if ((await crypto.cipher.decrypt(trx, valueAt(candidate.id), candidate.value_ciphertext)) !== value) continue;
    matches.push({
      id: candidate.id,
      scope: candidate.scope,
      campaignId: candidate.campaign_id,
      registryId: candidate.registry_id,
      reason: candidate.reason,
      expiresAt: candidate.expires_at,
    });
  }
  return matches;
}

export type MatchContext = { context: 'check' | 'import' | 'dial' | 'contact'; contactId?: string; importId?: string; campaignId?: string };

/** Matches for a value, each recorded in suppression_matches in the caller's transaction. */
export async function checkSuppressed(trx: TenantTransaction, crypto: ContactsCrypto, channel: Channel, value: string, context: MatchContext): Promise<SuppressionMatch[]> {
  const matches = await findMatches(trx, crypto, channel, value, { campaignId: context.campaignId });
  await recordMatches(trx, matches.map((match) => match.id), context);
  return matches;
}

export async function recordMatches(trx: TenantTransaction, suppressionIds: readonly string[], context: MatchContext): Promise<void> {
  if (suppressionIds.length === 0) return;
  // Nothing waits for its answer: it travels with the transaction's next statement, or its COMMIT.
  await deferWrite(
    trx,
    trx
      .insertInto('suppression_matches')
      .values(
        suppressionIds.map((id) => ({
          suppression_id: id,
          context: context.context,
          contact_id: context.contactId ?? null,
          import_id: context.importId ?? null,
          campaign_id: context.campaignId ?? null,
        })),
      )
      .compile(),
  );
}

/**
 * Matches for many E.164 numbers at once (imports): one query for every index value of the batch,
 * then decryption of the candidates. Returns number → suppression ids in force. `knownIndexes`
 * (number → its phone blind index, as a sealed contact already carries it) spares computing them
 * again; a number it lacks is indexed here.
 */
export async function matchPhonesInBulk(
  trx: TenantTransaction,
  crypto: ContactsCrypto,
  numbers: readonly string[],
  campaignId: string | null,
  knownIndexes?: ReadonlyMap<string, Buffer>,
): Promise<Map<string, string[]>> {
  if (numbers.length === 0) return new Map();
  const lookup = await phoneSuppressionLookup(trx, crypto, numbers, campaignId, knownIndexes);
  return lookup.matches((await trx.executeQuery(lookup.query)).rows);
}

type SuppressionCandidate = { id: string; value_index: Buffer; value_ciphertext: Buffer };

/**
 * matchPhonesInBulk in two halves, for a caller that sends the query with others (sendTogether):
 * the query, and the matches its rows hold.
 */
export async function phoneSuppressionLookup(
  trx: TenantTransaction,
  crypto: ContactsCrypto,
  numbers: readonly string[],
  campaignId: string | null,
  knownIndexes?: ReadonlyMap<string, Buffer>,
): Promise<{ query: CompiledQuery; matches: (rows: readonly unknown[]) => Promise<Map<string, string[]>> }> {
  const byIndex = new Map<string, string[]>();
  for (const number of new Set(numbers)) {
    const index = (knownIndexes?.get(number) ?? (await phoneIndex(crypto.cipher, trx, number))).toString('hex');
    const wanted = byIndex.get(index);
    if (wanted) wanted.push(number);
    else byIndex.set(index, [number]);
  }
  const indexes = [...byIndex.keys()].map((hex) => Buffer.from(hex, 'hex'));
  const query = sql`
    SELECT id, value_index, value_ciphertext FROM suppressions
     WHERE channel = 'phone' AND value_index = ANY(${binaryArray('bytea', indexes)}::bytea[]) AND lifted_at IS NULL
       AND (scope <> 'campaign' OR campaign_id = ${campaignId})
       AND (expires_at IS NULL OR expires_at > now())`.compile(trx);
  const matches = async (rows: readonly unknown[]) => {
    const found = new Map<string, string[]>();
    for (const candidate of rows as SuppressionCandidate[]) {
      const wanted = byIndex.get(candidate.value_index.toString('hex')) ?? [];
      const value = await crypto.cipher.decrypt(trx, valueAt(candidate.id), candidate.value_ciphertext);
      if (wanted.includes(value)) found.set(value, [...(found.get(value) ?? []), candidate.id]);
    }
    return found;
  };
  return { query, matches };
}

export type RegistryEntryBatch = { values: string[] };

/** Replaces a registry's entries with a new file's, in the caller's transaction (old or new in force, never neither). */
export async function replaceRegistry(
  trx: TenantTransaction,
  crypto: ContactsCrypto,
  registry: { format: RegistryFormat; name: string; validUntil: Date | null; createdBy: string },
  batches: AsyncIterable<string[]>,
): Promise<{ id: string; entries: number }> {
  // Its inserts do not move the tenant's suppression epoch one by one (migration 0029): it is moved
  // once, last, so an objection recorded meanwhile does not wait for this transaction.
  await sql`SELECT set_config('ringvakt.suppression_epoch_at_end', 'on', true)`.execute(trx);
  const existing = await trx.selectFrom('suppression_registries').select('id').where('format', '=', registry.format).forUpdate().executeTakeFirst();
  let id: string;
  if (existing) {
    id = existing.id;
    await trx.deleteFrom('suppressions').where('registry_id', '=', id).execute();
  } else {
    id = randomUUID();
    await trx.insertInto('suppression_registries').values({ id, format: registry.format, name: registry.name }).execute();
  }
  let entries = 0;
  const seen = new Set<string>();
  for await (const batch of batches) {
    const ids: string[] = [];
    const indexes: Buffer[] = [];
    const ciphertexts: Buffer[] = [];
    for (const value of batch) {
      // A registry lists a number once; a file that repeats one is deduplicated (bounded: per file).
      if (seen.has(value)) continue;
      if (seen.size < 5_000_000) seen.add(value);
      const entryId = randomUUID();
      ids.push(entryId);
      indexes.push(await phoneIndex(crypto.cipher, trx, value));
      ciphertexts.push(await crypto.cipher.encrypt(trx, valueAt(entryId), value));
    }
    if (ids.length === 0) continue;
    await sql`INSERT INTO suppressions (id, scope, registry_id, channel, value_index, value_ciphertext, reason, source, created_by)
              SELECT u.id, 'registry', ${id}::uuid, 'phone', u.idx, u.ct, 'registry', ${registry.name}, ${registry.createdBy}
                FROM unnest(${binaryArray('uuid', ids)}::uuid[], ${binaryArray('bytea', indexes)}::bytea[], ${binaryArray('bytea', ciphertexts)}::bytea[]) AS u(id, idx, ct)`.execute(trx);
    entries += ids.length;
  }
  await trx
    .updateTable('suppression_registries')
    .set({ name: registry.name, entries, valid_until: registry.validUntil, imported_at: new Date() })
    .where('id', '=', id)
    .execute();
  // Fresh planner statistics, so the next import's bulk check uses the value index at once (a file
  // with no number is refused by the caller and rolled back: nothing to refresh for).
  if (entries > 0) await sql`SELECT refresh_suppression_statistics()`.execute(trx);
  await sql`SELECT move_suppression_epoch(), set_config('ringvakt.suppression_epoch_at_end', 'off', true)`.execute(trx);
  return { id, entries };
}
