import type { Scheduled, VirtualClock } from './clock.ts';
import { CAUSES, DEFAULT_CALLEE_MODEL, scenarioOf, type CalleeModel, type Plan } from './callee-model.ts';
import { pickWeighted, sample, type Random } from './random.ts';
import { toneWav } from './tone-audio.ts';
import {
  FINAL_EVENTS,
  TelephonyError,
  type Capabilities,
  type LegId,
  type RecordingPauseBehavior,
  type TelephonyCommand,
  type TelephonyEvent,
  type TelephonyProvider,
} from './provider.ts';

/**
 * The default telephony provider: a discrete-event simulation of the network and the people (and
 * machines) at the other end. It runs on a VirtualClock and a seeded Random, so a run is exactly
 * repeatable: accelerated in tests and benchmarks, in real time inside the product.
 *
 * Who answers a dial: a scenario named in the number (the SIPp convention — `answer-<ms>`,
 * `machine-<ms>`, `busy`, `noanswer-<ms>`, `fail`, optionally as `sip:<scenario>@host`), or else
 * the callee model: outcome shares, ring times, how long a person waits for an agent after saying
 * hello (patience), how long they talk, a machine's greeting, and how well answering-machine
 * detection tells the two apart.
 */

type LegState = 'setup' | 'ringing' | 'answered' | 'bridged' | 'ended';
type Recording = { id: string; legId: LegId; state: 'recording' | 'paused' | 'stopped'; since: number; recordedMs: number; behavior: RecordingPauseBehavior };

type Leg = {
  id: LegId;
  direction: 'outbound' | 'inbound';
  state: LegState;
  party: 'live' | 'machine' | 'none';
  /** The far end's fixed times (a named scenario); otherwise drawn from the model. */
  fixed: { patienceMs: number; talkMs: number; machineMs: number } | undefined;
  /** A person waiting (for an agent, or an inbound caller for an answer) hangs up when this fires. */
  patience: Scheduled | undefined;
  seq: number;
  answeredAt: number | undefined;
  bridgedAt: number | undefined;
  timers: Scheduled[];
  recordings: Set<string>;
};

const MAX_REMEMBERED_COMMANDS = 200_000;
/** An ended leg is forgotten this long after its end (commands on it then answer unknown_leg). */
const FORGET_ENDED_AFTER_MS = 10 * 60_000;

export type SimulatorOptions = {
  clock: VirtualClock;
  random: Random;
  model?: CalleeModel;
  capabilities?: Partial<Capabilities>;
};

export type SimulatorProvider = TelephonyProvider & {
  /** The network offers an inbound call: `patienceMs` how long the caller lets it ring unanswered. */
  offerInbound(call: { legId: LegId; from: string; to: string; patienceMs?: number }): void;
  /** Listener exceptions caught (a listener can never stop the simulation). */
  readonly listenerErrors: number;
  /** Legs that have not ended. */
  activeLegs(): number;
};

export function createSimulator(options: SimulatorOptions): SimulatorProvider {
  const { clock, random } = options;
  const model = options.model ?? DEFAULT_CALLEE_MODEL;
  const capabilities: Capabilities = {
    amd: true,
    recordPause: true,
    bridge: 'native',
    earlyMedia: false,
    maxConcurrentLegs: 10_000,
    amdAccuracy: { humanAsHuman: model.amd.humanAsHuman, machineAsMachine: model.amd.machineAsMachine },
    ...options.capabilities,
  };
  const legs = new Map<LegId, Leg>();
  const recordings = new Map<string, Recording>();
  const commands = new Map<string, { fingerprint: string; outcome: Promise<void> }>();
  const listeners = new Set<(event: TelephonyEvent) => void>();
  let listenerErrors = 0;
  let active = 0;

  type EventBody = TelephonyEvent extends infer E ? (E extends TelephonyEvent ? Omit<E, 'legId' | 'at' | 'seq'> : never) : never;

  const emit = (leg: Leg, body: EventBody) => {
    leg.seq += 1;
    const event = { ...body, legId: leg.id, at: clock.now(), seq: leg.seq } as TelephonyEvent;
    if (FINAL_EVENTS.has(event.type)) end(leg);
    for (const listener of listeners) {
      try {
        listener(event);
      } catch {
        listenerErrors += 1;
      }
    }
  };

  const later = (leg: Leg, delayMs: number, action: () => void) => {
    leg.timers.push(clock.schedule(delayMs, action));
  };

  const end = (leg: Leg) => {
    if (leg.state === 'ended') return;
    leg.state = 'ended';
    active -= 1;
    for (const timer of leg.timers) timer.cancel();
    leg.timers = [];
    clock.schedule(FORGET_ENDED_AFTER_MS, () => {
      legs.delete(leg.id);
      for (const id of leg.recordings) recordings.delete(id);
    });
  };

  /** Open recordings of a leg that ends stop and are saved, just before its final event. */
  const closeRecordings = (leg: Leg) => {
    for (const id of leg.recordings) {
      const recording = recordings.get(id);
      if (recording && recording.state !== 'stopped') stopRecording(leg, recording);
    }
  };

  const stopRecording = (leg: Leg, recording: Recording) => {
    if (recording.state === 'recording' || recording.behavior === 'silence') recording.recordedMs += clock.now() - recording.since;
    recording.state = 'stopped';
    emit(leg, { type: 'recording-state', recordingId: recording.id, state: 'stopped' });
    emit(leg, { type: 'recording-state', recordingId: recording.id, state: 'saved', durationMs: Math.round(recording.recordedMs) });
  };

  const finish = (leg: Leg, by: 'local' | 'remote') => {
    closeRecordings(leg);
    const talkMs = leg.bridgedAt === undefined ? 0 : clock.now() - leg.bridgedAt;
    emit(leg, { type: 'completed', by, talkMs: Math.round(talkMs), raw: CAUSES.normalClearing });
  };

  const answer = (leg: Leg, party: 'live' | 'machine', amd: boolean) => {
    leg.state = 'answered';
    leg.party = party;
    leg.answeredAt = clock.now();
    emit(leg, { type: 'answered' });
    if (amd) {
      const right = party === 'live' ? random.next() < model.amd.humanAsHuman : random.next() < model.amd.machineAsMachine;
      const verdict = party === 'live' ? (right ? 'human' : 'machine') : right ? 'machine' : 'human';
      later(leg, sample(random, model.amd.delayMs), () => emit(leg, { type: 'machine-detected', result: verdict, final: true }));
    }
    if (party === 'live') {
      // Waiting for an agent: a person hangs up when their patience runs out (the call is abandoned).
      leg.patience = clock.schedule(leg.fixed?.patienceMs ?? sample(random, model.patienceMs), () => {
        if (leg.state === 'answered') finish(leg, 'remote');
      });
      leg.timers.push(leg.patience);
    } else {
      later(leg, leg.fixed?.machineMs ?? sample(random, model.machineMs), () => finish(leg, 'remote'));
    }
  };

  const plan = (to: string): Plan => {
    const named = scenarioOf(to);
    if (named) return named;
    switch (pickWeighted(random, model.outcomes)) {
      case 'live':
        return { kind: 'live', ringMs: sample(random, model.liveRingMs) };
      case 'machine':
        return { kind: 'machine', ringMs: sample(random, model.machineRingMs) };
      case 'busy':
        return { kind: 'busy' };
      case 'noAnswer':
        return { kind: 'noanswer', ringMs: Number.POSITIVE_INFINITY };
      default:
        return { kind: 'fail' };
    }
  };

  const legOf = (legId: LegId, allowEnded = false): Leg => {
    const leg = legs.get(legId);
    if (!leg) throw new TelephonyError('unknown_leg', 'No call leg with this id.');
    if (!allowEnded && leg.state === 'ended') throw new TelephonyError('leg_ended', 'The call leg has ended.');
    return leg;
  };

  const connected = (leg: Leg, what: string) => {
    if (leg.state !== 'answered' && leg.state !== 'bridged') throw new TelephonyError('invalid_state', `Cannot ${what} a call that is not answered.`);
  };

  const newLeg = (legId: LegId, direction: 'outbound' | 'inbound'): Leg => {
    if (legs.has(legId)) throw new TelephonyError('duplicate_leg', 'A call leg with this id exists.');
    if (active >= capabilities.maxConcurrentLegs) throw new TelephonyError('capacity', 'The concurrent call limit is reached.');
    const leg: Leg = { id: legId, direction, state: 'setup', party: 'none', fixed: undefined, patience: undefined, seq: 0, answeredAt: undefined, bridgedAt: undefined, timers: [], recordings: new Set() };
    legs.set(legId, leg);
    active += 1;
    return leg;
  };

  /** Carries out an accepted command; runs at the moment it was sent. */
  const perform = (command: TelephonyCommand): void => {
    switch (command.kind) {
      case 'dial': {
        if (!command.legId || !command.to) throw new TelephonyError('invalid_command', 'A dial needs a leg id and a number.');
        if (!(command.ringTimeoutMs >= 1_000 && command.ringTimeoutMs <= 300_000)) throw new TelephonyError('invalid_command', 'The ring timeout is 1–300 seconds.');
        const leg = newLeg(command.legId, 'outbound');
        const outcome = plan(command.to);
        if (outcome.kind === 'live' || outcome.kind === 'machine') leg.fixed = outcome.fixed;
        const amd = command.amd === 'detect' && capabilities.amd;
        later(leg, 0, () => emit(leg, { type: 'initiated', direction: 'outbound', from: command.from, to: command.to }));
        later(leg, sample(random, model.setupMs), () => {
          if (outcome.kind === 'busy') return emit(leg, { type: 'busy', raw: CAUSES.userBusy });
          if (outcome.kind === 'fail') return emit(leg, { type: 'failed', raw: CAUSES.temporaryFailure });
          leg.state = 'ringing';
          emit(leg, { type: 'ringing', early: false });
          // The network gives up at the scenario's time, the dialer at its ring timeout.
          if (outcome.kind === 'noanswer' || outcome.ringMs >= command.ringTimeoutMs) {
            const giveUp = Math.min(command.ringTimeoutMs, outcome.ringMs);
            later(leg, giveUp, () => emit(leg, { type: 'no-answer', raw: CAUSES.noAnswer }));
            return;
          }
          const party = outcome.kind;
          later(leg, outcome.ringMs, () => answer(leg, party, amd));
        });
        return;
      }
      case 'answer': {
        const leg = legOf(command.legId);
        if (leg.direction !== 'inbound' || leg.state !== 'ringing') throw new TelephonyError('invalid_state', 'Only a ringing inbound call can be answered.');
        leg.patience?.cancel();
        leg.patience = undefined;
        leg.state = 'answered';
        leg.party = 'live';
        leg.answeredAt = clock.now();
        emit(leg, { type: 'answered' });
        return;
      }
      case 'reject': {
        const leg = legOf(command.legId);
        if (leg.direction !== 'inbound' || leg.state !== 'ringing') throw new TelephonyError('invalid_state', 'Only a ringing inbound call can be rejected.');
        emit(leg, { type: 'cancelled', raw: CAUSES.callRejected });
        return;
      }
      case 'connect-to-agent': {
        const leg = legOf(command.legId);
        if (leg.state !== 'answered') throw new TelephonyError('invalid_state', 'Only an answered call that is not connected can go to an agent.');
        leg.patience?.cancel();
        leg.patience = undefined;
        leg.state = 'bridged';
        leg.bridgedAt = clock.now();
        emit(leg, { type: 'bridged', with: command.agentEndpoint });
        // A person talks, then hangs up; a machine plays on until its own end (already scheduled).
        if (leg.party === 'live') later(leg, leg.fixed?.talkMs ?? sample(random, model.talkMs), () => finish(leg, 'remote'));
        return;
      }
      case 'bridge': {
        const a = legOf(command.legA);
        const b = legOf(command.legB);
        if (a === b || a.state !== 'answered' || b.state !== 'answered') throw new TelephonyError('invalid_state', 'Two different answered calls that are not connected can be bridged.');
        for (const leg of [a, b]) {
          leg.patience?.cancel();
          leg.patience = undefined;
          leg.state = 'bridged';
          leg.bridgedAt = clock.now();
          // Once joined, a person talks, then hangs up.
          if (leg.party === 'live') later(leg, leg.fixed?.talkMs ?? sample(random, model.talkMs), () => finish(leg, 'remote'));
        }
        emit(a, { type: 'bridged', with: b.id });
        emit(b, { type: 'bridged', with: a.id });
        return;
      }
      case 'hangup': {
        const leg = legOf(command.legId);
        if (leg.state === 'setup' || leg.state === 'ringing') emit(leg, { type: 'cancelled', raw: CAUSES.originatorCancel });
        else finish(leg, 'local');
        return;
      }
      case 'play': {
        const leg = legOf(command.legId);
        connected(leg, 'play to');
        later(leg, sample(random, model.playMs), () => emit(leg, { type: 'play-finished', playbackId: command.playbackId }));
        return;
      }
      case 'record-start': {
        const leg = legOf(command.legId);
        connected(leg, 'record');
        if (recordings.has(command.recordingId)) throw new TelephonyError('invalid_state', 'A recording with this id exists.');
        recordings.set(command.recordingId, { id: command.recordingId, legId: leg.id, state: 'recording', since: clock.now(), recordedMs: 0, behavior: 'silence' });
        leg.recordings.add(command.recordingId);
        emit(leg, { type: 'recording-state', recordingId: command.recordingId, state: 'started' });
        return;
      }
      case 'record-pause':
      case 'record-resume':
      case 'record-stop': {
        const recording = recordings.get(command.recordingId);
        if (!recording) throw new TelephonyError('unknown_leg', 'No recording with this id.');
        const leg = legOf(recording.legId);
        if (recording.state === 'stopped') throw new TelephonyError('invalid_state', 'The recording has stopped.');
        if (command.kind === 'record-stop') return stopRecording(leg, recording);
        if (command.kind === 'record-pause') {
          if (!capabilities.recordPause) throw new TelephonyError('invalid_state', 'This provider cannot pause recordings.');
          if (recording.state !== 'recording') throw new TelephonyError('invalid_state', 'The recording is not running.');
          recording.recordedMs += clock.now() - recording.since;
          recording.state = 'paused';
          recording.behavior = command.behavior;
          recording.since = clock.now();
          emit(leg, { type: 'recording-state', recordingId: recording.id, state: 'paused', behavior: command.behavior });
          return;
        }
        if (recording.state !== 'paused') throw new TelephonyError('invalid_state', 'The recording is not paused.');
        // A pause that records silence still counts in the recording's length.
        if (recording.behavior === 'silence') recording.recordedMs += clock.now() - recording.since;
        recording.state = 'recording';
        recording.since = clock.now();
        emit(leg, { type: 'recording-state', recordingId: recording.id, state: 'resumed' });
        return;
      }
    }
  };

  return {
    capabilities: () => ({ ...capabilities }),
    send(command) {
      if (typeof command.commandId !== 'string' || command.commandId.length === 0 || command.commandId.length > 200) {
        return Promise.reject(new TelephonyError('invalid_command', 'A command needs a command id of 1–200 characters.'));
      }
      const fingerprint = JSON.stringify(command);
      const known = commands.get(command.commandId);
      if (known) {
        return known.fingerprint === fingerprint ? known.outcome : Promise.reject(new TelephonyError('conflicting_command', 'This command id was used for another command.'));
      }
      let outcome: Promise<void>;
      try {
        perform(command);
        outcome = Promise.resolve();
      } catch (error) {
        outcome = Promise.reject(error);
        // Remembered and answered the same way on a retry; never an unhandled rejection here.
        outcome.catch(() => undefined);
      }
      if (commands.size >= MAX_REMEMBERED_COMMANDS) commands.delete(commands.keys().next().value as string);
      commands.set(command.commandId, { fingerprint, outcome });
      return outcome;
    },
    onEvent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    fetchRecording(recordingId) {
      const recording = recordings.get(recordingId);
      if (!recording || recording.state !== 'stopped') return Promise.reject(new TelephonyError('unknown_leg', 'No saved recording with this id.'));
      return Promise.resolve(toneWav(recording.recordedMs));
    },
    offerInbound(call) {
      const leg = newLeg(call.legId, 'inbound');
      later(leg, 0, () => {
        emit(leg, { type: 'initiated', direction: 'inbound', from: call.from, to: call.to });
        leg.state = 'ringing';
        emit(leg, { type: 'ringing', early: false });
        leg.patience = clock.schedule(call.patienceMs ?? sample(random, model.patienceMs), () => emit(leg, { type: 'cancelled', raw: CAUSES.originatorCancel }));
        leg.timers.push(leg.patience);
      });
    },
    get listenerErrors() {
      return listenerErrors;
    },
    activeLegs: () => active,
  };
}
