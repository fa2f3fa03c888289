// The machines' own actors: inert stand-ins that never settle. src/ supplies the real effects
// through .provide(); a replay or a graph walk uses these and so has no side effect at all.
import { fromPromise } from 'xstate';

export const inert = <I, O>() => fromPromise<O, I>(() => new Promise<O>(() => undefined));
