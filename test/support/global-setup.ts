import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres, type EmbeddedCluster } from '../../src/db/embedded-postgres.ts';
import { createLogger } from '../../src/logger.ts';

/**
 * One PostgreSQL server for the whole run; every test file creates and drops its own databases
 * on it. RINGVAKT_TEST_ADMIN_URL points the run at an existing server (CI: PostgreSQL 15 on
 * 127.0.0.1:5432); otherwise an embedded server is started in a temporary folder.
 */
let cluster: EmbeddedCluster | undefined;
let dataDir: string | undefined;

declare module 'vitest' {
  export interface ProvidedContext {
    adminUrl: string;
    serverLabel: string;
  }
}

export async function setup(project: TestProject): Promise<void> {
  const external = process.env.RINGVAKT_TEST_ADMIN_URL;
  if (external) {
    project.provide('adminUrl', external);
    project.provide('serverLabel', 'external');
    return;
  }
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-test-pg-'));
  chmodSync(dataDir, 0o711); // our own folder: the postgres system user may pass through it
  cluster = await startEmbeddedPostgres({ dataDir, logger: createLogger('warn') });
  project.provide('adminUrl', cluster.adminUrl);
  project.provide('serverLabel', 'embedded');
}

export async function teardown(): Promise<void> {
  await cluster?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}
