import { describe, expect, it } from 'vitest';
import { runDialerDay } from '../src/dialer/day-simulation.ts';
import { erlangAAbandonment, erlangB, erlangC, progressiveUtilisation } from '../src/dialer/erlang.ts';
import { predictivePacer, progressivePacer, vicidialTaperedPacer } from '../src/dialer/pacers.ts';

describe('queueing formulas', () => {
  it('Erlang B and C match published table values', () => {
    expect(erlangB(10, 5)).toBeCloseTo(0.01838, 5);
    expect(erlangB(1, 1)).toBeCloseTo(0.5, 10);
    expect(erlangC(10, 8)).toBeCloseTo(0.4092, 3);
    expect(erlangC(5, 6)).toBe(1);
    expect(() => erlangB(-1, 2)).toThrow(RangeError);
  });

  it('open-loop dialing that drops every answer finding no agent reaches at most 54 % (10 agents) and 81 % (50) occupancy at 3 % abandonment', () => {
    // The load at which Erlang B is 3 %, found by bisection; occupancy = carried load / N.
    const occupancyAt = (servers: number, loss: number) => {
      let low = 0;
      let high = servers * 2;
      for (let step = 0; step < 100; step += 1) {
        const middle = (low + high) / 2;
        if (erlangB(servers, middle) > loss) high = middle;
        else low = middle;
      }
      return (low * (1 - erlangB(servers, low))) / servers;
    };
    expect(occupancyAt(10, 0.03)).toBeCloseTo(0.54, 2);
    expect(occupancyAt(50, 0.03)).toBeCloseTo(0.81, 2);
  });

  it('Erlang A: 20 agents, 120 s handle time, 2 s mean patience abandon 6.0 % at 80 % load and 10.3 % at 90 %', () => {
    const service = 1 / 120;
    expect(erlangAAbandonment(20, 0.8 * 20 * service, service, 1 / 2)).toBeCloseTo(0.06, 2);
    expect(erlangAAbandonment(20, 0.9 * 20 * service, service, 1 / 2)).toBeCloseTo(0.103, 2);
  });

  it('progressive utilisation s / (s + t_a / p)', () => {
    expect(progressiveUtilisation(120_000, 0.3, 20_000)).toBeCloseTo(0.643, 3);
    expect(progressiveUtilisation(90_000, 0.5, 15_000)).toBeCloseTo(0.75, 3);
  });
});

describe('pacing on the simulator', () => {
  const day = { agents: 10, hours: 2, seed: 4 } as const;

  it('progressive dialing abandons (almost) nobody; our predictive pacer keeps agents busier and stays under the 3 % cap', () => {
    const progressive = runDialerDay({ ...day, pacer: progressivePacer() });
    const predictive = runDialerDay({ ...day, pacer: predictivePacer({ cap: 0.03, margin: 0.01 }) });
    expect(progressive.abandonmentUs).toBeLessThan(0.005);
    expect(predictive.abandonmentUs).toBeLessThanOrEqual(0.03);
    expect(predictive.occupancy).toBeGreaterThan(progressive.occupancy + 0.05);
    expect(predictive.liveAnswers).toBeGreaterThan(300);
  });

  it('beats the VICIdial-style controller: more occupancy at lower abandonment', () => {
    const ours = runDialerDay({ agents: 20, hours: 2, seed: 9, pacer: predictivePacer({ cap: 0.03, margin: 0.01 }) });
    const tapered = runDialerDay({ agents: 20, hours: 2, seed: 9, pacer: vicidialTaperedPacer({ dropLimit: 0.03, maxLevel: 4, diffTarget: 0, intensity: 0, dayEnd: Date.UTC(2026, 0, 5, 10) }) });
    expect(ours.occupancy).toBeGreaterThan(tapered.occupancy);
    expect(ours.abandonmentUs).toBeLessThanOrEqual(tapered.abandonmentUs);
  });

  it('explains each decision in a sentence, and a day is the same for the same seed', () => {
    const first = runDialerDay({ ...day, hours: 1, pacer: predictivePacer({ cap: 0.03, margin: 0.01 }) });
    const again = runDialerDay({ ...day, hours: 1, pacer: predictivePacer({ cap: 0.03, margin: 0.01 }) });
    expect(again).toEqual(first);
    expect(first.lastExplanation).toMatch(/^dialing \d+ lines for 10 agents because [\d.]+ agents are expected free within \d+ s .* gain [\d.]+ holds abandonment at [\d.]+ % of \d+ live answers \(target 2\.0 %, cap 3 %\)$/);
  });
});
