// Shared helpers for the Latchkey pages. No framework, no build step, no
// inline script: every page loads this file and its own.
"use strict";

const Latchkey = {
  cookie(name) {
    for (const part of document.cookie.split(";")) {
      const [k, ...v] = part.trim().split("=");
      if (k === name) return v.join("=");
    }
    return null;
  },

  // The session's CSRF token: __Host-lk_csrf over https (a cookie no other host can set), lk_csrf over http.
  csrfToken() {
    return location.protocol === "https:" ? Latchkey.cookie("__Host-lk_csrf") : Latchkey.cookie("lk_csrf");
  },

  // JSON API call with the session cookie and the CSRF header.
  async api(method, path, body) {
    const headers = { "Accept": "application/json" };
    const csrf = Latchkey.csrfToken();
    if (csrf) headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    const type = response.headers.get("Content-Type") || "";
    if (type.includes("json")) {
      try { data = await response.json(); } catch (_) { data = null; }
    }
    return { status: response.status, data };
  },

  param(name) { return new URLSearchParams(window.location.search).get(name); },

  // Builds an element; text is always set as text, never parsed as HTML.
  el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  },

  safeHttpURL(value) {
    try {
      const url = new URL(value);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (_) { return null; }
  },

  showError(message) {
    const region = document.getElementById("error");
    region.textContent = message;
  },

  date(epochSeconds) {
    if (!epochSeconds) return "never";
    return new Date(epochSeconds * 1000).toLocaleString();
  },
};
