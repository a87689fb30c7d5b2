// The memory baseline of the import bench: what the CLI holds before it imports anything
// (configuration, database pool, keyring, phone metadata and time zones), as its peak RSS.
import { readFileSync } from 'node:fs';
import { withCliDatabase } from '../src/cli-support.ts';
import { normalisePhone, timeZonesOfNumber } from '../src/modules/contacts/phone.ts';
import '../src/modules/imports/imports-cli.ts';

normalisePhone('+4741000001', 'NO');
timeZonesOfNumber('+4741000001');
await withCliDatabase(async (database) => {
  await database.crypto();
});
const peak = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
process.stdout.write(`rss=${Number(peak) * 1024}\n`);
