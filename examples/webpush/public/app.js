// The page: registers the service worker, subscribes to push with the server's VAPID public key,
// and listens over SSE while it is open.

const $ = (id) => document.getElementById(id);
const user = () => $("user").value;
let events;

function log(text) {
  const item = document.createElement("li");
  item.textContent = text;
  $("log").prepend(item);
}

function listen() {
  events?.close();
  events = new EventSource(`/events?user=${encodeURIComponent(user())}`);
  events.addEventListener("notification", (event) => {
    const { title, body } = JSON.parse(event.data);
    log(`over SSE: ${title}: ${body ?? ""}`);
  });
}

// applicationServerKey wants bytes; the server gives base64url text
function fromBase64Url(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(base64), (char) => char.charCodeAt(0));
}

$("enable").addEventListener("click", async () => {
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
    $("status").textContent = "This browser has no Web Push.";
    return;
  }
  // Ask in a click handler: browsers refuse permission prompts that no gesture started.
  if (await Notification.requestPermission() !== "granted") {
    $("status").textContent = "Notifications are blocked.";
    return;
  }
  const registration = await navigator.serviceWorker.register("/sw.js");
  await navigator.serviceWorker.ready;
  const publicKey = await (await fetch("/vapid-public-key")).text();
  let subscription;
  try {
    subscription = await registration.pushManager.getSubscription() ??
      await registration.pushManager.subscribe({
        userVisibleOnly: true, // Chrome requires it: every push must show a notification
        applicationServerKey: fromBase64Url(publicKey),
      });
  } catch (error) {
    // An AbortError where the browser has no push service (headless, some Chromium builds,
    // Brave with push off): say so instead of failing without a word.
    $("status").textContent = `Push is not available here (${error.name}: ${error.message}); ` +
      "notifications still arrive while this page is open.";
    return;
  }
  const response = await fetch(`/subscribe?user=${encodeURIComponent(user())}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(subscription.toJSON()),
  });
  $("status").textContent = response.ok ? "Subscribed." : await response.text();
});

$("send").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch(`/notify?user=${encodeURIComponent(user())}`, {
    method: "POST",
    body: JSON.stringify({ title: $("title").value, body: $("body").value }),
  });
  log(`sent: ${JSON.stringify(await response.json())}`);
});

$("user").addEventListener("change", listen);
listen();
