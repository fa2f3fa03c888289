// A stand-in for Electron's IPC, following its documented semantics (electron cannot be
// installed here: its binary comes from outside the registries):
// - every value crossing a process boundary is structured-cloned, in both directions
//   (functions and other non-clonable values throw "An object could not be cloned");
// - `ipcRenderer.invoke` rejects with only the message of an error thrown in the handler:
//   "Error invoking remote method 'CHANNEL': Error: MESSAGE" (codes and fields are lost);
// - `ipcMain.handle` refuses a second handler for a channel; invoking a channel without a
//   handler rejects;
// - `webContents.send` on a destroyed webContents throws "Object has been destroyed";
// - `contextBridge.exposeInMainWorld` copies the API into the page's world: plain objects,
//   arrays, primitives and functions (proxied: their arguments and results are copied too,
//   promises are awaited and their values copied). Objects with a prototype other than
//   Object's (class instances such as ipcRenderer itself) are refused.
// - listeners get an event object first; on the renderer side it is an IpcRendererEvent whose
//   `sender` is the ipcRenderer (which is why it must never reach the page).
import { EventEmitter } from 'node:events';

type RendererListener = (event: StandInRendererEvent, ...args: unknown[]) => void;

export interface StandInRendererEvent {
  sender: StandInIpcRenderer;
  senderId: number;
}

export interface StandInMainEvent {
  sender: StandInWebContents;
  senderFrame: { url: string };
  processId: number;
  frameId: number;
}

type MainListener = (event: StandInMainEvent, ...args: unknown[]) => void;
type Handler = (event: StandInMainEvent, ...args: unknown[]) => unknown;

function clone<T>(value: T): T {
  try {
    return structuredClone(value);
  } catch (err) {
    throw new Error(`An object could not be cloned. (${(err as Error).message})`);
  }
}

/** Message delivery is asynchronous across processes. */
const later = (fn: () => void): void => void setImmediate(fn);

export class StandInWebContents extends EventEmitter {
  private destroyed = false;
  readonly ipcRenderer: StandInIpcRenderer;
  sent = 0;

  constructor(
    readonly id: number,
    readonly ipcMain: StandInIpcMain,
    readonly url: string,
  ) {
    super();
    this.ipcRenderer = new StandInIpcRenderer(this);
  }

  send(channel: string, ...args: unknown[]): void {
    if (this.destroyed) throw new Error('Object has been destroyed');
    const copied = clone(args);
    this.sent++;
    later(() => this.ipcRenderer.deliver(channel, copied));
  }

  isDestroyed(): boolean {
    return this.destroyed;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit('destroyed');
  }
}

export class StandInIpcRenderer {
  private readonly listeners = new Map<string, Set<RendererListener>>();

  constructor(private readonly contents: StandInWebContents) {}

  invoke(channel: string, ...args: unknown[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      let copied: unknown[];
      try {
        copied = clone(args);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      later(() => {
        this.contents.ipcMain
          .dispatchInvoke(channel, this.contents, copied)
          .then((value) => resolve(clone(value)))
          .catch((err: unknown) => reject(err as Error));
      });
    });
  }

  send(channel: string, ...args: unknown[]): void {
    const copied = clone(args);
    later(() => this.contents.ipcMain.dispatchSend(channel, this.contents, copied));
  }

  on(channel: string, listener: RendererListener): this {
    let set = this.listeners.get(channel);
    if (set === undefined) this.listeners.set(channel, (set = new Set()));
    set.add(listener);
    return this;
  }

  removeListener(channel: string, listener: RendererListener): this {
    this.listeners.get(channel)?.delete(listener);
    return this;
  }

  listenerCount(channel: string): number {
    return this.listeners.get(channel)?.size ?? 0;
  }

  deliver(channel: string, args: unknown[]): void {
    if (this.contents.isDestroyed()) return;
    const event: StandInRendererEvent = { sender: this, senderId: 0 };
    for (const l of [...(this.listeners.get(channel) ?? [])]) l(event, ...args);
  }
}

export class StandInIpcMain {
  private readonly handlers = new Map<string, Handler>();
  private readonly listeners = new Map<string, Set<MainListener>>();
  private nextId = 1;

  handle(channel: string, listener: Handler): void {
    if (this.handlers.has(channel)) throw new Error(`Attempted to register a second handler for '${channel}'`);
    this.handlers.set(channel, listener);
  }

  removeHandler(channel: string): void {
    this.handlers.delete(channel);
  }

  on(channel: string, listener: MainListener): this {
    let set = this.listeners.get(channel);
    if (set === undefined) this.listeners.set(channel, (set = new Set()));
    set.add(listener);
    return this;
  }

  off(channel: string, listener: MainListener): this {
    this.listeners.get(channel)?.delete(listener);
    return this;
  }

  handlerCount(): number {
    return this.handlers.size;
  }

  listenerCount(): number {
    return [...this.listeners.values()].reduce((n, s) => n + s.size, 0);
  }

  /** A renderer (webContents) loaded from `url`. */
  createWebContents(url = 'file:///app/index.html'): StandInWebContents {
    return new StandInWebContents(this.nextId++, this, url);
  }

  private eventFor(contents: StandInWebContents): StandInMainEvent {
    return { sender: contents, senderFrame: { url: contents.url }, processId: 1, frameId: 1 };
  }

  async dispatchInvoke(channel: string, contents: StandInWebContents, args: unknown[]): Promise<unknown> {
    const handler = this.handlers.get(channel);
    if (handler === undefined) throw new Error(`Error invoking remote method '${channel}': Error: No handler registered for '${channel}'`);
    try {
      return await handler(this.eventFor(contents), ...args);
    } catch (err) {
      // Electron keeps only the message: no code, no fields, no class.
      throw new Error(`Error invoking remote method '${channel}': ${String(err)}`);
    }
  }

  dispatchSend(channel: string, contents: StandInWebContents, args: unknown[]): void {
    for (const l of [...(this.listeners.get(channel) ?? [])]) l(this.eventFor(contents), ...args);
  }
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** Copies a value from one world into the other, as contextBridge does. */
function bridgeValue(value: unknown, path: string): unknown {
  if (typeof value === 'function') {
    const fn = value as (...args: unknown[]) => unknown;
    return (...args: unknown[]) => {
      const result = fn(...args.map((a, i) => bridgeValue(a, `${path}(arg ${i})`)));
      if (result instanceof Promise) return result.then((v) => bridgeValue(v, `${path}()`));
      return bridgeValue(result, `${path}()`);
    };
  }
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v, i) => bridgeValue(v, `${path}[${i}]`));
  if (value instanceof Error) return new Error(value.message);
  if (!isPlainObject(value)) throw new Error(`contextBridge: ${path} is not a plain object and cannot be exposed`);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = bridgeValue(v, `${path}.${k}`);
  return out;
}

export class StandInContextBridge {
  /** The page's `window`. */
  readonly mainWorld: Record<string, unknown> = {};

  exposeInMainWorld(apiKey: string, api: unknown): void {
    if (apiKey in this.mainWorld) throw new Error(`Cannot bind an API on top of an existing property on the window object: ${apiKey}`);
    this.mainWorld[apiKey] = bridgeValue(api, apiKey);
  }
}
