/**
 * Queueing formulas the pacer and its tests rely on (notation: A offered load in Erlangs, N
 * servers). Each is computed in a numerically stable way (no factorials).
 */

/** Erlang B: the chance that an arrival finds all N servers busy (and is lost). B(0) = 1, B(n) = A·B(n−1) / (n + A·B(n−1)). */
export function erlangB(servers: number, load: number): number {
  if (!Number.isInteger(servers) || servers < 0 || !(load >= 0)) throw new RangeError('Erlang B needs N ≥ 0 (whole) and A ≥ 0');
  let blocking = 1;
  for (let n = 1; n <= servers; n += 1) blocking = (load * blocking) / (n + load * blocking);
  return blocking;
}

/** Erlang C: the chance that an arrival waits (M/M/N, patient callers); 1 when A ≥ N. */
export function erlangC(servers: number, load: number): number {
  if (load >= servers) return 1;
  const blocking = erlangB(servers, load);
  return (servers * blocking) / (servers - load * (1 - blocking));
}

/**
 * Erlang A (M/M/N+M): callers leave a queue at rate θ (mean patience 1/θ). From the birth–death
 * chain with births λ and deaths min(k, N)·μ + max(k − N, 0)·θ, truncated where the tail is
 * negligible: the share of callers who abandon, P(Ab) = θ · E[queue] / λ.
 */
export function erlangAAbandonment(servers: number, arrivalRate: number, serviceRate: number, abandonRate: number): number {
  if (!(arrivalRate > 0 && serviceRate > 0 && abandonRate > 0)) throw new RangeError('Erlang A needs positive rates');
  // Unnormalised state probabilities, kept in a relative scale to avoid overflow.
  const weights: number[] = [1];
  let weight = 1;
  let total = 1;
  for (let k = 1; k < 100_000; k += 1) {
    const death = Math.min(k, servers) * serviceRate + Math.max(k - servers, 0) * abandonRate;
    weight *= arrivalRate / death;
    weights.push(weight);
    total += weight;
    if (k > servers && weight / total < 1e-15) break;
  }
  let queue = 0;
  for (let k = servers + 1; k < weights.length; k += 1) queue += (k - servers) * (weights[k] as number);
  return (abandonRate * (queue / total)) / arrivalRate;
}

/**
 * Progressive (one call per idle agent) utilisation: with a live-answer chance `p` per attempt and
 * a mean attempt time `attemptMs`, an agent waits attemptMs / p per contact: s / (s + t_a / p).
 */
export function progressiveUtilisation(handleMs: number, liveAnswerShare: number, attemptMs: number): number {
  return handleMs / (handleMs + attemptMs / liveAnswerShare);
}
