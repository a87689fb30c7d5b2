import { sql } from '../../db/kysely.ts';
import type { TenantDb, TenantTransaction } from '../../db/tenant-db.ts';
import { INDEX_BYTES } from './prepare-batch.ts';

/**
 * What an import knows, in its own memory, of the blind indexes its tenant holds: one bit per
 * possible index value, per kind — contacts' numbers, contacts' e-mail addresses, do-not-call
 * entries — and one per hash of each contact's external id. An import looks up, in the database,
 * only what may exist: a file of new people, none of them suppressed, costs no lookup at all. The
 * database's indexes and external ids are read once (`load`).
 *
 * The import's own rows are kept apart, by value rather than by index (`addOwn`): every external
 * id, number and e-mail address of every batch it looks up, before the batch commits, in a Bloom
 * filter of their hashes. A blind index is short on purpose (many people share one), so a million rows of its own
 * set some 6 % of the index bits — and each of the file's later values that falls on one would be
 * looked up and its candidates decrypted, to find nobody. The values' own hashes tell those apart:
 * a value is looked up when its index was loaded from the database, or when the import may have
 * had the value itself.
 *
 * Each part is sound only while nobody else wrote since it was loaded: the lookups that used it
 * carry its epochs (`epochs`), and the batch's opening refuses them (migration 0029) unless every
 * move of the tenant's import epoch since was this import's own, and the suppression epoch did not
 * move; the batch is then looked up again under the lock, and the filter is out of use (`drop`)
 * until loaded again.
 *
 * A set bit whose index does not exist only costs a lookup; a bit is never clear for an index
 * that exists, nor for a value the import had, which is what dedupe and the suppression check need.
 */
export type IndexKind = 'phone' | 'email' | 'suppression';

/**
 * External ids are no blind index: they are kept as they are (a customer's CRM id), so the filter
 * holds a bit per hash of each (`valueHashes`), read from the database a page at a time.
 */
type BitsKind = IndexKind | 'external';

/** The epochs each part of the filter was loaded at; null for a part not in use. */
export type FilterEpochs = { contacts: number | null; suppressions: number | null };

/** Bits of an index value kept: 2^24 bits, 2 MiB per kind (a 3-byte index is kept whole). */
const KEPT_BITS = 24;
const BIT_MASK = 2 ** KEPT_BITS - 1;

/**
 * More indexes than this in a part and it is not loaded: reading them costs more than the lookups
 * it saves, or too many bits are set to save any.
 */
const MOST_LOADED = 2_000_000;
/** Loading reads at most this many indexes per part per row still to import. */
const LOADED_PER_ROW = 10;

const noBits = () => new Uint8Array(2 ** (KEPT_BITS - 3));

/** External ids read per round trip while loading: at most 200 characters each, so a page stays within a few MB. */
const EXTERNAL_IDS_PER_PAGE = 20_000;

/**
 * The Bloom filter of the import's own values: about 16 bits per value, three of them set for
 * each (about 0.5 % false positives when full), between 2^16 and 2^25 bits (8 KiB to 4 MiB: a
 * file of a million rows with a number and an e-mail address each).
 */
const OWN_BITS_PER_VALUE = 16;
const OWN_HASHES = 3;
const OWN_BITS_LEAST = 2 ** 16;
const OWN_BITS_MOST = 2 ** 25;

/**
 * Two 32-bit hashes of a value's UTF-16 code units (multiply and shift, then a final mix), from
 * which the Bloom filter's bit positions are made. Not cryptographic, and it need not be: a file
 * made to collide only makes its import look more up.
 */
function valueHashes(value: string): [number, number] {
  let first = 0x811c9dc5 ^ value.length;
  let second = 0x2545f491;
  for (let at = 0; at < value.length; at += 1) {
    const unit = value.charCodeAt(at);
    first = Math.imul(first ^ unit, 0x01000193);
    second = Math.imul(second ^ unit, 0x5bd1e995);
    second ^= second >>> 15;
  }
  first = Math.imul(first ^ (first >>> 16), 0x85ebca6b);
  first ^= first >>> 13;
  second = Math.imul(second ^ (second >>> 16), 0xc2b2ae35);
  second ^= second >>> 16;
  // An odd step: the three positions differ whatever the filter's size.
  return [first >>> 0, (second | 1) >>> 0];
}

export class IndexFilter {
  private readonly bits: Record<BitsKind, Uint8Array> = { phone: noBits(), email: noBits(), suppression: noBits(), external: noBits() };
  private loadedAt: FilterEpochs = { contacts: null, suppressions: null };
  /** Whether the contacts' part holds their external ids too (not when they were too many to read). */
  private externalIds = false;
  private readonly own: Uint8Array;
  private readonly ownMask: number;

  /** `ownValues`: about how many external ids, numbers and e-mail addresses the import may add of its own. */
  constructor(ownValues = 0) {
    let size = OWN_BITS_LEAST;
    while (size < OWN_BITS_MOST && size < ownValues * OWN_BITS_PER_VALUE) size *= 2;
    this.own = new Uint8Array(size / 8);
    this.ownMask = size - 1;
  }

  /** The epochs of the database's indexes each part holds (a copy: a reload does not change what a lookup used). */
  get epochs(): FilterEpochs {
    return { ...this.loadedAt };
  }

  get inUse(): boolean {
    return this.loadedAt.contacts !== null || this.loadedAt.suppressions !== null;
  }

  /** Whether a do-not-call entry with this index key (indexKey) may exist, as far as the filter at `epochs` knows; true for a part not in use. */
  mayHoldSuppression(key: number, epochs: FilterEpochs): boolean {
    return epochs.suppressions === null || this.hasIndex('suppression', key);
  }

  /**
   * Whether a contact with this number or e-mail address (`value`, its index key `key`) may exist,
   * as far as the filter at `epochs` knows: its index was loaded, or the import may have had the
   * value itself. True for a part not in use.
   */
  mayHoldContact(kind: Exclude<IndexKind, 'suppression'>, key: number, value: string, epochs: FilterEpochs): boolean {
    return epochs.contacts === null || this.hasIndex(kind, key) || this.mayBeOwn(value);
  }

  /**
   * Whether a contact with this external id may exist, as far as the filter at `epochs` knows: the
   * database held one of its hash when the filter was loaded, or the import may have had it itself.
   * True for a part not in use. A contact created with it since the load, the batch's opening
   * catches, as for numbers. (The external id's unique index would refuse a row that created a
   * second contact with it, but not a row linked to another person by its number: the filter must
   * hold every id it read, which is why ids travel as JSON.)
   */
  mayHoldExternalId(value: string, epochs: FilterEpochs): boolean {
    return epochs.contacts === null || !this.externalIds || this.hasIndex('external', valueHashes(value)[0]) || this.mayBeOwn(value);
  }

  /** A number, e-mail address or external id of the import's own rows (one it looked up, created or not). */
  addOwn(value: string): void {
    const [first, step] = valueHashes(value);
    for (let hash = 0; hash < OWN_HASHES; hash += 1) {
      const bit = (first + Math.imul(hash, step)) & this.ownMask;
      this.own[bit >>> 3] = (this.own[bit >>> 3] as number) | (1 << (bit & 7));
    }
  }

  private mayBeOwn(value: string): boolean {
    const [first, step] = valueHashes(value);
    for (let hash = 0; hash < OWN_HASHES; hash += 1) {
      const bit = (first + Math.imul(hash, step)) & this.ownMask;
      if (((this.own[bit >>> 3] as number) & (1 << (bit & 7))) === 0) return false;
    }
    return true;
  }

  private hasIndex(kind: BitsKind, key: number): boolean {
    const bit = key & BIT_MASK;
    return ((this.bits[kind][bit >>> 3] as number) & (1 << (bit & 7))) !== 0;
  }

  private addIndex(kind: BitsKind, key: number): void {
    const bit = key & BIT_MASK;
    const bytes = this.bits[kind];
    bytes[bit >>> 3] = (bytes[bit >>> 3] as number) | (1 << (bit & 7));
  }

  /** Out of use: another writer's rows may be missing from it. */
  drop(): void {
    this.loadedAt = { contacts: null, suppressions: null };
  }

  /**
   * Adds the tenant's indexes, read in one snapshot with the epochs they stand at, and puts each
   * part in use at its epoch. What was added before stays (the import's own values, some perhaps
   * not yet committed). A part of more indexes than the `rowsToCome` justify reading stays out of
   * use. Returns whether any part is in use. (`externalIdsPerPage`: for tests of the paging.)
   */
  async load(tenantDb: TenantDb, rowsToCome: number, externalIdsPerPage = EXTERNAL_IDS_PER_PAGE): Promise<boolean> {
    const most = Math.min(MOST_LOADED, rowsToCome * LOADED_PER_ROW);
    // Each part's indexes concatenated (one value instead of a row each) and counted; at most `most` + 1 read.
    const loaded = await tenantDb.snapshot(async (trx) => {
      const read = async (indexes: ReturnType<typeof sql>) => {
        const found = (await sql<{ n: number; indexes: Buffer | null }>`SELECT count(*)::int AS n, string_agg(i, ''::bytea) AS indexes FROM (${indexes} LIMIT ${most + 1}) AS s(i)`.execute(trx)).rows[0];
        return found && found.n <= most ? (found.indexes ?? Buffer.alloc(0)) : undefined;
      };
      const epochs = (
        await sql<{ contacts: string | null; suppressions: string | null }>`SELECT (SELECT epoch FROM contact_import_epochs WHERE tenant_id = ${trx.tenantId}) AS contacts,
                                                                               (SELECT epoch FROM suppression_epochs WHERE tenant_id = ${trx.tenantId}) AS suppressions`.execute(trx)
      ).rows[0];
      const phone = await read(sql`SELECT number_index FROM contact_phones WHERE octet_length(number_index) = ${INDEX_BYTES}`);
      const email = await read(sql`SELECT email_index FROM contacts WHERE octet_length(email_index) = ${INDEX_BYTES}`);
      return {
        epochs: { contacts: Number(epochs?.contacts ?? 0), suppressions: Number(epochs?.suppressions ?? 0) },
        phone,
        email,
        // Every phone entry, whatever its scope, expiry or lifting: a superset of those in force.
        suppression: await read(sql`SELECT value_index FROM suppressions WHERE channel = 'phone' AND octet_length(value_index) = ${INDEX_BYTES}`),
        // Read only for a contacts' part in use.
        external: phone !== undefined && email !== undefined && (await this.readExternalIds(trx, most, externalIdsPerPage)),
      };
    });
    const contacts = loaded.phone !== undefined && loaded.email !== undefined;
    for (const kind of ['phone', 'email', 'suppression'] as const) {
      const indexes = loaded[kind];
      if (!indexes || (kind !== 'suppression' && !contacts)) continue;
      for (let at = 0; at + INDEX_BYTES <= indexes.length; at += INDEX_BYTES) this.addIndex(kind, indexKey(indexes, at));
    }
    // An earlier load's external ids stay held; this one's epoch is sound for them only if it read them too.
    this.externalIds = contacts && loaded.external;
    this.loadedAt = { contacts: contacts ? loaded.epochs.contacts : null, suppressions: loaded.suppression ? loaded.epochs.suppressions : null };
    return this.inUse;
  }

  /**
   * The tenant's external ids into the filter, a page at a time in the order of their index (each
   * page one JSON array: any character may be in an id). False, and the ids left to be looked up,
   * when there are more than `most`.
   */
  private async readExternalIds(trx: TenantTransaction, most: number, perPage: number): Promise<boolean> {
    // Counted first: a part given up reads nothing, and leaves no bits behind.
    const counted = await sql<{ n: number }>`SELECT count(*)::int AS n FROM (SELECT 1 FROM contacts WHERE external_id IS NOT NULL LIMIT ${most + 1}) AS s`.execute(trx);
    if ((counted.rows[0]?.n ?? 0) > most) return false;
    let after: string | null = null;
    for (;;) {
      const page: { ids: string[] | null } | undefined = (
        await sql<{ ids: string[] | null }>`
          SELECT json_agg(e ORDER BY e) AS ids
            FROM (SELECT external_id FROM contacts WHERE external_id IS NOT NULL ${after === null ? sql`` : sql`AND external_id > ${after}`}
                   ORDER BY external_id LIMIT ${perPage}) AS s(e)`.execute(trx)
      ).rows[0];
      const ids: string[] = page?.ids ?? [];
      for (const id of ids) this.addIndex('external', valueHashes(id)[0]);
      if (ids.length < perPage) break;
      after = ids.at(-1) ?? null;
    }
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
