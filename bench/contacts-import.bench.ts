import { spawn, spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { createLogger } from '../src/logger.ts';
import { recordAuditEvent } from '../src/audit/audit-event.ts';
import { beginLookup } from '../src/modules/contacts/contacts.service.ts';
import { searchContacts } from '../src/modules/contacts/contact-search.ts';
import { storeUpload } from '../src/modules/imports/import-upload.ts';
import { createImport, importView } from '../src/modules/imports/imports.routes.ts';
import { replaceRegistry } from '../src/modules/suppression/suppression.service.ts';
import type { BenchRow } from './support.ts';

const ROWS = Number(process.env.BENCH_IMPORT_ROWS ?? 1_000_000);
const REGISTRY = 100_000;
const LOOKUPS = Number(process.env.BENCH_LOOKUPS ?? 5_000);

/** Row i of the file: a Norwegian mobile number, a name and an e-mail address; every 100th row repeats an earlier one. */
const numberOf = (index: number) => `4${String(index).padStart(7, '0')}`;
function rowOf(index: number): string {
  const person = index % 100 === 99 ? index - 50 : index;
  return `K${index};"Person ${person} Benchsen";${numberOf(person)};person${person}@bench.example`;
}

async function writeFile(file: string): Promise<number> {
  const out = createWriteStream(file, { mode: 0o644 });
  out.write('Kundenr;Navn;Mobil;E-post\n');
  let lines: string[] = [];
  for (let index = 0; index < ROWS; index += 1) {
    lines.push(rowOf(index));
    if (lines.length === 10_000) {
      if (!out.write(`${lines.join('\n')}\n`)) await once(out, 'drain');
      lines = [];
    }
  }
  if (lines.length > 0) out.write(`${lines.join('\n')}\n`);
  out.end();
  await once(out, 'finish');
  return out.bytesWritten;
}

/** Linux's clock ticks per second (USER_HZ), in which /proc reports CPU time. */
const TICKS_PER_SECOND = 100;

/** User and system CPU of a process so far, in ticks (threads that ended included); throws once the process is gone. */
function processTicks(pid: number | undefined): number {
  // The command name may hold spaces and parentheses: the fields after its closing one are fixed.
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ').at(-1)?.split(' ') ?? [];
  return Number(fields[11]) + Number(fields[12]);
}

/** Busy CPU of the whole machine so far, in ticks (user, nice, system, irq, softirq). */
function machineBusyTicks(): number {
  const [user, nice, system, , , irq, softirq] = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  return (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0);
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((left, right) => left - right);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
};

/**
 * A CSV import of ROWS rows (name, phone and e-mail encrypted under per-contact keys; phone and
 * e-mail blind indexes; dedupe against the file and the database; every number checked against a
 * national registry of 100,000 numbers), end to end: the upload pass that stores the file
 * encrypted and checks it whole, then the worker. Peak RSS of this process is sampled during it.
 * Baseline: PostgreSQL COPY of the same file into a plaintext table (server-side, no client work).
 * Then lookups by phone among the imported contacts, decrypted as the API shows them, against a
 * plaintext indexed SELECT on the COPY table.
 */
export async function contactsImportBench(): Promise<BenchRow[]> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-bench-import-'));
  chmodSync(folder, 0o711);
  const database = await openDatabase(loadConfig({ RINGVAKT_DATA_DIR: folder }), createLogger('warn'), { applyMigrations: true });
  const superuserUrl = new URL(database.embedded?.adminUrl ?? '');
  superuserUrl.pathname = '/ringvakt';
  const plain = new pg.Client({ connectionString: superuserUrl.toString() });
  await plain.connect();
  try {
    const file = path.join(folder, 'contacts.csv');
    const bytes = await writeFile(file);
    process.stderr.write(`  file: ${ROWS} rows, ${(bytes / 1024 / 1024).toFixed(0)} MiB\n`);
    const tenantId = await database.systemDb.createTenant('import-bench', 'Import bench');
    const tenantDb = database.forTenant(tenantId);
    const crypto = await database.crypto();

    // A national registry: 1 % of the file's numbers among 100,000.
    await tenantDb.transaction((trx) =>
      replaceRegistry(trx, crypto, { format: 'e164_list', name: 'Registry', validUntil: null, createdBy: 'bench' }, (async function* () {
        for (let start = 0; start < REGISTRY; start += 5_000) {
          yield Array.from({ length: 5_000 }, (_, offset) => {
            const index = start + offset;
            return index % 2 === 0 && index / 2 < ROWS / 100 ? `+47${numberOf(index * 50 + 1)}` : `+479${String(index).padStart(7, '0')}`;
          });
        }
      })()),
    );
    const listId = await tenantDb.transaction(async (trx) => (await trx.insertInto('contact_lists').values({ name: 'Bench', default_region: 'NO' }).returning('id').executeTakeFirstOrThrow()).id);
    const importId = await tenantDb.transaction((trx) =>
      createImport(trx, { listId, mapping: { Kundenr: 'externalId', Navn: 'name', Mobil: 'phone', 'E-post': 'email' }, onExisting: 'link', onSuppressed: 'skip' }, 'bench'),
    );

    // The upload pass runs here; the worker runs as `ringvakt contacts import --resume` in a
    // process of its own, whose resident memory is sampled from /proc while it runs.
    const started = performance.now();
    await storeUpload(tenantDb, crypto.cipher, importId, createReadStream(file));
    const uploadSeconds = (performance.now() - started) / 1000;
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'contacts', 'import', '--tenant', 'import-bench', '--resume', importId, '--no-progress'], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, RINGVAKT_DATA_DIR: folder, RINGVAKT_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    let peakRss = 0;
    // CPU time, which moves far less than wall time on a shared machine: the import process's own
    // (its last reading before it exits), and the whole machine's over the same span — the rest of
    // which is PostgreSQL's, give or take the machine's other work.
    let childTicks = 0;
    const machineBefore = machineBusyTicks();
    const sampler = setInterval(() => {
      try {
        const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (hwm) peakRss = Math.max(peakRss, Number(hwm[1]) * 1024);
        childTicks = processTicks(child.pid);
      } catch {
        // The process has just exited.
      }
    }, 25);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearInterval(sampler);
    const machineTicks = machineBusyTicks() - machineBefore;
    if (code !== 0) throw new Error(`the import process exited with ${code}: ${output}`);
    const view = await tenantDb.read((trx) => importView(trx, importId));
    if (view.state !== 'done') throw new Error(`the import ended ${view.state}`);
    const timing = await plain.query<{ seconds: number }>(`SELECT extract(epoch FROM finished_at - started_at)::float8 AS seconds FROM ringvakt.contact_imports WHERE id = $1`, [importId]);
    const workerSeconds = Number(timing.rows[0]?.seconds);
    const ours = ROWS / (uploadSeconds + workerSeconds);
    process.stderr.write(
      `  import: upload ${uploadSeconds.toFixed(1)} s, worker ${workerSeconds.toFixed(1)} s; ${view.created} created, ` +
        `${view.rejected} rejected (duplicates and suppressed), ${view.suppressed} with a suppressed number; worker peak RSS ${(peakRss / 1024 / 1024).toFixed(0)} MB\n`,
    );
    const perRow = (ticks: number) => ((ticks / TICKS_PER_SECOND) * 1e6) / ROWS;
    process.stderr.write(
      `  CPU per row: import process ${perRow(childTicks).toFixed(0)} µs (start-up included), rest of the machine ${perRow(machineTicks - childTicks).toFixed(0)} µs (PostgreSQL, mostly)\n`,
    );

    // The memory baseline: the same command with nothing to import (start-up, database, keys).
    const idle = spawnSync(process.execPath, ['--import', 'tsx', 'bench/idle-cli-probe.ts'], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, RINGVAKT_DATA_DIR: folder, RINGVAKT_LOG_LEVEL: 'warn' },
      encoding: 'utf8',
    });
    const idleRss = Number(/rss=(\d+)/.exec(idle.stdout)?.[1] ?? NaN);

    await plain.query(`CREATE TABLE bench_plain_contacts (external_id text, name text, phone text, email text)`);
    const copyStarted = performance.now();
    await plain.query(`COPY bench_plain_contacts FROM '${file.replaceAll("'", "''")}' WITH (FORMAT csv, HEADER true, DELIMITER ';')`);
    const baseline = ROWS / ((performance.now() - copyStarted) / 1000);
    await plain.query(`CREATE INDEX ON bench_plain_contacts (phone)`);
    await plain.query(`ANALYZE bench_plain_contacts`);

    // Lookups by phone: a random imported number each time; both sides warmed first.
    const pick = () => `+47${numberOf(Math.floor(Math.random() * ROWS * 0.98))}`;
    // What POST /api/v1/contacts/search does for a number in international form: the user's lookup
    // budget (with BEGIN), the search (the blind index's candidates read whole in one statement,
    // decrypted, compared and opened), then the audit event with the COMMIT.
    const userId = '00000000-0000-4000-8000-000000000001';
    await tenantDb.transaction((trx) => trx.insertInto('tenant_security_policies').values({ mfa_required_for_all: false, session_idle_minutes: 30, session_absolute_hours: 12, ip_allow_list: [], lookups_per_hour: 100_000 }).execute());
    const lookup = async (e164: string) =>
      tenantDb.transaction(async (trx) => {
        await beginLookup(trx, userId);
        const { contacts } = await searchContacts(trx, crypto, { limit: 50 }, e164);
        await recordAuditEvent(trx, { action: 'contact.lookup', outcome: 'success', actor: { type: 'user', id: userId }, details: { by: 'phone', found: contacts.length } });
        return contacts.length;
      });
    for (let index = 0; index < 200; index += 1) await lookup(pick());
    const oursTimes: number[] = [];
    let found = 0;
    for (let index = 0; index < LOOKUPS; index += 1) {
      const at = performance.now();
      found += await lookup(pick());
      oursTimes.push(performance.now() - at);
    }
    const plainTimes: number[] = [];
    for (let index = 0; index < LOOKUPS + 200; index += 1) {
      const at = performance.now();
      await plain.query('SELECT * FROM bench_plain_contacts WHERE phone = $1', [pick().slice(3)]);
      if (index >= 200) plainTimes.push(performance.now() - at);
    }
    process.stderr.write(`  lookups: ${found} contacts found in ${LOOKUPS} lookups; p50 ${percentile(oursTimes, 50).toFixed(2)} ms\n`);

    const p99 = percentile(oursTimes, 99);
    return [
      { name: `contact import, ${ROWS} rows (rows/s)`, unit: 'rows/s', ours, baseline, higherIsBetter: true, target: '≥ 15,000 rows/s', met: ours >= 15_000 },
      { name: 'import worker peak RSS (vs. idle CLI)', unit: 'MB', ours: peakRss / 1024 / 1024, baseline: idleRss / 1024 / 1024, higherIsBetter: false, target: '< 400 MB', met: peakRss > 0 && peakRss < 400 * 1024 * 1024 },
      { name: `lookup by phone among ${ROWS} p99`, unit: 'ms', ours: p99, baseline: percentile(plainTimes, 99), higherIsBetter: false, target: '< 10 ms', met: p99 < 10 },
    ];
  } finally {
    await plain.end();
    await database.close();
    rmSync(folder, { recursive: true, force: true });
  }
}
