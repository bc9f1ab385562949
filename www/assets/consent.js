"use strict";

document.addEventListener("DOMContentLoaded", async () => {
  const request = Latchkey.param("request");
  const main = document.getElementById("main");
  const title = document.getElementById("title");
  if (!request) {
    title.textContent = "Nothing to approve";
    document.getElementById("lead").textContent = "This page is opened by an application asking for access.";
    main.setAttribute("aria-busy", "false");
    return;
  }
  const { status, data } = await Latchkey.api("GET", "/api/v1/authorization-requests/" + encodeURIComponent(request));
  if (status === 401) {
    window.location.assign("/login/?request=" + encodeURIComponent(request));
    return;
  }
  main.setAttribute("aria-busy", "false");
  if (status !== 200 || !data) {
    title.textContent = "This request has expired";
    document.getElementById("lead").textContent = "Go back to the application and start again.";
    return;
  }

  const client = data.client;
  const app = document.getElementById("app");
  const logo = client.logo_uri ? Latchkey.safeHttpURL(client.logo_uri) : null;
  if (logo) app.append(Latchkey.el("img", { src: logo, alt: client.client_name + " logo" }));
  else app.append(Latchkey.el("div", { class: "placeholder", "aria-hidden": "true", text: (client.client_name || "?").slice(0, 1).toUpperCase() }));
  const meta = Latchkey.el("div");
  meta.append(Latchkey.el("div", { class: "name", text: client.client_name }));
  if (data.organization && data.organization.name) {
    meta.append(Latchkey.el("div", { class: "organization", text: "Registered by " + data.organization.name }));
  }
  const homepage = client.client_uri ? Latchkey.safeHttpURL(client.client_uri) : null;
  if (homepage) meta.append(Latchkey.el("a", { href: homepage, rel: "noopener noreferrer", target: "_blank", text: new URL(homepage).host }));
  // The client's privacy policy and terms (RFC 7591 policy_uri, tos_uri), where the user decides.
  for (const [uri, text, id] of [[client.policy_uri, "Privacy policy", "policy"], [client.tos_uri, "Terms of service", "tos"]]) {
    const safe = uri ? Latchkey.safeHttpURL(uri) : null;
    if (safe) meta.append(Latchkey.el("a", { href: safe, id, class: "document", rel: "noopener noreferrer", target: "_blank", text }));
  }
  app.append(meta);

  title.textContent = client.client_name + " wants to access your account";
  document.getElementById("lead").textContent = data.device
    // RFC 8628 §5.4: a code someone sent the user is the attack; say so where the user decides.
    ? "A device you entered a code for asks for access. Approve only if you started this on a device you are holding."
    : "Review what it asks for. You can change this later on your account page.";

  const list = document.getElementById("scopes");
  for (const scope of data.scopes) {
    const id = "scope-" + scope.name.replace(/[^A-Za-z0-9_-]/g, "_");
    const required = scope.name === "openid";
    const row = Latchkey.el("div", { class: "scope" });
    const box = Latchkey.el("input", { type: "checkbox", id, value: scope.name });
    box.checked = true;
    if (required) { box.disabled = true; box.setAttribute("aria-describedby", id + "-why"); }
    const label = Latchkey.el("label", { for: id });
    label.append(Latchkey.el("span", { text: scope.description }));
    label.append(Latchkey.el("span", { class: "code", text: scope.name }));
    if (required) label.append(Latchkey.el("span", { class: "code", id: id + "-why", text: "required to sign you in" }));
    row.append(box, label);
    list.append(row);
  }
  document.getElementById("redirect").textContent = data.device
    ? "After you decide, return to your device."
    : "After you decide, you will be sent to " + data.redirect_uri;
  // Nothing to remember where a remembered answer would never be used: a device's approval is one decision for
  // that device, and a public app on this machine (a loopback address) is asked every time.
  if (!data.remember_offered) document.querySelector(".remember").hidden = true;
  const form = document.getElementById("consent-form");
  form.hidden = false;
  document.getElementById("approve").focus();

  const buttons = [document.getElementById("approve"), document.getElementById("deny")];
  // response_mode=form_post: the answer is a real form submission, whose reply is the page that POSTs the
  // response to the application (this page's CSP lets forms go to Latchkey only).
  function submitForm(path, body) {
    buttons.forEach((b) => { b.disabled = true; });
    const post = Latchkey.el("form", { method: "post", action: "/api/v1/authorization-requests/" + encodeURIComponent(request) + path });
    const add = (name, value) => post.append(Latchkey.el("input", { type: "hidden", name, value: String(value) }));
    for (const scope of body.scope || []) add("scope", scope);
    if (body.remember !== undefined) add("remember", body.remember ? "true" : "false");
    add("csrf_token", Latchkey.csrfToken() || "");
    post.hidden = true;
    document.body.append(post);
    post.submit();
  }
  async function answer(path, body) {
    if (data.response_mode === "form_post") { submitForm(path, body); return; }
    Latchkey.showError("");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const result = await Latchkey.api("POST", "/api/v1/authorization-requests/" + encodeURIComponent(request) + path, body);
      if (result.status === 200 && result.data && result.data.redirect_to) {
        window.location.assign(result.data.redirect_to);
        return;
      }
      // The request asks for a newer sign-in (prompt=login, max_age): sign in, then answer.
      if (result.status === 401) {
        window.location.assign("/login/?request=" + encodeURIComponent(request));
        return;
      }
      Latchkey.showError(result.data && result.data.detail ? result.data.detail : "Your answer could not be saved.");
    } catch (_) {
      Latchkey.showError("Latchkey could not be reached. Try again.");
    }
    buttons.forEach((b) => { b.disabled = false; });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const scope = Array.from(list.querySelectorAll("input[type=checkbox]")).filter((b) => b.checked).map((b) => b.value);
    if (scope.length === 0) { Latchkey.showError("Choose at least one permission, or deny."); return; }
    answer("/accept", { scope, remember: data.remember_offered && document.getElementById("remember").checked });
  });
  document.getElementById("deny").addEventListener("click", () => answer("/reject", {}));
});
