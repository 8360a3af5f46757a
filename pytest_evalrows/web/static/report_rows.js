// The rows table's rules for the one-file report, as the served page has them: the query
// string read and written back (web/view_query.py's parse_query and query_params), rows
// filtered, sorted and paged (its select_rows), and numbers shown as render.py's filters show
// them. Pure: no DOM. report.js draws the table with it.
"use strict";

// The rules over one report's data (its #rows-data index).
function evalrowsRows(data) {
  const COLUMN = Object.fromEntries(data.columns.map((name, index) => [name, index]));
  const rows = data.rows;
  const scoreNames = data.scoreNames;
  const SORT_KEYS = data.sortKeys;
  const STATUSES = data.statuses;
  const PAGE_SIZE = data.pageSize;
  // A score read back may differ from the bound typed in its last bits: still within it.
  const SAME = 1e-9;
  // -- formatting: as render.py's filters do -------------------------------------------------

  // Python's format() rounds a value exactly halfway (only dyadic ones can be) to even;
  // toFixed rounds it up. Every other value rounds the same in both.
  function fixed(value, digits) {
    const halves = value * 2 ** (digits + 1);
    if (Number.isInteger(halves) && Math.abs(halves) % 2 === 1) {
      let whole = Math.floor(Math.abs(value) * 10 ** digits);
      if (whole % 2 === 1) whole += 1;
      return (value < 0 ? "-" : "") + (whole / 10 ** digits).toFixed(digits);
    }
    return value.toFixed(digits);
  }

  function grouped(text) {
    const [whole, fraction] = text.split(".");
    const sign = whole.startsWith("-") ? "-" : "";
    const digits = sign ? whole.slice(1) : whole;
    const withCommas = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return sign + withCommas + (fraction === undefined ? "" : "." + fraction);
  }

  const format = {
    number(value, integer = true) {
      if (value === null || value === undefined) return "—";
      return integer ? grouped(String(Math.trunc(value))) : grouped(fixed(value, 2));
    },
    duration(seconds) {
      if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
      seconds = Math.max(seconds, 0);
      if (seconds < 0.01) return `${fixed(seconds * 1000, 1)} ms`;
      if (seconds < 1) return `${fixed(seconds * 1000, 0)} ms`;
      if (seconds < 60) return `${fixed(seconds, 2)} s`;
      const whole = pythonRound(seconds);
      if (whole < 3600) return `${Math.floor(whole / 60)} min ${whole % 60} s`;
      return `${Math.floor(whole / 3600)} h ${Math.floor((whole % 3600) / 60)} min`;
    },
    score(value) {
      return value === null || value === undefined ? "" : fixed(value, 3);
    },
  };

  function pythonRound(value) {
    const floor = Math.floor(value);
    const rest = value - floor;
    if (rest > 0.5) return floor + 1;
    if (rest < 0.5) return floor;
    return floor % 2 === 0 ? floor : floor + 1;
  }

  // Python's str.casefold() of the query: the index holds each row's search text casefolded
  // by Python (RowLine.search_text), so the query must fold to the same text. JavaScript has
  // no casefold. Upper then lower case folds most of what toLowerCase alone leaves as it is
  // ("ß" to "ss", ligatures such as "ﬁ", "ſ", "µ", the Greek symbol letters and iota
  // subscripts); then what that gets wrong is put right: "ẞ" lowers to "ß" (casefold: "ss"),
  // a sigma ending a word lowers to "ς" (casefold: "σ" everywhere), dotless "ı" uppers to "I"
  // (casefold keeps it), and Cherokee lowers to its small letters (casefold: its capitals).
  // What remains: a character one side's Unicode tables know and the other's do not (the
  // browser's are often newer than Python's), which the two may fold differently.
  const CHEROKEE_SMALL = /[\u13F8-\u13FD\uAB70-\uABBF]/g;

  function folded(text) {
    return text
      .split("\u0131") // dotless i
      .map((part) => part.toUpperCase().toLowerCase())
      .join("\u0131")
      .replace(/\u00DF/g, "ss") // sharp s
      .replace(/\u03C2/g, "\u03C3") // final sigma to sigma
      .replace(CHEROKEE_SMALL, (letter) => letter.toUpperCase());
  }

  // -- the query: web/view_query.py's parse_query and query_params ---------------------------

  class BadQuery extends Error {}

  function parseQuery(params) {
    const values = (name) => params.getAll(name).filter((value) => value.trim());
    const last = (name) => {
      const found = values(name);
      return found.length ? found[found.length - 1].trim() : null;
    };
    const numberOf = (name) => {
      const text = last(name);
      if (text === null) return null;
      // Python's float() of a decimal; "inf" and "nan" are not within any range either.
      const value = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text) ? Number(text) : NaN;
      if (!Number.isFinite(value)) {
        throw new BadQuery(`${name} '${text}' is not a number (a score is from 0 to 1)`);
      }
      return value;
    };
    const wanted = values("status");
    for (const status of wanted) {
      if (!STATUSES.includes(status)) {
        throw new BadQuery(`status '${status}' is not one of: ${STATUSES.join(", ")}`);
      }
    }
    const statuses = STATUSES.filter((status) => wanted.includes(status));
    const text = (last("q") || "").trim();
    const score = last("score");
    const low = numberOf("min");
    const high = numberOf("max");
    if ((low !== null || high !== null) && score === null) {
      throw new BadQuery("min and max need a score: choose one with score=NAME");
    }
    if (low !== null && high !== null && low > high) {
      throw new BadQuery(`min (${low}) is greater than max (${high})`);
    }
    const sort = last("sort") || "row_id";
    if (!SORT_KEYS.includes(sort) && !(sort.startsWith("score:") && sort.length > 6)) {
      throw new BadQuery(
        `sort '${sort}' is not one of: ${SORT_KEYS.join(", ")}, or score:NAME for a score`,
      );
    }
    const order = last("order") || "asc";
    if (order !== "asc" && order !== "desc") {
      throw new BadQuery(`order '${order}' is not one of: asc, desc`);
    }
    // A score the query names must be one some row has (views._check_scores).
    for (const name of [score, sort.startsWith("score:") ? sort.slice(6) : null]) {
      if (name !== null && !scoreNames.includes(name)) {
        const valid = scoreNames.length ? scoreNames.join(", ") : "none: no row has a score";
        throw new BadQuery(`score '${name}' is not one of this experiment's scores: ${valid}`);
      }
    }
    const pageText = last("page");
    let page = 1;
    if (pageText !== null) {
      page = /^\s*[+-]?\d+\s*$/.test(pageText) ? parseInt(pageText, 10) : 0;
      if (page < 1) throw new BadQuery(`page '${pageText}' is not a page number: 1, 2, 3 ...`);
    }
    return { statuses, text, score, low, high, sort, descending: order === "desc", page };
  }

  const DEFAULT_QUERY = parseQuery(new URLSearchParams());

  function queryParams(query, changes = {}) {
    const q = { ...query, ...changes };
    const found = new URLSearchParams();
    for (const status of q.statuses) found.append("status", status);
    if (q.text) found.append("q", q.text);
    if (q.score !== null) found.append("score", q.score);
    if (q.low !== null) found.append("min", String(q.low));
    if (q.high !== null) found.append("max", String(q.high));
    if (q.sort !== "row_id") found.append("sort", q.sort);
    if (q.descending) found.append("order", "desc");
    if (q.page !== 1) found.append("page", String(q.page));
    return found;
  }

  // -- rows: filtered, sorted, paged (web/view_query.py's select_rows) -----------------------

  function filterRows(query) {
    const statuses = new Set(query.statuses);
    const text = folded(query.text);
    const scoreIndex = query.score === null ? -1 : scoreNames.indexOf(query.score);
    const ranged = query.score !== null && (query.low !== null || query.high !== null);
    const low = query.low === null ? -Infinity : query.low - SAME;
    const high = query.high === null ? Infinity : query.high + SAME;
    const found = [];
    for (let index = 0; index < rows.length; index++) {
      const row = rows[index];
      if (statuses.size && !statuses.has(row[COLUMN.status])) continue;
      if (text && !row[COLUMN.search].includes(text)) continue;
      if (ranged) {
        const value = scoreIndex < 0 ? null : row[COLUMN.scores][scoreIndex];
        if (value === null || !(low <= value && value <= high)) continue;
      }
      found.push(index);
    }
    return found;
  }

  function sortValue(sort) {
    if (sort.startsWith("score:")) {
      const scoreIndex = scoreNames.indexOf(sort.slice(6));
      return (index) => (scoreIndex < 0 ? null : rows[index][COLUMN.scores][scoreIndex]);
    }
    const column = sort === "attempt" ? COLUMN.attempt_id : COLUMN[sort];
    return (index) => rows[index][column];
  }

  // The index is in row id order, so a row's position is its row id's rank.
  function sortRows(indexes, query) {
    if (query.sort === "row_id") return query.descending ? indexes.slice().reverse() : indexes;
    const value = sortValue(query.sort);
    const having = indexes.filter((index) => value(index) !== null);
    const lacking = indexes.filter((index) => value(index) === null);
    const sign = query.descending ? -1 : 1;
    // A stable sort: equal values keep row id order, in both orders.
    having.sort((a, b) => {
      const x = value(a);
      const y = value(b);
      return x < y ? -sign : x > y ? sign : 0;
    });
    return having.concat(lacking);
  }

  function selectRows(query) {
    const matched = sortRows(filterRows(query), query);
    const pages = Math.max(1, Math.ceil(matched.length / PAGE_SIZE));
    const page = Math.min(query.page, pages);
    const start = (page - 1) * PAGE_SIZE;
    return { shown: matched.slice(start, start + PAGE_SIZE), matched: matched.length, pages, page };
  }

  return {
    BadQuery,
    format,
    folded,
    parseQuery,
    queryParams,
    selectRows,
    DEFAULT_QUERY,
    COLUMN,
  };
}
