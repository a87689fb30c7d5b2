import type { Duration } from './random.ts';
import type { RawCause } from './provider.ts';

/**
 * Who answers a simulated dial, and how they behave: the callee model the simulator draws from,
 * the SIPp scenario names a number may carry instead, and the standard network causes.
 */

export type CalleeModel = {
  /** Shares of dial outcomes (normalised; need not sum to 1). */
  outcomes: { live: number; machine: number; busy: number; noAnswer: number; failed: number };
  /** From the dial to ringing (or to busy / failed). */
  setupMs: Duration;
  /** Ringing until a person answers (beyond the dial's ring timeout: no answer). */
  liveRingMs: Duration;
  /** Ringing until a machine answers. */
  machineRingMs: Duration;
  /** A person connected to an agent talks this long, then hangs up. */
  talkMs: Duration;
  /** A person who answered waits this long for an agent, then hangs up (an abandoned call). */
  patienceMs: Duration;
  /** A machine's greeting and recording time, after which it ends the call. */
  machineMs: Duration;
  /** Answering-machine detection: the chance of each right verdict, and when the verdict comes. */
  amd: { humanAsHuman: number; machineAsMachine: number; delayMs: Duration };
  /** How long a played message lasts (the information message of an abandoned call). */
  playMs: Duration;
};

export const DEFAULT_CALLEE_MODEL: CalleeModel = {
  outcomes: { live: 0.3, machine: 0.15, busy: 0.1, noAnswer: 0.42, failed: 0.03 },
  setupMs: { kind: 'uniform', minMs: 100, maxMs: 400 },
  liveRingMs: { kind: 'uniform', minMs: 4_000, maxMs: 20_000 },
  machineRingMs: { kind: 'uniform', minMs: 8_000, maxMs: 20_000 },
  talkMs: { kind: 'lognormal', medianMs: 90_000, sigma: 0.6 },
  // A person who said "hello" rarely hangs up within 3 s, and few wait past 20 s of silence.
  patienceMs: { kind: 'lognormal', medianMs: 10_000, sigma: 0.5 },
  machineMs: { kind: 'uniform', minMs: 15_000, maxMs: 40_000 },
  amd: { humanAsHuman: 0.97, machineAsMachine: 0.88, delayMs: { kind: 'uniform', minMs: 1_000, maxMs: 2_500 } },
  playMs: { kind: 'fixed', ms: 6_000 },
};

/** Everyone answers in person after a few seconds and waits for an agent (training floors and demonstrations). */
export const ANSWERING_CALLEE_MODEL: CalleeModel = {
  ...DEFAULT_CALLEE_MODEL,
  outcomes: { live: 1, machine: 0, busy: 0, noAnswer: 0, failed: 0 },
  liveRingMs: { kind: 'uniform', minMs: 2_000, maxMs: 5_000 },
  patienceMs: { kind: 'lognormal', medianMs: 20_000, sigma: 0.3 },
  // The detector, where a campaign uses it, knows them for people.
  amd: { ...DEFAULT_CALLEE_MODEL.amd, humanAsHuman: 1 },
};

/** The standard pairs of SIP status and Q.850 cause. */
export const CAUSES = {
  normalClearing: { sipStatus: 200, q850: 16, reason: 'NORMAL_CLEARING' },
  userBusy: { sipStatus: 486, q850: 17, reason: 'USER_BUSY' },
  noAnswer: { sipStatus: 480, q850: 19, reason: 'NO_ANSWER' },
  callRejected: { sipStatus: 603, q850: 21, reason: 'CALL_REJECTED' },
  temporaryFailure: { sipStatus: 503, q850: 41, reason: 'NORMAL_TEMPORARY_FAILURE' },
  originatorCancel: { sipStatus: 487, q850: 487, reason: 'ORIGINATOR_CANCEL' },
} as const satisfies Record<string, RawCause>;

/**
 * What the far end of one dial does. A scenario named in the number fixes every time (a person
 * waits 30 s for an agent, then talks 60 s; a machine plays 20 s), so conformance runs are exact;
 * the model draws what a scenario leaves open.
 */
export type Plan =
  | { kind: 'live' | 'machine'; ringMs: number; fixed?: { patienceMs: number; talkMs: number; machineMs: number } }
  | { kind: 'noanswer'; ringMs: number }
  | { kind: 'busy' }
  | { kind: 'fail' };

const SCENARIO_TIMES = { patienceMs: 30_000, talkMs: 60_000, machineMs: 20_000 };
const SCENARIO = /^(?:sip:)?(answer|machine|busy|noanswer|fail)(?:-(\d{1,7}))?(?:@[^\s]*)?$/;

/** The scenario a number names (SIPp convention), if it names one. */
export function scenarioOf(to: string): Plan | undefined {
  const match = SCENARIO.exec(to);
  if (!match) return undefined;
  const ms = match[2] === undefined ? undefined : Number(match[2]);
  switch (match[1]) {
    case 'answer':
      return { kind: 'live', ringMs: ms ?? 5_000, fixed: SCENARIO_TIMES };
    case 'machine':
      return { kind: 'machine', ringMs: ms ?? 5_000, fixed: SCENARIO_TIMES };
    case 'noanswer':
      return { kind: 'noanswer', ringMs: ms ?? Number.POSITIVE_INFINITY };
    case 'busy':
      return { kind: 'busy' };
    default:
      return { kind: 'fail' };
  }
}
