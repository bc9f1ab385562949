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
    await Latchkey.api("DELETE", "/api/v1/session");
    window.location.assign("/login/");
  });
  await load();
});

async function load() {
  const main = document.getElementById("main");
  const list = document.getElementById("connections");
  const { status, data } = await Latchkey.api("GET", "/api/v1/me/connections");
  main.setAttribute("aria-busy", "false");
  if (status !== 200 || !data) {
    Latchkey.showError("Your connected apps could not be loaded.");
    return;
  }
  list.replaceChildren();
  document.getElementById("empty").hidden = data.connections.length !== 0;
  for (const c of data.connections) {
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
