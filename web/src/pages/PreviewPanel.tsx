import { useCallback, useEffect, useRef, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { ApiProblem, get, post } from '../api.ts';
import { Badge, ProblemNote, useAction, useFormat } from '../components/ui.tsx';
import { ContactHistory, type HistoryItem } from '../components/ContactHistory.tsx';

type Preview = {
  holdUntil: string;
  requestedAt: string | null;
  callback: boolean;
  campaign: { id: string; name: string; script: string | null };
  contact: { id: string; name: string | null; phones: { kind: string; masked: string }[]; status: string };
  history: HistoryItem[];
};
type LastDial = { attemptId: string; contactName: string | null; outcome: string | null; reason: string | null; at: string };

/** How often an empty preview looks for a contact that fell due. */
const LOOK_AGAIN_MS = 15_000;
/** How often a call asked for looks at what the dialer made of it, should the realtime feed miss it. */
const FOLLOW_REQUEST_MS = 5_000;

/**
 * Preview dialing: the next contact, shown before anything is dialed (masked number, script, this
 * person's earlier calls), with the agent's choice — call or skip — and, once a call is asked for,
 * taking it back until the dialer places it. What became of the last call that did not reach the
 * agent (refused at dial time and why, or unanswered) is said above it. The panel loads again on
 * every change of the agent's state the server announces (reserved for the call, free again), told
 * apart by its time: a call refused at once moves the agent there and back within one batch of
 * events, leaving the state itself as it was.
 */
export function PreviewPanel({ agentState, stateSince, onStale }: { agentState: 'available' | 'reserved'; stateSince: string; onStale: () => void }) {
  const { t } = useTranslation();
  const format = useFormat();
  const [preview, setPreview] = useState<Preview | null>();
  const [lastDial, setLastDial] = useState<LastDial | null>(null);
  const [problem, setProblem] = useState<ApiProblem>();
  const loading = useRef(0);

  /**
   * What the server holds for me; when I am free, the contact I hold (its hold renewed) or the next
   * one due is claimed for me. A call asked for keeps me `reserved`: then nothing is claimed.
   */
  const load = useCallback(async (claim = true) => {
    const ticket = ++loading.current;
    try {
      const current = await get<{ preview: Preview | null; lastDial: LastDial | null }>('/api/v1/agent/preview');
      if (ticket !== loading.current) return;
      setLastDial(current.lastDial);
      let shown = current.preview;
      if (claim && agentState === 'available') shown = (await post<{ preview: Preview | null }>('/api/v1/agent/preview')).preview;
      if (ticket !== loading.current) return;
      setPreview(shown);
      setProblem(undefined);
    } catch (error) {
      if (error instanceof ApiProblem && ticket === loading.current) {
        setProblem(error);
        setPreview((previous) => previous ?? null);
      }
    }
  }, [agentState]);

  useEffect(() => {
    void load();
  }, [load, stateSince]);

  // While nothing is shown (none due, or the campaign paused), look again every so often: callbacks
  // and skipped contacts fall due on their own.
  const idle = preview === null || problem !== undefined;
  useEffect(() => {
    if (!idle) return;
    const timer = setInterval(() => void load(), LOOK_AGAIN_MS);
    return () => clearInterval(timer);
  }, [idle, load]);

  // A call asked for is the dialer's to place or refuse within seconds; should the feed miss that
  // news, the panel and the agent's state (which enables the buttons) still learn it.
  const requested = preview?.requestedAt !== null && preview?.requestedAt !== undefined;
  useEffect(() => {
    if (!requested) return;
    const timer = setInterval(() => {
      onStale();
      void load(false);
    }, FOLLOW_REQUEST_MS);
    return () => clearInterval(timer);
  }, [requested, load, onStale]);

  const choose = useAction(async (choice: 'call' | 'skip' | 'cancel') => {
    if (!preview) return;
    let calling = false;
    try {
      await post(`/api/v1/agent/preview/${preview.contact.id}/${choice}`);
      calling = choice === 'call';
    } finally {
      // Whatever the answer, show what the server holds now (a hold that ran out shows the next
      // contact). A call asked for has made me reserved: nothing is to be claimed until it is over.
      await load(!calling);
    }
  });

  const phone = preview?.contact.phones[0];
  const lastWhat = lastDial
    ? lastDial.outcome === 'skipped'
      ? t('agent.preview.notCalled', { reason: t(`agent.preview.reasons.${lastDial.reason ?? 'status'}`, { defaultValue: lastDial.reason ?? '' }) })
      : t(`agent.preview.outcomes.${lastDial.outcome ?? 'failed'}`, { defaultValue: lastDial.outcome ?? '' })
    : '';
  return (
    <section className="panel call" aria-labelledby="preview-heading" aria-live="polite">
      <h2 id="preview-heading">{t('agent.preview.title')}</h2>
      {lastDial ? (
        <p className="hint" role="status" data-testid="last-dial">
          {t('agent.preview.last', { name: lastDial.contactName ?? t('common.unnamed'), what: lastWhat })}
        </p>
      ) : null}
      <ProblemNote problem={problem ?? choose.problem} />
      {preview === undefined ? <p className="hint">{t('common.loading')}</p> : null}
      {preview === null ? (
        <p>
          {t('agent.preview.none')}{' '}
          <button type="button" className="small" onClick={() => void load()}>
            {t('agent.preview.again')}
          </button>
        </p>
      ) : null}
      {preview ? (
        <div className="call-grid">
          <div>
            <dl className="facts">
              <dt>{t('agent.contact')}</dt>
              <dd>
                <span data-testid="preview-name">{preview.contact.name ?? t('common.unnamed')}</span>
                {preview.callback ? <Badge tone="info">{t('agent.preview.callback')}</Badge> : null}
              </dd>
              <dt>{t('agent.number')}</dt>
              <dd data-testid="preview-number">{phone?.masked ?? '—'}</dd>
              <dt>{t('agent.campaign')}</dt>
              <dd>{preview.campaign.name}</dd>
            </dl>
            <p className="hint">{t('agent.preview.holdUntil', { time: format.time(preview.holdUntil) })}</p>
            {requested ? (
              <>
                <p role="status" data-testid="preview-requested">
                  {t('agent.preview.requested')}
                </p>
                <button type="button" onClick={() => void choose.run('cancel')} disabled={choose.busy}>
                  {t('agent.preview.cancel')}
                </button>
              </>
            ) : (
              <div className="row">
                <button type="button" className="primary" onClick={() => void choose.run('call')} disabled={choose.busy || agentState !== 'available'}>
                  {t('agent.preview.call')}
                </button>
                <button type="button" onClick={() => void choose.run('skip')} disabled={choose.busy || agentState !== 'available'}>
                  {t('agent.preview.skip')}
                </button>
              </div>
            )}
            <h3>{t('agent.script')}</h3>
            <div className="script">{preview.campaign.script ?? t('agent.noScript')}</div>
          </div>
          <div>
            <ContactHistory items={preview.history} />
          </div>
        </div>
      ) : null}
    </section>
  );
}
