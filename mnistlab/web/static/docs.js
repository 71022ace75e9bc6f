// Renders /openapi.json as a readable page: endpoints, request fields, responses, examples.
"use strict";

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

function resolve(spec, schema) {
  let s = schema || {};
  for (let i = 0; i < 10 && s.$ref; i++) {
    const path = s.$ref.replace(/^#\//, "").split("/");
    s = path.reduce((o, k) => (o ? o[k] : undefined), spec) || {};
  }
  return s;
}

function typeOf(spec, schema) {
  const s = resolve(spec, schema);
  if (s.anyOf) return s.anyOf.map((x) => typeOf(spec, x)).join(" | ");
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (s.type === "array") return `array of ${typeOf(spec, s.items)}`;
  if (s.format === "binary") return "file";
  return s.type || "object";
}

function fieldsTable(spec, schema) {
  const s = resolve(spec, schema);
  const props = s.properties || {};
  const required = new Set(s.required || []);
  const table = el("table", { class: "fields" }, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "")));
  for (const [name, p] of Object.entries(props)) {
    const r = resolve(spec, p);
    const bits = [];
    if (r.description) bits.push(r.description);
    if (r.default !== undefined && r.default !== null) bits.push(`default ${JSON.stringify(r.default)}`);
    for (const [k, label] of [["minimum", "≥"], ["exclusiveMinimum", ">"], ["maximum", "≤"]]) {
      if (r[k] !== undefined) bits.push(`${label} ${r[k]}`);
    }
    table.append(el("tr", {}, el("td", {}, el("code", {}, name + (required.has(name) ? " *" : ""))), el("td", {}, typeOf(spec, p)), el("td", {}, bits.join("; "))));
  }
  return table;
}

async function main() {
  const spec = await (await fetch("/openapi.json")).json();
  document.title = `${spec.info.title} ${spec.info.version} · JSON API`;
  const root = document.getElementById("endpoints");
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const card = el("section", { class: "card endpoint", id: `${method}-${path}` });
      card.append(el("h2", {}, el("span", { class: `method ${method}` }, method.toUpperCase()), el("code", {}, path)));
      if (op.summary) card.append(el("p", {}, el("strong", {}, op.summary)));
      if (op.description) card.append(el("p", { class: "desc" }, op.description));
      for (const p of op.parameters || []) {
        card.append(el("p", { class: "small" }, el("code", {}, `${p.name}`), ` (${p.in}, ${typeOf(spec, p.schema)}): ${p.description || ""}`));
      }
      const body = op.requestBody && op.requestBody.content;
      if (body) {
        for (const [kind, media] of Object.entries(body)) {
          card.append(el("h3", {}, `request: ${kind}`), fieldsTable(spec, media.schema));
        }
      }
      const codes = Object.entries(op.responses || {}).map(([code, r]) => `${code} ${r.description || ""}`);
      card.append(el("p", { class: "small muted" }, `responses: ${codes.join(" · ")}`));
      const ok = op.responses && op.responses["200"] && op.responses["200"].content;
      const example = ok && ok["application/json"] && ok["application/json"].example;
      if (example) {
        // arrays of numbers on one line each
        const text = JSON.stringify(example, null, 2).replace(/\[\s+([-\d.,\s]+?)\s+\]/g, (m, inner) => `[${inner.replace(/\s+/g, " ")}]`);
        card.append(el("pre", {}, text));
      }
      root.append(card);
    }
  }
}

main().catch((e) => {
  document.getElementById("endpoints").textContent = `cannot read /openapi.json: ${e.message}`;
});
