/** Waiting: jittered exponential backoff, and a sleep a shutdown can cut short. */

/** Full-jitter exponential backoff: a delay in [0, min(cap, base * 2^attempt)). */
export function backoffMs(attempt: number, baseMs = 100, capMs = 5_000): number {
  return Math.floor(Math.random() * Math.min(capMs, baseMs * 2 ** attempt));
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
