import type { Generated } from './kysely.ts';

/** Finished backups and restore drills (no tenant: the installation's own record). */
export type BackupRunsTable = {
  id: Generated<string>;
  kind: 'backup' | 'drill';
  trigger: 'operator' | 'schedule';
  outcome: 'success' | 'failed';
  started_at: Date;
  finished_at: Date;
  backup_id: string | null;
  file: string | null;
  bytes: string | number | null;
  rows: string | number | null;
  backup_taken_at: Date | null;
  recovery_seconds: number | null;
  error: string | null;
  node: string;
};
