import { sql } from '../../db/kysely.ts';
import type { TenantDb } from '../../db/tenant-db.ts';
import { INDEX_BYTES } from './prepare-batch.ts';

/**
 * What an import knows, in its own memory, of the blind indexes its tenant holds: one bit per
 * possible index value, per kind (number, e-mail). An import's dedupe looks up, in the database,
 * only the indexes whose bit is set; a file of new people then costs no lookup at all. The
 * database's rows are read once (`load`), and every index of every batch this import looks up is
 * added as it goes (so its own rows are in it before they are committed).
 *
 * A filter is sound only while no one else wrote a contact since it was loaded: the lookups
 * that used it carry its epoch (`epoch`), and the batch's opening refuses them unless every move of
 * the tenant's epoch since was this import's own (migration 0029); the batch is then looked up
 * again under the lock, and the filter is out of use (`drop`) until loaded again.
 *
 * False hits only cost a lookup; a bit is never missing for an index that exists, which is what
 * dedupe needs.
 */
export type IndexKind = 'phone' | 'email';

/** Bits of an index value kept: 2^24 bits, 2 MiB per kind (a 3-byte index is kept whole). */
const KEPT_BITS = 24;
const BIT_MASK = 2 ** KEPT_BITS - 1;

/**
 * More existing indexes than this and the filter is not loaded: reading them costs more than the
 * lookups it saves, or too many bits are set to save any.
 */
const MOST_LOADED = 2_000_000;
/** Loading reads at most this many existing indexes per row still to import. */
const LOADED_PER_ROW = 10;

export class ContactFilter {
  private readonly bits: Record<IndexKind, Uint8Array> = { phone: new Uint8Array(2 ** (KEPT_BITS - 3)), email: new Uint8Array(2 ** (KEPT_BITS - 3)) };
  /** The tenant's import epoch the filter was loaded at; null while it is not in use. */
  private loadedAt: number | null = null;

  /** The epoch of the database's indexes the filter holds, when it is in use. */
  get epoch(): number | null {
    return this.loadedAt;
  }

  /** Whether an index with this key (indexKey in batch-lookups.ts) may exist; true while the filter is not in use. */
  mayHold(kind: IndexKind, key: number): boolean {
    if (this.loadedAt === null) return true;
    const bit = key & BIT_MASK;
    return ((this.bits[kind][bit >>> 3] as number) & (1 << (bit & 7))) !== 0;
  }

  add(kind: IndexKind, key: number): void {
    const bit = key & BIT_MASK;
    const bytes = this.bits[kind];
    bytes[bit >>> 3] = (bytes[bit >>> 3] as number) | (1 << (bit & 7));
  }

  /** Out of use: another writer's contacts may be missing from it. */
  drop(): void {
    this.loadedAt = null;
  }

  /**
   * Adds the tenant's existing indexes, read in one snapshot with the epoch they stand at, and puts
   * the filter in use at that epoch. Bits already set (this import's own indexes, some perhaps
   * not yet committed) stay. Returns false, leaving the filter out of use, when the tenant holds
   * more indexes than the `rowsToCome` justify reading.
   */
  async load(tenantDb: TenantDb, rowsToCome: number): Promise<boolean> {
    const most = Math.min(MOST_LOADED, rowsToCome * LOADED_PER_ROW);
    // The indexes concatenated (one value instead of a row each), counted; at most `most` + 1 read.
    const loaded = await tenantDb.snapshot(async (trx) => {
      const epoch = await trx.selectFrom('contact_import_epochs').select('epoch').where('tenant_id', '=', trx.tenantId).executeTakeFirst();
      const phones = (
        await sql<{ n: number; indexes: Buffer | null }>`SELECT count(*)::int AS n, string_agg(i, ''::bytea) AS indexes
          FROM (SELECT number_index AS i FROM contact_phones WHERE octet_length(number_index) = ${INDEX_BYTES} LIMIT ${most + 1}) AS s`.execute(trx)
      ).rows[0];
      if (!phones || phones.n > most) return undefined;
      const emails = (
        await sql<{ n: number; indexes: Buffer | null }>`SELECT count(*)::int AS n, string_agg(i, ''::bytea) AS indexes
          FROM (SELECT email_index AS i FROM contacts WHERE octet_length(email_index) = ${INDEX_BYTES} LIMIT ${most + 1}) AS s`.execute(trx)
      ).rows[0];
      if (!emails || emails.n > most) return undefined;
      return { epoch: Number(epoch?.epoch ?? 0), phone: phones.indexes, email: emails.indexes };
    });
    if (!loaded) return false;
    for (const kind of ['phone', 'email'] as const) {
      const indexes = loaded[kind];
      if (!indexes) continue;
      for (let at = 0; at + INDEX_BYTES <= indexes.length; at += INDEX_BYTES) this.add(kind, indexKey(indexes, at));
    }
    this.loadedAt = loaded.epoch;
    return true;
  }
}

/**
 * The contact blind index of INDEX_BYTES bytes at `offset`, as a number: a map key that is no
 * string of its own (a batch has thousands). Exact for indexes of up to 6 bytes.
 */
export function indexKey(bytes: Uint8Array, offset: number): number {
  let key = 0;
  for (let at = offset; at < offset + INDEX_BYTES; at += 1) key = key * 256 + (bytes[at] as number);
  return key;
}
if (INDEX_BYTES > 6) throw new Error('a contact blind index of more than 6 bytes needs another map key');
