// The workbench's review loop: keyboard, current code, text selection -> offsets. No build step.
// Every decision is a POST to /review through htmx; the server answers with the message and the
// parts of the page the decision changed (swapped by id), so the server stays the only renderer.
(function () {
  "use strict";

  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  document.addEventListener("keydown", function (event) {
    if (event.key === "/" && !typing(event)) {
      const box = document.getElementById("q") || document.querySelector("#top-search input");
      if (box) { event.preventDefault(); box.focus(); }
    }
  });

  function typing(event) {
    const el = event.target;
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }

  if (document.body.dataset.page !== "interview") return;

  const transcript = document.getElementById("transcript");
  const flash = document.getElementById("flash");
  const bar = document.getElementById("review-bar");
  const margin = document.getElementById("margin");
  const selectionBar = document.getElementById("selection-bar");
  const noteForm = document.getElementById("note-form");
  const noteText = document.getElementById("note-text");
  const interview = transcript.dataset.interview;
  const studyParam = transcript.dataset.studyParam || "";
  const FORCES = ["push", "pull", "anxiety", "habit"];
  let current = null; // the current code's id
  let after = null; // what becomes current once the answer is in: {advance: id}, {added: true}, {undid: id}, {decided: id}
  const decided = []; // codes decided on this page, latest last: u undoes them in turn

  function items() { return Array.from(document.querySelectorAll("#code-list .code-item")); }
  function itemOf(id) { return items().find(function (el) { return el.dataset.codeId === id; }) || null; }

  function select(id, scroll) {
    document.querySelectorAll(".current").forEach(function (el) { el.classList.remove("current"); });
    const item = id && itemOf(id);
    current = item ? id : null;
    if (!item) { bar.hidden = true; return; }
    item.classList.add("current");
    const anchor = item.dataset.anchor;
    document.querySelectorAll("mark.hl").forEach(function (mark) {
      if (mark.dataset.codes.split(" ").indexOf(anchor) >= 0) mark.classList.add("current");
    });
    const ref = document.getElementById("span-" + anchor);
    if (ref) ref.classList.add("current");
    showBar(item);
    if (scroll) {
      item.scrollIntoView({block: "nearest"});
      if (ref) ref.scrollIntoView({block: "center"});
    }
    history.replaceState(null, "", "#code-" + anchor);
  }

  function showBar(item) {
    bar.hidden = false;
    const label = item.querySelector(".label");
    const status = item.querySelector(".status");
    document.getElementById("current-label").textContent = label ? label.textContent : "";
    document.getElementById("current-status").textContent = status ? status.textContent : "";
    document.getElementById("dimension-choice").hidden = item.dataset.kind !== "job";
    // the bar sticks to the top of the margin: a code scrolled into view stops below it, not under it
    margin.style.setProperty("--bar-height", bar.offsetHeight + "px");
  }

  function move(step) {
    const list = items();
    if (!list.length) return;
    let i = list.findIndex(function (el) { return el.dataset.codeId === current; });
    i = i < 0 ? (step > 0 ? 0 : list.length - 1) : Math.min(Math.max(i + step, 0), list.length - 1);
    select(list[i].dataset.codeId, true);
  }

  function send(fields) {
    const values = Object.assign({interview: interview, csrf_token: csrf}, studyParam ? {study: studyParam} : {}, fields);
    return htmx.ajax("POST", "/review", {source: flash, target: "#flash", swap: "innerHTML", values: values});
  }

  function decide(action, extra) {
    if (!current) { say("choose a code first: j / k, or click one"); return; }
    if (action === "undo") {
      const id = decided.pop() || current;
      select(id, true);
      after = {undid: id};
      send({code_id: id, action: "undo"});
      return;
    }
    decided.push(current);
    after = action === "accept" || action === "reject" ? {advance: current} : {decided: current};
    send(Object.assign({code_id: current, action: action}, extra || {}));
  }

  function relabel(kind, force, dimension) {
    decide("relabel", {kind: kind, force: force || "", dimension: dimension || ""});
  }

  function say(text) {
    flash.textContent = "";
    const span = document.createElement("span");
    span.className = "flash hint";
    span.textContent = text;
    flash.appendChild(span);
  }

  // --- selection -> character offsets in the transcript -------------------------------------------

  // A boundary of the selection as an offset into the transcript's text: each piece of a turn's text
  // is a .seg element whose data-s is the offset of its first character.
  function offsetOf(node, offset) {
    if (node.nodeType === Node.TEXT_NODE) {
      const seg = node.parentElement && node.parentElement.closest(".seg");
      if (seg) return parseInt(seg.dataset.s, 10) + offset;
      return nextSegStart(node.parentElement);
    }
    const child = node.childNodes[offset];
    if (child) return child.nodeType === Node.ELEMENT_NODE && child.classList.contains("seg")
      ? parseInt(child.dataset.s, 10) : nextSegStart(child);
    const text = node.closest && node.closest(".turn-text");
    return text ? parseInt(text.dataset.end, 10) : null;
  }

  function nextSegStart(node) {
    let el = node;
    while (el && !(el.nodeType === Node.ELEMENT_NODE && el.classList.contains("seg"))) {
      el = el.nextSibling || (el.parentElement && !el.parentElement.classList.contains("turn-text") ? el.parentElement.nextSibling : null);
    }
    if (el) return parseInt(el.dataset.s, 10);
    const text = node && (node.nodeType === Node.ELEMENT_NODE ? node : node.parentElement).closest(".turn-text");
    return text ? parseInt(text.dataset.end, 10) : null;
  }

  // The selected words as {start, end} in one interviewee turn, else null (with the reason said).
  function selected(quiet) {
    const sel = window.getSelection();
    if (!sel || sel.isCollapsed || !sel.rangeCount) return null;
    const range = sel.getRangeAt(0);
    const startEl = range.startContainer.nodeType === Node.ELEMENT_NODE ? range.startContainer : range.startContainer.parentElement;
    const endEl = range.endContainer.nodeType === Node.ELEMENT_NODE ? range.endContainer : range.endContainer.parentElement;
    const turn = startEl && startEl.closest(".turn");
    if (!turn || !transcript.contains(turn)) return null;
    if (turn !== (endEl && endEl.closest(".turn"))) { if (!quiet) say("select words inside one turn"); return null; }
    if (turn.dataset.role !== "interviewee") { if (!quiet) say("codes mark the interviewee's words: select them in an interviewee's turn"); return null; }
    const start = offsetOf(range.startContainer, range.startOffset);
    const end = offsetOf(range.endContainer, range.endOffset);
    if (start === null || end === null || end <= start) return null;
    return {start: start, end: end};
  }

  function add(kind, force) {
    const span = selected(false);
    if (!span) return false;
    after = {added: true};
    send({action: "add", kind: kind, force: force || "", start: span.start, end: span.end});
    window.getSelection().removeAllRanges();
    selectionBar.hidden = true;
    return true;
  }

  function respan() {
    const span = selected(false);
    if (!span) { say("select the words the code should cover first (in its turn), then press s"); return; }
    decide("respan", {start: span.start, end: span.end});
    window.getSelection().removeAllRanges();
  }

  document.addEventListener("selectionchange", function () {
    selectionBar.hidden = !selected(true);
  });

  // --- notes ---------------------------------------------------------------------------------------

  function openNote() {
    if (!current) { say("choose a code first: j / k, or click one"); return; }
    const old = itemOf(current).querySelector(".note-text");
    noteForm.hidden = false;
    noteText.value = old ? old.textContent : "";
    noteText.focus();
  }

  function closeNote() { noteForm.hidden = true; noteText.blur(); }

  noteForm.addEventListener("submit", function (event) {
    event.preventDefault();
    decide("note", {note: noteText.value});
    closeNote();
  });
  noteText.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); noteForm.requestSubmit(); }
    if (event.key === "Escape") { event.preventDefault(); closeNote(); }
  });

  // --- keyboard ------------------------------------------------------------------------------------

  document.addEventListener("keydown", function (event) {
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    const index = "1234".indexOf(key);
    let handled = true;
    if (key === "j") move(1);
    else if (key === "k") move(-1);
    else if (key === "a") decide("accept");
    else if (key === "r") decide("reject");
    else if (key === "u") decide("undo");
    else if (key === "n") openNote();
    else if (key === "s") respan();
    else if (index >= 0) { if (!add("force", FORCES[index])) relabel("force", FORCES[index]); }
    else if (key === "t") { if (!add("trigger")) relabel("trigger"); }
    else if (key === "q") { if (!add("quote")) relabel("quote"); }
    else if (key === "Escape") { closeNote(); window.getSelection().removeAllRanges(); }
    else handled = false;
    if (handled) event.preventDefault();
  });

  // --- clicks --------------------------------------------------------------------------------------

  document.addEventListener("click", function (event) {
    const el = event.target;
    const act = el.closest("[data-act]");
    if (act) { if (act.dataset.act === "respan") respan(); else decide(act.dataset.act); return; }
    const re = el.closest("[data-relabel-kind]");
    if (re) { relabel(re.dataset.relabelKind, re.dataset.relabelForce, re.dataset.relabelDimension); return; }
    const ad = el.closest("[data-add-kind]");
    if (ad) { add(ad.dataset.addKind, ad.dataset.addForce); return; }
    const form = el.closest("form.decide button[name=action]");
    if (form) {  // a card's own button: htmx posts it; remember it for undo and the next code
      const item = el.closest(".code-item");
      if (item) {
        select(item.dataset.codeId, false);
        if (form.value === "undo") after = {undid: item.dataset.codeId};
        else {
          decided.push(item.dataset.codeId);
          after = form.value === "accept" || form.value === "reject" ? {advance: item.dataset.codeId} : {decided: item.dataset.codeId};
        }
      }
      return;
    }
    const mark = el.closest("mark.hl");
    if (mark && window.getSelection().isCollapsed) {
      // a span links back to its code: the next of the codes covering it on each click
      const anchors = mark.dataset.codes.split(" ");
      const at = anchors.indexOf(current ? itemOf(current).dataset.anchor : "");
      const next = document.getElementById("code-" + anchors[(at + 1) % anchors.length]);
      if (next) select(next.dataset.codeId, false), next.scrollIntoView({block: "nearest"});
      return;
    }
    const item = el.closest(".code-item");
    if (item && !el.closest("a, button, form")) select(item.dataset.codeId, false);
  });

  // A code links to its span (#span-...) and a span to its code (#code-...): both make it current.
  function fromHash() {
    const hash = decodeURIComponent(location.hash.slice(1));
    const anchor = hash.replace(/^(span|code)-/, "");
    if (anchor === hash) return;
    const item = document.getElementById("code-" + anchor);
    if (item) select(item.dataset.codeId, false), item.scrollIntoView({block: "nearest"});
    const target = document.getElementById(hash);
    if (target) target.scrollIntoView({block: hash.startsWith("span-") ? "center" : "nearest"});
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();

  // After a decision's answer is swapped in: the code list is new, so mark the current code again
  // (the next one after an accept or reject, as in a review queue).
  document.body.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.target !== flash) return;
    const message = document.getElementById("flash-message");
    const saved = Boolean(message) && message.dataset.saved === "true";
    const was = after || {};
    after = null;
    let id = current;
    if (saved && (was.added || !itemOf(id))) id = message.dataset.codeId || id;
    if (saved && was.advance) {
      const list = items();
      const i = list.findIndex(function (el) { return el.dataset.codeId === was.advance; });
      if (i >= 0 && i + 1 < list.length) id = list[i + 1].dataset.codeId;
    }
    if (!saved && (was.advance || was.decided)) decided.pop(); // not saved: nothing to undo
    if (!saved && was.undid) decided.push(was.undid);
    select(id, true);
    // the page has settled on this answer (scrolled to the current code), for whoever waits on it
    document.body.dataset.settled = "true";
  });
})();
