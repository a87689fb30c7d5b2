import { useState, type FormEvent } from 'react';
import { useTranslation } from 'react-i18next';
import { post } from '../api.ts';
import { Badge, Field, Head, ProblemNote, useAction, useFormat, useLoad } from '../components/ui.tsx';
import { useSession } from '../App.tsx';
import { TabbedPage } from '../components/TabbedPage.tsx';
import { Documents, type Document } from './ComplianceDocuments.tsx';

type Result = { checkId: string; title: string; status: string; measured: string; failures: number };
export type Control = { id: string; title: string; statement: string; kind: string; frameworks: Record<string, string[]>; status: string; results: Result[]; evidence: Document[] };
type Run = { id: string; startedAt: string; passed: number; failed: number; sha256: string };
type Review = { id: string; title: string; state: 'open' | 'completed'; dueAt: string; createdAt: string; completedAt: string | null; pending: number; kept: number; revoked: number };
type ReviewItem = { userId: string; role: string; decision: 'pending' | 'keep' | 'revoke'; decidedBy: string | null; note: string | null };
type Risk = { id: string; title: string; inherent: number; residual: number; treatmentHolds: boolean };

const FRAMEWORK_NAMES: Record<string, string> = { soc2: 'SOC 2', iso27001: 'ISO 27001', gdpr: 'GDPR', asvs: 'ASVS' };
const tone = (status: string) => (status === 'pass' ? 'ok' : status === 'fail' ? 'bad' : status === 'manual' ? 'info' : 'muted');

/** The compliance center: controls with their live evidence, access reviews, documents, and the reports buyers ask for. */
export default function Compliance() {
  return <TabbedPage area="compliance" panels={{ controls: () => <Controls />, reviews: () => <Reviews />, documents: () => <Documents />, reports: () => <Reports /> }} />;
}

function Controls() {
  const { t } = useTranslation();
  const format = useFormat();
  const { can } = useSession();
  const controls = useLoad<{ run: Run | null; controls: Control[] }>('/api/v1/compliance/controls');
  const run = useAction(async () => {
    await post('/api/v1/compliance/runs');
    controls.reload();
  });
  const latest = controls.data?.run;
  return (
    <section className="panel">
      <p data-testid="compliance-run">{latest ? t('compliance.lastRun', { when: format.time(latest.startedAt), passed: latest.passed, failed: latest.failed, sha: latest.sha256.slice(0, 16) }) : t('compliance.noRun')}</p>
      {can('security:manage') ? (
        <button type="button" className="primary" onClick={() => void run.run()} disabled={run.busy}>
          {t('compliance.runNow')}
        </button>
      ) : null}
      <ProblemNote problem={controls.problem ?? run.problem} />
      <table data-testid="controls-table">
        <Head cells={[t('compliance.control'), t('compliance.title'), t('compliance.status'), t('compliance.measured')]} />
        <tbody>
          {(controls.data?.controls ?? []).map((control) => (
            <tr key={control.id}>
              <td>
                <code className="id">{control.id}</code>
              </td>
              <td>
                <strong>{control.title}</strong>
                <details>
                  <summary>{t('compliance.frameworks')}</summary>
                  <p className="hint">{control.statement}</p>
                  <p className="hint">
                    {Object.entries(control.frameworks)
                      .filter(([, ids]) => ids.length > 0)
                      .map(([name, ids]) => `${FRAMEWORK_NAMES[name] ?? name}: ${ids.join(', ')}`)
                      .join(' · ')}
                  </p>
                </details>
              </td>
              <td>
                <Badge tone={tone(control.status)}>{t(`compliance.statusName.${control.status}`)}</Badge>
              </td>
              <td>
                {control.kind === 'organisational' ? (
                  control.evidence.length === 0 ? (
                    <span className="hint">{t('compliance.noEvidence')}</span>
                  ) : (
                    control.evidence.map((document) => (
                      <div key={document.id}>
                        {document.title} <span className="hint">({document.evidenceDate}, {t('compliance.validTo', { date: document.expiresOn })})</span>
                      </div>
                    ))
                  )
                ) : (
                  control.results.map((result) => (
                    <div key={result.checkId}>
                      <Badge tone={tone(result.status)}>{t(`compliance.statusName.${result.status}`)}</Badge> {result.measured}
                    </div>
                  ))
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function Reviews() {
  const { t } = useTranslation();
  const format = useFormat();
  const { can } = useSession();
  const [openId, setOpenId] = useState<string | null>(null);
  const reviews = useLoad<{ items: Review[] }>('/api/v1/access-reviews');
  const create = useAction(async (body: { title: string; dueInDays: number }) => {
    const review = await post<Review>('/api/v1/access-reviews', body);
    reviews.reload();
    setOpenId(review.id);
  });
  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    void create.run({ title: String(form.get('title') ?? '').trim(), dueInDays: Number(form.get('dueInDays') ?? 14) });
  };
  if (openId) return <ReviewDetail id={openId} onBack={() => (setOpenId(null), reviews.reload())} />;
  return (
    <section className="panel">
      <h2>{t('compliance.reviews')}</h2>
      <ProblemNote problem={reviews.problem} />
      <table data-testid="reviews-table">
        <Head cells={[t('compliance.titleField'), t('compliance.status'), t('compliance.due'), t('compliance.decision')]} />
        <tbody>
          {(reviews.data?.items ?? []).map((review) => (
            <tr key={review.id}>
              <td>
                <a href={`#${review.id}`} onClick={(event) => (event.preventDefault(), setOpenId(review.id))}>
                  {review.title}
                </a>
              </td>
              <td>{review.state === 'completed' ? format.time(review.completedAt ?? review.dueAt) : review.state}</td>
              <td>{format.time(review.dueAt)}</td>
              <td>{t('compliance.progress', { pending: review.pending, kept: review.kept, revoked: review.revoked })}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {reviews.data?.items.length === 0 ? <p className="hint">{t('compliance.noReviews')}</p> : null}
      {can('users:manage') ? (
        <form className="inline-form" onSubmit={submit} aria-label={t('compliance.openReview')}>
          <Field label={t('compliance.titleField')} name="title" problem={create.problem}>
            {(attributes) => <input {...attributes} required maxLength={200} />}
          </Field>
          <Field label={t('compliance.dueInDays')} name="dueInDays" problem={create.problem}>
            {(attributes) => <input {...attributes} type="number" min={1} max={90} defaultValue={14} />}
          </Field>
          <button type="submit" className="primary" disabled={create.busy}>
            {t('compliance.openReview')}
          </button>
        </form>
      ) : null}
      <ProblemNote problem={create.problem} />
    </section>
  );
}

function ReviewDetail({ id, onBack }: { id: string; onBack: () => void }) {
  const { t } = useTranslation();
  const { can } = useSession();
  const review = useLoad<Review & { items: ReviewItem[] }>(`/api/v1/access-reviews/${id}`);
  const users = useLoad<{ items: { id: string; displayName: string }[] }>('/api/v1/users?limit=200');
  const names = new Map((users.data?.items ?? []).map((user) => [user.id, user.displayName]));
  const decide = useAction(async (userId: string, decision: 'keep' | 'revoke', note: string) => {
    await post(`/api/v1/access-reviews/${id}/users/${userId}`, note ? { decision, note } : { decision });
    review.reload();
  });
  const complete = useAction(async () => {
    await post(`/api/v1/access-reviews/${id}/complete`);
    review.reload();
  });
  const [notes, setNotes] = useState<Record<string, string>>({});
  const manage = can('users:manage') && review.data?.state === 'open';
  return (
    <section className="panel">
      <button type="button" onClick={onBack}>
        {t('compliance.back')}
      </button>
      <h2>{review.data?.title}</h2>
      <ProblemNote problem={review.problem ?? decide.problem ?? complete.problem} />
      <table data-testid="review-items">
        <Head cells={[t('compliance.user'), t('compliance.role'), t('compliance.decision'), t('compliance.note'), '']} />
        <tbody>
          {(review.data?.items ?? []).map((item) => (
            <tr key={item.userId}>
              <td>{names.get(item.userId) ?? item.userId}</td>
              <td>{item.role}</td>
              <td>
                <Badge tone={item.decision === 'keep' ? 'ok' : item.decision === 'revoke' ? 'bad' : 'muted'}>{t(`compliance.decisionName.${item.decision}`)}</Badge>
              </td>
              <td>{item.decision === 'pending' && manage ? <input aria-label={`${t('compliance.note')}: ${names.get(item.userId) ?? item.userId}`} maxLength={500} value={notes[item.userId] ?? ''} onChange={(event) => setNotes({ ...notes, [item.userId]: event.target.value })} /> : (item.note ?? '')}</td>
              <td className="row">
                {item.decision === 'pending' && manage ? (
                  <>
                    <button type="button" onClick={() => void decide.run(item.userId, 'keep', notes[item.userId] ?? '')} disabled={decide.busy}>
                      {t('compliance.keep')}
                    </button>
                    <button type="button" className="danger" onClick={() => void decide.run(item.userId, 'revoke', notes[item.userId] ?? '')} disabled={decide.busy}>
                      {t('compliance.revoke')}
                    </button>
                  </>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {manage ? (
        <button type="button" className="primary" onClick={() => void complete.run()} disabled={complete.busy || (review.data?.pending ?? 1) > 0}>
          {t('compliance.complete')}
        </button>
      ) : null}
    </section>
  );
}

function Reports() {
  const { t } = useTranslation();
  const risks = useLoad<{ risks: Risk[] }>('/api/v1/compliance/risk-register');
  return (
    <section className="panel">
      <h2>{t('compliance.reports')}</h2>
      <ul data-testid="report-links">
        <li>
          {t('compliance.trustReport')}: <a href="/api/v1/compliance/trust-report?format=pdf">PDF</a> · <a href="/api/v1/compliance/trust-report?format=html">HTML</a> · <a href="/api/v1/compliance/trust-report">JSON</a>
        </li>
        <li>
          {t('compliance.questionnaire')}: <a href="/api/v1/compliance/questionnaire?format=xlsx">XLSX</a> · <a href="/api/v1/compliance/questionnaire?format=csv">CSV</a>
        </li>
        <li>
          <a href="/api/v1/compliance/statement-of-applicability?format=csv">{t('compliance.soa')}</a>
        </li>
      </ul>
      <h2>{t('compliance.risks')}</h2>
      <ProblemNote problem={risks.problem} />
      <table data-testid="risks-table">
        <Head cells={[t('compliance.risk'), t('compliance.inherent'), t('compliance.residual'), t('compliance.treatmentHolds')]} />
        <tbody>
          {(risks.data?.risks ?? []).map((risk) => (
            <tr key={risk.id}>
              <td>
                <code className="id">{risk.id}</code> {risk.title}
              </td>
              <td>{risk.inherent}</td>
              <td>{risk.residual}</td>
              <td>
                <Badge tone={risk.treatmentHolds ? 'ok' : 'bad'}>{risk.treatmentHolds ? t('compliance.yes') : t('compliance.no')}</Badge>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
