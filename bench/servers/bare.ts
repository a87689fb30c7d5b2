// The baseline: a bare Fastify route doing the same one-row select with plain pg, no auth,
// no tenant handle, no transaction, no schemas, no hooks.
import Fastify from 'fastify';
import pg from 'pg';

const pool = new pg.Pool({ connectionString: process.env.BENCH_DATABASE_URL, max: 10 });
const app = Fastify({ logger: false });
app.get<{ Params: { id: string } }>('/tenant/:id', async (request) => {
  const result = await pool.query('SELECT id, slug, name, status, created_at FROM ringvakt.tenants WHERE id = $1', [request.params.id]);
  return result.rows[0];
});
await app.listen({ host: '127.0.0.1', port: Number(process.env.BENCH_PORT) });
process.stdout.write('listening\n');
process.on('SIGTERM', () => void app.close().then(() => pool.end()).then(() => process.exit(0)));
