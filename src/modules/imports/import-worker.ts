import { pipeline, Readable } from 'node:stream';
import { sql } from '../../db/kysely.ts';
import type { Logger } from '../../logger.ts';
import type { TenantDb } from '../../db/tenant-db.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { loadFieldDefinitions, type ContactsCrypto } from '../contacts/contacts.service.ts';
import { lookUpAhead, noIdentities, type BatchLookups } from './batch-lookups.ts';
import { checkRunContinues, commitBatch, LeaseLost, RunInterrupted, WrapKeyRetired, type CreatedKeys } from './commit-batch.ts';
import { IndexFilter } from './index-filter.ts';
import { csvParser, type CsvRecord } from './csv-reading.ts';
import { chunkAt } from './import-upload.ts';
import { loadJob, type Job } from './load-import-job.ts';
import { isDatabaseUnavailable } from '../../db/unavailable.ts';
import { failImport, type ImportOutcome } from './claim-import.ts';
import { prepareRows, type PrepareContext, type PreparedBatch, type SealingKeys, type SourceRow } from './prepare-batch.ts';
import { startSealers, type Sealers } from './sealers.ts';
import { contactIndexKeys } from '../contacts/contact-record.ts';

/**
 * The import worker. Every `ringvakt serve` process runs one; the CLI runs one for its own import.
 * A worker claims an import with a lease (SKIP LOCKED, so two never take the same one), reads the
 * stored file again, skips the rows already done, and commits each batch of rows together with the
 * import's cursor and counts — so an import stopped anywhere (crash, deploy, lost lease) resumes
 * exactly after its last committed row, without duplicates. A batch commits only while its worker
 * still holds the lease. (Claiming it: claim-import.ts; preparing a batch: prepare-batch.ts;
 * committing it: commit-batch.ts.)
 */

/**
 * Rows per batch: one transaction each, and what a resumed import has to do again (after a crash of
 * the database, the last few batches).
 * 4,000 rather than 2,000: a batch's fixed costs (its statements planned, its triggers, its
 * lookups' round trip, its messages to the sealing thread) count half as much per row — 2–5 %
 * more rows a second by `npm run bench -- contacts-import`, for 17 MB more peak memory. A batch
 * holds the tenant's import lock (and a contact written meanwhile through the API waits for it)
 * for about a tenth of a second.
 */
export const BATCH_ROWS = 4000;
/**
 * Text per batch, at most: a batch also ends here, so that files of wide rows (records reach
 * 64 KiB) keep the batches in flight — the one being read, two waiting for their turn (being
 * prepared), the one committing (kept to be prepared again after a key rotation) — within the
 * import thread's bounded heap (import-thread.ts).
 */
const BATCH_CHARACTERS = 4 * 1024 * 1024;
/**
 * Sealing threads per import, beside the import's own thread (sealers.ts). One: on two cores the
 * import's thread, one sealing thread and PostgreSQL already keep the machine busy, and each more
 * thread is another heap (about 40 MB resident) against the import's 400 MB memory bound.
 */
export const SEALING_THREADS = 1;
/**
 * Rows after which the worker first refreshes the planner's statistics, and again each time they
 * have grown fourfold (10,000, 40,000, 160,000), so that the lookups of a list that started empty
 * are planned as index scans from its first batches on. The refresh runs on a connection of its
 * own, beside the batches. After the last one, the plans no longer change with the size, and
 * autovacuum's own analysis (every 10 % of growth) keeps the statistics: a refresh at 640,000 rows
 * read some 49,000 pages and set the hint bits of the rows it sampled — 0.5 to 2 s of the
 * database's time in a million-row import, for nothing a plan used.
 */
const FIRST_STATISTICS_REFRESH = 10_000;
const LAST_STATISTICS_REFRESH = 160_000;
/**
 * Times an import loads its index filter (index-filter.ts): once at its start, and again after
 * another writer's contacts or do-not-call entries put it out of use — a few times, then the import
 * goes on without it.
 */
const FILTER_LOADS = 3;

/** How long a run interrupted by the database tries to hand its import back before leaving it to its 60 s lease. */
const HAND_BACK_WAIT_MS = 10_000;

/**
 * The stored file as text, chunk by chunk (a few chunks in memory at most): the first chunk alone,
 * so that the first rows are read soon, then four at a time. A chunk travels as base64 text: a
 * third fewer bytes than bytea's hex text, and decoded by Node without a parser of its own (a
 * million-row file read about twice as fast; the driver reads no binary results).
 */
function storedFile(tenantDb: TenantDb, crypto: ContactsCrypto, importId: string): Readable {
  async function* chunks() {
    const decoder = new TextDecoder('utf-8');
    let seq = 0;
    for (;;) {
      const rows = await tenantDb.read((trx) =>
        trx
          .selectFrom('contact_import_chunks')
          .select(['seq', sql<string>`encode(ciphertext, 'base64')`.as('ciphertext')])
          .where('import_id', '=', importId)
          .where('seq', '>=', seq)
          .orderBy('seq')
          .limit(seq === 0 ? 1 : 4)
          .execute(),
      );
      if (rows.length === 0) break;
      for (const row of rows) {
        const ciphertext = Buffer.from(row.ciphertext, 'base64');
        const plain = await tenantDb.read((trx) => crypto.cipher.decryptBytes(trx, chunkAt(importId, row.seq), ciphertext));
        yield decoder.decode(plain, { stream: true });
        seq = row.seq + 1;
      }
    }
    const rest = decoder.decode();
    if (rest) yield rest;
  }
  return Readable.from(chunks(), { objectMode: false });
}

/** What a log may say of an error: its name and SQLSTATE or system code, never its message (which may quote a value from the file). */
const errorKind = (error: unknown) => (error instanceof Error ? { name: error.name, code: (error as { code?: string }).code } : undefined);

/**
 * Runs a claimed import to its end (or until its lease is lost, or `stop` says so). Returns the
 * final state.
 */
export async function runImport(
  tenantDb: TenantDb,
  crypto: ContactsCrypto,
  importId: string,
  owner: string,
  options: {
    logger?: Logger;
    stop?: () => boolean;
    batchRows?: number;
    onBatch?: () => void | Promise<void>;
    /** Sealing threads the caller started already (this run closes them); otherwise started here when needed. */
    sealers?: Sealers;
  } = {},
): Promise<ImportOutcome> {
  const batchRows = options.batchRows ?? BATCH_ROWS;
  const state = await tenantDb
    .read((trx) => trx.selectFrom('contact_imports').select(['state', 'delimiter', 'rows_done', 'file_rows', 'mapping']).where('id', '=', importId).executeTakeFirst())
    // The database away before anything began: the run ends interrupted (its lease lets this owner take it again).
    .catch((error: unknown) => {
      if (isDatabaseUnavailable(error)) return 'interrupted' as const;
      throw error;
    });
  if (state === 'interrupted') return 'interrupted';
  if (!state || state.state !== 'running') return 'lease_lost';
  // pipeline(), not pipe(): an error reading or decrypting a chunk must reach the loop below (and
  // fail the import), not go unheard on the source stream — or crash the process.
  const parser = pipeline(storedFile(tenantDb, crypto, importId), csvParser(state.delimiter ?? ','), () => undefined);
  let job: Job | undefined;
  let context: PrepareContext | undefined;
  let batch: SourceRow[] = [];
  let batchCharacters = 0;
  let committedRows = 0;
  let refreshStatisticsAt = FIRST_STATISTICS_REFRESH;
  let refreshing: Promise<void> | undefined;
  // Batches read, in file order, each being prepared (by a sealing thread, or here): the oldest
  // commits once it is prepared and the one before it has committed. One batch commits (work in
  // the database) while the sealing threads prepare the next ones and this thread reads on. Only
  // a batch's size and last row are kept here, not its rows: those live until they are sent to be
  // prepared, and so die young (kept to the commit, a few batches' rows outlived the young
  // generation and every one of them cost a full collection later).
  const pending: { count: number; lastRow: number; prepared: Promise<PreparedBatch> }[] = [];
  let sealers: Sealers | undefined;
  let inFlight: Promise<void> | undefined;
  // The next batch's lookups, made ahead while the one before it commits (batch-lookups.ts), and
  // the rows that one created (which those lookups may not show).
  let lookingAhead: Promise<BatchLookups> | undefined;
  let createdBefore: CreatedKeys = noIdentities();
  // The tenant's blind indexes, loaded beside the first batches (until then every index is looked up).
  // Its own values sized for the external id, numbers and e-mail address every row still to come
  // may hold (the mapping's columns of them; the mapping is checked again, whole, when the job loads).
  const valuesPerRow = Object.values(state.mapping).filter((target) => typeof target === 'string' && (target.startsWith('phone') || target === 'email' || target === 'externalId')).length;
  const filter = new IndexFilter(Math.max(1, valuesPerRow) * (Number(state.file_rows) - Number(state.rows_done)));
  let filterLoads = 0;
  let loadingFilter: Promise<void> | undefined;
  const loadFilter = (rowsToCome: number) => {
    if (loadingFilter || filterLoads >= FILTER_LOADS) return;
    filterLoads += 1;
    loadingFilter = filter
      .load(tenantDb, rowsToCome)
      .then((loaded) => {
        // Too many indexes for the rows to come: not tried again.
        if (!loaded) filterLoads = FILTER_LOADS;
      })
      // It only spares lookups: a failure is logged, and the import looks every index up.
      .catch((error: unknown) => options.logger?.warn({ importId, err: errorKind(error) }, 'contact import index filter not loaded'))
      .finally(() => {
        loadingFilter = undefined;
      });
  };

  // The import handed back at once, so that another run resumes it without waiting for the lease.
  const handBack = () => tenantDb.transaction((trx) => trx.updateTable('contact_imports').set({ lease_owner: null, lease_until: null }).where('id', '=', importId).where('lease_owner', '=', owner).execute());
  // The keys a batch is sealed with: one wrap per row counted against the data key's budget up
  // front (rows that turn out invalid or duplicate count too, as a wrap thrown away would).
  const sealingKeys = (rows: number, minimumVersion?: number): Promise<SealingKeys> =>
    tenantDb.transaction(async (trx) => ({
      dataKey: await crypto.keyring.dataKeyForEncryptions(trx, Math.max(1, rows), minimumVersion === undefined ? {} : { minimumVersion }),
      indexKeys: await contactIndexKeys(crypto.cipher, trx),
    }));
  // Whether the sealing threads take the next batch. Threads this run starts are still loading when
  // the first batch is read: that one is prepared here, the rest by them. Threads the caller started
  // (options.sealers) have loaded by then: every batch is theirs.
  let toSealers = options.sealers !== undefined;
  const prepare = (current: PrepareContext, rows: SourceRow[]): Promise<PreparedBatch> => {
    const via = toSealers ? sealers : undefined;
    toSealers = true;
    const prepared = sealingKeys(rows.length).then((keys) => (via ? via.prepare(current, rows, keys) : prepareRows(current, keys, rows)));
    // Its failure is taken up when the batch's turn to commit comes; until then it must not count as unhandled.
    prepared.catch(() => undefined);
    return prepared;
  };
  const settle = async (): Promise<'stopped' | undefined> => {
    if (!inFlight) return undefined;
    const committing = inFlight;
    inFlight = undefined;
    await committing;
    if (committedRows >= refreshStatisticsAt && refreshStatisticsAt <= LAST_STATISTICS_REFRESH) {
      refreshStatisticsAt *= 4;
      // One refresh at a time. It only helps the planner: a failure is logged, the import goes on.
      await refreshing;
      refreshing = tenantDb
        .transaction(async (trx) => void (await sql`SELECT refresh_contact_statistics()`.execute(trx)))
        .catch((error: unknown) => options.logger?.warn({ importId, err: errorKind(error) }, 'contact statistics not refreshed'));
    }
    await options.onBatch?.();
    if (!options.stop?.()) return undefined;
    await handBack();
    return 'stopped';
  };
  const startCommit = (current: Job, rows: { count: number; lastRow: number }, prepared: PreparedBatch, lookups: Promise<BatchLookups>) => {
    const previous = createdBefore;
    inFlight = (async () => {
      // Lookups that failed are made again under the import lock, where a failure fails the batch.
      const ahead = {
        previous,
        filter,
        lookups: await lookups.catch((error: unknown) => {
          options.logger?.warn({ importId, err: errorKind(error) }, 'contact import lookups made ahead failed; made again under the lock');
          return undefined;
        }),
      };
      try {
        createdBefore = await commitBatch(tenantDb, crypto, current, prepared, rows.lastRow, owner, ahead);
      } catch (error) {
        if (!(error instanceof WrapKeyRetired)) throw error;
        // A rotation (here or in another process) retired the data key the batch's subject keys
        // were wrapped under while it waited (rare). This process's block of the retired version
        // is given up, and the run ends interrupted: the next one reads the file again from the
        // cursor and prepares those rows under the key now active.
        await sealingKeys(1, error.activeVersion);
        throw new RunInterrupted('a key rotation retired the key the batches were prepared under');
      }
      committedRows += rows.count;
      // Another writer's rows put the filter out of use: loaded again, for the rows still to come.
      if (!filter.inUse && filterLoads > 0) loadFilter(Number(state.file_rows) - current.rowsDone);
    })();
    // Its failure is taken up by the next settle(); until then it must not count as unhandled.
    inFlight.catch(() => undefined);
  };
  const commitOldest = async (current: Job): Promise<'stopped' | undefined> => {
    const oldest = pending.shift();
    if (!oldest) return undefined;
    const prepared = await oldest.prepared;
    // Its lookups start now, beside the batch before it still committing.
    const lookups = lookUpAhead(tenantDb, crypto, current, prepared, filter);
    lookingAhead = lookups;
    lookups.catch(() => undefined);
    if ((await settle()) === 'stopped') return 'stopped';
    startCommit(current, oldest, prepared, lookups);
    return undefined;
  };
  try {
    // More than one batch to come: the sealing threads start loading now, beside the first chunk's
    // reading, the job's loading and the first batch's preparing.
    if (Number(state.file_rows) - Number(state.rows_done) > batchRows) sealers = options.sealers ?? startSealers(SEALING_THREADS);
    let rowNumber = 0;
    for await (const record of parser as AsyncIterable<CsvRecord>) {
      rowNumber += 1;
      if (rowNumber === 1) {
        const headers = record;
        job = await tenantDb.transaction((trx) => loadJob(trx, importId, headers));
        // Loaded only now, beside the first batches: after the run read the server's incarnation, so
        // that a filter read before a crash is never trusted by a run that began after it.
        loadFilter(Number(state.file_rows) - job.rowsDone);
        const { plan, defaultRegion } = job;
        const definitions = await tenantDb.read((trx) => loadFieldDefinitions(trx));
        context = { tenantId: tenantDb.tenantId, plan, defaultRegion, definitions };
        continue;
      }
      if (!job || !context) throw new Error('an import file without a header row');
      // Rows already committed by an earlier run (the data row n is record n + 1).
      if (rowNumber - 1 <= job.rowsDone) continue;
      batch.push({ rowNumber, record });
      for (const cell of record) batchCharacters += cell.length;
      if (batch.length >= batchRows || batchCharacters >= BATCH_CHARACTERS) {
        const rows = batch;
        batch = [];
        batchCharacters = 0;
        pending.push({ count: rows.length, lastRow: (rows.at(-1) as SourceRow).rowNumber, prepared: prepare(context, rows) });
        // More batches than the file's row count said (wide rows end batches early): start them now.
        sealers ??= options.sealers ?? startSealers(SEALING_THREADS);
        if (pending.length > SEALING_THREADS + 1 && (await commitOldest(job)) === 'stopped') return 'stopped';
      }
    }
    if (!job || !context) throw new Error('an import file without a header row');
    if (batch.length > 0) pending.push({ count: batch.length, lastRow: (batch.at(-1) as SourceRow).rowNumber, prepared: prepare(context, batch) });
    while (pending.length > 0) if ((await commitOldest(job)) === 'stopped') return 'stopped';
    if (inFlight) {
      // The last batch: once committed, the import ends below, whatever `stop` says.
      await inFlight;
      inFlight = undefined;
      await options.onBatch?.();
    }
    await refreshing;
    const finished = job;
    const ended = await tenantDb.transaction(async (trx) => {
      const done = await trx
        .updateTable('contact_imports')
        .set({ state: 'done', finished_at: new Date(), lease_owner: null, lease_until: null, updated_at: new Date() })
        .where('id', '=', importId)
        .where('lease_owner', '=', owner)
        .where('state', '=', 'running')
        .returning(['rows_done', 'rows_created', 'rows_linked', 'rows_rejected', 'rows_suppressed', 'file_sha256'])
        .executeTakeFirst();
      if (!done) return false;
      // Checked with the import's row locked (by the update), in the incarnation and at the cursor
      // the run left; committed synchronously, as every transaction but a batch, so every batch
      // before it is durable with it.
      await checkRunContinues(trx, finished);
      // The file is no longer needed: the personal data now lives only in the contacts.
      await trx.deleteFrom('contact_import_chunks').where('import_id', '=', importId).execute();
      await recordAuditEvent(trx, {
        action: 'contact_import.finish',
        outcome: 'success',
        actor: { type: 'system', id: finished.createdBy },
        target: { type: 'contact_import', id: importId },
        details: {
          list: finished.listId,
          rows: Number(done.rows_done),
          created: Number(done.rows_created),
          linked: Number(done.rows_linked),
          rejected: Number(done.rows_rejected),
          suppressed: Number(done.rows_suppressed),
          fileSha256: done.file_sha256 ? done.file_sha256.toString('hex') : null,
        },
      });
      return true;
    });
    return ended ? 'done' : 'lease_lost';
  } catch (error) {
    await inFlight?.catch(() => undefined);
    if (error instanceof LeaseLost) return 'lease_lost';
    // The database went away (restart, crash, failover) or came back as another incarnation, or a
    // rotation retired the batches' key: the import is not failed — its stored file and cursor are
    // intact — but handed back (if the database answers; else its lease runs out) and resumed
    // from the cursor the database kept.
    if (error instanceof RunInterrupted || isDatabaseUnavailable(error)) {
      options.logger?.warn({ importId, err: errorKind(error) }, 'contact import run interrupted; to be resumed');
      // Tried again while the database recovers (it refuses connections for a while), for a bounded
      // time: each attempt too (a connection to a host that no longer answers waits minutes).
      const until = Date.now() + HAND_BACK_WAIT_MS;
      for (;;) {
        const left = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), Math.max(0, until - Date.now())).unref());
        const attempt = handBack().then(
          () => true,
          () => false,
        );
        if ((await Promise.race([attempt, left])) || Date.now() >= until || options.stop?.()) break;
        await new Promise((resolve) => setTimeout(resolve, 500).unref());
      }
      return 'interrupted';
    }
    options.logger?.error({ importId, err: errorKind(error) }, 'contact import failed');
    await failImport(tenantDb, importId, owner);
    return 'failed';
  } finally {
    // A batch still committing when this run ends early: let it finish before the caller goes on.
    await inFlight?.catch(() => undefined);
    await refreshing;
    await loadingFilter;
    parser.destroy();
    // Batches read but not committed (a stop, a lost lease, an error): their threads stop, and
    // nothing of theirs — a key transaction, a preparation here — outlives this run.
    await sealers?.close();
    await Promise.allSettled([...pending.map((entry) => entry.prepared), lookingAhead]);
  }
}
