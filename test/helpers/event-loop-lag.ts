/**
 * Event-loop lag of this process during a piece of work, two ways:
 * - `raw`: `perf_hooks.monitorEventLoopDelay` (resolution 2 ms), the wall-clock delay;
 * - `blocked`: the same delays, sampled by a 2 ms timer, minus the time the JS thread spent
 *   waiting for a CPU in that interval (Linux `/proc/self/task/<pid>/schedstat`, field 2: run-queue
 *   wait in ns). On a machine whose cores are busy with other processes the wall-clock lag includes
 *   the OS not scheduling the thread at all; `blocked` is what the thread itself was kept busy (or
 *   stalled in page faults / system calls) by — the property "sd-native never blocks the event
 *   loop". Where schedstat is missing, `blocked` equals the timer's raw lag.
 */
import fs from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const SCHEDSTAT = `/proc/self/task/${process.pid}/schedstat`;
const hasSchedstat = (() => { try { return fs.readFileSync(SCHEDSTAT, 'utf8').split(' ').length >= 2; } catch { return false; } })();

/** The JS thread's run-queue wait so far (ns), 0 without schedstat. */
function runQueueWaitNs(): number {
  if (!hasSchedstat) return 0;
  return Number(fs.readFileSync(SCHEDSTAT, 'utf8').split(' ')[1]);
}

export interface Lag {
  /** monitorEventLoopDelay's max (ms). */
  raw: number;
  /** Largest timer delay less the run-queue wait over it (ms). */
  blocked: number;
}

/** Runs `fn` and measures the event-loop lag while it runs (and one 10 ms tail after). */
export async function measureLag(fn: () => Promise<unknown>): Promise<Lag> {
  const h = monitorEventLoopDelay({ resolution: 2 });
  const PERIOD = 2;
  let blocked = 0;
  let prevT = performance.now();
  let prevWait = runQueueWaitNs();
  const timer = setInterval(() => {
    const t = performance.now();
    const wait = runQueueWaitNs();
    const lag = t - prevT - PERIOD - (wait - prevWait) / 1e6;
    if (lag > blocked) blocked = lag;
    prevT = t;
    prevWait = wait;
  }, PERIOD);
  h.enable();
  try {
    await fn();
    await new Promise((r) => setTimeout(r, 10));
  } finally {
    h.disable();
    clearInterval(timer);
  }
  return { raw: h.max / 1e6, blocked };
}
