import { createRequire } from 'node:module';
import type * as Provider from 'fastify-type-provider-zod';

/** fastify-type-provider-zod through its CommonJS build, which uses the same zod as src/zod.ts. */
const provider = createRequire(import.meta.url)('fastify-type-provider-zod') as typeof Provider;

export const { jsonSchemaTransform, serializerCompiler, validatorCompiler, hasZodFastifySchemaValidationErrors, isResponseSerializationError } = provider;
export type { ZodTypeProvider } from 'fastify-type-provider-zod';
