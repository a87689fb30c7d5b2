import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { createLogger } from '../src/logger.ts';
import { issueApiToken } from '../src/modules/api-tokens/api-tokens.service.ts';
import { permissions } from '../src/modules/access/permissions.ts';
import { createTenantWithOwner } from '../src/modules/setup/setup.service.ts';
import { createUser } from '../src/modules/users/users.repo.ts';
import { startServeNode, stopProcess, type BenchRow } from './support.ts';
import { freePort } from '../test/support/ports.ts';

const AGENTS = Number(process.env.BENCH_AGENTS ?? 1_000);
const NODES = 2;
/** 60 s by default; `BENCH_LOAD_SECONDS=1800 npm run bench -- agent-load` is the 30-minute soak (not in CI). */
const SECONDS = Number(process.env.BENCH_LOAD_SECONDS ?? 60);

/** Resident memory of a process (kB), from /proc. */
const rssKb = (pid: number | undefined) => {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
};

/**
 * The traffic of AGENTS agents on NODES server nodes (each its own `ringvakt serve` process) over
 * one embedded PostgreSQL: every agent holds the realtime WebSocket, reads its state and call
 * every 5 s, changes state every 20 s (bench/servers/agent-clients.ts, a process of its own).
 * Reported: p99 of those API requests and the error rate; baseline: p99 of /livez (no database,
 * no authentication) on the same nodes under the same load. Every 30 s: the nodes' memory and the
 * database's connections (the soak's record).
 */
export async function agentLoadBench(): Promise<BenchRow[]> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-bench-load-'));
  chmodSync(folder, 0o711);
  const logger = createLogger('warn');
  const rootKey = randomBytes(32).toString('base64');
  const keyEnv = { RINGVAKT_KEY_PROVIDER: 'env', RINGVAKT_ROOT_KEY: rootKey };
  const database = await openDatabase(loadConfig({ RINGVAKT_DATA_DIR: folder, ...keyEnv }), logger, { applyMigrations: true });
  const children: ChildProcess[] = [];
  try {
    const tenant = await createTenantWithOwner(database, { slug: 'load', name: 'Load', ownerEmail: 'owner@load.example', ownerName: 'Owner', publicUrl: 'http://127.0.0.1' });
    const tenantDb = database.forTenant(tenant.tenantId);
    const crypto = await database.crypto();
    const campaignId = await tenantDb.transaction(async (trx) => (await trx.insertInto('campaigns').values({ name: 'Load', jurisdiction: 'uk_ofcom', caller_id: '+441632960000', mode: 'progressive' }).returning('id').executeTakeFirstOrThrow()).id);
    process.stderr.write(`  load: creating ${AGENTS} agents…\n`);
    const tokens: string[] = [];
    for (let start = 0; start < AGENTS; start += 100) {
      await tenantDb.transaction(async (trx) => {
        for (let index = start; index < Math.min(AGENTS, start + 100); index += 1) {
          const user = await createUser(trx, crypto.cipher, { email: `agent${index}@load.example`, displayName: `Agent ${index}`, role: 'agent' });
          await trx.updateTable('users').set({ status: 'active' }).where('id', '=', user.id).execute();
          tokens.push((await issueApiToken(trx, tenant.tenantId, { userId: user.id, name: 'desktop', expiresAt: new Date(Date.now() + 86_400_000), scopes: permissions })).token);
        }
      });
    }
    const tokensFile = path.join(folder, 'tokens.json');
    writeFileSync(tokensFile, JSON.stringify(tokens), { mode: 0o600 });
    const migratorUrl = new URL(database.embedded!.adminUrl);
    migratorUrl.pathname = '/ringvakt';
    const runtimeUrl = String(database.pool.options.connectionString);

    const urls: string[] = [];
    for (let node = 0; node < NODES; node += 1) {
      const started = await startServeNode(await freePort(), {
        ...keyEnv,
        DATABASE_URL: migratorUrl.toString(),
        DATABASE_APP_URL: runtimeUrl,
        RINGVAKT_DATA_DIR: path.join(folder, `node-${node}`),
        RINGVAKT_DB_POOL_MAX: '20',
      });
      children.push(started.child);
      urls.push(started.url);
    }

    const clients = spawn(process.execPath, ['--import', 'tsx', 'bench/servers/agent-clients.ts'], {
      env: { ...process.env, URLS: urls.join(','), TOKENS_FILE: tokensFile, CAMPAIGN_ID: campaignId, SECONDS: String(SECONDS) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(clients);
    let output = '';
    clients.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const samples = setInterval(async () => {
      const connections = await database.pool.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()').then((result) => result.rows[0]?.n, () => '?');
      process.stderr.write(`  load: nodes RSS ${children.slice(0, NODES).map((child) => `${Math.round(rssKb(child.pid) / 1024)} MB`).join(', ')}; database connections ${connections}\n`);
    }, 30_000);
    await new Promise((resolve) => clients.once('exit', resolve));
    clearInterval(samples);
    const result = JSON.parse(output.trim().split('\n').at(-1) ?? '{}') as { requests: number; errors: number; baselineRequests: number; baselineErrors: number; errorKinds: Record<string, number>; p99: number; baselineP99: number; open: number };
    if (result.errors > 0) process.stderr.write(`  load: errors ${JSON.stringify(result.errorKinds)}\n`);
    const errorRate = result.errors / Math.max(1, result.requests);
    return [
      { name: `${AGENTS} agents on ${NODES} nodes for ${SECONDS} s, ${result.requests} API requests and ${result.open} WebSockets open at the end: p99 (baseline: /livez on the same nodes)`, unit: 'ms', ours: result.p99, baseline: result.baselineP99, higherIsBetter: false },
      { name: `${AGENTS} agents on ${NODES} nodes: error rate of the API requests (baseline: of /livez)`, unit: '%', ours: errorRate * 100, baseline: (result.baselineErrors / Math.max(1, result.baselineRequests)) * 100, higherIsBetter: false, target: '< 0.1 %, every socket open', met: errorRate < 0.001 && result.open === AGENTS },
    ];
  } finally {
    await Promise.all(children.map((child) => stopProcess(child, 2_000)));
    await database.close();
    rmSync(folder, { recursive: true, force: true });
  }
}
