import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../test/support/ports.ts';
import { startProcess, stopProcess, type BenchRow } from './support.ts';

/** `npm start` exactly as a newcomer types it; time from launch until /readyz answers 200. */
async function timeNpmStart(dataDir: string, port: number): Promise<{ ms: number; stop: () => Promise<void> }> {
  const started = performance.now();
  const child = spawn('npm', ['start', '--silent'], {
    env: { ...process.env, RINGVAKT_DATA_DIR: dataDir, RINGVAKT_PORT: String(port), RINGVAKT_LOG_LEVEL: 'warn' },
    stdio: 'ignore',
    detached: true,
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (Date.now() > deadline) throw new Error('npm start did not become ready within 60 s');
    try {
      const response = await fetch(`http://127.0.0.1:${port}/readyz`);
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const ms = performance.now() - started;
  return {
    ms,
    stop: async () => {
      const exited = once(child, 'exit');
      process.kill(-child.pid!, 'SIGTERM');
      await exited;
    },
  };
}

async function timeBarePostgres(dataDir: string): Promise<number> {
  const started = performance.now();
  const child = await startProcess('bench/servers/bare-postgres.ts', { RINGVAKT_DATA_DIR: dataDir });
  const ms = performance.now() - started;
  await stopProcess(child);
  return ms;
}

const RESTARTS = 3;

export async function startupBench(): Promise<BenchRow[]> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-bench-start-'));
  chmodSync(folder, 0o711);
  try {
    const port = await freePort();
    const fresh = await timeNpmStart(path.join(folder, 'ours'), port);
    await fresh.stop();
    const bareFresh = await timeBarePostgres(path.join(folder, 'bare'));
    // Restarts: three of each, alternating, the median counts (one stall of this shared machine
    // moves a single start by a few hundred milliseconds; every figure is printed).
    const ours: number[] = [];
    const bare: number[] = [];
    for (let round = 0; round < RESTARTS; round += 1) {
      const restarted = await timeNpmStart(path.join(folder, 'ours'), port);
      await restarted.stop();
      ours.push(restarted.ms);
      bare.push(await timeBarePostgres(path.join(folder, 'bare')));
    }
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;
    process.stdout.write(`restarts, ours: ${ours.map((ms) => Math.round(ms)).join(', ')} ms; bare PostgreSQL: ${bare.map((ms) => Math.round(ms)).join(', ')} ms\n`);
    const restart = { ms: median(ours) };
    const bareRestart = median(bare);
    return [
      { name: 'npm start → /readyz, empty data dir (baseline: bare embedded PostgreSQL initdb+start)', unit: 'ms', ours: fresh.ms, baseline: bareFresh, higherIsBetter: false, target: '≤ 5000 ms', met: fresh.ms <= 5000 },
      { name: 'npm start → /readyz, restart, median of 3 (baseline: bare embedded PostgreSQL start)', unit: 'ms', ours: restart.ms, baseline: bareRestart, higherIsBetter: false, target: '≤ 2000 ms', met: restart.ms <= 2000 },
    ];
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}
