import { sql } from '../../db/kysely.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import { planColumns, type ColumnPlan } from './import-mapping.ts';
import { mappingSchema } from './mapping-schema.ts';

/** What an import was told to do, as stored with it. */
export type ImportOptions = {
  onExisting: 'link' | 'reject';
  onSuppressed: 'skip' | 'keep';
  delimiter?: ',' | ';';
  /** The lawful basis the organisation holds for everyone in the file: recorded for each contact the import creates. */
  lawfulBasis?: LawfulBasis;
};

export type LawfulBasis = { purpose: 'sales' | 'survey' | 'service'; basis: 'consent' | 'legitimate_interest' | 'contract'; source: string; evidenceRef?: string };

/** How long a worker holds an import without committing a batch before another may take it. */
export const LEASE_SECONDS = 60;

/** A claimed import, as the worker's batches need it. */
export type Job = {
  id: string;
  listId: string;
  campaignId: string | null;
  defaultRegion: string;
  plan: ColumnPlan;
  options: ImportOptions;
  delimiter: ',' | ';';
  /** The import's cursor: the rows committed, as this run last committed them (commit-batch.ts moves it). */
  rowsDone: number;
  createdBy: string;
  /**
   * The database server's incarnation the cursor was read in (migration 0030): the run's batches
   * commit only while it is the same, so that a run never goes on from a cursor a crash undid.
   */
  incarnation: string;
};

/**
 * The import with its list's region and campaign, its mapping resolved against the file's header
 * row, its cursor and the server's incarnation read together. In a write transaction: the first
 * caller after a crash creates the new incarnation's token.
 */
export async function loadJob(trx: TenantTransaction, importId: string, headers: readonly string[]): Promise<Job> {
  const row = await trx
    .selectFrom('contact_imports')
    .innerJoin('contact_lists', 'contact_lists.id', 'contact_imports.list_id')
    .select(['contact_imports.id', 'list_id', 'mapping', 'options', 'delimiter', 'rows_done', 'created_by', 'contact_lists.default_region', 'contact_lists.campaign_id'])
    .select(sql<string>`server_incarnation()`.as('incarnation'))
    .where('contact_imports.id', '=', importId)
    .executeTakeFirstOrThrow();
  const options = row.options as ImportOptions;
  const plan = planColumns(headers, mappingSchema.parse(row.mapping));
  if ('problem' in plan) throw new Error('the header row no longer matches the mapping');
  return {
    id: row.id,
    listId: row.list_id,
    campaignId: row.campaign_id,
    defaultRegion: row.default_region,
    plan,
    options,
    delimiter: row.delimiter ?? ',',
    rowsDone: Number(row.rows_done),
    createdBy: row.created_by,
    incarnation: row.incarnation,
  };
}
