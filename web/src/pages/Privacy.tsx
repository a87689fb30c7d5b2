import { useEffect, useState, type FormEvent } from 'react';
import { useTranslation } from 'react-i18next';
import { fetchFile, get, post, put } from '../api.ts';
import { Badge, Field, Head, ProblemNote, Tabs, useAction, useFormat, useLoad, useNow } from '../components/ui.tsx';
import { navigate, usePath } from '../router.ts';

type Request = { id: string; reference: string; kind: string; status: string; channel: string; receivedAt: string; dueAt: string; overdue: boolean; daysLeft: number; verifiedAt?: string | null; subjectsFound?: number; outcome?: string | null };
type Policy = { category: string; retainDays: number; action: string; updatedAt: string };
type Sweep = { id: string; dryRun: boolean; state: string; startedAt: string; finishedAt: string | null; report: Record<string, unknown>; errorCode: string | null };
type Processor = { id: string; name: string; service: string; location: string; transferSafeguard: string | null; dpaExpiresOn: string | null };
type Breach = { id: string; reference: string; title: string; status: string; detectedAt: string; awareAt: string; authorityDueAt: string; hoursLeft: number; overdue: boolean; authorityDecision: string | null; authorityNotifiedAt: string | null };

const TABS = ['requests', 'retention', 'records', 'processors', 'breaches'] as const;
type Tab = (typeof TABS)[number];
const CATEGORIES = ['contacts_inactive', 'interactions', 'notes', 'recordings', 'audit_events', 'import_rejects', 'exports'] as const;

/** The privacy center: data-subject cases, retention with dry-run, records of processing, processors, breaches. */
export default function Privacy() {
  const { t } = useTranslation();
  const path = usePath();
  const tab = (TABS.find((key) => path === `/privacy/${key}`) ?? 'requests') as Tab;
  return (
    <main>
      <h1>{t('nav.privacy')}</h1>
      <Tabs label={t('nav.privacy')} tabs={TABS.map((key) => ({ key, label: t(`privacy.tab.${key}`) }))} current={tab} onChange={(key) => navigate(`/privacy/${key}`)} />
      <div role="tabpanel">
        {tab === 'requests' ? (
          <Requests />
        ) : tab === 'retention' ? (
          <>
            <Retention />
            <LegalHolds />
          </>
        ) : tab === 'records' ? <Records /> : tab === 'processors' ? <Processors /> : <Breaches />}
      </div>
    </main>
  );
}

function Requests() {
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

type Hold = { id: string; scope: string; contactId: string | null; campaignId: string | null; reason: string; createdAt: string; releasedAt: string | null };

/** Legal holds: what they cover is kept from retention and erasure until released. */
function LegalHolds() {
  const { t } = useTranslation();
  const format = useFormat();
  const holds = useLoad<{ items: Hold[] }>('/api/v1/privacy/legal-holds');
  const campaigns = useLoad<{ items: { id: string; name: string }[] }>('/api/v1/campaigns');
  const place = useAction(async (body: Record<string, unknown>) => {
    await post('/api/v1/privacy/legal-holds', body);
    holds.reload();
  });
  const release = useAction(async (id: string) => {
    await post(`/api/v1/privacy/legal-holds/${id}/release`);
    holds.reload();
  });
  const campaignName = (id: string | null) => campaigns.data?.items.find((campaign) => campaign.id === id)?.name ?? id ?? '—';
  return (
    <section className="panel">
      <h2>{t('holds.title')}</h2>
      <p className="hint">{t('holds.explain')}</p>
      <ProblemNote problem={holds.problem ?? release.problem} />
      <table>
        <Head cells={[t('holds.covers'), t('holds.reason'), t('holds.placed'), t('admin.status')]} />
        <tbody>
          {(holds.data?.items ?? []).map((hold) => (
            <tr key={hold.id}>
              <td>{hold.campaignId ? t('holds.campaign', { name: campaignName(hold.campaignId) }) : t('holds.contact')}</td>
              <td>{hold.reason}</td>
              <td>{format.time(hold.createdAt)}</td>
              <td>
                {hold.releasedAt ? (
                  t('holds.released', { at: format.time(hold.releasedAt) })
                ) : (
                  <button type="button" className="small" onClick={() => void release.run(hold.id)} disabled={release.busy}>
                    {t('holds.release')}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form
        className="inline-form"
        aria-label={t('holds.place')}
        onSubmit={(event) => {
          event.preventDefault();
          const form = new FormData(event.currentTarget);
          void place.run({ campaignId: String(form.get('campaignId')), reason: String(form.get('reason')) });
        }}
        noValidate
      >
        <h3>{t('holds.place')}</h3>
        <Field label={t('agent.campaign')} name="campaignId" problem={place.problem}>
          {(attributes) => (
            <select {...attributes} required>
              {(campaigns.data?.items ?? []).map((campaign) => (
                <option key={campaign.id} value={campaign.id}>
                  {campaign.name}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field label={t('holds.reason')} name="reason" problem={place.problem}>
          {(attributes) => <input {...attributes} required />}
        </Field>
        <button type="submit" className="primary" disabled={place.busy}>
          {t('holds.place')}
        </button>
        <ProblemNote problem={place.problem} />
      </form>
    </section>
  );
}

function Retention() {
  const { t } = useTranslation();
  const format = useFormat();
  const policies = useLoad<{ items: Policy[] }>('/api/v1/privacy/retention-policies');
  const sweeps = useLoad<{ items: Sweep[] }>('/api/v1/privacy/retention-sweeps');
  const [watching, setWatching] = useState<Sweep>();
  const save = useAction(async (category: string, retainDays: number, action: string) => {
    await put(`/api/v1/privacy/retention-policies/${category}`, { retainDays, action });
    policies.reload();
  });
  const sweep = useAction(async (dryRun: boolean) => {
    const started = await post<{ id: string }>('/api/v1/privacy/retention-sweeps', { dryRun });
    setWatching(await get<Sweep>(`/api/v1/privacy/retention-sweeps/${started.id}`));
  });
  useEffect(() => {
    if (!watching || watching.finishedAt) return;
    const timer = setTimeout(() => void get<Sweep>(`/api/v1/privacy/retention-sweeps/${watching.id}`).then(setWatching), 1000);
    return () => clearTimeout(timer);
  }, [watching]);
  useEffect(() => {
    if (watching?.finishedAt) sweeps.reload();
  }, [watching?.finishedAt, sweeps.reload]);
  const byCategory = new Map((policies.data?.items ?? []).map((policy) => [policy.category, policy]));
  return (
    <section className="panel">
      <h2>{t('privacy.retention')}</h2>
      <ProblemNote problem={policies.problem ?? save.problem} />
      <table>
        <Head cells={[t('privacy.category'), t('privacy.retainDays'), t('privacy.action'), t('common.actions')]} />
        <tbody>
          {CATEGORIES.map((category) => {
            const policy = byCategory.get(category);
            return (
              <tr key={category}>
                <td>{t(`category.${category}`)}</td>
                <td colSpan={3}>
                  <form
                    className="row"
                    onSubmit={(event) => {
                      event.preventDefault();
                      const form = new FormData(event.currentTarget);
                      void save.run(category, Number(form.get('retainDays')), String(form.get('action')));
                    }}
                  >
                    <label className="visually-hidden" htmlFor={`days-${category}`}>
                      {t('privacy.retainDaysFor', { category: t(`category.${category}`) })}
                    </label>
                    <input id={`days-${category}`} name="retainDays" type="number" min={1} defaultValue={policy?.retainDays ?? ''} placeholder={t('privacy.noPolicy')} required />
                    <label className="visually-hidden" htmlFor={`action-${category}`}>
                      {t('privacy.actionFor', { category: t(`category.${category}`) })}
                    </label>
                    <select id={`action-${category}`} name="action" defaultValue={policy?.action ?? 'delete'}>
                      <option value="delete">{t('privacy.delete')}</option>
                      <option value="anonymise">{t('privacy.anonymise')}</option>
                    </select>
                    <button type="submit" className="small" disabled={save.busy}>
                      {t('common.save')}
                    </button>
                  </form>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <div className="row">
        <button type="button" onClick={() => void sweep.run(true)} disabled={sweep.busy}>
          {t('privacy.dryRun')}
        </button>
        <button type="button" className="danger" onClick={() => confirm(t('privacy.confirmSweep')) && void sweep.run(false)} disabled={sweep.busy}>
          {t('privacy.sweepNow')}
        </button>
      </div>
      <ProblemNote problem={sweep.problem} />
      {watching ? (
        <div className="sweep" aria-live="polite">
          <p>
            {watching.dryRun ? t('privacy.dryRun') : t('privacy.sweepNow')} · {watching.state}
          </p>
          {watching.finishedAt ? <pre data-testid="sweep-report">{JSON.stringify(watching.report, null, 2)}</pre> : null}
        </div>
      ) : null}
      <h3>{t('privacy.sweeps')}</h3>
      <ul>
        {(sweeps.data?.items ?? []).slice(0, 10).map((item) => (
          <li key={item.id}>
            {format.time(item.startedAt)} · {item.dryRun ? t('privacy.dryRun') : t('privacy.sweepNow')} · {item.state}
          </li>
        ))}
      </ul>
    </section>
  );
}

function Records() {
  const { t } = useTranslation();
  return (
    <section className="panel">
      <h2>{t('privacy.records')}</h2>
      <p>{t('privacy.recordsExplain')}</p>
      <p className="row">
        <a className="button" href="/api/v1/privacy/records-of-processing?format=pdf">
          {t('privacy.downloadPdf')}
        </a>
        <a className="button" href="/api/v1/privacy/records-of-processing?format=json">
          {t('privacy.downloadJson')}
        </a>
      </p>
    </section>
  );
}

function Processors() {
  const { t } = useTranslation();
  const format = useFormat();
  const list = useLoad<{ items: Processor[] }>('/api/v1/privacy/processors');
  const add = useAction(async (body: Record<string, unknown>) => {
    await post('/api/v1/privacy/processors', body);
    list.reload();
  });
  return (
    <section className="panel">
      <h2>{t('privacy.processors')}</h2>
      <ProblemNote problem={list.problem} />
      <table>
        <Head cells={[t('admin.name'), t('privacy.service'), t('privacy.location'), t('privacy.dpaExpires')]} />
        <tbody>
          {(list.data?.items ?? []).map((processor) => (
            <tr key={processor.id}>
              <td>{processor.name}</td>
              <td>{processor.service}</td>
              <td>{processor.location}</td>
              <td>{format.date(processor.dpaExpiresOn)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <form
        className="inline-form"
        aria-label={t('privacy.addProcessor')}
        onSubmit={(event) => {
          event.preventDefault();
          const form = new FormData(event.currentTarget);
          void add.run({ name: String(form.get('name')), service: String(form.get('service')), location: String(form.get('location')).toUpperCase() });
        }}
      >
        <h3>{t('privacy.addProcessor')}</h3>
        <Field label={t('admin.name')} name="name" problem={add.problem}>
          {(attributes) => <input {...attributes} required />}
        </Field>
        <Field label={t('privacy.service')} name="service" problem={add.problem}>
          {(attributes) => <input {...attributes} required />}
        </Field>
        <Field label={t('privacy.location')} name="location" problem={add.problem} hint="NO, SE, US …">
          {(attributes) => <input {...attributes} required maxLength={2} />}
        </Field>
        <button type="submit" className="primary" disabled={add.busy}>
          {t('privacy.addProcessor')}
        </button>
        <ProblemNote problem={add.problem} />
      </form>
    </section>
  );
}

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

function Breaches() {
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

