// `npm run bench [-- <name>]`: every benchmark measures its own baseline in the same run and prints
// name | ours | baseline | ratio | target. Exits non-zero if a stated target is not met or a
// benchmark could not run.
import { agentLoadBench } from './agent-load.bench.ts';
import { agentScreenBench } from './agent-screen.bench.ts';
import { auditBench } from './audit.bench.ts';
import { backupBench } from './backup.bench.ts';
import { contactsImportBench } from './contacts-import.bench.ts';
import { dialerBench } from './dialer.bench.ts';
import { failoverBench } from './failover.bench.ts';
import { floorScaleBench } from './floor-scale.bench.ts';
import { privacyBench } from './privacy.bench.ts';
import { fieldEncryptionBench } from './field-encryption.bench.ts';
import { loginBench, sessionCheckBench, stuffingBench } from './identity.bench.ts';
import { startupBench } from './startup.bench.ts';
import { tenantReadBench } from './tenant-read.bench.ts';
import { securityMonitorBench } from './security-monitor.bench.ts';
import { complianceBench } from './compliance.bench.ts';
import { printTable, type BenchRow } from './support.ts';

const only = process.argv[2];
const benches: Record<string, () => Promise<BenchRow[]>> = {
  startup: startupBench,
  'tenant-read': tenantReadBench,
  'field-encryption': fieldEncryptionBench,
  audit: auditBench,
  'session-check': sessionCheckBench,
  login: loginBench,
  stuffing: stuffingBench,
  'contacts-import': contactsImportBench,
  dialer: dialerBench,
  'floor-scale': floorScaleBench,
  privacy: privacyBench,
  failover: failoverBench,
  'agent-load': agentLoadBench,
  'agent-screen': agentScreenBench,
  backup: backupBench,
  'security-monitor': securityMonitorBench,
  compliance: complianceBench,
};
if (only && !Object.hasOwn(benches, only)) {
  process.stderr.write(`no benchmark named ${only}; there are: ${Object.keys(benches).join(', ')}\n`);
  process.exit(2);
}
const rows: BenchRow[] = [];
// A benchmark that cannot run (a browser missing, a server that does not start) is reported and
// the others still run; the run then fails.
const failed: string[] = [];
for (const [name, bench] of Object.entries(benches)) {
  if (only && only !== name) continue;
  process.stderr.write(`running ${name}…\n`);
  try {
    rows.push(...(await bench()));
  } catch (error) {
    failed.push(name);
    const cause = error instanceof Error && error.cause instanceof Error ? ` (${error.cause.message})` : '';
    process.stderr.write(`${name} could not run: ${error instanceof Error ? error.message : String(error)}${cause}\n`);
  }
}
printTable(rows);
if (failed.length > 0) process.stdout.write(`could not run: ${failed.join(', ')}\n`);
process.exit(failed.length === 0 && rows.every((row) => row.met !== false) ? 0 : 1);
