// The emulator's chat window. Everything it shows comes from the emulator's event feed
// (/_emulator/feed, Server-Sent Events); everything it does goes through the control API, so
// what works here works for a test or a bot written in another language.
"use strict";

const CHATBOT_TOPIC = "/v1.0/im/bot/messages/get";
const BOT = { id: "$:LWCP_v1:$bot", nick: "Bot" };
const USERS = [
  { id: "user-1", nick: "Alice" },
  { id: "user-2", nick: "Bob" },
  { id: "user-3", nick: "Carol" },
];
const state = {
  convs: [], current: null, conns: {}, opened: 0, stalled: false, redelivery: false,
  cards: {}, sentEls: {}, history: [], callbackHistory: {},
};

// -- small helpers ------------------------------------------------------------------------
const $ = (sel) => document.querySelector(sel);
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}
const nick = (id) => (USERS.find((u) => u.id === id) || { nick: id }).nick;
const time = (at) => new Date(at * 1000).toLocaleTimeString();
// A bot's URL is data: only web (and DingTalk) links become clickable in this page.
const safeUrl = (url) => (/^(https?:|dingtalk:|mailto:)/i.test(String(url || "")) ? url : "#");
const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function control(path, body) {
  const response = await fetch(`/_emulator/${path}`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.message || response.statusText);
  return answer;
}

// Markdown as DingTalk shows it: no raw HTML (it is shown as text), and DOMPurify on the
// result for whatever a link or image could still carry. The two libraries load after the
// window is drawn (async scripts); markdown that arrives before them shows as plain text and
// is rendered once they are there.
let renderer = null;
const waiting = [];
function fill(node, text) {
  node.innerHTML = DOMPurify.sanitize(renderer.parse(text));
  for (const a of node.querySelectorAll("a")) a.target = "_blank";
}
function markdown(text) {
  const node = el("div", { class: "bubble md" });
  const source = String(text || "");
  if (renderer) fill(node, source);
  else {
    node.textContent = source;
    waiting.push([node, source]);
  }
  return node;
}
function whenLoaded() {
  if (renderer || !window.marked || !window.DOMPurify) return;
  renderer = new marked.Marked({ gfm: true, breaks: true, renderer: { html: (token) => escapeHtml(token.text) } });
  for (const [node, source] of waiting.splice(0)) fill(node, source);
}
for (const script of document.querySelectorAll("script[async]")) script.addEventListener("load", whenLoaded);
whenLoaded();

// -- conversations --------------------------------------------------------------------------
// A 1:1 chat may be reached under more than one conversation id (a message pushed by a test
// with its own id); ``aliases`` keeps them all.
const findConv = (id) => state.convs.find((c) => c.id === id || (c.aliases || []).includes(id));
function addConv(conv) {
  const found = findConv(conv.id);
  if (found) return found;
  state.convs.push(conv);
  conv.el = el("div", { class: "conv-messages" });
  renderConvs();
  return conv;
}
function oneToOne(userId) {
  return state.convs.find((c) => c.type === "1" && c.user === userId)
    || addConv({ id: `cid-chat-${userId}`, type: "1", user: userId, title: nick(userId), members: [userId] });
}
function renderConvs() {
  const list = $("#convs");
  list.replaceChildren(...state.convs.map((c) => el("li", {
    class: c === state.current ? "on" : "", "data-conv": c.id, onclick: () => select(c),
  }, el("div", { class: c.type === "2" ? "avatar group" : "avatar" }, c.title.slice(0, 1).toUpperCase()),
  el("div", {}, el("div", {}, c.title), el("div", { class: "last" }, c.last || "")))));
}
function select(conv) {
  state.current = conv;
  $("#chat-title").textContent = conv.title;
  $("#chat-sub").textContent = conv.type === "2"
    ? `group · ${conv.members.map(nick).join(", ")} and the bot` : "1:1 chat with the bot";
  $("#save-transcript").href = `/_emulator/transcript?conversation_id=${encodeURIComponent(conv.id)}`;
  $("#messages").replaceChildren(conv.el);
  $("#sender").replaceChildren(...conv.members.map((id) => el("option", { value: id }, nick(id))));
  $("#mentions").replaceChildren(...(conv.type === "2" ? [BOT, ...conv.members.map((id) => ({ id, nick: nick(id) }))] : [])
    .map((u) => el("button", { type: "button", onclick: () => mention(u) }, `@${u.nick}`)));
  renderConvs();
  markRead(conv);
  scroll();
}
function mention(user) {
  const input = $("#input");
  input.value += `@${user.nick} `;
  input.focus();
}
function scroll() {
  const box = $("#messages");
  box.scrollTop = box.scrollHeight;
}
function append(conv, node, preview) {
  conv.el.append(node);
  if (preview) conv.last = preview;
  renderConvs();
  if (conv === state.current) scroll();
}
function message(who, mine, ...content) {
  const avatar = el("div", { class: who === BOT.nick ? "avatar bot" : "avatar" }, who.slice(0, 1).toUpperCase());
  return el("div", { class: mine ? "msg mine" : "msg bot" }, avatar,
    el("div", { class: "body" }, el("div", { class: "who" }, who), ...content));
}

// -- sending --------------------------------------------------------------------------------
async function fileContent(msgtype) {
  const file = $("#file").files[0];
  if (!file) throw new Error("choose a file first");
  const data = await new Promise((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.readAsDataURL(file);
  });
  const { downloadCode } = await control("upload", { filename: file.name, contentType: file.type, data });
  if (msgtype === "picture") return { downloadCode, pictureDownloadCode: downloadCode };
  return { downloadCode, fileName: file.name, spaceId: "emulator", fileId: downloadCode };
}
async function send(event) {
  if (event) event.preventDefault();
  const conv = state.current;
  const input = $("#input");
  const msgtype = $("#msgtype").value;
  let text = input.value;
  if (!text.trim() && msgtype === "text") return;
  const sender = $("#sender").value;
  const body = {
    conversation_type: conv.type, conversation_id: conv.id, sender_staff_id: sender,
    sender_nick: nick(sender), msgtype,
  };
  if (conv.type === "2") {
    // A group robot only hears messages that @-mention it; the mention itself is cut out of
    // the text it gets, the other mentions stay and are listed in atUsers.
    if (!text.includes(`@${BOT.nick}`)) {
      append(conv, message(nick(sender), true, el("div", { class: "bubble" }, text),
        el("div", { class: "note" }, "not sent to the bot: @Bot to talk to it")), text);
      state.history.push(text);
      input.value = "";
      return;
    }
    text = text.split(`@${BOT.nick}`).join("");
    body.conversation_title = conv.title;
    body.at_users = [{ dingtalkId: BOT.id },
      ...conv.members.filter((id) => text.includes(`@${nick(id)}`))];
  }
  try {
    if (msgtype === "richText") {
      body.content = { richText: text.split("\n").map((line) => ({ text: line })) };
    } else if (msgtype === "picture" || msgtype === "file") {
      body.content = await fileContent(msgtype);
    }
    await control("chatbot", { text, ...body });
    state.history.push(input.value);
    input.value = "";
  } catch (error) {
    append(conv, el("div", { class: "note warn" }, `could not send: ${error.message}`));
  }
}

// -- what the bot sends, normalised: webhook replies (msgtype) and OpenAPI sends (msgKey) -----
function fromReply(msgtype, body) {
  const part = body[msgtype] || {};
  switch (msgtype) {
    case "text": return { kind: "text", text: part.content };
    case "markdown": return { kind: "markdown", title: part.title, text: part.text };
    case "link": return { kind: "link", ...part };
    case "actionCard": return {
      kind: "actionCard", title: part.title, text: part.text, vertical: part.btnOrientation !== "1",
      buttons: part.singleTitle ? [{ title: part.singleTitle, url: part.singleURL }]
        : (part.btns || []).map((b) => ({ title: b.title, url: b.actionURL })),
    };
    case "feedCard": return { kind: "feedCard", links: part.links || [] };
    case "action_card": return { // work notifications spell it their own way
      kind: "actionCard", title: part.title, text: part.markdown, vertical: part.btn_orientation !== "1",
      buttons: part.single_title ? [{ title: part.single_title, url: part.single_url }]
        : (part.btn_json_list || []).map((b) => ({ title: b.title, url: b.action_url })),
    };
    case "image": return { kind: "file", name: "image", type: part.media_id };
    case "file": return { kind: "file", name: "file", type: part.media_id };
    case "oa": return { kind: "markdown", text: `**${(part.body || {}).title || ""}**\n\n${(part.body || {}).content || ""}` };
    default: return { kind: "raw", text: JSON.stringify(body, null, 2) };
  }
}
function fromOpenApi(key, p) {
  if (key === "sampleText") return { kind: "text", text: p.content };
  if (key === "sampleMarkdown") return { kind: "markdown", title: p.title, text: p.text };
  if (key === "sampleImageMsg") {
    return /^https?:/i.test(p.photoURL) ? { kind: "image", url: p.photoURL } : { kind: "file", name: "image", type: p.photoURL };
  }
  if (key === "sampleLink") return { kind: "link", ...p };
  if (key === "sampleFile") return { kind: "file", name: p.fileName, type: p.fileType };
  if (key === "sampleAudio" || key === "sampleVideo") return { kind: "file", name: key.slice(6), type: p.duration + " s" };
  if (key.startsWith("sampleActionCard")) {
    const buttons = p.singleTitle ? [{ title: p.singleTitle, url: p.singleURL }] : [];
    for (let i = 1; i <= 5; i++) {
      if (p[`actionTitle${i}`]) buttons.push({ title: p[`actionTitle${i}`], url: p[`actionURL${i}`] });
      if (p[`buttonTitle${i}`]) buttons.push({ title: p[`buttonTitle${i}`], url: p[`buttonUrl${i}`] });
    }
    return { kind: "actionCard", title: p.title, text: p.text, buttons, vertical: key !== "sampleActionCard6" };
  }
  return { kind: "raw", text: JSON.stringify(p, null, 2) };
}
function draw(view) {
  switch (view.kind) {
    case "text": return el("div", { class: "bubble" }, view.text);
    case "markdown": return markdown(view.text);
    case "image": return el("div", { class: "bubble" }, el("img", { src: safeUrl(view.url), alt: "image" }));
    case "file": return el("div", { class: "bubble file" }, el("span", { class: "icon" }, "📄"),
      el("div", {}, el("div", {}, view.name), el("div", { class: "note" }, view.type)));
    case "link": return el("a", { class: "bubble link", href: safeUrl(view.messageUrl), target: "_blank" },
      view.picUrl ? el("img", { src: safeUrl(view.picUrl), alt: "" }) : null,
      el("div", {}, el("b", {}, view.title), el("div", { class: "note" }, view.text)));
    case "actionCard": {
      const card = el("div", { class: "card" }, el("div", { class: "title" }, view.title));
      const text = markdown(view.text);
      text.className = "text md";
      card.append(text, el("div", { class: view.vertical ? "btns vertical" : "btns" },
        view.buttons.map((b) => el("a", { href: safeUrl(b.url), target: "_blank" }, b.title))));
      return card;
    }
    case "feedCard": return el("div", { class: "card feed" }, view.links.map((l) =>
      el("a", { href: safeUrl(l.messageURL), target: "_blank" }, el("span", {}, l.title),
        l.picURL ? el("img", { src: safeUrl(l.picURL), alt: "" }) : null)));
    default: return el("pre", { class: "bubble" }, view.text);
  }
}
const preview = (view) => view.title || view.text || view.kind;

// -- interactive and AI cards ---------------------------------------------------------------
function cardConv(spaces) {
  for (const space of spaces) {
    const [kind, id] = space.split(/\.(.*)/s);
    if (kind === "IM_GROUP") return findConv(id) || addConv({
      id, type: "2", title: "Group", members: USERS.map((u) => u.id) });
    if (kind === "IM_ROBOT" || kind === "IM_SINGLE") return oneToOne(id);
  }
  return null;
}
function drawCard(ev) {
  const streaming = ev.status === "streaming";
  const node = el("div", { class: streaming ? "card streaming" : "card", "data-card": ev.outTrackId });
  node.append(el("div", { class: "meta" }, `interactive card · ${ev.templateId}`));
  // A streamed variable is also in the card data once finalised: show it once, as streamed.
  const data = Object.entries(ev.cardData).filter(([k]) => !(k in ev.streams));
  if (data.length) {
    node.append(el("dl", { class: "fields" }, data.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
  }
  for (const [key, text] of Object.entries(ev.streams)) {
    const body = markdown(text);
    body.className = "stream md";
    body.setAttribute("data-stream", key);
    node.append(body);
  }
  if (Object.keys(ev.streams).length || ev.status !== "created") {
    const label = { streaming: "generating…", finished: "✓ finished", failed: "✗ failed" }[ev.status] || ev.status;
    node.append(el("div", { class: "status" }, label));
  }
  const history = state.callbackHistory[ev.templateId] || [];
  if (history.length) {
    node.append(el("div", { class: "chips" }, history.map((params) =>
      el("button", { type: "button", onclick: () => click(ev, params) }, Object.entries(params).map(([k, v]) => `${k}=${v}`).join(" ")))));
  }
  if (Object.keys(ev.streams).length) return node; // an AI card: nothing to click
  const input = el("input", { value: history[0] ? JSON.stringify(history[0]) : '{"action": "click"}',
    title: "Callback params the button would send (JSON)", "aria-label": "callback params" });
  node.append(el("div", { class: "callback" }, input, el("button", {
    type: "button", class: "primary", onclick: () => {
      let params;
      try { params = JSON.parse(input.value); } catch (error) { input.setCustomValidity("not JSON"); input.reportValidity(); return; }
      click(ev, params);
    },
  }, "Click")));
  return node;
}
async function click(ev, params) {
  const key = JSON.stringify(params);
  const history = (state.callbackHistory[ev.templateId] || []).filter((p) => JSON.stringify(p) !== key);
  state.callbackHistory[ev.templateId] = [params, ...history].slice(0, 4);
  const conv = cardConv(ev.spaces);
  const user = $("#sender").value || (conv && conv.members[0]) || "user-1";
  await control("card_callback", { out_track_id: ev.outTrackId, params, user_id: user });
}
function onCard(ev) {
  const conv = cardConv(ev.spaces);
  if (!conv) return;
  const fresh = drawCard(ev);
  const old = state.cards[ev.outTrackId];
  state.cards[ev.outTrackId] = fresh;
  if (!old) append(conv, message(BOT.nick, false, fresh), "[card]");
  else {
    old.replaceWith(fresh);
    if (conv === state.current) scroll(); // a streamed card grows
  }
}

// -- the feed -------------------------------------------------------------------------------
function userMessage(ev) {
  const d = ev.data || {};
  const conv = d.conversationType === "2"
    ? addConv({ id: d.conversationId, type: "2", title: d.conversationTitle || "Group", members: USERS.map((u) => u.id) })
    : findConv(d.conversationId) || (() => {
      const c = oneToOne(d.senderStaffId);
      c.aliases = [...(c.aliases || []), d.conversationId];
      return c;
    })();
  const content = d.content || {};
  let bubble;
  if (d.msgtype === "text") bubble = el("div", { class: "bubble" }, (d.text || {}).content || "");
  else if (d.msgtype === "richText") bubble = el("div", { class: "bubble" }, (content.richText || []).map((i) => i.text || "[picture]").join("\n"));
  else if (d.msgtype === "picture") bubble = el("div", { class: "bubble" }, `🖼 picture · download code ${content.downloadCode}`);
  else if (d.msgtype === "file") bubble = el("div", { class: "bubble file" }, el("span", { class: "icon" }, "📄"), content.fileName || "file");
  else bubble = el("pre", { class: "bubble" }, JSON.stringify(content, null, 2));
  const ack = el("div", { class: "note", "data-ack": ev.messageId }, "sent · waiting for the ack");
  append(conv, message(d.senderNick || d.senderStaffId, true, bubble, ack), bubble.textContent);
}
function botSent(ev) {
  const conv = ev.openConversationId
    ? findConv(ev.openConversationId) || addConv({ id: ev.openConversationId, type: "2", title: "Group", members: USERS.map((u) => u.id) })
    : oneToOne(ev.userIds[0]);
  const view = fromOpenApi(ev.msgKey, ev.msgParam);
  const content = ev.recalled ? el("div", { class: "bubble" }, "The bot recalled a message") : draw(view);
  const read = el("div", { class: "note" }, ev.readBy.length ? `read by ${ev.readBy.map(nick).join(", ")}` : "unread");
  const node = message(BOT.nick, false, content, read);
  if (ev.recalled) node.classList.add("recalled");
  node.dataset.pqk = ev.processQueryKey;
  node.dataset.users = (ev.userIds.length ? ev.userIds : conv.members).join(",");
  const old = state.sentEls[ev.index];
  state.sentEls[ev.index] = node;
  if (old) old.replaceWith(node);
  else append(conv, node, preview(view));
  if (conv === state.current && !ev.readBy.length) markRead(conv);
}
function markRead(conv) {
  for (const node of conv.el.querySelectorAll("[data-pqk]")) {
    if (node.querySelector(".note").textContent === "unread") {
      control("read", { processQueryKey: node.dataset.pqk, userIds: node.dataset.users.split(",") }).catch(() => {});
    }
  }
}
function inspect(kind, summary, detail, bad) {
  const item = el("li", { class: bad ? `${kind} bad` : kind }, el("span", { class: "k" }, kind), " ", summary);
  item.addEventListener("click", (event) => {
    if (event.target.tagName === "PRE") return;
    const pre = item.querySelector("pre");
    if (pre) pre.remove();
    else item.append(el("pre", {}, JSON.stringify(detail, null, 2)));
  });
  const list = $("#inspector");
  const atBottom = list.parentElement.scrollTop + list.parentElement.clientHeight >= list.parentElement.scrollHeight - 4;
  list.append(item);
  if (atBottom) list.parentElement.scrollTop = list.parentElement.scrollHeight;
}
function showConnection() {
  const conns = Object.values(state.conns);
  const live = conns.filter((c) => c.alive && !c.draining);
  const node = $("#conn");
  const reconnects = Math.max(0, state.opened - 1);
  if (!live.length) {
    node.className = "conn down";
    node.textContent = state.opened ? "● disconnected · waiting for the bot to reconnect" : "● waiting for the bot…";
  } else if (live.every((c) => c.stalled)) {
    node.className = "conn stalled";
    node.textContent = "● stalled";
  } else {
    node.className = "conn up";
    node.textContent = `● connected (${live.length}) · reconnects: ${reconnects}`;
  }
}

const handlers = {
  connection(ev) {
    if (!state.conns[ev.id]) state.opened += 1;
    state.conns[ev.id] = ev;
    showConnection();
    const what = !ev.alive ? `closed (${ev.closeCode})` : ev.stalled ? "stalled" : ev.draining ? "draining" : "open";
    inspect("connection", `${ev.id} ${what}`, ev, !ev.alive);
  },
  push(ev) {
    inspect("push", `${ev.type} ${ev.topic} ${ev.messageId}`, ev.frame);
    if (ev.topic === CHATBOT_TOPIC && ev.data) userMessage(ev);
  },
  ack(ev) {
    const latency = ev.latencyMs === null ? "" : ` in ${ev.latencyMs} ms`;
    inspect("ack", `${ev.code} ${ev.messageId}${latency}`, ev.frame, ev.code !== 200);
    const note = document.querySelector(`[data-ack="${CSS.escape(ev.messageId || "")}"]`);
    if (note) {
      note.textContent = ev.code === 200 ? `✓ acked${latency}` : `✗ ack ${ev.code}`;
      if (ev.code !== 200) note.classList.add("warn");
    }
  },
  reply(ev) {
    inspect("reply", `${ev.msgtype} → ${ev.conversationId}`, ev.body);
    const conv = findConv(ev.conversationId);
    if (!conv) return;
    const view = fromReply(ev.msgtype, ev.body);
    append(conv, message(BOT.nick, false, draw(view)), preview(view));
  },
  sent(ev) { botSent(ev); },
  card(ev) { onCard(ev); },
  api(ev) {
    inspect("api", `${ev.method} ${ev.path} → ${ev.status}`, { query: ev.query, request: ev.request, status: ev.status, response: ev.response }, ev.status >= 400);
  },
  violation(ev) { inspect("violation", ev.text, ev, true); },
  webhook(ev) {
    const view = fromReply(ev.msgtype, ev.body);
    $("#webhooks").append(el("li", {}, el("div", { class: "note" }, `${time(ev.at)} · ${ev.msgtype}`), draw(view)));
  },
  notice(ev) {
    const msg = ev.msg || {};
    const type = msg.msgtype || "?";
    const view = fromReply(type, msg);
    $("#notices").append(el("li", {}, el("div", { class: "note" },
      `${time(ev.at)} · to ${ev.toAll ? "everyone" : ev.userIds.map(nick).join(", ")} · task ${ev.taskId}`), draw(view)));
  },
};

function connectFeed() {
  const source = new EventSource("/_emulator/feed");
  source.onmessage = (message) => {
    const ev = JSON.parse(message.data);
    const handler = handlers[ev.kind];
    if (handler) handler(ev);
  };
}

// -- wiring ---------------------------------------------------------------------------------
function wire() {
  $("#compose").addEventListener("submit", send);
  $("#input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) send(event);
    else if (event.key === "ArrowUp" && !event.target.value && state.history.length) {
      event.preventDefault();
      event.target.value = state.history[state.history.length - 1];
    }
  });
  $("#msgtype").addEventListener("change", (event) => {
    $("#file").hidden = !["picture", "file"].includes(event.target.value);
  });
  for (const button of document.querySelectorAll(".tabs button")) {
    button.addEventListener("click", () => {
      for (const other of document.querySelectorAll(".tabs button, .tab")) other.classList.remove("on");
      button.classList.add("on");
      $(`#tab-${button.dataset.tab}`).classList.add("on");
    });
  }
  $("#show-api").addEventListener("change", (event) => $("#inspector").classList.toggle("no-api", !event.target.checked));
  for (const button of document.querySelectorAll("[data-fault]")) {
    button.addEventListener("click", () => fault(button.dataset.fault, button).catch((error) =>
      inspect("violation", `${button.dataset.fault}: ${error.message}`, {}, true)));
  }
  $("#event-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    await control("event", { event_type: form.type.value, data: JSON.parse(form.data.value) });
  });
  $("#new-chat").addEventListener("click", () => { $("#new-conv").hidden = !$("#new-conv").hidden; });
  $("#new-members").replaceChildren(...USERS.map((u) => el("label", {},
    el("input", { type: "checkbox", name: "member", value: u.id }), ` ${u.nick} `)));
  $("#new-conv").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const members = [...form.querySelectorAll("[name=member]:checked")].map((i) => i.value);
    if (!members.length) return;
    const conv = form.type.value === "1" ? oneToOne(members[0]) : addConv({
      id: `cid-group-${Date.now().toString(36)}`, type: "2", members,
      title: form.title.value || members.map(nick).join(", "),
    });
    form.hidden = true;
    select(conv);
  });
}
async function fault(name, button) {
  if (name === "stall") {
    await control(state.stalled ? "resume" : "stall");
    state.stalled = !state.stalled;
    button.textContent = state.stalled ? "Resume" : "Stall";
  } else if (name === "redelivery") {
    state.redelivery = !state.redelivery;
    const after = state.redelivery ? 5 : null;
    await control("redelivery", { events: after, callbacks: after });
    button.textContent = `Redelivery: ${state.redelivery ? "on" : "off"}`;
  } else if (name === "disconnect") {
    await control("disconnect", { close_after: 2 });
  } else {
    await control(name);
  }
}

addEventListener("DOMContentLoaded", () => {
  wire();
  select(oneToOne("user-1"));
  addConv({ id: "cid-group-team", type: "2", title: "Team", members: USERS.map((u) => u.id) });
  connectFeed();
  performance.mark("chat-ready"); // read by benchmarks/chat_page.py
});
