// The Electron main-process side of the bridge: every API call as an `ipcMain.handle` channel,
// and progress and job-state events pushed to the renderers that subscribed.
//
// It uses only `ipcMain.handle`/`removeHandler`, `ipcMain.on`/`off` and `event.sender.send`,
// typed structurally here (Electron is not a dependency), so an app passes Electron's own
// `ipcMain` and tests pass a stand-in that follows Electron's documented IPC semantics.
// Renderer arguments are untrusted: src/api/requests.ts parses them; every call resolves to a
// value (Electron would keep only the message of a thrown error).
import type { Subscription } from 'rxjs';
import { MODELHUB_METHODS, type JobStateEvent, type ModelhubResult, type ProgressEvent } from '../client/types.js';
import { callEngine } from '../api/calls.js';
import type { Engine } from '../engine/engine.js';
import { callChannel, eventChannel, isTopic, SUBSCRIBE_CHANNEL, UNSUBSCRIBE_CHANNEL, type Topic } from './channels.js';

/** The part of Electron's WebContents the bridge uses. */
export interface WebContentsLike {
  readonly id: number;
  send(channel: string, ...args: unknown[]): void;
  isDestroyed(): boolean;
  once(event: 'destroyed', listener: () => void): unknown;
}

/** The part of Electron's IpcMainEvent / IpcMainInvokeEvent the bridge uses. */
export interface IpcMainEventLike {
  readonly sender: WebContentsLike;
  readonly senderFrame?: { readonly url: string } | null;
}

/** The part of Electron's `ipcMain` the bridge uses. */
export interface IpcMainLike {
  handle(channel: string, listener: (event: IpcMainEventLike, ...args: unknown[]) => unknown): void;
  removeHandler(channel: string): void;
  on(channel: string, listener: (event: IpcMainEventLike, ...args: unknown[]) => void): unknown;
  off(channel: string, listener: (event: IpcMainEventLike, ...args: unknown[]) => void): unknown;
}

export interface ModelhubIpcOptions {
  /**
   * Decides whether a renderer may use the API at all, e.g. by the origin of
   * `event.senderFrame.url` (Electron's security checklist: validate every IPC sender).
   * Refused calls answer UNAUTHORIZED; refused subscriptions are ignored. Default: every sender.
   */
  isTrustedSender?: (event: IpcMainEventLike) => boolean;
}

interface Subscriber {
  sender: WebContentsLike;
  topics: Set<Topic>;
}

/** Registers the bridge; the returned function removes every handler and subscription. */
export function registerModelhubIpc(engine: Engine, ipcMain: IpcMainLike, options: ModelhubIpcOptions = {}): () => void {
  const trusted = options.isTrustedSender ?? (() => true);
  const subscribers = new Map<number, Subscriber>();

  for (const method of MODELHUB_METHODS) {
    ipcMain.handle(callChannel(method), async (event, ...args): Promise<ModelhubResult<unknown>> => {
      if (!trusted(event)) return { ok: false, error: { code: 'UNAUTHORIZED', message: 'this renderer may not use modelhub', details: {} } };
      return callEngine(engine, method, args);
    });
  }

  const onSubscribe = (event: IpcMainEventLike, topic: unknown): void => {
    if (!isTopic(topic) || !trusted(event)) return;
    const { sender } = event;
    let sub = subscribers.get(sender.id);
    if (sub === undefined) {
      sub = { sender, topics: new Set() };
      subscribers.set(sender.id, sub);
      // A closed window stops receiving, without the renderer having to say so.
      sender.once('destroyed', () => subscribers.delete(sender.id));
    }
    sub.topics.add(topic);
  };
  const onUnsubscribe = (event: IpcMainEventLike, topic: unknown): void => {
    if (!isTopic(topic)) return;
    const sub = subscribers.get(event.sender.id);
    sub?.topics.delete(topic);
    if (sub !== undefined && sub.topics.size === 0) subscribers.delete(event.sender.id);
  };
  ipcMain.on(SUBSCRIBE_CHANNEL, onSubscribe);
  ipcMain.on(UNSUBSCRIBE_CHANNEL, onUnsubscribe);

  const publish = (topic: Topic, payload: ProgressEvent | JobStateEvent): void => {
    for (const [id, sub] of subscribers) {
      if (!sub.topics.has(topic)) continue;
      if (sub.sender.isDestroyed()) {
        subscribers.delete(id);
        continue;
      }
      sub.sender.send(eventChannel(topic), payload);
    }
  };
  const progress: Subscription = engine.progress$.subscribe((e) => publish('progress', e));
  const onJobState = (e: JobStateEvent): void => publish('jobState', e);
  engine.hooks.on('jobStateChanged', onJobState);

  return () => {
    for (const method of MODELHUB_METHODS) ipcMain.removeHandler(callChannel(method));
    ipcMain.off(SUBSCRIBE_CHANNEL, onSubscribe);
    ipcMain.off(UNSUBSCRIBE_CHANNEL, onUnsubscribe);
    progress.unsubscribe();
    engine.hooks.off('jobStateChanged', onJobState);
    subscribers.clear();
  };
}
