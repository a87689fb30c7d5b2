// The agents of the load benchmark, in a process of their own: AGENTS agents (tokens from
// TOKENS_FILE), agent i on node URLS[i % URLS.length]. Each holds the realtime WebSocket and, every
// 5 s on average (jittered), reads its state and its call, and every 20 s changes state (available
// on CAMPAIGN_ID ↔ paused) — what an agent's desktop does. After SECONDS it prints latencies (p50,
// p99 in ms), errors and sockets still open as JSON, every 30 s a progress line on stderr.
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';

const urls = (process.env.URLS ?? '').split(',');
const tokens = JSON.parse(readFileSync(process.env.TOKENS_FILE ?? '', 'utf8')) as string[];
const campaignId = process.env.CAMPAIGN_ID ?? '';
const seconds = Number(process.env.SECONDS ?? 60);
const latencies: number[] = [];
const baseline: number[] = [];
let errors = 0;
let requests = 0;
let baselineRequests = 0;
let baselineErrors = 0;
const errorKinds = new Map<string, number>();
const fail = (kind: string) => {
  errors += 1;
  errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
};

const sockets: WebSocket[] = [];
await Promise.all(
  tokens.map(
    (token, index) =>
      new Promise<void>((resolve) => {
        const socket = new WebSocket(`${urls[index % urls.length]?.replace('http', 'ws')}/api/v1/realtime`, { headers: { authorization: `Bearer ${token}` } });
        socket.once('open', () => resolve());
        socket.once('error', () => {
          fail('websocket');
          resolve();
        });
        sockets.push(socket);
      }),
  ),
);
process.stderr.write(`  agents: ${sockets.filter((socket) => socket.readyState === WebSocket.OPEN).length} sockets open\n`);

const timed = async (into: number[], url: string, init: RequestInit) => {
  const started = performance.now();
  const isBaseline = into === baseline;
  if (isBaseline) baselineRequests += 1;
  else requests += 1;
  const failed = (kind: string) => (isBaseline ? (baselineErrors += 1) : fail(kind));
  try {
    const response = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
    await response.arrayBuffer();
    if (response.status >= 400) failed(String(response.status));
    else into.push(performance.now() - started);
  } catch (error) {
    failed((error as Error).name);
  }
};
const deadline = Date.now() + seconds * 1000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const agent = async (token: string, index: number) => {
  const base = urls[index % urls.length] as string;
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  let available = false;
  let nextChange = Date.now() + Math.random() * 20_000;
  await sleep(Math.random() * 5_000);
  while (Date.now() < deadline) {
    await timed(latencies, `${base}/api/v1/agent/state`, { headers });
    await timed(latencies, `${base}/api/v1/agent/call`, { headers });
    if (index % 10 === 0) await timed(baseline, `${base}/livez`, {});
    if (Date.now() >= nextChange) {
      available = !available;
      const body = available ? { state: 'available', campaignId } : { state: 'paused', reason: 'break' };
      await timed(latencies, `${base}/api/v1/agent/state`, { method: 'PUT', headers, body: JSON.stringify(body) });
      nextChange = Date.now() + 20_000;
    }
    await sleep(2_500 + Math.random() * 5_000);
  }
};
const progress = setInterval(() => process.stderr.write(`  agents: ${requests} requests, ${errors} errors\n`), 30_000);
await Promise.all(tokens.map((token, index) => agent(token, index)));
clearInterval(progress);
const at = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? null;
};
const open = sockets.filter((socket) => socket.readyState === WebSocket.OPEN).length;
process.stdout.write(`${JSON.stringify({ requests, errors, baselineRequests, baselineErrors, errorKinds: Object.fromEntries(errorKinds), p50: at(latencies, 0.5), p99: at(latencies, 0.99), baselineP99: at(baseline, 0.99), open })}\n`);
for (const socket of sockets) socket.terminate();
process.exit(0);
