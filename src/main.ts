import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { permissions } from './modules/access/permissions.ts';
import { readOutbox } from './modules/mail/mailer.ts';
import { Command, InvalidArgumentError, Option } from 'commander';
import pg from 'pg';
import { ConfigError, type BackupFormat, type Config } from './config.ts';
import { databaseNameOf } from './db/database.ts';
import { loadMigrations, MigrationError, pendingMigrations, readApplied, renderMigration } from './db/migrate.ts';
import { provisioningStatements, rolesFor, SCHEMA } from './db/provision.ts';
import { runDoctor } from './doctor.ts';
import { createLogger, type Logger } from './logger.ts';
import { issueApiToken } from './modules/api-tokens/api-tokens.service.ts';
import { recordAuditEvent } from './audit/audit-event.ts';
import { restoreBackup } from './backup/logical-backup.ts';
import { takeBackup } from './operations/backups.ts';
import { runRestoreDrill } from './operations/drill.ts';
import { readLedgerFile, type ErasureLedgerEntry } from './privacy/erasure.ts';
import { registerAuditCommands } from './audit/audit-cli.ts';
import { publicKeys } from './audit/signing-key.ts';
import { verifyTenantLedger } from './audit/verify-audit-log.ts';
import { registerPrivacyCommands } from './privacy/privacy-cli.ts';
import { registerContactCommands } from './modules/imports/imports-cli.ts';
import { registerSecurityCommands } from './security/security-cli.ts';
import { registerComplianceCommands } from './compliance/compliance-cli.ts';
import { rotateRootKey } from './crypto/rotate-root-key.ts';
import { createRootKeyProvider } from './crypto/root-keys/create-root-key-provider.ts';
import { listRotationJobs, rotateTenantDataKey, runRotationBatch, type RotationJob } from './crypto/reencrypt.ts';
import { createTenantWithOwner } from './modules/setup/setup.service.ts';
import { findUserByEmail } from './modules/users/users.repo.ts';
import { cliContext, requireTenantId, withCliDatabase } from './cli-support.ts';
import { fail } from './cli-fail.ts';
import { AppError } from './server/errors.ts';
import { stopOnSignals } from './server/stop-on-signals.ts';

const slug = (value: string) => {
  if (!/^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/.test(value)) {
    throw new InvalidArgumentError('use 1–40 lower-case letters, digits or dashes, not starting or ending with a dash');
  }
  return value;
};
const email = (value: string) => {
  if (value.length > 320 || !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(value)) throw new InvalidArgumentError('not an e-mail address');
  return value.toLowerCase();
};
const text = (value: string) => {
  if (value.trim().length === 0 || value.length > 200) throw new InvalidArgumentError('use 1–200 characters');
  return value.trim();
};
const days = (value: string) => {
  if (!/^\d{1,3}$/.test(value) || Number(value) < 1 || Number(value) > 365) throw new InvalidArgumentError('use 1–365');
  return Number(value);
};

/** How a CLI run names itself in the records it writes (backup runs). */
const cliNode = () => `cli:${hostname().slice(0, 40)}:${process.pid}`;

const program = new Command('ringvakt')
  .description('Ringvakt: a security-first, self-hostable contact center')
  .showHelpAfterError()
  .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 2));

program
  .command('serve')
  .description('run the server (HTTP API, web pages, background work); what `npm start` runs')
  .action(async () => {
    const { config, logger } = cliContext();
    // The server's modules load only for this command: every other command starts without them.
    const { startServer } = await import('./server/serve.ts');
    stopOnSignals(await startServer(config, logger), logger);
  });

program
  .command('migrate')
  .description('create the database roles and apply pending migrations')
  .option('--print-sql', 'print the statements for a DBA instead of running them (for a DATABASE_URL that cannot create roles)')
  .action(async (options: { printSql?: boolean }) => {
    if (options.printSql) {
      const { config, logger } = cliContext();
      await printMigrationSql(config, logger);
      return;
    }
    await withCliDatabase(async () => undefined);
    process.stdout.write('migrations are current\n');
  });

async function printMigrationSql(config: Config, logger: Logger): Promise<void> {
  if (!config.databaseUrl) throw new ConfigError(['--print-sql is for an external database: set DATABASE_URL']);
  const roles = rolesFor(databaseNameOf(config.databaseUrl));
  const migratorRole = decodeURIComponent(new URL(config.databaseUrl).username) || 'postgres';
  const migrations = loadMigrations();
  let pending = migrations;
  const client = new pg.Client({ connectionString: config.databaseUrl, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    pending = pendingMigrations(migrations, await readApplied(client));
  } catch (error) {
    if (error instanceof MigrationError) throw error;
    logger.debug('database not readable; printing every migration');
  } finally {
    await client.end().catch(() => undefined);
  }
  const out: string[] = [
    `-- Ringvakt database provisioning for database "${roles.database}".`,
    `-- Run as a role that may create roles, e.g.: psql -v ON_ERROR_STOP=1 -v app_password='…' -f this.sql`,
    `-- Then set DATABASE_APP_URL to the role ${roles.runtime} with that password.`,
    '\\set ON_ERROR_STOP on',
    ...provisioningStatements(roles, migratorRole, { psqlVariable: 'app_password' }).map((statement) => `${statement};`),
  ];
  for (const migration of pending) {
    out.push(
      `-- ${migration.name}`,
      'BEGIN;',
      `SET LOCAL ROLE ${pg.escapeIdentifier(roles.owner)};`,
      `SET LOCAL search_path = ${SCHEMA}, pg_catalog;`,
      renderMigration(migration, roles),
      `INSERT INTO ${SCHEMA}.schema_migrations (version, name, checksum) VALUES (${migration.version}, ${pg.escapeLiteral(migration.name)}, ${pg.escapeLiteral(migration.checksum)});`,
      'COMMIT;',
    );
  }
  process.stdout.write(out.join('\n') + '\n');
}

program
  .command('setup')
  .description('create a tenant and its owner, and print a one-time link (valid 24 h) for the owner to set a password')
  .requiredOption('--tenant-slug <slug>', 'short name of the tenant (lower-case letters, digits, dashes)', slug)
  .requiredOption('--tenant-name <name>', 'display name of the tenant', text)
  .requiredOption('--owner-email <email>', "the owner's e-mail address", email)
  .requiredOption('--owner-name <name>', "the owner's name", text)
  .action(async (options: { tenantSlug: string; tenantName: string; ownerEmail: string; ownerName: string }) => {
    await withCliDatabase(async (database, { config }) => {
      const created = await createTenantWithOwner(database, {
        slug: options.tenantSlug,
        name: options.tenantName,
        ownerEmail: options.ownerEmail,
        ownerName: options.ownerName,
        publicUrl: config.publicUrl,
      });
      process.stdout.write(
        `Tenant "${options.tenantSlug}" created.\n` +
          `Open this link to set the owner's password (one use, until ${created.expiresAt.toISOString()}):\n\n` +
          `  ${created.link}\n\n` +
          'Start the server first (npm start) if it is not running.\n',
      );
    });
  });

const token = program.command('token').description('API tokens');
token
  .command('create')
  .description("issue an API token for an active user; it is printed once and stored only as a hash")
  .requiredOption('--tenant <slug>', 'the tenant', slug)
  .requiredOption('--email <email>', 'the user the token acts as', email)
  .requiredOption('--name <label>', 'what the token is for', text)
  .option('--days <n>', 'days until it expires (1–365)', days, 30)
  .action(async (options: { tenant: string; email: string; name: string; days: number }) => {
    await withCliDatabase(async (database) => {
      const tenantId = await requireTenantId(database, options.tenant);
      const { cipher } = await database.crypto();
      const issued = await database.forTenant(tenantId).transaction(async (trx) => {
        const user = await findUserByEmail(trx, cipher, options.email);
        if (!user || user.status !== 'active') {
          throw new AppError('not_found', 'No active user with that e-mail in this tenant (has the owner set a password?).');
        }
        const expiresAt = new Date(Date.now() + options.days * 86_400_000);
        const issued = await issueApiToken(trx, tenantId, { userId: user.id, name: options.name, expiresAt, scopes: permissions });
        await recordAuditEvent(trx, {
          action: 'api_token.issue',
          outcome: 'success',
          actor: { type: 'operator' },
          target: { type: 'api_token', id: issued.id },
          details: { user: user.id, days: options.days },
        });
        return issued;
      });
      process.stdout.write(`${issued.token}\n`);
    });
  });

const mail = program.command('mail').description('outgoing e-mail');
mail
  .command('outbox')
  .description("show a tenant's newest outgoing messages (decrypted, for the operator's eyes: they can hold one-time links)")
  .requiredOption('--tenant <slug>', 'the tenant', slug)
  .option('--limit <n>', 'how many (1–100)', (value: string) => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < 1 || parsed > 100) throw new InvalidArgumentError('a whole number from 1 to 100');
    return parsed;
  }, 10)
  .action(async (options: { tenant: string; limit: number }) => {
    await withCliDatabase(async (database) => {
      const tenantId = await requireTenantId(database, options.tenant);
      const { cipher } = await database.crypto();
      for (const entry of await readOutbox(database.forTenant(tenantId), cipher, options.limit)) {
        const state = entry.sentAt ? `sent ${entry.sentAt.toISOString()}` : entry.failedAt ? 'failed' : 'waiting';
        process.stdout.write(`--- ${entry.createdAt.toISOString()} ${entry.template} (${state})\nTo: ${entry.to}\nSubject: ${entry.subject}\n\n${entry.text}\n`);
      }
    });
  });

registerAuditCommands(program, slug);
registerPrivacyCommands(program, slug);
registerContactCommands(program, slug);
registerSecurityCommands(program);
registerComplianceCommands(program, slug);

const keys = program.command('keys').description('the key hierarchy');
keys
  .command('rotate-root')
  .description('make a new root key version current and rewrap every tenant key under it (online, resumable)')
  .option('--rewrap-only', 'do not rotate the provider (env: after setting RINGVAKT_ROOT_KEY and RINGVAKT_ROOT_KEY_PREVIOUS)')
  .action(async (options: { rewrapOnly?: boolean }) => {
    await withCliDatabase(async (database, { config, logger }) => {
      const provider = await createRootKeyProvider(config);
      const result = await rotateRootKey(database.systemDb, provider, logger, { rotateProvider: !options.rewrapOnly });
      process.stdout.write(`root key ${result.rootKeyId} is current; ${result.rewrapped} tenant keys rewrapped\n`);
    });
  });

keys
  .command('rotate-tenant')
  .description("make a new data key version for a tenant and re-encrypt its data under it (resumable; a running server continues it)")
  .requiredOption('--tenant <slug>', 'the tenant', slug)
  .option('--no-wait', 'start the job and leave it to the running server')
  .action(async (options: { tenant: string; wait: boolean }) => {
    await withCliDatabase(async (database, { logger }) => {
      const tenantId = await requireTenantId(database, options.tenant);
      const crypto = await database.crypto();
      const tenantDb = database.forTenant(tenantId);
      const onUnreadable = (where: { table: string; field: string; recordId: string }, error: unknown) =>
        logger.warn({ err: error, table: where.table, field: where.field, record: where.recordId }, 'a value does not decrypt; re-encryption skips it');
      const job = await tenantDb.transaction((trx) => rotateTenantDataKey(trx, crypto.keyring, { type: 'operator' }));
      process.stdout.write(`data key version ${job.targetVersion} is active; re-encryption job ${job.id} started\n`);
      if (!options.wait) return;
      let current: RotationJob | undefined = job;
      let shown = '';
      let waitingSaid = false;
      while (current?.state === 'running') {
        current = await runRotationBatch(tenantDb, crypto, { onUnreadable });
        const line = current ? `${current.stepName}: ${current.reencrypted} re-encrypted, ${current.skipped} already current` : '';
        if (current && line !== shown) process.stdout.write(`  ${line}\n`);
        shown = line;
        if (current?.sweepNotBefore) {
          // Only while the sweep must wait for writers' old key blocks to expire, not between batches.
          if (!waitingSaid) process.stdout.write('  waiting for writers still holding the old key to move on (up to a minute)…\n');
          waitingSaid = true;
          await new Promise((resolve) => setTimeout(resolve, Math.min(5_000, Math.max(100, (current?.sweepNotBefore?.getTime() ?? 0) - Date.now()))));
        }
      }
      process.stdout.write(current?.state === 'done' ? `done: ${current.reencrypted} values re-encrypted\n` : 'the job is held by a running server, which finishes it\n');
    });
  });

keys
  .command('status')
  .description("a tenant's data key rotations and their re-encryption progress")
  .requiredOption('--tenant <slug>', 'the tenant', slug)
  .action(async (options: { tenant: string }) => {
    await withCliDatabase(async (database) => {
      const tenantId = await requireTenantId(database, options.tenant);
      const jobs = await database.forTenant(tenantId).read((trx) => listRotationJobs(trx));
      if (jobs.length === 0) process.stdout.write('no data key rotations yet\n');
      for (const job of jobs) {
        process.stdout.write(
          `${job.createdAt.toISOString()}  version ${job.targetVersion}  ${job.state === 'done' ? `done ${job.finishedAt?.toISOString() ?? ''}` : `running (${job.stepName})`}` +
            `  ${job.reencrypted} re-encrypted, ${job.skipped} already current\n`,
        );
      }
    });
  });

const backup = program.command('backup').description('encrypted logical backups (our format needs no client tools; or a pg_dump archive), restore, drills, and the erasure ledger');
backup
  .command('create')
  .description('write an encrypted backup of the whole database to a new file (mode 0600), and record it')
  .requiredOption('--file <path>', 'the backup file to create')
  .addOption(new Option('--format <format>', 'ringvakt (no client tools needed) or pg_dump (a pg_dump custom-format archive inside the same encryption)').choices(['ringvakt', 'pg_dump']))
  .action(async (options: { file: string; format?: BackupFormat }) => {
    await withCliDatabase(
      async (database, { config }) => {
        const crypto = await database.crypto();
        const format = options.format ?? config.backups.format;
        const taken = await takeBackup({ systemDb: database.systemDb, ownerUrl: database.migratorUrl(), root: crypto.root, file: options.file, trigger: 'operator', node: cliNode(), format });
        process.stdout.write(`backup ${taken.backupId}: ${taken.tables} tables, ${taken.rows} rows, ${taken.bytes} bytes\n`);
      },
      { ownerAccess: true },
    );
  });

backup
  .command('drill')
  .description('restore a backup into a scratch database, replay the erasure ledger, verify every audit ledger, report recovery time and point, and drop the scratch database')
  .requiredOption('--file <path>', 'the backup file')
  .option('--erasure-ledger <path>', 'the erasure ledger mirror to replay (default: RINGVAKT_ERASURE_LEDGER_FILE, when it exists)')
  .action(async (options: { file: string; erasureLedger?: string }) => {
    await withCliDatabase(
      async (database, { config, logger }) => {
        const ledgerFile = options.erasureLedger ?? config.erasureLedgerFile;
        if (options.erasureLedger && !existsSync(ledgerFile)) throw new ConfigError([`the erasure ledger ${ledgerFile} does not exist`]);
        const erasures = existsSync(ledgerFile) ? readLedgerFile(ledgerFile) : [];
        const report = await runRestoreDrill({
          config,
          logger,
          systemDb: database.systemDb,
          ownerUrl: database.migratorUrl(),
          root: (await database.crypto()).root,
          file: options.file,
          erasures,
          trigger: 'operator',
          node: cliNode(),
        });
        for (const ledger of report.ledgers) {
          process.stdout.write(ledger.ok ? `audit ledger ok    ${ledger.tenant}: ${ledger.sealed} sealed events\n` : `audit ledger FAIL  ${ledger.tenant}: ${ledger.problem ?? ''}\n`);
        }
        if (report.ok) {
          const point = report.recoveryPoint as Date;
          process.stdout.write(
            `drill passed: backup ${report.backupId ?? ''} restored and verified in ${report.recoverySeconds.toFixed(1)} s (recovery time); ` +
              `${report.tables} tables, ${report.rows} rows, ${report.erasuresReplayed} erasures replayed; ` +
              `recovery point ${point.toISOString()} (${((Date.now() - point.getTime()) / 3_600_000).toFixed(1)} h ago)\n`,
          );
        } else {
          process.stdout.write(`drill FAILED: ${report.problem ?? 'unknown'}\n`);
          process.exitCode = 1;
        }
      },
      { ownerAccess: true },
    );
  });

backup
  .command('restore')
  .description('restore a backup into this (empty, migrated) database, then replay the erasure ledger before anything is served')
  .requiredOption('--file <path>', 'the backup file')
  .option('--erasure-ledger <path>', 'the erasure ledger mirror to replay (default: RINGVAKT_ERASURE_LEDGER_FILE)')
  .option('--no-erasure-ledger', 'restore without replaying erasures (only for a deployment that never erased anyone)')
  .action(async (options: { file: string; erasureLedger?: string | false }) => {
    await withCliDatabase(
      async (database, { config }) => {
        let entries: ErasureLedgerEntry[] = [];
        if (options.erasureLedger !== false) {
          const ledgerFile = options.erasureLedger ?? config.erasureLedgerFile;
          // Without its ledger a restore would bring erased people back: no ledger, no restore.
          if (!existsSync(ledgerFile)) throw new ConfigError([`the erasure ledger ${ledgerFile} does not exist: name it with --erasure-ledger, or pass --no-erasure-ledger if nobody was ever erased`]);
          entries = readLedgerFile(ledgerFile);
        }
        const root = await createRootKeyProvider(config);
        const restored = await restoreBackup(database.migratorUrl(), options.file, root, entries);
        const { replay } = restored;
        process.stdout.write(
          `restored ${restored.manifest.tables.length} tables, ${restored.rows} rows; erasure ledger: ${replay.entries} entries, ${replay.reErased} subjects erased again, ` +
            `${replay.ledgerRestored} entries restored, ${replay.otherTenants} of tenants not in this backup\n`,
        );
        // The restored audit ledger must verify before the restore is called a success.
        const keys = await publicKeys(database.systemDb);
        let failed = 0;
        for (const tenant of await database.systemDb.listTenants()) {
          const verdict = await database.systemDb.inTenant(tenant.id).snapshot((trx) => verifyTenantLedger(trx, keys));
          if (!verdict.ok) failed += 1;
          process.stdout.write(verdict.ok ? `audit ledger ok    ${tenant.slug}: ${verdict.sealed} sealed events\n` : `audit ledger FAIL  ${tenant.slug}: ${verdict.problem}\n`);
        }
        if (failed > 0) process.exitCode = 1;
      },
      { ownerAccess: true },
    );
  });

program
  .command('doctor')
  .description('check configuration, database reachability, role rights and file modes')
  .action(async () => {
    const logger = createLogger(process.env.RINGVAKT_LOG_LEVEL ?? 'warn', process.stderr);
    const checks = await runDoctor(process.env, logger);
    for (const check of checks) process.stdout.write(`${check.ok ? 'ok  ' : 'FAIL'}  ${check.name}: ${check.detail}\n`);
    process.exit(checks.every((check) => check.ok) ? 0 : 1);
  });

program.parseAsync(process.argv).catch(fail);
