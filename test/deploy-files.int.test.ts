import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/server/types.ts';
import { buildTestApp } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';

const ALERTS = 'deploy/prometheus/ringvakt-alerts.yml';
const DASHBOARD = 'deploy/grafana/ringvakt-dashboard.json';

/** The metric families an expression names (histogram series by their family name). */
const familiesIn = (text: string) => new Set([...text.matchAll(/\bringvakt_[a-z0-9_]+/g)].map(([name]) => name.replace(/_(bucket|sum|count)$/, '')));

describe(`the Prometheus alert rules and the Grafana dashboard (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  beforeAll(async () => {
    db = await createTestDatabase();
    app = await buildTestApp(db);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('name only metrics that /metrics really serves (a renamed metric would silence an alert)', async () => {
    const served = (await app.inject({ url: '/metrics' })).body;
    const servedFamilies = new Set([...served.matchAll(/^# TYPE (ringvakt_[a-z0-9_]+) /gm)].map(([, name]) => name));
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
    const expressions = dashboard.panels.flatMap((panel) => panel.targets.map((target) => target.expr)).join('\n');
    const rules = readFileSync(ALERTS, 'utf8').split('\n').filter((line) => !line.trimStart().startsWith('#')).join('\n');
    const named = new Set([...familiesIn(rules), ...familiesIn(expressions)]);
    expect(named.size).toBeGreaterThan(15);
    expect([...named].filter((name) => !servedFamilies.has(name))).toEqual([]);
    // Every panel asks something.
    expect(dashboard.panels.every((panel) => panel.targets.length > 0 && panel.targets.every((target) => target.expr.includes('ringvakt_')))).toBe(true);
  });

  it('are valid for promtool, and the alerts fire (and stay quiet) as their unit tests say', () => {
    const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
    expect(promtool.error, 'promtool is missing: apt-get install prometheus (.ci/run does)').toBeUndefined();
    const check = spawnSync('promtool', ['check', 'rules', ALERTS], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const unit = spawnSync('promtool', ['test', 'rules', 'ringvakt-alerts.test.yml'], { encoding: 'utf8', cwd: 'deploy/prometheus' });
    expect(unit.status, unit.stdout + unit.stderr).toBe(0);
  });
});
