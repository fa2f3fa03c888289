// The IPC channels between the main-process bridge and the preload. Only these names cross.
import type { ModelhubMethod } from '../client/types.js';

export const callChannel = (method: ModelhubMethod): string => `modelhub:${method}`;
export const SUBSCRIBE_CHANNEL = 'modelhub:subscribe';
export const UNSUBSCRIBE_CHANNEL = 'modelhub:unsubscribe';

export type Topic = 'progress' | 'jobState';
export const TOPICS: readonly Topic[] = ['progress', 'jobState'];

/** Where the main process sends the events of a topic to a subscribed renderer. */
export const eventChannel = (topic: Topic): string => (topic === 'progress' ? 'modelhub:progress' : 'modelhub:job-state');

export function isTopic(value: unknown): value is Topic {
  return typeof value === 'string' && (TOPICS as readonly string[]).includes(value);
}
