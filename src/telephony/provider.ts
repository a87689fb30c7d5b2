/**
 * The telephony port: everything the campaign engine (dialer, inbound queues) knows about calls.
 * A provider (the simulator, later a SIP trunk or a CPaaS) takes commands and emits events; the
 * engine never sees SIP, webhooks or media. Commands carry a caller-chosen `commandId` and are
 * idempotent: the same command sent twice (a retry after a timeout) has one effect. They resolve
 * when the provider has accepted them, not when the call has done anything; what the call does
 * arrives as events. Every event names its leg, carries the provider's time, a sequence number
 * per leg and the raw cause as the provider reported it (a SIP status and a Q.850 cause).
 */

export type LegId = string;

/** Answering-machine detection: off, or classify the answered party (human / machine). */
export type AmdMode = 'off' | 'detect';

export type DialCommand = {
  commandId: string;
  legId: LegId;
  /** E.164, or for the simulator a scenario name (`answer-3000`, `machine-5000`, `busy`, `noanswer-20000`, `fail`). */
  to: string;
  from: string;
  /** Ring at most this long; then the call ends as `no-answer`. */
  ringTimeoutMs: number;
  amd: AmdMode;
};

export type RecordingPauseBehavior = 'skip' | 'silence';

export type TelephonyCommand =
  | ({ kind: 'dial' } & DialCommand)
  | { kind: 'answer'; commandId: string; legId: LegId }
  | { kind: 'reject'; commandId: string; legId: LegId }
  | { kind: 'connect-to-agent'; commandId: string; legId: LegId; agentEndpoint: string }
  | { kind: 'bridge'; commandId: string; legA: LegId; legB: LegId }
  | { kind: 'hangup'; commandId: string; legId: LegId }
  | { kind: 'play'; commandId: string; legId: LegId; playbackId: string; media: string }
  | { kind: 'record-start'; commandId: string; legId: LegId; recordingId: string }
  | { kind: 'record-pause'; commandId: string; recordingId: string; behavior: RecordingPauseBehavior }
  | { kind: 'record-resume'; commandId: string; recordingId: string }
  | { kind: 'record-stop'; commandId: string; recordingId: string };

/** The cause of an ending as the network gave it: SIP status and Q.850 cause value. */
export type RawCause = { sipStatus: number; q850: number; reason: string };

type EventBase = {
  legId: LegId;
  /** Provider time, milliseconds since the epoch (the simulator's virtual clock). */
  at: number;
  /** 1, 2, 3 … per leg, in the order the provider emitted them. */
  seq: number;
};

export type TelephonyEvent = EventBase &
  (
    | { type: 'initiated'; direction: 'outbound' | 'inbound'; from: string; to: string }
    | { type: 'ringing'; early: boolean }
    | { type: 'answered' }
    | { type: 'machine-detected'; result: 'human' | 'machine' | 'unknown'; final: boolean }
    | { type: 'bridged'; with: string }
    | { type: 'busy'; raw: RawCause }
    | { type: 'no-answer'; raw: RawCause }
    | { type: 'failed'; raw: RawCause }
    | { type: 'cancelled'; raw: RawCause }
    | { type: 'completed'; by: 'local' | 'remote'; talkMs: number; raw: RawCause }
    | { type: 'recording-state'; recordingId: string; state: 'started' | 'paused' | 'resumed' | 'stopped' | 'saved'; behavior?: RecordingPauseBehavior; durationMs?: number }
    | { type: 'play-finished'; playbackId: string }
  );

export type TelephonyEventType = TelephonyEvent['type'];

/** Events after which a leg does nothing more. */
export const FINAL_EVENTS: ReadonlySet<TelephonyEventType> = new Set(['busy', 'no-answer', 'failed', 'cancelled', 'completed']);

export type Capabilities = {
  /** Answering-machine detection is available (predictive dialing may count on it). */
  amd: boolean;
  /** Recordings can be paused and resumed (card payments). */
  recordPause: boolean;
  /** How legs are joined: natively, or through a conference the provider sets up. */
  bridge: 'native' | 'conference';
  /** Ringing can carry early media (183). */
  earlyMedia: boolean;
  /** Legs that may exist at once; a dial beyond it is refused. */
  maxConcurrentLegs: number;
  /**
   * How often the detector is right (a person as a person, a machine as a machine), as the
   * provider measured or declares it: the UK measure estimates the people it took for machines.
   */
  amdAccuracy?: { humanAsHuman: number; machineAsMachine: number };
};

export type TelephonyErrorCode =
  /** No leg (or recording) with this id. */
  | 'unknown_leg'
  /** The leg has ended: nothing more can be done with it. */
  | 'leg_ended'
  /** The command does not fit the leg's state (bridging a leg that is still ringing). */
  | 'invalid_state'
  /** A dial with a leg id that exists. */
  | 'duplicate_leg'
  /** The same command id came with a different command. */
  | 'conflicting_command'
  /** The provider's concurrent-leg limit is reached. */
  | 'capacity'
  /** The command itself is malformed (an empty id, a ring timeout out of range). */
  | 'invalid_command';

export class TelephonyError extends Error {
  constructor(
    readonly code: TelephonyErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'TelephonyError';
  }
}

export type TelephonyProvider = {
  capabilities(): Capabilities;
  /** Accepts a command (idempotent by its commandId); throws TelephonyError when it cannot. */
  send(command: TelephonyCommand): Promise<void>;
  /** Every event of every leg, in order; returns the unsubscribe function. */
  onEvent(listener: (event: TelephonyEvent) => void): () => void;
  /** The audio of a saved recording (after its `saved` event), for the engine to store encrypted. */
  fetchRecording(recordingId: string): Promise<Buffer>;
};
