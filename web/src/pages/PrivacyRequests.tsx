import { useState, type FormEvent } from 'react';
import { useTranslation } from 'react-i18next';
import { fetchFile, post } from '../api.ts';
import { Badge, Field, Head, ProblemNote, useAction, useFormat, useLoad } from '../components/ui.tsx';

/** Privacy center, requests tab: data-subject cases from intake to answer. */

type Request = { id: string; reference: string; kind: string; status: string; channel: string; receivedAt: string; dueAt: string; overdue: boolean; daysLeft: number; verifiedAt?: string | null; subjectsFound?: number; outcome?: string | null };
export function Requests() {
  const { t } = useTranslation();
  const format = useFormat();
  const list = useLoad<{ items: Request[] }>('/api/v1/privacy/requests');
  const [open, setOpen] = useState<string | null>(null);
  const create = useAction(async (body: Record<string, unknown>) => {
    const created = await post<Request>('/api/v1/privacy/requests', body);
    list.reload();
    setOpen(created.id);
  });
  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const text = (name: string) => String(form.get(name) ?? '').trim();
    const identifiers: Record<string, string> = {};
    if (text('phone')) Object.assign(identifiers, { phone: text('phone'), region: text('region') || 'NO' });
    if (text('email')) identifiers.email = text('email');
    void create.run({ kind: text('kind'), channel: text('channel'), requester: { name: text('requesterName') }, identifiers });
  };
  return (
    <section className="panel">
      <h2>{t('privacy.requests')}</h2>
      <ProblemNote problem={list.problem} />
      <table>
        <Head cells={[t('privacy.reference'), t('privacy.kind'), t('admin.status'), t('privacy.received'), t('privacy.due'), t('common.actions')]} />
        <tbody>
          {(list.data?.items ?? []).map((request) => (
            <tr key={request.id}>
              <td>{request.reference}</td>
              <td>{t(`requestKind.${request.kind}`)}</td>
              <td>{t(`requestStatus.${request.status}`)}</td>
              <td>{format.date(request.receivedAt)}</td>
              <td>
                {format.date(request.dueAt)}{' '}
                {request.status === 'completed' || request.status === 'rejected' ? null : (
                  <Badge tone={request.overdue ? 'bad' : request.daysLeft <= 7 ? 'warn' : 'ok'}>{request.overdue ? t('privacy.overdue') : t('privacy.daysLeft', { count: request.daysLeft })}</Badge>
                )}
              </td>
              <td>
                <button type="button" className="small" onClick={() => setOpen(open === request.id ? null : request.id)} aria-expanded={open === request.id}>
                  {t('privacy.open')}
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {open ? <RequestCase key={open} id={open} onChange={list.reload} /> : null}
      <form className="grid-form" onSubmit={submit} aria-label={t('privacy.newRequest')}>
        <h3>{t('privacy.newRequest')}</h3>
        <Field label={t('privacy.kind')} name="kind" problem={create.problem}>
          {(attributes) => (
            <select {...attributes} defaultValue="erasure">
              {['access', 'portability', 'rectification', 'restriction', 'objection', 'erasure'].map((kind) => (
                <option key={kind} value={kind}>
                  {t(`requestKind.${kind}`)}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field label={t('privacy.channel')} name="channel" problem={create.problem}>
          {(attributes) => (
            <select {...attributes} defaultValue="email">
              {['email', 'phone', 'letter', 'web', 'in_person', 'other'].map((channel) => (
                <option key={channel} value={channel}>
                  {t(`channel.${channel}`)}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field label={t('privacy.requesterName')} name="requesterName" problem={create.problem}>
          {(attributes) => <input {...attributes} required autoComplete="off" />}
        </Field>
        <Field label={t('privacy.subjectPhone')} name="phone" problem={create.problem}>
          {(attributes) => <input {...attributes} inputMode="tel" autoComplete="off" />}
        </Field>
        <Field label={t('admin.region')} name="region" problem={create.problem}>
          {(attributes) => <input {...attributes} defaultValue="NO" maxLength={2} />}
        </Field>
        <Field label={t('privacy.subjectEmail')} name="email" problem={create.problem}>
          {(attributes) => <input {...attributes} type="email" autoComplete="off" />}
        </Field>
        <button type="submit" className="primary" disabled={create.busy}>
          {t('privacy.register')}
        </button>
        <ProblemNote problem={create.problem} />
      </form>
    </section>
  );
}

/** One case: verify the requester, then act (export, erase, restrict, object), then close. */
function RequestCase({ id, onChange }: { id: string; onChange: () => void }) {
  const { t } = useTranslation();
  const format = useFormat();
  const detail = useLoad<Request & { timeline: { at: string; actor: string; step: string }[] }>(`/api/v1/privacy/requests/${id}`);
  const [message, setMessage] = useState<string>();
  const act = useAction(async (action: string, body?: unknown) => {
    const answer = await post<Record<string, unknown>>(`/api/v1/privacy/requests/${id}/${action}`, body);
    if (action === 'export') {
      const download = answer as { token: string; files: number };
      // The one-time token goes in a POST body, never in a URL (no log or history keeps it).
      const bundle = await fetchFile('POST', '/api/v1/privacy/downloads', { token: download.token });
      const url = URL.createObjectURL(bundle);
      const link = document.createElement('a');
      link.href = url;
      link.download = `${detail.data?.reference ?? 'export'}.zip`;
      link.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      setMessage(t('privacy.exported', { files: download.files }));
    } else if (action === 'erase') {
      setMessage(t('privacy.erased', { count: Number(answer.erased ?? 0) }));
    } else {
      setMessage(t('common.saved'));
    }
    detail.reload();
    onChange();
  });
  const request = detail.data;
  if (!request) return <ProblemNote problem={detail.problem} />;
  const verified = request.status === 'verified';
  const closed = request.status === 'completed' || request.status === 'rejected';
  return (
    <article className="case" aria-label={t('privacy.case', { reference: request.reference })}>
      <h3>
        {request.reference} · {t(`requestKind.${request.kind}`)} · <span data-testid="request-status">{t(`requestStatus.${request.status}`)}</span>
      </h3>
      <p className="hint">{request.verifiedAt ? t('privacy.subjectsFound', { count: request.subjectsFound ?? 0 }) : t('privacy.verifyFirst')}</p>
      {request.status === 'received' ? (
        <form
          className="inline-form"
          onSubmit={(event) => {
            event.preventDefault();
            const form = new FormData(event.currentTarget);
            void act.run('verify', { method: String(form.get('method')), note: String(form.get('note') || '') || undefined });
          }}
        >
          <Field label={t('privacy.verifyMethod')} name="method" problem={act.problem}>
            {(attributes) => (
              <select {...attributes} defaultValue="known_channel">
                {['known_channel', 'document', 'callback', 'signed_letter', 'account_login', 'other'].map((method) => (
                  <option key={method} value={method}>
                    {t(`verifyMethod.${method}`)}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field label={t('privacy.verifyNote')} name="note" problem={act.problem}>
            {(attributes) => <input {...attributes} autoComplete="off" />}
          </Field>
          <button type="submit" className="primary" disabled={act.busy}>
            {t('privacy.verify')}
          </button>
        </form>
      ) : null}
      {verified ? (
        <div className="row wrap">
          {request.kind === 'access' || request.kind === 'portability' ? (
            <button type="button" onClick={() => void act.run('export')} disabled={act.busy}>
              {t('privacy.export')}
            </button>
          ) : null}
          {request.kind === 'erasure' ? (
            <button type="button" className="danger" onClick={() => confirm(t('privacy.confirmErase')) && void act.run('erase')} disabled={act.busy}>
              {t('privacy.erase')}
            </button>
          ) : null}
          {request.kind === 'restriction' ? (
            <button type="button" onClick={() => void act.run('restrict')} disabled={act.busy}>
              {t('privacy.restrict')}
            </button>
          ) : null}
          {request.kind === 'objection' ? (
            <button type="button" onClick={() => void act.run('object')} disabled={act.busy}>
              {t('privacy.object')}
            </button>
          ) : null}
          <button type="button" onClick={() => void act.run('close', { status: 'completed', outcome: 'Handled as requested.' })} disabled={act.busy}>
            {t('privacy.close')}
          </button>
        </div>
      ) : null}
      {closed ? <p>{request.outcome}</p> : null}
      {message ? (
        <p role="status" data-testid="case-message">
          {message}
        </p>
      ) : null}
      <ProblemNote problem={act.problem} />
      <h4>{t('privacy.timeline')}</h4>
      <ol className="timeline">
        {(request.timeline ?? []).map((entry, index) => (
          <li key={index}>
            {format.time(entry.at)} — {t(`step.${entry.step}`, { defaultValue: entry.step })} ({entry.actor})
          </li>
        ))}
      </ol>
    </article>
  );
}
