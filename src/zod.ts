import { createRequire } from 'node:module';
import type * as Zod from 'zod';

/**
 * zod, loaded through its CommonJS build (see src/db/kysely.ts: each ES module costs a round trip
 * to the TypeScript loader's thread at start-up). fastify-type-provider-zod is loaded the same way
 * (src/server/zod-provider.ts), so both use this one copy: every module imports zod from here.
 */
export const z = (createRequire(import.meta.url)('zod') as typeof Zod).z;

/** The types of zod used as `z.…` in annotations. */
// eslint-disable-next-line @typescript-eslint/no-namespace
export declare namespace z {
  export type infer<T> = Zod.z.infer<T>;
  export type ZodType = Zod.z.ZodType;
  export type ZodOptional<T extends Zod.z.ZodType> = Zod.z.ZodOptional<T>;
}
