// The demo in a real headless Chromium: what a user sees after `npm start`.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { type Browser, launchBrowser, type Page } from "./_browser.ts";
import { fakeAnswer, type RunningDemo, startDemo } from "../examples/demo/server.ts";

const OPTIONS = { port: 0, tickInterval: 250, taskStep: 40, retry: 300 };
const WAIT = 10_000;
const RESULTS = new URL("../test-results/", import.meta.url);

function text(page: Page, selector: string): Promise<string> {
  return page.locator(selector).innerText();
}

/** Waits until the element's text contains `expected` (or matches it), and returns the text. */
async function waitForText(
  page: Page,
  selector: string,
  expected: string | RegExp,
): Promise<string> {
  await page.locator(selector, { hasText: expected }).waitFor({ timeout: WAIT });
  return await text(page, selector);
}

function post(origin: string, path: string, body: unknown): Promise<Response> {
  return fetch(origin + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

async function screenshot(page: Page, name: string): Promise<void> {
  await mkdir(RESULTS, { recursive: true });
  await page.screenshot({ path: fileURLToPath(new URL(name, RESULTS)), fullPage: true });
}

describe("demo page in headless Chromium", () => {
  let browser: Browser;
  let demo: RunningDemo;
  let page: Page;

  let ready: Promise<void> | undefined;

  async function setup(): Promise<void> {
    demo = await startDemo(OPTIONS);
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
    await page.goto(`${demo.origin}/?user=alice`);
  }

  // Set up by the first test, under its own timeout: Bun ignores the `timeout` option of hooks
  // and gives each 5 s, which a cold Chromium start can exceed.
  const test = (title: string, timeout: number, fn: () => Promise<void>): void => {
    it(title, { timeout }, async () => {
      await (ready ??= setup());
      await fn();
    });
  };

  after(async () => {
    await browser?.close();
    await demo?.close();
  });

  test("opens a stream and shows the connection as open", 40_000, async () => {
    assert.equal(await waitForText(page, "#status", /^open$/), "open");
    assert.equal(await page.locator("#status").getAttribute("data-state"), "open");
  });

  test(
    "shows a notification sent from the form to the picked user, and not another user's",
    20_000,
    async () => {
      const response = await post(demo.origin, "/api/notify", {
        user: "bob",
        from: "carol",
        text: "only for bob",
      });
      assert.equal(response.status, 202);
      await response.body?.cancel();
      await page.locator("#to").selectOption("alice");
      await page.locator("#text").fill("hello from the form");
      await page.locator("#notify button").click();
      const feed = await waitForText(page, "#feed", "hello from the form");
      assert.match(feed, /from alice/);
      // bob's notification was published first, so it would be here by now if it leaked.
      assert.ok(!feed.includes("only for bob"), feed);
    },
  );

  test("shows the ticker broadcast to everyone", 20_000, async () => {
    await waitForText(page, "#price", /^\d+\.\d\d$/);
    // Several ticks, not just the one the page fetched with its state.
    await page.locator("#spark span").nth(2).waitFor({ timeout: WAIT });
    assert.match(await text(page, "#change"), /^[▲▼] \d+\.\d\d$/);
  });

  test("moves the progress bar of a server task to done", 20_000, async () => {
    await page.locator("#run button").click();
    assert.match(await waitForText(page, "#task", "done"), /^Task 1: done$/);
    assert.match(String(await page.locator("#bar").getAttribute("style")), /width: 100%/);
  });

  test("replays the events missed while its connection was dropped", 30_000, async () => {
    await page.locator("#drop button").click();
    await waitForText(page, "#status", "reconnecting");
    // Published while the page is away (it comes back after the 300 ms retry): the replay
    // brings it.
    const response = await post(demo.origin, "/api/notify", {
      user: "alice",
      from: "bob",
      text: "sent while you were away",
    });
    await response.body?.cancel();
    const status = await waitForText(page, "#status", /replayed \d+ missed events?/);
    const count = Number(/replayed (\d+)/.exec(status)![1]);
    assert.ok(count >= 1, status);
    await waitForText(page, "#feed", "sent while you were away");
    assert.match(await text(page, "#log"), /reconnected with Last-Event-ID \w+-\d+/);
    await screenshot(page, "demo.png");
  });

  test("shows the gap signal and refetches its state after a server restart", 40_000, async () => {
    const port = demo.port;
    await demo.close();
    await waitForText(page, "#status", "reconnecting");
    await waitForText(page, "#log", "the server is stopping");
    // Long enough for the browser's reconnect to find nothing listening.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    demo = await startDemo({ ...OPTIONS, port });
    assert.match(await waitForText(page, "#status", "history lost"), /history lost/);
    await waitForText(page, "#status", "refetched");
    // The new process has none of the old notifications: the refetched feed is empty.
    await waitForText(page, "#feed", "Nothing yet");
    assert.equal(await text(page, "#task"), "No task yet.");
    const response = await post(demo.origin, "/api/notify", {
      user: "alice",
      from: "alice",
      text: "after the restart",
    });
    await response.body?.cancel();
    await waitForText(page, "#feed", "after the restart");
    await screenshot(page, "demo-restart.png");
  });

  test(
    "switches the feed to the user picked, with that user's history and live events",
    20_000,
    async () => {
      const earlier = await post(demo.origin, "/api/notify", { user: "bob", text: "welcome bob" });
      await earlier.body?.cancel();
      await page.locator("#user").selectOption("bob");
      await waitForText(page, "#who", "bob");
      const feed = await waitForText(page, "#feed", "welcome bob");
      assert.ok(!feed.includes("after the restart"), feed);
      assert.match(page.url(), /\?user=bob$/);
      await waitForText(page, "#status", /^open$/);
      const live = await post(demo.origin, "/api/notify", { user: "bob", text: "live for bob" });
      await live.body?.cancel();
      await waitForText(page, "#feed", "live for bob");
    },
  );
});

describe("demo answer panel in headless Chromium", () => {
  // 120 words in 60 chunks, one every 40 ms: about 2.4 s, long enough to reload in the middle.
  const WORDS = 120;
  let browser: Browser | undefined;
  let demo: RunningDemo | undefined;
  let ready: Promise<void> | undefined;

  async function setup(): Promise<void> {
    demo = await startDemo({ ...OPTIONS, answerWords: WORDS, answerStep: 40 });
    browser = await launchBrowser();
  }

  // As above: set up under the first test's timeout, which Bun honours for tests only.
  const test = (title: string, timeout: number, fn: (page: Page) => Promise<void>): void => {
    it(title, { timeout }, async () => {
      await (ready ??= setup());
      // A page of its own (a fresh context): its sessionStorage holds no answer yet.
      const page = await browser!.newPage({ viewport: { width: 1100, height: 900 } });
      const errors: string[] = [];
      page.on("pageerror", (error) => errors.push(String(error)));
      try {
        await fn(page);
        assert.deepEqual(errors, []);
      } finally {
        await page.close();
      }
    });
  };

  after(async () => {
    await browser?.close();
    await demo?.close();
  });

  /** Waits until the answer shows at least `count` words. */
  async function waitForWords(page: Page, count: number): Promise<void> {
    // A string: it runs in the page, whose `document` this file's types do not know.
    await page.waitForFunction(
      `Number(document.getElementById("answer").dataset.words) >= ${count}`,
      null,
      { timeout: WAIT },
    );
  }

  /** Words shown in the answer now. */
  async function words(page: Page): Promise<number> {
    return Number(await page.locator("#answer").getAttribute("data-words"));
  }

  async function status(id: string): Promise<Record<string, unknown>> {
    const response = await fetch(`${demo!.origin}/api/answer/status?id=${id}`);
    assert.equal(response.status, 200);
    return await response.json();
  }

  async function answerId(page: Page): Promise<string> {
    const saved = await page.evaluate(() => sessionStorage.getItem("flume-demo-answer"));
    return JSON.parse(String(saved)).id;
  }

  test(
    "continues the answer after a reload mid-way, with no word repeated or missed",
    40_000,
    async (page) => {
      const full = fakeAnswer(WORDS).join("");
      await page.goto(`${demo!.origin}/?user=alice`);
      await page.locator("#ask button").first().click();
      await waitForText(page, "#answer-state", "streaming");
      await waitForWords(page, 10);
      const id = await answerId(page);
      await page.reload();
      // Still generating when the reloaded page re-attached: the rest came from the server's
      // stored events and live tail, after the page's Last-Event-ID.
      const resumedAt = Number(await page.locator("#answer").getAttribute("data-resumed-at"));
      assert.ok(resumedAt >= 10 && resumedAt < WORDS, `resumed at ${resumedAt}`);
      assert.match(await text(page, "#answer-note"), /re-attached after chunk \w+-\d+/);
      assert.equal(await waitForText(page, "#answer-state", /^done$/), "done");
      assert.equal(await text(page, "#answer"), full);
      assert.equal(await words(page), WORDS);
      assert.equal(await answerId(page), id);
      const ended = await status(id);
      assert.equal(ended.state, "ended");
      assert.equal(ended.reason, "complete");
      // Every chunk plus the end marker: the model ran once, through the reload.
      assert.equal(ended.events, fakeAnswer(WORDS).length + 1);
      await screenshot(page, "demo-answer.png");
    },
  );

  test(
    "stops the answer with Stop: the page shows stopped and the producer ends",
    30_000,
    async (page) => {
      await page.goto(`${demo!.origin}/?user=alice`);
      await page.locator("#ask button").first().click();
      await waitForWords(page, 6);
      const id = await answerId(page);
      assert.equal((await status(id)).producing, true);
      await page.locator("#stop").click();
      assert.equal(await waitForText(page, "#answer-state", /^stopped$/), "stopped");
      const shown = await text(page, "#answer");
      assert.ok(fakeAnswer(WORDS).join("").startsWith(shown), shown);
      const count = await words(page);
      assert.ok(count >= 6 && count < WORDS, `stopped at ${count} words`);
      let stopped = await status(id);
      for (let i = 0; i < 50 && stopped.producing; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        stopped = await status(id);
      }
      assert.equal(stopped.state, "ended");
      assert.equal(stopped.reason, "cancelled");
      assert.equal(stopped.producing, false);
      assert.equal(stopped.running, 0);
      // Nothing arrives after "stopped": the producer wrote no more, the page listens no more.
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(await text(page, "#answer"), shown);
      assert.equal((await status(id)).events, stopped.events);
      assert.equal(await page.locator("#stop").isDisabled(), true);
    },
  );
});
