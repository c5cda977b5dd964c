// The visual rule editor: a list of conditions joined by "and" or "or",
// each of one kind (event count in a window, sum of a property, trait
// equals / in, in_audience, funnel, a prediction), written out as rule text
// (docs/rules.md). toRule is pure: the browser test checks what it writes
// through the preview API's answer.
import { h } from "./ui.js";

export const kinds = {
  count: { label: "Event count", fields: { event: "Order Completed", op: ">=", value: "1", window: "30d" } },
  sum: { label: "Sum of a property", fields: { event: "Order Completed", property: "revenue", op: ">=", value: "100", window: "365d" } },
  trait_eq: { label: "Trait equals", fields: { trait: "country", value: "DK" } },
  trait_in: { label: "Trait is one of", fields: { trait: "loyalty_tier", values: "gold, platinum" } },
  in_audience: { label: "In audience", fields: { audience: "", negate: "" } },
  funnel: { label: "Funnel", fields: { steps: "Product Viewed, Product Added", within: "2h" } },
  prediction: { label: "Prediction", fields: { prediction: "churn_risk", op: ">", value: "0.7" } },
};

const ops = [">=", ">", "==", "!=", "<", "<="];
const windows = ["", "1h", "24h", "7d", "30d", "90d", "180d", "365d"];
const predictionNames = ["churn_risk", "p_alive", "clv", "expected_purchases"];

const str = (s) => JSON.stringify(String(s));
const num = (s) => {
  const t = String(s).trim();
  return /^-?\d+(\.\d+)?$/.test(t) ? t : str(t);
};
const path = (s) => String(s).trim().split(".").map((p) => (/^[A-Za-z_]\w*$/.test(p) ? p : str(p))).join(".");
const list = (s) => String(s).split(",").map((x) => x.trim()).filter(Boolean);
const literal = (s) => {
  const t = String(s).trim();
  if (/^-?\d+(\.\d+)?$/.test(t) || t === "true" || t === "false") return t;
  return str(t);
};

// condition writes one condition as rule text.
export function condition(c) {
  const f = c.fields;
  switch (c.kind) {
    case "count":
      return `count(${str(f.event)}${f.window ? ", " + str(f.window) : ""}) ${f.op} ${num(f.value)}`;
    case "sum":
      return `sum(${str(f.event)}, ${str(f.property)}${f.window ? ", " + str(f.window) : ""}) ${f.op} ${num(f.value)}`;
    case "trait_eq":
      return `traits.${path(f.trait)} == ${literal(f.value)}`;
    case "trait_in":
      return `traits.${path(f.trait)} in [${list(f.values).map(literal).join(", ")}]`;
    case "in_audience":
      return `${f.negate ? "not " : ""}in_audience(${str(f.audience)})`;
    case "funnel":
      return `funnel([${list(f.steps).map(str).join(", ")}], ${str(f.within)})`;
    case "prediction":
      return `predictions.${path(f.prediction)} ${f.op} ${num(f.value)}`;
    default:
      throw new Error(`unknown condition kind ${c.kind}`);
  }
}

// toRule joins the conditions with join ("and" or "or").
export function toRule(conds, join) {
  const parts = conds.map(condition);
  if (join === "or" && parts.length > 1) return parts.map((p) => `(${p})`).join(" or ");
  return parts.join(" and ");
}

export function newCondition(kind) {
  return { kind, fields: { ...kinds[kind].fields } };
}

// editor draws the visual editor for state {conds, join}; onChange runs
// after every edit.
export function editor(state, onChange, audienceNames = []) {
  const root = h("div", { class: "builder", testid: "builder" });
  const redraw = () => {
    const input = (c, k, attrs = {}) => h("input", {
      value: c.fields[k], "aria-label": k, testid: `cond-${k}`, size: attrs.size || 14,
      oninput: (ev) => { c.fields[k] = ev.target.value; onChange(); },
    });
    const select = (c, k, options) => h("select", {
      "aria-label": k, testid: `cond-${k}`,
      onchange: (ev) => { c.fields[k] = ev.target.value; onChange(); },
    }, options.map((o) => h("option", { value: o, selected: c.fields[k] === o }, o === "" ? "(all time)" : o)));
    const fieldsOf = (c) => {
      switch (c.kind) {
        case "count": return ["count of", input(c, "event", { size: 18 }), "in", select(c, "window", windows), select(c, "op", ops), input(c, "value", { size: 6 })];
        case "sum": return ["sum of", input(c, "property", { size: 10 }), "over", input(c, "event", { size: 18 }), "in", select(c, "window", windows), select(c, "op", ops), input(c, "value", { size: 8 })];
        case "trait_eq": return ["trait", input(c, "trait", { size: 12 }), "=", input(c, "value", { size: 12 })];
        case "trait_in": return ["trait", input(c, "trait", { size: 12 }), "is one of", input(c, "values", { size: 24 })];
        case "in_audience": {
          if (!c.fields.audience && audienceNames.length) c.fields.audience = audienceNames[0];
          return [h("label", {}, h("input", { type: "checkbox", checked: !!c.fields.negate, onchange: (ev) => { c.fields.negate = ev.target.checked ? "1" : ""; onChange(); } }), " not"),
            "in audience", audienceNames.length ? select(c, "audience", audienceNames) : input(c, "audience")];
        }
        case "funnel": return ["steps", input(c, "steps", { size: 30 }), "within", input(c, "within", { size: 5 })];
        case "prediction": return ["prediction", select(c, "prediction", predictionNames), select(c, "op", ops), input(c, "value", { size: 6 })];
      }
      return [];
    };
    root.replaceChildren(
      h("p", {}, "People matching ",
        h("select", { testid: "builder-join", onchange: (ev) => { state.join = ev.target.value; onChange(); } },
          h("option", { value: "and", selected: state.join !== "or" }, "all"), h("option", { value: "or", selected: state.join === "or" }, "any")),
        " of these conditions:"),
      h("ol", { class: "conds" }, state.conds.map((c, i) => h("li", { class: "cond", testid: "condition" },
        h("select", { testid: "cond-kind", "aria-label": "kind", onchange: (ev) => { state.conds[i] = newCondition(ev.target.value); redraw(); onChange(); } },
          Object.entries(kinds).map(([k, v]) => h("option", { value: k, selected: c.kind === k }, v.label))),
        " ", fieldsOf(c), " ",
        h("button", { type: "button", class: "link", testid: "cond-remove", onclick: () => { state.conds.splice(i, 1); redraw(); onChange(); } }, "remove")))),
      h("button", { type: "button", testid: "cond-add", onclick: () => { state.conds.push(newCondition("count")); redraw(); onChange(); } }, "+ condition"));
  };
  redraw();
  return { el: root, redraw };
}
