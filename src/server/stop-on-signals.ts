import type { Logger } from '../logger.ts';

/**
 * A running server stops cleanly on SIGINT or SIGTERM (drain, close the pool, stop the embedded
 * PostgreSQL), then the process exits. Ctrl-C reaches npm and this process at once, and npm
 * forwards it too: copies arriving together are one request to stop. A signal a second or more
 * later forces the exit.
 */
export function stopOnSignals(server: { stop(reason: string): Promise<void> }, logger: Logger): void {
  let firstSignalAt: number | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignalAt !== undefined) {
      if (Date.now() - firstSignalAt < 1000) return;
      logger.warn({ signal }, 'second signal: exiting without waiting for the drain');
      process.exit(130);
    }
    firstSignalAt = Date.now();
    server.stop(signal).then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}
