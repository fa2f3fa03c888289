// The Electron preload side of the bridge: `window.modelhub`, a set of plain functions over
// `ipcRenderer`, exposed through `contextBridge` (contextIsolation on, no nodeIntegration).
// Nothing of Node or Electron reaches the renderer: no ipcRenderer, no IPC event objects, only
// functions and structured-clonable data. This file imports nothing but constants, so a
// bundler can put it into a sandboxed preload.
import { MODELHUB_METHODS, type JobStateEvent, type ModelhubApi, type ModelhubMethod, type ModelhubResult, type ProgressEvent } from '../client/types.js';
import { callChannel, eventChannel, SUBSCRIBE_CHANNEL, UNSUBSCRIBE_CHANNEL, type Topic } from './channels.js';

/** The part of Electron's `ipcRenderer` the preload uses. */
export interface IpcRendererLike {
  invoke(channel: string, ...args: unknown[]): Promise<unknown>;
  send(channel: string, ...args: unknown[]): void;
  on(channel: string, listener: (event: unknown, ...args: unknown[]) => void): unknown;
  removeListener(channel: string, listener: (event: unknown, ...args: unknown[]) => void): unknown;
}

/** The part of Electron's `contextBridge` the preload uses. */
export interface ContextBridgeLike {
  exposeInMainWorld(apiKey: string, api: Record<string, unknown>): void;
}

/** The API over IPC, before it is exposed (an app may wrap or extend it). */
export function createModelhubApi(ipcRenderer: IpcRendererLike): ModelhubApi {
  const call = (method: ModelhubMethod) => async (...args: unknown[]): Promise<ModelhubResult<unknown>> => {
    try {
      return (await ipcRenderer.invoke(callChannel(method), ...args)) as ModelhubResult<unknown>;
    } catch (err) {
      // Only a missing or broken bridge gets here: the main side answers errors as values.
      return { ok: false, error: { code: 'INTERNAL', message: err instanceof Error ? err.message : String(err), details: {} } };
    }
  };

  const listeners: Record<Topic, Set<(payload: never) => void>> = { progress: new Set(), jobState: new Set() };
  const dispatchers: Record<Topic, (event: unknown, payload: unknown) => void> = {
    progress: (_event, payload) => {
      for (const cb of [...listeners.progress]) cb(payload as never);
    },
    jobState: (_event, payload) => {
      for (const cb of [...listeners.jobState]) cb(payload as never);
    },
  };
  const subscribe = (topic: Topic, callback: (payload: never) => void): (() => void) => {
    if (typeof callback !== 'function') throw new TypeError(`${topic}: a callback function is required`);
    // Each registration is its own entry, so unsubscribing one leaves the others.
    const entry = (payload: never): void => callback(payload);
    const set = listeners[topic];
    if (set.size === 0) {
      ipcRenderer.on(eventChannel(topic), dispatchers[topic]);
      ipcRenderer.send(SUBSCRIBE_CHANNEL, topic);
    }
    set.add(entry);
    return () => {
      if (!set.delete(entry) || set.size > 0) return;
      ipcRenderer.removeListener(eventChannel(topic), dispatchers[topic]);
      ipcRenderer.send(UNSUBSCRIBE_CHANNEL, topic);
    };
  };

  const api: Record<string, unknown> = {};
  for (const method of MODELHUB_METHODS) api[method] = call(method);
  api.onProgress = (callback: (e: ProgressEvent) => void) => subscribe('progress', callback);
  api.onJobState = (callback: (e: JobStateEvent) => void) => subscribe('jobState', callback);
  return api as unknown as ModelhubApi;
}

/** Exposes `window.modelhub` (or `window[apiKey]`). */
export function exposeModelhub(contextBridge: ContextBridgeLike, ipcRenderer: IpcRendererLike, apiKey = 'modelhub'): void {
  contextBridge.exposeInMainWorld(apiKey, createModelhubApi(ipcRenderer) as unknown as Record<string, unknown>);
}
