// The answer panel: a generated answer that survives a reload. The tab keeps the answer's id,
// the text shown so far and the id of its last chunk in sessionStorage, written together in one
// step per chunk, so that a reload re-attaches exactly after what it shows.

const $ = (id) => document.getElementById(id);
const KEY = "flume-demo-answer";

/** `{ id, text, lastEventId, state }` of this tab's answer, or null. */
let answer = JSON.parse(sessionStorage.getItem(KEY) ?? "null");
let source;

function save() {
  sessionStorage.setItem(KEY, JSON.stringify(answer));
}

function render() {
  $("answer").textContent = answer?.text ?? "";
  $("answer").dataset.words = answer?.text ? answer.text.split(" ").length : 0;
  $("answer").scrollTop = $("answer").scrollHeight;
  const state = answer?.state ?? "idle";
  $("answer-state").dataset.state = state;
  $("answer-state").textContent = {
    idle: "No answer yet.",
    streaming: "streaming…",
    done: "done",
    stopped: "stopped",
    gone: "gone: the server no longer has this answer",
  }[state] ?? state;
  $("stop").disabled = state !== "streaming";
  $("ask").querySelector("button").disabled = state === "streaming";
}

function note(text) {
  $("answer-note").textContent = text;
}

function attach() {
  source?.close();
  const query = new URLSearchParams({ id: answer.id });
  if (answer.lastEventId) query.set("lastEventId", answer.lastEventId);
  const es = source = new EventSource(`/api/answer/stream?${query}`);
  es.addEventListener("chunk", (event) => {
    answer.text += JSON.parse(event.data).text;
    answer.lastEventId = event.lastEventId;
    save();
    render();
  });
  es.addEventListener("stream-reset", () => {
    // The server does not know our position (not this answer's id): it sends everything again.
    answer.text = "";
    answer.lastEventId = "";
    save();
    note("The server did not know where this tab was: the answer restarts from its beginning.");
    render();
  });
  es.addEventListener("end", (event) => {
    es.close();
    const { reason } = JSON.parse(event.data);
    answer.state = reason === "complete" ? "done" : reason === "cancelled" ? "stopped" : reason;
    answer.lastEventId = event.lastEventId;
    save();
    render();
  });
  es.addEventListener("error", async () => {
    if (source !== es || es.readyState !== EventSource.CLOSED) return; // the browser retries
    // A fatal answer: 404 when the answer expired or the server restarted, else try again.
    const status = await fetch(`/api/answer/status?id=${encodeURIComponent(answer.id)}`)
      .then((response) => response.status, () => 0);
    if (source !== es) return;
    if (status === 404) {
      answer.state = "gone";
      save();
      render();
    } else {
      setTimeout(() => source === es && attach(), 2_000);
    }
  });
}

$("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch("/api/answer", { method: "POST", body: "{}" });
  if (!response.ok) {
    note(`Could not start an answer: ${(await response.json()).error}`);
    return;
  }
  const { id } = await response.json();
  answer = { id, text: "", lastEventId: "", state: "streaming" };
  save();
  note("");
  render();
  attach();
});

$("stop").addEventListener("click", async () => {
  await fetch("/api/answer/stop", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ id: answer.id }),
  });
  // The end marker (reason "cancelled") arrives on the stream and shows "stopped".
});

render();
if (answer?.state === "streaming") {
  note(
    answer.lastEventId
      ? `Reloaded: re-attached after chunk ${answer.lastEventId} (Last-Event-ID).`
      : "Reloaded: re-attached from the start.",
  );
  $("answer").dataset.resumedAt = answer.text ? answer.text.split(" ").length : 0;
  attach();
}
