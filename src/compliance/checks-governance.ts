import { loadCatalogue } from './catalogue.ts';
import { verdict, type Check } from './check-support.ts';
import { currentEvidence } from './documents.ts';

/**
 * The check that holds the organisational controls to account: what software cannot measure
 * (screening, confidentiality agreements, continuity exercises) is evidenced by documents the
 * organisation adds, each with the date it speaks for and an expiry. A control whose evidence is
 * missing or expired fails here, every day until it is renewed.
 */
export const GOVERNANCE_CHECKS: readonly Check[] = [
  {
    id: 'compliance.organisational_evidence',
    title: 'Every organisational control has current evidence: a file or link, dated, and not expired',
    async run(trx, now) {
      const organisational = loadCatalogue().controls.filter((control) => control.kind === 'organisational');
      const evidence = await currentEvidence(trx, now);
      const failing = organisational.filter((control) => (evidence.get(control.id) ?? []).length === 0).map((control) => control.id);
      return verdict(organisational.length, failing, (n) => `${organisational.length} organisational controls; ${n} without current evidence${n > 0 ? `: ${failing.join(', ')}` : ''}`);
    },
  },
];
