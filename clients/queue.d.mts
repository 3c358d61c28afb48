// Types of clients/queue.mjs: denokv-fcgi's queue delivery client.
// See docs/queues.md for the protocol it speaks.

export type KvKeyPart = Uint8Array | string | number | bigint | boolean;
export type KvKey = KvKeyPart[];

export interface OpenOptions {
  /** The server's access token; defaults to $DENO_KV_ACCESS_TOKEN. */
  accessToken?: string;
}

export interface EnqueueOptions {
  /** Milliseconds before the message is due (default 0). */
  delay?: number;
  /** Keys the value is written to when every attempt failed. */
  keysIfUndelivered?: KvKey[];
  /**
   * Delays between attempts in ms (server default: 100, 1000, 5000, 30000,
   * 60000). Not empty: over KV Connect an empty list means the default.
   */
  backoffSchedule?: number[];
}

export interface ListenOptions {
  /** Messages handled at once, 1 to 100 (default 1). */
  concurrency?: number;
  /** How long a message is held; renewed at a third of it while the handler runs (default 30000). */
  leaseMs?: number;
  /** Long-poll wait per request (default 30000; the server waits at most 60000). */
  waitMs?: number;
}

export interface QueueMessageInfo {
  /** 1 on the first delivery; 0 when it cannot be known. */
  attempt: number;
  /** When the message was due, in ms since the epoch. */
  dueAt: number;
}

/** An HTTP refusal from the server, with its status and one-line reason. */
export class QueueError extends Error {
  constructor(status: number, message: string);
  readonly status: number;
}

export class Queue {
  /** Enqueues a value (an ordinary atomic write with one enqueue). */
  enqueue(value: unknown, options?: EnqueueOptions): Promise<{ ok: true; versionstamp: string }>;
  /**
   * Calls handler for each message as it becomes due; resolving finishes
   * it, throwing or rejecting fails it (it is retried on its schedule).
   * Resolves once close() was called and the handlers in flight are done.
   */
  listenQueue(
    handler: (value: any, info: QueueMessageInfo) => unknown,
    options?: ListenOptions,
  ): Promise<void>;
  /** Stops every listenQueue of this queue. */
  close(): void;
}

/** Connects to a denokv-fcgi database and checks that it delivers queues. */
export function openQueue(url: string, options?: OpenOptions): Promise<Queue>;
