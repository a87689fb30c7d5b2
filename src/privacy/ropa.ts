import { sendTogether, type TenantTransaction } from '../db/tenant-db.ts';
import { dateText } from './dates.ts';

/**
 * Records of processing activities (Art. 30(1)), generated from what the system is configured to
 * do: one activity per campaign (its purpose, jurisdiction, the data it uses, whether calls are
 * recorded), inbound customer service when queues exist, and the staff accounts; recipients and
 * transfers from the processor register; erasure time limits from the retention policies; the
 * security measures this deployment enforces. Exported as JSON (schema `ringvakt-ropa/v1`) and PDF.
 */

export const ROPA_SCHEMA = 'ringvakt-ropa/v1';

export type ProcessingActivity = {
  name: string;
  purpose: string;
  lawfulBasis: string;
  dataSubjects: string[];
  dataCategories: string[];
  recipients: string[];
  transfers: { recipient: string; location: string; safeguard: string | null }[];
  retention: string[];
};

export type Ropa = {
  schema: typeof ROPA_SCHEMA;
  generatedAt: string;
  controller: { name: string | null; address: string | null; dpo: string | null; supervisoryAuthority: string | null };
  activities: ProcessingActivity[];
  processors: { name: string; service: string; location: string; dpaSignedOn: string | null; dpaExpiresOn: string | null; certifications: string[] }[];
  retention: { category: string; days: number; action: string }[];
  securityMeasures: string[];
};

const PURPOSES: Record<string, { purpose: string; basis: string }> = {
  sales: { purpose: 'Direct marketing by telephone', basis: 'Consent (Art. 6(1)(a)) or legitimate interest (Art. 6(1)(f)), recorded per person in the consent register; objections honoured at dial time' },
  survey: { purpose: 'Customer and market surveys by telephone', basis: 'Legitimate interest (Art. 6(1)(f)) or consent, recorded per person; objections honoured at dial time' },
  service: { purpose: 'Customer service calls', basis: 'Performance of a contract (Art. 6(1)(b)) or legitimate interest (Art. 6(1)(f))' },
};

/** What Ringvakt itself enforces (ARCHITECTURE.md, "Security controls"). */
export const SECURITY_MEASURES = [
  'Personal data encrypted at rest field by field (AES-256-GCM) under a key per data subject, wrapped by per-organisation keys and a root key held outside the database',
  'Erasure by destroying the subject key (crypto-shredding), recorded in an erasure ledger that a restore from backup replays',
  'Searchable fields only through keyed blind indexes (HMAC-SHA256); values revealed in full only with a permission, counted and audited',
  'Tenant isolation by PostgreSQL row-level security under a runtime role that owns no table',
  'Multi-factor authentication (TOTP, passkeys) and single sign-on; sessions and API tokens stored as hashes, revocable at once',
  'Role-based access with least privilege; privacy actions limited to privacy officers',
  'Tamper-evident audit ledger (hash tree with signed checkpoints and external witnesses)',
  'Suppression and consent checked at dial time for every call; calling windows in the callee’s time zone',
  'Call recordings encrypted under the subject’s key, paused for card payments, played back only with a permission, audited',
  'Retention policies applied by scheduled sweeps, with legal holds',
];

const RETENTION_LABEL: Record<string, string> = {
  contacts_inactive: 'Contacts without activity',
  interactions: 'Call records',
  notes: 'Agents’ call notes',
  recordings: 'Call recordings',
  audit_events: 'Audit events',
  import_rejects: 'Import reject lists',
  exports: 'Data-subject export bundles',
};

export async function buildRopa(trx: TenantTransaction): Promise<Ropa> {
  // One round trip (Kysely would run them one after another).
  const [profiles, campaigns, queues, processors, policies, personalFields] = await sendTogether(trx, [
    trx.selectFrom('privacy_profiles').selectAll().compile(),
    trx.selectFrom('campaigns').select(['name', 'purpose', 'jurisdiction', 'record_calls', 'state']).orderBy('name').compile(),
    trx.selectFrom('queues').select(['name']).orderBy('name').compile(),
    trx.selectFrom('processors').selectAll().orderBy('name').compile(),
    trx.selectFrom('retention_policies').selectAll().orderBy('category').compile(),
    trx.selectFrom('contact_fields').select(['label']).where('personal', '=', true).orderBy('label').compile(),
  ]);
  const profile = profiles[0];
  const recipients = processors.map((processor) => `${processor.name} (${processor.service})`);
  const transfers = processors
    .filter((processor) => !/^(EU|EEA|NO|Norway|[A-Z]{2}-EU)\b/i.test(processor.location) || processor.transfer_safeguard)
    .map((processor) => ({ recipient: processor.name, location: processor.location, safeguard: processor.transfer_safeguard }));
  const retention = policies.map((policy) => `${RETENTION_LABEL[policy.category] ?? policy.category}: ${policy.retain_days} days, then ${policy.action === 'delete' ? 'deleted' : 'anonymised'}`);
  const contactData = ['Name', 'Telephone numbers', 'E-mail address', 'Postal address', 'Date of birth', 'Notes', ...personalFields.map((field) => field.label)];
  const activities: ProcessingActivity[] = campaigns.map((campaign) => {
    const purpose = PURPOSES[campaign.purpose] ?? { purpose: campaign.purpose, basis: 'As recorded per person' };
    return {
      name: `Campaign “${campaign.name}”${campaign.jurisdiction ? ` (${campaign.jurisdiction})` : ''}`,
      purpose: purpose.purpose,
      lawfulBasis: purpose.basis,
      dataSubjects: ['Customers and prospective customers called by the campaign'],
      dataCategories: [...contactData, 'Call records (times, outcomes, dispositions)', 'Agents’ call notes', ...(campaign.record_calls ? ['Call recordings (voice)'] : []), 'Consent and objection records'],
      recipients,
      transfers,
      retention,
    };
  });
  if (queues.length > 0) {
    activities.push({
      name: `Inbound customer service (${queues.map((queue) => queue.name).join(', ')})`,
      purpose: 'Answering customers’ calls',
      lawfulBasis: 'Performance of a contract (Art. 6(1)(b)) or legitimate interest (Art. 6(1)(f))',
      dataSubjects: ['Callers'],
      dataCategories: ['Caller’s number (kept only as a keyed blind index)', 'Call records (times, waiting, outcome)'],
      recipients,
      transfers,
      retention,
    });
  }
  activities.push({
    name: 'Staff accounts and work records',
    purpose: 'Giving staff access, securing it, and planning and measuring contact-center work',
    lawfulBasis: 'Performance of the employment contract (Art. 6(1)(b)); legal obligation and legitimate interest for security logging (Art. 6(1)(c), (f))',
    dataSubjects: ['Agents, supervisors and administrators'],
    dataCategories: ['Name', 'Work e-mail address', 'Sign-in and security events', 'Agent states and handled calls'],
    recipients,
    transfers,
    retention,
  });
  return {
    schema: ROPA_SCHEMA,
    generatedAt: new Date().toISOString(),
    controller: {
      name: profile?.controller_name ?? null,
      address: profile?.controller_address ?? null,
      dpo: profile ? [profile.dpo_name, profile.dpo_email].filter(Boolean).join(', ') || null : null,
      supervisoryAuthority: profile?.supervisory_authority ?? null,
    },
    activities,
    processors: processors.map((processor) => ({
      name: processor.name,
      service: processor.service,
      location: processor.location,
      dpaSignedOn: dateText(processor.dpa_signed_on),
      dpaExpiresOn: dateText(processor.dpa_expires_on),
      certifications: processor.certifications.map((cert) => `${cert.kind} ${cert.reference}${cert.expiresOn ? ` (until ${cert.expiresOn})` : ''}`),
    })),
    retention: policies.map((policy) => ({ category: policy.category, days: policy.retain_days, action: policy.action })),
    securityMeasures: SECURITY_MEASURES,
  };
}

/** The same record as a PDF document. */
export async function ropaPdf(ropa: Ropa): Promise<Buffer> {
  // Loaded when a PDF is asked for, not at start-up.
  const { default: PDFDocument } = await import('pdfkit');
  const doc = new PDFDocument({ size: 'A4', margin: 50, info: { Title: 'Records of processing activities', Creator: 'Ringvakt' } });
  const chunks: Buffer[] = [];
  doc.on('data', (chunk: Buffer) => chunks.push(chunk));
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });
  const heading = (text: string) => doc.moveDown(0.6).font('Helvetica-Bold').fontSize(12).text(text).font('Helvetica').fontSize(10);
  const field = (label: string, value: string) => doc.font('Helvetica-Bold').text(`${label}: `, { continued: true }).font('Helvetica').text(value);
  const bullets = (values: readonly string[]) => (values.length === 0 ? doc.text('—') : doc.list([...values], { bulletRadius: 1.5 }));

  doc.font('Helvetica-Bold').fontSize(18).text('Records of processing activities');
  doc.font('Helvetica').fontSize(9).text(`Article 30(1) GDPR · generated ${ropa.generatedAt} · ${ropa.schema}`);
  heading('Controller');
  field('Name', ropa.controller.name ?? 'not set');
  field('Address', ropa.controller.address ?? 'not set');
  field('Data protection officer', ropa.controller.dpo ?? 'not set');
  field('Supervisory authority', ropa.controller.supervisoryAuthority ?? 'not set');
  for (const activity of ropa.activities) {
    heading(activity.name);
    field('Purpose', activity.purpose);
    field('Lawful basis', activity.lawfulBasis);
    field('Data subjects', activity.dataSubjects.join('; '));
    doc.font('Helvetica-Bold').text('Personal data:').font('Helvetica');
    bullets(activity.dataCategories);
    field('Recipients', activity.recipients.join('; ') || 'none');
    field('Transfers to third countries', activity.transfers.map((transfer) => `${transfer.recipient} (${transfer.location}${transfer.safeguard ? `, ${transfer.safeguard}` : ''})`).join('; ') || 'none');
    field('Time limits for erasure', activity.retention.join('; ') || 'no retention policy set');
  }
  heading('Processors');
  bullets(ropa.processors.map((processor) => `${processor.name} — ${processor.service}, ${processor.location}; agreement ${processor.dpaSignedOn ?? 'not recorded'}${processor.dpaExpiresOn ? ` to ${processor.dpaExpiresOn}` : ''}${processor.certifications.length ? `; ${processor.certifications.join(', ')}` : ''}`));
  heading('Technical and organisational security measures (Art. 32)');
  bullets(ropa.securityMeasures);
  doc.end();
  return done;
}
