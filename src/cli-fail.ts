import { ConfigError } from './config.ts';
import { EmbeddedPostgresError } from './db/embedded-postgres.ts';
import { MigrationError } from './db/migrate.ts';
import { ProvisioningError } from './db/provision.ts';
import { SecretFileError } from './secret-files.ts';
import { RootKeyError } from './crypto/root-keys/root-key-provider.ts';
import { AppError } from './server/errors.ts';

/** Errors whose message is written for the operator; anything else is reported without internals. */
const explained = [ConfigError, EmbeddedPostgresError, MigrationError, ProvisioningError, SecretFileError, RootKeyError];

export function fail(error: unknown): never {
  if (explained.some((type) => error instanceof type)) {
    process.stderr.write(`ringvakt: ${(error as Error).message}\n`);
  } else if (error instanceof AppError) {
    process.stderr.write(`ringvakt: ${error.detail ?? error.message}\n`);
  } else {
    const code = (error as { code?: string }).code;
    process.stderr.write(`ringvakt: failed: ${(error as Error).name ?? 'error'}${code ? ` (${code})` : ''}: ${(error as Error).message ?? ''}\n`);
  }
  process.exit(1);
}

