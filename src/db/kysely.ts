import { createRequire } from 'node:module';
import type * as KyselyModule from 'kysely';

/**
 * Kysely, loaded through its CommonJS build. Its ES-module build is ~260 files, and under the
 * TypeScript loader every ES module costs a round trip to the loader's thread: loaded this way
 * the server starts ~0.3 s sooner (bench/startup.bench.ts). Same library, same version, one copy:
 * every module of Ringvakt imports Kysely from here, never from 'kysely' directly.
 */
const kysely = createRequire(import.meta.url)('kysely') as typeof KyselyModule;

export const sql = kysely.sql;
export const Kysely = kysely.Kysely;
export type Kysely<DB> = KyselyModule.Kysely<DB>;
export const Transaction = kysely.Transaction;
export type Transaction<DB> = KyselyModule.Transaction<DB>;
export const CompiledQuery = kysely.CompiledQuery;
export type CompiledQuery<O = unknown> = KyselyModule.CompiledQuery<O>;
export const PostgresAdapter = kysely.PostgresAdapter;
export const PostgresIntrospector = kysely.PostgresIntrospector;
export const PostgresQueryCompiler = kysely.PostgresQueryCompiler;
export type {
  ColumnType,
  DatabaseConnection,
  DatabaseIntrospector,
  Dialect,
  DialectAdapter,
  Driver,
  Generated,
  QueryCompiler,
  QueryResult,
  RawBuilder,
  Selectable,
  TransactionSettings,
} from 'kysely';
