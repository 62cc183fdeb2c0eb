// The connections console: the `@connections` management API, from the browser.
// GET lists a page of ids and describes each; POST sends; DELETE disconnects (close 1000).

import { canSign, sign } from "./sigv4.js";

const $ = (id) => document.getElementById(id);
// "/dev/@console" -> "/dev/@connections"; "/@console" -> "/@connections" (no stage).
const api = `${location.pathname.replace(/\/@console\/?$/, "")}/@connections`;
const rows = new Map(); // connectionId -> its <tr>
let timer = null;
// A page at a time: every refresh describes each listed connection, one GET apiece.
const PAGE = 50;
const tokens = [""]; // tokens[k] starts page k ("" = the first)
let pageIndex = 0;

// A gateway started with --access-keys answers unsigned calls with these (403): the
// console then asks for a key and signs every call with it (kept for this tab only).
const SIGNATURE_REFUSALS = [
  "Missing Authentication Token",
  "The security token included in the request is invalid.",
  "The request signature we calculated does not match",
];
const KEY = "wsgate-console-key";

async function call(method, path = "", body = undefined) {
  const headers = {};
  const key = JSON.parse(sessionStorage.getItem(KEY) ?? "null");
  if (key && canSign()) {
    Object.assign(headers, await sign({ method, url: api + path, body: body ?? "", ...key }));
  }
  const response = await fetch(api + path, { method, body, headers, cache: "no-store" });
  if (response.status === 403) {
    const message = (await response.clone().json().catch(() => ({}))).message ?? "";
    if (SIGNATURE_REFUSALS.some((refusal) => message.startsWith(refusal))) askForKey(message, key);
  }
  return response;
}

function askForKey(message, key) {
  $("keys").hidden = false;
  $("keys-why").textContent = canSign()
    ? key ? `That key was refused: ${message}` : "This gateway takes signed calls only (--access-keys)."
    : "This gateway takes signed calls only, and this page cannot sign here: browsers sign " +
      "only on https, 127.0.0.1 or localhost.";
}

$("keys").addEventListener("submit", (event) => {
  event.preventDefault();
  const keyId = $("key-id").value.trim();
  const secret = $("key-secret").value;
  sessionStorage.setItem(KEY, JSON.stringify({ keyId, secret }));
  $("key-secret").value = "";
  $("keys").hidden = true;
  refresh();
});

async function refresh() {
  let ids, total, next;
  try {
    const token = tokens[pageIndex];
    const query = `?limit=${PAGE}` + (token ? `&nextToken=${encodeURIComponent(token)}` : "");
    const response = await call("GET", query);
    if (!response.ok) throw new Error(await explain(response));
    ({ connections: ids, count: total, nextToken: next } = await response.json());
  } catch (error) {
    $("error").textContent = `Cannot list connections: ${error.message}`;
    return;
  }
  const described = await Promise.all(ids.map(describe));
  const live = described.filter(Boolean);
  for (const [id, row] of rows) {
    if (!live.some((c) => c.id === id)) {
      row.remove();
      rows.delete(id);
    }
  }
  for (const connection of live) render(connection);
  $("count").textContent = `${total} open`;
  tokens.length = pageIndex + 1;
  if (next) tokens.push(next);
  const first = pageIndex * PAGE;
  $("page").textContent = total > PAGE ? `${first + 1}-${first + ids.length} of ${total}` : "";
  $("previous").hidden = pageIndex === 0;
  $("next").hidden = !next;
  $("empty").hidden = live.length > 0;
  $("error").textContent = "";
  $("updated").textContent = `updated ${new Date().toTimeString().slice(0, 8)}`;
}

async function describe(id) {
  const response = await call("GET", `/${encodeURIComponent(id)}`);
  if (response.status === 410) return null; // gone since the list was read
  if (!response.ok) return { id, error: await explain(response) };
  return { id, ...(await response.json()) };
}

async function explain(response) {
  try {
    const body = await response.json();
    return `${response.status}: ${body.message ?? JSON.stringify(body)}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

function render(connection) {
  let row = rows.get(connection.id);
  if (!row) {
    row = newRow(connection.id);
    rows.set(connection.id, row);
    $("connections").append(row);
  }
  const cells = row.cells;
  if (connection.error) {
    cells[1].textContent = connection.error;
    return;
  }
  cells[1].textContent = connection.identity?.sourceIp ?? "";
  cells[1].title = connection.identity?.userAgent ?? "";
  setTime(cells[2], connection.connectedAt);
  setTime(cells[3], connection.lastActiveAt);
  const topics = connection.topics ?? [];
  cells[4].replaceChildren(
    ...topics.map((topic) => {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = topic;
      return tag;
    }),
  );
  if (!topics.length) cells[4].innerHTML = '<span class="hint">none</span>';
}

function newRow(id) {
  const row = document.createElement("tr");
  row.dataset.id = id;
  for (let i = 0; i < 6; i++) row.append(document.createElement("td"));
  const idCell = row.cells[0];
  const idText = document.createElement("span");
  idText.className = "id";
  idText.textContent = id;
  idCell.append(idText);

  const actions = document.createElement("div");
  actions.className = "actions";
  row.cells[5].append(actions);
  const input = document.createElement("input");
  input.placeholder = "message";
  input.className = "send-text";
  const sendButton = document.createElement("button");
  sendButton.className = "small send";
  sendButton.textContent = "Send";
  const closeButton = document.createElement("button");
  closeButton.className = "danger small disconnect";
  closeButton.textContent = "Disconnect";
  const result = document.createElement("span");
  result.className = "status-line result";
  sendButton.addEventListener("click", async () => {
    const response = await call("POST", `/${encodeURIComponent(id)}`, input.value);
    result.textContent = response.ok ? "sent" : await explain(response);
    if (response.ok) input.value = "";
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") sendButton.click();
  });
  closeButton.addEventListener("click", async () => {
    const response = await call("DELETE", `/${encodeURIComponent(id)}`);
    result.textContent = response.ok ? "disconnected" : await explain(response);
    refresh();
  });
  actions.append(input, sendButton, closeButton, result);
  return row;
}

function setTime(cell, iso) {
  if (!iso) return;
  const moment = new Date(iso);
  const seconds = Math.max(0, Math.round((Date.now() - moment.getTime()) / 1000));
  const ago = seconds < 60 ? `${seconds} s ago` : seconds < 3600 ? `${Math.floor(seconds / 60)} min ago` : `${Math.floor(seconds / 3600)} h ago`;
  cell.textContent = `${moment.toTimeString().slice(0, 8)} · ${ago}`;
  cell.title = iso;
}

function schedule() {
  clearInterval(timer);
  timer = $("auto").checked ? setInterval(refresh, 2000) : null;
}

$("api").textContent = api;
$("refresh").addEventListener("click", refresh);
$("previous").addEventListener("click", () => {
  pageIndex = Math.max(0, pageIndex - 1);
  refresh();
});
$("next").addEventListener("click", () => {
  if (pageIndex + 1 < tokens.length) pageIndex += 1;
  refresh();
});
$("auto").addEventListener("change", schedule);
schedule();
refresh();
