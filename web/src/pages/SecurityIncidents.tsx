import { useState, type FormEvent } from 'react';
import { useTranslation } from 'react-i18next';
import { post } from '../api.ts';
import { Badge, Field, Head, ProblemNote, useAction, useFormat, useLoad } from '../components/ui.tsx';
import { useSession } from '../App.tsx';

type Severity = 'low' | 'medium' | 'high' | 'critical';
type Alert = { id: string; rule: string; severity: Severity; subject: string; summary: string; state: 'open' | 'acknowledged' | 'resolved'; hits: number; raisedAt: string };
type Incident = { id: string; reference: string; title: string; severity: Severity; state: 'open' | 'contained' | 'resolved'; openedAt: string; secondsToContain: number; breachId: string | null; personalData: boolean };
type Detail = Incident & { description: string; timeline: { at: string; actor: string; kind: string; entry: string }[]; alertIds: string[]; blockedNetworks: { id: string; network: string; liftedAt: string | null; expiresAt: string | null }[] };
type Stats = { count: number; medianSeconds: number | null };
type Status = { openAlerts: Record<Severity, number>; unacknowledged: number; openIncidents: number; containedIncidents: number; timeToAcknowledge: Stats; timeToContain: Stats; onCallNow: string[] };

const tone = (severity: Severity) => (severity === 'critical' || severity === 'high' ? 'bad' : severity === 'medium' ? 'warn' : 'info');
const duration = (seconds: number | null) => (seconds === null ? '—' : seconds < 120 ? `${seconds} s` : seconds < 7200 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds / 360) / 10} h`);

/** Alerts and incident cases: acknowledge, open a case, contain from it, resolve, and the response figures. */
export function AlertsAndIncidents() {
  const { t } = useTranslation();
  const { can } = useSession();
  const [open, setOpen] = useState<string | null>(null);
  if (!can('security:manage')) return <p role="alert">{t('common.noAccess')}</p>;
  return open ? <IncidentCase id={open} onBack={() => setOpen(null)} /> : <Overview onOpen={setOpen} />;
}

function Overview({ onOpen }: { onOpen: (id: string) => void }) {
  const { t } = useTranslation();
  const format = useFormat();
  const status = useLoad<Status>('/api/v1/security/status');
  const alerts = useLoad<{ items: Alert[] }>('/api/v1/security/alerts?limit=100');
  const incidents = useLoad<{ items: Incident[] }>('/api/v1/security/incidents?limit=100');
  const step = useAction(async (alert: Alert, verb: 'acknowledge' | 'resolve') => {
    await post(`/api/v1/security/alerts/${alert.id}/${verb}`);
    alerts.reload();
    status.reload();
  });
  const openCase = useAction(async (body: { title: string; severity: Severity; alertIds: string[] }) => {
    const created = await post<Incident>('/api/v1/security/incidents', body);
    onOpen(created.id);
  });
  const byHand = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    void openCase.run({ title: String(form.get('title') ?? '').trim(), severity: String(form.get('severity')) as Severity, alertIds: [] });
  };
  const figures = status.data;
  return (
    <section className="panel">
      <h2>{t('incidents.status')}</h2>
      <ProblemNote problem={status.problem} />
      {figures ? (
        <dl className="facts" data-testid="response-status">
          <dt>{t('incidents.openAlerts')}</dt>
          <dd>{figures.openAlerts.critical + figures.openAlerts.high + figures.openAlerts.medium + figures.openAlerts.low}</dd>
          <dt>{t('incidents.unacknowledged')}</dt>
          <dd>{figures.unacknowledged}</dd>
          <dt>{t('incidents.openIncidents')}</dt>
          <dd>{figures.openIncidents + figures.containedIncidents}</dd>
          <dt>{t('incidents.tta')}</dt>
          <dd>{duration(figures.timeToAcknowledge.medianSeconds)}</dd>
          <dt>{t('incidents.ttc')}</dt>
          <dd>{duration(figures.timeToContain.medianSeconds)}</dd>
          <dt>{t('incidents.onCall')}</dt>
          <dd>{figures.onCallNow.length > 0 ? figures.onCallNow.map((id) => id.slice(0, 8)).join(', ') : t('incidents.nobody')}</dd>
        </dl>
      ) : null}

      <h2>{t('incidents.alerts')}</h2>
      <ProblemNote problem={alerts.problem ?? step.problem ?? openCase.problem} />
      <table data-testid="alerts-table">
        <Head cells={[t('common.when'), t('incidents.severity'), t('incidents.rule'), t('incidents.hits'), t('incidents.state'), '']} />
        <tbody>
          {(alerts.data?.items ?? []).map((alert) => (
            <tr key={alert.id}>
              <td>{format.time(alert.raisedAt)}</td>
              <td>
                <Badge tone={tone(alert.severity)}>{alert.severity}</Badge>
              </td>
              <td title={alert.summary}>
                <code>{alert.rule}</code> <span className="hint">{alert.subject}</span>
              </td>
              <td>{alert.hits}</td>
              <td>{t(`incidents.stateName.${alert.state}`)}</td>
              <td className="row">
                {alert.state === 'open' ? (
                  <button type="button" onClick={() => void step.run(alert, 'acknowledge')}>
                    {t('incidents.acknowledge')}
                  </button>
                ) : null}
                {alert.state !== 'resolved' ? (
                  <>
                    <button type="button" onClick={() => void openCase.run({ title: alert.summary.slice(0, 200), severity: alert.severity, alertIds: [alert.id] })}>
                      {t('incidents.openCase')}
                    </button>
                    <button type="button" onClick={() => void step.run(alert, 'resolve')}>
                      {t('incidents.resolve')}
                    </button>
                  </>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {alerts.data?.items.length === 0 ? <p className="hint">{t('incidents.noAlerts')}</p> : null}

      <h2>{t('incidents.incidents')}</h2>
      <ProblemNote problem={incidents.problem} />
      <table data-testid="incidents-table">
        <Head cells={[t('incidents.reference'), t('incidents.title'), t('incidents.severity'), t('incidents.state'), t('incidents.opened'), t('incidents.ttc')]} />
        <tbody>
          {(incidents.data?.items ?? []).map((incident) => (
            <tr key={incident.id}>
              <td>
                <a href={`#${incident.reference}`} onClick={(event) => (event.preventDefault(), onOpen(incident.id))}>
                  {incident.reference}
                </a>
              </td>
              <td>{incident.title}</td>
              <td>
                <Badge tone={tone(incident.severity)}>{incident.severity}</Badge>
              </td>
              <td>{t(`incidents.stateName.${incident.state}`)}</td>
              <td>{format.time(incident.openedAt)}</td>
              <td>{duration(incident.secondsToContain)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {incidents.data?.items.length === 0 ? <p className="hint">{t('incidents.noIncidents')}</p> : null}
      <form className="inline-form" onSubmit={byHand} aria-label={t('incidents.newIncident')}>
        <Field label={t('incidents.title')} name="title" problem={openCase.problem}>
          {(attributes) => <input {...attributes} required maxLength={200} />}
        </Field>
        <Field label={t('incidents.severity')} name="severity" problem={openCase.problem}>
          {(attributes) => (
            <select {...attributes} defaultValue="medium">
              {(['low', 'medium', 'high', 'critical'] as const).map((value) => (
                <option key={value} value={value}>
                  {value}
                </option>
              ))}
            </select>
          )}
        </Field>
        <button type="submit" className="primary" disabled={openCase.busy}>
          {t('incidents.create')}
        </button>
      </form>
    </section>
  );
}

function IncidentCase({ id, onBack }: { id: string; onBack: () => void }) {
  const { t } = useTranslation();
  const format = useFormat();
  const incident = useLoad<Detail>(`/api/v1/security/incidents/${id}`);
  const [action, setAction] = useState<'revoke_user_access' | 'disable_user' | 'block_network' | 'pause_campaign'>('revoke_user_access');
  const act = useAction(async (url: string, body: unknown) => {
    await post(url, body);
    incident.reload();
    return true;
  });
  const lift = useAction(async (blockId: string) => {
    await post(`/api/v1/security/blocked-networks/${blockId}/lift`);
    incident.reload();
  });
  const submit = (event: FormEvent<HTMLFormElement>, url: string, build: (form: FormData) => unknown) => {
    event.preventDefault();
    const target = event.currentTarget;
    const form = new FormData(target);
    // Cleared only when it was carried out: a refused step keeps what was typed, beside its problem.
    void act.run(url, build(form)).then((done) => (done ? target.reset() : undefined));
  };
  const base = `/api/v1/security/incidents/${id}`;
  const data = incident.data;
  const text = (form: FormData, name: string) => String(form.get(name) ?? '').trim();
  return (
    <section className="panel">
      <button type="button" onClick={onBack}>
        {t('incidents.back')}
      </button>
      <ProblemNote problem={incident.problem ?? act.problem} />
      {data ? (
        <>
          <h2>
            {data.reference}: {data.title} <Badge tone={tone(data.severity)}>{data.severity}</Badge> <Badge tone={data.state === 'resolved' ? 'muted' : data.state === 'contained' ? 'ok' : 'warn'}>{t(`incidents.stateName.${data.state}`)}</Badge>
          </h2>
          {data.breachId ? <p role="status">{t('incidents.breachOpen')}</p> : null}
          {data.blockedNetworks.length > 0 ? (
            <>
              <h3>{t('incidents.blocks')}</h3>
              <ProblemNote problem={lift.problem} />
              <ul data-testid="incident-blocks">
                {data.blockedNetworks.map((block) => (
                  <li key={block.id}>
                    <code>{block.network}</code> {block.liftedAt ? <Badge tone="muted">{t('incidents.lifted')}</Badge> : block.expiresAt ? <span className="hint">{t('incidents.until', { when: format.time(block.expiresAt) })}</span> : null}{' '}
                    {!block.liftedAt ? (
                      <button type="button" onClick={() => void lift.run(block.id)} disabled={lift.busy}>
                        {t('incidents.lift')}
                      </button>
                    ) : null}
                  </li>
                ))}
              </ul>
            </>
          ) : null}
          <h3>{t('incidents.timeline')}</h3>
          <ol className="timeline" data-testid="incident-timeline">
            {data.timeline.map((entry, index) => (
              <li key={index}>
                <span className="hint">{format.time(entry.at)}</span> {entry.entry}
              </li>
            ))}
          </ol>
          {data.state !== 'resolved' ? (
            <>
              <form className="inline-form" onSubmit={(event) => submit(event, `${base}/notes`, (form) => ({ entry: text(form, 'entry') }))}>
                <Field label={t('incidents.note')} name="entry" problem={act.problem}>
                  {(attributes) => <input {...attributes} required maxLength={2000} />}
                </Field>
                <button type="submit">{t('incidents.addNote')}</button>
              </form>
              <h3>{t('incidents.contain')}</h3>
              <form
                className="inline-form"
                aria-label={t('incidents.contain')}
                onSubmit={(event) =>
                  submit(event, `${base}/containment`, (form) => {
                    const reason = text(form, 'reason');
                    if (action === 'block_network') {
                      const hours = text(form, 'hours');
                      return { action, network: text(form, 'network'), reason, ...(hours ? { expiresInHours: Number(hours) } : {}) };
                    }
                    if (action === 'pause_campaign') return { action, campaignId: text(form, 'campaignId'), reason };
                    return { action, userId: text(form, 'userId'), reason };
                  })
                }
              >
                <Field label={t('incidents.action')} name="action" problem={act.problem}>
                  {(attributes) => (
                    <select {...attributes} value={action} onChange={(event) => setAction(event.target.value as typeof action)}>
                      {(['revoke_user_access', 'disable_user', 'block_network', 'pause_campaign'] as const).map((value) => (
                        <option key={value} value={value}>
                          {t(`incidents.actions.${value}`)}
                        </option>
                      ))}
                    </select>
                  )}
                </Field>
                {action === 'block_network' ? (
                  <>
                    <Field label={t('incidents.network')} name="network" problem={act.problem}>
                      {(attributes) => <input {...attributes} required placeholder="198.51.100.0/24" />}
                    </Field>
                    <Field label={t('incidents.hours')} name="hours" problem={act.problem}>
                      {(attributes) => <input {...attributes} type="number" min={1} max={2160} />}
                    </Field>
                  </>
                ) : action === 'pause_campaign' ? (
                  <Field label={t('incidents.campaignId')} name="campaignId" problem={act.problem}>
                    {(attributes) => <input {...attributes} required />}
                  </Field>
                ) : (
                  <Field label={t('incidents.userId')} name="userId" problem={act.problem}>
                    {(attributes) => <input {...attributes} required />}
                  </Field>
                )}
                <Field label={t('incidents.reason')} name="reason" problem={act.problem}>
                  {(attributes) => <input {...attributes} required minLength={3} maxLength={500} />}
                </Field>
                <button type="submit" className="primary" disabled={act.busy}>
                  {t('incidents.carryOut')}
                </button>
              </form>
              <div className="row">
                {data.state === 'open' ? (
                  <button type="button" onClick={() => void act.run(`${base}/contain`, { entry: t('incidents.markContained') })}>
                    {t('incidents.markContained')}
                  </button>
                ) : null}
                {!data.breachId ? (
                  <button type="button" onClick={() => void act.run(`${base}/breach`, {})}>
                    {t('incidents.breach')}
                  </button>
                ) : null}
              </div>
              <form className="inline-form" onSubmit={(event) => submit(event, `${base}/resolve`, (form) => ({ resolution: text(form, 'resolution') }))}>
                <Field label={t('incidents.resolution')} name="resolution" problem={act.problem}>
                  {(attributes) => <input {...attributes} required minLength={3} maxLength={2000} />}
                </Field>
                <button type="submit">{t('incidents.markResolved')}</button>
              </form>
            </>
          ) : null}
        </>
      ) : null}
    </section>
  );
}
