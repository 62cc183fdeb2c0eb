// The demo page: a chat client for the demo app (wsgate/demo.py), speaking its actions
// over one WebSocket. No framework: the DOM, and one object with the page's state.

const $ = (id) => document.getElementById(id);
const stage = document.body.dataset.stage;
const socketUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/${stage}`;

const state = {
  socket: null,
  myId: null,
  myName: localStorage.getItem("wsgate-demo-name") || "",
  topics: [],          // joined, in the order joined
  selected: null,      // the topic the composer and the Online list are about
  members: new Map(),  // topic -> Map(connectionId -> name or null)
  names: new Map(),    // connectionId -> name, learnt from answers and notices
  mode: "topic",       // or "direct"
};

// -- the socket ---------------------------------------------------------------------

function connect() {
  state.myId = null;
  $("my-id").textContent = "…";
  setStatus("connecting", "");
  $("banner").classList.remove("shown");
  const socket = new WebSocket(socketUrl);
  state.socket = socket;
  socket.addEventListener("open", () => {
    setStatus("connected", "open");
    logFrame("event", `open ${socketUrl}`);
    send({ action: "whoAmI" });
    if (state.myName) send({ action: "setName", name: state.myName });
    for (const topic of state.topics) join(topic, { again: true });
  });
  socket.addEventListener("message", (event) => {
    logFrame("in", event.data);
    receive(event.data);
  });
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket) return;
    const why = `${event.code}${event.reason ? " " + event.reason : ""}`;
    setStatus(`closed (${why})`, "closed");
    logFrame("event", `close ${why}`);
    $("banner-text").textContent = `Disconnected: the connection was closed with ${why}.`;
    $("banner").classList.add("shown");
    state.members.clear();
    renderMembers();
  });
}

function send(message) {
  const text = JSON.stringify(message);
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
    notice("Not connected: reconnect first.", true);
    return false;
  }
  state.socket.send(text);
  logFrame("out", text);
  return true;
}

function receive(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    if (state.myId === null) return learnId(text); // whoAmI answers the bare id
    return addMessage({ text, meta: "received" });
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return addMessage({ text: JSON.stringify(value), meta: "received" });
  }
  if (typeof value.error === "string") return notice(value.error, true);
  if (typeof value.presence === "string") return presence(value);
  if (typeof value.topic === "string" && Array.isArray(value.members)) return membersOf(value);
  if (typeof value.topic === "string" && "data" in value) return topicMessage(value);
  if (typeof value.name === "string" && Object.keys(value).length === 1) {
    return notice(`You are now “${value.name}”.`);
  }
  if (typeof value.text === "string" && typeof value.from === "string") {
    return addMessage({ text: value.text, meta: `direct from ${label(value.from, value.name)}`, direct: true });
  }
  addMessage({ text, meta: "received" });
}

function learnId(id) {
  state.myId = id;
  $("my-id").textContent = id;
  document.title = `wsgate demo · ${id}`;
}

// -- what arrives -------------------------------------------------------------------

function presence({ presence: change, topic, connectionId, name }) {
  if (name) state.names.set(connectionId, name);
  const members = state.members.get(topic);
  if (members) {
    if (change === "join") members.set(connectionId, name ?? null);
    else members.delete(connectionId);
    if (topic === state.selected) renderMembers();
  }
  notice(`${label(connectionId, name)} ${change === "join" ? "joined" : "left"} #${topic}`);
}

function membersOf({ topic, members }) {
  const map = new Map();
  for (const member of members) {
    map.set(member.connectionId, member.name ?? null);
    if (member.name) state.names.set(member.connectionId, member.name);
  }
  state.members.set(topic, map);
  if (topic === state.selected) renderMembers();
}

function topicMessage({ topic, data }) {
  const isChat = data && typeof data === "object" && typeof data.text === "string";
  const text = isChat ? data.text : typeof data === "string" ? data : JSON.stringify(data);
  const from = isChat ? label(data.from, data.name) : "someone";
  addMessage({ text, meta: `#${topic} · ${from}` });
}

// -- what the user does -------------------------------------------------------------

function join(topic, { again = false } = {}) {
  if (!topic) return;
  if (!send({ action: "subscribe", topic, announce: true })) return;
  // The answer is the topic's members; presence notices keep the list current.
  if (!state.topics.includes(topic)) state.topics.push(topic);
  if (!again) select(topic);
  renderTopics();
}

function leave(topic) {
  send({ action: "unsubscribe", topic, announce: true });
  state.topics = state.topics.filter((t) => t !== topic);
  state.members.delete(topic);
  if (state.selected === topic) select(state.topics[0] ?? null);
  renderTopics();
}

function select(topic) {
  state.selected = topic;
  if (topic) setMode("topic");
  renderTopics();
  renderMembers();
  $("target-topic").textContent = topic ? `#${topic}` : "join a topic first";
  renderTarget();
}

function setMode(mode) {
  state.mode = mode;
  $("mode-topic").classList.toggle("on", mode === "topic");
  $("mode-direct").classList.toggle("on", mode === "direct");
  $("direct-id").hidden = mode !== "direct";
  $("target-topic").hidden = mode !== "topic";
  if (mode === "direct") $("direct-id").focus();
  renderTarget();
}

function renderTarget() {
  const topic = state.selected;
  $("chat-title").textContent =
    state.mode === "direct" ? "sending a direct message" : topic ? `sending to #${topic}` : "";
}

function sendComposed(event) {
  event.preventDefault();
  const input = $("message-input");
  const text = input.value;
  if (!text.trim()) return;
  const chat = { from: state.myId, name: state.myName || null, text };
  if (state.mode === "direct") {
    const target = $("direct-id").value.trim();
    if (!target) return notice("Type the connection id to message, or click someone in Online.", true);
    if (!send({ action: "sendMessage", connectionId: target, message: chat })) return;
    addMessage({ text, meta: `direct to ${label(target)}`, mine: true, direct: true });
  } else {
    if (!state.selected) return notice("Join a topic first, or switch to Direct.", true);
    if (!send({ action: "publish", topic: state.selected, data: chat })) return;
    addMessage({ text, meta: `#${state.selected} · you`, mine: true });
  }
  input.value = "";
  input.focus();
}

// -- drawing ------------------------------------------------------------------------

function label(connectionId, name) {
  if (connectionId && connectionId === state.myId) return "you";
  const known = name || state.names.get(connectionId);
  return known ? `${known} (${connectionId})` : connectionId || "someone";
}

function setStatus(text, kind) {
  const pill = $("status");
  pill.textContent = text;
  pill.className = `pill ${kind}`;
}

function renderTopics() {
  const list = $("topics");
  list.replaceChildren();
  for (const topic of state.topics) {
    const item = document.createElement("li");
    item.dataset.topic = topic;
    item.classList.toggle("selected", topic === state.selected);
    const name = document.createElement("span");
    name.className = "grow";
    name.textContent = `#${topic}`;
    const button = document.createElement("button");
    button.className = "danger small";
    button.textContent = "Leave";
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      leave(topic);
    });
    item.append(name, button);
    item.addEventListener("click", () => select(topic));
    list.append(item);
  }
  $("topics-empty").hidden = state.topics.length > 0;
}

function renderMembers() {
  const list = $("members");
  list.replaceChildren();
  const members = state.selected ? state.members.get(state.selected) : null;
  $("members-topic").textContent = state.selected ? `#${state.selected}` : "";
  $("members-count").textContent = members ? `${members.size}` : "";
  for (const [id, name] of members ?? []) {
    const item = document.createElement("li");
    item.dataset.id = id;
    const text = document.createElement("span");
    text.className = "grow";
    text.textContent = name || state.names.get(id) || id;
    text.title = id;
    item.append(text);
    if (id === state.myId) {
      const you = document.createElement("span");
      you.className = "you";
      you.textContent = "you";
      item.append(you);
    } else {
      item.addEventListener("click", () => {
        setMode("direct");
        $("direct-id").value = id;
        $("message-input").focus();
      });
    }
    list.append(item);
  }
  $("members-empty").hidden = Boolean(members && members.size);
  $("members-empty").textContent = state.selected ? "Nobody yet." : "Join a topic to see who is in it.";
}

function addMessage({ text, meta, mine = false, direct = false }) {
  const box = document.createElement("div");
  box.className = `message${mine ? " mine" : ""}${direct ? " direct" : ""}`;
  const head = document.createElement("div");
  head.className = "meta";
  head.textContent = meta;
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  box.append(head, body);
  append($("messages"), box);
}

function notice(text, isError = false) {
  const line = document.createElement("div");
  line.className = `notice${isError ? " error" : ""}`;
  line.textContent = text;
  append($("messages"), line);
}

function logFrame(direction, text) {
  const row = document.createElement("div");
  row.className = `frame ${direction}`;
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = new Date().toTimeString().slice(0, 8);
  const arrow = document.createElement("span");
  arrow.className = "dir";
  arrow.textContent = { in: "←", out: "→", event: "•" }[direction];
  arrow.title = { in: "received", out: "sent", event: "connection" }[direction];
  const body = document.createElement("span");
  body.className = "body";
  body.textContent = text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
  row.append(time, arrow, body);
  append($("log"), row, 500);
}

function append(container, child, keep = 1000) {
  const atBottom = container.scrollHeight - container.scrollTop - container.clientHeight < 40;
  container.append(child);
  while (container.childElementCount > keep) container.firstElementChild.remove();
  if (atBottom) container.scrollTop = container.scrollHeight;
}

// -- wiring -------------------------------------------------------------------------

$("name-input").value = state.myName;
$("name-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name-input").value.trim();
  if (!name) return;
  state.myName = name;
  localStorage.setItem("wsgate-demo-name", name);
  send({ action: "setName", name });
});
$("topic-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const topic = $("topic-input").value.trim();
  join(topic);
  $("topic-input").value = "";
});
$("composer").addEventListener("submit", sendComposed);
$("mode-topic").addEventListener("click", () => setMode("topic"));
$("mode-direct").addEventListener("click", () => setMode("direct"));
$("reconnect").addEventListener("click", connect);
$("members-refresh").addEventListener("click", () => {
  if (state.selected) send({ action: "who", topic: state.selected });
});
$("clear-log").addEventListener("click", () => $("log").replaceChildren());
$("socket-url").textContent = socketUrl;

select(null);
renderTopics();
connect();
