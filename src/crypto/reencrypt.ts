import { sql } from '../db/kysely.ts';
import type { SystemDb } from '../db/system-db.ts';
import type { TenantDb, TenantTransaction } from '../db/tenant-db.ts';
import type { Logger } from '../logger.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import type { FieldCipher } from './field-cipher.ts';
import { BLOCK_MAX_AGE_MS, type Keyring } from './keyring.ts';
import { runEvery } from '../background-task.ts';

/**
 * Tenant data key rotation and the background job that re-encrypts under the new key.
 *
 * `ringvakt keys rotate-tenant` makes a new data key version active (new writes use it at once)
 * and creates a job. The job walks every registered encrypted column, then every subject key,
 * a batch per transaction: it takes the job row FOR UPDATE (one worker at a time, any number of
 * nodes), re-encrypts the batch, and stores its cursor and counts in that same transaction — so a
 * job stopped anywhere resumes exactly where it stopped, and no batch is done twice.
 *
 * Concurrent writers are safe: each row is replaced only if it still holds the ciphertext the
 * job read (compare-and-swap); a row a writer changed meanwhile was written under the new key
 * anyway. A process may keep encrypting under the old key for up to BLOCK_MAX_AGE_MS after the
 * rotation (its reserved block), so the job ends with a sweep, after that time, of any value still
 * under an older version. Old key versions stay (retired) for backups taken before the rotation.
 *
 * The same job moves plaintext left from before field encryption (migration 0007) into
 * ciphertext: a value with no ciphertext and a plaintext is encrypted and its plaintext cleared.
 */

/**
 * Every column that holds field ciphertext under the tenant data key. A new encrypted column
 * must be added here, or rotation would leave it under the old key: test/key-rotation.int.test.ts
 * fails when a `*_ciphertext` column of the schema is missing from this list.
 */
export type EncryptedColumn = {
  table: 'users' | 'email_outbox' | 'oidc_providers' | 'oidc_login_states' | 'suppressions' | 'privacy_requests' | 'alert_webhooks' | 'compliance_documents';
  column: string;
  /** Sealed as bytes (encryptBytes), not text. */
  bytes?: boolean;
  /** Rows per batch when values are large (files): fewer than the default, to bound memory. */
  batch?: number;
  /** The field name bound into the ciphertext's associated data. */
  field: string;
  /** Plaintext column of rows written before encryption, if any. */
  plaintextColumn?: string;
  /** The blind index kept next to it, recomputed when plaintext is first encrypted. */
  index?: { column: string; name: string; normalise: (value: string) => string };
};

export const encryptedColumns: readonly EncryptedColumn[] = [
  {
    table: 'users',
    column: 'email_ciphertext',
    field: 'email',
    plaintextColumn: 'email',
    index: { column: 'email_index', name: 'users.email', normalise: (value) => value.trim().toLowerCase() },
  },
  { table: 'users', column: 'display_name_ciphertext', field: 'display_name', plaintextColumn: 'display_name' },
  { table: 'users', column: 'totp_secret_ciphertext', field: 'totp_secret' },
  { table: 'users', column: 'totp_pending_ciphertext', field: 'totp_pending' },
  { table: 'email_outbox', column: 'recipient_ciphertext', field: 'recipient' },
  { table: 'email_outbox', column: 'message_ciphertext', field: 'message' },
  { table: 'oidc_providers', column: 'client_secret_ciphertext', field: 'client_secret' },
  { table: 'oidc_login_states', column: 'code_verifier_ciphertext', field: 'code_verifier' },
  { table: 'suppressions', column: 'value_ciphertext', field: 'value' },
  { table: 'privacy_requests', column: 'requester_ciphertext', field: 'requester' },
  { table: 'privacy_requests', column: 'verification_note_ciphertext', field: 'verification_note' },
  { table: 'alert_webhooks', column: 'secret_ciphertext', field: 'secret' },
  // Evidence files of up to 10 MiB: four at a time.
  { table: 'compliance_documents', column: 'file_ciphertext', field: 'file', bytes: true, batch: 4 },
];

/**
 * Columns whose values are encrypted under a data subject's own key (a contact's), not under the
 * tenant data key. Rotation rewraps each subject key under the new tenant key — the values
 * themselves need no rewrite — and erasure destroys the subject key (crypto-shredding).
 */
export const subjectKeyedColumns: readonly { table: string; column: string }[] = [
  { table: 'contacts', column: 'name_ciphertext' },
  { table: 'contacts', column: 'email_ciphertext' },
  { table: 'contacts', column: 'address_ciphertext' },
  { table: 'contacts', column: 'birth_date_ciphertext' },
  { table: 'contacts', column: 'notes_ciphertext' },
  { table: 'contacts', column: 'personal_fields_ciphertext' },
  { table: 'contacts', column: 'record_ciphertext' },
  { table: 'contact_phones', column: 'number_ciphertext' },
  { table: 'dial_attempts', column: 'notes_ciphertext' },
  { table: 'recordings', column: 'audio_ciphertext' },
];

/**
 * Not under the key hierarchy at all: privacy_exports.bundle_sealed, sealed with the key its
 * single-use download token carries (src/privacy/export-bundle.ts).
 *
 * Not walked: contact_import_chunks.ciphertext, an uploaded import file, held only until its import
 * ends (then deleted). A chunk stored before a rotation stays readable because retired key
 * versions are kept; a rotation meant to retire a compromised key should cancel pending imports.
 */

/**
 * The steps of a job: walk each encrypted column; walk the subject keys; then, once writers can no
 * longer hold the old key, sweep each column and the subject keys again for anything still behind.
 */
const SUBJECT_KEYS_STEP = encryptedColumns.length;
const FIRST_SWEEP_STEP = SUBJECT_KEYS_STEP + 1;
const SUBJECT_KEYS_SWEEP_STEP = FIRST_SWEEP_STEP + encryptedColumns.length;
const DONE_STEP = SUBJECT_KEYS_SWEEP_STEP + 1;
const BATCH = 200;

/** Header bytes 4–7 of a version-1 field ciphertext: the tenant data key version, big-endian. */
const versionBytes = (version: number) => {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(version);
  return bytes;
};

export type RotationJob = {
  id: string;
  targetVersion: number;
  state: 'running' | 'done';
  step: number;
  stepName: string;
  reencrypted: number;
  skipped: number;
  createdAt: Date;
  finishedAt: Date | null;
  /** Set when the batch did nothing because the sweep must wait until then (writers' old blocks). */
  sweepNotBefore?: Date;
};

const stepName = (step: number) => {
  const spec = encryptedColumns[step];
  if (spec) return `${spec.table}.${spec.column}`;
  if (step === SUBJECT_KEYS_STEP) return 'subject keys';
  return step < DONE_STEP ? 'final sweep' : 'done';
};

export class RotationInProgressError extends Error {
  constructor() {
    super('A data key rotation of this tenant is still re-encrypting; let it finish first (ringvakt keys status).');
    this.name = 'RotationInProgressError';
  }
}

/** Takes the tenant's rotation lock (until commit) and says whether a job is still running. */
async function jobRunningUnderLock(trx: TenantTransaction): Promise<boolean> {
  await sql`SELECT pg_advisory_xact_lock(hashtextextended(${`ringvakt:key-rotation:${trx.tenantId}`}, 0))`.execute(trx);
  return (await trx.selectFrom('key_rotation_jobs').select('id').where('state', '=', 'running').executeTakeFirst()) !== undefined;
}

/**
 * Makes a new data key version active and creates its re-encryption job, in one transaction;
 * the rotation is audited. Refused while an earlier job still runs.
 */
export async function rotateTenantDataKey(trx: TenantTransaction, keyring: Keyring, actor: { type: 'operator' | 'system'; id?: string }): Promise<RotationJob> {
  if (await jobRunningUnderLock(trx)) throw new RotationInProgressError();
  const version = await keyring.rotateDataKey(trx);
  const job = await trx.insertInto('key_rotation_jobs').values({ target_version: version }).returningAll().executeTakeFirstOrThrow();
  await recordAuditEvent(trx, {
    action: 'keys.rotate_tenant',
    outcome: 'success',
    actor,
    target: { type: 'tenant_data_key', id: String(version) },
    details: { job: job.id },
  });
  return present(job);
}

/** A job for a tenant that still has plaintext from before encryption, at the current key version. */
async function ensureJobForPlaintext(trx: TenantTransaction, keyring: Keyring): Promise<void> {
  if (await jobRunningUnderLock(trx)) return;
  const { version } = await keyring.dataKeyForEncryption(trx);
  await trx.insertInto('key_rotation_jobs').values({ target_version: version }).execute();
}

function present(row: {
  id: string;
  target_version: number;
  state: 'running' | 'done';
  step: number;
  reencrypted: string;
  skipped: string;
  created_at: Date;
  finished_at: Date | null;
}): RotationJob {
  return {
    id: row.id,
    targetVersion: row.target_version,
    state: row.state,
    step: row.step,
    stepName: stepName(row.step),
    reencrypted: Number(row.reencrypted),
    skipped: Number(row.skipped),
    createdAt: row.created_at,
    finishedAt: row.finished_at,
  };
}

export async function listRotationJobs(trx: TenantTransaction): Promise<RotationJob[]> {
  const rows = await trx.selectFrom('key_rotation_jobs').selectAll().orderBy('created_at', 'desc').limit(20).execute();
  return rows.map(present);
}

type Batch = { reencrypted: number; skipped: number; cursor: string; exhausted: boolean };

/** Called for a value that does not decrypt (altered, or its key is gone): skipped, never fatal. */
export type OnUnreadable = (where: { table: string; recordId: string; field: string }, error: unknown) => void;

/**
 * Re-encrypts one batch of one column after `cursor` (record ids in order); values already under
 * `target` are skipped. The sweep visits only values still behind.
 */
async function columnBatch(
  trx: TenantTransaction,
  cipher: FieldCipher,
  spec: EncryptedColumn,
  target: number,
  cursor: string,
  sweep: boolean,
  onUnreadable: OnUnreadable,
): Promise<Batch> {
  const plain = spec.plaintextColumn ? sql.ref(spec.plaintextColumn) : sql`NULL::text`;
  // Slices, not get_byte: a slice of a large value (an evidence file) reads only its first chunk.
  const older = sql`(substring(${sql.ref(spec.column)} from 4 for 1) = '\x01'::bytea AND substring(${sql.ref(spec.column)} from 5 for 4) < ${versionBytes(target)})`;
  const rows = await sql<{ id: string; ciphertext: Buffer | null; plaintext: string | null }>`
    SELECT id::text AS id, ${sql.ref(spec.column)} AS ciphertext, ${plain} AS plaintext
      FROM ${sql.table(spec.table)}
     WHERE ${cursor ? sql`id > ${cursor}::uuid` : sql`TRUE`}
       ${sweep ? sql`AND (${older} OR (${sql.ref(spec.column)} IS NULL AND ${plain} IS NOT NULL))` : sql``}
     ORDER BY id LIMIT ${spec.batch ?? BATCH}`.execute(trx);
  let reencrypted = 0;
  let skipped = 0;
  for (const row of rows.rows) {
    const where = { table: spec.table, recordId: row.id, field: spec.field };
    if (row.ciphertext) {
      const isTenantKey = row.ciphertext[3] === 0x01;
      if (!isTenantKey || row.ciphertext.readUInt32BE(4) >= target) {
        skipped += 1;
        continue;
      }
      let fresh: Buffer;
      try {
        fresh = spec.bytes ? await cipher.encryptBytes(trx, where, await cipher.decryptBytes(trx, where, row.ciphertext)) : await cipher.encrypt(trx, where, await cipher.decrypt(trx, where, row.ciphertext));
      } catch (error) {
        onUnreadable(where, error);
        skipped += 1;
        continue;
      }
      const updated = await sql`UPDATE ${sql.table(spec.table)} SET ${sql.ref(spec.column)} = ${fresh}
                                 WHERE id = ${row.id}::uuid AND ${sql.ref(spec.column)} = ${row.ciphertext}`.execute(trx);
      if (Number(updated.numAffectedRows ?? 0) > 0) reencrypted += 1;
      else skipped += 1;
    } else if (row.plaintext !== null && spec.plaintextColumn) {
      const fresh = await cipher.encrypt(trx, where, row.plaintext);
      const index = spec.index ? await cipher.blindIndex(trx, spec.index.name, spec.index.normalise(row.plaintext)) : undefined;
      const updated = await sql`UPDATE ${sql.table(spec.table)}
           SET ${sql.ref(spec.column)} = ${fresh}, ${sql.ref(spec.plaintextColumn)} = NULL
               ${index && spec.index ? sql`, ${sql.ref(spec.index.column)} = ${index}` : sql``}
         WHERE id = ${row.id}::uuid AND ${sql.ref(spec.column)} IS NULL AND ${sql.ref(spec.plaintextColumn)} = ${row.plaintext}`.execute(trx);
      if (Number(updated.numAffectedRows ?? 0) > 0) reencrypted += 1;
      else skipped += 1;
    } else {
      skipped += 1;
    }
  }
  return { reencrypted, skipped, cursor: rows.rows.at(-1)?.id ?? cursor, exhausted: rows.rows.length < (spec.batch ?? BATCH) };
}

async function subjectKeyBatch(trx: TenantTransaction, keyring: Keyring, target: number, cursor: string, sweep: boolean): Promise<Batch> {
  let query = trx
    .selectFrom('subject_keys')
    .select(['subject_id'])
    .where(cursor ? sql<boolean>`subject_id > ${cursor}::uuid` : sql<boolean>`TRUE`)
    .orderBy('subject_id')
    .limit(BATCH);
  if (sweep) query = query.where('destroyed_at', 'is', null).where('tenant_key_version', '<', target);
  const rows = await query.execute();
  let reencrypted = 0;
  for (const row of rows) if (await keyring.rewrapSubjectKey(trx, row.subject_id, target)) reencrypted += 1;
  return { reencrypted, skipped: rows.length - reencrypted, cursor: rows.at(-1)?.subject_id ?? cursor, exhausted: rows.length < BATCH };
}

/**
 * Runs one batch of the tenant's running job, in its own transaction. Returns the job after the
 * batch, or undefined when there is no running job or another worker holds it right now.
 */
export async function runRotationBatch(
  tenantDb: TenantDb,
  crypto: { keyring: Keyring; cipher: FieldCipher },
  options: { settleMs?: number; now?: () => number; onUnreadable?: OnUnreadable } = {},
): Promise<RotationJob | undefined> {
  const onUnreadable = options.onUnreadable ?? (() => undefined);
  const settleMs = options.settleMs ?? BLOCK_MAX_AGE_MS + 5_000;
  const now = options.now ?? Date.now;
  return tenantDb.transaction(async (trx) => {
    const job = await trx.selectFrom('key_rotation_jobs').selectAll().where('state', '=', 'running').forUpdate().skipLocked().executeTakeFirst();
    if (!job) return undefined;
    let step = job.step;
    let cursor = job.cursor;
    // Writers may use the old key for a while after the rotation: sweep once that has passed.
    const sweepNotBefore = job.created_at.getTime() + settleMs;
    if (step >= FIRST_SWEEP_STEP && now() < sweepNotBefore) return { ...present(job), sweepNotBefore: new Date(sweepNotBefore) };
    const sweep = step >= FIRST_SWEEP_STEP;
    const spec = encryptedColumns[sweep ? step - FIRST_SWEEP_STEP : step];
    const batch =
      step === SUBJECT_KEYS_STEP || step === SUBJECT_KEYS_SWEEP_STEP
        ? await subjectKeyBatch(trx, crypto.keyring, job.target_version, cursor, sweep)
        : await columnBatch(trx, crypto.cipher, spec as EncryptedColumn, job.target_version, cursor, sweep, onUnreadable);
    if (batch.exhausted) {
      step += 1;
      cursor = '';
    } else {
      cursor = batch.cursor;
    }
    const done = step >= DONE_STEP;
    const updated = await trx
      .updateTable('key_rotation_jobs')
      .set({
        step,
        cursor,
        reencrypted: sql`reencrypted + ${batch.reencrypted}`,
        skipped: sql`skipped + ${batch.skipped}`,
        updated_at: new Date(),
        ...(done ? { state: 'done' as const, finished_at: new Date() } : {}),
      })
      .where('id', '=', job.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return present(updated);
  });
}

/**
 * The background worker: every `intervalMs`, advances the jobs of tenants that have one (or that
 * still have plaintext from before encryption, for whom it creates one), within a time budget so
 * one large tenant does not hold the others up.
 */
export function startReencryptionWorker(options: {
  systemDb: SystemDb;
  crypto: () => Promise<{ keyring: Keyring; cipher: FieldCipher }>;
  logger: Logger;
  intervalMs?: number;
  budgetMs?: number;
}): { stop(): Promise<void>; runOnce(): Promise<void> } {
  let stopped = false;
  const runOnce = async () => {
    const crypto = await options.crypto();
    for (const tenantId of await options.systemDb.tenantsNeedingReencryption()) {
      const tenantDb = options.systemDb.inTenant(tenantId);
      try {
        await tenantDb.transaction((trx) => ensureJobForPlaintext(trx, crypto.keyring));
        const until = Date.now() + (options.budgetMs ?? 1_000);
        let job: RotationJob | undefined;
        do {
          job = await runRotationBatch(tenantDb, crypto, {
            onUnreadable: (where, error) =>
              options.logger.warn({ err: error, tenant: tenantId, table: where.table, field: where.field, record: where.recordId }, 'a value does not decrypt; re-encryption skips it'),
          });
        } while (job?.state === 'running' && !job.sweepNotBefore && Date.now() < until && !stopped);
        if (job?.state === 'done') options.logger.info({ tenant: tenantId, job: job.id, reencrypted: job.reencrypted }, 'data key rotation finished re-encrypting');
      } catch (error) {
        options.logger.error({ err: error, tenant: tenantId }, 're-encryption failed for a tenant; will retry');
      }
    }
  };
  const task = runEvery('reencryption', options.intervalMs ?? 5_000, runOnce, (error) => options.logger.error({ err: error }, 're-encryption worker failed'));
  return {
    runOnce,
    async stop() {
      stopped = true;
      await task.stop();
    },
  };
}
