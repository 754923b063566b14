/**
 * A Vercel AI SDK chat backend whose answers outlive their connections, on `@flume/sse/resumable`.
 *
 * - `POST /api/chat` (the body `DefaultChatTransport` sends: `{ id, messages }`) starts the
 *   answer under the chat's id: `streamText` inside `createUIMessageStream`, every UI message
 *   chunk stored in the resumable stream. The answer runs to its end whatever the client does.
 *   The response is that stream, read from the store.
 * - `GET /api/chat/:id/stream` (`DefaultChatTransport.reconnectToStream`, what `resume: true`
 *   calls) serves the answer in flight from its start (the SDK's client rebuilds the message
 *   from the start), its live tail, and its end; 204 when no answer is running, as the SDK wants.
 * - `POST /api/chat/:id/stop` stops the answer on any worker.
 *
 * Both routes send the SDK's own wire format (`createUIMessageStreamResponse`: JSON chunks, then
 * `[DONE]`): the stored chunks are read with `resumable.events()`, so the SDK's parser never sees
 * the resumable stream's `end` event.
 *
 * Run it: `npx deno run -A examples/ai_chat.ts` (a deterministic fake model from `ai/test`, no
 * network), then point `useChat({ resume: true })` at it, or:
 * `curl -N localhost:8000/api/chat -d '{"id":"c1","messages":[{"id":"m1","role":"user","parts":[{"type":"text","text":"hi"}]}]}'`
 * @module
 */
import {
  convertToModelMessages,
  createUIMessageStream,
  createUIMessageStreamResponse,
  type LanguageModel,
  streamText,
  type UIMessage,
  type UIMessageChunk,
} from "ai";
import process from "node:process";
import { ResumableStreams } from "../src/resumable/mod.ts";

/** The routes of the chat backend on `resumable`, answering with `model`. */
export function chatHandler(
  resumable: ResumableStreams,
  model: LanguageModel,
): (request: Request) => Promise<Response> {
  return async (request) => {
    const path = new URL(request.url).pathname;
    if (request.method === "POST" && path === "/api/chat") {
      const { id, messages } = await request.json() as { id: string; messages: UIMessage[] };
      const modelMessages = await convertToModelMessages(messages);
      // One answer per chat at a time: a second POST while one runs joins it.
      await resumable.start(id, async (stream) => {
        const answer = createUIMessageStream({
          originalMessages: messages,
          execute: ({ writer }) => {
            writer.merge(
              streamText({ model, messages: modelMessages, abortSignal: stream.signal })
                .toUIMessageStream(),
            );
          },
        });
        // "Stop" (on any worker) aborts the signal: cancelling the answer stops the model.
        const reader = answer.getReader();
        const stop = () => void reader.cancel(stream.signal.reason).catch(() => {});
        stream.signal.addEventListener("abort", stop, { once: true });
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          await stream.publish(value);
        }
      });
      return await uiMessageStream(resumable, id, request.signal) ??
        new Response("Cannot answer: the chat's answer is gone", { status: 404 });
    }
    const resume = path.match(/^\/api\/chat\/([^/]+)\/stream$/);
    if (request.method === "GET" && resume) {
      const id = decodeURIComponent(resume[1]!);
      // Only an answer in flight is resumed; a finished one is in the client's history already.
      if ((await resumable.status(id))?.state !== "running") {
        return new Response(null, { status: 204 });
      }
      return await uiMessageStream(resumable, id, request.signal) ??
        new Response(null, { status: 204 });
    }
    const stop = path.match(/^\/api\/chat\/([^/]+)\/stop$/);
    if (request.method === "POST" && stop) {
      const stopped = await resumable.cancel(decodeURIComponent(stop[1]!));
      return Response.json({ stopped });
    }
    return new Response("Not found", { status: 404 });
  };
}

/**
 * The stored chunks of the answer `id`, from its start, then its live tail, as the AI SDK's
 * UI message stream response; undefined when there is no answer under `id`.
 */
async function uiMessageStream(
  resumable: ResumableStreams,
  id: string,
  signal: AbortSignal,
): Promise<Response | undefined> {
  const events = await resumable.events(id, { live: true, signal });
  if (!events) return undefined;
  const stream = new ReadableStream<UIMessageChunk>({
    async pull(controller) {
      const { value, done } = await events.next();
      // The `end` event closes the stream: the chunks before it ended with `finish` when the
      // answer completed, and without it when it was stopped.
      if (done || value.event === "end") {
        controller.close();
        await events.return();
        return;
      }
      controller.enqueue(JSON.parse(value.data) as UIMessageChunk);
    },
    async cancel() {
      await events.return();
    },
  });
  return createUIMessageStreamResponse({ stream });
}

if (import.meta.main) {
  const { MockLanguageModelV3 } = await import("ai/test");
  const words = "Resumable streams let an answer outlive the page that asked for it. ".repeat(8)
    .split(/(?<= )/);
  const model = new MockLanguageModelV3({
    doStream: () =>
      Promise.resolve({
        stream: new ReadableStream({
          async start(controller) {
            controller.enqueue({ type: "stream-start", warnings: [] });
            controller.enqueue({ type: "text-start", id: "t" });
            for (const delta of words) {
              await new Promise((resolve) => setTimeout(resolve, 100));
              controller.enqueue({ type: "text-delta", id: "t", delta });
            }
            controller.enqueue({ type: "text-end", id: "t" });
            controller.enqueue({
              type: "finish",
              finishReason: { unified: "stop", raw: "stop" },
              usage: {
                inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 },
                outputTokens: { total: words.length, text: words.length, reasoning: 0 },
              },
            });
            controller.close();
          },
        }),
      }),
  });
  const handler = chatHandler(new ResumableStreams(), model);
  const port = Number(process.env.PORT ?? 8000);
  if ("Bun" in globalThis) {
    // deno-lint-ignore no-explicit-any
    (globalThis as any).Bun.serve({ port, hostname: "127.0.0.1", fetch: handler });
  } else {
    Deno.serve({ port, hostname: "127.0.0.1" }, handler);
  }
  console.log(`AI chat backend on http://127.0.0.1:${port}/api/chat`);
}
