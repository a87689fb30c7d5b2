import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { post } from '../api.ts';
import { Badge, Field, Head, ProblemNote, useAction, useFormat, useLoad, useNow } from '../components/ui.tsx';

/** Privacy center, breaches tab: the register, the 72-hour clock, decisions and notification. */

type Breach = { id: string; reference: string; title: string; status: string; detectedAt: string; awareAt: string; authorityDueAt: string; hoursLeft: number; overdue: boolean; authorityDecision: string | null; authorityNotifiedAt: string | null };

/** One breach: the decisions on notifying the authority and the people, each with its reason; notified; closed. */
function BreachCase({ id, onChange }: { id: string; onChange: () => void }) {
  const { t } = useTranslation();
  const format = useFormat();
  const breach = useLoad<Breach & { description: string; timeline?: { at: string; entry?: string; step?: string }[]; status: string }>(`/api/v1/privacy/breaches/${id}`);
  const act = useAction(async (path: string, body?: unknown) => {
    await post(`/api/v1/privacy/breaches/${id}/${path}`, body);
    breach.reload();
    onChange();
  });
  const data = breach.data;
  if (!data) return <ProblemNote problem={breach.problem} />;
  return (
    <article className="case" aria-label={t('breach.case', { reference: data.reference })}>
      <h3>
        {data.reference} · {data.title} · <span data-testid="breach-status">{data.status}</span>
      </h3>
      <p>{data.description}</p>
      <form
        className="inline-form"
        aria-label={t('breach.decide')}
        onSubmit={(event) => {
          event.preventDefault();
          const form = new FormData(event.currentTarget);
          void act.run('decisions', { authority: { decision: String(form.get('decision')), reason: String(form.get('reason')) } });
        }}
        noValidate
      >
        <Field label={t('breach.authorityDecision')} name="decision" problem={act.problem}>
          {(attributes) => (
            <select {...attributes} name="decision" defaultValue={data.authorityDecision ?? 'notify'}>
              <option value="notify">{t('breach.notify')}</option>
              <option value="not_required">{t('breach.notRequired')}</option>
            </select>
          )}
        </Field>
        <Field label={t('breach.reason')} name="authority" problem={act.problem} hint={t('breach.reasonHint')}>
          {(attributes) => <input {...attributes} name="reason" required minLength={10} />}
        </Field>
        <button type="submit" disabled={act.busy}>
          {t('breach.record')}
        </button>
      </form>
      <div className="row wrap">
        {data.authorityDecision === 'notify' && !data.authorityNotifiedAt ? (
          <button type="button" className="primary" onClick={() => void act.run('notified', { to: 'authority', at: new Date().toISOString() })} disabled={act.busy}>
            {t('breach.markNotified')}
          </button>
        ) : null}
        {data.authorityNotifiedAt ? <p>{t('breach.notifiedAt', { at: format.time(data.authorityNotifiedAt) })}</p> : null}
        <a className="button" href={`/api/v1/privacy/breaches/${id}/notification?to=authority`}>
          {t('breach.notificationText')}
        </a>
        {data.status !== 'closed' ? (
          <button type="button" onClick={() => void act.run('close')} disabled={act.busy}>
            {t('breach.close')}
          </button>
        ) : null}
      </div>
      <ProblemNote problem={act.problem} />
    </article>
  );
}

export function Breaches() {
  const { t } = useTranslation();
  const format = useFormat();
  const now = useNow(30_000);
  const list = useLoad<{ items: Breach[] }>('/api/v1/privacy/breaches');
  const [open, setOpen] = useState<string | null>(null);
  const report = useAction(async (body: Record<string, unknown>) => {
    const created = await post<Breach>('/api/v1/privacy/breaches', body);
    list.reload();
    setOpen(created.id);
  });
  return (
    <section className="panel">
      <h2>{t('privacy.breaches')}</h2>
      <ProblemNote problem={list.problem} />
      <table>
        <Head cells={[t('privacy.reference'), t('privacy.title'), t('admin.status'), t('privacy.authorityDue'), t('common.actions')]} />
        <tbody>
          {(list.data?.items ?? []).map((breach) => {
            const msLeft = Date.parse(breach.authorityDueAt) - now;
            const settled = breach.authorityNotifiedAt !== null || breach.authorityDecision === 'not_required';
            return (
              <tr key={breach.id}>
                <td>{breach.reference}</td>
                <td>{breach.title}</td>
                <td>{breach.status}</td>
                <td>
                  {format.time(breach.authorityDueAt)}{' '}
                  {settled ? (
                    <Badge tone="ok">{breach.authorityNotifiedAt ? t('privacy.notified') : t('privacy.notRequired')}</Badge>
                  ) : (
                    <Badge tone={msLeft < 0 ? 'bad' : msLeft < 24 * 3_600_000 ? 'warn' : 'info'}>
                      <span data-testid="breach-countdown">{msLeft < 0 ? t('privacy.overdueBy', { hours: Math.ceil(-msLeft / 3_600_000) }) : t('privacy.hoursLeft', { hours: Math.floor(msLeft / 3_600_000), minutes: Math.floor((msLeft % 3_600_000) / 60_000) })}</span>
                    </Badge>
                  )}
                </td>
                <td>
                  <button type="button" className="small" onClick={() => setOpen(open === breach.id ? null : breach.id)} aria-expanded={open === breach.id}>
                    {t('privacy.open')}
                  </button>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {open ? <BreachCase key={open} id={open} onChange={list.reload} /> : null}
      <form
        className="grid-form"
        aria-label={t('privacy.reportBreach')}
        onSubmit={(event) => {
          event.preventDefault();
          const form = new FormData(event.currentTarget);
          const detected = String(form.get('detectedAt'));
          void report.run({ title: String(form.get('title')), description: String(form.get('description')), detectedAt: detected ? new Date(detected).toISOString() : new Date().toISOString() });
        }}
      >
        <h3>{t('privacy.reportBreach')}</h3>
        <Field label={t('privacy.title')} name="title" problem={report.problem}>
          {(attributes) => <input {...attributes} required />}
        </Field>
        <Field label={t('privacy.detectedAt')} name="detectedAt" problem={report.problem}>
          {(attributes) => <input {...attributes} type="datetime-local" />}
        </Field>
        <Field label={t('privacy.description')} name="description" problem={report.problem}>
          {(attributes) => <textarea {...attributes} rows={3} required />}
        </Field>
        <button type="submit" className="primary" disabled={report.busy}>
          {t('privacy.reportBreach')}
        </button>
        <ProblemNote problem={report.problem} />
      </form>
    </section>
  );
}
