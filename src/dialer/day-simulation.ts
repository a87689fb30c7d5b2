import { VirtualClock } from '../telephony/clock.ts';
import type { TelephonyEvent } from '../telephony/provider.ts';
import { seededRandom } from '../telephony/random.ts';
import { DEFAULT_CALLEE_MODEL, type CalleeModel } from '../telephony/callee-model.ts';
import { createSimulator } from '../telephony/simulator.ts';
import { abandonmentMeasures, DialStats } from './dial-stats.ts';
import type { Pacer } from './pacers.ts';

/**
 * A campaign day on the telephony simulator: agents, a pacer deciding every second, answered
 * people routed to the longest-idle agent, and the legal rules applied as a real dialer applies
 * them — a person not connected within 2 s of being ready (answered, or judged human by the
 * detector) hears the information message and the call is abandoned; a machine is hung up on.
 * Used by `npm run bench -- dialer` and the pacing tests; every figure comes from one seed.
 */
export type DayOptions = {
  agents: number;
  hours: number;
  seed: number;
  pacer: Pacer;
  model?: CalleeModel;
  /** Wrap-up after each call. */
  wrapMs?: number;
  amd?: boolean;
  /** A person must reach an agent within this long of being ready (US TSR: 2 s). */
  connectWithinMs?: number;
  /** The legal measure the pacer holds: US (abandoned ÷ live answers) or UK (with the detector's mistaken machines estimated in). */
  measure?: 'us' | 'uk';
};

export type DayResult = {
  pacer: string;
  agents: number;
  dials: number;
  liveAnswers: number;
  connected: number;
  abandoned: number;
  /** Abandoned / live answers the dialer knew of (US TSR measure, over the whole day). */
  abandonmentUs: number;
  /** As the UK measure counts: plus an estimate of people the detector took for machines. */
  abandonmentUk: number;
  /** Highest abandonment over any 60-minute window (with at least 50 live answers). */
  worstHourAbandonment: number;
  /** (talk + wrap) / logged-in time. */
  occupancy: number;
  talkMinutesPerAgentHour: number;
  /** Agent idle time before each connected call: mean and 90th percentile. */
  waitBetweenCallsMs: { mean: number; p90: number };
  informationMessages: number;
  lastExplanation: string;
};

type Agent = { id: number; state: 'idle' | 'talk' | 'wrap'; since: number; legId: string | undefined; busyMs: number; talkMs: number };
type Call = { legId: string; dialedAt: number; readyAt: number | undefined; state: 'ringing' | 'judging' | 'waiting' | 'connected' | 'ended'; agent: Agent | undefined };

export function runDialerDay(options: DayOptions): DayResult {
  const model = options.model ?? DEFAULT_CALLEE_MODEL;
  const wrapMs = options.wrapMs ?? 15_000;
  const amd = options.amd ?? true;
  const connectWithin = options.connectWithinMs ?? 2_000;
  const clock = new VirtualClock();
  const simulator = createSimulator({ clock, random: seededRandom(options.seed), model });
  const start = clock.now();
  const end = start + options.hours * 3_600_000;
  const stats = new DialStats({ liveShare: 0.3, readyAfterMs: 12_000, talkMedianMs: 90_000, talkSigma: 0.6 });
  if (options.measure === 'uk' && (options.amd ?? true)) stats.countMistakenMachines(simulator.capabilities().amdAccuracy ?? null);
  const agents: Agent[] = Array.from({ length: options.agents }, (_, id) => ({ id, state: 'idle', since: start, legId: undefined, busyMs: 0, talkMs: 0 }));
  const calls = new Map<string, Call>();
  const waiting: Call[] = [];
  const waits: number[] = [];
  const verdicts = { human: 0, machine: 0 };
  let dials = 0;
  let connected = 0;
  let abandoned = 0;
  let informationMessages = 0;
  let commands = 0;
  let lastExplanation = '';
  const send = (command: Parameters<typeof simulator.send>[0]) => void simulator.send(command).catch(() => undefined);
  const id = () => `c${(commands += 1)}`;

  /** Time in a state counts only within the logged-in day. */
  const account = (agent: Agent) => {
    const from = Math.min(agent.since, end);
    const to = Math.min(clock.now(), end);
    if (agent.state !== 'idle') agent.busyMs += to - from;
    if (agent.state === 'talk') agent.talkMs += to - from;
  };
  const move = (agent: Agent, state: Agent['state']) => {
    account(agent);
    agent.state = state;
    agent.since = clock.now();
  };
  const longestIdle = () => {
    let best: Agent | undefined;
    for (const agent of agents) if (agent.state === 'idle' && (!best || agent.since < best.since)) best = agent;
    return best;
  };
  const connect = (call: Call, agent: Agent) => {
    waits.push(clock.now() - agent.since);
    move(agent, 'talk');
    agent.legId = call.legId;
    call.agent = agent;
    call.state = 'connected';
    connected += 1;
    stats.liveAnswer(clock.now(), false);
    send({ kind: 'connect-to-agent', commandId: id(), legId: call.legId, agentEndpoint: `agent:${agent.id}` });
  };
  const abandon = (call: Call, playMessage: boolean) => {
    abandoned += 1;
    stats.liveAnswer(clock.now(), true);
    call.state = 'ended';
    if (playMessage) {
      informationMessages += 1;
      send({ kind: 'play', commandId: id(), legId: call.legId, playbackId: `info-${call.legId}`, media: 'information-message' });
    }
  };
  const ready = (call: Call) => {
    call.readyAt = clock.now();
    stats.personReady(clock.now() - call.dialedAt);
    const agent = longestIdle();
    if (agent) return connect(call, agent);
    call.state = 'waiting';
    waiting.push(call);
    clock.schedule(connectWithin, () => {
      if (call.state !== 'waiting') return;
      waiting.splice(waiting.indexOf(call), 1);
      abandon(call, true);
    });
  };
  const agentFree = (agent: Agent) => {
    move(agent, 'idle');
    agent.legId = undefined;
    const next = waiting.shift();
    if (next) connect(next, agent);
  };

  simulator.onEvent((event: TelephonyEvent) => {
    const call = calls.get(event.legId);
    if (!call) return;
    switch (event.type) {
      case 'answered':
        // With detection, whether a person answered is known at the verdict.
        if (amd) call.state = 'judging';
        else {
          stats.dialResolved(true);
          ready(call);
        }
        return;
      case 'machine-detected':
        if (call.state !== 'judging') return;
        verdicts[event.result === 'machine' ? 'machine' : 'human'] += 1;
        stats.verdict(event.at, event.result);
        stats.dialResolved(event.result !== 'machine');
        if (event.result === 'machine') {
          call.state = 'ended';
          send({ kind: 'hangup', commandId: id(), legId: call.legId });
        } else {
          ready(call);
        }
        return;
      case 'play-finished':
        send({ kind: 'hangup', commandId: id(), legId: call.legId });
        return;
      case 'busy':
      case 'no-answer':
      case 'failed':
      case 'cancelled':
        stats.dialResolved(false);
        calls.delete(call.legId);
        return;
      case 'completed': {
        if (call.state === 'connected' && call.agent) {
          stats.talked(event.talkMs);
          const agent = call.agent;
          move(agent, 'wrap');
          clock.schedule(wrapMs, () => agentFree(agent));
        } else if (call.state === 'waiting') {
          // The person gave up before the 2 s were out: abandoned all the same.
          waiting.splice(waiting.indexOf(call), 1);
          abandon(call, false);
        } else if (call.state === 'judging') {
          // Hung up while the detector listened: a person (machines do not hang up that fast),
          // counted as abandoned (the conservative reading).
          stats.dialResolved(true);
          abandon(call, false);
        }
        calls.delete(call.legId);
        return;
      }
      default:
        return;
    }
  });

  const decide = () => {
    if (clock.now() >= end) return;
    const now = clock.now();
    const outstanding: number[] = [];
    let waitingPeople = waiting.length;
    for (const call of calls.values()) {
      if (call.state === 'ringing') outstanding.push(now - call.dialedAt);
      else if (call.state === 'judging') waitingPeople += 1;
    }
    const talking: number[] = [];
    const wrapping: number[] = [];
    let idle = 0;
    for (const agent of agents) {
      if (agent.state === 'idle') idle += 1;
      else if (agent.state === 'talk') talking.push(now - agent.since);
      else wrapping.push(Math.max(0, agent.since + wrapMs - now));
    }
    const decision = options.pacer.decide({
      now,
      windowStart: start,
      agents: { logged: agents.length, idle, talkingElapsedMs: talking, wrapRemainingMs: wrapping },
      outstandingAgesMs: outstanding,
      waiting: waitingPeople,
      wrapMs,
      stats,
    });
    lastExplanation = decision.explanation;
    for (let index = 0; index < decision.dial; index += 1) {
      dials += 1;
      const legId = `leg-${dials}`;
      calls.set(legId, { legId, dialedAt: now, readyAt: undefined, state: 'ringing', agent: undefined });
      send({ kind: 'dial', commandId: id(), legId, to: `+4740${String(dials).padStart(6, '0')}`, from: '+4721000000', ringTimeoutMs: 25_000, amd: amd ? 'detect' : 'off' });
    }
    clock.schedule(1_000, decide);
  };
  clock.schedule(0, decide);
  // The day, then every call in progress to its end (agents log off at `end`; their time stops counting).
  clock.runUntil(end + 3 * 3_600_000);
  for (const agent of agents) account(agent);

  const liveAnswers = connected + abandoned;
  const measures = abandonmentMeasures({ liveAnswers, abandoned, humanVerdicts: verdicts.human, machineVerdicts: verdicts.machine, accuracy: amd ? model.amd : null });
  let worstHour = 0;
  for (let from = start; from + 3_600_000 <= end; from += 60_000) {
    const hour = stats.abandonment(from, from + 3_600_000);
    if (hour.liveAnswers >= 50) worstHour = Math.max(worstHour, hour.rate);
  }
  const loggedMs = agents.length * (end - start);
  const busy = agents.reduce((sum, agent) => sum + agent.busyMs, 0);
  const talk = agents.reduce((sum, agent) => sum + agent.talkMs, 0);
  const sortedWaits = [...waits].sort((a, b) => a - b);
  return {
    pacer: options.pacer.name,
    agents: agents.length,
    dials,
    liveAnswers,
    connected,
    abandoned,
    abandonmentUs: measures.us.rate,
    abandonmentUk: measures.uk.rate,
    worstHourAbandonment: worstHour,
    occupancy: busy / loggedMs,
    talkMinutesPerAgentHour: talk / 60_000 / (loggedMs / 3_600_000),
    waitBetweenCallsMs: { mean: waits.reduce((sum, wait) => sum + wait, 0) / Math.max(1, waits.length), p90: sortedWaits[Math.floor(sortedWaits.length * 0.9)] ?? 0 },
    informationMessages,
    lastExplanation,
  };
}
