import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../src/telephony/clock.ts';
import type { TelephonyEvent } from '../src/telephony/provider.ts';
import { meanOf, sample, seededRandom } from '../src/telephony/random.ts';
import { DEFAULT_CALLEE_MODEL, scenarioOf } from '../src/telephony/callee-model.ts';
import { createSimulator } from '../src/telephony/simulator.ts';
import { telephonyConformance } from './support/telephony-conformance.ts';

telephonyConformance('simulator', () => {
  const clock = new VirtualClock();
  const provider = createSimulator({ clock, random: seededRandom(7) });
  return { provider, advance: async (ms) => void clock.advance(ms), number: (scenario) => scenario };
});

/** A whole run's events, as text, for comparing runs. */
function runDay(seed: number, dials: number): { log: string; events: TelephonyEvent[] } {
  const clock = new VirtualClock();
  const simulator = createSimulator({ clock, random: seededRandom(seed) });
  const events: TelephonyEvent[] = [];
  simulator.onEvent((event) => {
    events.push(event);
    // An agent takes every person who answers (after 500 ms), so talk times show.
    if (event.type === 'answered') {
      clock.schedule(500, () => void simulator.send({ kind: 'connect-to-agent', commandId: `connect-${event.legId}`, legId: event.legId, agentEndpoint: 'agent:1' }).catch(() => undefined));
    }
  });
  for (let index = 0; index < dials; index += 1) {
    clock.schedule(index * 1_000, () => void simulator.send({ kind: 'dial', commandId: `dial-${index}`, legId: `leg-${index}`, to: `+47400${String(index).padStart(5, '0')}`, from: '+4721000000', ringTimeoutMs: 25_000, amd: 'detect' }));
  }
  clock.runUntil(clock.now() + dials * 1_000 + 3_600_000);
  return { log: events.map((event) => `${event.at} ${event.legId} ${event.type}`).join('\n'), events };
}

describe('the telephony simulator', () => {
  it('reads the SIPp scenario convention from the number', () => {
    expect(scenarioOf('answer-3000')).toMatchObject({ kind: 'live', ringMs: 3000 });
    expect(scenarioOf('sip:machine-4500@127.0.0.1')).toMatchObject({ kind: 'machine', ringMs: 4500 });
    expect(scenarioOf('busy')).toEqual({ kind: 'busy' });
    expect(scenarioOf('noanswer-20000')).toEqual({ kind: 'noanswer', ringMs: 20000 });
    expect(scenarioOf('fail')).toEqual({ kind: 'fail' });
    expect(scenarioOf('+4741000001')).toBeUndefined();
    expect(scenarioOf('answer-')).toBeUndefined();
  });

  it('is deterministic: the same seed gives the same day, another seed another day', () => {
    const first = runDay(42, 2_000);
    expect(runDay(42, 2_000).log).toBe(first.log);
    expect(runDay(43, 2_000).log).not.toBe(first.log);
  });

  it('produces the configured outcome mix and talk times', () => {
    const { events } = runDay(1, 20_000);
    const finals = new Map<string, string>();
    const answered = new Set<string>();
    for (const event of events) {
      if (event.type === 'answered') answered.add(event.legId);
      if (event.type === 'busy' || event.type === 'failed' || event.type === 'no-answer' || event.type === 'completed') finals.set(event.legId, event.type);
    }
    expect(finals.size).toBe(20_000);
    const share = (type: string) => [...finals.values()].filter((final) => final === type).length / 20_000;
    const { outcomes } = DEFAULT_CALLEE_MODEL;
    expect(Math.abs(share('busy') - outcomes.busy)).toBeLessThan(0.01);
    expect(Math.abs(share('failed') - outcomes.failed)).toBeLessThan(0.01);
    // Ring times of 4–20 s never reach the 25 s ring timeout: every person and machine answers.
    expect(Math.abs(answered.size / 20_000 - (outcomes.live + outcomes.machine))).toBeLessThan(0.015);
    // Most people reach the agent (who takes them after 500 ms) and talk.
    const talks = events.filter((event) => event.type === 'completed' && event.talkMs > 0);
    expect(talks.length).toBeGreaterThan(4_000);
  });

  it('detects answering machines at the configured accuracy', () => {
    const verdicts = (party: 'live' | 'machine') => {
      const clock = new VirtualClock();
      const outcomes = { live: party === 'live' ? 1 : 0, machine: party === 'machine' ? 1 : 0, busy: 0, noAnswer: 0, failed: 0 };
      // Patient people: every call lives to its verdict.
      const simulator = createSimulator({ clock, random: seededRandom(17), model: { ...DEFAULT_CALLEE_MODEL, outcomes, patienceMs: { kind: 'fixed', ms: 60_000 } } });
      const results: string[] = [];
      simulator.onEvent((event) => event.type === 'machine-detected' && results.push(event.result));
      for (let index = 0; index < 10_000; index += 1) {
        void simulator.send({ kind: 'dial', commandId: `d${index}`, legId: `l${index}`, to: `+47400${index}`, from: '+4721000000', ringTimeoutMs: 30_000, amd: 'detect' });
      }
      clock.advance(3_600_000);
      return results;
    };
    const people = verdicts('live');
    const machines = verdicts('machine');
    expect(people).toHaveLength(10_000);
    expect(machines).toHaveLength(10_000);
    const rate = (results: string[], verdict: string) => results.filter((result) => result === verdict).length / results.length;
    expect(Math.abs(rate(people, 'human') - DEFAULT_CALLEE_MODEL.amd.humanAsHuman)).toBeLessThan(0.01);
    expect(Math.abs(rate(machines, 'machine') - DEFAULT_CALLEE_MODEL.amd.machineAsMachine)).toBeLessThan(0.015);
  });

  it('draws talk times from the model: their mean lies near the analytic mean', () => {
    const clock = new VirtualClock();
    const outcomes = { live: 1, machine: 0, busy: 0, noAnswer: 0, failed: 0 };
    const simulator = createSimulator({ clock, random: seededRandom(23), model: { ...DEFAULT_CALLEE_MODEL, outcomes, patienceMs: { kind: 'fixed', ms: 60_000 } } });
    const talks: number[] = [];
    simulator.onEvent((event) => {
      if (event.type === 'answered') void simulator.send({ kind: 'connect-to-agent', commandId: `c-${event.legId}`, legId: event.legId, agentEndpoint: 'agent:1' });
      if (event.type === 'completed') talks.push(event.talkMs);
    });
    for (let index = 0; index < 10_000; index += 1) {
      void simulator.send({ kind: 'dial', commandId: `d${index}`, legId: `l${index}`, to: `+47400${index}`, from: '+4721000000', ringTimeoutMs: 30_000, amd: 'off' });
    }
    clock.advance(24 * 3_600_000);
    expect(talks).toHaveLength(10_000);
    const mean = talks.reduce((sum, talk) => sum + talk, 0) / talks.length;
    expect(Math.abs(mean - meanOf(DEFAULT_CALLEE_MODEL.talkMs)) / meanOf(DEFAULT_CALLEE_MODEL.talkMs)).toBeLessThan(0.03);
  });

  it('samples each distribution around its mean', () => {
    const random = seededRandom(3);
    for (const duration of [
      { kind: 'uniform', minMs: 4_000, maxMs: 20_000 },
      { kind: 'exponential', meanMs: 6_000 },
      { kind: 'lognormal', medianMs: 90_000, sigma: 0.6 },
    ] as const) {
      const values = Array.from({ length: 50_000 }, () => sample(random, duration));
      const mean = values.reduce((sum, value) => sum + value, 0) / values.length;
      expect(Math.abs(mean - meanOf(duration)) / meanOf(duration)).toBeLessThan(0.03);
      expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
    }
  });

  it('refuses a dial beyond its concurrent-leg limit, and offers inbound calls that ring until answered or abandoned', async () => {
    const clock = new VirtualClock();
    const simulator = createSimulator({ clock, random: seededRandom(5), capabilities: { maxConcurrentLegs: 2 } });
    const events: TelephonyEvent[] = [];
    simulator.onEvent((event) => events.push(event));
    const dial = (legId: string) => simulator.send({ kind: 'dial', commandId: legId, legId, to: 'answer-60000', from: '+4721000000', ringTimeoutMs: 30_000, amd: 'off' });
    await dial('one');
    await dial('two');
    await expect(dial('three')).rejects.toMatchObject({ code: 'capacity' });
    clock.advance(31_000); // both end as no-answer: room again
    await dial('four');
    await simulator.send({ kind: 'hangup', commandId: 'hangup-four', legId: 'four' });

    simulator.offerInbound({ legId: 'in-1', from: '+4790000001', to: '+4721000000', patienceMs: 40_000 });
    simulator.offerInbound({ legId: 'in-2', from: '+4790000002', to: '+4721000000', patienceMs: 5_000 });
    clock.advance(1_000);
    await simulator.send({ kind: 'answer', commandId: 'answer-in-1', legId: 'in-1' });
    clock.advance(10_000);
    const types = (legId: string) => events.filter((event) => event.legId === legId).map((event) => event.type);
    expect(types('in-1')).toEqual(['initiated', 'ringing', 'answered']);
    expect(types('in-2')).toEqual(['initiated', 'ringing', 'cancelled']);
    expect(events.find((event) => event.legId === 'in-1')).toMatchObject({ direction: 'inbound' });
  });

  it('keeps running when a listener throws, and counts it', () => {
    const clock = new VirtualClock();
    const simulator = createSimulator({ clock, random: seededRandom(9) });
    const seen: string[] = [];
    simulator.onEvent(() => {
      throw new Error('a broken listener');
    });
    simulator.onEvent((event) => seen.push(event.type));
    void simulator.send({ kind: 'dial', commandId: 'd', legId: 'l', to: 'busy', from: '+4721000000', ringTimeoutMs: 30_000, amd: 'off' });
    clock.advance(5_000);
    expect(seen).toEqual(['initiated', 'busy']);
    expect(simulator.listenerErrors).toBe(2);
  });

  it('runs in real time inside the product: events come when the wall clock reaches them', async () => {
    const clock = new VirtualClock(Date.now());
    const simulator = createSimulator({ clock, random: seededRandom(11), model: { ...DEFAULT_CALLEE_MODEL, setupMs: { kind: 'fixed', ms: 50 } } });
    const stop = clock.followRealTime();
    try {
      const started = Date.now();
      const answered = new Promise<number>((resolve) => simulator.onEvent((event) => event.type === 'answered' && resolve(Date.now() - started)));
      await simulator.send({ kind: 'dial', commandId: 'rt', legId: 'rt', to: 'answer-250', from: '+4721000000', ringTimeoutMs: 30_000, amd: 'off' });
      const elapsed = await answered;
      // 50 ms of setup and 250 ms of ringing: not before, and not long after.
      expect(elapsed).toBeGreaterThanOrEqual(295);
      expect(elapsed).toBeLessThan(3_000);
    } finally {
      stop();
    }
  });

  it('in real time, an event caused by a command carries the moment of the command, not of the last timer', async () => {
    const shift = 5 * 3_600_000;
    const clock = new VirtualClock(Date.now() + shift);
    const simulator = createSimulator({ clock, random: seededRandom(12), model: { ...DEFAULT_CALLEE_MODEL, setupMs: { kind: 'fixed', ms: 20 }, talkMs: { kind: 'fixed', ms: 600_000 } } });
    const stop = clock.followRealTime();
    try {
      const events: { type: string; at: number }[] = [];
      simulator.onEvent((event) => events.push({ type: event.type, at: event.at }));
      await simulator.send({ kind: 'dial', commandId: 'hang', legId: 'hang', to: 'answer-50', from: '+4721000000', ringTimeoutMs: 30_000, amd: 'off' });
      await new Promise((resolve) => setTimeout(resolve, 600)); // answered after ~70 ms; then nothing is due for ten minutes
      const before = Date.now();
      await simulator.send({ kind: 'hangup', commandId: 'hang-up', legId: 'hang' });
      const ended = events.find((event) => event.type === 'completed');
      expect(ended, JSON.stringify(events)).toBeDefined();
      // The wall clock's moment (shifted), not the answer's ~500 ms earlier.
      // (The offset is fixed when following starts, within a few ms of the shift.)
      expect(ended!.at - shift).toBeGreaterThanOrEqual(before - 20);
      expect(ended!.at - shift).toBeLessThanOrEqual(Date.now() + 20);
    } finally {
      stop();
    }
  });
});
