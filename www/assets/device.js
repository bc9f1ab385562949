"use strict";

// The device authorization grant's user side (RFC 8628 §3.3): the user types
// the code their device shows (or finds it filled in from the device's link,
// still to be confirmed), then answers on the consent screen, which sends the
// browser back here with the result.
document.addEventListener("DOMContentLoaded", async () => {
  const main = document.getElementById("main");
  const title = document.getElementById("title");
  const lead = document.getElementById("lead");
  const result = Latchkey.param("result");
  if (result === "approved" || result === "denied") {
    title.textContent = result === "approved" ? "Device connected" : "Access denied";
    lead.textContent = "";
    document.getElementById("result").textContent = result === "approved"
      ? "You can return to your device: it will continue on its own."
      : "The device was not given access. You can close this page.";
    main.setAttribute("aria-busy", "false");
    return;
  }
  const prefilled = Latchkey.param("user_code") || "";
  const session = await Latchkey.api("GET", "/api/v1/session");
  if (session.status === 401) {
    window.location.assign("/login/?then=device" + (prefilled ? "&user_code=" + encodeURIComponent(prefilled) : ""));
    return;
  }
  main.setAttribute("aria-busy", "false");
  const form = document.getElementById("device-form");
  const input = document.getElementById("user-code");
  const button = document.getElementById("submit");
  form.hidden = false;
  input.value = prefilled;
  input.focus();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    Latchkey.showError("");
    const code = input.value.trim();
    if (!code) { Latchkey.showError("Enter the code your device shows."); input.focus(); return; }
    button.disabled = true;
    try {
      const { status, data } = await Latchkey.api("POST", "/api/v1/device", { user_code: code });
      if (status === 200 && data && data.redirect_to) {
        window.location.assign(data.redirect_to);
        return;
      }
      if (status === 401) { window.location.assign("/login/?then=device"); return; }
      if (status === 429) Latchkey.showError("Too many attempts. Wait a minute and try again.");
      else if (status === 404) Latchkey.showError("That code is not valid: it may have expired or been used. Check the code on your device.");
      else Latchkey.showError("The code could not be checked. Try again.");
      input.setAttribute("aria-invalid", "true");
      input.focus();
    } catch (_) {
      Latchkey.showError("Latchkey could not be reached. Try again.");
    } finally {
      button.disabled = false;
    }
  });
});
