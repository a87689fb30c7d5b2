/**
 * Time for the telephony layer. Everything that waits (ringing, talk, patience, the dialer's
 * decision loop) is scheduled on a VirtualClock: a discrete-event queue whose `now` moves only
 * from one scheduled moment to the next. Tests and benchmarks run it as fast as the CPU allows
 * (`runUntil`); inside the product `followRealTime` lets it advance with the wall clock.
 */

type Entry = { at: number; order: number; action: () => void; cancelled: boolean };

export type Scheduled = { cancel(): void; readonly at: number };

export class VirtualClock {
  private current: number;
  private readonly heap: Entry[] = [];
  /** Ties at one moment run in the order they were scheduled: the run is deterministic. */
  private nextOrder = 0;
  private waiting: (() => void) | undefined;
  /** Set while the clock follows the wall clock: virtual = wall + offset. */
  private followOffset: number | undefined;
  /** True while runUntil runs actions: each sees exactly its own moment. */
  private running = false;

  constructor(startMs = Date.UTC(2026, 0, 5, 8, 0, 0)) {
    this.current = startMs;
  }

  now(): number {
    if (this.followOffset === undefined || this.running) return this.current;
    // Following the wall clock, the time between wakes is the wall clock's: a call ended by a
    // command (an agent hanging up) gets the moment it ended, not the last timer's. Never past an
    // action still due, so actions keep their order.
    this.dropCancelled();
    const due = this.heap[0]?.at ?? Number.POSITIVE_INFINITY;
    return Math.max(this.current, Math.min(Date.now() + this.followOffset, due));
  }

  /** Runs `action` `delayMs` from now (never in the past: a negative delay means now). */
  schedule(delayMs: number, action: () => void): Scheduled {
    if (!Number.isFinite(delayMs)) throw new RangeError('a delay must be a finite number of milliseconds');
    const entry: Entry = { at: this.now() + Math.max(0, delayMs), order: this.nextOrder++, action, cancelled: false };
    this.push(entry);
    this.waiting?.();
    return {
      at: entry.at,
      cancel: () => {
        entry.cancelled = true;
      },
    };
  }

  /** The time of the next pending action, if any. */
  nextAt(): number | undefined {
    this.dropCancelled();
    return this.heap[0]?.at;
  }

  /** Runs every action due up to and including `untilMs`, then stands at `untilMs`. Returns how many ran. */
  runUntil(untilMs: number): number {
    let ran = 0;
    const outer = this.running;
    this.running = true;
    try {
      for (;;) {
        this.dropCancelled();
        const next = this.heap[0];
        if (!next || next.at > untilMs) break;
        this.pop();
        this.current = next.at;
        next.action();
        ran += 1;
      }
    } finally {
      this.running = outer;
    }
    this.current = Math.max(this.current, untilMs);
    return ran;
  }

  /** Advances by `ms`, running what falls due. */
  advance(ms: number): number {
    return this.runUntil(this.current + ms);
  }

  /**
   * Lets the clock advance with the wall clock (inside the product): every due action runs at its
   * real moment. Returns the function that stops following.
   */
  followRealTime(): () => void {
    const offset = this.current - Date.now();
    this.followOffset = offset;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const wake = () => {
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (stopped) return;
      this.runUntil(Date.now() + offset);
      const next = this.nextAt();
      if (next !== undefined) timer = setTimeout(wake, Math.max(0, next - (Date.now() + offset)));
    };
    this.waiting = () => setImmediate(wake);
    wake();
    return () => {
      stopped = true;
      this.waiting = undefined;
      this.followOffset = undefined;
      if (timer) clearTimeout(timer);
    };
  }

  private dropCancelled(): void {
    while (this.heap[0]?.cancelled) this.pop();
  }

  private before(a: Entry, b: Entry): boolean {
    return a.at < b.at || (a.at === b.at && a.order < b.order);
  }

  private push(entry: Entry): void {
    const heap = this.heap;
    heap.push(entry);
    let index = heap.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (!this.before(heap[index] as Entry, heap[parent] as Entry)) break;
      [heap[index], heap[parent]] = [heap[parent] as Entry, heap[index] as Entry];
      index = parent;
    }
  }

  private pop(): Entry | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0 && last) {
      heap[0] = last;
      let index = 0;
      for (;;) {
        const left = 2 * index + 1;
        const right = left + 1;
        let smallest = index;
        if (left < heap.length && this.before(heap[left] as Entry, heap[smallest] as Entry)) smallest = left;
        if (right < heap.length && this.before(heap[right] as Entry, heap[smallest] as Entry)) smallest = right;
        if (smallest === index) break;
        [heap[index], heap[smallest]] = [heap[smallest] as Entry, heap[index] as Entry];
        index = smallest;
      }
    }
    return top;
  }
}
