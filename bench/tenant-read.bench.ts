import { permissions } from '../src/modules/access/permissions.ts';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { createLogger } from '../src/logger.ts';
import { issueApiToken } from '../src/modules/api-tokens/api-tokens.service.ts';
import { createTenantWithOwner } from '../src/modules/setup/setup.service.ts';
import { load, pacedLoad, startProcess, stopProcess, type BenchRow, type LoadResult } from './support.ts';
import type { PacedResult } from './servers/paced-load.ts';

const OURS_PORT = 18431;
const BARE_PORT = 18432;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = 2;

/**
 * A tenant-scoped read through the whole stack (HTTP → API-token authentication → tenant handle
 * → one-row select under row-level security) against a bare Fastify route doing the same select
 * with plain pg. Rounds alternate between the two so that machine noise hits both alike.
 * BENCH_CPU_PROFILE=<folder> writes a CPU profile of our server there.
 */
export async function tenantReadBench(): Promise<BenchRow[]> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-bench-read-'));
  chmodSync(folder, 0o711);
  const logger = createLogger('warn');
  const config = loadConfig({ RINGVAKT_DATA_DIR: folder, RINGVAKT_LOG_LEVEL: 'warn' });
  const database = await openDatabase(config, logger, { applyMigrations: true });
  const children = [];
  try {
    const tenant = await createTenantWithOwner(database, {
      slug: 'bench',
      name: 'Benchmark tenant',
      ownerEmail: 'owner@bench.example',
      ownerName: 'Owner',
      publicUrl: 'http://127.0.0.1',
    });
    const { token } = await database.forTenant(tenant.tenantId).transaction(async (trx) => {
      await trx.updateTable('users').set({ status: 'active' }).where('id', '=', tenant.ownerId).execute();
      return issueApiToken(trx, tenant.tenantId, { userId: tenant.ownerId, name: 'bench', expiresAt: new Date(Date.now() + 3600_000), scopes: permissions });
    });
    const superuserUrl = new URL(database.embedded!.adminUrl);
    superuserUrl.pathname = '/ringvakt';

    const ours = await startProcess('bench/servers/ours.ts', {
      DATABASE_URL: superuserUrl.toString(),
      RINGVAKT_DATA_DIR: folder,
      RINGVAKT_PORT: String(OURS_PORT),
      RINGVAKT_LOG_LEVEL: 'warn',
    }, process.env.BENCH_CPU_PROFILE);
    children.push(ours);
    const bare = await startProcess('bench/servers/bare.ts', { BENCH_DATABASE_URL: superuserUrl.toString(), BENCH_PORT: String(BARE_PORT) }, process.env.BENCH_CPU_PROFILE && `${process.env.BENCH_CPU_PROFILE}/bare`);
    children.push(bare);

    const oursTarget = { url: `http://127.0.0.1:${OURS_PORT}/api/v1/tenant`, headers: { authorization: `Bearer ${token}` } };
    const bareTarget = { url: `http://127.0.0.1:${BARE_PORT}/tenant/${tenant.tenantId}` };
    const check = async (target: { url: string; headers?: Record<string, string> }) => {
      const response = await fetch(target.url, { headers: target.headers ?? {} });
      const body = (await response.json()) as { id?: string };
      if (response.status !== 200 || body.id !== tenant.tenantId) throw new Error(`${target.url} answered ${response.status}`);
    };
    await check(oursTarget);
    await check(bareTarget);

    // Warm both up, then alternate.
    await load({ ...oursTarget, seconds: 2, connections: 10 });
    await load({ ...bareTarget, seconds: 2, connections: 10 });
    const oursRuns: LoadResult[] = [];
    const bareRuns: LoadResult[] = [];
    for (let round = 0; round < ROUNDS; round += 1) {
      bareRuns.push(await load({ ...bareTarget, seconds: SECONDS, connections: 10 }));
      oursRuns.push(await load({ ...oursTarget, seconds: SECONDS, connections: 10 }));
    }
    // Paced runs: 1,000 req/s, open loop (one request due every millisecond, latency counted from
    // when it was due), alternating, two rounds; the better round of each counts, as a stall of
    // the shared machine shows up in either.
    const pacedRuns: PacedResult[] = [];
    const pacedBareRuns: PacedResult[] = [];
    for (let round = 0; round < ROUNDS; round += 1) {
      pacedBareRuns.push(await pacedLoad({ ...bareTarget, seconds: SECONDS, rate: 1000 }));
      pacedRuns.push(await pacedLoad({ ...oursTarget, seconds: SECONDS, rate: 1000 }));
    }
    const best = (runs: PacedResult[]) => runs.reduce((a, b) => (a.p99Ms <= b.p99Ms ? a : b));
    const paced = best(pacedRuns);
    const pacedBare = best(pacedBareRuns);
    for (const [name, run] of [['ours', paced], ['bare', pacedBare]] as const) {
      process.stderr.write(`paced 1,000 req/s, ${name}: p50 ${run.p50Ms.toFixed(2)} ms, p99 ${run.p99Ms.toFixed(2)} ms; generator's own loop late by p99 ${run.generatorStallMs.p99.toFixed(1)} ms, max ${run.generatorStallMs.max.toFixed(1)} ms\n`);
    }
    for (const run of [...oursRuns, ...bareRuns, ...pacedRuns, ...pacedBareRuns]) {
      if (run.errors > 0 || run.non2xx > 0) throw new Error(`load run had ${run.errors} errors and ${run.non2xx} non-2xx answers`);
    }
    const mean = (runs: LoadResult[], pick: (run: LoadResult) => number) => runs.reduce((sum, run) => sum + pick(run), 0) / runs.length;
    const oursRps = mean(oursRuns, (run) => run.requestsPerSecond);
    const bareRps = mean(bareRuns, (run) => run.requestsPerSecond);
    return [
      { name: 'tenant-scoped read, throughput, 10 connections', unit: 'req/s', ours: oursRps, baseline: bareRps, higherIsBetter: true, target: '≥ 70 % of baseline', met: oursRps >= 0.7 * bareRps },
      { name: 'tenant-scoped read, p99 latency, 10 connections', unit: 'ms', ours: mean(oursRuns, (run) => run.p99Ms), baseline: mean(bareRuns, (run) => run.p99Ms), higherIsBetter: false },
      { name: 'tenant-scoped read, p99 latency at 1,000 req/s', unit: 'ms', ours: paced.p99Ms, baseline: pacedBare.p99Ms, higherIsBetter: false, target: '< 10 ms', met: paced.p99Ms < 10 },
      { name: 'tenant-scoped read, achieved rate when paced at 1,000 req/s', unit: 'req/s', ours: paced.requestsPerSecond, baseline: pacedBare.requestsPerSecond, higherIsBetter: true },
    ];
  } finally {
    for (const child of children) await stopProcess(child);
    await database.close();
    rmSync(folder, { recursive: true, force: true });
  }
}
