import { useCallback, useEffect, useRef, useState } from 'react';
import { useTranslation } from 'react-i18next';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { get } from '../api.ts';
import { Badge, Head, useFormat, useNow } from '../components/ui.tsx';
import { connectRealtime } from '../realtime.ts';

type Agent = { userId: string; state: string; reason: string | null; campaignId: string | null; since: string };
type User = { id: string; displayName: string };
type Campaign = { id: string; name: string; state: string; mode: string; jurisdiction: string | null };
type Floor = { campaigns: { campaignId: string; dialing: number; connected: number }[]; queues: { id: string; name: string; serviceLevelSeconds: number; waiting: number; connected: number; longestWaitMs: number | null }[] };
type Pacing = { lines: number; explanation: string; decidedAt: string };
type Report = { abandonment: { us: { rate: number; abandoned: number; liveAnswers: number }; uk: { rate: number } }; cap: number | null; dials: number; from: string; to: string };

const HISTORY_SECONDS = 600;

/**
 * The supervisor's wallboard: every agent and state, calls in progress, queues, each campaign's
 * pacing with the explanation of its current decision, abandonment against the cap over the legal
 * window, and a live chart of the last ten minutes. Changes come from the realtime feed; the
 * figures that are windows (abandonment) are fetched again every ten seconds.
 */
export default function Wallboard() {
  const { t } = useTranslation();
  const format = useFormat();
  const now = useNow();
  const [agents, setAgents] = useState(new Map<string, Agent>());
  const [names, setNames] = useState(new Map<string, string>());
  const [campaigns, setCampaigns] = useState<Campaign[]>([]);
  const [floor, setFloor] = useState<Floor>({ campaigns: [], queues: [] });
  const [pacing, setPacing] = useState(new Map<string, Pacing>());
  const [reports, setReports] = useState(new Map<string, Report>());
  const [link, setLink] = useState<'connecting' | 'open' | 'closed'>('connecting');
  // Calls in progress are counted by the server: a burst of call events asks for the floor once.
  const floorTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const refetchFloor = useCallback(() => {
    floorTimer.current ??= setTimeout(() => {
      floorTimer.current = undefined;
      void get<Floor>('/api/v1/floor').then(setFloor, () => undefined);
    }, 250);
  }, []);

  const resync = useCallback(async () => {
    const [agentList, users, campaignList, floorNow] = await Promise.all([
      get<{ items: Agent[] }>('/api/v1/agents'),
      get<{ items: User[] }>('/api/v1/users?limit=500').catch(() => ({ items: [] as User[] })),
      get<{ items: Campaign[] }>('/api/v1/campaigns'),
      get<Floor>('/api/v1/floor'),
    ]);
    setAgents(new Map(agentList.items.map((agent) => [agent.userId, agent])));
    setNames(new Map(users.items.map((user) => [user.id, user.displayName])));
    setCampaigns(campaignList.items);
    setFloor(floorNow);
    const active = campaignList.items.filter((campaign) => campaign.state === 'active');
    const decisions = await Promise.all(active.map((campaign) => get<Pacing>(`/api/v1/campaigns/${campaign.id}/pacing`).then((value) => [campaign.id, value] as const).catch(() => null)));
    setPacing(new Map(decisions.filter((entry) => entry !== null)));
  }, []);

  const loadReports = useCallback(async () => {
    const active = campaigns.filter((campaign) => campaign.state !== 'draft');
    const answers = await Promise.all(active.map((campaign) => get<Report>(`/api/v1/reports/campaigns/${campaign.id}`).then((value) => [campaign.id, value] as const).catch(() => null)));
    setReports(new Map(answers.filter((entry) => entry !== null)));
    setFloor(await get<Floor>('/api/v1/floor'));
  }, [campaigns]);

  useEffect(() => {
    void loadReports();
    const timer = setInterval(() => void loadReports(), 10_000);
    return () => clearInterval(timer);
  }, [loadReports]);

  useEffect(() => {
    const connection = connectRealtime({
      onStatus: setLink,
      onResync: () => void resync(),
      onEvents: (events) => {
        for (const event of events) {
          if (event.topic === 'agent.state') {
            setAgents((previous) => new Map(previous).set(event.agentId, { userId: event.agentId, state: event.state, reason: event.reason, campaignId: event.campaignId, since: event.at }));
          } else if (event.topic === 'campaign.pacing') {
            setPacing((previous) => new Map(previous).set(event.campaignId, { lines: event.lines, explanation: event.explanation, decidedAt: event.at }));
          } else if (event.topic === 'campaign.state') {
            setCampaigns((previous) => previous.map((campaign) => (campaign.id === event.campaignId ? { ...campaign, state: event.state } : campaign)));
          } else if (event.topic === 'call' || event.topic === 'inbound.call') {
            refetchFloor();
          }
        }
      },
    });
    return () => connection.close();
  }, [resync, refetchFloor]);

  const agentList = [...agents.values()].filter((agent) => agent.state !== 'offline').sort((a, b) => (names.get(a.userId) ?? '').localeCompare(names.get(b.userId) ?? ''));
  const byState = (state: string) => agentList.filter((agent) => agent.state === state).length;
  const inProgress = floor.campaigns.reduce((sum, row) => sum + row.dialing + row.connected, 0);
  const connected = floor.campaigns.reduce((sum, row) => sum + row.connected, 0);
  const waiting = floor.queues.reduce((sum, row) => sum + row.waiting, 0);

  return (
    <main className="wallboard">
      <h1>
        {t('wall.title')}{' '}
        <span className={`link link-${link}`} role="status">
          {t(`agent.link.${link}`)}
        </span>
      </h1>
      <section className="tiles" aria-label={t('wall.summary')}>
        <Tile label={t('wall.available')} value={byState('available')} testId="tile-available" />
        <Tile label={t('wall.onCall')} value={byState('on_call') + byState('reserved')} testId="tile-on-call" />
        <Tile label={t('wall.wrapUp')} value={byState('wrap_up')} />
        <Tile label={t('wall.paused')} value={byState('paused')} />
        <Tile label={t('wall.callsInProgress')} value={inProgress} testId="tile-calls" />
        <Tile label={t('wall.waitingInQueues')} value={waiting} />
      </section>
      <LiveChart sample={{ available: byState('available'), connected, inProgress }} />
      <div className="two-columns">
        <section className="panel" aria-labelledby="agents-heading">
          <h2 id="agents-heading">{t('wall.agents')}</h2>
          <table data-testid="agents-table">
            <Head cells={[t('wall.agent'), t('wall.state'), t('wall.since'), t('agent.campaign')]} />
            <tbody>
              {agentList.map((agent) => (
                <tr key={agent.userId}>
                  <td>{names.get(agent.userId) ?? agent.userId.slice(0, 8)}</td>
                  <td>
                    {t(`state.${agent.state}`)}
                    {agent.reason ? ` (${t(`pause.${agent.reason}`, { defaultValue: agent.reason })})` : ''}
                  </td>
                  <td>{format.duration(now - Date.parse(agent.since))}</td>
                  <td>{campaigns.find((campaign) => campaign.id === agent.campaignId)?.name ?? '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {agentList.length === 0 ? <p className="hint">{t('wall.noAgents')}</p> : null}
        </section>
        <section className="panel" aria-labelledby="queues-heading">
          <h2 id="queues-heading">{t('wall.queues')}</h2>
          {floor.queues.length === 0 ? (
            <p className="hint">{t('wall.noQueues')}</p>
          ) : (
            <table>
              <Head cells={[t('wall.queue'), t('wall.waiting'), t('wall.connected'), t('wall.longestWait')]} />
              <tbody>
                {floor.queues.map((queue) => (
                  <tr key={queue.id}>
                    <td>{queue.name}</td>
                    <td>{queue.waiting}</td>
                    <td>{queue.connected}</td>
                    <td>
                      {queue.longestWaitMs === null ? '—' : format.duration(queue.longestWaitMs)}{' '}
                      {queue.longestWaitMs !== null && queue.longestWaitMs > queue.serviceLevelSeconds * 1000 ? <Badge tone="bad">{t('wall.overSla')}</Badge> : null}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
      </div>
      <section className="panel" aria-labelledby="campaigns-heading">
        <h2 id="campaigns-heading">{t('wall.campaigns')}</h2>
        {campaigns
          .filter((campaign) => campaign.state === 'active' || campaign.state === 'paused')
          .map((campaign) => {
            const decision = pacing.get(campaign.id);
            const report = reports.get(campaign.id);
            const calls = floor.campaigns.find((row) => row.campaignId === campaign.id);
            const rate = report ? (report.cap !== null && campaign.jurisdiction === 'uk' ? report.abandonment.uk.rate : report.abandonment.us.rate) : null;
            const cap = report?.cap ?? null;
            return (
              <article key={campaign.id} className="campaign-card" data-testid={`campaign-${campaign.id}`}>
                <h3>
                  {campaign.name} <Badge tone={campaign.state === 'active' ? 'ok' : 'warn'}>{t(`campaignState.${campaign.state}`, { defaultValue: campaign.state })}</Badge> <span className="hint">{campaign.mode}</span>
                </h3>
                <dl className="facts inline">
                  <dt>{t('wall.lines')}</dt>
                  <dd>{decision?.lines ?? '—'}</dd>
                  <dt>{t('wall.callsInProgress')}</dt>
                  <dd>{calls ? calls.dialing + calls.connected : 0}</dd>
                  <dt>{t('wall.abandonment')}</dt>
                  <dd>
                    {rate === null ? '—' : format.percent(rate)}
                    {cap !== null ? ` / ${format.percent(cap)}` : ''}{' '}
                    {rate !== null && cap !== null ? <Badge tone={rate > cap ? 'bad' : rate > cap * 0.8 ? 'warn' : 'ok'}>{rate > cap ? t('wall.overCap') : t('wall.withinCap')}</Badge> : null}
                  </dd>
                </dl>
                <p className="explanation" data-testid="pacing-explanation">
                  {decision ? decision.explanation : t('wall.noDecision')}
                </p>
                {report ? <p className="hint">{t('wall.window', { from: format.time(report.from), to: format.time(report.to), dials: report.dials })}</p> : null}
              </article>
            );
          })}
      </section>
    </main>
  );
}

function Tile({ label, value, testId }: { label: string; value: number; testId?: string }) {
  return (
    <div className="tile">
      <span className="tile-value" data-testid={testId}>
        {value}
      </span>
      <span className="tile-label">{label}</span>
    </div>
  );
}

/** The last ten minutes, one point a second: agents available, calls connected, calls in progress. */
function LiveChart({ sample }: { sample: { available: number; connected: number; inProgress: number } }) {
  const { t } = useTranslation();
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const data = useRef<[number[], number[], number[], number[]]>([[], [], [], []]);
  const latest = useRef(sample);
  latest.current = sample;
  useEffect(() => {
    if (!host.current) return;
    plot.current = new uPlot(
      {
        width: Math.max(320, host.current.clientWidth),
        height: 180,
        series: [{}, { label: t('wall.available'), stroke: '#2f7d32', width: 2 }, { label: t('wall.connected'), stroke: '#1f5fa8', width: 2 }, { label: t('wall.callsInProgress'), stroke: '#8a5a00', width: 2 }],
        axes: [{}, { label: '' }],
        scales: { y: { range: (_u, _min, max) => [0, Math.max(5, max)] } },
      },
      data.current,
      host.current,
    );
    const timer = setInterval(() => {
      const [times, available, connected, inProgress] = data.current;
      times.push(Date.now() / 1000);
      available.push(latest.current.available);
      connected.push(latest.current.connected);
      inProgress.push(latest.current.inProgress);
      if (times.length > HISTORY_SECONDS) for (const series of data.current) series.shift();
      plot.current?.setData(data.current);
    }, 1000);
    const resize = () => host.current && plot.current?.setSize({ width: Math.max(320, host.current.clientWidth), height: 180 });
    addEventListener('resize', resize);
    return () => {
      clearInterval(timer);
      removeEventListener('resize', resize);
      plot.current?.destroy();
    };
  }, [t]);
  return (
    <figure className="panel chart">
      <figcaption>{t('wall.chart')}</figcaption>
      <div ref={host} role="img" aria-label={t('wall.chartLabel')} />
    </figure>
  );
}
