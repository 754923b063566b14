/**
 * The AI SDK worked example (examples/ai_chat.ts) on the runtime's real server: the SDK's own
 * client transport (`DefaultChatTransport`: `sendMessages`, then `reconnectToStream`, what
 * `useChat({ resume: true })` calls) and its own mock model from `ai/test` (no network).
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { DefaultChatTransport, readUIMessageStream, type UIMessage, type UIMessageChunk } from "ai";
import { MockLanguageModelV3 } from "ai/test";
import { ResumableStreams } from "../../src/resumable/mod.ts";
import { chatHandler } from "../../examples/ai_chat.ts";
import { serve, waitFor } from "../_helpers.ts";

const WORDS = Array.from({ length: 40 }, (_, n) => `word${n} `);

/** A mock model that streams WORDS, holding after the 10th until `gate` resolves. */
function fakeModel(gate: Promise<void>): { model: MockLanguageModelV3; calls: () => number } {
  let calls = 0;
  const model = new MockLanguageModelV3({
    doStream: () => {
      calls++;
      return Promise.resolve({
        stream: new ReadableStream({
          async start(controller) {
            controller.enqueue({ type: "stream-start", warnings: [] });
            controller.enqueue({ type: "text-start", id: "t" });
            for (const [n, delta] of WORDS.entries()) {
              if (n === 10) await gate;
              controller.enqueue({ type: "text-delta", id: "t", delta });
              await new Promise((resolve) => setTimeout(resolve, 2));
            }
            controller.enqueue({ type: "text-end", id: "t" });
            controller.enqueue({
              type: "finish",
              finishReason: { unified: "stop", raw: "stop" },
              usage: {
                inputTokens: { total: 3, noCache: 3, cacheRead: 0, cacheWrite: 0 },
                outputTokens: { total: WORDS.length, text: WORDS.length, reasoning: 0 },
              },
            });
            controller.close();
          },
        }),
      });
    },
  });
  return { model, calls: () => calls };
}

const question: UIMessage[] = [
  { id: "m1", role: "user", parts: [{ type: "text", text: "Count, please" }] },
];

function textOf(message: UIMessage | undefined): string {
  return (message?.parts ?? []).map((part) => part.type === "text" ? part.text : "").join("");
}

/** The last message `readUIMessageStream` builds from `stream`, and whether it saw `finish`. */
async function finalMessage(
  stream: ReadableStream<UIMessageChunk>,
  onChunk?: (chunk: UIMessageChunk) => void,
): Promise<{ message: UIMessage | undefined; finished: boolean }> {
  let finished = false;
  const watched = stream.pipeThrough(
    new TransformStream<UIMessageChunk, UIMessageChunk>({
      transform(chunk, controller) {
        onChunk?.(chunk);
        if (chunk.type === "finish") finished = true;
        controller.enqueue(chunk);
      },
    }),
  );
  let message: UIMessage | undefined;
  for await (const snapshot of readUIMessageStream({ stream: watched, terminateOnError: true })) {
    message = snapshot;
  }
  return { message, finished };
}

describe("AI SDK chat through a resumable stream (examples/ai_chat.ts)", () => {
  it(
    "reconnects the SDK's transport to an in-flight answer and ends with the uninterrupted text",
    { timeout: 30_000 },
    async () => {
      let open!: () => void;
      const gate = new Promise<void>((resolve) => open = resolve);
      const { model, calls } = fakeModel(gate);
      const resumable = new ResumableStreams({ heartbeat: null });
      const server = await serve(chatHandler(resumable, model));
      const transport = new DefaultChatTransport<UIMessage>({ api: `${server.origin}/api/chat` });
      try {
        // An uninterrupted run.
        open();
        const whole = await finalMessage(
          await transport.sendMessages({
            chatId: "whole",
            messages: question,
            trigger: "submit-message",
            messageId: undefined,
            abortSignal: undefined,
          }),
        );
        assert.equal(whole.finished, true);
        assert.equal(textOf(whole.message), WORDS.join(""));
        assert.equal(whole.message?.role, "assistant");

        // A run whose client leaves mid-answer (the model holds after 10 words meanwhile).
        let held!: () => void;
        const heldGate = new Promise<void>((resolve) => held = resolve);
        const second = fakeModel(heldGate);
        const resumable2 = new ResumableStreams({ heartbeat: null });
        const server2 = await serve(chatHandler(resumable2, second.model));
        const transport2 = new DefaultChatTransport<UIMessage>({
          api: `${server2.origin}/api/chat`,
        });
        try {
          const leave = new AbortController();
          const first = await transport2.sendMessages({
            chatId: "chat-1",
            messages: question,
            trigger: "submit-message",
            messageId: undefined,
            abortSignal: leave.signal,
          });
          const reader = first.getReader();
          let deltas = 0;
          while (deltas < 5) {
            const { value } = await reader.read();
            if (value?.type === "text-delta") deltas++;
          }
          leave.abort();
          await reader.cancel().catch(() => {});
          assert.equal((await resumable2.status("chat-1"))?.state, "running");

          // The SDK's reconnect (what `resume: true` does on load) joins the answer in flight.
          const resumed = await transport2.reconnectToStream({ chatId: "chat-1" });
          assert.ok(resumed, "a stream, not 204");
          const reading = finalMessage(resumed);
          // Still in flight when the client is back: the rest comes live.
          assert.equal((await resumable2.status("chat-1"))?.state, "running");
          held();
          const back = await reading;
          assert.equal(back.finished, true);
          assert.equal(textOf(back.message), textOf(whole.message));
          assert.equal(second.calls(), 1, "the model ran once");
          await resumable2.finished("chat-1");
          // Once the answer is over, the resume route answers 204: nothing to resume.
          assert.equal(await transport2.reconnectToStream({ chatId: "chat-1" }), null);
          assert.equal(await transport2.reconnectToStream({ chatId: "never" }), null);
        } finally {
          held();
          await server2.close();
          await resumable2.close();
        }
      } finally {
        await server.close();
        await resumable.close();
      }
      assert.equal(calls(), 1);
    },
  );

  it("stops the answer from the stop route: its stream ends without `finish`", {
    timeout: 30_000,
  }, async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => open = resolve);
    const { model } = fakeModel(gate);
    const resumable = new ResumableStreams({ heartbeat: null });
    const server = await serve(chatHandler(resumable, model));
    const transport = new DefaultChatTransport<UIMessage>({ api: `${server.origin}/api/chat` });
    try {
      let deltas = 0;
      const answer = finalMessage(
        await transport.sendMessages({
          chatId: "stopped",
          messages: question,
          trigger: "submit-message",
          messageId: undefined,
          abortSignal: undefined,
        }),
        (chunk) => {
          if (chunk.type === "text-delta") deltas++;
        },
      );
      // The model holds after ten words: stop it there.
      await waitFor(() => deltas === 10, 10_000, "ten words");
      const stop = await fetch(`${server.origin}/api/chat/stopped/stop`, { method: "POST" });
      assert.deepEqual(await stop.json(), { stopped: true });
      const { message, finished } = await answer;
      assert.equal(finished, false);
      assert.equal(textOf(message), WORDS.slice(0, 10).join(""));
      await resumable.finished("stopped");
      assert.equal((await resumable.status("stopped"))?.reason, "cancelled");
    } finally {
      open();
      await server.close();
      await resumable.close();
    }
  });
});
