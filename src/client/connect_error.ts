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
 *
 * const fetch404 = () => Promise.resolve(new Response("gone", { status: 401 }));
 * try {
 *   for await (const event of connect("https://example.com/events", { fetch: fetch404 })) {
 *     console.log(event.data);
 *   }
 * } catch (error) {
 *   if (error instanceof ConnectError && error.status === 401) console.log("log in again");
 *   else throw error;
 * }
 * ```
 */
export class ConnectError extends Error {
  /** The HTTP status of the response (200 when only the content type was wrong). */
  readonly status: number;
  /** The response, with its body cancelled. */
  readonly response: Response;

  /**
   * Creates the error.
   * @param response The response that was refused.
   * @param message What was wrong with it.
   * @param options The underlying cause, if any.
   */
  constructor(response: Response, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConnectError";
    this.status = response.status;
    this.response = response;
  }
}
