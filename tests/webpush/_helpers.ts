import type { PushSubscriptionJSON } from "../../src/webpush/mod.ts";
import { toBase64Url } from "./_rfc8188.ts";

export interface RecordedRequest {
  url: string;
  headers: Headers;
  body: Uint8Array;
}

/**
 * A `fetch` that records each request (reading its body) and answers with `respond`, for tests
 * that need no push service.
 */
export function recordingFetch(
  respond: (request: RecordedRequest) => Response = () => new Response(null, { status: 201 }),
): { fetch: typeof fetch; requests: RecordedRequest[] } {
  const requests: RecordedRequest[] = [];
  const spy = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    const recorded = {
      url: request.url,
      headers: request.headers,
      body: new Uint8Array(await request.arrayBuffer()),
    };
    requests.push(recorded);
    return respond(recorded);
  };
  return { fetch: spy as typeof fetch, requests };
}

/** A well-formed subscription for an https: push service, with a real key pair behind it. */
export async function fakeSubscription(
  origin = "https://push.example.net",
): Promise<PushSubscriptionJSON> {
  const pair = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, [
    "deriveBits",
  ]);
  const p256dh = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return {
    endpoint: `${origin}/send/${crypto.randomUUID()}`,
    expirationTime: null,
    keys: {
      p256dh: toBase64Url(p256dh),
      auth: toBase64Url(crypto.getRandomValues(new Uint8Array(16))),
    },
  };
}

/** Decodes the claims of the JWT in an `Authorization: vapid` header without verifying it. */
export function claimsOf(authorization: string | null): { aud: string; exp: number; sub: string } {
  const token = /t=([^,]+)/.exec(authorization ?? "")?.[1] ?? "";
  const claims = token.split(".")[1] ?? "";
  return JSON.parse(atob(claims.replace(/-/g, "+").replace(/_/g, "/")));
}
