import { randomUUID } from 'node:crypto';
import { CompiledQuery } from '../db/kysely.ts';
import type { ChangeListener } from '../db/change-listener.ts';
import { deferWrite, type TenantTransaction } from '../db/tenant-db.ts';
import type { Logger } from '../logger.ts';

/**
 * Commands on a live call from the API (an agent pausing the recording for a card payment, or
 * hanging up) reach
 * the dialer that runs the call, on whichever server process that is: the request publishes them
 * with NOTIFY in its transaction (so only a committed, audited request acts), and every process
 * offers them to its own dialers; the one that has the call acts, the others ignore it.
 */
export const CALL_CONTROL_CHANNEL = 'ringvakt_call_control';

export type RecordingAction = 'pause' | 'resume';
/** Recording control, or the agent ending the call. */
export type CallAction = RecordingAction | 'hangup';
export type CallControl = { tenantId: string; attemptId: string; action: CallAction; requestId: string };
export type CallController = { control(command: CallControl): Promise<boolean> };

const controllers = new Set<CallController>();

export function registerCallController(controller: CallController): () => void {
  controllers.add(controller);
  return () => controllers.delete(controller);
}

export async function requestCallControl(trx: TenantTransaction, attemptId: string, action: CallAction): Promise<void> {
  const command: CallControl = { tenantId: trx.tenantId, attemptId, action, requestId: randomUUID() };
  await deferWrite(trx, CompiledQuery.raw('SELECT pg_notify($1, $2)', [CALL_CONTROL_CHANNEL, JSON.stringify(command)]));
}

/** Feeds commands from NOTIFY to this process's dialers. Subscribe once per process. */
export function listenForCallControl(changes: ChangeListener, logger: Logger): void {
  changes.subscribe(
    CALL_CONTROL_CHANNEL,
    (payload) => {
      let command: CallControl;
      try {
        command = JSON.parse(payload) as CallControl;
      } catch {
        return;
      }
      for (const controller of controllers) {
        controller.control(command).catch((error: unknown) => logger.warn({ err: error instanceof Error ? { name: error.name } : undefined, attempt: command.attemptId }, 'call control failed'));
      }
    },
    () => undefined,
  );
}
