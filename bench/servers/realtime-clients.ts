// WebSocket clients for the floor-scale benchmark, in a process of their own so that receiving
// does not compete with the server for its event loop. Connects CLIENTS sockets to URL (with
// TOKEN as a bearer credential when given), prints "listening" once all are open, records from
// "start" on stdin the latency of every event (receive time − its `at`; a message may carry an
// array of events), and on "stop" prints
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
    const parsed = JSON.parse(data.toString()) as { at?: string | number } | { at?: string | number }[];
    const received = Date.now();
    for (const event of Array.isArray(parsed) ? parsed : [parsed]) {
      if (event.at !== undefined) latencies.push(received - (typeof event.at === 'number' ? event.at : Date.parse(event.at)));
    }
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
