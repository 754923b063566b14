/**
 * Scripted test servers and small iteration helpers for the client tests.
 * @module
 */
import { serve, type TestServer } from "../_helpers.ts";
import { VirtualClock } from "../_clock.ts";

const encoder = new TextEncoder();

/** The content type of an event stream. */
export const SSE = { "content-type": "text/event-stream" };

/** A body that sends `text` and then stays open until the client goes away. */
export function openBody(text: string, onCancel?: () => void): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      if (text !== "") controller.enqueue(encoder.encode(text));
    },
    cancel() {
      onCancel?.();
    },
  });
}

/** A server whose n-th request (0-based) is answered by `answers[n]` (the last one repeats). */
export async function scripted(
  answers: ((request: Request) => Response | Promise<Response>)[],
): Promise<TestServer & { requests: { headers: Headers }[] }> {
  // Snapshots: Deno drops a request's headers once its response is done.
  const requests: { headers: Headers }[] = [];
  const server = await serve((request) => {
    requests.push({ headers: new Headers(request.headers) });
    return answers[Math.min(requests.length - 1, answers.length - 1)]!(request);
  });
  return Object.assign(server, { requests });
}

export { take } from "../_helpers.ts";

/** A body that sends `text` and stays open until `end()` (or the client goes away). */
export function heldBody(text: string): { body: ReadableStream<Uint8Array>; end(): void } {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      if (text !== "") c.enqueue(encoder.encode(text));
    },
  });
  return {
    body,
    end: () => {
      try {
        controller.close();
      } catch {
        // Already cancelled by the client.
      }
    },
  };
}

/** Iterates in the background: `seen` fills as events come, `done` settles with the end. */
export function follow<T>(
  iterable: AsyncIterable<T>,
  count = Infinity,
): { seen: T[]; done: Promise<T[]> } {
  const seen: T[] = [];
  const done = (async () => {
    if (count === 0) return seen;
    for await (const item of iterable) {
      seen.push(item);
      if (seen.length === count) break;
    }
    return seen;
  })();
  return { seen, done };
}

/** Runs `fn` on a virtual clock installed as the package's clock, and uninstalls it after. */
export async function withVirtualClock(fn: (clock: VirtualClock) => Promise<void>): Promise<void> {
  const clock = new VirtualClock().install();
  try {
    await fn(clock);
  } finally {
    clock.uninstall();
  }
}
