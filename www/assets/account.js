"use strict";

document.addEventListener("DOMContentLoaded", async () => {
  const session = await Latchkey.api("GET", "/api/v1/session");
  if (session.status === 401) {
    window.location.assign("/login/");
    return;
  }
  const user = session.data || {};
  document.getElementById("lead").textContent =
    "Signed in as " + (user.name || user.username || "you") + ". These applications can use your account.";
  const signout = document.getElementById("signout");
  signout.hidden = false;
  signout.addEventListener("click", async () => {
    // Signed out only when the server says so (204): on a shared computer, a sign-out that failed and still went
    // to the sign-in page would leave the session to the next person (review, session 25).
    const { status } = await Latchkey.api("DELETE", "/api/v1/session");
    if (status === 204 || status === 401) {
      window.location.assign("/login/");
    } else {
      document.getElementById("error").textContent =
        "Signing out did not work (" + status + "). Reload the page and try again, or close the browser.";
    }
  });
  await load();
  await loadProfile();
});

const PROFILE_FIELDS = ["given_name", "family_name", "phone_number", "locale", "zoneinfo"];
const ADDRESS_FIELDS = ["street_address", "locality", "region", "postal_code", "country"];

async function loadProfile() {
  const { status, data } = await Latchkey.api("GET", "/api/v1/me/profile");
  if (status !== 200 || !data) return;
  for (const f of PROFILE_FIELDS) document.getElementById(f).value = data[f] || "";
  for (const f of ADDRESS_FIELDS) document.getElementById(f).value = (data.address || {})[f] || "";
  const section = document.getElementById("profile");
  section.hidden = false;
  const form = document.getElementById("profile-form");
  const status_ = document.getElementById("profile-status");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status_.textContent = "";
    for (const input of form.querySelectorAll("input")) { input.removeAttribute("aria-invalid"); input.removeAttribute("aria-describedby"); }
    const body = { address: {} };
    for (const f of PROFILE_FIELDS) body[f] = document.getElementById(f).value.trim();
    for (const f of ADDRESS_FIELDS) body.address[f] = document.getElementById(f).value.trim();
    const result = await Latchkey.api("PUT", "/api/v1/me/profile", body);
    if (result.status === 200) {
      status_.textContent = "Profile saved.";
      return;
    }
    if (result.status === 429) {
      status_.textContent = "Not saved: too many changes to your profile for now. Try again later.";
      return;
    }
    const errors = (result.data && result.data.errors) || [];
    for (const e of errors) {
      const input = document.getElementById(e.field.replace(/^address\./, ""));
      if (input) { input.setAttribute("aria-invalid", "true"); input.setAttribute("aria-describedby", "profile-status"); }
    }
    status_.textContent = errors.length ? "Not saved: " + errors.map((e) => e.field.replace(/^address\./, "") + " " + e.message).join("; ") + "."
                                        : "Your profile could not be saved. Try again.";
    const first = errors.length ? document.getElementById(errors[0].field.replace(/^address\./, "")) : null;
    if (first) first.focus();
  });
}

// Every connection, a page of 250 at a time (the API's largest); null if a page could not be loaded.
async function allConnections() {
  const all = [];
  for (;;) {
    const { status, data } = await Latchkey.api("GET", "/api/v1/me/connections?limit=250&offset=" + all.length);
    if (status !== 200 || !data) return null;
    all.push(...data.connections);
    if (data.connections.length < 250) return all;
  }
}

async function load() {
  const main = document.getElementById("main");
  const list = document.getElementById("connections");
  const connections = await allConnections();
  main.setAttribute("aria-busy", "false");
  if (!connections) {
    Latchkey.showError("Your connected apps could not be loaded.");
    return;
  }
  list.replaceChildren();
  document.getElementById("empty").hidden = connections.length !== 0;
  for (const c of connections) {
    const item = Latchkey.el("li");
    const logo = c.logo_uri ? Latchkey.safeHttpURL(c.logo_uri) : null;
    const app = Latchkey.el("div", { class: "app" });
    if (logo) app.append(Latchkey.el("img", { src: logo, alt: "" }));
    else app.append(Latchkey.el("div", { class: "placeholder", "aria-hidden": "true", text: (c.client_name || "?").slice(0, 1).toUpperCase() }));
    app.style.margin = "0";
    const meta = Latchkey.el("div", { class: "meta" });
    meta.append(Latchkey.el("div", { class: "name", text: c.client_name }));
    meta.append(Latchkey.el("div", { class: "detail", text: "Access: " + c.scope }));
    meta.append(Latchkey.el("div", { class: "detail", text: "Connected " + Latchkey.date(c.creation_time) + " · last used " + Latchkey.date(c.access_time) }));
    const revoke = Latchkey.el("button", { type: "button", class: "danger", text: "Revoke", "aria-label": "Revoke access for " + c.client_name });
    revoke.addEventListener("click", async () => {
      revoke.disabled = true;
      const result = await Latchkey.api("DELETE", "/api/v1/me/connections/" + encodeURIComponent(c.client_id));
      if (result.status === 204) {
        document.getElementById("status").textContent = "Access for " + c.client_name + " was revoked.";
        await load();
      } else {
        revoke.disabled = false;
        Latchkey.showError("Access could not be revoked. Try again.");
      }
    });
    item.append(app, meta, revoke);
    list.append(item);
  }
}
