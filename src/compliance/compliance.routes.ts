import { z } from '../zod.ts';
import { AppError } from '../server/errors.ts';
import { problemResponses, uuidSchema } from '../server/schemas.ts';
import type { App } from '../server/types.ts';
import { principalOf } from '../server/access-control.ts';
import { controlStatus, loadCatalogue } from './catalogue.ts';
import { CHECKS_BY_ID } from './checks.ts';
import { runEvidence, verifyRun } from './evidence.ts';
import type { SigningKey } from '../audit/signing-key.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { requestAudit } from '../server/request-audit.ts';
import { buildTrustReport, signTrustReport, trustReportHtml, trustReportPdf } from './trust-report.ts';
import { controlStatuses, riskRegister, statementOfApplicability } from './applicability.ts';
import { stringify } from '../csv.ts';
import { currentEvidence, documentSchema } from './documents.ts';
import { answerQuestionnaire, loadQuestionnaire, questionnaireRows, questionnaireXlsx } from './questionnaire.ts';
import { CSV_OUT, neutraliseCell } from '../modules/contacts/csv-safety.ts';
import type { ContactsCrypto } from '../modules/contacts/contacts.service.ts';

const statusSchema = z.enum(['pass', 'fail', 'not_applicable', 'not_run', 'manual']);
const resultSchema = z.object({ checkId: z.string(), title: z.string(), status: z.enum(['pass', 'fail', 'not_applicable']), measured: z.string(), population: z.number(), failures: z.number(), sample: z.array(z.string()) });
const runSchema = z.object({ id: z.string(), startedAt: z.string(), finishedAt: z.string(), trigger: z.string(), catalogueVersion: z.string(), measuredBy: z.string(), sha256: z.string(), passed: z.number(), failed: z.number() });
type RunRow = { id: string; started_at: Date; finished_at: Date; trigger: string; catalogue_version: string; measured_by: string; digest: Buffer; passed: number; failed: number };
const presentRun = (row: RunRow) => ({ id: row.id, startedAt: row.started_at.toISOString(), finishedAt: row.finished_at.toISOString(), trigger: row.trigger, catalogueVersion: row.catalogue_version, measuredBy: row.measured_by, sha256: row.digest.toString('hex'), passed: row.passed, failed: row.failed });

/**
 * /api/v1/compliance: the control catalogue with each control's status from the latest evidence
 * run, runs on demand, and each check's history over an observation window (what an auditor
 * samples for operating effectiveness).
 */
export async function complianceRoutes(app: App, options: { signingKey: () => Promise<SigningKey>; crypto: ContactsCrypto }): Promise<void> {
  // Read and checked at start: a catalogue that names an unknown check (or a questionnaire an unknown control) stops the server here, not an auditor's request later.
  loadCatalogue();
  loadQuestionnaire();
  app.get('/api/v1/compliance/controls', { config: { access: 'audit:read' }, schema: { summary: 'The controls, their framework identifiers, and their status from the latest evidence run', tags: ['compliance'], response: { 200: z.object({ catalogueVersion: z.string(), run: runSchema.nullable(), controls: z.array(z.object({ id: z.string(), title: z.string(), statement: z.string(), kind: z.string(), frameworks: z.record(z.string(), z.array(z.string())), status: statusSchema, results: z.array(resultSchema), evidence: z.array(documentSchema) })) }), ...problemResponses(401, 403) } } }, async (request) =>
    request.tenantDb.read(async (trx) => {
      const catalogue = loadCatalogue();
      const run = await trx.selectFrom('compliance_runs').selectAll().orderBy('started_at', 'desc').limit(1).executeTakeFirst();
      const results = run ? await trx.selectFrom('compliance_results').selectAll().where('run_id', '=', run.id).execute() : [];
      const byCheck = new Map(results.map((result) => [result.check_id, result]));
      const evidence = await currentEvidence(trx);
      return {
        catalogueVersion: catalogue.version,
        run: run ? presentRun(run) : null,
        controls: catalogue.controls.map((control) => {
          const mine = control.checks.flatMap((checkId) => {
            const result = byCheck.get(checkId);
            return result ? [{ checkId, title: CHECKS_BY_ID.get(checkId)?.title ?? checkId, status: result.status, measured: result.measured, population: result.population, failures: result.failures, sample: result.sample }] : [];
          });
          const status = controlStatus(control, (checkId) => byCheck.get(checkId)?.status);
          return { id: control.id, title: control.title, statement: control.statement, kind: control.kind, frameworks: control.frameworks, status, results: mine, evidence: evidence.get(control.id) ?? [] };
        }),
      };
    }),
  );

  app.post('/api/v1/compliance/runs', { config: { access: 'security:manage' }, schema: { summary: 'Run every automated check now; the evidence is kept and anchored in the audit ledger', tags: ['compliance'], response: { 201: runSchema.extend({ results: z.array(resultSchema) }), ...problemResponses(401, 403) } } }, async (request, reply) => {
    const caller = principalOf(request);
    const run = await runEvidence(request.tenantDb, { crypto: options.crypto }, 'request', caller.credential.kind === 'session' ? { type: 'user', id: caller.userId } : { type: 'api_token', id: caller.credential.id });
    const row = await request.tenantDb.read((trx) => trx.selectFrom('compliance_runs').selectAll().where('id', '=', run.id).executeTakeFirstOrThrow());
    return reply.code(201).send({ ...presentRun(row), results: run.results.map((result) => ({ ...result, title: CHECKS_BY_ID.get(result.checkId)?.title ?? result.checkId })) });
  });

  app.get('/api/v1/compliance/runs', { config: { access: 'audit:read' }, schema: { summary: 'Evidence runs, newest first', tags: ['compliance'], querystring: z.strictObject({ limit: z.coerce.number().int().min(1).max(400).default(60) }), response: { 200: z.object({ items: z.array(runSchema) }), ...problemResponses(400, 401, 403) } } }, async (request) => {
    const rows = await request.tenantDb.read((trx) => trx.selectFrom('compliance_runs').selectAll().orderBy('started_at', 'desc').limit(request.query.limit).execute());
    return { items: rows.map(presentRun) };
  });

  app.get('/api/v1/compliance/runs/:runId/verify', { config: { access: 'audit:read' }, schema: { summary: 'Proves a past run unaltered: its results recomputed into the digest, compared with the stored one and the audit ledger’s', tags: ['compliance'], params: z.strictObject({ runId: uuidSchema }), response: { 200: z.object({ runId: z.string(), storedSha256: z.string(), recomputedSha256: z.string(), ledgerSha256: z.string().nullable(), ledgerEventId: z.string().nullable(), sealed: z.boolean(), holds: z.boolean(), problem: z.string().nullable() }), ...problemResponses(400, 401, 403, 404) } } }, async (request) => {
    const verification = await request.tenantDb.snapshot((trx) => verifyRun(trx, request.params.runId));
    if (!verification) throw new AppError('not_found', 'No such evidence run.');
    return verification;
  });

  app.get('/api/v1/compliance/checks/:checkId/history', { config: { access: 'audit:read' }, schema: { summary: 'One check over an observation window: every run’s result, newest first, and the pass rate of the daily runs', tags: ['compliance'], params: z.strictObject({ checkId: z.string().max(100) }), querystring: z.strictObject({ days: z.coerce.number().int().min(1).max(400).default(90) }), response: { 200: z.object({ checkId: z.string(), title: z.string(), days: z.number(), passRate: z.number().nullable(), items: z.array(z.object({ at: z.string(), trigger: z.string(), status: z.string(), measured: z.string(), failures: z.number() })) }), ...problemResponses(400, 401, 403, 404) } } }, async (request) => {
    const check = CHECKS_BY_ID.get(request.params.checkId);
    if (!check) throw new AppError('not_found', 'No such check.');
    const since = new Date(Date.now() - request.query.days * 86_400_000);
    const rows = await request.tenantDb.read((trx) =>
      trx
        .selectFrom('compliance_results as r')
        .innerJoin('compliance_runs as c', (join) => join.onRef('c.tenant_id', '=', 'r.tenant_id').onRef('c.id', '=', 'r.run_id'))
        .select(['c.started_at', 'c.trigger', 'r.status', 'r.measured', 'r.failures'])
        .where('r.check_id', '=', check.id)
        .where('c.started_at', '>=', since)
        .orderBy('c.started_at', 'desc')
        .limit(2000)
        .execute(),
    );
    // Operating effectiveness is judged on the daily runs (a burst of runs on demand after a fix must not outweigh weeks of failures); before the first daily run, on all.
    const daily = rows.filter((row) => row.trigger === 'schedule');
    const judged = (daily.length > 0 ? daily : rows).filter((row) => row.status !== 'not_applicable');
    return {
      checkId: check.id,
      title: check.title,
      days: request.query.days,
      passRate: judged.length === 0 ? null : Math.round((judged.filter((row) => row.status === 'pass').length / judged.length) * 1000) / 10,
      items: rows.map((row) => ({ at: row.started_at.toISOString(), trigger: row.trigger, status: row.status, measured: row.measured, failures: row.failures })),
    };
  });

  app.get('/api/v1/compliance/trust-report', { config: { access: 'audit:read' }, schema: { summary: 'The trust report for RFIs and RFPs: signed JSON, or HTML or PDF of the same signed document', tags: ['compliance'], querystring: z.strictObject({ format: z.enum(['json', 'html', 'pdf']).default('json'), days: z.coerce.number().int().min(1).max(400).default(90) }) } }, async (request, reply) => {
    const report = await request.tenantDb.snapshot(async (trx) => {
      const tenant = await trx.selectFrom('tenants').select('name').executeTakeFirst();
      return buildTrustReport(trx, tenant?.name ?? 'Organisation', request.query.days);
    });
    const signed = signTrustReport(report, await options.signingKey());
    await request.tenantDb.transaction((trx) => recordAuditEvent(trx, { ...requestAudit(request), action: 'compliance.trust_report', outcome: 'success', details: { format: request.query.format, days: request.query.days, passing: report.summary.passing, failing: report.summary.failing } }));
    const name = `trust-report-${report.generatedAt.slice(0, 10)}`;
    reply.header('cache-control', 'no-store');
    if (request.query.format === 'html') return reply.type('text/html; charset=utf-8').header('content-disposition', `attachment; filename="${name}.html"`).send(trustReportHtml(signed));
    if (request.query.format === 'pdf') return reply.type('application/pdf').header('content-disposition', `attachment; filename="${name}.pdf"`).send(await trustReportPdf(signed));
    return reply.type('application/json').header('content-disposition', `attachment; filename="${name}.json"`).send(JSON.stringify(signed));
  });

  app.get('/api/v1/compliance/statement-of-applicability', { config: { access: 'audit:read' }, schema: { summary: 'ISO/IEC 27001 statement of applicability: every Annex A control, how it is met and why (JSON or CSV)', tags: ['compliance'], querystring: z.strictObject({ format: z.enum(['json', 'csv']).default('json') }) } }, async (request, reply) => {
    const rows = statementOfApplicability(await request.tenantDb.read((trx) => controlStatuses(trx)));
    if (request.query.format === 'csv') {
      const header = ['control', 'theme', 'applicable', 'met_by', 'ringvakt_controls', 'status', 'justification'];
      const body = stringify([header, ...rows.map((row) => [row.control, row.theme, row.applicable ? 'yes' : 'no', row.meansOfMeeting, row.ringvaktControls.join(' '), row.status, row.justification].map(neutraliseCell))], CSV_OUT);
      return reply.type('text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="statement-of-applicability.csv"').send(body);
    }
    return { catalogueVersion: loadCatalogue().version, controls: rows };
  });

  app.get('/api/v1/compliance/questionnaire', { config: { access: 'audit:read' }, schema: { summary: 'The security questionnaire answered from live evidence: JSON, CSV or XLSX', tags: ['compliance'], querystring: z.strictObject({ format: z.enum(['json', 'csv', 'xlsx']).default('json') }) } }, async (request, reply) => {
    const { answered, organisation } = await request.tenantDb.snapshot(async (trx) => {
      const tenant = await trx.selectFrom('tenants').select('name').executeTakeFirst();
      return { answered: await answerQuestionnaire(trx), organisation: tenant?.name ?? 'Organisation' };
    });
    await request.tenantDb.transaction((trx) => recordAuditEvent(trx, { ...requestAudit(request), action: 'compliance.questionnaire', outcome: 'success', details: { format: request.query.format, questions: answered.questions.length, yes: answered.questions.filter((question) => question.answer === 'Yes').length, run: answered.runSha256 } }));
    reply.header('cache-control', 'no-store');
    const name = `security-questionnaire-${new Date().toISOString().slice(0, 10)}`;
    if (request.query.format === 'csv') return reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="${name}.csv"`).send(stringify(questionnaireRows(answered).map((row) => row.map(neutraliseCell)), CSV_OUT));
    if (request.query.format === 'xlsx') return reply.type('application/vnd.openxmlformats-officedocument.spreadsheetml.sheet').header('content-disposition', `attachment; filename="${name}.xlsx"`).send(await questionnaireXlsx(answered, organisation));
    return answered;
  });

  app.get('/api/v1/compliance/risk-register', { config: { access: 'audit:read' }, schema: { summary: 'The risk register: each risk, its inherent and residual rating, and the controls that treat it', tags: ['compliance'] } }, async (request) => ({
    catalogueVersion: loadCatalogue().version,
    risks: riskRegister(await request.tenantDb.read((trx) => controlStatuses(trx))),
  }));
}
