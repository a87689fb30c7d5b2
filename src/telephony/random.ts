import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';

/** A seeded source of uniform numbers in [0, 1): the same seed gives the same run. */
export type Random = { next(): number };

export function seededRandom(seed: number): Random {
  const generator = xoroshiro128plus(seed);
  return { next: () => uniformFloat64(generator) };
}

/**
 * A duration distribution, in milliseconds. Handle and talk times of real calls are close to
 * lognormal (a long right tail); ring times close to uniform; patience close to exponential.
 */
export type Duration =
  | { kind: 'fixed'; ms: number }
  | { kind: 'uniform'; minMs: number; maxMs: number }
  | { kind: 'exponential'; meanMs: number }
  /** `medianMs` = e^μ; `sigma` the standard deviation of the logarithm (mean = median · e^(σ²/2)). */
  | { kind: 'lognormal'; medianMs: number; sigma: number };

export function sample(random: Random, duration: Duration): number {
  switch (duration.kind) {
    case 'fixed':
      return duration.ms;
    case 'uniform':
      return duration.minMs + random.next() * (duration.maxMs - duration.minMs);
    case 'exponential':
      // 1 - u is in (0, 1]: the logarithm is finite.
      return -duration.meanMs * Math.log(1 - random.next());
    case 'lognormal':
      return duration.medianMs * Math.exp(duration.sigma * standardNormal(random));
  }
}

/** The mean of a distribution, for the pacing model's expectations. */
export function meanOf(duration: Duration): number {
  switch (duration.kind) {
    case 'fixed':
      return duration.ms;
    case 'uniform':
      return (duration.minMs + duration.maxMs) / 2;
    case 'exponential':
      return duration.meanMs;
    case 'lognormal':
      return duration.medianMs * Math.exp((duration.sigma * duration.sigma) / 2);
  }
}

/** Box–Muller: one standard normal value from two uniform ones. */
function standardNormal(random: Random): number {
  const u1 = 1 - random.next();
  const u2 = random.next();
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/** Picks a key with probability proportional to its weight. */
export function pickWeighted<K extends string>(random: Random, weights: Readonly<Record<K, number>>): K {
  const entries = Object.entries(weights) as [K, number][];
  const total = entries.reduce((sum, [, weight]) => sum + weight, 0);
  let point = random.next() * total;
  for (const [key, weight] of entries) {
    point -= weight;
    if (point < 0) return key;
  }
  return (entries.at(-1) as [K, number])[0];
}
