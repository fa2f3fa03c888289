// Every effect actor runs through here: it first yields, so the event that entered its state
// has been appended (runner.ts appends synchronously inside XState's update), and it gives up
// quietly when its state was left meanwhile.
import { fromPromise } from 'xstate';

export function effect<I, O>(body: (input: I, signal: AbortSignal) => Promise<O>) {
  return fromPromise<O, I>(async ({ input, signal }) => {
    await new Promise<void>((resolve) => setImmediate(resolve));
    signal.throwIfAborted();
    return body(input, signal);
  });
}

/**
 * Effects of one job: each first checks that this process still holds the job's lease, so a
 * holder that was taken over (it slept, or another host judged it dead) stops before its next
 * file-system step instead of writing beside the new holder.
 */
export function guardedEffect(job: { assertLease(): void }) {
  return <I, O>(body: (input: I, signal: AbortSignal) => Promise<O>) =>
    effect<I, O>(async (input, signal) => {
      job.assertLease();
      return body(input, signal);
    });
}
