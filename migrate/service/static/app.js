// The pages' only script (no framework, no build step; the pages work without it, only less live):
// the provider named as the old address is typed, one import's live progress (Server-Sent Events,
// else a reload now and then), and the states in the lists of imports and batch rows.
"use strict";

(function () {
  const ACTIVE = ["queued", "running", "waiting_signin"];
  const texts = JSON.parse(document.body.dataset.texts || "{}");
  const lang = document.documentElement.lang || "en";
  const numbers = new Intl.NumberFormat(lang, { maximumFractionDigits: 0 });
  const decimals = new Intl.NumberFormat(lang, { maximumFractionDigits: 1, minimumFractionDigits: 1 });

  function fill(template, values) {
    return String(template || "").replace(/\{(\w+)\}/g, (all, key) => (key in values ? String(values[key]) : all));
  }
  function number(n) {
    return n === null || n === undefined ? "–" : numbers.format(n);
  }
  function size(n) {
    if (n === null || n === undefined) return "–";
    if (n < 1024) return numbers.format(n) + " " + texts.unit_b;
    const units = [["unit_kb", 1024], ["unit_mb", 1024 ** 2], ["unit_gb", 1024 ** 3]];
    for (const [unit, scale] of units) {
      if (n < scale * 1024 || unit === "unit_gb") {
        const value = n / scale;
        return (value >= 100 ? numbers.format(value) : decimals.format(value)) + " " + texts[unit];
      }
    }
    return String(n);
  }
  function percent(p) {
    if (p === null || p === undefined) return "–";
    return lang === "en" ? Math.round(p) + "%" : numbers.format(Math.round(p)) + " %";
  }
  function eta(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 60) return texts.eta_soon;
    const minutes = Math.ceil(seconds / 60);
    const time = minutes < 60 ? fill(texts.duration_min, { m: minutes })
      : fill(texts.duration_h_min, { h: Math.floor(minutes / 60), m: minutes % 60 });
    return fill(texts.eta, { time });
  }
  function setState(badge, state) {
    if (!badge) return;
    badge.dataset.state = state;
    badge.textContent = texts["state_" + state] || state;
  }
  function setBar(bar, value) {
    if (!bar) return;
    if (value === null || value === undefined) bar.removeAttribute("value");
    else bar.value = value;
  }

  // --- the import form: the provider of the old address, its hint, its sign-in button ----------
  function providerHints(form) {
    let catalog;
    try {
      catalog = JSON.parse(form.dataset.catalog);
    } catch (_) {
      return;
    }
    for (const block of form.querySelectorAll("fieldset.source")) {
      const email = block.querySelector("[data-source-email]");
      const chosen = block.querySelector("[data-source-provider]");
      const note = block.querySelector("[data-provider-note]");
      const oauth = block.querySelector("[data-oauth-block]");
      let shown = null;
      const update = () => {
        const address = email.value.trim();
        let name = chosen ? chosen.value : "";
        const at = address.lastIndexOf("@");
        if (!name && at > 0 && at < address.length - 1) {
          const domain = address.slice(at + 1).toLowerCase().replace(/\.$/, "");
          name = catalog.domains[domain] || (domain.includes(".") ? "imap" : "");
        }
        const info = name ? catalog.presets[name] : null;
        if (name !== shown) { // rewrite the live region only when the provider changes
          shown = name;
          note.textContent = "";
          if (info) {
            const title = document.createElement("strong");
            title.textContent = fill(texts.detected_provider, { name: info.title });
            note.append(title, " ", info.hint || "");
          }
        }
        if (!oauth) return;
        let any = false;
        for (const link of oauth.querySelectorAll("[data-oauth-kind]")) {
          const show = !!info && info.oauth === link.dataset.oauthKind;
          link.hidden = !show;
          any = any || show;
          const url = new URL(link.getAttribute("href"), location.href);
          url.searchParams.set("email", address);
          link.setAttribute("href", url.pathname + url.search);
        }
        oauth.hidden = !any;
      };
      email.addEventListener("input", update);
      if (chosen) chosen.addEventListener("change", update);
    }
  }

  // --- one import: live progress -----------------------------------------------------------------
  function liveProgress(section) {
    const field = (name) => section.querySelector(`[data-field="${name}"]`);
    const render = (view) => {
      const p = view.progress || {};
      section.dataset.state = view.state;
      setState(field("state"), view.state);
      field("phase").textContent = view.state === "waiting_signin" ? "" : texts["phase_" + p.phase] || "";
      setBar(field("bar"), p.percent);
      field("percent").textContent = percent(p.percent);
      field("messages").textContent = p.messages_total === null || p.messages_total === undefined
        ? fill(texts.progress_messages_open, { done: number(p.messages_done) })
        : fill(texts.progress_messages, { done: number(p.messages_done), total: number(p.messages_total) });
      field("bytes").textContent = p.bytes_total === null || p.bytes_total === undefined
        ? size(p.bytes_done) : fill(texts.progress_bytes, { done: size(p.bytes_done), total: size(p.bytes_total) });
      field("eta").textContent = eta(p.eta_s);
      const etaText = field("eta-text");
      if (etaText) etaText.textContent = p.eta_text || ""; // the engine's sentence (budget windows)
      field("folder").textContent = p.current_folder ? fill(texts.current_folder, { folder: p.current_folder }) : "";
      for (const cell of document.querySelectorAll("[data-total]")) {
        const key = cell.dataset.total;
        const value = (view.totals || {})[key];
        cell.textContent = key === "bytes" ? size(value) : number(value);
      }
      const body = document.querySelector('[data-field="folders"]');
      if (body && Array.isArray(view.folders)) {
        const rows = view.folders.map((f) => {
          const row = document.createElement("tr");
          const cells = [f.source, f.target === null ? texts.folder_left_out : f.target, number(f.source_messages),
            number(f.copied), number(f.skipped_duplicates), number(f.failed), f.note || ""];
          cells.forEach((text, i) => {
            const cell = document.createElement("td");
            cell.textContent = text; // names come from mail servers: text, never markup
            if (i >= 2 && i <= 5) cell.className = "num";
            row.append(cell);
          });
          return row;
        });
        body.replaceChildren(...rows);
      }
    };
    const reloadNow = () => {
      field("live-note").textContent = texts.live_lost;
      setTimeout(() => location.reload(), 5000);
    };
    if (!("EventSource" in window)) {
      reloadNow();
      return;
    }
    const events = new EventSource(section.dataset.events);
    let errors = 0;
    events.addEventListener("progress", (e) => {
      errors = 0;
      render(JSON.parse(e.data));
    });
    events.addEventListener("end", (e) => {
      events.close();
      render(JSON.parse(e.data));
      location.reload(); // the finished page: failures, "Import again"
    });
    events.onerror = () => {
      errors += 1;
      if (events.readyState === EventSource.CLOSED || errors >= 3) {
        events.close();
        reloadNow();
      }
    };
  }

  // --- lists of imports and batch rows: their states, every few seconds while any runs ------------
  function pollList(table) {
    const poll = async () => {
      let answer;
      try {
        const response = await fetch(table.dataset.poll, { credentials: "same-origin" });
        if (!response.ok) throw new Error(String(response.status));
        answer = await response.json();
      } catch (_) {
        setTimeout(() => location.reload(), 10000);
        return;
      }
      let active = false;
      for (const view of answer.imports || []) {
        const row = table.querySelector(`tr[data-import-id="${CSS.escape(view.id)}"]`);
        if (!row) continue;
        setState(row.querySelector('[data-field="state"]'), view.state);
        const p = view.progress || {};
        setBar(row.querySelector('[data-field="bar"]'), p.percent);
        const pct = row.querySelector('[data-field="percent"]');
        if (pct) pct.textContent = percent(p.percent);
        for (const cell of row.querySelectorAll("[data-total]")) cell.textContent = number((view.totals || {})[cell.dataset.total]);
        active = active || ACTIVE.includes(view.state);
      }
      if (active) setTimeout(poll, 2000);
      else location.reload(); // everything ended: the page as the server shows finished work
    };
    setTimeout(poll, 2000);
  }

  const form = document.getElementById("import-form");
  if (form) providerHints(form);
  const live = document.querySelector("#live[data-events]");
  if (live) liveProgress(live);
  for (const table of document.querySelectorAll("table[data-poll]")) pollList(table);
})();
