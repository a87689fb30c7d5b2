import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import type { TenantTransaction } from '../db/tenant-db.ts';
import type { SigningKey } from '../audit/signing-key.ts';
import { controlStatus, loadCatalogue, type ControlStatus } from './catalogue.ts';
import { CHECKS_BY_ID } from './checks.ts';
import { MEASURED_BY } from './evidence.ts';
import { currentEvidence, sharedAttestations } from './documents.ts';

/**
 * The trust report a buyer's security team asks for: the controls with their framework
 * identifiers, each control's status from the latest evidence run and its record over the
 * observation window, and the audit ledger's signed head at the time — as JSON signed with the
 * installation's ledger key (Ed25519), verifiable offline with `ringvakt report verify`, and
 * rendered as HTML and PDF from the same signed document.
 *
 * The signature covers the UTF-8 bytes of `JSON.stringify(report)` exactly as it stands in the
 * file; the verifier recomputes them from the parsed report (key order is kept by JSON). Not in
 * it: any personal data, any failing item's id (counts only).
 */

export const REPORT_FORMAT = 'ringvakt-trust-report/1';

export type TrustReport = {
  format: typeof REPORT_FORMAT;
  organisation: string;
  generatedAt: string;
  generatedBy: string;
  catalogueVersion: string;
  window: { from: string; to: string; days: number };
  summary: { controls: number; passing: number; failing: number; manual: number; notRun: number };
  controls: {
    id: string;
    title: string;
    statement: string;
    kind: string;
    frameworks: Record<string, string[]>;
    status: ControlStatus;
    checks: { id: string; title: string; status: string; measured: string; runs: number; passRate: number | null }[];
    /** For an organisational control: its current evidence (titles, dates, digests; the files on request). */
    evidence: { title: string; evidenceDate: string; expiresOn: string; sha256: string | null; link: boolean }[];
  }[];
  /** Certifications and external audit reports the operator shares, current ones only. */
  attestations: { kind: string; title: string; issuer: string; evidenceDate: string; expiresOn: string; sha256: string | null }[];
  ledger: { treeSize: number; rootHash: string; signedAt: string } | null;
};

export type SignedTrustReport = { report: TrustReport; signature: { algorithm: 'Ed25519'; keyId: string; publicKey: string; value: string } };

/** Builds the report from the tenant's evidence, in one snapshot. */
export async function buildTrustReport(trx: TenantTransaction, organisation: string, days: number, now = new Date()): Promise<TrustReport> {
  const catalogue = loadCatalogue();
  const from = new Date(now.getTime() - days * 86_400_000);
  const latest = await trx.selectFrom('compliance_runs').select('id').orderBy('started_at', 'desc').limit(1).executeTakeFirst();
  const current = latest ? await trx.selectFrom('compliance_results').select(['check_id', 'status', 'measured']).where('run_id', '=', latest.id).execute() : [];
  const byCheck = new Map(current.map((row) => [row.check_id, row]));
  const history = await trx
    .selectFrom('compliance_results as r')
    .innerJoin('compliance_runs as c', (join) => join.onRef('c.tenant_id', '=', 'r.tenant_id').onRef('c.id', '=', 'r.run_id'))
    .select(['r.check_id', 'r.status', (eb) => eb.fn.countAll<string>().as('n')])
    .where('c.started_at', '>=', from)
    .groupBy(['r.check_id', 'r.status'])
    .execute();
  const record = (checkId: string) => {
    const rows = history.filter((row) => row.check_id === checkId);
    const runs = rows.reduce((sum, row) => sum + Number(row.n), 0);
    const judged = rows.filter((row) => row.status !== 'not_applicable').reduce((sum, row) => sum + Number(row.n), 0);
    const passed = Number(rows.find((row) => row.status === 'pass')?.n ?? 0);
    return { runs, passRate: judged === 0 ? null : Math.round((passed / judged) * 1000) / 10 };
  };
  const evidenceByControl = await currentEvidence(trx, now);
  const controls = catalogue.controls.map((control) => {
    const checks = control.checks.map((checkId) => {
      const result = byCheck.get(checkId);
      return { id: checkId, title: CHECKS_BY_ID.get(checkId)?.title ?? checkId, status: result?.status ?? 'not_run', measured: result?.measured ?? 'not measured yet', ...record(checkId) };
    });
    const status = controlStatus(control, (checkId) => byCheck.get(checkId)?.status);
    const evidence = (evidenceByControl.get(control.id) ?? []).map((document) => ({ title: document.title, evidenceDate: document.evidenceDate, expiresOn: document.expiresOn, sha256: document.file?.sha256 ?? null, link: document.url !== null }));
    return { id: control.id, title: control.title, statement: control.statement, kind: control.kind, frameworks: control.frameworks, status, checks, evidence };
  });
  const attestations = (await sharedAttestations(trx, now)).map((document) => ({ kind: document.kind, title: document.title, issuer: document.issuer ?? '', evidenceDate: document.evidenceDate, expiresOn: document.expiresOn, sha256: document.file?.sha256 ?? null }));
  const head = await trx.selectFrom('audit_checkpoints').select(['tree_size', 'root_hash', 'signed_at']).orderBy('tree_size', 'desc').limit(1).executeTakeFirst();
  return {
    format: REPORT_FORMAT,
    organisation,
    generatedAt: now.toISOString(),
    generatedBy: MEASURED_BY,
    catalogueVersion: catalogue.version,
    window: { from: from.toISOString(), to: now.toISOString(), days },
    summary: {
      controls: controls.length,
      passing: controls.filter((control) => control.status === 'pass').length,
      failing: controls.filter((control) => control.status === 'fail').length,
      manual: controls.filter((control) => control.status === 'manual').length,
      notRun: controls.filter((control) => control.status === 'not_run').length,
    },
    controls,
    attestations,
    ledger: head ? { treeSize: Number(head.tree_size), rootHash: Buffer.from(head.root_hash).toString('hex'), signedAt: head.signed_at.toISOString() } : null,
  };
}

export function signTrustReport(report: TrustReport, key: SigningKey): SignedTrustReport {
  const value = sign(null, Buffer.from(JSON.stringify(report), 'utf8'), key.privateKey);
  return { report, signature: { algorithm: 'Ed25519', keyId: key.keyId, publicKey: key.publicKey.export({ format: 'der', type: 'spki' }).toString('base64'), value: value.toString('base64') } };
}

/**
 * Checks a signed report offline: the signature over the report as it stands, by the key in the
 * file — and, when the verifier names the key it trusts (`expectedPublicKey`, base64 SPKI as the
 * installation publishes it), that it is that key. Answers what is wrong, or undefined.
 */
export function verifyTrustReport(text: string, expectedPublicKey?: string): string | undefined {
  let parsed: SignedTrustReport;
  try {
    parsed = JSON.parse(text) as SignedTrustReport;
  } catch {
    return 'not JSON';
  }
  if (parsed?.report?.format !== REPORT_FORMAT) return `not a ${REPORT_FORMAT} document`;
  if (parsed.signature?.algorithm !== 'Ed25519' || typeof parsed.signature.value !== 'string' || typeof parsed.signature.publicKey !== 'string') return 'no Ed25519 signature';
  if (expectedPublicKey !== undefined && expectedPublicKey !== parsed.signature.publicKey) return 'signed by another key than the one you trust';
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(parsed.signature.publicKey, 'base64'), format: 'der', type: 'spki' });
  } catch {
    return 'the public key is not valid';
  }
  const ok = verify(null, Buffer.from(JSON.stringify(parsed.report), 'utf8'), key, Buffer.from(parsed.signature.value, 'base64'));
  return ok ? undefined : 'the signature does not match the report: it was changed after signing, or signed by another key';
}

const escape = (text: string) => text.replace(/[&<>"']/g, (char) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char] ?? char);
const frameworksText = (frameworks: Record<string, string[]>) =>
  Object.entries(frameworks)
    .filter(([, ids]) => ids.length > 0)
    .map(([name, ids]) => `${{ soc2: 'SOC 2', iso27001: 'ISO 27001', gdpr: 'GDPR', asvs: 'ASVS' }[name] ?? name}: ${ids.join(', ')}`)
    .join(' · ');

const evidenceHtml = (evidence: TrustReport['controls'][number]['evidence']) =>
  evidence.length === 0 ? '<small class="fail">organisational: no current evidence</small>' : evidence.map((item) => `${escape(item.title)} <small>(${escape(item.evidenceDate)}, valid to ${escape(item.expiresOn)}${item.sha256 ? `; SHA-256 ${escape(item.sha256.slice(0, 16))}…` : ''})</small>`).join('<br>');

/** The same signed report as a self-contained HTML page (no script; styles inline in one block). */
export function trustReportHtml(signed: SignedTrustReport): string {
  const { report, signature } = signed;
  const rows = report.controls
    .map(
      (control) =>
        `<tr><td>${escape(control.id)}</td><td><strong>${escape(control.title)}</strong><br><small>${escape(control.statement)}</small><br><small>${escape(frameworksText(control.frameworks))}</small></td><td class="${escape(control.status)}">${escape(control.status.replace('_', ' '))}</td><td>${control.checks.map((check) => `${escape(check.measured)}${check.passRate === null ? '' : ` <small>(${check.passRate} % of ${check.runs} runs)</small>`}`).join('<br>') || evidenceHtml(control.evidence)}</td></tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Trust report — ${escape(report.organisation)}</title>
<style>body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1b1f24}table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #d4d9df;padding:.5rem;vertical-align:top;text-align:left}.pass{color:#1e6b2b}.fail{color:#b3261e;font-weight:bold}.manual,.not_run,.not_applicable{color:#545d68}footer{margin-top:2rem;font-size:12px;color:#545d68;word-break:break-all}</style></head>
<body><h1>Trust report: ${escape(report.organisation)}</h1>
<p>Generated ${escape(report.generatedAt)} by ${escape(report.generatedBy)}; controls catalogue ${escape(report.catalogueVersion)}; observation window ${report.window.days} days (${escape(report.window.from)} to ${escape(report.window.to)}).</p>
<p><strong>${report.summary.passing}</strong> of ${report.summary.controls} controls pass now, ${report.summary.failing} fail, ${report.summary.manual} are organisational, ${report.summary.notRun} not yet measured.</p>
<table><thead><tr><th>Control</th><th>What it is</th><th>Status</th><th>Measured (and over the window)</th></tr></thead><tbody>
${rows}
</tbody></table>
<h2>Certifications and audit reports</h2>
${report.attestations.length === 0 ? '<p>None shared.</p>' : `<ul>${report.attestations.map((item) => `<li><strong>${escape(item.title)}</strong> (${escape(item.kind.replace('_', ' '))}) by ${escape(item.issuer)}, ${escape(item.evidenceDate)}, valid to ${escape(item.expiresOn)}${item.sha256 ? `<br><small>SHA-256 ${escape(item.sha256)}</small>` : ''}</li>`).join('')}</ul><p><small>The documents themselves are shared on request; each one's SHA-256 above proves it is the one this report names.</small></p>`}
<footer>${report.ledger ? `Audit ledger at ${escape(report.ledger.signedAt)}: ${report.ledger.treeSize} events, root ${escape(report.ledger.rootHash)}.<br>` : ''}Signed with Ed25519 key ${escape(signature.keyId)}. Verify the JSON form offline: <code>ringvakt report verify report.json --public-key ${escape(signature.publicKey)}</code></footer>
</body></html>
`;
}

/** The same signed report as a PDF (pdfkit, loaded when asked for). */
export async function trustReportPdf(signed: SignedTrustReport): Promise<Buffer> {
  const { report, signature } = signed;
  const { default: PDFDocument } = await import('pdfkit');
  const doc = new PDFDocument({ size: 'A4', margin: 50, info: { Title: `Trust report — ${report.organisation}`, Creator: 'Ringvakt' } });
  const chunks: Buffer[] = [];
  doc.on('data', (chunk: Buffer) => chunks.push(chunk));
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });
  doc.font('Helvetica-Bold').fontSize(18).text(`Trust report: ${report.organisation}`);
  doc.font('Helvetica').fontSize(9).text(`Generated ${report.generatedAt} by ${report.generatedBy} · catalogue ${report.catalogueVersion} · window ${report.window.days} days`);
  doc.moveDown(0.5).fontSize(11).text(`${report.summary.passing} of ${report.summary.controls} controls pass now; ${report.summary.failing} fail; ${report.summary.manual} organisational; ${report.summary.notRun} not yet measured.`);
  for (const control of report.controls) {
    doc.moveDown(0.6).font('Helvetica-Bold').fontSize(11).text(`${control.id} ${control.title} — ${control.status.replace('_', ' ')}`);
    doc.font('Helvetica').fontSize(9).text(control.statement);
    doc.fillColor('#545d68').text(frameworksText(control.frameworks)).fillColor('#000000');
    for (const check of control.checks) doc.text(`• ${check.measured}${check.passRate === null ? '' : ` (${check.passRate} % of ${check.runs} runs passed)`}`);
    if (control.kind === 'organisational') {
      if (control.evidence.length === 0) doc.text('• organisational: no current evidence');
      for (const item of control.evidence) doc.text(`• ${item.title} (${item.evidenceDate}, valid to ${item.expiresOn}${item.sha256 ? `; SHA-256 ${item.sha256}` : ''})`);
    }
  }
  doc.moveDown(1).font('Helvetica-Bold').fontSize(12).text('Certifications and audit reports');
  doc.font('Helvetica').fontSize(9);
  if (report.attestations.length === 0) doc.text('None shared.');
  for (const item of report.attestations) doc.text(`• ${item.title} (${item.kind.replace('_', ' ')}) by ${item.issuer}, ${item.evidenceDate}, valid to ${item.expiresOn}${item.sha256 ? `; SHA-256 ${item.sha256}` : ''}`);
  doc.moveDown(1).fontSize(8).fillColor('#545d68');
  if (report.ledger) doc.text(`Audit ledger at ${report.ledger.signedAt}: ${report.ledger.treeSize} events, root ${report.ledger.rootHash}.`);
  doc.text(`Signed with Ed25519 key ${signature.keyId}; the signed JSON form verifies offline with: ringvakt report verify report.json --public-key ${signature.publicKey}`);
  doc.end();
  return done;
}
