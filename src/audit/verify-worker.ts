// A worker of `audit verify` (see verify-leaves.ts): recomputes one range of leaf hashes inside
// the verifying transaction's exported snapshot and writes them into the shared buffer.
import { parentPort, workerData } from 'node:worker_threads';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { fillSubtrees, subtreeWithin } from './merkle.ts';
import { recomputeLeafRange, VERIFY_SESSION_OPTIONS } from './verify-leaves.ts';

const job = workerData as { connectionString: string; snapshot: string; tenantId: string; from: number; to: number; levels: SharedArrayBuffer[] };

async function run(): Promise<string | undefined> {
  if (!/^[0-9A-F]+-[0-9A-F]+-[0-9]+$/i.test(job.snapshot)) throw new Error('not a snapshot id');
  const client = new pg.Client({ connectionString: job.connectionString, options: VERIFY_SESSION_OPTIONS, application_name: 'ringvakt-verify' });
  await client.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query(`SET TRANSACTION SNAPSHOT '${job.snapshot}'`);
    await client.query(`SELECT set_config('app.tenant_id', $1, true)`, [job.tenantId]);
    const levels = job.levels.map((level) => Buffer.from(level));
    const problem = await recomputeLeafRange((sql) => client.query(copyTo(sql)), job.tenantId, job.from, job.to, levels[0] as Buffer);
    await client.query('COMMIT');
    // The tree nodes that lie wholly in this range: the main thread adds the few that cross ranges.
    if (!problem) fillSubtrees(levels, (level, index) => subtreeWithin(level, index, job.from, job.to));
    return problem;
  } finally {
    await client.end();
  }
}

run().then(
  (problem) => parentPort?.postMessage({ problem }),
  (error: unknown) => parentPort?.postMessage({ error: error instanceof Error ? error.message : String(error) }),
);
