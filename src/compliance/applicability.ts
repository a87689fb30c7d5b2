import type { TenantTransaction } from '../db/tenant-db.ts';
import { controlStatus, loadCatalogue, type Catalogue } from './catalogue.ts';

/**
 * The statement of applicability (ISO/IEC 27001 clause 6.1.3 d) and the risk register, generated
 * from the catalogue and the latest evidence. Every Annex A control is listed by identifier (the
 * standard's titles are not reproduced) with whether it applies, how it is met — by a Ringvakt
 * control and its automated evidence, or by the organisation — and why. The risk register takes
 * each risk of the catalogue with its inherent rating, and lowers it to a residual rating only
 * while every control that treats it passes.
 */

const THEMES: Record<number, { theme: string; count: number; unmapped: string }> = {
  5: { theme: 'Organisational', count: 37, unmapped: "Met by the organisation's information security management system (policies, roles, supplier and asset management); no Ringvakt control evidences it yet." },
  6: { theme: 'People', count: 8, unmapped: "Met by the organisation's personnel processes (screening, terms, discipline, confidentiality); outside the software." },
  7: { theme: 'Physical', count: 14, unmapped: "Met by the premises of the organisation and of its hosting provider: Ringvakt is self-hosted software and holds no premises." },
  8: { theme: 'Technological', count: 34, unmapped: 'Not evidenced by an automated Ringvakt check yet: assessed by the organisation (a gap in the catalogue to close).' },
};

export type ApplicabilityRow = { control: string; theme: string; applicable: boolean; meansOfMeeting: 'ringvakt' | 'organisation'; ringvaktControls: string[]; status: string; justification: string };

type Statuses = ReadonlyMap<string, string>;

/** Each Ringvakt control's status from the latest run (automated), or 'manual'. */
export async function controlStatuses(trx: TenantTransaction, catalogue: Catalogue = loadCatalogue()): Promise<Statuses> {
  const latest = await trx.selectFrom('compliance_runs').select('id').orderBy('started_at', 'desc').limit(1).executeTakeFirst();
  const results = latest ? await trx.selectFrom('compliance_results').select(['check_id', 'status']).where('run_id', '=', latest.id).execute() : [];
  const byCheck = new Map(results.map((row) => [row.check_id, row.status]));
  return new Map(
    catalogue.controls.map((control) => {
      // For the SoA and the risk register a control with nothing to measure is met (its treatment holds).
      const status = controlStatus(control, (checkId) => byCheck.get(checkId));
      return [control.id, status === 'not_applicable' ? 'pass' : status];
    }),
  );
}

export function statementOfApplicability(statuses: Statuses, catalogue: Catalogue = loadCatalogue()): ApplicabilityRow[] {
  const rows: ApplicabilityRow[] = [];
  for (const [clause, { theme, count, unmapped }] of Object.entries(THEMES)) {
    for (let number = 1; number <= count; number += 1) {
      const id = `A.${clause}.${number}`;
      const mapped = catalogue.controls.filter((control) => control.frameworks.iso27001.includes(id));
      const worst = mapped.some((control) => statuses.get(control.id) === 'fail') ? 'fail' : mapped.some((control) => statuses.get(control.id) === 'not_run') ? 'not_run' : mapped.length > 0 && mapped.every((control) => statuses.get(control.id) === 'manual') ? 'manual' : mapped.length > 0 ? 'pass' : 'organisation';
      rows.push({
        control: id,
        theme,
        // Every control applies unless the organisation excludes it with its own reasons; the product excludes none.
        applicable: true,
        meansOfMeeting: mapped.length > 0 ? 'ringvakt' : 'organisation',
        ringvaktControls: mapped.map((control) => control.id),
        status: worst,
        justification: mapped.length > 0 ? mapped.map((control) => `${control.id}: ${control.statement}`).join(' ') : unmapped,
      });
    }
  }
  return rows;
}

export type RiskRow = { id: string; title: string; threat: string; inherent: number; residual: number; treatment: string[]; treatmentHolds: boolean };

/** The catalogue's risks, rated likelihood × impact (1–25); residual lower only while every treating control passes. */
export function riskRegister(statuses: Statuses, catalogue: Catalogue = loadCatalogue()): RiskRow[] {
  return catalogue.risks.map((risk) => {
    const holds = risk.controls.every((id) => statuses.get(id) === 'pass' || statuses.get(id) === 'manual');
    return { id: risk.id, title: risk.title, threat: risk.threat, inherent: risk.likelihood * risk.impact, residual: holds ? risk.residualLikelihood * risk.impact : risk.likelihood * risk.impact, treatment: risk.controls, treatmentHolds: holds };
  });
}
