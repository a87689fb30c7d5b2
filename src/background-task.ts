import { backgroundFailures } from './operations/telemetry.ts';

/**
 * A background task of `ringvakt serve`: `tick` runs every `intervalMs`, never two at once (a slow
 * tick delays the next instead of piling up); a failed tick is reported (and counted, by the
 * task's name, in ringvakt_background_task_failures_total), never thrown. The timer does not keep
 * the process alive; `stop` waits for a tick in progress — which may ask `stopping()` between steps
 * of long work and hand the rest over (a retention sweep of millions does), or pass `signal` to
 * work that can be cut short (a scheduled backup).
 */
export function runEvery(
  task: string,
  intervalMs: number,
  tick: (stopping: () => boolean, signal: AbortSignal) => Promise<void>,
  onError: (error: unknown) => void,
  options: { catchUp?: boolean } = {},
): { stop(): Promise<void> } {
  let running: Promise<void> | undefined;
  const stopped = new AbortController();
  const stopping = () => stopped.signal.aborted;
  const trigger = () => {
    if (running || stopped.signal.aborted) return;
    const startedAt = Date.now();
    running = tick(stopping, stopped.signal)
      .catch((error: unknown) => {
        backgroundFailures.inc({ task });
        onError(error);
      })
      .finally(() => {
        running = undefined;
        // A tick that outlasted its interval skipped the next: with catchUp the next starts at
        // once instead of up to a whole interval later (work that keeps up with a backlog).
        if (options.catchUp && !stopped.signal.aborted && Date.now() - startedAt >= intervalMs) setImmediate(trigger);
      });
  };
  const timer = setInterval(trigger, intervalMs);
  timer.unref();
  return {
    async stop() {
      stopped.abort();
      clearInterval(timer);
      await running;
    },
  };
}
