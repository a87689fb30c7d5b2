import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { PacedOptions, PacedResult } from './servers/paced-load.ts';
import autocannon from 'autocannon';

export type BenchRow = { name: string; unit: string; ours: number; baseline: number; higherIsBetter: boolean; target?: string; met?: boolean };

/**
 * Starts a TypeScript file in its own Node process and waits until it prints "listening".
 * `profile`: a folder for a V8 CPU profile of the process (written when it exits).
 */
export async function startProcess(file: string, env: NodeJS.ProcessEnv, profile?: string): Promise<ChildProcess> {
  const profiling = profile ? ['--cpu-prof', '--cpu-prof-dir', profile] : [];
  const child = spawn(process.execPath, [...profiling, '--import', 'tsx', file], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  const deadline = Date.now() + 60_000;
  while (!output.includes('listening')) {
    if (child.exitCode !== null) throw new Error(`${file} exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error(`${file} did not start`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return child;
}

/** Stops a child with SIGTERM and waits for it to exit; after `killAfterMs`, SIGKILL. */
export async function stopProcess(child: ChildProcess, killAfterMs = 30_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  await exited;
  clearTimeout(timer);
}

/**
 * A `ringvakt serve` node in a process of its own, on loopback at `port`, with `env` on top of this
 * process's environment; resolves once its `/readyz` answers (within 60 s), with the node's URL.
 */
export async function startServeNode(port: number, env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'serve'], {
    env: { ...process.env, RINGVAKT_HOST: '127.0.0.1', RINGVAKT_PORT: String(port), RINGVAKT_BACKUP_INTERVAL_HOURS: '0', RINGVAKT_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  let failed: Error | undefined;
  child.on('error', (error) => (failed = error));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (failed) throw new Error(`the node on port ${port} could not start`, { cause: failed });
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the node on port ${port} exited (${child.exitCode ?? child.signalCode})`);
    if (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2_000) }).then((response) => response.ok, () => false)) return { child, url };
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the node on port ${port} did not become ready`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

export type LoadResult = { requestsPerSecond: number; p99Ms: number; p50Ms: number; errors: number; non2xx: number };

/** A bounded, closed-loop autocannon run against loopback: as many requests as the server answers. */
export async function load(options: { url: string; headers?: Record<string, string>; seconds: number; connections: number }): Promise<LoadResult> {
  const result = await autocannon({
    url: options.url,
    headers: options.headers ?? {},
    duration: options.seconds,
    connections: options.connections,
  });
  return {
    requestsPerSecond: result.requests.average,
    p99Ms: result.latency.p99,
    p50Ms: result.latency.p50,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  };
}

export function printTable(rows: BenchRow[]): void {
  const lines = [['name', 'ours', 'baseline', 'ratio', 'target'].join(' | ')];
  for (const row of rows) {
    const ratio = row.higherIsBetter ? row.ours / row.baseline : row.baseline / row.ours;
    const format = (value: number) => `${value.toFixed(value >= 100 ? 0 : 2)} ${row.unit}`;
    const verdict = row.target ? `${row.target} ${row.met === undefined ? '(not measured at this size)' : row.met ? 'MET' : 'NOT MET'}` : '';
    lines.push([row.name, format(row.ours), format(row.baseline), `${(ratio * 100).toFixed(1)} %`, verdict].join(' | '));
  }
  process.stdout.write(lines.join('\n') + '\n');
}

/** An open-loop run at a fixed rate, from a generator process of its own (servers/paced-load.ts). */
export async function pacedLoad(options: PacedOptions): Promise<PacedResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/servers/paced-load.ts'], {
    env: { ...process.env, BENCH_PACED_OPTIONS: JSON.stringify(options) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`the paced load generator exited with ${code}`);
  return JSON.parse(output) as PacedResult;
}
