import type { FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';
import type pg from 'pg';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Prometheus metrics in a registry of this app's own (several apps may live in one test process).
 * Labels are route templates and status codes only — never a path with ids, never a user.
 */
export function createMetrics(pool: pg.Pool): { registry: Registry; plugin: FastifyPluginAsync } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'ringvakt_' });

  const requests = new Counter({
    name: 'ringvakt_http_requests_total',
    help: 'HTTP requests answered, by method, route template and status code',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'ringvakt_http_request_duration_seconds',
    help: 'Time to answer HTTP requests, by method and route template',
    labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  new Gauge({
    name: 'ringvakt_db_pool_connections',
    help: 'Runtime-role database pool connections, by state',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      this.set({ state: 'total' }, pool.totalCount);
      this.set({ state: 'idle' }, pool.idleCount);
      this.set({ state: 'waiting' }, pool.waitingCount);
    },
  });

  const plugin = fp(
    async (app) => {
      app.addHook('onResponse', async (request, reply) => {
        const route = request.routeOptions.url ?? '(unmatched)';
        requests.inc({ method: request.method, route, status: String(reply.statusCode) });
        duration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
      });
    },
    { name: 'ringvakt-metrics' },
  );
  return { registry, plugin };
}
