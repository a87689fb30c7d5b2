import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { createLogger } from '../src/logger.ts';
import { createTenantWithOwner } from '../src/modules/setup/setup.service.ts';
import { takeBackup } from '../src/operations/backups.ts';
import { runRestoreDrill } from '../src/operations/drill.ts';
import type { BenchRow } from './support.ts';

const CONTACTS = Number(process.env.BENCH_BACKUP_CONTACTS ?? 1_000_000);
const INTERACTIONS = Number(process.env.BENCH_BACKUP_INTERACTIONS ?? 5_000_000);
/** The PostgreSQL whose own pg_dump and pg_restore are on this machine (Debian's, 15). */
const SERVER = process.env.BENCH_BACKUP_SERVER ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DATABASE = 'rv_bench_backup';

const run = (command: string, args: string[]) => {
  const started = performance.now();
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 1_800_000 });
  if (result.status !== 0) throw new Error(`${command} failed: ${result.stderr}`);
  return (performance.now() - started) / 1000;
};

/**
 * Backup and verified restore of CONTACTS contacts (a phone each) and INTERACTIONS calls, on the
 * PostgreSQL 15 server (its pg_dump and pg_restore are the baseline; the embedded server's newer
 * version has no client tools here). Ours: `takeBackup` (encrypted, manifest, checksums) and a
 * restore drill (restore into a scratch database, row counts and checksums against the manifest,
 * erasure ledger, every audit ledger verified). Baseline: `pg_dump -Fc` and `pg_restore` into an
 * empty database of the same data, without encryption or any verification.
 */
export async function backupBench(): Promise<BenchRow[]> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-bench-backup-'));
  chmodSync(folder, 0o711);
  const admin = new pg.Client({ connectionString: SERVER });
  await admin.connect();
  const url = new URL(SERVER);
  url.pathname = `/${DATABASE}`;
  const baselineUrl = new URL(SERVER);
  baselineUrl.pathname = `/${DATABASE}_plain`;
  const dropAll = async () => {
    for (const name of [DATABASE, `${DATABASE}_plain`, `${DATABASE}_drill`]) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    for (const role of [`${DATABASE}_app`, `${DATABASE}_owner`, `${DATABASE}_drill_app`, `${DATABASE}_drill_owner`]) await admin.query(`DROP ROLE IF EXISTS ${role}`);
  };
  await dropAll();
  await admin.query(`CREATE DATABASE ${DATABASE}`);
  const logger = createLogger('warn');
  const config = loadConfig({ DATABASE_URL: url.toString(), RINGVAKT_DATA_DIR: folder, RINGVAKT_LOG_LEVEL: 'warn' });
  const database = await openDatabase(config, logger, { applyMigrations: true, ownerAccess: true });
  try {
    const tenant = await createTenantWithOwner(database, { slug: 'backup', name: 'Backup', ownerEmail: 'owner@backup.example', ownerName: 'Owner', publicUrl: 'http://127.0.0.1' });
    const campaign = await database.forTenant(tenant.tenantId).transaction(async (trx) => (await trx.insertInto('campaigns').values({ name: 'Backup' }).returning('id').executeTakeFirstOrThrow()).id);
    process.stderr.write(`  backup: generating ${CONTACTS} contacts and ${INTERACTIONS} interactions…\n`);
    const filler = new pg.Client({ connectionString: url.toString(), options: '-c search_path=ringvakt' });
    await filler.connect();
    await filler.query("SET session_replication_role = 'replica'");
    await filler.query(
      `INSERT INTO contacts (tenant_id, id, status, name_ciphertext, time_zones, created_at, updated_at)
       SELECT $1, md5('c' || g)::uuid, 'active', decode(md5('n' || g) || md5('m' || g), 'hex'), '{Europe/Oslo}', now(), now() FROM generate_series(1, $2::int) g`,
      [tenant.tenantId, CONTACTS],
    );
    await filler.query(
      `INSERT INTO contact_phones (tenant_id, contact_id, position, kind, number_ciphertext, number_index)
       SELECT $1, md5('c' || g)::uuid, 0, 'mobile', decode(md5('p' || g), 'hex'), substring(decode(md5('i' || g), 'hex') from 1 for 3) FROM generate_series(1, $2::int) g`,
      [tenant.tenantId, CONTACTS],
    );
    await filler.query(
      `INSERT INTO dial_attempts (tenant_id, id, campaign_id, contact_id, attempt, dialer, state, outcome, reserved_at, dialed_at, ended_at, ring_ms)
       SELECT $1, md5('a' || g)::uuid, $3, md5('c' || (1 + g % $4::int))::uuid, 1 + g / $4::int, 'bench', 'ended', 'no_answer', now(), now(), now(), 20000
         FROM generate_series(1, $2::int) g`,
      [tenant.tenantId, INTERACTIONS, campaign, CONTACTS],
    );
    await filler.query("SET session_replication_role = 'origin'");
    await filler.query('VACUUM ANALYZE contacts, contact_phones, dial_attempts');
    await filler.end();

    // Ours.
    const root = (await database.crypto()).root;
    const file = path.join(folder, 'bench.rvbk');
    const backupStarted = performance.now();
    const taken = await takeBackup({ systemDb: database.systemDb, ownerUrl: database.migratorUrl(), root, file, trigger: 'operator', node: 'bench' });
    const backupSeconds = (performance.now() - backupStarted) / 1000;
    const drill = await runRestoreDrill({ config, logger, systemDb: database.systemDb, ownerUrl: database.migratorUrl(), root, file, erasures: [], trigger: 'operator', node: 'bench' });
    if (!drill.ok) throw new Error(`the drill failed: ${drill.problem ?? ''}`);
    if (drill.rows !== taken.rows) throw new Error(`restored ${drill.rows} rows of ${taken.rows}`);

    // Baseline: pg_dump and pg_restore of the same database.
    const dumpFile = path.join(folder, 'plain.dump');
    const dumpSeconds = run('pg_dump', ['-Fc', '-f', dumpFile, url.toString()]);
    await admin.query(`CREATE DATABASE ${DATABASE}_plain`);
    for (const role of [`${DATABASE}_app`, `${DATABASE}_owner`]) await admin.query(`GRANT ${role} TO current_user`).catch(() => undefined);
    const restoreSeconds = run('pg_restore', ['--no-owner', '--no-privileges', '-d', baselineUrl.toString(), dumpFile]);
    process.stderr.write(
      `  backup: ${taken.rows} rows; ours ${(taken.bytes / 1e6).toFixed(0)} MB encrypted, pg_dump ${(statSync(dumpFile).size / 1e6).toFixed(0)} MB; ` +
        `drill recovery time ${drill.recoverySeconds.toFixed(1)} s (restore, checks and ledger verification)\n`,
    );
    return [
      { name: `backup of ${CONTACTS / 1e6} M contacts + ${INTERACTIONS / 1e6} M interactions, encrypted with manifest and checksums (baseline: pg_dump -Fc)`, unit: 's', ours: backupSeconds, baseline: dumpSeconds, higherIsBetter: false },
      { name: `restore of it into an empty database, verified (rows, checksums, erasure ledger, audit ledgers) (baseline: pg_restore, unverified)`, unit: 's', ours: drill.recoverySeconds, baseline: restoreSeconds, higherIsBetter: false },
    ];
  } finally {
    await database.close();
    await dropAll();
    await admin.end();
    rmSync(folder, { recursive: true, force: true });
  }
}
