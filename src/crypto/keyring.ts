import { randomBytes } from 'node:crypto';
import { binaryArray } from '../db/binary-array.ts';
import { sql, type CompiledQuery } from '../db/kysely.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';
import { onCommit } from '../db/tenant-db.ts';
import { KEY_BYTES, newKey } from './aead.ts';
import { KeyringError, tenantKeyContext, unwrapSubjectKey, wrapSubjectKey, type DataKey } from './key-wraps.ts';

export { KeyringError, tenantKeyContext, wrapSubjectKey, type DataKey } from './key-wraps.ts';
import type { RootKeyProvider } from './root-keys/root-key-provider.ts';

/**
 * The key hierarchy below the root key:
 *   root key (key provider) ─wraps→ tenant keys ('data' versions, one 'index' key)
 *   tenant data key ─wraps→ per-data-subject keys (crypto-shredding)
 * Unwrapped tenant keys are kept in memory by (tenant, purpose, version): a version's material
 * never changes, so the cache needs no invalidation. Subject keys are not cached: destroying one
 * takes effect on the next read everywhere.
 *
 * Nonce budget: AES-GCM with random 96-bit nonces is safe for about 2^32 encryptions per key.
 * Processes reserve encryptions in blocks against a counter in tenant_keys; once a key's
 * reservations pass ROTATE_AFTER (2^30, a quarter of the bound), the next reservation creates a
 * new data key version first. Subject keys encrypt one person's few fields and are not counted.
 */
export const ROTATE_AFTER = 2 ** 30;
const BLOCK = 65_536;
/**
 * How long a process may keep encrypting under a reserved block without asking the database again;
 * after a rotation, writes under the old version can arrive for this long (re-encryption jobs
 * sweep once it has passed).
 */
export const BLOCK_MAX_AGE_MS = 60_000;

/** The subject's key was destroyed (crypto-shredding): their encrypted data is gone for good. */
export class SubjectErasedError extends Error {
  constructor() {
    super("This data subject's personal data was erased");
    this.name = 'SubjectErasedError';
  }
}


export type Keyring = {
  /** Without I/O: the data key this process has a live reservation for, counting `count` uses (one by default) if that many are left. */
  reservedDataKey(tenantId: string, count?: number): DataKey | undefined;
  /** Without I/O: an already unwrapped data key version. */
  cachedDataKey(tenantId: string, version: number): Buffer | undefined;
  /** The active data key, created on first use; counts one encryption against its budget. */
  dataKeyForEncryption(trx: TenantTransaction): Promise<DataKey>;
  /**
   * The active data key with `count` encryptions counted against its budget at once, all on the
   * version returned: for work that encrypts under it elsewhere (an import's sealing thread, which
   * gets the key by message and wraps a batch's subject keys with wrapSubjectKey). A block this
   * process reserved under a version below `minimumVersion` — one that a rotation in another
   * process retired — is given up first.
   */
  dataKeyForEncryptions(trx: TenantTransaction, count: number, options?: { minimumVersion?: number }): Promise<DataKey>;
  /** The version of the active data key, as this transaction sees it. */
  activeDataKeyVersion(trx: TenantTransaction): Promise<number>;
  dataKey(trx: TenantTransaction, version: number): Promise<Buffer>;
  indexKey(trx: TenantTransaction): Promise<Buffer>;
  /** The subject's key, created when `create` is set and none exists. */
  subjectKey(trx: TenantTransaction, subjectId: string, options: { create: boolean }): Promise<Buffer | undefined>;
  /**
   * Keys for subjects that are new — ids this process just generated, so no other transaction can
   * be creating them — wrapped and inserted in one statement (bulk imports).
   */
  createSubjectKeys(trx: TenantTransaction, subjectIds: readonly string[]): Promise<Buffer[]>;
  /**
   * The two halves of createSubjectKeys: keys made and wrapped (each wrap counted against the data
   * key's budget), then stored — wrapped again under the active version if a rotation retired
   * theirs in between. (An import wraps in its sealing thread instead, with dataKeyForEncryptions
   * and wrapSubjectKey, and prepares a batch again when its version was retired.)
   */
  wrapNewSubjectKeys(trx: TenantTransaction, subjectIds: readonly string[]): Promise<NewSubjectKey[]>;
  storeSubjectKeys(trx: TenantTransaction, keys: readonly NewSubjectKey[]): Promise<void>;
  /** Opens a subject key the caller read with its row (a join), without another query. */
  openSubjectKey(trx: TenantTransaction, subjectId: string, version: number, wrapped: Buffer): Promise<Buffer>;
  /** The keys of many subjects in one query: null for an erased subject, absent when none exists. */
  subjectKeys(trx: TenantTransaction, subjectIds: readonly string[]): Promise<Map<string, Buffer | null>>;
  destroySubjectKey(trx: TenantTransaction, subjectId: string): Promise<boolean>;
  /** Makes a new data key version active and retires the old one; returns the new version. */
  rotateDataKey(trx: TenantTransaction): Promise<number>;
  /**
   * Rewraps a subject's key under data key `version` if it is wrapped under an older one; returns
   * false when there was nothing to do (already current, destroyed, or changed meanwhile).
   */
  rewrapSubjectKey(trx: TenantTransaction, subjectId: string, version: number): Promise<boolean>;
};

export type NewSubjectKey = { subjectId: string; key: Buffer; version: number; wrapped: Buffer };

/** The query of the tenant's active data key version, for a caller that sends it with others; its rows read by activeDataKeyVersionOf. */
export function activeDataKeyVersionQuery(trx: TenantTransaction): CompiledQuery {
  return trx.selectFrom('tenant_keys').select('version').where('purpose', '=', 'data').where('state', '=', 'active').compile();
}

/** The active data key version in the rows of activeDataKeyVersionQuery (0: the tenant has none yet). */
export function activeDataKeyVersionOf(rows: readonly unknown[]): number {
  return (rows[0] as { version: number } | undefined)?.version ?? 0;
}

export function createKeyring(root: RootKeyProvider): Keyring {
  const unwrapped = new Map<string, Buffer>();
  const budgets = new Map<string, { version: number; remaining: number; until: number }>();
  const transactionBudgets = new WeakMap<TenantTransaction, { version: number; remaining: number; until: number; key?: Buffer }>();
  // Tenant keys this transaction unwrapped, for its own later use: the process-wide cache takes them
  // only once the transaction commits, and a long read (an evidence run) must not unwrap the same
  // key again for every value it opens.
  const transactionKeys = new WeakMap<TenantTransaction, Map<string, Buffer>>();

  const remember = (cacheKey: string, key: Buffer) => {
    if (unwrapped.size >= 20_000) unwrapped.delete(unwrapped.keys().next().value as string);
    unwrapped.set(cacheKey, key);
  };

  const unwrapTenantKey = async (
    trx: TenantTransaction,
    row: { purpose: 'data' | 'index'; version: number; root_key_id: string; wrapped_key: Buffer },
  ): Promise<Buffer> => {
    const cacheKey = `${trx.tenantId}/${row.purpose}/${row.version}`;
    const known = unwrapped.get(cacheKey) ?? transactionKeys.get(trx)?.get(cacheKey);
    if (known) return known;
    const key = await root.unwrap({ keyId: row.root_key_id, wrapped: row.wrapped_key }, tenantKeyContext(trx.tenantId, row.purpose, row.version));
    const mine = transactionKeys.get(trx) ?? new Map<string, Buffer>();
    mine.set(cacheKey, key);
    transactionKeys.set(trx, mine);
    // The row may be this transaction's own, not yet committed: remember it only after commit.
    onCommit(trx, () => remember(cacheKey, key));
    return key;
  };

  const lockSubject = (trx: TenantTransaction, subjectId: string) =>
    sql`SELECT pg_advisory_xact_lock(hashtextextended(${`ringvakt:subject-key:${trx.tenantId}:${subjectId}`}, 0))`.execute(trx);

  /** Serialises key creation per tenant: two requests must not both create version 1. */
  const lockTenantKeys = (trx: TenantTransaction) =>
    sql`SELECT pg_advisory_xact_lock(hashtextextended(${`ringvakt:tenant-keys:${trx.tenantId}`}, 0))`.execute(trx);

  const createTenantKey = async (trx: TenantTransaction, purpose: 'data' | 'index', version: number) => {
    const key = randomBytes(KEY_BYTES);
    const wrapped = await root.wrap(key, tenantKeyContext(trx.tenantId, purpose, version));
    await trx
      .insertInto('tenant_keys')
      .values({ purpose, version, root_key_id: wrapped.keyId, wrapped_key: wrapped.wrapped })
      .execute();
    // Remembered only once the row is committed: a rolled-back key must not live on in memory.
    onCommit(trx, () => remember(`${trx.tenantId}/${purpose}/${version}`, key));
    return key;
  };

  const activeKey = async (trx: TenantTransaction, purpose: 'data' | 'index'): Promise<DataKey> => {
    const find = () =>
      trx
        .selectFrom('tenant_keys')
        .select(['purpose', 'version', 'root_key_id', 'wrapped_key'])
        .where('purpose', '=', purpose)
        .where('state', '=', 'active')
        .executeTakeFirst();
    let row = await find();
    if (!row) {
      await lockTenantKeys(trx);
      row = await find();
      if (!row) return { version: 1, key: await createTenantKey(trx, purpose, 1) };
    }
    return { version: row.version, key: await unwrapTenantKey(trx, row) };
  };

  const rotateDataKey = async (trx: TenantTransaction): Promise<number> => {
    await lockTenantKeys(trx);
    const latest = await trx
      .selectFrom('tenant_keys')
      .select((eb) => eb.fn.max('version').as('version'))
      .where('purpose', '=', 'data')
      .executeTakeFirst();
    const next = Number(latest?.version ?? 0) + 1;
    await trx.updateTable('tenant_keys').set({ state: 'retired' }).where('purpose', '=', 'data').where('state', '=', 'active').execute();
    await createTenantKey(trx, 'data', next);
    budgets.delete(trx.tenantId);
    return next;
  };

  /** Takes one encryption from this process's reserved block, reserving a new block when needed. */
  const spend = async (trx: TenantTransaction, version: number): Promise<number> => {
    const budget = budgets.get(trx.tenantId);
    if (budget && budget.version === version && budget.remaining > 0 && budget.until > Date.now()) {
      budget.remaining -= 1;
      return version;
    }
    const reserved = await trx
      .updateTable('tenant_keys')
      .set({ encryptions_reserved: sql`encryptions_reserved + ${BLOCK}` })
      .where('purpose', '=', 'data')
      .where('version', '=', version)
      .where('state', '=', 'active')
      .returning('encryptions_reserved')
      .executeTakeFirst();
    if (!reserved || Number(reserved.encryptions_reserved) > ROTATE_AFTER) {
      // Retired meanwhile by another process, or its budget is spent: move to a fresh version.
      const current = reserved ? await rotateDataKey(trx) : (await activeKey(trx, 'data')).version;
      return spend(trx, current);
    }
    // Likewise the reserved block: this transaction spends from it at once (a bulk write may need
    // many blocks), and the process keeps what is left only if the transaction commits.
    const block = { version, remaining: BLOCK - 1, until: Date.now() + BLOCK_MAX_AGE_MS };
    transactionBudgets.set(trx, block);
    onCommit(trx, () => budgets.set(trx.tenantId, block));
    return version;
  };

  const dataKey = async (trx: TenantTransaction, version: number): Promise<Buffer> => {
    const cacheKey = `${trx.tenantId}/data/${version}`;
    const cached = unwrapped.get(cacheKey) ?? transactionKeys.get(trx)?.get(cacheKey);
    if (cached) return cached;
    const row = await trx
      .selectFrom('tenant_keys')
      .select(['purpose', 'version', 'root_key_id', 'wrapped_key'])
      .where('purpose', '=', 'data')
      .where('version', '=', version)
      .executeTakeFirst();
    if (!row) throw new KeyringError(`This tenant has no data key version ${version}`);
    return unwrapTenantKey(trx, row);
  };

  // Fast path: this process holds a reserved block for the tenant's active key (at most 60 s old,
  // so a rotation elsewhere is picked up within a minute; older versions stay readable).
  const reservedDataKey = (tenantId: string, count = 1): DataKey | undefined => {
    const budget = budgets.get(tenantId);
    const cached = budget ? unwrapped.get(`${tenantId}/data/${budget.version}`) : undefined;
    if (!budget || !cached || budget.remaining < count || budget.until <= Date.now()) return undefined;
    budget.remaining -= count;
    return { version: budget.version, key: cached };
  };

  return {
    reservedDataKey,
    cachedDataKey: (tenantId, version) => unwrapped.get(`${tenantId}/data/${version}`),
    async dataKeyForEncryption(trx) {
      const reserved = reservedDataKey(trx.tenantId);
      if (reserved) return reserved;
      // A block this transaction reserved itself (not yet the process's: it may roll back).
      const own = transactionBudgets.get(trx);
      if (own?.key && own.remaining > 0 && own.until > Date.now()) {
        own.remaining -= 1;
        return { version: own.version, key: own.key };
      }
      const active = await activeKey(trx, 'data');
      const version = await spend(trx, active.version);
      const chosen = version === active.version ? active : { version, key: await dataKey(trx, version) };
      const block = transactionBudgets.get(trx);
      if (block && block.version === chosen.version) block.key = chosen.key;
      return chosen;
    },
    dataKey,
    async indexKey(trx) {
      return (await activeKey(trx, 'index')).key;
    },
    async subjectKey(trx, subjectId, options) {
      // Creation and destruction of one subject's key serialise: an erasure never misses a key
      // that a concurrent transaction is creating.
      if (options.create) await lockSubject(trx, subjectId);
      const row = await trx
        .selectFrom('subject_keys')
        .select(['tenant_key_version', 'wrapped_key', 'destroyed_at'])
        .where('subject_id', '=', subjectId)
        .executeTakeFirst();
      if (row?.destroyed_at) throw new SubjectErasedError();
      if (row && row.wrapped_key && row.tenant_key_version !== null) {
        const version = row.tenant_key_version;
        return unwrapSubjectKey(trx.tenantId, subjectId, { version, key: await dataKey(trx, version) }, row.wrapped_key);
      }
      if (!options.create) return undefined;
      // Wrapping a subject key is an encryption under the data key: it counts against its budget.
      const wrapping = await this.dataKeyForEncryption(trx);
      const key = randomBytes(KEY_BYTES);
      const inserted = await trx
        .insertInto('subject_keys')
        .values({ subject_id: subjectId, tenant_key_version: wrapping.version, wrapped_key: wrapSubjectKey(trx.tenantId, subjectId, wrapping, key) })
        .onConflict((conflict) => conflict.columns(['tenant_id', 'subject_id']).doNothing())
        .returning('subject_id')
        .executeTakeFirst();
      // Lost a race with another transaction creating the same subject's key: use theirs.
      return inserted ? key : this.subjectKey(trx, subjectId, { create: false });
    },
    async createSubjectKeys(trx, subjectIds) {
      const made = await this.wrapNewSubjectKeys(trx, subjectIds);
      await this.storeSubjectKeys(trx, made);
      return made.map((entry) => entry.key);
    },
    async dataKeyForEncryptions(trx, count, options = {}) {
      if (!Number.isInteger(count) || count < 1) throw new KeyringError('Count at least one encryption');
      const block = budgets.get(trx.tenantId);
      if (block && block.version < (options.minimumVersion ?? 0)) budgets.delete(trx.tenantId);
      // Almost always: all of them from the process's reserved block at once, without I/O.
      const whole = reservedDataKey(trx.tenantId, count);
      if (whole) return whole;
      // Otherwise counted one by one (the block runs out on the way, or none is reserved yet); a
      // rotation met on the way starts the count again on the new version.
      let chosen = await this.dataKeyForEncryption(trx);
      let counted = 1;
      while (counted < count) {
        const next = await this.dataKeyForEncryption(trx);
        counted = next.version === chosen.version ? counted + 1 : 1;
        chosen = next;
      }
      return chosen;
    },
    async activeDataKeyVersion(trx) {
      return activeDataKeyVersionOf((await trx.executeQuery(activeDataKeyVersionQuery(trx))).rows);
    },
    async wrapNewSubjectKeys(trx, subjectIds) {
      const made: NewSubjectKey[] = [];
      for (const subjectId of subjectIds) {
        const wrapping = await this.dataKeyForEncryption(trx);
        const key = newKey();
        made.push({ subjectId, key, version: wrapping.version, wrapped: wrapSubjectKey(trx.tenantId, subjectId, wrapping, key) });
      }
      return made;
    },
    async storeSubjectKeys(trx, keys) {
      if (keys.length === 0) return;
      // A key wrapped a while ago (a prepared batch) under a version that a rotation has retired
      // since is wrapped again now, so a rotation's sweep can never finish before it is stored.
      const active = await activeKey(trx, 'data');
      const current: NewSubjectKey[] = [];
      for (const entry of keys) {
        if (entry.version >= active.version) {
          current.push(entry);
          continue;
        }
        const wrapping = await this.dataKeyForEncryption(trx);
        current.push({ ...entry, version: wrapping.version, wrapped: wrapSubjectKey(trx.tenantId, entry.subjectId, wrapping, entry.key) });
      }
      await sql`INSERT INTO subject_keys (subject_id, tenant_key_version, wrapped_key)
                SELECT * FROM unnest(${binaryArray('uuid', current.map((entry) => entry.subjectId))}::uuid[], ${binaryArray('int4', current.map((entry) => entry.version))}::integer[],
                                     ${binaryArray('bytea', current.map((entry) => entry.wrapped))}::bytea[])`.execute(trx);
    },
    async openSubjectKey(trx, subjectId, version, wrapped) {
      return unwrapSubjectKey(trx.tenantId, subjectId, { version, key: await dataKey(trx, version) }, wrapped);
    },
    async subjectKeys(trx, subjectIds) {
      const found = new Map<string, Buffer | null>();
      if (subjectIds.length === 0) return found;
      const rows = await sql<{ subject_id: string; tenant_key_version: number | null; wrapped_key: Buffer | null }>`
        SELECT subject_id, tenant_key_version, wrapped_key FROM subject_keys WHERE subject_id = ANY(${binaryArray('uuid', subjectIds)}::uuid[])`.execute(trx);
      for (const row of rows.rows) {
        if (!row.wrapped_key || row.tenant_key_version === null) {
          found.set(row.subject_id, null);
          continue;
        }
        const version = row.tenant_key_version;
        found.set(row.subject_id, unwrapSubjectKey(trx.tenantId, row.subject_id, { version, key: await dataKey(trx, version) }, row.wrapped_key));
      }
      return found;
    },
    async destroySubjectKey(trx, subjectId) {
      await lockSubject(trx, subjectId);
      const result = await trx
        .updateTable('subject_keys')
        .set({ wrapped_key: null, tenant_key_version: null, destroyed_at: new Date() })
        .where('subject_id', '=', subjectId)
        .where('destroyed_at', 'is', null)
        .executeTakeFirst();
      if (Number(result.numUpdatedRows) > 0) return true;
      // No key yet: leave a tombstone, so nothing can be encrypted for this subject afterwards.
      await trx
        .insertInto('subject_keys')
        .values({ subject_id: subjectId, tenant_key_version: null, wrapped_key: null, destroyed_at: new Date() })
        .onConflict((conflict) => conflict.columns(['tenant_id', 'subject_id']).doNothing())
        .execute();
      return false;
    },
    rotateDataKey,
    async rewrapSubjectKey(trx, subjectId, version) {
      await lockSubject(trx, subjectId);
      const row = await trx
        .selectFrom('subject_keys')
        .select(['tenant_key_version', 'wrapped_key'])
        .where('subject_id', '=', subjectId)
        .where('destroyed_at', 'is', null)
        .executeTakeFirst();
      if (!row?.wrapped_key || row.tenant_key_version === null || row.tenant_key_version >= version) return false;
      const old = row.tenant_key_version;
      const key = unwrapSubjectKey(trx.tenantId, subjectId, { version: old, key: await dataKey(trx, old) }, row.wrapped_key);
      // Under the active key (the target, or newer if another rotation followed), counted.
      const wrapping = await this.dataKeyForEncryption(trx);
      const rewrapped = wrapSubjectKey(trx.tenantId, subjectId, wrapping, key);
      await trx
        .updateTable('subject_keys')
        .set({ tenant_key_version: wrapping.version, wrapped_key: rewrapped })
        .where('subject_id', '=', subjectId)
        .where('tenant_key_version', '=', row.tenant_key_version)
        .execute();
      return true;
    },
  };
}
