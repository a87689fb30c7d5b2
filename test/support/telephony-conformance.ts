import { describe, expect, it } from 'vitest';
import { FINAL_EVENTS, TelephonyError, type TelephonyEvent, type TelephonyProvider } from '../../src/telephony/provider.ts';

/**
 * The behaviour every telephony provider must show, whatever it drives (the simulator now; a SIP
 * trunk or a CPaaS later): one suite, run against each adapter. A harness gives the provider, a
 * way to let time pass (virtual for the simulator, real for a network), and numbers that make the
 * far end behave a given way (for SIP: a SIPp scenario of that name).
 */
export type ConformanceHarness = {
  provider: TelephonyProvider;
  /** Lets `ms` of provider time pass. */
  advance(ms: number): Promise<void>;
  /** A number whose far end: answers after `ms` (a person), answers after `ms` (a machine), is busy, never answers, fails. */
  number(scenario: `answer-${number}` | `machine-${number}` | 'busy' | `noanswer-${number}` | 'fail'): string;
};

export function telephonyConformance(name: string, makeHarness: () => ConformanceHarness): void {
  describe(`telephony provider conformance: ${name}`, () => {
    const setUp = () => {
      const harness = makeHarness();
      const events: TelephonyEvent[] = [];
      harness.provider.onEvent((event) => events.push(event));
      const of = (legId: string) => events.filter((event) => event.legId === legId);
      const typesOf = (legId: string) => of(legId).map((event) => event.type);
      let commands = 0;
      const id = () => `cmd-${(commands += 1)}`;
      const dial = (legId: string, to: string, extra: { ringTimeoutMs?: number; amd?: 'off' | 'detect' } = {}) =>
        harness.provider.send({ kind: 'dial', commandId: id(), legId, to, from: '+4721000000', ringTimeoutMs: extra.ringTimeoutMs ?? 30_000, amd: extra.amd ?? 'off' });
      return { ...harness, events, of, typesOf, id, dial };
    };

    it('reports its capabilities', () => {
      const capabilities = makeHarness().provider.capabilities();
      expect(typeof capabilities.amd).toBe('boolean');
      expect(typeof capabilities.recordPause).toBe('boolean');
      expect(['native', 'conference']).toContain(capabilities.bridge);
      expect(capabilities.maxConcurrentLegs).toBeGreaterThan(0);
    });

    it('answered, then the far end hangs up: every event in order, numbered per leg, one final event', async () => {
      const t = setUp();
      await t.dial('leg-1', t.number('answer-2000'));
      await t.advance(3_000);
      expect(t.typesOf('leg-1')).toEqual(['initiated', 'ringing', 'answered']);
      await t.provider.send({ kind: 'connect-to-agent', commandId: t.id(), legId: 'leg-1', agentEndpoint: 'agent:1' });
      await t.advance(30 * 60_000);
      expect(t.typesOf('leg-1')).toEqual(['initiated', 'ringing', 'answered', 'bridged', 'completed']);
      const events = t.of('leg-1');
      expect(events.map((event) => event.seq)).toEqual([1, 2, 3, 4, 5]);
      for (let index = 1; index < events.length; index += 1) expect((events[index] as TelephonyEvent).at).toBeGreaterThanOrEqual((events[index - 1] as TelephonyEvent).at);
      const completed = events.at(-1) as Extract<TelephonyEvent, { type: 'completed' }>;
      expect(completed).toMatchObject({ by: 'remote', raw: { sipStatus: 200, q850: 16 } });
      expect(completed.talkMs).toBeGreaterThan(0);
      expect(events.filter((event) => FINAL_EVENTS.has(event.type))).toHaveLength(1);
    });

    it('busy, failed and unanswered calls end with their SIP status and Q.850 cause, never answered', async () => {
      const t = setUp();
      await t.dial('busy', t.number('busy'));
      await t.dial('fail', t.number('fail'));
      await t.dial('never', t.number('noanswer-60000'), { ringTimeoutMs: 20_000 });
      await t.advance(25_000);
      expect(t.of('busy').at(-1)).toMatchObject({ type: 'busy', raw: { sipStatus: 486, q850: 17 } });
      expect(t.of('fail').at(-1)).toMatchObject({ type: 'failed', raw: { sipStatus: 503 } });
      const never = t.of('never');
      expect(never.map((event) => event.type)).toEqual(['initiated', 'ringing', 'no-answer']);
      expect(never.at(-1)).toMatchObject({ raw: { sipStatus: 480, q850: 19 } });
      // It rang for the ring timeout (the dialer's limit), not for the scenario's 60 s.
      const ringing = never.find((event) => event.type === 'ringing') as TelephonyEvent;
      expect((never.at(-1) as TelephonyEvent).at - ringing.at).toBe(20_000);
      for (const legId of ['busy', 'fail', 'never']) expect(t.typesOf(legId)).not.toContain('answered');
    });

    it('a person who would answer after the ring timeout is a no-answer', async () => {
      const t = setUp();
      await t.dial('late', t.number('answer-25000'), { ringTimeoutMs: 15_000 });
      await t.advance(40_000);
      expect(t.typesOf('late')).toEqual(['initiated', 'ringing', 'no-answer']);
    });

    it('answering-machine detection classifies a machine, which ends the call on its own', async () => {
      const t = setUp();
      if (!t.provider.capabilities().amd) return;
      await t.dial('machine', t.number('machine-3000'), { amd: 'detect' });
      await t.advance(10 * 60_000);
      const types = t.typesOf('machine');
      expect(types.slice(0, 3)).toEqual(['initiated', 'ringing', 'answered']);
      expect(t.of('machine').some((event) => event.type === 'machine-detected' && event.final)).toBe(true);
      expect(types.at(-1)).toBe('completed');
    });

    it('a hangup while ringing cancels; after the answer it completes from our side', async () => {
      const t = setUp();
      await t.dial('ringing', t.number('answer-20000'));
      await t.dial('talking', t.number('answer-1000'));
      await t.advance(5_000);
      await t.provider.send({ kind: 'hangup', commandId: t.id(), legId: 'ringing' });
      await t.provider.send({ kind: 'hangup', commandId: t.id(), legId: 'talking' });
      await t.advance(60_000);
      expect(t.typesOf('ringing')).toEqual(['initiated', 'ringing', 'cancelled']);
      expect(t.of('talking').at(-1)).toMatchObject({ type: 'completed', by: 'local' });
      expect(t.typesOf('talking')).not.toContain('bridged');
    });

    it('a person left waiting for an agent hangs up: the call ends without a bridge', async () => {
      const t = setUp();
      await t.dial('waiting', t.number('answer-1000'));
      await t.advance(30 * 60_000);
      expect(t.typesOf('waiting')).toEqual(['initiated', 'ringing', 'answered', 'completed']);
      expect(t.of('waiting').at(-1)).toMatchObject({ by: 'remote', talkMs: 0 });
    });

    it('bridges two answered legs, and plays a message to an answered leg', async () => {
      const t = setUp();
      await t.dial('a', t.number('answer-1000'));
      await t.dial('b', t.number('answer-1000'));
      await t.advance(1_500);
      await t.provider.send({ kind: 'bridge', commandId: t.id(), legA: 'a', legB: 'b' });
      await t.dial('c', t.number('answer-500'));
      await t.advance(1_000);
      await t.provider.send({ kind: 'play', commandId: t.id(), legId: 'c', playbackId: 'info-1', media: 'information-message' });
      await t.advance(60_000);
      expect(t.of('a').find((event) => event.type === 'bridged')).toMatchObject({ with: 'b' });
      expect(t.of('b').find((event) => event.type === 'bridged')).toMatchObject({ with: 'a' });
      expect(t.of('c').some((event) => event.type === 'play-finished' && event.playbackId === 'info-1')).toBe(true);
    });

    it('pauses and resumes a recording (card payments); the saved length leaves a skipped pause out', async () => {
      const t = setUp();
      if (!t.provider.capabilities().recordPause) return;
      await t.dial('rec', t.number('answer-1000'));
      await t.advance(1_500);
      await t.provider.send({ kind: 'connect-to-agent', commandId: t.id(), legId: 'rec', agentEndpoint: 'agent:1' });
      await t.provider.send({ kind: 'record-start', commandId: t.id(), legId: 'rec', recordingId: 'r1' });
      await t.advance(10_000);
      await t.provider.send({ kind: 'record-pause', commandId: t.id(), recordingId: 'r1', behavior: 'skip' });
      await t.advance(20_000);
      await t.provider.send({ kind: 'record-resume', commandId: t.id(), recordingId: 'r1' });
      await t.advance(5_000);
      await t.provider.send({ kind: 'record-stop', commandId: t.id(), recordingId: 'r1' });
      const states = t.of('rec').flatMap((event) => (event.type === 'recording-state' ? [event.state] : []));
      expect(states).toEqual(['started', 'paused', 'resumed', 'stopped', 'saved']);
      const saved = t.of('rec').find((event) => event.type === 'recording-state' && event.state === 'saved') as Extract<TelephonyEvent, { type: 'recording-state' }>;
      expect(saved.durationMs).toBe(15_000);
    });

    it('commands are idempotent by command id, and refuse what cannot be done with a stable code', async () => {
      const t = setUp();
      const dial = { kind: 'dial', commandId: 'dial-once', legId: 'idem', to: t.number('answer-1000'), from: '+4721000000', ringTimeoutMs: 30_000, amd: 'off' } as const;
      await t.provider.send(dial);
      await t.provider.send(dial); // a retry after a lost answer: accepted, no second call
      await t.advance(2_000);
      expect(t.typesOf('idem').filter((type) => type === 'initiated')).toHaveLength(1);
      const code = (promise: Promise<unknown>) => promise.then(() => 'accepted', (error: unknown) => (error instanceof TelephonyError ? error.code : 'other'));
      expect(await code(t.provider.send({ ...dial, to: t.number('busy') }))).toBe('conflicting_command');
      expect(await code(t.provider.send({ ...dial, commandId: 'dial-again' }))).toBe('duplicate_leg');
      expect(await code(t.provider.send({ kind: 'hangup', commandId: t.id(), legId: 'no-such-leg' }))).toBe('unknown_leg');
      expect(await code(t.provider.send({ kind: 'record-stop', commandId: t.id(), recordingId: 'no-such-recording' }))).toBe('unknown_leg');
      expect(await code(t.provider.send({ ...dial, commandId: 'bad-timeout', legId: 'bad', ringTimeoutMs: 0 }))).toBe('invalid_command');
      expect(await code(t.provider.send({ ...dial, commandId: '' }))).toBe('invalid_command');
      await t.dial('ring', t.number('answer-20000'));
      await t.advance(1_000);
      expect(await code(t.provider.send({ kind: 'connect-to-agent', commandId: t.id(), legId: 'ring', agentEndpoint: 'agent:1' }))).toBe('invalid_state');
      const hangup = { kind: 'hangup', commandId: 'hang-once', legId: 'idem' } as const;
      await t.provider.send(hangup);
      await t.provider.send(hangup);
      expect(await code(t.provider.send({ kind: 'hangup', commandId: t.id(), legId: 'idem' }))).toBe('leg_ended');
      await t.advance(1_000);
      expect(t.typesOf('idem').filter((type) => FINAL_EVENTS.has(type))).toHaveLength(1);
    });
  });
}
