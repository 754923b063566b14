/** Options of {@linkcode ConnectError}. */
export interface ConnectErrorOptions extends ErrorOptions {
  /** The response that was refused; its body should already be cancelled. */
  response: Response;
}

/**
 * The server answered in a way that ends the connection for good: a status outside 200–299, or
 * a content type other than `text/event-stream`. {@linkcode connect} does not reconnect after it.
 *
 * The body of `response` has been cancelled (so no connection is left open); its status, status
 * text and headers are there to read.
 *
 * @example Tell an expired session from other failures
 * ```ts
 * import { connect, ConnectError } from "@flume/sse/client";
 * import assert from "node:assert/strict";
 *
 * const fetch401 = () => Promise.resolve(new Response("log in", { status: 401 }));
 * let caught: unknown;
 * try {
 *   for await (const _ of connect("https://example.com/events", { fetch: fetch401 })) break;
 * } catch (error) {
 *   caught = error;
 * }
 * assert.ok(caught instanceof ConnectError);
 * assert.equal(caught.status, 401);
 * assert.equal(caught.name, "ConnectError");
 * assert.equal(caught.message, "Cannot connect to event stream: status must be 2xx, got `401`");
 * ```
 */
export class ConnectError extends Error {
  /** Always `"ConnectError"`. */
  override name: string = "ConnectError";
  /** The HTTP status of the response (200 when only the content type was wrong). */
  readonly status: number;
  /** The response, with its body cancelled. */
  readonly response: Response;

  /**
   * Creates the error.
   * @param message What was wrong with the response.
   * @param options The refused response, and the underlying cause, if any.
   */
  constructor(message: string, options: ConnectErrorOptions) {
    super(message, options);
    this.response = options.response;
    this.status = options.response.status;
  }
}
