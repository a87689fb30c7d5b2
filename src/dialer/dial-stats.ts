/**
 * What the dialer measures of its own calls, and nothing else: the pacer decides from these
 * figures, never from the simulator's (or the network's) hidden truth.
 */

const SAMPLES = 2_000;

/** Keeps the last `size` values, and a sorted copy on demand. */
class Window {
  private readonly values: number[] = [];
  private next = 0;
  private sorted: number[] | undefined;

  constructor(private readonly size: number) {}

  add(value: number): void {
    if (this.values.length < this.size) this.values.push(value);
    else this.values[this.next] = value;
    this.next = (this.next + 1) % this.size;
    this.sorted = undefined;
  }

  get count(): number {
    return this.values.length;
  }

  ascending(): number[] {
    this.sorted ??= [...this.values].sort((a, b) => a - b);
    return this.sorted;
  }

  /** The share of values ≤ x (the empirical distribution function). */
  cdf(x: number): number {
    const sorted = this.ascending();
    if (sorted.length === 0) return 0;
    let low = 0;
    let high = sorted.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if ((sorted[middle] as number) <= x) low = middle + 1;
      else high = middle;
    }
    return low / sorted.length;
  }

  quantile(q: number): number | undefined {
    const sorted = this.ascending();
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  }

  all(): readonly number[] {
    return this.values;
  }
}

export type AbandonmentFigures = { liveAnswers: number; abandoned: number; rate: number };

export class DialStats {
  /** Dials whose outcome is known. */
  resolved = 0;
  /** Of those, answered by a person (as far as the dialer can tell). */
  live = 0;
  /** Time from dial to a person ready to be connected (answer, or the detector's "human"). */
  readonly readyAfter = new Window(SAMPLES);
  /** Connected talk times, for the handle-time model. */
  readonly talks = new Window(SAMPLES);
  /** Live answers, abandoned ones and the detector's verdicts, by minute, for windowed rates. */
  private readonly minutes = new Map<number, { live: number; abandoned: number; human: number; machine: number }>();
  /**
   * Under a measure that counts people the detector took for machines (UK Ofcom), the detector's
   * accuracy: every windowed rate then includes the estimate of them (abandonmentMeasures).
   */
  private amdAccuracy: AmdAccuracy | null = null;

  constructor(
    /** Priors until enough of the campaign's own figures exist. */
    private readonly prior: { liveShare: number; readyAfterMs: number; talkMedianMs: number; talkSigma: number },
  ) {}

  countMistakenMachines(accuracy: AmdAccuracy | null): void {
    this.amdAccuracy = accuracy;
  }

  private bucket(at: number) {
    const minute = Math.floor(at / 60_000);
    let bucket = this.minutes.get(minute);
    if (!bucket) {
      bucket = { live: 0, abandoned: 0, human: 0, machine: 0 };
      this.minutes.set(minute, bucket);
    }
    return bucket;
  }

  /** The detector's final verdict on an answered call. */
  verdict(at: number, result: 'human' | 'machine' | 'unknown'): void {
    const bucket = this.bucket(at);
    if (result === 'machine') bucket.machine += 1;
    else bucket.human += 1;
  }

  /** Figures of a minute from before this dialer started (the legal window's history, from the database). */
  seedMinute(minute: number, figures: { live: number; abandoned: number; human: number; machine: number }): void {
    const bucket = this.bucket(minute * 60_000);
    bucket.live += figures.live;
    bucket.abandoned += figures.abandoned;
    bucket.human += figures.human;
    bucket.machine += figures.machine;
  }

  dialResolved(live: boolean): void {
    this.resolved += 1;
    if (live) this.live += 1;
  }

  personReady(afterMs: number): void {
    this.readyAfter.add(afterMs);
  }

  talked(ms: number): void {
    if (ms > 0) this.talks.add(ms);
  }

  /** A person answered: connected (`abandoned` false) or not. */
  liveAnswer(at: number, abandoned: boolean): void {
    const bucket = this.bucket(at);
    bucket.live += 1;
    if (abandoned) bucket.abandoned += 1;
  }

  /**
   * Abandoned live answers over [from, to), on the campaign's legal measure: with the people the
   * detector took for machines estimated in when countMistakenMachines was given an accuracy.
   */
  abandonment(from: number, to: number): AbandonmentFigures {
    let liveAnswers = 0;
    let abandoned = 0;
    let human = 0;
    let machine = 0;
    for (let minute = Math.floor(from / 60_000); minute < Math.ceil(to / 60_000); minute += 1) {
      const bucket = this.minutes.get(minute);
      if (!bucket) continue;
      liveAnswers += bucket.live;
      abandoned += bucket.abandoned;
      human += bucket.human;
      machine += bucket.machine;
    }
    if (this.amdAccuracy) {
      const { uk } = abandonmentMeasures({ liveAnswers, abandoned, humanVerdicts: human, machineVerdicts: machine, accuracy: this.amdAccuracy });
      return { liveAnswers: uk.liveAnswers, abandoned: uk.abandoned, rate: uk.rate };
    }
    return { liveAnswers, abandoned, rate: liveAnswers === 0 ? 0 : abandoned / liveAnswers };
  }

  /** The chance a dial reaches a person, shrunk toward the prior while few dials are known. */
  liveShare(): number {
    const weight = 50;
    return (this.live + this.prior.liveShare * weight) / (this.resolved + weight);
  }

  /** P(a person is ready within t of the dial | the dial reaches a person). */
  readyWithin(ms: number): number {
    if (this.readyAfter.count < 30) return ms >= this.prior.readyAfterMs ? 1 : 0;
    return this.readyAfter.cdf(ms);
  }

  /** The q-quantile of the time from dial to a person ready. */
  readyQuantileMs(q: number): number {
    return this.readyAfter.count < 30 ? this.prior.readyAfterMs : (this.readyAfter.quantile(q) as number);
  }

  /** Lognormal talk-time parameters (μ of the log, σ), fitted from connected calls. */
  talkModel(): { mu: number; sigma: number } {
    if (this.talks.count < 30) return { mu: Math.log(this.prior.talkMedianMs), sigma: this.prior.talkSigma };
    const logs = this.talks.all().map((value) => Math.log(value));
    const mu = logs.reduce((sum, value) => sum + value, 0) / logs.length;
    const variance = logs.reduce((sum, value) => sum + (value - mu) ** 2, 0) / (logs.length - 1);
    return { mu, sigma: Math.max(0.05, Math.sqrt(variance)) };
  }
}

/** The standard normal distribution function (Abramowitz–Stegun 7.1.26, error < 1.5e-7). */
export function normalCdf(z: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(z) / Math.SQRT2);
  const polynomial = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  const erf = 1 - polynomial * Math.exp(-(z * z) / 2);
  return z >= 0 ? (1 + erf) / 2 : (1 - erf) / 2;
}

/** How often a detector's verdicts are right: a person as a person, a machine as a machine. */
export type AmdAccuracy = { humanAsHuman: number; machineAsMachine: number };

/**
 * Abandonment as both laws measure it. US TSR: abandoned ÷ live answers. UK Ofcom: the same with
 * the people the detector took for machines (and hung up on) counted as abandoned; their number is
 * estimated from the verdicts and the detector's accuracy — of V_h "human" and V_m "machine"
 * verdicts, the people P solve V_h = P·a_h + (V_m + V_h − P)·(1 − a_m), and P·(1 − a_h) of them were
 * judged machines.
 */
export function abandonmentMeasures(figures: { liveAnswers: number; abandoned: number; humanVerdicts: number; machineVerdicts: number; accuracy: AmdAccuracy | null }): {
  us: { rate: number; abandoned: number; liveAnswers: number };
  uk: { rate: number; abandoned: number; liveAnswers: number; estimatedAmdFalsePositives: number };
} {
  const { liveAnswers, abandoned, humanVerdicts, machineVerdicts, accuracy } = figures;
  let mistaken = 0;
  if (accuracy && humanVerdicts + machineVerdicts > 0) {
    const { humanAsHuman, machineAsMachine } = accuracy;
    const people = (humanVerdicts * machineAsMachine - machineVerdicts * (1 - machineAsMachine)) / (humanAsHuman + machineAsMachine - 1);
    mistaken = Math.max(0, people * (1 - humanAsHuman));
  }
  return {
    us: { rate: liveAnswers === 0 ? 0 : abandoned / liveAnswers, abandoned, liveAnswers },
    uk: { rate: liveAnswers + mistaken === 0 ? 0 : (abandoned + mistaken) / (liveAnswers + mistaken), abandoned: abandoned + mistaken, liveAnswers: liveAnswers + mistaken, estimatedAmdFalsePositives: mistaken },
  };
}

