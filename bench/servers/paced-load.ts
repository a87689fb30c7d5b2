// An open-loop load generator, run in a process of its own (see pacedLoad in support.ts) so that
// the benchmark process's own work (its database pool, its garbage) cannot delay the requests.
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';

export type PacedOptions = { url: string; headers?: Record<string, string>; seconds: number; rate: number; maxSockets?: number };
export type PacedResult = {
  requestsPerSecond: number;
  p99Ms: number;
  p50Ms: number;
  errors: number;
  non2xx: number;
  /** How late the generator's own event loop ran (a stall of the machine shows here too). */
  generatorStallMs: { p99: number; max: number };
};

/**
 * An open-loop run at a fixed rate against loopback: request i is due at start + i / rate, and its
 * latency counts from when it was due (not from when it went out), so a stalled generator or
 * server shows up in the latency instead of thinning the load.
 *
 * Not autocannon's `overallRate`: that sends each connection's whole quota for a second
 * back to back at the start of the second and then waits (a burst, not a rate), and its
 * coordinated-omission correction assumes 1 ms between requests on every connection, adding a
 * synthetic sample for each millisecond of every response's latency.
 */
async function pacedLoad(options: PacedOptions): Promise<PacedResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 64 });
  const total = Math.round(options.seconds * options.rate);
  const latencies: number[] = [];
  let errors = 0;
  let non2xx = 0;
  let sent = 0;
  let finished = 0;
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  loopDelay.enable();
  const start = performance.now();
  const done = new Promise<void>((resolve) => {
    const send = (due: number) => {
      // Each request counts once, however it ends (answered, failed, or cut off mid-answer).
      let settled = false;
      const settle = (outcome: 'ok' | 'non2xx' | 'error') => {
        if (settled) return;
        settled = true;
        if (outcome === 'ok') latencies.push(performance.now() - due);
        else if (outcome === 'non2xx') non2xx += 1;
        else errors += 1;
        finished += 1;
        if (finished === total) resolve();
      };
      const request = http.get(options.url, { agent, headers: options.headers ?? {}, timeout: 10_000 }, (response) => {
        response.resume();
        response.on('end', () => settle(response.statusCode !== undefined && response.statusCode >= 200 && response.statusCode <= 299 ? 'ok' : 'non2xx'));
        response.on('aborted', () => settle('error'));
        response.on('error', () => settle('error'));
      });
      request.on('timeout', () => request.destroy(new Error('timeout')));
      request.on('error', () => settle('error'));
    };
    const tick = () => {
      const now = performance.now();
      while (sent < total && start + (sent * 1000) / options.rate <= now) {
        send(start + (sent * 1000) / options.rate);
        sent += 1;
      }
      // A timer, not setImmediate: a spinning generator would take a core from the server.
      if (sent < total) setTimeout(tick, 1);
    };
    tick();
  });
  await done;
  const elapsed = (performance.now() - start) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const percentile = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? Number.NaN;
  return {
    requestsPerSecond: latencies.length / elapsed,
    p99Ms: percentile(0.99),
    p50Ms: percentile(0.5),
    errors,
    non2xx,
    generatorStallMs: { p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 },
  };
}

const options = JSON.parse(process.env.BENCH_PACED_OPTIONS ?? '{}') as PacedOptions;
process.stdout.write(JSON.stringify(await pacedLoad(options)) + '\n');
