import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminQuery, serverLabel, urlFor } from './support/database.ts';

const ringvakt = (args: string[], env: NodeJS.ProcessEnv = {}) => {
  const result = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, RINGVAKT_LOG_LEVEL: 'warn', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
};

describe('ringvakt CLI', () => {
  it('explains itself with --help, on every command', () => {
    const top = ringvakt(['--help']);
    expect(top.code).toBe(0);
    for (const command of ['serve', 'migrate', 'setup', 'token', 'doctor']) expect(top.stdout).toContain(command);
    const setup = ringvakt(['setup', '--help']);
    expect(setup.code).toBe(0);
    expect(setup.stdout).toContain('--owner-email');
    for (const [command, option] of [
      [['audit', 'prune'], '--operator'],
      [['audit', 'export'], '--after-leaf'],
      [['keys', 'rotate-tenant'], '--no-wait'],
      [['keys', 'status'], '--tenant'],
      [['contacts', 'import'], '--on-suppressed'],
      [['security', 'status'], '--days'],
    ] as const) {
      const help = ringvakt([...command, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain(option);
    }
  }, 90_000);

  it('exits non-zero with a clear message for unknown commands, bad arguments and bad configuration', () => {
    expect(ringvakt(['launch']).code).toBe(2);
    const badSlug = ringvakt(['setup', '--tenant-slug', 'Not_A_Slug', '--tenant-name', 'X', '--owner-email', 'a@b.example', '--owner-name', 'A']);
    expect(badSlug.code).toBe(2);
    expect(badSlug.stderr).toMatch(/--tenant-slug.*lower-case letters/s);
    const badConfig = ringvakt(['serve'], { RINGVAKT_PORT: 'eighty', DATABASE_URL: 'postgres://u:very-secret-password@127.0.0.1:1/x' });
    expect(badConfig.code).toBe(1);
    expect(badConfig.stderr).toContain('RINGVAKT_PORT');
    expect(badConfig.stderr).not.toContain('very-secret-password');
  });
});

describe(`ringvakt CLI against a database (${serverLabel()} server)`, () => {
  const name = `rv_test_cli_${process.pid}`;
  let dataDir: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    await adminQuery(`CREATE DATABASE ${name}`);
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'rv-cli-'));
    chmodSync(dataDir, 0o700);
    env = { DATABASE_URL: urlFor(name), RINGVAKT_DATA_DIR: dataDir };
  });
  afterAll(async () => {
    await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await adminQuery(`DROP ROLE IF EXISTS ${name}_app`);
    await adminQuery(`DROP ROLE IF EXISTS ${name}_owner`);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('migrates, sets up a tenant with a one-time link, refuses tokens for users without a password, and passes doctor', async () => {
    const migrated = ringvakt(['migrate'], env);
    expect(migrated.stderr).toBe('');
    expect(migrated.code).toBe(0);

    const setup = ringvakt(['setup', '--tenant-slug', 'cli-co', '--tenant-name', 'CLI Co', '--owner-email', 'Boss@CLI.example', '--owner-name', 'Boss'], env);
    expect(setup.code).toBe(0);
    expect(setup.stdout).toMatch(/http:\/\/127\.0\.0\.1:8080\/setup#token=rvs_[0-9a-f]{32}_[A-Za-z0-9_-]{43}/);
    const again = ringvakt(['setup', '--tenant-slug', 'cli-co', '--tenant-name', 'CLI Co', '--owner-email', 'b@cli.example', '--owner-name', 'B'], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('exists already');

    // The owner's e-mail and name are stored only encrypted.
    const stored = await adminQuery<{ email: string | null; display_name: string | null; email_ciphertext: Buffer; status: string; password_hash: string | null }>(
      `SELECT email, display_name, email_ciphertext, status, password_hash FROM ringvakt.users`,
      [],
      name,
    );
    expect(stored.rows).toEqual([{ email: null, display_name: null, email_ciphertext: expect.any(Buffer), status: 'invited', password_hash: null }]);
    expect(stored.rows[0]!.email_ciphertext.includes(Buffer.from('boss@cli.example'))).toBe(false);

    const token = ringvakt(['token', 'create', '--tenant', 'cli-co', '--email', 'boss@cli.example', '--name', 'ci'], env);
    expect(token.code).toBe(1);
    expect(token.stderr).toContain('No active user');

    const doctor = ringvakt(['doctor'], env);
    expect(doctor.stdout).toMatch(/ok {4}runtime role rights: .* owns nothing and cannot bypass row-level security/);
    expect(doctor.stdout).toContain('ok    migrations: all applied');
    expect(doctor.stdout).not.toContain('FAIL');
    expect(doctor.code).toBe(0);
  }, 120_000);

  it('seals, exports, prunes and rotates keys from the command line, each step audited', async () => {
    const verify = ringvakt(['audit', 'verify', '--tenant', 'cli-co'], env);
    expect(verify.stdout).toBe('ok    cli-co: 0 sealed events (2 awaiting sealing), 0 signed checkpoints\n');
    expect(verify.code).toBe(0);
    const sealed = ringvakt(['audit', 'seal', '--tenant', 'cli-co'], env);
    expect(sealed.stdout).toBe('cli-co: 2 events sealed, tree size 2\n');
    expect(sealed.code).toBe(0);
    const exported = ringvakt(['audit', 'export', '--tenant', 'cli-co'], env);
    const actions = exported.stdout.trim().split('\n').map((line) => (JSON.parse(line) as { action: string }).action);
    expect(actions).toEqual(['tenant.create', 'user.create']);
    expect(exported.stdout).not.toContain('boss@cli.example');
    const resumed = ringvakt(['audit', 'export', '--tenant', 'cli-co', '--after-leaf', '0'], env);
    expect(resumed.stdout.trim().split('\n').map((line) => (JSON.parse(line) as { leafIndex: number }).leafIndex)).toEqual([1]);
    const recorded = await adminQuery(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE action = 'audit.export'`, [], name);
    expect(recorded.rows[0]!.n).toBe(2);
    const verifiedAgain = ringvakt(['audit', 'verify', '--tenant', 'cli-co'], env);
    expect(verifiedAgain.stdout).toBe('ok    cli-co: 2 sealed events (2 awaiting sealing), 1 signed checkpoints\n');

    const retention = ['audit', 'prune', '--tenant', 'cli-co', '--before', new Date().toISOString(), '--reason', 'RP-7', '--operator', 'ops'];
    const dryRun = ringvakt([...retention, '--dry-run'], env);
    expect(dryRun.stdout).toBe('would remove leaves 0 to 1 (2 events)\n');
    const pruned = ringvakt(retention, env);
    expect(pruned.stdout).toBe('removed 2 events before leaf 2; signed retention record written\n');
    expect(pruned.code).toBe(0);
    ringvakt(['audit', 'seal'], env);
    const afterRetention = ringvakt(['audit', 'verify', '--tenant', 'cli-co'], env);
    expect(afterRetention.stdout).toBe('ok    cli-co: 5 sealed events, the first 2 removed by retention (0 awaiting sealing), 2 signed checkpoints\n');
    const rotated = ringvakt(['keys', 'rotate-tenant', '--tenant', 'cli-co', '--no-wait'], env);
    expect(rotated.stdout).toMatch(/^data key version 2 is active; re-encryption job [0-9a-f-]{36} started\n$/);
    const status = ringvakt(['keys', 'status', '--tenant', 'cli-co'], env);
    expect(status.stdout).toMatch(/version 2 {2}running \(users\.email_ciphertext\) {2}0 re-encrypted, 0 already current\n$/);
    const rotatedAgain = ringvakt(['keys', 'rotate-tenant', '--tenant', 'cli-co', '--no-wait'], env);
    expect(rotatedAgain.code).toBe(1);
    expect(rotatedAgain.stderr).toContain('still re-encrypting');
    const future = ringvakt(['audit', 'prune', '--tenant', 'cli-co', '--before', '2999-01-01T00:00:00Z', '--reason', 'x', '--operator', 'ops'], env);
    expect(future.code).toBe(1);
    expect(future.stderr).toContain('--before must not be in the future');

  }, 120_000);

  it('imports a CSV into a new call list with a progress report, a reject file by row number, and no personal data on the terminal', async () => {
    const csv = path.join(dataDir, 'customers.csv');
    const rejects = path.join(dataDir, 'rejects.csv');
    writeFileSync(csv, 'Kundenr;Navn;Mobil\nC1;Kari Cliimport;41000001\nC2;"Per; Cliimport";+4741000002\nC3;Bad;12\nC4;Again;004741000001\n');
    const args = ['contacts', 'import', csv, '--tenant', 'cli-co', '--list', 'Spring', '--region', 'no', '--map', 'Kundenr=externalId', '--map', 'Navn=name', '--map', 'Mobil=phone', '--rejects', rejects];
    const imported = ringvakt(args, env);
    expect(imported.stderr).toContain('file checked: 4 rows');
    expect(imported.stderr).toMatch(/importing .*100% \| 4\/4 rows/);
    expect(imported.stdout).toMatch(/^import [0-9a-f-]{36}: done — 4 of 4 rows, 2 created, 0 linked to existing contacts, 2 rejected, 0 suppressed\nreject file: /);
    expect(imported.code).toBe(0);
    expect(readFileSync(rejects, 'utf8')).toBe('"row","column","reason","detail"\n"4","Mobil","phone_invalid","phones[0]: not a valid number for its country"\n"5","","duplicate_in_file","the same contact as row 2"\n');
    for (const output of [imported.stdout, imported.stderr]) expect(output).not.toMatch(/Cliimport|41000001/);
    const stored = await adminQuery(`SELECT c.external_id, l.default_region FROM ringvakt.contacts c JOIN ringvakt.contact_list_members m ON m.contact_id = c.id JOIN ringvakt.contact_lists l ON l.id = m.list_id ORDER BY 1`, [], name);
    expect(stored.rows).toEqual([{ external_id: 'C1', default_region: 'NO' }, { external_id: 'C2', default_region: 'NO' }]);
    const audited = await adminQuery(`SELECT action, actor_type FROM ringvakt.audit_events WHERE action LIKE 'contact_%' ORDER BY id`, [], name);
    expect(audited.rows.map((row) => `${row.action}:${row.actor_type}`)).toEqual(['contact_list.create:operator', 'contact_import.create:operator', 'contact_import.upload:operator', 'contact_import.finish:system']);

    const badMapping = ringvakt(['contacts', 'import', csv, '--tenant', 'cli-co', '--list', 'Spring', '--map', 'Navn=fullName'], env);
    expect(badMapping.code).toBe(1);
    expect(badMapping.stderr).toContain('The mapping is not valid');
    const noList = ringvakt(['contacts', 'import', csv, '--tenant', 'cli-co', '--list', 'Autumn', '--map', 'Navn=name'], env);
    expect(noList.code).toBe(1);
    expect(noList.stderr).toContain('No such list (give --region to create it)');
    // A lawful basis for the file: it must say where it comes from; then each new contact has it.
    const later = path.join(dataDir, 'later.csv');
    writeFileSync(later, 'Kundenr;Navn;Mobil\nC9;Liv Cliimport;41000009\n');
    const basisArgs = ['contacts', 'import', later, '--tenant', 'cli-co', '--list', 'Spring', '--map', 'Kundenr=externalId', '--map', 'Navn=name', '--map', 'Mobil=phone', '--lawful-basis', 'survey:legitimate_interest'];
    const unsourced = ringvakt(basisArgs, env);
    expect(unsourced.code).toBe(1);
    expect(unsourced.stderr).toContain('--lawful-basis is purpose:basis');
    const withBasis = ringvakt([...basisArgs, '--basis-source', 'customer register'], env);
    expect(withBasis.code, withBasis.stderr).toBe(0);
    const basis = await adminQuery(`SELECT c.external_id, e.purpose, e.basis, e.source FROM ringvakt.consent_events e JOIN ringvakt.contacts c ON c.id = e.contact_id`, [], name);
    expect(basis.rows).toEqual([{ external_id: 'C9', purpose: 'survey', basis: 'legitimate_interest', source: 'customer register' }]);
  }, 120_000);

  it("security status: every organisation's open alerts and response times, non-zero while a high alert waits over an hour", async () => {
    const quiet = ringvakt(['security', 'status'], env);
    expect(quiet.code, quiet.stderr).toBe(0);
    expect(quiet.stdout).toMatch(/^tenant +open-alerts +unacked-high +open-incidents +ack-median/);
    expect(quiet.stdout).toMatch(/\ncli-co +0 +0 +0 +- +- +- +- +- +none\n/);
    const tenant = (await adminQuery<{ id: string }>(`SELECT id FROM ringvakt.tenants WHERE slug = 'cli-co'`, [], name)).rows[0]!.id;
    const raised = await adminQuery<{ id: string }>(
      `INSERT INTO ringvakt.security_alerts (tenant_id, rule_id, severity, subject, summary, first_seen, last_seen, raised_at) VALUES ($1, 'privilege.admin_granted', 'high', 'user:x', 'An administrator was made', now() - interval '2 hours', now() - interval '2 hours', now() - interval '2 hours') RETURNING id`,
      [tenant],
      name,
    );
    const waiting = ringvakt(['security', 'status'], env);
    expect(waiting.code).toBe(3);
    expect(waiting.stdout).toMatch(/\ncli-co +1 +1 +0 +- +- +- +- +2h +none\n/);
    expect(waiting.stderr).toContain('unacknowledged for more than an hour: cli-co');
    await adminQuery(`UPDATE ringvakt.security_alerts SET state = 'acknowledged', acknowledged_at = raised_at + interval '4 minutes', acknowledged_by = 'user:y' WHERE id = $1`, [raised.rows[0]!.id], name);
    // Recovery from a block that locked out those who could lift it.
    await adminQuery(`INSERT INTO ringvakt.blocked_networks (tenant_id, network, reason, created_by) VALUES ($1, '198.51.100.0/24', 'test', 'user:x')`, [tenant], name);
    const unblocked = ringvakt(['security', 'unblock', '--tenant', 'cli-co', '--by', 'ops on call'], env);
    expect(unblocked.stdout, unblocked.stderr).toBe('cli-co: 1 block(s) lifted\n');
    const handled = ringvakt(['security', 'status', '--json'], env);
    expect(handled.code).toBe(0);
    expect((JSON.parse(handled.stdout) as { tenants: { slug: string; medianAckSeconds: number; unacknowledgedHigh: number }[] }).tenants.find((row) => row.slug === 'cli-co')).toMatchObject({ medianAckSeconds: 240, unacknowledgedHigh: 0 });
  });

  it('doctor fails, naming the file, when a secret file is readable by others', () => {
    const secret = path.join(dataDir, 'secrets', `${name}_app.password`);
    chmodSync(secret, 0o644);
    try {
      const doctor = ringvakt(['doctor'], env);
      expect(doctor.code).toBe(1);
      expect(doctor.stdout).toMatch(new RegExp(`FAIL {2}secret file ${name}_app.password: mode 644`));
    } finally {
      chmodSync(secret, 0o600);
    }
  });
});
