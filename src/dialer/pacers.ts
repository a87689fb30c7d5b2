import { normalCdf, type DialStats } from './dial-stats.ts';

/**
 * Pacing: how many new calls to launch now. A pacer sees the floor as the dialer does (agents
 * idle, talking with their elapsed talk time, in wrap-up with the time left; dials in progress
 * with their age; people answered and waiting) plus the dialer's own statistics, and answers
 * with a number and a sentence a supervisor can read.
 */
export type FloorState = {
  now: number;
  /** When the campaign's legal measurement window began (abandonment is held under the cap over it). */
  windowStart: number;
  agents: { logged: number; idle: number; talkingElapsedMs: number[]; wrapRemainingMs: number[] };
  /** Ages of dials not yet answered or ended. */
  outstandingAgesMs: number[];
  /** People answered and not yet with an agent (including those the detector is still judging). */
  waiting: number;
  /** Wrap-up after each call (configured). */
  wrapMs: number;
  stats: DialStats;
};

export type PacingDecision = { dial: number; explanation: string };

export type Pacer = { readonly name: string; decide(floor: FloorState): PacingDecision };

/** Progressive (power 1:1): one call per idle agent not already covered by a call in progress. */
export function progressivePacer(): Pacer {
  return {
    name: 'progressive',
    decide(floor) {
      const dial = Math.max(0, floor.agents.idle - floor.outstandingAgesMs.length - floor.waiting);
      return { dial, explanation: `dialing ${dial} lines for ${floor.agents.idle} idle agents: one call per idle agent (${floor.outstandingAgesMs.length} already ringing)` };
    },
  };
}

export type PredictiveOptions = {
  /** The legal cap on abandoned live answers (0.03). */
  cap: number;
  /** The controller aims this far below the cap (0.01 → aims at 2 %). */
  margin: number;
};

/**
 * Ringvakt's model-based predictive pacer. At each decision it forecasts, over the time a new
 * dial takes to reach a person (h, the campaign's own median), how many agents will be free —
 * idle ones, those in wrap-up ending within h, and those talking whose call ends within h, from
 * the lognormal talk-time model conditioned on how long each has talked — and how many people the
 * dials already in progress will bring within h. It launches enough new calls to close the gap:
 * n = ⌊(g · E[free within h] − E[people within h]) / P(a new dial brings a person within h)⌋.
 *
 * The gain g is the only thing feedback touches, and slowly: once a minute it moves toward the
 * target (cap − margin) by the measured abandonment of the last 15 minutes and of the legal
 * window, so a noisy minute cannot swing the dial rate, and the window's rate stays below the
 * cap. When the window is already near the cap the gain falls fast (held under by construction).
 */
/** How far one minute's error moves the gain (a damped step: no oscillation on noisy minutes). */
const GAIN_STEP = 0.08;

export function predictivePacer(options: PredictiveOptions): Pacer {
  const target = options.cap - options.margin;
  // The forecast counts only the people due within the horizon, so it leans toward dialing too
  // much: the gain lives below 1. It starts cautious until the campaign's own figures replace
  // the priors.
  let gain = 0.47;
  let lastTuned = Number.NEGATIVE_INFINITY;
  return {
    name: 'predictive',
    decide(floor) {
      const { stats } = floor;
      if (floor.now - lastTuned >= 60_000) {
        lastTuned = floor.now;
        const recent = stats.abandonment(floor.now - 15 * 60_000, floor.now);
        const legal = stats.abandonment(floor.windowStart, floor.now);
        if (recent.liveAnswers >= 20) gain *= Math.exp(GAIN_STEP * Math.max(-2, Math.min(1, (target - recent.rate) / target)));
        // The legal window is what the law measures: once it nears the cap, pull back at once.
        if (legal.liveAnswers >= 50 && legal.rate > options.cap - options.margin / 2) gain *= 0.85;
        gain = Math.min(2, Math.max(0.2, gain));
      }
      // The horizon: the median time a new dial takes to bring a person.
      const horizon = stats.readyQuantileMs(0.5);
      const { mu, sigma } = stats.talkModel();
      const talkCdf = (ms: number) => (ms <= 0 ? 0 : normalCdf((Math.log(ms) - mu) / sigma));
      let freeSoon = floor.agents.idle - floor.waiting;
      for (const elapsed of floor.agents.talkingElapsedMs) {
        // Free when the call ends and wrap-up is done: talk must end within h − wrap from now.
        const survive = 1 - talkCdf(elapsed);
        if (survive <= 0) freeSoon += 1;
        else freeSoon += Math.max(0, talkCdf(elapsed + horizon - floor.wrapMs) - talkCdf(elapsed)) / survive;
      }
      for (const remaining of floor.agents.wrapRemainingMs) if (remaining <= horizon) freeSoon += 1;
      const share = stats.liveShare();
      // The people the calls in progress should bring within the horizon.
      let answersComing = 0;
      for (const age of floor.outstandingAgesMs) {
        const already = share * stats.readyWithin(age);
        answersComing += already >= 1 ? 0 : (share * (stats.readyWithin(age + horizon) - stats.readyWithin(age))) / (1 - already);
      }
      const perDial = Math.max(0.02, share * stats.readyWithin(horizon));
      const wanted = Math.floor((gain * freeSoon - answersComing) / perDial);
      const dial = Math.max(0, Math.min(wanted, 2 * floor.agents.logged));
      const legal = stats.abandonment(floor.windowStart, floor.now);
      return {
        dial,
        explanation:
          `dialing ${dial} lines for ${floor.agents.logged} agents because ${freeSoon.toFixed(1)} agents are expected free within ${(horizon / 1000).toFixed(0)} s ` +
          `(${floor.agents.idle} idle, ${floor.waiting} callers waiting), the ${floor.outstandingAgesMs.length} calls ringing should bring ${answersComing.toFixed(1)} people by then, ` +
          `and a new call brings a person within that time ${(perDial * 100).toFixed(0)} % of the time; gain ${gain.toFixed(2)} holds abandonment at ` +
          `${(legal.rate * 100).toFixed(2)} % of ${legal.liveAnswers} live answers (target ${(target * 100).toFixed(1)} %, cap ${(options.cap * 100).toFixed(0)} %)`,
      };
    },
  };
}

export type TaperedOptions = {
  /** The campaign's drop percentage limit (0.03). */
  dropLimit: number;
  /** Highest dial level (VICIdial's adaptive maximum level). */
  maxLevel: number;
  /** VICIdial's "dl_diff_target": 0 aims for no agent and no customer waiting. */
  diffTarget: number;
  /** "Adapt intensity modifier", −40 … 40. */
  intensity: number;
  /** When the day's dialing ends (the taper's reference point). */
  dayEnd: number;
};

/**
 * A re-implementation, from the published description of its behaviour (not from its code), of
 * VICIdial's adaptive dial level in its ADAPT_TAPERED mode — the incumbent to beat. Lines =
 * level × (idle + talking agents); each cycle dials lines − calls in progress. Once a minute the
 * level moves by the average of (ready agents − waiting calls) over the minute's one-second samples; a minute with
 * more than half its calls dropped halves it; a day over the drop limit scales it by the share of
 * the day left.
 */
export function vicidialTaperedPacer(options: TaperedOptions): Pacer {
  let level = 1;
  let lastAdapt = Number.NEGATIVE_INFINITY;
  let dayStart: number | undefined;
  const samples: { ready: number; waiting: number; agents: number }[] = [];
  return {
    name: 'vicidial-adapt-tapered',
    decide(floor) {
      dayStart ??= floor.now;
      samples.push({ ready: floor.agents.idle, waiting: floor.waiting, agents: floor.agents.idle + floor.agents.talkingElapsedMs.length });
      if (samples.length > 60) samples.shift();
      if (floor.now - lastAdapt >= 60_000) {
        lastAdapt = floor.now;
        const average = (pick: (sample: { ready: number; waiting: number; agents: number }) => number) => samples.reduce((sum, sample) => sum + pick(sample), 0) / samples.length;
        const agents = average((sample) => sample.agents);
        if (agents > 0) {
          const differential = average((sample) => sample.ready) - average((sample) => sample.waiting);
          const ratio = (differential + options.diffTarget) / agents;
          const k = ratio >= 0 ? 1 + options.intensity / 100 : Math.abs(options.intensity / 100 - 1);
          level *= 1 + ratio * k;
        }
        const minute = floor.stats.abandonment(floor.now - 60_000, floor.now);
        if (minute.liveAnswers > 20 && minute.rate > 0.5) level /= 2;
        const today = floor.stats.abandonment(dayStart, floor.now);
        if (today.liveAnswers > 50 && today.rate > options.dropLimit) {
          const left = Math.max(0, options.dayEnd - floor.now) / Math.max(1, options.dayEnd - dayStart);
          level *= floor.now >= options.dayEnd ? 1 : left;
        }
        level = Math.min(options.maxLevel, Math.max(1, level));
      }
      const active = floor.agents.idle + floor.agents.talkingElapsedMs.length;
      const lines = Math.floor(level * active);
      const inProgress = floor.outstandingAgesMs.length + floor.waiting + floor.agents.talkingElapsedMs.length;
      const dial = Math.max(0, lines - inProgress);
      return { dial, explanation: `dialing ${dial} lines: level ${level.toFixed(2)} × ${active} active agents, ${inProgress} calls in progress` };
    },
  };
}
