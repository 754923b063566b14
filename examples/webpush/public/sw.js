// The service worker: shows a push message as a notification when no page is open.
// The server sends a PushFallback envelope: { event, id?, data }, with data = { title, body, ... }.

self.addEventListener("push", (event) => {
  const envelope = event.data?.json() ?? {};
  const notification = envelope.data ?? {};
  event.waitUntil(
    self.registration.showNotification(notification.title ?? "Notification", {
      body: notification.body,
      icon: notification.icon,
      tag: envelope.id, // a newer message with the same id replaces the older one
      data: notification.data,
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = event.notification.data?.url ?? "/";
  event.waitUntil(
    self.clients.matchAll({ type: "window" }).then((windows) => {
      const open = windows.find((client) => new URL(client.url).pathname === url);
      return open ? open.focus() : self.clients.openWindow(url);
    }),
  );
});
