import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TenantTransaction } from '../db/tenant-db.ts';
import { z } from '../zod.ts';
import { controlStatus, loadCatalogue, type Catalogue } from './catalogue.ts';
import { currentEvidence } from './documents.ts';

/**
 * The security questionnaire (`compliance/questionnaire.json`): questions a buyer's security team
 * asks, written by us in the style of the common industry questionnaires, each answered from the
 * live evidence of the controls it names. The answer is "Yes" only while every one of those
 * controls passes (an organisational one: while its evidence is current); otherwise "No", "Not
 * applicable" (nothing to measure: nobody erased yet, no campaign dialing), "Not yet measured"
 * before the first evidence run, or "Evidence out of date" when the last run is older than 36
 * hours — never a yes that the evidence does not carry.
 */

const questionSchema = z.strictObject({
  id: z.string().regex(/^[A-Z]{2,4}-[0-9]{2}$/),
  domain: z.string().min(3).max(80),
  question: z.string().min(10).max(300),
  controls: z.array(z.string()).min(1),
  answer: z.string().min(10).max(600),
});
const questionnaireSchema = z.strictObject({ $schema: z.string().optional(), version: z.string().min(1).max(40), note: z.string(), questions: z.array(questionSchema).min(1) });
export type Questionnaire = z.infer<typeof questionnaireSchema>;

/** The questionnaire's JSON Schema, as `compliance/questionnaire.schema.json` holds it. */
export function questionnaireJsonSchema(): unknown {
  return { title: 'Ringvakt security questionnaire', ...z.toJSONSchema(questionnaireSchema, { io: 'input' }) };
}

export const QUESTIONNAIRE_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'compliance', 'questionnaire.json');

/** Parses and checks a questionnaire against the catalogue; throws naming every problem. */
export function parseQuestionnaire(text: string, catalogue: Catalogue = loadCatalogue()): Questionnaire {
  const parsed = questionnaireSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`The questionnaire is not valid: ${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`);
  const known = new Set(catalogue.controls.map((control) => control.id));
  const seen = new Set<string>();
  const problems: string[] = [];
  for (const question of parsed.data.questions) {
    if (seen.has(question.id)) problems.push(`${question.id} appears twice`);
    seen.add(question.id);
    for (const control of question.controls) if (!known.has(control)) problems.push(`${question.id} names an unknown control ${control}`);
  }
  if (problems.length > 0) throw new Error(`The questionnaire is not valid: ${problems.join('; ')}`);
  return parsed.data;
}

let loaded: Questionnaire | undefined;
export function loadQuestionnaire(): Questionnaire {
  loaded ??= parseQuestionnaire(readFileSync(QUESTIONNAIRE_FILE, 'utf8'));
  return loaded;
}

export type Answer = 'Yes' | 'No' | 'Not applicable' | 'Not yet measured' | 'Evidence out of date';

/** Evidence older than this answers nothing: the daily run has stopped, and a yes from last month is not a yes today. */
export const STALE_AFTER_MS = 36 * 3_600_000;
export type AnsweredQuestion = {
  id: string;
  domain: string;
  question: string;
  answer: Answer;
  explanation: string;
  /** Per control: its status now and what was measured (or the evidence documents of an organisational one). */
  evidence: string;
  controls: string[];
  frameworks: string;
};

export type AnsweredQuestionnaire = { version: string; catalogueVersion: string; measuredAt: string | null; runSha256: string | null; questions: AnsweredQuestion[] };

/** Answers every question from the latest evidence run and the current documents, in one snapshot. */
export async function answerQuestionnaire(trx: TenantTransaction, now = new Date()): Promise<AnsweredQuestionnaire> {
  const catalogue = loadCatalogue();
  const questionnaire = loadQuestionnaire();
  const run = await trx.selectFrom('compliance_runs').select(['id', 'started_at', 'digest']).orderBy('started_at', 'desc').limit(1).executeTakeFirst();
  const results = run ? await trx.selectFrom('compliance_results').select(['check_id', 'status', 'measured']).where('run_id', '=', run.id).execute() : [];
  const byCheck = new Map(results.map((row) => [row.check_id, row]));
  const evidence = await currentEvidence(trx, now);
  const controls = new Map(catalogue.controls.map((control) => [control.id, control]));

  const stale = run !== undefined && now.getTime() - run.started_at.getTime() > STALE_AFTER_MS;
  const judge = (controlId: string): { status: 'pass' | 'fail' | 'not_run' | 'not_applicable' | 'stale'; lines: string[] } => {
    const control = controls.get(controlId);
    if (!control) return { status: 'fail', lines: [`${controlId}: not in the catalogue`] };
    if (control.kind === 'organisational') {
      const documents = evidence.get(control.id) ?? [];
      return documents.length > 0
        ? { status: 'pass', lines: documents.map((document) => `${control.id}: ${document.title} (${document.evidenceDate}, valid to ${document.expiresOn})`) }
        : { status: 'fail', lines: [`${control.id}: no current evidence`] };
    }
    const status = controlStatus(control, (checkId) => byCheck.get(checkId)?.status);
    if (status === 'not_run') return { status, lines: [`${control.id}: not measured yet`] };
    const lines = control.checks.map((checkId) => byCheck.get(checkId)).map((check) => `${control.id} ${check?.status}: ${check?.measured}`);
    return { status: stale ? 'stale' : (status as 'pass' | 'fail' | 'not_applicable'), lines };
  };

  const frameworkIds = (ids: string[]) => {
    const soc2 = new Set<string>();
    const iso = new Set<string>();
    for (const id of ids) {
      for (const item of controls.get(id)?.frameworks.soc2 ?? []) soc2.add(item);
      for (const item of controls.get(id)?.frameworks.iso27001 ?? []) iso.add(item);
    }
    return [soc2.size > 0 ? `SOC 2 ${[...soc2].join(', ')}` : '', iso.size > 0 ? `ISO 27001 ${[...iso].join(', ')}` : ''].filter(Boolean).join('; ');
  };

  return {
    version: questionnaire.version,
    catalogueVersion: catalogue.version,
    measuredAt: run?.started_at.toISOString() ?? null,
    runSha256: run ? Buffer.from(run.digest).toString('hex') : null,
    questions: questionnaire.questions.map((question) => {
      const judged = question.controls.map(judge);
      const has = (status: string) => judged.some((entry) => entry.status === status);
      const answer: Answer = has('fail') ? 'No' : has('not_run') ? 'Not yet measured' : has('stale') ? 'Evidence out of date' : judged.every((entry) => entry.status === 'not_applicable') ? 'Not applicable' : 'Yes';
      return {
        id: question.id,
        domain: question.domain,
        question: question.question,
        answer,
        explanation: question.answer,
        evidence: judged.flatMap((entry) => entry.lines).join('\n'),
        controls: question.controls,
        frameworks: frameworkIds(question.controls),
      };
    }),
  };
}

export const QUESTIONNAIRE_COLUMNS = ['id', 'domain', 'question', 'answer', 'explanation', 'evidence', 'controls', 'frameworks'] as const;

/** The rows of the export, header first: the same cells in CSV and XLSX. */
export function questionnaireRows(answered: AnsweredQuestionnaire): string[][] {
  return [[...QUESTIONNAIRE_COLUMNS], ...answered.questions.map((question) => [question.id, question.domain, question.question, question.answer, question.explanation, question.evidence, question.controls.join(' '), question.frameworks])];
}

/** The answered questionnaire as an XLSX workbook (exceljs, loaded when asked for): the answers, and a sheet saying where they come from. */
export async function questionnaireXlsx(answered: AnsweredQuestionnaire, organisation: string): Promise<Buffer> {
  const { default: ExcelJS } = await import('exceljs');
  const workbook = new ExcelJS.Workbook();
  workbook.creator = 'Ringvakt';
  workbook.created = new Date(answered.measuredAt ?? Date.now());
  const sheet = workbook.addWorksheet('Questionnaire', { views: [{ state: 'frozen', ySplit: 1 }] });
  sheet.columns = [
    { header: 'ID', key: 'id', width: 9 },
    { header: 'Domain', key: 'domain', width: 24 },
    { header: 'Question', key: 'question', width: 50 },
    { header: 'Answer', key: 'answer', width: 12 },
    { header: 'Explanation', key: 'explanation', width: 60 },
    { header: 'Evidence (latest run)', key: 'evidence', width: 70 },
    { header: 'Controls', key: 'controls', width: 14 },
    { header: 'Frameworks', key: 'frameworks', width: 30 },
  ];
  for (const question of answered.questions) sheet.addRow({ ...question, controls: question.controls.join(' ') });
  sheet.getRow(1).font = { bold: true };
  sheet.eachRow((row) => {
    row.alignment = { vertical: 'top', wrapText: true };
  });
  const about = workbook.addWorksheet('About');
  about.addRows([
    ['Organisation', organisation],
    ['Questionnaire version', answered.version],
    ['Control catalogue', answered.catalogueVersion],
    ['Evidence measured at', answered.measuredAt ?? 'not yet measured'],
    ['Evidence run SHA-256', answered.runSha256 ?? ''],
    ['How to read it', '"Yes" only while every named control passes its automated checks (an organisational control: while its evidence is current). The run digest is anchored in the audit ledger; the signed trust report carries the same evidence.'],
  ]);
  about.getColumn(1).width = 24;
  about.getColumn(2).width = 100;
  return Buffer.from(await workbook.xlsx.writeBuffer());
}
