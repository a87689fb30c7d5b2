import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { createLogger } from '../src/logger.ts';
import { hashPassword, verifyPassword } from '../src/modules/access/passwords.ts';
import { createTenantWithOwner } from '../src/modules/setup/setup.service.ts';
import { createUser } from '../src/modules/users/users.repo.ts';
import { defaultSecurityPolicy } from '../src/modules/access/security-policy.ts';
import { createSession } from '../src/modules/auth/sessions.ts';
import { buildApp } from '../src/server/app.ts';
import { load, startProcess, stopProcess, type BenchRow } from './support.ts';

const PORT = 18441;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const PASSWORD = 'correct horse battery staple';

const median = (values: number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)] ?? Number.NaN;

type Context = { app: Awaited<ReturnType<typeof buildApp>>; base: string; emails: string[]; passwordHash: string; sessionToken: string };

/**
 * Identity targets (issue 4), three benches on one kind of server:
 * - login p50 under 300 ms while 20 logins a second run (baseline: one argon2id verification alone);
 * - a session-checked request costs at most 10 % more than the same route unauthenticated
 *   (two identical bench routes on one server, one public, one needing a session);
 * - credential stuffing: 10,000 attempts from 1,000 addresses against 100 accounts: no wrong
 *   password succeeds, and the real users (on browsers they used before) still sign in afterwards.
 */
async function withIdentityServer(work: (context: Context) => Promise<BenchRow[]>): Promise<BenchRow[]> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-bench-identity-'));
  chmodSync(folder, 0o711);
  const logger = createLogger('warn');
  const config = loadConfig({ RINGVAKT_DATA_DIR: folder, RINGVAKT_LOG_LEVEL: 'warn', RINGVAKT_PORT: String(PORT) });
  const database = await openDatabase(config, logger, { applyMigrations: true });
  try {
    const tenant = await createTenantWithOwner(database, { slug: 'bench', name: 'Bench', ownerEmail: 'owner@bench.example', ownerName: 'Owner', publicUrl: config.publicUrl });
    const { cipher } = await database.crypto();
    const tenantDb = database.forTenant(tenant.tenantId);
    const passwordHash = await hashPassword(PASSWORD);
    const emails: string[] = [];
    for (let index = 0; index < 100; index += 1) {
      const email = `agent${index}@bench.example`;
      const user = await tenantDb.transaction((trx) => createUser(trx, cipher, { email, displayName: `Agent ${index}`, role: 'agent' }));
      await tenantDb.transaction((trx) => trx.updateTable('users').set({ status: 'active', password_hash: passwordHash }).where('id', '=', user.id).execute());
      emails.push(email);
    }
    const session = await tenantDb.transaction(async (trx) => {
      const agent = await trx.selectFrom('users').select('id').where('role', '=', 'agent').executeTakeFirstOrThrow();
      return createSession(trx, { userId: agent.id, stage: 'active', methods: ['password'], policy: defaultSecurityPolicy });
    });
    const app = await buildApp({ config, logger, database });
    const handler = async () => ({ ok: true, at: 'bench' });
    app.get('/bench/open', { config: { access: 'public' } }, handler);
    app.get('/bench/checked', { config: { access: 'authenticated' } }, handler);
    await app.listen({ host: '127.0.0.1', port: PORT });
    try {
      return await work({ app, base: `http://127.0.0.1:${PORT}`, emails, passwordHash, sessionToken: session.token });
    } finally {
      await app.close();
    }
  } finally {
    await database.close();
    rmSync(folder, { recursive: true, force: true });
  }
}

/**
 * A session-checked request against the same handler open to anyone, on a server in its own
 * process (so the load generator's CPU is not counted as ours); both warmed up, then four rounds
 * each, the order flipped every round so that drift in the machine favours neither side.
 */
export async function sessionCheckBench(): Promise<BenchRow[]> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-bench-session-'));
  chmodSync(folder, 0o711);
  const logger = createLogger('warn');
  const config = loadConfig({ RINGVAKT_DATA_DIR: folder, RINGVAKT_LOG_LEVEL: 'warn' });
  const database = await openDatabase(config, logger, { applyMigrations: true });
  let server: Awaited<ReturnType<typeof startProcess>> | undefined;
  try {
    const tenant = await createTenantWithOwner(database, { slug: 'bench', name: 'Bench', ownerEmail: 'owner@bench.example', ownerName: 'Owner', publicUrl: config.publicUrl });
    const session = await database.forTenant(tenant.tenantId).transaction(async (trx) => {
      await trx.updateTable('users').set({ status: 'active' }).where('id', '=', tenant.ownerId).execute();
      return createSession(trx, { userId: tenant.ownerId, stage: 'active', methods: ['password'], policy: defaultSecurityPolicy });
    });
    const superuserUrl = new URL(database.embedded!.adminUrl);
    superuserUrl.pathname = '/ringvakt';
    server = await startProcess('bench/servers/session-check.ts', {
      DATABASE_URL: superuserUrl.toString(),
      RINGVAKT_DATA_DIR: folder,
      RINGVAKT_PORT: String(PORT),
      RINGVAKT_LOG_LEVEL: 'warn',
    });
    const base = `http://127.0.0.1:${PORT}`;
    const cookie = { cookie: `__Host-rv_session=${session.token}` };
    if ((await fetch(`${base}/bench/checked`, { headers: cookie })).status !== 200) throw new Error('the session was refused');
    if ((await fetch(`${base}/bench/checked`)).status !== 401) throw new Error('the checked route let an anonymous request through');
    await load({ url: `${base}/bench/open`, seconds: 3, connections: 20 });
    await load({ url: `${base}/bench/checked`, headers: cookie, seconds: 3, connections: 20 });
    const open: number[] = [];
    const checked: number[] = [];
    for (let round = 0; round < 4; round += 1) {
      const runOpen = async () => open.push((await load({ url: `${base}/bench/open`, seconds: SECONDS, connections: 20 })).requestsPerSecond);
      const runChecked = async () => checked.push((await load({ url: `${base}/bench/checked`, headers: cookie, seconds: SECONDS, connections: 20 })).requestsPerSecond);
      if (round % 2 === 0) {
        await runOpen();
        await runChecked();
      } else {
        await runChecked();
        await runOpen();
      }
    }
    if (process.env.BENCH_DIAGNOSE) process.stderr.write(`open ${open.join(' ')} / checked ${checked.join(' ')}\n`);
    const openRate = Math.max(...open);
    const checkedRate = Math.max(...checked);
    const overhead = openRate / checkedRate - 1;
    return [{ name: 'session-checked request (baseline: same route, public)', unit: 'req/s', ours: checkedRate, baseline: openRate, higherIsBetter: true, target: 'costs ≤ 10 % more', met: overhead <= 0.1 }];
  } finally {
    if (server) await stopProcess(server);
    await database.close();
    rmSync(folder, { recursive: true, force: true });
  }
}

/** Login latency at 20 logins a second (paced), against one argon2id verification alone. */
export const loginBench = () =>
  withIdentityServer(async ({ base, emails, passwordHash }) => {
    const alone: number[] = [];
    for (let index = 0; index < 20; index += 1) {
      const started = performance.now();
      await verifyPassword(passwordHash, PASSWORD);
      alone.push(performance.now() - started);
    }
    const latencies: number[] = [];
    const pending: Promise<void>[] = [];
    for (let index = 0; index < 20 * SECONDS; index += 1) {
      const email = emails[index % emails.length]!;
      pending.push(
        (async () => {
          const started = performance.now();
          const response = await fetch(`${base}/api/v1/auth/login`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ tenant: 'bench', email, password: PASSWORD }),
          });
          await response.arrayBuffer();
          if (response.status !== 200) throw new Error(`login answered ${response.status}`);
          latencies.push(performance.now() - started);
        })(),
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await Promise.all(pending);
    const loginP50 = median(latencies);
    return [{ name: 'login p50 at 20 logins/s (baseline: argon2id alone)', unit: 'ms', ours: loginP50, baseline: median(alone), higherIsBetter: false, target: '< 300 ms', met: loginP50 < 300 }];
  });

/** Credential stuffing over loopback addresses 127.1.x.y (1,000 of them), bounded: 10,000 attempts. */
export const stuffingBench = () =>
  withIdentityServer(async ({ app, emails }) => {
    const trusted: string[] = [];
    for (const email of emails) {
      const response = await app.inject({ method: 'POST', url: '/api/v1/auth/login', remoteAddress: '127.0.0.1', payload: { tenant: 'bench', email, password: PASSWORD } });
      const device = [response.headers['set-cookie']].flat().find((line) => String(line).startsWith('__Host-rv_device='));
      trusted.push(String(device).split(';')[0]!.split('=')[1]!);
    }
    let wrongSuccesses = 0;
    const started = performance.now();
    const attempts = Array.from({ length: 10_000 }, (_, index) => index);
    const worker = async () => {
      for (let index = attempts.shift(); index !== undefined; index = attempts.shift()) {
        const address = `127.1.${Math.floor((index % 1000) / 250)}.${(index % 250) + 1}`;
        const response = await app.inject({
          method: 'POST',
          url: '/api/v1/auth/login',
          remoteAddress: address,
          payload: { tenant: 'bench', email: emails[index % 100], password: `leaked-password-${index}` },
        });
        if (response.statusCode === 200) wrongSuccesses += 1;
      }
    };
    await Promise.all(Array.from({ length: 200 }, worker));
    const stuffingSeconds = (performance.now() - started) / 1000;
    let realUsersIn = 0;
    for (const [index, email] of emails.entries()) {
      const response = await app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        remoteAddress: '127.0.0.1',
        cookies: { '__Host-rv_device': trusted[index]! },
        payload: { tenant: 'bench', email, password: PASSWORD },
      });
      if (response.statusCode === 200) realUsersIn += 1;
    }
    process.stderr.write(`stuffing: 10,000 attempts in ${stuffingSeconds.toFixed(1)} s, ${wrongSuccesses} wrong logins succeeded, ${realUsersIn}/100 real users signed in afterwards\n`);
    return [
      { name: 'stuffing: wrong logins that succeeded (of 10,000)', unit: 'logins', ours: wrongSuccesses, baseline: 0, higherIsBetter: false, target: '0', met: wrongSuccesses === 0 },
      { name: 'stuffing: real users signed in afterwards (of 100)', unit: 'users', ours: realUsersIn, baseline: 100, higherIsBetter: true, target: '100', met: realUsersIn === 100 },
    ];
  });
