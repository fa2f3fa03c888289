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
