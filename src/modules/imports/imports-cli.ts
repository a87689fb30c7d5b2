import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import cliProgress from 'cli-progress';
import { InvalidArgumentError, type Command } from 'commander';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { requireTenantId, withCliDatabase } from '../../cli-support.ts';
import type { TenantDb } from '../../db/tenant-db.ts';
import { AppError } from '../../server/errors.ts';
import { isDatabaseUnavailable } from '../../db/unavailable.ts';
import type { ContactsCrypto } from '../contacts/contacts.service.ts';
import { mappingSchema } from './mapping-schema.ts';
import { MAX_FILE_BYTES, storeUpload } from './import-upload.ts';
import { claimImport } from './claim-import.ts';
import { runImportInThread } from './import-thread.ts';
import type { Config } from '../../config.ts';
import { createLogger } from '../../logger.ts';
import { NODE_ID } from '../../operations/node-id.ts';
import { startNodePresence } from '../../operations/node-presence.ts';
import { createImport, createImportSchema, importView, rejectsCsv } from './imports.routes.ts';
import type { z } from '../../zod.ts';

/**
 * `ringvakt contacts import`: the same import the API runs (file stored encrypted and checked whole
 * first, then the resumable worker), driven from the command line with a progress bar on stderr.
 * The operator is the actor in the audit ledger. Interrupting it (Ctrl-C) hands the import back
 * after the batch in flight; `--resume` — or a running server — continues it where it stopped.
 */

const OPERATOR = 'operator';

type ImportOptions = {
  tenant: string;
  list?: string;
  region?: string;
  map: Record<string, string>;
  onExisting: 'link' | 'reject';
  onSuppressed: 'skip' | 'keep';
  delimiter?: ',' | ';';
  lawfulBasis?: string;
  basisSource?: string;
  basisEvidence?: string;
  rejects?: string;
  resume?: string;
  progress: boolean;
};

const mapPair = (value: string, previous: Record<string, string>) => {
  const cut = value.lastIndexOf('=');
  if (cut <= 0 || cut === value.length - 1) throw new InvalidArgumentError('use "CSV header=target", e.g. "Mobil=phone"');
  return { ...previous, [value.slice(0, cut)]: value.slice(cut + 1) };
};
const region = (value: string) => {
  if (!/^[A-Za-z]{2}$/.test(value)) throw new InvalidArgumentError('an ISO 3166 two-letter region, e.g. NO');
  return value.toUpperCase();
};
const uuid = (value: string) => {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)) throw new InvalidArgumentError('an import id');
  return value.toLowerCase();
};

export function registerContactCommands(program: Command, slug: (value: string) => string): void {
  const contacts = program.command('contacts').description('contacts and call lists');
  contacts
    .command('import')
    .description('import a CSV file into a call list (UTF-8, "," or ";"), with a progress bar; rows that fail are listed by row number, never by value')
    .argument('[file]', 'the CSV file (omit with --resume)')
    .requiredOption('--tenant <slug>', 'the tenant', slug)
    .option('--list <name-or-id>', 'the call list to import into')
    .option('--region <XX>', 'create the list with this default region when it does not exist (numbers without a country code)', region)
    .option('--map <header=target>', 'a column mapping, repeated: name, phone, phone:home|work|other, email, externalId, birthDate, notes, timeZone, address.line1|line2|postalCode|city|region|country, field:<key>, ignore', mapPair, {})
    .option('--on-existing <link|reject>', 'a row matching an existing contact: add that contact to the list, or reject the row', 'link')
    .option('--on-suppressed <skip|keep>', 'a row with a number on a do-not-call list: leave it out, or import it', 'skip')
    .option('--delimiter <char>', '"," or ";" (detected from the header row when left out)')
    .option('--lawful-basis <purpose:basis>', 'the lawful basis held for everyone in the file, recorded for each new contact: sales|survey|service : consent|legitimate_interest|contract')
    .option('--basis-source <text>', 'with --lawful-basis: where the basis comes from (required)')
    .option('--basis-evidence <ref>', 'with --lawful-basis: a reference to the evidence')
    .option('--rejects <file>', 'write the reject file (row, column, reason) here when the import ends')
    .option('--resume <import-id>', 'continue an import that was interrupted')
    .option('--no-progress', 'no progress bar (a line every few seconds instead)')
    .action(async (file: string | undefined, options: ImportOptions) => {
      if (!['link', 'reject'].includes(options.onExisting)) throw new AppError('validation_failed', '--on-existing is link or reject.');
      if (!['skip', 'keep'].includes(options.onSuppressed)) throw new AppError('validation_failed', '--on-suppressed is skip or keep.');
      if (options.delimiter !== undefined && options.delimiter !== ',' && options.delimiter !== ';') throw new AppError('validation_failed', '--delimiter is "," or ";".');
      if (options.resume) options.resume = uuid(options.resume);
      if (!options.resume && (!file || !options.list)) throw new AppError('validation_failed', 'Give the file and --list (or --resume <import-id>).');

      await withCliDatabase(async (database, { config }) => {
        const tenantId = await requireTenantId(database, options.tenant);
        const crypto = await database.crypto();
        const tenantDb = database.forTenant(tenantId);
        const importId = options.resume ?? (await startImport(tenantDb, crypto, file ?? '', options));
        // The import itself runs in a worker thread with a bounded heap (import-thread.ts).
        const outcome = await runWithProgress(tenantDb, { connectionString: String(database.pool.options.connectionString), config }, importId, options.progress);
        const view = await tenantDb.read((trx) => importView(trx, importId));
        process.stdout.write(
          `import ${importId}: ${view.state} — ${view.rowsDone} of ${view.fileRows} rows, ${view.created} created, ${view.linked} linked to existing contacts, ` +
            `${view.rejected} rejected, ${view.suppressed} suppressed\n`,
        );
        if (options.rejects && view.rejected > 0) {
          await pipeline(rejectsCsv(tenantDb, importId), createWriteStream(options.rejects, { mode: 0o600 }));
          process.stdout.write(`reject file: ${options.rejects}\n`);
        }
        if (outcome === 'stopped' || outcome === 'interrupted') process.stdout.write(`interrupted; continue with: ringvakt contacts import --tenant ${options.tenant} --resume ${importId}\n`);
        if (view.state === 'failed' || view.state === 'cancelled') process.exitCode = 1;
      });
    });
}

async function startImport(tenantDb: TenantDb, crypto: ContactsCrypto, file: string, options: ImportOptions): Promise<string> {
  const size = statSync(file, { throwIfNoEntry: false });
  if (!size?.isFile()) throw new AppError('not_found', 'No such file.');
  if (size.size > MAX_FILE_BYTES) throw new AppError('payload_too_large', 'An import file may be at most 2 GiB.');
  const mapping = mappingSchema.safeParse(options.map);
  if (!mapping.success) throw new AppError('validation_failed', `The mapping is not valid: ${mapping.error.issues.map((issue) => issue.message).join('; ')} (see --help for targets).`);
  const listName = options.list ?? '';
  let lawfulBasis: z.infer<typeof createImportSchema>['lawfulBasis'];
  if (options.lawfulBasis !== undefined) {
    const [purpose, basis] = options.lawfulBasis.split(':');
    const parsed = createImportSchema.shape.lawfulBasis.safeParse({ purpose, basis, source: options.basisSource ?? '', ...(options.basisEvidence ? { evidenceRef: options.basisEvidence } : {}) });
    if (!parsed.success) throw new AppError('validation_failed', `--lawful-basis is purpose:basis (e.g. sales:consent), with --basis-source saying where it comes from: ${parsed.error.issues.map((issue) => `${issue.path.join('.')} ${issue.message}`).join('; ')}.`);
    lawfulBasis = parsed.data;
  }

  const importId = await tenantDb.transaction(async (trx) => {
    const isId = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(listName);
    let list = await trx.selectFrom('contact_lists').select('id').where(isId ? 'id' : 'name', '=', listName).executeTakeFirst();
    if (!list) {
      if (!options.region || isId) throw new AppError('not_found', 'No such list (give --region to create it).');
      list = await trx.insertInto('contact_lists').values({ name: listName, default_region: options.region }).returning('id').executeTakeFirstOrThrow();
      await recordAuditEvent(trx, { action: 'contact_list.create', outcome: 'success', actor: { type: OPERATOR }, target: { type: 'contact_list', id: list.id }, details: { defaultRegion: options.region, campaign: null } });
    }
    const id = await createImport(
      trx,
      { listId: list.id, mapping: mapping.data, onExisting: options.onExisting, onSuppressed: options.onSuppressed, ...(options.delimiter ? { delimiter: options.delimiter } : {}), ...(lawfulBasis ? { lawfulBasis } : {}) },
      OPERATOR,
    );
    await recordAuditEvent(trx, { action: 'contact_import.create', outcome: 'success', actor: { type: OPERATOR }, target: { type: 'contact_import', id }, details: { list: list.id, columns: Object.keys(mapping.data).length, lawfulBasis: lawfulBasis ? `${lawfulBasis.purpose}:${lawfulBasis.basis}` : null } });
    return id;
  });
  const stored = await storeUpload(tenantDb, crypto.cipher, importId, createReadStream(file));
  await tenantDb.transaction((trx) =>
    recordAuditEvent(trx, {
      action: 'contact_import.upload',
      outcome: 'success',
      actor: { type: OPERATOR },
      target: { type: 'contact_import', id: importId },
      details: { bytes: stored.fileBytes, rows: stored.fileRows, delimiter: stored.delimiter, fileSha256: stored.sha256 },
    }),
  );
  process.stderr.write(`file checked: ${stored.fileRows} rows\n`);
  return importId;
}

/** The import claimed again after an interrupted run, while the database may still be recovering: asked for up to half a minute. */
async function claimAgain(tenantDb: TenantDb, owner: string, importId: string): Promise<string | undefined> {
  const until = Date.now() + 30_000;
  for (;;) {
    try {
      return await claimImport(tenantDb, owner, importId);
    } catch (error) {
      if (!isDatabaseUnavailable(error) || Date.now() >= until) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
}

/**
 * Runs the import here when no other process holds it; otherwise (a running server took it first)
 * follows its progress until it ends.
 */
async function runWithProgress(tenantDb: TenantDb, thread: { connectionString: string; config: Config }, importId: string, tty: boolean): Promise<string> {
  const initial = await tenantDb.read((trx) => importView(trx, importId));
  if (initial.state === 'done' || initial.state === 'failed' || initial.state === 'cancelled') return initial.state;
  const bar = new cliProgress.SingleBar(
    {
      format: 'importing [{bar}] {percentage}% | {value}/{total} rows | {rate} rows/s | ETA {eta_formatted}',
      etaBuffer: 50,
      noTTYOutput: !tty || !process.stderr.isTTY,
      notTTYSchedule: 2_000,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(initial.fileRows, initial.rowsDone, { rate: 0 });
  const show = async () => {
    const view = await tenantDb.read((trx) => importView(trx, importId));
    bar.update(view.rowsDone, { rate: view.rowsPerSecond ?? 0 });
    return view;
  };

  let interrupted = false;
  const interrupt = () => {
    interrupted = true;
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  // This run's presence: while it lives, no server takes its import over as a dead node's.
  const owner = `cli:${NODE_ID}`;
  const presence = startNodePresence({ connectionString: thread.connectionString, nodeId: owner, logger: createLogger('silent') });
  try {
    await presence.ready();
    if (await claimImport(tenantDb, owner, importId)) {
      for (let runs = 1; ; runs += 1) {
        const outcome = await runImportInThread(tenantDb, { ...thread, importId, owner }, { stop: () => interrupted, onBatch: () => void show().catch(() => undefined) });
        // A database restart interrupted the run: resumed from the cursor the database kept (a few times at most).
        if (outcome === 'interrupted' && runs < 3 && !interrupted && (await claimAgain(tenantDb, owner, importId))) continue;
        await show();
        return outcome;
      }
    }
    // Someone else holds the lease: follow it.
    for (;;) {
      const view = await show();
      if (view.state !== 'queued' && view.state !== 'running') return view.state;
      if (interrupted) return 'detached';
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  } finally {
    await presence.stop();
    bar.stop();
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
  }
}
