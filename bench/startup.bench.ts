import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startProcess, stopProcess, type BenchRow } from './support.ts';

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  return port;
}

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

export async function startupBench(): Promise<BenchRow[]> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-bench-start-'));
  chmodSync(folder, 0o711);
  try {
    const port = await freePort();
    const fresh = await timeNpmStart(path.join(folder, 'ours'), port);
    await fresh.stop();
    const restart = await timeNpmStart(path.join(folder, 'ours'), port);
    await restart.stop();
    const bareFresh = await timeBarePostgres(path.join(folder, 'bare'));
    const bareRestart = await timeBarePostgres(path.join(folder, 'bare'));
    return [
      { name: 'npm start → /readyz, empty data dir (baseline: bare embedded PostgreSQL initdb+start)', unit: 'ms', ours: fresh.ms, baseline: bareFresh, higherIsBetter: false, target: '≤ 5000 ms', met: fresh.ms <= 5000 },
      { name: 'npm start → /readyz, restart (baseline: bare embedded PostgreSQL start)', unit: 'ms', ours: restart.ms, baseline: bareRestart, higherIsBetter: false, target: '≤ 2000 ms', met: restart.ms <= 2000 },
    ];
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}
