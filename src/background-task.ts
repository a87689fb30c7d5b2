import { backgroundFailures } from './operations/telemetry.ts';

/**
 * A background task of `ringvakt serve`: `tick` runs every `intervalMs`, never two at once (a slow
 * tick delays the next instead of piling up); a failed tick is reported (and counted, by the
 * task's name, in ringvakt_background_task_failures_total), never thrown. The timer does not keep
 * the process alive; `stop` waits for a tick in progress — which may ask `stopping()` between steps
 * of long work and hand the rest over (a retention sweep of millions does), or pass `signal` to
 * work that can be cut short (a scheduled backup).
 */
export function runEvery(task: string, intervalMs: number, tick: (stopping: () => boolean, signal: AbortSignal) => Promise<void>, onError: (error: unknown) => void): { stop(): Promise<void> } {
  let running: Promise<void> | undefined;
  const stopped = new AbortController();
  const stopping = () => stopped.signal.aborted;
  const timer = setInterval(() => {
    running ??= tick(stopping, stopped.signal)
      .catch((error: unknown) => {
        backgroundFailures.inc({ task });
        onError(error);
      })
      .finally(() => {
        running = undefined;
      });
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      stopped.abort();
      clearInterval(timer);
      await running;
    },
  };
}
