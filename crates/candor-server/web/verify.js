// The /verify page's shell. It only fetches from the log that served the page
// and draws; every check runs in Candor's Rust verifier compiled to
// WebAssembly (./candor_web.js, tools/candor-web). For tests and tools it sets
// document.body.dataset.verdict to "valid" or "invalid" once it has decided,
// and dataset.subject to "match" or "mismatch" once a subject was checked.
import init, * as candor from "./candor_web.js";

const $ = (id) => document.getElementById(id);
const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
const LOG_KEY = meta("candor-log-key");
const ORIGIN = meta("candor-origin");
// The trust policy pinned in the page (C2SP tlog-policy), empty for a log
// without witnesses. The page shows exactly the text it enforces.
const POLICY = $("trust-policy").textContent;
// The log's base URL: the page is served at BASE/verify.
const base = new URL(".", document.baseURI);

// What is being shown: the receipt (JSON text) and what was fetched for it.
let current = null;
// Whether a check began (a paste or drop can come while the module loads), so that
// the start-up prompt does not overwrite it.
let started = false;

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children) e.append(c);
  return e;
}

function setVerdict(state, title, sub) {
  const v = $("verdict");
  v.className = "verdict " + state;
  const mark = { valid: "✓ ", invalid: "✗ ", unknown: "? " }[state] || "";
  v.replaceChildren(el("span", { className: "title", textContent: mark + title }));
  if (sub) v.append(el("span", { className: "sub", textContent: sub }));
  // Anything short of a positive verification is "invalid" for tools.
  document.body.dataset.verdict = state === "valid" ? "valid" : "invalid";
  document.body.dataset.status = state;
}

/** A fact row; `value` is text or a list of texts. */
function fact(label, value) {
  if (value === undefined || value === null || value === "" || (Array.isArray(value) && !value.length)) return;
  const dd = el("dd");
  if (Array.isArray(value)) dd.append(el("ul", {}, ...value.map((t) => el("li", { textContent: t }))));
  else if (value instanceof Node) dd.append(value);
  else dd.textContent = value;
  $("facts").append(el("dt", { textContent: label }), dd);
}

/** Only web and mail links become clickable; anything else stays text. */
function optOut(url) {
  if (!/^(https:\/\/|mailto:)/i.test(url)) return url;
  return el("a", { href: url, textContent: url, rel: "noopener noreferrer nofollow", target: "_blank" });
}

function renderChecks(checks) {
  $("checks-box").hidden = checks.length === 0;
  $("checks").replaceChildren(...checks.map((c) => el("li", { className: c.passed ? "pass" : "fail" },
    el("span", { className: "mark", textContent: c.passed ? "✓" : "✗", ariaHidden: "true" }),
    el("span", { className: "what" },
      c.passed ? el("span", { className: "sr", textContent: "Passed: " }) : "Failed: ",
      c.description),
    el("span", { className: "detail", textContent: c.detail }))));
}

function renderFacts(a) {
  const f = a.facts || {};
  $("facts").replaceChildren();
  $("about").hidden = !f.headline;
  if (!f.headline) return;
  const failed = a.checks.find((c) => !c.passed);
  $("unconfirmed").hidden = a.verdict === "valid" || (failed && failed.name === "subject");
  // When valid, the verdict already says it.
  $("headline").textContent = f.headline;
  $("headline").hidden = a.verdict === "valid";
  fact("Who", f.who);
  fact("When", f.when);
  fact("Channel", f.channel);
  fact("Campaign", f.campaign);
  fact("Why you", f.why);
  fact("Criteria", f.criteria);
  fact("Data used", f.data_used);
  fact("Legal basis", f.legal_basis);
  if (f.opt_out) fact("Opt out", optOut(f.opt_out));
  if (a.index !== undefined && a.checkpoint) fact("On the log", `entry ${a.index} of ${a.checkpoint.size} in ${a.checkpoint.origin}`);
}

/** The subject check's detail when the commitment opened to someone else. */
const notAboutYou = (detail) => detail.startsWith("this message was not about you");

function renderSubject(a) {
  const out = $("subject-result");
  out.className = "";
  if (a.subject_error) {
    out.textContent = a.subject_error;
    delete document.body.dataset.subject;
  } else if (a.subject_state === "match") {
    out.className = "match";
    out.textContent = "✓ Yes: this message was about you.";
  } else if (a.subject_state === "mismatch") {
    out.className = "mismatch";
    const c = a.checks.find((c) => c.name === "subject");
    const detail = c ? c.detail : "";
    out.textContent = notAboutYou(detail)
      ? "✗ No: this disclosure was made about someone else, not about what you entered."
      : `✗ Could not check: ${detail}.`;
  } else {
    out.textContent = "";
  }
  if (a.subject_state) document.body.dataset.subject = a.subject_state;
}

/** Runs the whole verification on what is loaded and draws it. */
function render() {
  if (!current) return;
  const a = JSON.parse(candor.answer(current.receipt, LOG_KEY, POLICY, $("subject").value, JSON.stringify(current.online)));
  if (a.error) return couldNotRead(a.error);
  renderFacts(a);
  renderChecks(a.checks);
  renderSubject(a);
  const failed = a.checks.find((c) => !c.passed);
  if (a.verdict === "valid") {
    setVerdict("valid", "This disclosure is genuine: it is on the public log and every check passed.", a.facts.headline);
  } else if (a.verdict === "invalid" && failed && failed.name === "subject" && notAboutYou(failed.detail)) {
    setVerdict("invalid", "This disclosure was NOT about you.",
      "It does not match the email address or phone number you entered.");
  } else if (a.verdict === "invalid") {
    const sub = failed ? `The check “${failed.description}” failed: ${failed.detail.replace(/\.$/, "")}.` : "";
    setVerdict("invalid", "This disclosure does NOT check out.", sub);
  } else {
    setVerdict("unknown", "This disclosure could not be checked completely.", a.problem || "");
  }
}

function couldNotRead(message) {
  current = null;
  $("about").hidden = true;
  renderChecks([]);
  setVerdict("invalid", "This receipt could not be checked.", message);
}

/** GET a log resource relative to the log's base URL: {status, body} or {error}. */
async function get(path) {
  try {
    const r = await fetch(new URL(path, base), { credentials: "omit", cache: "no-store" });
    return { status: r.status, body: await r.text() };
  } catch (e) {
    return { error: String((e && e.message) || e) };
  }
}

/** Fetches what the online checks need (the Rust side says what) and verifies. */
async function checkReceipt(receiptJson) {
  const plan = JSON.parse(candor.plan(receiptJson, LOG_KEY, POLICY));
  if (plan.error) return couldNotRead(plan.error);
  const online = { purchases: {} };
  if (!plan.offline_failed) {
    online.checkpoint = await get("checkpoint");
    if (online.checkpoint.status === 200 && plan.checkpoint_size != null) {
      const range = JSON.parse(candor.consistency_request(online.checkpoint.body, LOG_KEY, BigInt(plan.checkpoint_size)));
      if (range.old !== undefined) {
        online.consistency = await get(`v1/proof/consistency?old=${range.old}&new=${range.new}`);
      }
    }
    if (plan.company) online.company = await get(`v1/companies/${encodeURIComponent(plan.company)}`);
    for (const i of plan.purchases) online.purchases[i] = await get(`v1/receipts/${i}`);
  }
  current = { receipt: receiptJson, online };
  render();
}

/** A link's receipt: the log's receipt for its index, which must be the leaf it names. */
async function checkLink(link) {
  if (link.base && new URL(link.base.replace(/\/?$/, "/")).href !== base.href) {
    return couldNotRead(`This link is for the log at ${link.base}; this page checks receipts of ${ORIGIN} only. Open the link itself.`);
  }
  const r = await get(`v1/receipts/${link.index}`);
  if (r.error) {
    current = null;
    return setVerdict("unknown", "This disclosure could not be checked.", `The log could not be reached: ${r.error}`);
  }
  if (r.status === 404) return couldNotRead(`The log has no entry ${link.index}: the link is wrong, or the disclosure was never logged.`);
  if (r.status !== 200) {
    current = null;
    return setVerdict("unknown", "This disclosure could not be checked.", `The log answered ${r.status}.`);
  }
  const receipt = JSON.parse(candor.receipt_from_link(r.body, link.fragment));
  if (receipt.error) return couldNotRead(`The link does not match the log: ${receipt.error}.`);
  await checkReceipt(JSON.stringify(receipt));
}

/** A receipt, header line, verify URL or fragment, pasted, dropped or from the URL. */
async function checkText(text) {
  started = true;
  setVerdict("unknown", "Checking…");
  delete document.body.dataset.verdict;
  // A paste or drop can come before the WebAssembly module is ready.
  if (!(await verifier)) return;
  const input = JSON.parse(candor.parse_input(text));
  if (input.error) return couldNotRead(input.error);
  if (input.link) return checkLink(input.link);
  return checkReceipt(JSON.stringify(input.receipt));
}

function failed(err) {
  couldNotRead(String((err && err.message) || err));
}

$("subject-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (current) render();
  else $("subject-result").textContent = "Open the link from your message, or paste a receipt first.";
});
$("paste-go").addEventListener("click", () => checkText($("paste").value).catch(failed));
// A paste into the empty field is checked at once; pasting into text being
// edited just edits it.
$("paste").addEventListener("paste", (ev) => {
  const text = ev.clipboardData ? ev.clipboardData.getData("text/plain") : "";
  if (!text.trim() || $("paste").value.trim()) return;
  ev.preventDefault();
  $("paste").value = text;
  checkText(text).catch(failed);
});
$("paste").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
    ev.preventDefault();
    checkText($("paste").value).catch(failed);
  }
});
const drop = $("drop");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  const f = ev.dataTransfer.files[0];
  const text = f ? await f.text() : ev.dataTransfer.getData("text/plain");
  $("paste").value = text;
  checkText(text).catch(failed);
});

/** Shows the pinned trust policy in plain words; false if it is unusable. */
function showPolicy() {
  if (!POLICY.trim()) return true;
  const p = JSON.parse(candor.policy_summary(POLICY));
  if (p.error) {
    setVerdict("invalid", "This page cannot check receipts.", p.error);
    return false;
  }
  $("policy-quorum").textContent = p.quorum;
  return true;
}

// The verifier, once the module is loaded and the pinned policy is usable; every
// check waits for it.
const verifier = init().then(showPolicy);
async function main() {
  if (!(await verifier)) return;
  // The fragment never reaches a server: r= is the receipt link, and
  // subject= (for tests and tools) pre-fills the field.
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("subject")) $("subject").value = params.get("subject");
  if (params.get("r")) {
    await checkText("r=" + params.get("r"));
  } else if (!started) {
    $("verdict").className = "verdict";
    $("verdict").replaceChildren(el("span", { className: "title", textContent: "Open the link from your message, or paste a receipt below." }));
  }
}

main().catch((err) => {
  setVerdict("invalid", "This page could not start its verifier.", String((err && err.message) || err));
});
window.addEventListener("hashchange", () => location.reload());
