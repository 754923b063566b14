// The demo page's script: one EventSource per page, no build step, no library.

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let user = ["alice", "bob", "carol"].includes(params.get("user")) ? params.get("user") : "alice";
const client = Math.random().toString(36).slice(2, 10);

let source;
let lastEventId = "";
/** Events whose `n` is at most this were published before the current connection: replays. */
let replayUpTo = 0;
let replayed = 0;
const shown = new Set();

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

function log(text) {
  const newest = $("log").firstChild;
  if (newest?.dataset.text === text) {
    // The same line again (a server that stays down): count it instead of filling the list.
    newest.dataset.count = Number(newest.dataset.count) + 1;
    newest.lastChild.textContent = `${text} (×${newest.dataset.count})`;
    return;
  }
  const item = document.createElement("li");
  item.dataset.text = text;
  item.dataset.count = 1;
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = new Date().toLocaleTimeString() + "  ";
  item.append(time, document.createTextNode(text));
  $("log").prepend(item);
  while ($("log").children.length > 8) $("log").lastChild.remove();
}

function connect() {
  source?.close();
  // A new EventSource cannot send Last-Event-ID itself; the server also reads it from the URL.
  const query = new URLSearchParams({ user, client });
  if (lastEventId) query.set("lastEventId", lastEventId);
  source = new EventSource(`/events?${query}`);
  setStatus("connecting", "connecting…");

  source.addEventListener("hello", (event) => {
    const hello = JSON.parse(event.data);
    replayUpTo = hello.resumed ? hello.n : 0;
    replayed = 0;
    if (hello.resumed) {
      setStatus("open", "open · resumed, nothing missed");
      log("reconnected with Last-Event-ID " + (source.lastEventId || lastEventId));
    } else {
      setStatus("open", "open");
      log("connected as " + hello.user);
      refetch();
    }
  });
  source.addEventListener("notification", (event) => {
    seen(event);
    addNotification(JSON.parse(event.data));
  });
  source.addEventListener("tick", (event) => {
    seen(event);
    showTick(JSON.parse(event.data));
  });
  source.addEventListener("progress", (event) => {
    seen(event);
    showProgress(JSON.parse(event.data));
  });
  source.addEventListener("stream-reset", (event) => {
    lastEventId = event.lastEventId;
    replayUpTo = 0;
    setStatus("reset", "open · history lost, refetching…");
    log("stream-reset: the server no longer has what was missed");
    refetch().then(() => setStatus("reset", "open · history lost, refetched"));
  });
  source.addEventListener("bye", () => log("the server is stopping"));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      // A fatal answer (an HTTP error from a proxy, say): EventSource gives up, so do it by hand.
      setStatus("reconnecting", "reconnecting…");
      log("connection failed; retrying in 2 s");
      const failed = source;
      setTimeout(() => source === failed && connect(), 2000);
    } else {
      setStatus("reconnecting", "reconnecting…");
      log("connection lost; the browser reconnects");
    }
  });
}

function seen(event) {
  lastEventId = event.lastEventId;
  const { n } = JSON.parse(event.data);
  if (n <= replayUpTo) {
    replayed++;
    setStatus("open", `open · replayed ${replayed} missed event${replayed === 1 ? "" : "s"}`);
  }
}

async function refetch() {
  const state = await (await fetch(`/api/state?user=${user}`)).json();
  shown.clear();
  $("feed").replaceChildren();
  for (const notification of state.notifications) addNotification(notification);
  if (state.notifications.length === 0) {
    const empty = document.createElement("li");
    empty.className = "empty";
    empty.textContent = "Nothing yet. Send one below.";
    $("feed").append(empty);
  }
  if (state.tick) showTick(state.tick);
  if (state.task) showProgress(state.task);
  else {
    $("bar").style.width = "0";
    $("task").textContent = "No task yet.";
  }
}

function addNotification({ n, from, text, at }) {
  if (shown.has(n)) return;
  shown.add(n);
  $("feed").querySelector(".empty")?.remove();
  const item = document.createElement("li");
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = `from ${from} · ${new Date(at).toLocaleTimeString()}`;
  item.append(text, meta);
  $("feed").prepend(item);
  while ($("feed").children.length > 20) $("feed").lastChild.remove();
}

function showTick({ symbol, price, change }) {
  $("symbol").textContent = symbol;
  $("price").textContent = price.toFixed(2);
  $("change").textContent = (change >= 0 ? "▲ " : "▼ ") + Math.abs(change).toFixed(2);
  $("change").className = change >= 0 ? "up" : "down";
  const bar = document.createElement("span");
  bar.dataset.price = price;
  $("spark").append(bar);
  while ($("spark").children.length > 40) $("spark").firstChild.remove();
  const prices = [...$("spark").children].map((el) => Number(el.dataset.price));
  const low = Math.min(...prices) - 0.5;
  const high = Math.max(...prices) + 0.5;
  for (const el of $("spark").children) {
    el.style.height = `${((Number(el.dataset.price) - low) / (high - low)) * 100}%`;
  }
}

function showProgress({ task, percent }) {
  $("bar").style.width = `${percent}%`;
  $("task").textContent = percent < 100 ? `Task ${task}: ${percent}%` : `Task ${task}: done`;
}

function post(path, body) {
  return fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

$("user").value = user;
$("to").value = user;
$("who").textContent = user;
$("user").addEventListener("change", () => {
  user = $("user").value;
  $("who").textContent = user;
  $("to").value = user;
  history.replaceState(null, "", `?user=${user}`);
  lastEventId = "";
  connect();
});
$("notify").addEventListener("submit", async (event) => {
  event.preventDefault();
  await post("/api/notify", { user: $("to").value, from: user, text: $("text").value });
  $("text").value = "";
});
$("run").addEventListener("submit", (event) => {
  event.preventDefault();
  post("/api/task", { user });
});
$("drop").addEventListener("submit", (event) => {
  event.preventDefault();
  post("/api/drop", { client });
});

connect();
