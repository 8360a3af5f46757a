// The one-file report's script: hash routes over the data the file embeds.
//
//   #/            the experiment: its rows table, filtered, sorted and paged here, 50 rows at
//                 a time, from the JSON index in #rows-data (report_rows.js: the same rules
//                 as the served page)
//   #/rows/ID     a row: its page, pre-rendered, kept gzip'd and base64'd in chunks of rows
//                 (#rows-chunk-N), inflated on first use
//   #/compare     the experiment against its baseline, pre-rendered the same way
//
// No network: the data is in the file, and inflating goes through DecompressionStream on a
// Blob, never fetch().
"use strict";

(() => {
  const data = JSON.parse(document.getElementById("rows-data").textContent);
  const { BadQuery, format, parseQuery, queryParams, selectRows, DEFAULT_QUERY, COLUMN } =
    evalrowsRows(data); // report_rows.js
  const rows = data.rows;
  const scoreNames = data.scoreNames;
  const PAGE_SIZE = data.pageSize;

  const main = document.getElementById("main");
  const positionOf = new Map(rows.map((row, index) => [row[COLUMN.row_id], index]));

  // -- element helpers -----------------------------------------------------------------------

  function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value !== null && value !== undefined) node.setAttribute(name, value);
    }
    node.append(...children);
    return node;
  }

  function rowHref(rowId) {
    return "#/rows/" + encodeURIComponent(rowId);
  }

  function experimentHref(query, changes) {
    const params = queryParams(query, changes).toString();
    return params ? "#/?" + params : "#/";
  }

  // -- the experiment view: the markup of templates/_rows_table.html and _pager.html ----------

  // <main> holds one view at a time. The experiment's (pre-rendered) and the comparison's
  // (made once) are kept, with their scroll position, while another fills it.
  let shownView = "experiment";
  const keptViews = new Map(); // view -> {nodes, scroll}

  function showView(view, nodes) {
    if (shownView === "experiment" || shownView === "compare") {
      const scroll = window.scrollY; // before the view leaves: the page is shorter without it
      const kept = document.createDocumentFragment();
      kept.append(...main.childNodes);
      keptViews.set(shownView, { nodes: kept, scroll });
    }
    main.replaceChildren(nodes);
    shownView = view;
  }

  // Shows a kept view again; false when it was never made (or is showing).
  function showKept(view) {
    const kept = keptViews.get(view);
    if (kept === undefined) return false;
    keptViews.delete(view);
    showView(view, kept.nodes);
    window.scrollTo(0, kept.scroll);
    return true;
  }

  function tableRow(index) {
    const row = rows[index];
    const rowId = row[COLUMN.row_id];
    const status = row[COLUMN.status];
    const error = row[COLUMN.error];
    const idCell = element("td", { "data-col": "row_id" }, element("a", { href: rowHref(rowId) }, rowId));
    if (error) idCell.append(element("span", { class: "error-line" }, error));
    const version = row[COLUMN.version];
    const tokens = row[COLUMN.tokens];
    const cells = [
      idCell,
      element(
        "td",
        { "data-col": "status" },
        element("span", { class: `status status-${status}` }, status),
      ),
      element("td", { "data-col": "version", class: "num" }, version === null ? "" : String(version)),
      element(
        "td",
        { "data-col": "attempt" },
        element("code", { title: row[COLUMN.attempt_id] }, row[COLUMN.attempt_short]),
      ),
      element("td", { "data-col": "duration", class: "num" }, format.duration(row[COLUMN.duration])),
      element("td", { "data-col": "tokens", class: "num" }, tokens === null ? "" : format.number(tokens)),
    ];
    scoreNames.forEach((name, scoreIndex) => {
      const value = row[COLUMN.scores][scoreIndex];
      cells.push(element("td", { "data-col": `score:${name}`, class: "num" }, format.score(value)));
    });
    cells.push(element("td", { "data-col": "input" }, element("span", { class: "clip" }, row[COLUMN.input])));
    return element("tr", { "data-row-id": rowId, "data-status": status }, ...cells);
  }

  function pagerLink(rel, label, href) {
    return href === null
      ? element("span", { class: "muted", "aria-hidden": "true" }, label)
      : element("a", { rel, href }, label);
  }

  function showQueryError(message) {
    let note = document.getElementById("query-error");
    if (message === null) {
      if (note) note.remove();
      return;
    }
    if (!note) {
      note = element("p", { id: "query-error", class: "error", role: "alert" });
      document.getElementById("filters").after(note);
    }
    note.textContent = message;
  }

  function fillForm(query) {
    const form = document.getElementById("filters");
    for (const box of form.querySelectorAll('input[name="status"]')) {
      box.checked = query.statuses.includes(box.value);
    }
    form.elements.namedItem("q").value = query.text;
    form.elements.namedItem("score").value = query.score === null ? "" : query.score;
    form.elements.namedItem("min").value = query.low === null ? "" : String(query.low);
    form.elements.namedItem("max").value = query.high === null ? "" : String(query.high);
    for (const hidden of form.querySelectorAll('input[type="hidden"]')) hidden.remove();
    const actions = form.querySelector(".actions") || form;
    if (query.sort !== "row_id") {
      actions.before(element("input", { type: "hidden", name: "sort", value: query.sort }));
    }
    if (query.descending) {
      actions.before(element("input", { type: "hidden", name: "order", value: "desc" }));
    }
  }

  function renderRows(query) {
    const { shown, matched, pages, page } = selectRows(query);
    const table = document.getElementById("rows");
    const body = table.tBodies[0];
    const fragment = document.createDocumentFragment();
    for (const index of shown) fragment.append(tableRow(index));
    body.replaceChildren(fragment);

    const order = query.descending ? "descending" : "ascending";
    const sortLabel = data.sortLabels[query.sort] ?? query.sort.replace(/^score:/, "");
    table.caption.textContent =
      `Rows of ${data.experiment.name}, sorted by ${sortLabel}, ${order}, ` +
      `page ${format.number(page)} of ${format.number(pages)}`;
    for (const header of table.tHead.querySelectorAll("th[data-sort-key]")) {
      const key = header.dataset.sortKey;
      header.setAttribute("aria-sort", key === query.sort ? order : "none");
    }

    const first = (page - 1) * PAGE_SIZE + 1;
    document.getElementById("row-count").textContent = shown.length
      ? `Rows ${format.number(first)}–${format.number(first + shown.length - 1)} of ` +
        `${format.number(matched)} matching (${format.number(rows.length)} in all)`
      : `No rows match (${format.number(rows.length)} in all)`;

    const pageQuery = { ...query, page };
    document
      .getElementById("pager")
      .replaceChildren(
        pagerLink("prev", "← Previous", page > 1 ? experimentHref(pageQuery, { page: page - 1 }) : null),
        " ",
        element("span", { class: "page-of" }, `Page ${format.number(page)} of ${format.number(pages)}`),
        " ",
        pagerLink("next", "Next →", page < pages ? experimentHref(pageQuery, { page: page + 1 }) : null),
      );
    fillForm(query);
  }

  let currentQuery = DEFAULT_QUERY;

  function showExperiment(params) {
    let query;
    let problem = null;
    try {
      query = parseQuery(params);
    } catch (error) {
      if (!(error instanceof BadQuery)) throw error;
      query = DEFAULT_QUERY;
      problem = `${error.message}; showing every row instead.`;
    }
    if (shownView !== "experiment") showKept("experiment");
    currentQuery = query;
    renderRows(query);
    showQueryError(problem);
    document.title = `${data.experiment.name} · evalrows`;
  }

  function sortBy(key) {
    const descending = currentQuery.sort === key && !currentQuery.descending;
    location.hash = experimentHref(currentQuery, { sort: key, descending, page: 1 });
  }

  function submitFilters(event) {
    event.preventDefault();
    const form = event.target;
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (typeof value === "string" && value.trim()) params.append(name, value);
    }
    try {
      const query = parseQuery(params);
      location.hash = experimentHref(query, { page: 1 });
    } catch (error) {
      if (!(error instanceof BadQuery)) throw error;
      showQueryError(error.message);
    }
  }

  // -- pre-rendered pages, gzip'd and base64'd: inflated on first use, then kept ---------------

  const inflated = new Map();

  function inflate(id) {
    if (!inflated.has(id)) {
      const text = document.getElementById(id).textContent.trim();
      const binary = atob(text);
      const bytes = new Uint8Array(binary.length);
      for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      inflated.set(
        id,
        new Response(stream).text().then((json) => JSON.parse(json)),
      );
    }
    return inflated.get(id);
  }

  async function rowMarkup(rowId) {
    const position = positionOf.get(rowId);
    if (position === undefined) return null;
    const chunk = await inflate(`rows-chunk-${Math.floor(position / data.chunkSize)}`);
    for (const [id, markup] of chunk) if (id === rowId) return markup;
    return null;
  }

  // -- the comparison: its rows shown COMPARE_BATCH at a time ---------------------------------

  // A table of 10,000 rows takes the browser seconds to lay out: the first rows (regressions
  // first) show at once, the rest on request, a batch at a time.
  const COMPARE_BATCH = 500;

  async function compareView() {
    const holder = document.createElement("template");
    holder.innerHTML = await inflate("compare-data");
    const body = holder.content.querySelector("#compare tbody");
    const waiting = body ? Array.from(body.rows).slice(COMPARE_BATCH) : [];
    for (const row of waiting) row.remove();
    if (waiting.length) {
      const total = body.rows.length + waiting.length;
      const button = element("button", { type: "button" });
      const note = element("p", { id: "compare-more" }, button);
      const label = () => {
        const next = Math.min(COMPARE_BATCH, waiting.length);
        button.textContent =
          `Show ${format.number(next)} more rows ` +
          `(${format.number(body.rows.length)} of ${format.number(total)} shown)`;
      };
      button.addEventListener("click", () => {
        body.append(...waiting.splice(0, COMPARE_BATCH));
        if (waiting.length) label();
        else note.remove();
      });
      label();
      body.closest("table").parentElement.after(note);
    }
    return holder.content;
  }

  // -- routes ----------------------------------------------------------------------------------

  let shownRoute = 0; // a slow inflate must not overwrite the page of a later route

  function showMarkup(markup, title) {
    const holder = document.createElement("template");
    holder.innerHTML = markup;
    showView("page", holder.content);
    if (window.evalrowsEnhance) window.evalrowsEnhance(); // evalrows.js: the trace's tools
    document.title = `${title} · evalrows`;
    window.scrollTo(0, 0);
  }

  function showMissing(title, message) {
    const note = document.createDocumentFragment();
    note.append(
      element("h1", {}, title),
      element("p", {}, message),
      element("p", {}, element("a", { href: "#/" }, `Back to ${data.experiment.name}`)),
    );
    showView("page", note);
    document.title = `${title} · evalrows`;
    window.scrollTo(0, 0);
  }

  function decoded(text) {
    try {
      return decodeURIComponent(text);
    } catch {
      return text; // a "%" of its own: as it is
    }
  }

  async function route() {
    const route = ++shownRoute;
    const hash = location.hash.replace(/^#/, "");
    const cut = hash.indexOf("?");
    const path = cut < 0 ? hash : hash.slice(0, cut);
    const params = new URLSearchParams(cut < 0 ? "" : hash.slice(cut + 1));
    if (path === "" || path === "/") {
      showExperiment(params);
      return;
    }
    if (path.startsWith("/rows/")) {
      const rowId = decoded(path.slice("/rows/".length));
      const markup = await rowMarkup(rowId);
      if (route !== shownRoute) return;
      if (markup === null) {
        showMissing("No such row", `Experiment ${data.experiment.name} has no row ${rowId}.`);
      } else {
        showMarkup(markup, `${rowId} · ${data.experiment.name}`);
      }
      return;
    }
    if (path === "/compare") {
      if (!data.baseline) {
        showMissing("No baseline", `Experiment ${data.experiment.name} has no baseline to compare with.`);
        return;
      }
      if (shownView !== "compare" && !keptViews.has("compare")) {
        const view = await compareView();
        if (route !== shownRoute) return;
        showView("compare", view);
        window.scrollTo(0, 0);
      } else if (shownView !== "compare") {
        showKept("compare");
      }
      document.title = `${data.experiment.name} against ${data.baseline.name} · evalrows`;
      return;
    }
    if (path.startsWith("/experiment/")) {
      // ReportLinks' link to another experiment (the baseline) or one of its rows.
      const [id, , row] = path.slice("/experiment/".length).split("/").map(decoded);
      const other = data.baseline && data.baseline.id === id ? data.baseline.name : id;
      const what = row === undefined ? `Experiment ${other}` : `Row ${row} of experiment ${other}`;
      showMissing(
        "Not in this report",
        `${what} is not in this report, which holds experiment ${data.experiment.name}: ` +
          `evalrows report ${other} writes one of its own.`,
      );
      return;
    }
    showMissing("Not in this report", `This report has no page at #${path}.`);
  }

  // The pre-rendered experiment view's own controls: sorting buttons and the filters form.
  main.addEventListener("click", (event) => {
    const button = event.target.closest("th[data-sort-key] button");
    if (button && main.contains(button)) sortBy(button.closest("th").dataset.sortKey);
    // A link to where the page already is changes no hash: show it again all the same (the
    // filters' Clear puts back the fields typed into and not submitted).
    const link = event.target.closest('a[href^="#"]');
    if (link && link.getAttribute("href") === location.hash) route().catch(reportFailure);
  });
  main.addEventListener("submit", (event) => {
    if (event.target.id === "filters") submitFilters(event);
  });
  window.addEventListener("hashchange", () => {
    route()
      .then(focusHeading)
      .catch(reportFailure);
  });

  // After a move to another view, its heading has the focus (where a screen reader starts
  // reading, as on a new page); a new query of the rows table keeps it where it was.
  let focusedView = shownView;
  function focusHeading() {
    if (shownView === "experiment" && focusedView === "experiment") return;
    focusedView = shownView;
    const heading = main.querySelector("h1");
    if (heading === null) return;
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }

  function reportFailure(error) {
    showMissing("This page could not be shown", String(error && error.message ? error.message : error));
  }

  route().catch(reportFailure);
})();
