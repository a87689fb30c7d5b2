// Builds the web application into dist/web when its inputs changed since the last build, and does
// nothing otherwise: `npm start` and `npm test` run it first, and a restart must not wait for a
// build it does not need. The inputs are every file under web/ and the dependency lock; their
// SHA-256 digest is kept beside the build (dist/web/.inputs.sha256).
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const stampFile = path.join(root, 'dist', 'web', '.inputs.sha256');

/** Every file under `folder`, in a stable order. */
function filesUnder(folder) {
  const found = [];
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const full = path.join(folder, entry.name);
    if (entry.isDirectory()) found.push(...filesUnder(full));
    else if (entry.isFile()) found.push(full);
  }
  return found.sort();
}

function digestOfInputs() {
  const hash = createHash('sha256');
  for (const file of [...filesUnder(path.join(root, 'web')), path.join(root, 'package-lock.json')]) {
    if (!existsSync(file) || !statSync(file).isFile()) continue;
    hash.update(path.relative(root, file)).update('\0').update(readFileSync(file)).update('\0');
  }
  return hash.digest('hex');
}

/** Builds unless the last build was of these very inputs; `force` always builds. Returns whether it built. */
export async function ensureWebBuilt(force = false) {
  const digest = digestOfInputs();
  const built = existsSync(stampFile) && existsSync(path.join(root, 'dist', 'web', 'index.html')) ? readFileSync(stampFile, 'utf8').trim() : '';
  if (built === digest && !force) return false;
  const { build } = await import('vite');
  await build({ configFile: path.join(root, 'web', 'vite.config.ts'), logLevel: 'warn' });
  writeFileSync(stampFile, `${digest}\n`);
  return true;
}
