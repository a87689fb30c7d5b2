import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from '../zod.ts';
import { CHECKS_BY_ID } from './checks.ts';

/**
 * The control catalogue (`compliance/controls.json`): controls in our own words with the
 * identifiers of the frameworks they answer — SOC 2 criteria, ISO/IEC 27001:2022 Annex A
 * controls, GDPR articles, OWASP ASVS 5.0 requirements — never the frameworks' texts. An
 * automated control names the checks (checks.ts) that evidence it; an organisational one is
 * evidenced by documents the organisation uploads. Loaded once and validated: an unknown check,
 * an automated control without checks, a malformed identifier or a repeated id stops the server.
 */

const identifiers = {
  soc2: z.array(z.string().regex(/^(CC[1-9]\.[0-9]{1,2}|A1\.[1-3]|C1\.[1-2]|PI1\.[1-5]|P[1-8]\.[1-9])$/)),
  iso27001: z.array(z.string().regex(/^A\.[5-8]\.[0-9]{1,2}$/)),
  gdpr: z.array(z.string().regex(/^Art\. [0-9]{1,2}(\([0-9]\))?(\([a-z]\))?$/)),
  asvs: z.array(z.string().regex(/^[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,2}$/)),
};

const controlSchema = z.strictObject({
  id: z.string().regex(/^RV-[A-Z]{2,4}-[0-9]{2}$/),
  title: z.string().min(3).max(120),
  statement: z.string().min(10).max(600),
  frameworks: z.strictObject(identifiers),
  kind: z.enum(['automated', 'organisational']),
  checks: z.array(z.string()),
});
const riskSchema = z.strictObject({
  id: z.string().regex(/^RISK-[0-9]{2}$/),
  title: z.string().min(3).max(120),
  threat: z.string().min(10).max(600),
  likelihood: z.number().int().min(1).max(5),
  residualLikelihood: z.number().int().min(1).max(5),
  impact: z.number().int().min(1).max(5),
  controls: z.array(z.string()).min(1),
});
const catalogueSchema = z.strictObject({ $schema: z.string().optional(), version: z.string().min(1).max(40), note: z.string(), controls: z.array(controlSchema).min(1), risks: z.array(riskSchema).default([]) });

export type Control = z.infer<typeof controlSchema>;
export type Catalogue = z.infer<typeof catalogueSchema>;

/** The catalogue's JSON Schema, as `compliance/controls.schema.json` holds it (a test keeps the file in step with this). */
export function catalogueJsonSchema(): unknown {
  return { title: 'Ringvakt control catalogue', ...z.toJSONSchema(catalogueSchema, { io: 'input' }) };
}

export const CATALOGUE_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'compliance', 'controls.json');

/** Parses and checks a catalogue; throws naming every problem. */
export function parseCatalogue(text: string, options: { requireEveryCheck?: boolean } = {}): Catalogue {
  const parsed = catalogueSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`The control catalogue is not valid: ${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`);
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const control of parsed.data.controls) {
    if (seen.has(control.id)) problems.push(`${control.id} appears twice`);
    seen.add(control.id);
    if (control.kind === 'automated' && control.checks.length === 0) problems.push(`${control.id} is automated but names no check`);
    if (control.kind === 'organisational' && control.checks.length > 0) problems.push(`${control.id} is organisational but names checks`);
    for (const check of control.checks) if (!CHECKS_BY_ID.has(check)) problems.push(`${control.id} names an unknown check ${check}`);
  }
  for (const risk of parsed.data.risks) {
    for (const control of risk.controls) if (!seen.has(control)) problems.push(`${risk.id} names an unknown control ${control}`);
    if (risk.residualLikelihood > risk.likelihood) problems.push(`${risk.id} is more likely with its controls than without`);
  }
  // Evidence nobody reads is no evidence: every check answers some control.
  const referenced = new Set(parsed.data.controls.flatMap((control) => control.checks));
  if (options.requireEveryCheck) for (const check of CHECKS_BY_ID.keys()) if (!referenced.has(check)) problems.push(`no control names the check ${check}`);
  if (problems.length > 0) throw new Error(`The control catalogue is not valid: ${problems.join('; ')}`);
  return parsed.data;
}

export type ControlStatus = 'pass' | 'fail' | 'not_applicable' | 'not_run' | 'manual';

/**
 * A control's status from its checks' latest results (undefined: not measured in that run): an
 * organisational control is 'manual'; otherwise not run, failing, not applicable when every check
 * was, else passing. Every view of a control (API, trust report, questionnaire, SoA) judges by this.
 */
export function controlStatus(control: Control, resultOf: (checkId: string) => string | undefined): ControlStatus {
  if (control.kind === 'organisational') return 'manual';
  const statuses = control.checks.map(resultOf);
  if (statuses.some((status) => status === undefined || status === 'not_run')) return 'not_run';
  if (statuses.includes('fail')) return 'fail';
  return statuses.every((status) => status === 'not_applicable') ? 'not_applicable' : 'pass';
}

let loaded: Catalogue | undefined;
export function loadCatalogue(): Catalogue {
  loaded ??= parseCatalogue(readFileSync(CATALOGUE_FILE, 'utf8'), { requireEveryCheck: true });
  return loaded;
}
