// WebSocket clients for the floor-scale benchmark, in a process of their own so that receiving
// does not compete with the server for its event loop. Connects CLIENTS sockets to URL (with
// TOKEN as a bearer credential when given), prints "listening" once all are open, records from
// "start" on stdin the latency of every message (receive time − its `at`), and on "stop" prints
// the latencies' summary as JSON and exits.
import WebSocket from 'ws';

const url = process.env.URL ?? '';
const clients = Number(process.env.CLIENTS ?? 500);
const token = process.env.TOKEN;
const latencies: number[] = [];
let measuring = false;
const sockets: WebSocket[] = [];
for (let index = 0; index < clients; index += 1) {
  const socket = new WebSocket(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  socket.on('message', (data: Buffer) => {
    if (!measuring) return;
    const at = (JSON.parse(data.toString()) as { at?: string | number }).at;
    if (at !== undefined) latencies.push(Date.now() - (typeof at === 'number' ? at : Date.parse(at)));
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  sockets.push(socket);
}
process.stdout.write('listening\n');
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  if (chunk.includes('start')) measuring = true;
  if (chunk.includes('stop')) {
    measuring = false;
    latencies.sort((a, b) => a - b);
    const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? null;
    process.stdout.write(`${JSON.stringify({ count: latencies.length, p50: at(0.5), p99: at(0.99), closed: sockets.filter((socket) => socket.readyState !== WebSocket.OPEN).length })}\n`);
    for (const socket of sockets) socket.terminate();
    process.exit(0);
  }
});
