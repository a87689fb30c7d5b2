import { useCallback, useEffect, useRef, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { ApiProblem, get, post, put } from '../api.ts';
import { Badge, Field, ProblemNote, useAction, useFormat, useLoad, useNow } from '../components/ui.tsx';
import { connectRealtime, type RealtimeEvent } from '../realtime.ts';
import { useSession } from '../App.tsx';
import { PreviewPanel } from './PreviewPanel.tsx';
import { ContactHistory, type HistoryItem } from '../components/ContactHistory.tsx';

type AgentState = { userId: string; state: 'offline' | 'available' | 'reserved' | 'on_call' | 'wrap_up' | 'paused'; reason: string | null; campaignId: string | null; attemptId: string | null; since: string; wrapUpUntil: string | null };
type Campaign = { id: string; name: string; state: string; mode: string };
type Disposition = { code: string; label: string; kind: string };
type Call = {
  attemptId: string;
  state: string;
  outcome: string | null;
  disposition: string | null;
  connectedAt: string | null;
  endedAt: string | null;
  recording: boolean;
  recordingState: 'recording' | 'paused' | null;
  campaign: { id: string; name: string; mode: string; script: string | null; dispositions: Disposition[] };
  contact: { id: string; name: string | null; phones: { kind: string; masked: string }[]; status: string };
  history: HistoryItem[];
};
type InboundCall = { callId: string; queueId: string; state: string; at: string };

export const PAUSE_REASONS = ['break', 'lunch', 'training', 'meeting', 'coaching', 'technical'] as const;

/**
 * What `npm run bench -- agent-screen` and the browser test read: how long each call event took
 * from the server's clock to this screen (the call's new state shown), and how long until the
 * contact's details were shown too.
 */
const recordLatency = (kind: 'callEventLatencyMs' | 'contactDetailsLatencyMs', at: string) => {
  const metrics = ((window as unknown as { ringvaktMetrics?: Record<string, number[]> }).ringvaktMetrics ??= {});
  const values = (metrics[kind] ??= []);
  values.push(Date.now() - Date.parse(at));
  if (values.length > 500) values.shift();
};

/**
 * The calls on screen, given the call the server now says is in hand: that one (new or updated),
 * plus every earlier call still waiting for its outcome — a call whose wrap-up ran out before it
 * was filed stays, with the notes typed into it, until it is filed.
 */
function withCallInHand(shown: Call[], next: Call | null): Call[] {
  const kept = shown
    .filter((call) => call.attemptId !== next?.attemptId)
    // A call the server no longer names as in hand has ended, whatever the last event said.
    .map((call) => (call.state === 'ended' ? call : { ...call, state: 'ended' }))
    // One that never reached the agent (a preview call unanswered) has no outcome to file.
    .filter((call) => call.disposition === null && call.connectedAt !== null);
  return next ? [...kept, next] : kept;
}

/** A call the feed announced, shown at once; its details (contact, script) follow from the API. */
type Announced = { attemptId: string; state: string; at: string };
/** A call state after which nothing more happens on the line (a preview call refused at dial time is `skipped`). */
const isOver = (state: string) => state === 'ended' || state === 'skipped';

/**
 * The agent desktop: state control with pause reasons, the call in hand (masked number, script,
 * this contact's earlier calls), notes and disposition, callback scheduling, the audited reveal
 * (only for those who may), recording pause for card payments, inbound calls with their queue.
 * Driven live by the realtime feed; after a dropped connection it fetches the state again.
 */
export function AgentDesktop() {
  const { t } = useTranslation();
  const { session, can } = useSession();
  const format = useFormat();
  const now = useNow();
  const campaigns = useLoad<{ items: Campaign[] }>('/api/v1/campaigns');
  const queues = useLoad<{ items: { id: string; name: string }[] }>('/api/v1/queues');
  const [state, setState] = useState<AgentState>();
  const [shown, setShown] = useState<Call[]>([]);
  const callRequest = useRef(0);
  const [inbound, setInbound] = useState<InboundCall | null>(null);
  const [link, setLink] = useState<'connecting' | 'open' | 'closed'>('connecting');
  const [campaignId, setCampaignId] = useState('');
  const [reason, setReason] = useState<string>(PAUSE_REASONS[0]);
  const [problem, setProblem] = useState<ApiProblem>();
  // Confirmation of the last outcome filed: kept here, since the next call may replace the call panel at once.
  const [lastFiled, setLastFiled] = useState<{ contact: string; disposition: string } | null>(null);
  const [announced, setAnnounced] = useState<Announced | null>(null);
  const shownEvent = useRef<{ event: Announced | null; details: Announced | null }>({ event: null, details: null });

  /** The call in hand from the server; an answer overtaken by a later request is dropped. */
  const loadCall = useCallback(async () => {
    const ticket = ++callRequest.current;
    try {
      const answer = await get<{ call: Call | null }>('/api/v1/agent/call');
      if (ticket === callRequest.current) setShown((previous) => withCallInHand(previous, answer.call));
    } catch (error) {
      if (error instanceof ApiProblem) setProblem(error);
    }
  }, []);

  const refresh = useCallback(async () => {
    try {
      const [current] = await Promise.all([get<AgentState>('/api/v1/agent/state'), loadCall()]);
      setState(current);
      // Whatever the feed announced before a resync is superseded by what the server says now.
      setAnnounced(null);
      const campaign = current.campaignId;
      if (campaign) setCampaignId((selected) => selected || campaign);
    } catch (error) {
      if (error instanceof ApiProblem) setProblem(error);
    }
  }, [loadCall]);

  useEffect(() => {
    const connection = connectRealtime({
      onStatus: setLink,
      onResync: () => void refresh(),
      onEvents: (events: RealtimeEvent[]) => {
        for (const event of events) {
          if (event.topic === 'agent.state' && event.agentId === session.userId) {
            setState((previous) => (previous ? { ...previous, state: event.state as AgentState['state'], reason: event.reason, campaignId: event.campaignId, since: event.at } : previous));
            if (event.state === 'available' || event.state === 'offline') setInbound(null);
          }
          if (event.topic === 'call' && event.agentId === session.userId) {
            const news = { attemptId: event.attemptId, state: event.state, at: event.at };
            shownEvent.current = { event: news, details: news };
            // The state changes on screen now; the details (a new call's contact) come after.
            setAnnounced(news);
            setShown((previous) => previous.map((call) => (call.attemptId === event.attemptId ? { ...call, state: event.state } : call)));
            void loadCall();
          }
          if (event.topic === 'inbound.call' && event.agentId === session.userId) {
            shownEvent.current = { event: { attemptId: event.callId, state: event.state, at: event.at }, details: null };
            setInbound(event.state === 'ended' ? null : { callId: event.callId, queueId: event.queueId, state: event.state, at: event.at });
          }
        }
      },
    });
    return () => connection.close();
  }, [refresh, loadCall, session.userId]);

  // The moments the screen shows what the event announced: its state, then the contact's details.
  useEffect(() => {
    const { event, details } = shownEvent.current;
    if (event && ((announced?.attemptId === event.attemptId && announced.state === event.state) || inbound?.callId === event.attemptId)) {
      recordLatency('callEventLatencyMs', event.at);
      shownEvent.current.event = null;
    }
    if (details && shown.some((call) => call.attemptId === details.attemptId && call.state === details.state)) {
      recordLatency('contactDetailsLatencyMs', details.at);
      shownEvent.current.details = null;
    }
  }, [announced, shown, inbound]);

  const change = useAction(async (body: { state: 'available' | 'paused' | 'offline'; campaignId?: string; reason?: string }) => {
    setState(await put<AgentState>('/api/v1/agent/state', body));
  });

  const activeCampaigns = (campaigns.data?.items ?? []).filter((campaign) => campaign.state === 'active');
  const onCall = state?.state === 'on_call' || state?.state === 'reserved' || state?.state === 'wrap_up';
  const announcing = announced !== null && !isOver(announced.state) && !shown.some((call) => call.attemptId === announced.attemptId);
  // Preview campaigns: the next contact is shown before anything is dialed, while no call is in hand.
  const previewing =
    shown.length === 0 &&
    !announcing &&
    inbound === null &&
    (state?.state === 'available' || state?.state === 'reserved') &&
    campaigns.data?.items.find((campaign) => campaign.id === state.campaignId)?.mode === 'preview';

  return (
    <main className="desk">
      <h1 className="visually-hidden">{t('agent.title')}</h1>
      <section className="panel state-panel" aria-labelledby="state-heading">
        <h2 id="state-heading">{t('agent.myState')}</h2>
        <p className="state-line">
          <Badge tone={stateTone(state?.state)}>
            <span data-testid="agent-state">{state ? t(`state.${state.state}`) : '…'}</span>
          </Badge>
          {state?.reason ? <span> · {t(`pause.${state.reason}`, { defaultValue: state.reason })}</span> : null}
          {state ? <span className="timer"> {format.duration(now - Date.parse(state.since))}</span> : null}
          <span className={`link link-${link}`} role="status">
            {t(`agent.link.${link}`)}
          </span>
        </p>
        <div className="row wrap">
          <Field label={t('agent.campaign')} name="campaignId" problem={change.problem}>
            {(attributes) => (
              <select {...attributes} value={campaignId} onChange={(event) => setCampaignId(event.target.value)} disabled={onCall}>
                <option value="">{t('agent.chooseCampaign')}</option>
                {activeCampaigns.map((campaign) => (
                  <option key={campaign.id} value={campaign.id}>
                    {campaign.name}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <button type="button" className="primary" disabled={onCall || change.busy || campaignId === ''} onClick={() => void change.run({ state: 'available', campaignId })}>
            {t('agent.goAvailable')}
          </button>
        </div>
        <div className="row wrap">
          <Field label={t('agent.pauseReason')} name="reason" problem={change.problem}>
            {(attributes) => (
              <select {...attributes} value={reason} onChange={(event) => setReason(event.target.value)}>
                {PAUSE_REASONS.map((code) => (
                  <option key={code} value={code}>
                    {t(`pause.${code}`)}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <button type="button" disabled={onCall || change.busy} onClick={() => void change.run({ state: 'paused', reason })}>
            {t('agent.pause')}
          </button>
          <button type="button" disabled={onCall || change.busy} onClick={() => void change.run({ state: 'offline' })}>
            {t('agent.goOffline')}
          </button>
        </div>
        <ProblemNote problem={change.problem ?? problem} />
      </section>

      {inbound ? (
        <section className="panel inbound" aria-live="polite" aria-labelledby="inbound-heading">
          <h2 id="inbound-heading">{t('agent.inbound')}</h2>
          <p data-testid="inbound-call">
            {t('agent.inboundFromQueue', { queue: queues.data?.items.find((queue) => queue.id === inbound.queueId)?.name ?? '…' })} · {t(`inboundState.${inbound.state}`)}
          </p>
        </section>
      ) : null}

      {lastFiled ? (
        <p className="panel filed" role="status" data-testid="disposition-filed">
          {t('agent.filedFor', lastFiled)}
        </p>
      ) : null}
      {announcing ? (
        <section className="panel call" aria-live="polite" aria-labelledby="announced-heading">
          <h2 id="announced-heading">
            {t('agent.call')} · <span data-testid="call-state">{announced.state === 'connected' ? t('agent.callConnected') : t('agent.callDialing')}</span>
          </h2>
          <p className="hint">{t('common.loading')}</p>
        </section>
      ) : null}
      {shown.map((call) => (
        <CallPanel
          key={call.attemptId}
          call={call}
          canReveal={can('contacts:reveal')}
          onFiled={(disposition) => {
            setLastFiled({ contact: call.contact.name ?? t('common.unnamed'), disposition });
            setShown((previous) => previous.filter((item) => item.attemptId !== call.attemptId));
            void refresh();
          }}
        />
      ))}
      {previewing && (state.state === 'available' || state.state === 'reserved') ? <PreviewPanel key={state.campaignId ?? ''} agentState={state.state} stateSince={state.since} onStale={refresh} /> : null}
      {shown.length > 0 || announcing || previewing ? null : (
        <section className="panel waiting" aria-live="polite">
          <p>{state?.state === 'available' ? t('agent.waiting') : t('agent.notAvailable')}</p>
        </section>
      )}
    </main>
  );
}

function stateTone(state: string | undefined) {
  if (state === 'available') return 'ok' as const;
  if (state === 'on_call' || state === 'reserved') return 'info' as const;
  if (state === 'wrap_up' || state === 'paused') return 'warn' as const;
  return 'muted' as const;
}

function CallPanel({ call, canReveal, onFiled }: { call: Call; canReveal: boolean; onFiled: (disposition: string) => void }) {
  const { t } = useTranslation();
  const format = useFormat();
  const now = useNow();
  // Notes live here, in this component: a re-authentication or a dropped connection does not unmount it.
  const [notes, setNotes] = useState('');
  const [callbackAt, setCallbackAt] = useState('');
  const [revealed, setRevealed] = useState<string[] | null>(null);
  const [recordingPaused, setRecordingPaused] = useState(call.recordingState === 'paused');
  const [filed, setFiled] = useState<string | null>(call.disposition);

  const file = useAction(async (disposition: Disposition) => {
    const body: Record<string, unknown> = { code: disposition.code };
    if (notes.trim() !== '') body.notes = notes;
    if (disposition.kind === 'callback' && callbackAt !== '') body.callbackAt = new Date(callbackAt).toISOString();
    await post(`/api/v1/agent/calls/${call.attemptId}/disposition`, body);
    setFiled(disposition.code);
    onFiled(disposition.label);
  });
  const reveal = useAction(async () => {
    const answer = await post<{ phones: { number: string }[] }>(`/api/v1/contacts/${call.contact.id}/reveal`, { fields: ['phones'], reason: 'agent verifying the number on a call' });
    setRevealed(answer.phones.map((phone) => phone.number));
    setTimeout(() => setRevealed(null), 30_000);
  });
  const recording = useAction(async () => {
    const action = recordingPaused ? 'resume' : 'pause';
    await post(`/api/v1/agent/calls/${call.attemptId}/recording`, { action });
    setRecordingPaused(!recordingPaused);
  });

  const hangUp = useAction(async () => {
    await post(`/api/v1/agent/calls/${call.attemptId}/hangup`);
  });
  const ended = call.state === 'ended';
  const phone = call.contact.phones[0];
  return (
    <section className="panel call" aria-labelledby="call-heading">
      <h2 id="call-heading">
        {t('agent.call')} · <span data-testid="call-state">{ended ? t('agent.callEnded') : call.state === 'connected' ? t('agent.callConnected') : t('agent.callDialing')}</span>
        {call.connectedAt && !ended ? <span className="timer"> {format.duration(now - Date.parse(call.connectedAt))}</span> : null}
      </h2>
      <div className="call-grid">
        <div>
          <dl className="facts">
            <dt>{t('agent.contact')}</dt>
            <dd data-testid="contact-name">{call.contact.name ?? t('common.unnamed')}</dd>
            <dt>{t('agent.number')}</dt>
            <dd>
              <span data-testid="contact-number">{revealed ? revealed.join(', ') : (phone?.masked ?? '—')}</span>
              {canReveal && !revealed ? (
                <button type="button" className="small" onClick={() => void reveal.run()} disabled={reveal.busy}>
                  {t('agent.reveal')}
                </button>
              ) : null}
            </dd>
            <dt>{t('agent.campaign')}</dt>
            <dd>{call.campaign.name}</dd>
          </dl>
          <ProblemNote problem={reveal.problem} />
          {call.recording && !ended ? (
            <p className="row">
              <Badge tone={recordingPaused ? 'warn' : 'bad'}>{recordingPaused ? t('agent.recordingPaused') : t('agent.recordingOn')}</Badge>
              <button type="button" onClick={() => void recording.run()} disabled={recording.busy}>
                {recordingPaused ? t('agent.resumeRecording') : t('agent.pauseRecording')}
              </button>
            </p>
          ) : null}
          <ProblemNote problem={recording.problem} />
          {call.state === 'connected' || call.state === 'dialing' || call.state === 'answered' ? (
            <p>
              <button type="button" className="danger" onClick={() => void hangUp.run()} disabled={hangUp.busy}>
                {t('agent.hangUp')}
              </button>
            </p>
          ) : null}
          <ProblemNote problem={hangUp.problem} />
          <h3>{t('agent.script')}</h3>
          <div className="script">{call.campaign.script ?? t('agent.noScript')}</div>
        </div>
        <div>
          <Field label={t('agent.notes')} name="notes" problem={file.problem}>
            {(attributes) => <textarea {...attributes} rows={5} maxLength={4000} value={notes} onChange={(event) => setNotes(event.target.value)} disabled={filed !== null} />}
          </Field>
          <Field label={t('agent.callbackAt')} name="callbackAt" problem={file.problem} hint={t('agent.callbackHint')}>
            {(attributes) => <input {...attributes} type="datetime-local" value={callbackAt} onChange={(event) => setCallbackAt(event.target.value)} disabled={filed !== null} />}
          </Field>
          <h3>{t('agent.disposition')}</h3>
          {filed ? (
            <p>
              {t('agent.filed', { disposition: call.campaign.dispositions.find((item) => item.code === filed)?.label ?? filed })}
            </p>
          ) : (
            <div className="dispositions" role="group" aria-label={t('agent.disposition')}>
              {call.campaign.dispositions.map((disposition) => (
                <button key={disposition.code} type="button" disabled={!ended || file.busy || (disposition.kind === 'callback' && callbackAt === '')} onClick={() => void file.run(disposition)}>
                  {disposition.label}
                </button>
              ))}
            </div>
          )}
          {!ended && !filed ? <p className="hint">{t('agent.dispositionAfterCall')}</p> : null}
          <ProblemNote problem={file.problem} />
        </div>
      </div>
      <ContactHistory items={call.history} />
    </section>
  );
}
