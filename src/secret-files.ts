import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Raised for a missing or too-open secret file; the message names the file, never its content. */
export class SecretFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretFileError';
  }
}

/** Writes a secret atomically into a 0600 file inside a 0700 folder. */
export function writeSecretFile(filePath: string, value: string): void {
  const folder = path.dirname(filePath);
  mkdirSync(folder, { recursive: true, mode: 0o700 });
  chmodSync(folder, 0o700);
  const temporary = `${filePath}.${process.pid}.tmp`;
  writeFileSync(temporary, value + '\n', { mode: 0o600, flag: 'wx' });
  renameSync(temporary, filePath);
}

/** Reads a secret; refuses a file that anyone but its owner can read or write. */
export function readSecretFile(filePath: string, what: string): string {
  if (!existsSync(filePath)) {
    throw new SecretFileError(`${what} is missing: expected the file ${filePath}`);
  }
  const mode = statSync(filePath).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new SecretFileError(
      `${what} in ${filePath} is readable or writable by others (mode ${mode.toString(8)}); ` +
        `run: chmod 600 ${filePath}`,
    );
  }
  return readFileSync(filePath, 'utf8').trim();
}
