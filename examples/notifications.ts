// A notification service: every signed-in user gets their own stream, and a notification posted
// for a user reaches every open tab of that user and nobody else.
//
//   deno run -A examples/notifications.ts        (or: bun examples/notifications.ts)
//
// (Deno suggests `deno serve` on seeing the default export; `deno run` is what this file is
// written for: with `deno serve` the start block below would open a second server.)
//
//   curl -N -H 'Authorization: Bearer ana-token' http://localhost:8000/events
//   curl -H 'Authorization: Bearer ops-token' -H 'Content-Type: application/json' \
//     -d '{"recipient":"ana","title":"Build finished","body":"main is green"}' \
//     http://localhost:8000/notify
//
// PORT sets the port (default 8000). A browser page can listen with
// `new EventSource("/events?token=ana-token")`.

import { Broker, formatMetrics } from "../mod.ts";

/** What the stream carries: the event names and the shape of their data. */
type Events = {
  notification: { id: string; from: string; title: string; body: string; at: string };
};

interface User {
  name: string;
  /** May post notifications for others (an operator, a back-end job). */
  canNotify: boolean;
}

// A stand-in for real authentication (sessions, JWTs, an identity provider): a fixed map from
// bearer token to user. Everything below only needs "which user is this request?".
const USERS = new Map<string, User>([
  ["ana-token", { name: "ana", canNotify: false }],
  ["bob-token", { name: "bob", canNotify: false }],
  ["ops-token", { name: "ops", canNotify: true }],
]);
const KNOWN = new Set([...USERS.values()].map((user) => user.name));

const broker = new Broker<Events>({
  events: ["notification"],
  // A tab that reconnects (network blip, laptop lid) gets what it missed from the last 100.
  history: 100,
  maxClientsPerChannel: 20, // tabs per user
});

const REALM = 'Bearer realm="notifications"';

/** The request's user, or the response that turns it away before any stream starts. */
function authenticate(request: Request, url: URL): User | Response {
  const header = request.headers.get("authorization");
  let token = header?.match(/^Bearer\s+(\S+)$/i)?.[1];
  // EventSource cannot set headers, so a browser page passes the token in the URL instead. It
  // then shows up in access logs and history: use a short-lived token made for this, and only
  // over HTTPS. Clients that can send headers (fetch, @flume/sse/client's connect()) should.
  if (header === null && request.method === "GET") {
    token = url.searchParams.get("token") ?? undefined;
  }
  if (token === undefined) {
    // RFC 6750: no credentials at all gets a bare challenge.
    return new Response("Sign in first\n", {
      status: 401,
      headers: { "WWW-Authenticate": REALM },
    });
  }
  const user = USERS.get(token);
  if (user === undefined) {
    return new Response("Unknown or expired token\n", {
      status: 401,
      headers: { "WWW-Authenticate": `${REALM}, error="invalid_token"` },
    });
  }
  return user;
}

function channelOf(user: string): string {
  return `user:${user}`;
}

async function notify(request: Request, sender: User): Promise<Response> {
  if (!sender.canNotify) {
    return new Response("Not allowed to send notifications\n", {
      status: 403,
      headers: { "WWW-Authenticate": `${REALM}, error="insufficient_scope"` },
    });
  }
  const input = await request.json().catch(() => null);
  const { recipient, title, body = "" } = input ?? {};
  if (typeof recipient !== "string" || typeof title !== "string" || typeof body !== "string") {
    return new Response('Expected {"recipient": string, "title": string, "body"?: string}\n', {
      status: 400,
    });
  }
  if (!KNOWN.has(recipient)) return new Response("No such recipient\n", { status: 404 });
  const notification = {
    id: crypto.randomUUID(),
    from: sender.name,
    title,
    body,
    at: new Date().toISOString(),
  };
  const channel = channelOf(recipient);
  await broker.publish(channel, notification, { event: "notification" });
  // Accepted even when the recipient has no tab open: history keeps it for a reconnect.
  return Response.json({ id: notification.id, openStreams: broker.clientCount(channel) }, {
    status: 202,
  });
}

async function fetch(request: Request): Promise<Response> {
  const url = new URL(request.url);
  if (url.pathname === "/metrics" && request.method === "GET") {
    return new Response(formatMetrics(broker.metrics()), {
      headers: { "Content-Type": "text/plain; version=0.0.4" },
    });
  }
  const isEvents = url.pathname === "/events" && request.method === "GET";
  const isNotify = url.pathname === "/notify" && request.method === "POST";
  if (!isEvents && !isNotify) return new Response("Not found\n", { status: 404 });
  const user = authenticate(request, url);
  if (user instanceof Response) return user;
  // Each user listens on their own channel only: nobody can subscribe to somebody else's.
  if (isEvents) return broker.response(channelOf(user.name), request);
  return await notify(request, user);
}

const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env;
const port = Number(env?.PORT ?? 8000);
// Local only by default; HOST=0.0.0.0 to listen on every interface.
const hostname = env?.HOST ?? "127.0.0.1";

// Bun serves the default export of the file it runs by itself (with this `port` and
// `hostname`); calling Bun.serve() here as well would start a second server. So only Deno needs
// the start block below.
export default { port, hostname, fetch };

if (import.meta.main && "Deno" in globalThis) {
  const { Deno } = globalThis as unknown as {
    Deno: { serve(options: { port: number; hostname: string }, handler: typeof fetch): unknown };
  };
  Deno.serve({ port, hostname }, fetch);
}
