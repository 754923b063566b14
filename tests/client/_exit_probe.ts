/**
 * A child process for the cleanup tests: runs one scenario against the server at argv[2], prints
 * a JSON line with its outcome, and must then exit on its own. A timer, listener or body that
 * outlives the iteration keeps the process alive, which the parent test sees.
 * @module
 */
import process from "node:process";
import { connect, ConnectError } from "../../src/client/mod.ts";

const [origin, scenario] = process.argv.slice(-2);
const events: string[] = [];
let outcome = "completed";

try {
  switch (scenario) {
    case "break": {
      for await (const event of connect(`${origin}/open`, { inactivityTimeout: 60_000 })) {
        events.push(event.data);
        break;
      }
      break;
    }
    case "close-in-backoff": {
      const connection = connect(`${origin}/end`, {
        backoff: { initial: 60_000 },
        onRetry: () => setTimeout(() => connection.close(), 10),
      });
      for await (const event of connection) events.push(event.data);
      break;
    }
    case "abort-in-read": {
      const controller = new AbortController();
      const connection = connect(`${origin}/open`, {
        signal: controller.signal,
        inactivityTimeout: 60_000,
        backoff: { initial: 60_000 },
      });
      for await (const event of connection) {
        events.push(event.data);
        setTimeout(() => controller.abort(), 10);
      }
      break;
    }
    case "http-error": {
      try {
        for await (const event of connect(`${origin}/401`, { inactivityTimeout: 60_000 })) {
          events.push(event.data);
        }
      } catch (error) {
        outcome = error instanceof ConnectError ? `ConnectError ${error.status}` : String(error);
      }
      break;
    }
    case "timeout-then-break": {
      for await (
        const event of connect(`${origin}/hang-once`, {
          inactivityTimeout: 100,
          backoff: { initial: 1 },
        })
      ) {
        events.push(event.data);
        break;
      }
      break;
    }
    case "bun-idle": {
      // Run with BUN_CONFIG_HTTP_IDLE_TIMEOUT set low: a plain fetch is cut, connect() is not.
      const plain = (async () => {
        const response = await fetch(`${origin}/quiet?plain`);
        try {
          await response.text();
          return "plain fetch read to the end";
        } catch (error) {
          return `plain fetch failed: ${(error as Error).name}`;
        }
      })();
      for await (const event of connect(`${origin}/quiet`, { backoff: { initial: 1 } })) {
        events.push(event.data);
        break;
      }
      outcome = await plain;
      break;
    }
    default:
      throw new Error(`Unknown scenario ${scenario}`);
  }
} catch (error) {
  outcome = `threw ${String(error)}`;
}
console.log(JSON.stringify({ outcome, events }));
