// The maintainer's live view of a bank (cloud_api/pages/maint.py): server-sent events keep the
// server-rendered table current. Everything it shows comes from the page: the stream's address,
// the status texts and every state word are in data- attributes of #live (no text is built
// here, no inline script: the page's CSP allows only our own scripts).
//
// The stream sends "snapshot" (the whole view) when it opens and "change" (what changed) after.
// EventSource reconnects by itself when a stream ends or the network fails (the server asks for
// 1 s); when it gives up (an HTTP error while the API restarts, a sign-in page) a new one is
// opened after a growing pause, so the view recovers after an API restart without a reload.
(function () {
  "use strict";

  var root = document.getElementById("live");
  if (!root || typeof window.EventSource !== "function") {
    return; // without EventSource the page stays as rendered, with its reload link
  }
  var url = root.getAttribute("data-live-url");
  var words = JSON.parse(root.getAttribute("data-words") || "{}");
  var styles = JSON.parse(root.getAttribute("data-styles") || "{}");
  var status = document.querySelector("[data-testid=live-status]");
  var source = null;
  var pauseMs = 1000;
  var MAX_PAUSE_MS = 30000;

  function word(group, value) {
    var table = words[group] || {};
    return Object.prototype.hasOwnProperty.call(table, value) ? table[value] : String(value);
  }

  function show(state) {
    // state: connecting, live or reconnecting (the texts are the page's, in its language)
    if (!status) {
      return;
    }
    status.setAttribute("data-state", state);
    status.textContent = root.getAttribute("data-text-" + state) || state;
  }

  function cell(name, field) {
    return document.querySelector("[data-testid=" + field + "-" + name + "]");
  }

  function setCell(el, state, text) {
    if (!el) {
      return;
    }
    el.setAttribute("data-state", state);
    el.textContent = text;
  }

  function applyCompartment(name, c) {
    setCell(cell(name, "latch"), c.latch, word("latch", c.latch));
    setCell(cell(name, "door"), c.door, word("door", c.door));
    setCell(cell(name, "occupancy"), c.occupancy, word("occupancy", c.occupancy));
    var attention = cell(name, "attention");
    if (attention) {
      var text = word("attention", c.needs_attention ? "yes" : "no");
      if (c.needs_attention && c.attention) {
        text += " · " + word("reason", c.attention);
      }
      setCell(attention, c.needs_attention ? "yes" : "no", text);
      attention.classList.toggle("sev-red", Boolean(c.needs_attention));
    }
  }

  function applyDevice(device) {
    var el = document.querySelector("[data-testid=device-status]");
    if (!el) {
      return;
    }
    var known = Object.prototype.hasOwnProperty.call(styles, device.status);
    var state = known ? device.status : "never_seen";
    setCell(el, state, word("status", state));
    el.className = styles[state] || "";
  }

  function applyCommands(commands) {
    var card = document.querySelector("[data-testid=command-result]");
    if (!card) {
      return;
    }
    var id = card.getAttribute("data-command");
    for (var i = 0; i < commands.length; i++) {
      if (commands[i].id === id) {
        card.setAttribute("data-outcome", commands[i].outcome);
        var outcome = card.querySelector("[data-testid=command-outcome]");
        if (outcome) {
          var text = word("outcome", commands[i].outcome);
          outcome.textContent = commands[i].reason ? text + " · " + commands[i].reason : text;
        }
      }
    }
  }

  function apply(event) {
    var view;
    try {
      view = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    if (view.device) {
      applyDevice(view.device);
    }
    if (view.compartments) {
      Object.keys(view.compartments).forEach(function (name) {
        applyCompartment(name, view.compartments[name]);
      });
    }
    if (view.commands) {
      applyCommands(view.commands);
    }
    if (event.type === "snapshot") {
      show("live");
      pauseMs = 1000;
    }
  }

  function connect() {
    show(source === null ? "connecting" : "reconnecting");
    source = new EventSource(url);
    source.addEventListener("snapshot", apply);
    source.addEventListener("change", apply);
    source.addEventListener("error", function () {
      show("reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        // EventSource gave up (an answer that is not a stream): open a new one later.
        source.close();
        window.setTimeout(connect, pauseMs);
        pauseMs = Math.min(pauseMs * 2, MAX_PAUSE_MS);
      }
    });
  }

  connect();
})();
