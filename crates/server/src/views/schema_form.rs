//! A form for any pack's JSON Schema, and the posted form read back as content.
//!
//! [`fields_html`] turns a schema (draft 2020-12, as the packs write them:
//! `type`, `properties`, `required`, `items`, `enum`, `const`, `format`,
//! `minimum`/`maximum`, `maxLength`, `uniqueItems`, `allOf` of `if`/`then`)
//! and the current content into the fields of an HTML form: one fieldset per
//! top-level object, nested fieldsets for nested objects, one labelled input
//! per value, repeatable rows for arrays (with an "Add a row" submit button the
//! page answers by showing the form again with one more row), checkbox groups
//! for arrays of distinct enum values. It works without script; a script may
//! hide the conditional sections that do not apply (`hidden-when-js`).
//!
//! [`value_from_form`] reads the posted pairs back: every field's name is
//! [`PREFIX`] and the JSON Pointer of its value (`f:/phases/0/name`), so the
//! content is rebuilt by pointer and each value typed by the schema at its
//! pointer. Empty inputs are left out, removed rows close up, and a value that
//! does not parse as its type is kept as typed so the schema check reports it
//! at its field.
//!
//! Conditional sections: a top-level `allOf` entry `{if: {properties: {a:
//! {properties: {b: {const: v}}}}}, then: {required: [x]}}` makes section `x`
//! conditional on `/a/b == v` ([`conditions`], [`applies`]). Its inputs never
//! carry the `required` attribute, so an unused section never blocks the post.
//! The same shape inside a nested object (the criteria of the onboarding and
//! migration packs) gives its fields a note ("Required when Kind is Metric.").
//!
//! Errors ([`FieldMessage`], e.g. from `TypeDef::check`) are shown at their
//! field; those that match no field are listed at the top.
//!
//! Pure: JSON in, escaped HTML out. Every string from the schema or the content
//! goes through [`esc`]; no inline style or script.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;
use std::sync::OnceLock;

use serde_json::{Map, Number, Value};

use super::document::{anchor_of, esc, humanize, pointer_token};

/// The field names of the form are JSON Pointers prefixed with `f:` (e.g.
/// `f:/client_identity/website`, `f:/competitors/2`, `f:/phases/0/name`).
pub const PREFIX: &str = "f:";

/// One error or warning placed at a field: a JSON Pointer into the content
/// (e.g. `/client_identity/website`, or `/content/client_identity/website` as
/// the API reports it) and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMessage {
    pub pointer: String,
    pub message: String,
}

impl From<&waymark_domain::FieldError> for FieldMessage {
    fn from(e: &waymark_domain::FieldError) -> Self {
        Self {
            pointer: e.pointer.clone(),
            message: e.message.clone(),
        }
    }
}

/// A section that the schema requires only when a value elsewhere has a given
/// value: `allOf: [{if: …, then: {required: [section]}}]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The property the `then` requires (`hiring`), a key of the object that
    /// holds the `allOf` (the root for [`conditions`]).
    pub section: String,
    /// Where the tested value is (`/goals_constraints/objective`).
    pub pointer: String,
    /// The value that makes the section required (`"hiring"`).
    pub value: Value,
    /// The condition as people read it: the tested property's title and the
    /// value (`Primary objective is Hiring`).
    pub label: String,
}

/// The conditional sections of `schema`'s top level. An `if` is understood
/// when it tests one property (nested through `properties`, with `required`
/// along the way, as every pack writes it) against a `const` (one condition)
/// or an `enum` (one condition per value: any of them makes the section
/// required). Other shapes of `if` are ignored: their section is a plain one.
pub fn conditions(schema: &Value) -> Vec<Condition> {
    local_conditions(schema, "")
}

/// Whether `c` holds for `value` (the whole content): the tested property is
/// there and equals the condition's value.
pub fn applies(c: &Condition, value: &Value) -> bool {
    value.pointer(&c.pointer).is_some_and(|v| v == &c.value)
}

/// The form's fields (fieldsets, labels, inputs) for `schema`, filled with
/// `value`; `errors` shown at their fields (the input gets
/// `aria-invalid="true"` and `aria-describedby` naming the message), those
/// matching no field listed at the top; `extra_rows` (array pointer → number
/// of empty rows to show after the existing ones, 1 when absent) for
/// repeatable rows.
pub fn fields_html(
    schema: &Value,
    value: &Value,
    errors: &[FieldMessage],
    extra_rows: &HashMap<String, usize>,
) -> String {
    let mut ctx = Ctx {
        root: value,
        errors: error_map(errors),
        extra_rows,
        ids: HashSet::new(),
    };
    let mut body = String::new();
    if properties(schema).is_some() {
        object_fields(&mut body, &mut ctx, schema, value, "", true, true);
    } else {
        let f = Field {
            pointer: String::new(),
            key: "content".into(),
            label: title_or(schema, "content"),
            help: description(schema),
            required_mark: false,
            required_attr: false,
            row: false,
            described_by: vec![],
        };
        property(&mut body, &mut ctx, &f, schema, value, false, &[]);
    }
    let mut out = String::new();
    if !ctx.errors.is_empty() {
        out.push_str(
            "<div class=\"form-errors\" role=\"alert\"><p>Problems with the content:</p><ul>",
        );
        for (pointer, messages) in &ctx.errors {
            let where_ = pointer_label(schema, pointer);
            for m in messages {
                let _ = write!(
                    out,
                    "<li><strong>{}</strong>: {}</li>",
                    esc(&where_),
                    esc(m)
                );
            }
        }
        out.push_str("</ul></div>");
    }
    out.push_str(&body);
    out
}

/// The content the posted pairs describe, typed by the schema (integers,
/// numbers, booleans, enums, arrays of strings or of objects, nested objects).
///
/// Only names starting with [`PREFIX`] are read (not the CSRF token, `_add`
/// and the like); the last value of a name wins (a ticked checkbox follows its
/// hidden `false`). Empty inputs are left out, array indices close up in
/// order, and an object left with no keys (or with nothing but unticked
/// checkboxes) is left out too; an empty form is `{}`. A value that does not
/// parse as its declared type (`abc` for an integer) is kept as the string.
pub fn value_from_form(schema: &Value, pairs: &[(String, String)]) -> Value {
    let mut root = Node::Tree(BTreeMap::new());
    for (name, text) in pairs {
        let Some(pointer) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(tokens) = pointer_tokens(pointer) else {
            continue;
        };
        root.insert(&tokens, text.replace("\r\n", "\n"));
    }
    build(&root, Some(schema), true).unwrap_or_else(|| Value::Object(Map::new()))
}

// ---------------------------------------------------------------------------
// Schema helpers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
    Boolean,
    Integer,
    Number,
    String,
    Unknown,
}

fn type_name(schema: &Value) -> Option<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => Some(t),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

fn kind(schema: &Value) -> Kind {
    match type_name(schema) {
        Some("object") => Kind::Object,
        Some("array") => Kind::Array,
        Some("boolean") => Kind::Boolean,
        Some("integer") => Kind::Integer,
        Some("number") => Kind::Number,
        Some("string") => Kind::String,
        Some(_) => Kind::Unknown,
        None if properties(schema).is_some() => Kind::Object,
        None if schema.get("items").is_some_and(Value::is_object) => Kind::Array,
        None => Kind::Unknown,
    }
}

fn properties(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

fn items(schema: &Value) -> Option<&Value> {
    schema.get("items").filter(|i| i.is_object())
}

fn enum_values(schema: &Value) -> Option<&Vec<Value>> {
    schema.get("enum").and_then(Value::as_array)
}

fn description(schema: &Value) -> Option<String> {
    schema
        .get("description")
        .and_then(Value::as_str)
        .filter(|d| !d.trim().is_empty())
        .map(str::to_owned)
}

fn title_or(schema: &Value, key: &str) -> String {
    schema
        .get("title")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .map_or_else(|| humanize(key), str::to_owned)
}

/// The schema of `key` in an object schema: its property, else the schema of
/// additional properties.
fn property_schema<'s>(schema: &'s Value, key: &str) -> Option<&'s Value> {
    properties(schema)
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

/// The schema at a pointer relative to `schema`, through properties and items.
fn schema_at<'s>(schema: &'s Value, pointer: &str) -> Option<&'s Value> {
    let mut s = schema;
    for t in pointer_tokens(pointer)? {
        s = match kind(s) {
            Kind::Array => items(s)?,
            _ => property_schema(s, &t)?,
        };
    }
    Some(s)
}

/// The reference tokens of a JSON Pointer, unescaped; `None` when it is not one.
fn pointer_tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(vec![]);
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// The order properties are shown in, in one place.
///
/// The workspace does not enable serde_json's `preserve_order` (no `indexmap`
/// among serde_json's dependencies in Cargo.lock), so a schema's `properties`
/// come back sorted by key, not as the pack wrote them. Then the properties
/// whose title starts with a letter and `)` ("A) Client identity", "B) Offer")
/// come first, sorted by title, and the rest follow in map order. Should the
/// map keep its order one day (checked once at run time), the pack's order is
/// used as it is.
fn ordered_properties(props: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let all: Vec<(&String, &Value)> = props.iter().collect();
    if map_keeps_order() {
        return all;
    }
    let lettered_title = |s: &Value| {
        s.get("title")
            .and_then(Value::as_str)
            .filter(|t| {
                let b = t.as_bytes();
                b.len() >= 2 && b[0].is_ascii_uppercase() && b[1] == b')'
            })
            .map(str::to_owned)
    };
    let (mut lettered, rest): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|(_, s)| lettered_title(s).is_some());
    lettered.sort_by_key(|(_, s)| lettered_title(s));
    lettered.extend(rest);
    lettered
}

/// Whether serde_json's map keeps insertion order (its `preserve_order`
/// feature, which some dependency could turn on).
fn map_keeps_order() -> bool {
    static KEEPS: OnceLock<bool> = OnceLock::new();
    *KEEPS.get_or_init(|| {
        serde_json::from_str::<Map<String, Value>>(r#"{"b":0,"a":0}"#)
            .ok()
            .and_then(|m| m.keys().next().map(|k| k == "b"))
            .unwrap_or(false)
    })
}

/// The conditions of an object schema (its own `if`/`then` and those of its
/// `allOf`), with pointers under `base`.
fn local_conditions(schema: &Value, base: &str) -> Vec<Condition> {
    let mut out = Vec::new();
    let mut consider = |s: &Value| {
        let (Some(when), Some(then)) = (s.get("if"), s.get("then")) else {
            return;
        };
        let Some(required) = then.get("required").and_then(Value::as_array) else {
            return;
        };
        let mut tests = Vec::new();
        leaf_tests(when, "", &mut tests);
        let [(rel, values)] = tests.as_slice() else {
            return;
        };
        let last = pointer_tokens(rel)
            .and_then(|t| t.last().cloned())
            .unwrap_or_default();
        let title = schema_at(schema, rel).map_or_else(|| humanize(&last), |s| title_or(s, &last));
        for section in required.iter().filter_map(Value::as_str) {
            for v in values {
                out.push(Condition {
                    section: section.to_owned(),
                    pointer: format!("{base}{rel}"),
                    value: v.clone(),
                    label: format!("{title} is {}", option_label(v)),
                });
            }
        }
    };
    consider(schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        all.iter().for_each(&mut consider);
    }
    out
}

/// The properties an `if` tests by `const` or `enum`, found through nested
/// `properties`: (relative pointer, the values that pass).
fn leaf_tests(when: &Value, path: &str, out: &mut Vec<(String, Vec<Value>)>) {
    let Some(props) = properties(when) else {
        return;
    };
    for (k, sub) in props {
        let p = format!("{path}/{}", pointer_token(k));
        if let Some(c) = sub.get("const") {
            out.push((p, vec![c.clone()]));
        } else if let Some(e) = enum_values(sub) {
            out.push((p, e.clone()));
        } else {
            leaf_tests(sub, &p, out);
        }
    }
}

/// Where a pointer is, as people read it: `Client identity › Website`.
fn pointer_label(schema: &Value, pointer: &str) -> String {
    let Some(tokens) = pointer_tokens(pointer) else {
        return pointer.to_owned();
    };
    if tokens.is_empty() {
        return "The content".into();
    }
    let mut s = Some(schema);
    let mut parts = Vec::new();
    for t in &tokens {
        let here = s;
        s = here.and_then(|h| match kind(h) {
            Kind::Array => items(h),
            _ => property_schema(h, t),
        });
        let part = match (here.map(kind), t.parse::<usize>()) {
            (Some(Kind::Array), Ok(i)) => format!(
                "{} {}",
                s.map_or_else(|| "Item".into(), |i| title_or(i, "item")),
                i + 1
            ),
            _ => s.map_or_else(|| humanize(t), |x| title_or(x, t)),
        };
        parts.push(part);
    }
    parts.join(" › ")
}

// ---------------------------------------------------------------------------
// Rendering

struct Ctx<'a> {
    /// The whole content, for conditions.
    root: &'a Value,
    /// Messages by pointer (without `/content`), taken as they are placed.
    errors: BTreeMap<String, Vec<String>>,
    extra_rows: &'a HashMap<String, usize>,
    ids: HashSet<String>,
}

impl Ctx<'_> {
    /// A unique id suffix for `pointer`: its letters and digits, the other
    /// characters as `-` (`/client_identity/website` → `client-identity-website`).
    /// Inputs are `f-…`, their help `help-…`, their errors `err-…`.
    fn suffix(&mut self, pointer: &str) -> String {
        let s: String = pointer
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let base = match s.trim_start_matches('-') {
            "" => "root".to_owned(),
            t => t.to_owned(),
        };
        let mut candidate = base.clone();
        let mut n = 2;
        while !self.ids.insert(format!("f-{candidate}")) {
            candidate = format!("{base}-{n}");
            n += 1;
        }
        candidate
    }

    fn unique_section_id(&mut self, pointer: &str) -> String {
        let base = anchor_of(pointer);
        let mut candidate = base.clone();
        let mut n = 2;
        while !self.ids.insert(candidate.clone()) {
            candidate = format!("{base}-{n}");
            n += 1;
        }
        candidate
    }

    fn take_errors(&mut self, pointer: &str) -> Vec<String> {
        self.errors.remove(pointer).unwrap_or_default()
    }

    fn extra(&self, pointer: &str) -> usize {
        self.extra_rows.get(pointer).copied().unwrap_or(1)
    }
}

/// The messages by the pointer of the field they belong to: without a leading
/// `/content`, and a message of the form `"x" is a required property` (the
/// validator's own wording, at the parent object) moved to the child `x`.
/// (Waymark's `TypeDef::check` already reports a missing property at the
/// child's pointer, with the message "is required".)
fn error_map(errors: &[FieldMessage]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in errors {
        let mut pointer = match e.pointer.strip_prefix("/content") {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.to_owned(),
            _ => e.pointer.clone(),
        };
        let missing = e
            .message
            .strip_suffix(" is a required property")
            .and_then(|m| m.strip_prefix('"'))
            .and_then(|m| m.strip_suffix('"'));
        if let Some(name) = missing {
            pointer = format!("{pointer}/{}", pointer_token(name));
        }
        map.entry(pointer).or_default().push(e.message.clone());
    }
    map
}

/// One input's place in the form.
#[derive(Clone)]
struct Field {
    pointer: String,
    /// The property's key (for the label when there is no title, and to tell
    /// short fields from prose).
    key: String,
    label: String,
    help: Option<String>,
    /// "(required)" in the label.
    required_mark: bool,
    /// The `required` attribute on the input.
    required_attr: bool,
    /// A row of a repeatable array: a one-line input unless long text is allowed.
    row: bool,
    /// Ids of text about the field outside it (a row's array help).
    described_by: Vec<String>,
}

fn error_ids(suffix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i {
            0 => format!("err-{suffix}"),
            i => format!("err-{suffix}-{}", i + 1),
        })
        .collect()
}

fn errors_html(ids: &[String], messages: &[String]) -> String {
    let mut out = String::new();
    for (id, m) in ids.iter().zip(messages) {
        let _ = write!(out, "<p class=\"field-error\" id=\"{id}\">{}</p>", esc(m));
    }
    out
}

fn label_text(label: &str, required: bool) -> String {
    if required {
        format!("{} <span class=\"req\">(required)</span>", esc(label))
    } else {
        esc(label)
    }
}

/// The fields of an object schema's properties, in [`ordered_properties`]
/// order. `may_require`: the object itself must be there (its ancestors are
/// required and none is conditional or an array item), so its required
/// properties get the `required` attribute.
fn object_fields(
    out: &mut String,
    ctx: &mut Ctx,
    schema: &Value,
    value: &Value,
    pointer: &str,
    may_require: bool,
    top: bool,
) {
    let Some(props) = properties(schema) else {
        return;
    };
    let required: HashSet<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let conds = local_conditions(schema, pointer);
    for (key, sub) in ordered_properties(props) {
        let p = format!("{pointer}/{}", pointer_token(key));
        let v = value.get(key.as_str()).unwrap_or(&Value::Null);
        let is_required = required.contains(key.as_str());
        let mine: Vec<Condition> = conds
            .iter()
            .filter(|c| &c.section == key)
            .cloned()
            .collect();
        let f = Field {
            pointer: p,
            key: key.clone(),
            label: title_or(sub, key),
            help: description(sub),
            required_mark: is_required,
            required_attr: may_require && is_required && mine.is_empty(),
            row: false,
            described_by: vec![],
        };
        property(out, ctx, &f, sub, v, top, &mine);
    }
}

/// How a group (fieldset) looks: its classes, id, extra attributes and note.
struct Group {
    classes: String,
    section_id: Option<String>,
    /// Extra attributes, already escaped (` data-when-pointer="…"`).
    attrs: String,
    note: Option<String>,
}

/// One property: a group for objects and arrays, a field for the rest.
/// `top`: a property of the root object (a form section when it is an
/// object, an array or conditional); `conds`: the conditions that make it
/// required.
fn property(
    out: &mut String,
    ctx: &mut Ctx,
    f: &Field,
    schema: &Value,
    value: &Value,
    top: bool,
    conds: &[Condition],
) {
    let mut group = Group {
        classes: if top {
            "form-section".into()
        } else {
            "group".into()
        },
        section_id: None,
        attrs: String::new(),
        note: None,
    };
    if !conds.is_empty() {
        let holding: Vec<&Condition> = conds.iter().filter(|c| applies(c, ctx.root)).collect();
        let labels = |cs: &[&Condition]| {
            cs.iter()
                .map(|c| c.label.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        };
        group.classes.push_str(" conditional");
        if let (true, Some(first)) = (top, conds.first()) {
            let _ = write!(
                group.attrs,
                " data-when-pointer=\"{}\" data-when-value=\"{}\"",
                esc(&first.pointer),
                esc(&option_value(&first.value))
            );
            if holding.is_empty() {
                group.classes.push_str(" hidden-when-js");
                let all: Vec<&Condition> = conds.iter().collect();
                group.note = Some(format!("Fill this section when {}.", labels(&all)));
            } else {
                group.classes.push_str(" applies");
                group.note = Some(format!("This section applies: {}.", labels(&holding)));
            }
        } else {
            let all: Vec<&Condition> = conds.iter().collect();
            group.note = Some(format!("Required when {}.", labels(&all)));
        }
    }
    let children_may_require = f.required_attr;
    let is_object = properties(schema).is_some() && matches!(value, Value::Null | Value::Object(_));
    let is_array = kind(schema) == Kind::Array && matches!(value, Value::Null | Value::Array(_));
    if top && (is_object || is_array || !conds.is_empty()) {
        group.section_id = Some(ctx.unique_section_id(&f.pointer));
    }
    if is_object {
        open_group(
            out,
            ctx,
            &f.pointer,
            &group,
            &f.label,
            f.required_mark,
            f.help.as_deref(),
        );
        object_fields(
            out,
            ctx,
            schema,
            value,
            &f.pointer,
            children_may_require,
            false,
        );
        out.push_str("</fieldset>");
    } else if is_array {
        array_group(out, ctx, f, schema, value, group);
    } else if top && !conds.is_empty() {
        // A conditional scalar section: the field inside the section's fieldset.
        open_group(out, ctx, &f.pointer, &group, &f.label, false, None);
        scalar_field(out, ctx, f, schema, value);
        out.push_str("</fieldset>");
    } else if let Some(note) = group.note.filter(|_| !conds.is_empty()) {
        let mut with_note = Field {
            help: Some(match &f.help {
                Some(h) => format!("{h} {note}"),
                None => note,
            }),
            ..f.clone()
        };
        with_note.required_attr = false;
        scalar_field(out, ctx, &with_note, schema, value);
    } else {
        scalar_field(out, ctx, f, schema, value);
    }
}

/// Opens a fieldset: legend, help, note and the errors at its pointer.
/// Returns the id of its help text, if any.
fn open_group(
    out: &mut String,
    ctx: &mut Ctx,
    pointer: &str,
    g: &Group,
    legend: &str,
    required_mark: bool,
    help: Option<&str>,
) -> Option<String> {
    let sfx = ctx.suffix(pointer);
    let errs = ctx.take_errors(pointer);
    let err_ids = error_ids(&sfx, errs.len());
    let help_id = help.map(|_| format!("help-{sfx}"));
    let note_id = g.note.as_ref().map(|_| format!("note-{sfx}"));
    let described: Vec<String> = help_id
        .iter()
        .chain(note_id.iter())
        .chain(err_ids.iter())
        .cloned()
        .collect();
    let _ = write!(out, "<fieldset class=\"{}\"", esc(&g.classes));
    if let Some(id) = &g.section_id {
        let _ = write!(out, " id=\"{}\"", esc(id));
    }
    out.push_str(&g.attrs);
    if !described.is_empty() {
        let _ = write!(out, " aria-describedby=\"{}\"", described.join(" "));
    }
    let _ = write!(
        out,
        "><legend>{}</legend>",
        label_text(legend, required_mark)
    );
    if let (Some(id), Some(h)) = (&help_id, help) {
        let _ = write!(out, "<p class=\"help\" id=\"{id}\">{}</p>", esc(h));
    }
    if let (Some(id), Some(n)) = (&note_id, &g.note) {
        let _ = write!(out, "<p class=\"note\" id=\"{id}\">{}</p>", esc(n));
    }
    out.push_str(&errors_html(&err_ids, &errs));
    help_id
}

fn add_row_button(out: &mut String, pointer: &str, label: &str) {
    let _ = write!(
        out,
        "<button type=\"submit\" name=\"_add\" value=\"{}\" formnovalidate aria-label=\"Add a row to {}\">Add a row</button>",
        esc(pointer),
        esc(label)
    );
}

/// An array: a checkbox group for distinct enum values, else one row per item
/// plus the extra empty rows and an "Add a row" button.
fn array_group(
    out: &mut String,
    ctx: &mut Ctx,
    f: &Field,
    schema: &Value,
    value: &Value,
    mut group: Group,
) {
    let empty = Value::Object(Map::new());
    let item_schema = items(schema).unwrap_or(&empty);
    let current: &[Value] = value.as_array().map_or(&[], Vec::as_slice);
    let distinct = schema.get("uniqueItems").and_then(Value::as_bool) == Some(true);
    if let (Some(options), true) = (enum_values(item_schema), distinct) {
        group.classes.push_str(" checks");
        let help_id = open_group(
            out,
            ctx,
            &f.pointer,
            &group,
            &f.label,
            f.required_mark,
            f.help.as_deref(),
        );
        checkboxes(out, ctx, f, options, current, help_id);
        out.push_str("</fieldset>");
        return;
    }
    group.classes.push_str(" rows");
    let help_id = open_group(
        out,
        ctx,
        &f.pointer,
        &group,
        &f.label,
        f.required_mark,
        f.help.as_deref(),
    );
    let item_title = title_or(item_schema, "item");
    let count = current.len() + ctx.extra(&f.pointer);
    for i in 0..count {
        let p = format!("{}/{i}", f.pointer);
        let v = current.get(i).unwrap_or(&Value::Null);
        let label = format!("{item_title} {}", i + 1);
        let item_is_object =
            properties(item_schema).is_some() && matches!(v, Value::Null | Value::Object(_));
        let item_is_array =
            kind(item_schema) == Kind::Array && matches!(v, Value::Null | Value::Array(_));
        if item_is_object {
            let g = Group {
                classes: "item".into(),
                section_id: None,
                attrs: String::new(),
                note: None,
            };
            open_group(out, ctx, &p, &g, &label, false, None);
            object_fields(out, ctx, item_schema, v, &p, false, false);
            out.push_str("</fieldset>");
        } else if item_is_array {
            let row = Field {
                pointer: p,
                key: f.key.clone(),
                label,
                help: None,
                required_mark: false,
                required_attr: false,
                row: true,
                described_by: vec![],
            };
            let g = Group {
                classes: String::new(),
                section_id: None,
                attrs: String::new(),
                note: None,
            };
            array_group(out, ctx, &row, item_schema, v, g);
        } else {
            let row = Field {
                pointer: p,
                key: f.key.clone(),
                label,
                help: None,
                required_mark: false,
                required_attr: false,
                row: true,
                described_by: help_id.iter().cloned().collect(),
            };
            scalar_field(out, ctx, &row, item_schema, v);
        }
    }
    add_row_button(out, &f.pointer, &f.label);
    out.push_str("</fieldset>");
}

/// One checkbox per enum value, in the schema's order. A ticked box is named by
/// its value's index in the content (`f:/arr/{k}`, where the validator points
/// too), an unticked one by an index after them, so the posted array keeps the
/// content's order and newly ticked values follow it. Values that are not
/// options (or repeat one) follow the options, ticked, so they are kept.
fn checkboxes(
    out: &mut String,
    ctx: &mut Ctx,
    f: &Field,
    options: &[Value],
    current: &[Value],
    help_id: Option<String>,
) {
    // (index in the posted array, value, label text, ticked)
    let mut boxes: Vec<(usize, &Value, String, bool)> = Vec::new();
    let mut next_free = current.len();
    for o in options {
        match current.iter().position(|v| v == o) {
            Some(k) => boxes.push((k, o, option_label(o), true)),
            None => {
                boxes.push((next_free, o, option_label(o), false));
                next_free += 1;
            }
        }
    }
    for (k, v) in current.iter().enumerate() {
        let first = current.iter().position(|w| w == v) == Some(k);
        if !options.contains(v) || !first {
            boxes.push((k, v, text_of(v), true));
        }
    }
    for (index, option, text, checked) in boxes {
        let p = format!("{}/{index}", f.pointer);
        let sfx = ctx.suffix(&p);
        let errs = if checked {
            ctx.take_errors(&p)
        } else {
            Vec::new()
        };
        let err_ids = error_ids(&sfx, errs.len());
        let described: Vec<String> = help_id.iter().chain(err_ids.iter()).cloned().collect();
        let _ = write!(
            out,
            "<div class=\"check\"><input type=\"checkbox\" id=\"f-{sfx}\" name=\"{}\" value=\"{}\"",
            esc(&format!("{PREFIX}{p}")),
            esc(&option_value(option))
        );
        if checked {
            out.push_str(" checked");
        }
        if !described.is_empty() {
            let _ = write!(out, " aria-describedby=\"{}\"", described.join(" "));
        }
        if !errs.is_empty() {
            out.push_str(" aria-invalid=\"true\"");
        }
        let _ = write!(out, "><label for=\"f-{sfx}\">{}</label>", esc(&text));
        out.push_str(&errors_html(&err_ids, &errs));
        out.push_str("</div>");
    }
}

/// An enum value as the form posts it.
fn option_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An enum value as people read it: `mid_market` → `Mid market`.
fn option_label(v: &Value) -> String {
    match v {
        Value::String(s) => humanize(s),
        other => other.to_string(),
    }
}

/// A value as the text of an input: strings as they are, other scalars as
/// JSON, nothing for null.
fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Keys of short values, shown in a one-line input even without `maxLength`.
const SHORT_KEYS: &[&str] = &[
    "name", "title", "email", "url", "uri", "website", "link", "currency", "code", "id",
    "timezone", "handle", "phone", "domain", "version",
];

/// Whether a string field takes prose (a textarea): no `maxLength` or one over
/// 200, no `pattern` or `format`, and a key that is not an obvious short field
/// (`client_name`, `website`, `currency`, `wave_id`, …). Rows of an array are
/// one line unless their `maxLength` is over 200.
fn is_prose(f: &Field, schema: &Value) -> bool {
    if schema.get("pattern").is_some() || schema.get("format").is_some() {
        return false;
    }
    match schema.get("maxLength").and_then(Value::as_u64) {
        Some(n) => n > 200,
        None if f.row => false,
        None => {
            let k = f.key.to_ascii_lowercase();
            !SHORT_KEYS
                .iter()
                .any(|s| k == *s || k.ends_with(&format!("_{s}")))
        }
    }
}

fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// One scalar field: label, help, input, errors.
fn scalar_field(out: &mut String, ctx: &mut Ctx, f: &Field, schema: &Value, value: &Value) {
    let sfx = ctx.suffix(&f.pointer);
    let id = format!("f-{sfx}");
    let errs = ctx.take_errors(&f.pointer);
    let err_ids = error_ids(&sfx, errs.len());
    let help_id = f.help.as_ref().map(|_| format!("help-{sfx}"));
    let described: Vec<String> = f
        .described_by
        .iter()
        .chain(help_id.iter())
        .chain(err_ids.iter())
        .cloned()
        .collect();
    let name = esc(&format!("{PREFIX}{}", f.pointer));
    let mut attrs = format!(" id=\"{id}\" name=\"{name}\"");
    if !described.is_empty() {
        let _ = write!(attrs, " aria-describedby=\"{}\"", esc(&described.join(" ")));
    }
    if !errs.is_empty() {
        attrs.push_str(" aria-invalid=\"true\"");
    }
    let label = label_text(&f.label, f.required_mark);
    let help = match (&help_id, &f.help) {
        (Some(id), Some(h)) => format!("<p class=\"help\" id=\"{id}\">{}</p>", esc(h)),
        _ => String::new(),
    };
    let errors = errors_html(&err_ids, &errs);
    let checkbox = kind(schema) == Kind::Boolean
        && schema.get("enum").is_none()
        && schema.get("const").is_none();
    if checkbox {
        let checked = if value == &Value::Bool(true) {
            " checked"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<div class=\"field check\"><input type=\"hidden\" name=\"{name}\" value=\"false\">\
             <input type=\"checkbox\"{attrs} value=\"true\"{checked}>\
             <label for=\"{id}\">{label}</label>{help}{errors}</div>"
        );
        return;
    }
    if f.required_attr {
        attrs.push_str(" required");
    }
    let control = control(f, schema, value, &attrs);
    let _ = write!(
        out,
        "<div class=\"field\"><label for=\"{id}\">{label}</label>{help}{control}{errors}</div>"
    );
}

/// The input for a scalar (or a value of unknown type, as JSON text).
fn control(f: &Field, schema: &Value, value: &Value, attrs: &str) -> String {
    if let Some(c) = schema.get("const") {
        let text = if value.is_null() {
            option_value(c)
        } else {
            text_of(value)
        };
        return format!(
            "<input type=\"text\"{attrs} value=\"{}\" readonly>",
            esc(&text)
        );
    }
    if let Some(options) = enum_values(schema) {
        return select(options, value, attrs);
    }
    match kind(schema) {
        k @ (Kind::Integer | Kind::Number) => {
            if !matches!(value, Value::Null | Value::Number(_)) {
                // Not a number: shown as typed so it can be corrected.
                let mode = if k == Kind::Integer {
                    "numeric"
                } else {
                    "decimal"
                };
                return format!(
                    "<input type=\"text\" inputmode=\"{mode}\"{attrs} value=\"{}\">",
                    esc(&text_of(value))
                );
            }
            let mut s = format!(
                "<input type=\"number\"{attrs} step=\"{}\"",
                if k == Kind::Integer { "1" } else { "any" }
            );
            for (kw, attr) in [("minimum", "min"), ("maximum", "max")] {
                if let Some(n) = schema.get(kw).filter(|n| n.is_number()) {
                    let _ = write!(s, " {attr}=\"{}\"", esc(&n.to_string()));
                }
            }
            let _ = write!(s, " value=\"{}\">", esc(&text_of(value)));
            s
        }
        Kind::String => {
            let text = text_of(value);
            let input_type = match schema.get("format").and_then(Value::as_str) {
                Some("email") => "email",
                Some("uri" | "url" | "iri") => "url",
                Some("date") if text.is_empty() || is_iso_date(&text) => "date",
                _ => "text",
            };
            if is_prose(f, schema) {
                return format!("<textarea{attrs} rows=\"4\">\n{}</textarea>", esc(&text));
            }
            let mut s = format!("<input type=\"{input_type}\"{attrs}");
            if let Some(n) = schema.get("maxLength").and_then(Value::as_u64) {
                let _ = write!(s, " maxlength=\"{n}\"");
            }
            let _ = write!(s, " value=\"{}\">", esc(&text));
            s
        }
        _ => {
            // Unknown type (or an object without properties): JSON text.
            let structured = matches!(value, Value::Object(_) | Value::Array(_));
            if structured || kind(schema) == Kind::Object {
                let text = match value {
                    Value::Null => String::new(),
                    v => serde_json::to_string_pretty(v).unwrap_or_default(),
                };
                format!("<textarea{attrs} rows=\"6\">\n{}</textarea>", esc(&text))
            } else {
                let text = match value {
                    Value::Null => String::new(),
                    v => v.to_string(),
                };
                format!("<input type=\"text\"{attrs} value=\"{}\">", esc(&text))
            }
        }
    }
}

fn select(options: &[Value], value: &Value, attrs: &str) -> String {
    let mut s = format!("<select{attrs}><option value=\"\">— choose —</option>");
    let mut found = false;
    for o in options {
        let selected = !value.is_null() && o == value;
        found |= selected;
        let _ = write!(
            s,
            "<option value=\"{}\"{}>{}</option>",
            esc(&option_value(o)),
            if selected { " selected" } else { "" },
            esc(&option_label(o))
        );
    }
    if !found && !value.is_null() {
        // Not one of the options: kept (and shown) so the check reports it.
        let text = text_of(value);
        let _ = write!(
            s,
            "<option value=\"{}\" selected>{}</option>",
            esc(&text),
            esc(&text)
        );
    }
    s.push_str("</select>");
    s
}

// ---------------------------------------------------------------------------
// Reading the form back

/// The posted values by pointer.
enum Node {
    Leaf(String),
    Tree(BTreeMap<String, Node>),
}

impl Node {
    /// Sets the value at `tokens`; a later value replaces an earlier one.
    fn insert(&mut self, tokens: &[String], text: String) {
        let Some((first, rest)) = tokens.split_first() else {
            *self = Node::Leaf(text);
            return;
        };
        if let Node::Leaf(_) = self {
            *self = Node::Tree(BTreeMap::new());
        }
        if let Node::Tree(children) = self {
            children
                .entry(first.clone())
                .or_insert_with(|| Node::Tree(BTreeMap::new()))
                .insert(rest, text);
        }
    }
}

/// The value of a node typed by its schema (`None`: nothing there).
fn build(node: &Node, schema: Option<&Value>, is_root: bool) -> Option<Value> {
    let children = match node {
        Node::Leaf(text) => return leaf_value(text, schema),
        Node::Tree(children) => children,
    };
    let as_array = match schema.map(kind) {
        Some(Kind::Array) => true,
        Some(Kind::Object) => false,
        _ => !children.is_empty() && children.keys().all(|k| k.parse::<usize>().is_ok()),
    };
    if as_array {
        let item_schema = schema.and_then(items);
        let mut indexed: Vec<(usize, &Node)> = children
            .iter()
            .filter_map(|(k, n)| k.parse::<usize>().ok().map(|i| (i, n)))
            .collect();
        indexed.sort_by_key(|(i, _)| *i);
        let values: Vec<Value> = indexed
            .into_iter()
            .filter_map(|(_, n)| build(n, item_schema, false))
            .collect();
        return (!values.is_empty()).then_some(Value::Array(values));
    }
    let mut map = Map::new();
    // In the schema's order first, in case the map keeps it.
    let mut keys: Vec<&String> = schema
        .and_then(properties)
        .map(|p| ordered_properties(p).into_iter().map(|(k, _)| k).collect())
        .unwrap_or_default();
    keys.retain(|k| children.contains_key(*k));
    for k in children.keys() {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for k in keys {
        let Some(n) = children.get(k) else { continue };
        let sub = schema.and_then(|s| property_schema(s, k));
        if let Some(v) = build(n, sub, false) {
            map.insert(k.clone(), v);
        }
    }
    let only_unticked = map.values().all(|v| v == &Value::Bool(false));
    if map.is_empty() || (!is_root && only_unticked) {
        return None;
    }
    Some(Value::Object(map))
}

/// One posted value typed by its schema; `None` when it is empty.
fn leaf_value(text: &str, schema: Option<&Value>) -> Option<Value> {
    if text.trim().is_empty() {
        return None;
    }
    let raw = || Value::String(text.to_owned());
    let json_or_raw = || serde_json::from_str::<Value>(text).unwrap_or_else(|_| raw());
    let Some(schema) = schema else {
        return Some(json_or_raw());
    };
    if let Some(c) = schema.get("const") {
        return Some(if option_value(c) == text {
            c.clone()
        } else {
            raw()
        });
    }
    if let Some(options) = enum_values(schema) {
        return Some(
            options
                .iter()
                .find(|o| option_value(o) == text)
                .cloned()
                .unwrap_or_else(raw),
        );
    }
    let t = text.trim();
    let integer = || {
        t.parse::<i64>()
            .map(Number::from)
            .or_else(|_| t.parse::<u64>().map(Number::from))
            .ok()
    };
    Some(match kind(schema) {
        Kind::Integer => integer().map_or_else(raw, Value::Number),
        Kind::Number => integer()
            .or_else(|| t.parse::<f64>().ok().and_then(Number::from_f64))
            .map_or_else(raw, Value::Number),
        Kind::Boolean => match t {
            "true" | "on" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => raw(),
        },
        Kind::String => raw(),
        Kind::Object | Kind::Array | Kind::Unknown => json_or_raw(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    macro_rules! pack_file {
        ($pack:literal, $kind:literal, $name:literal) => {
            include_str!(concat!(
                "../../../../packs/",
                $pack,
                "/",
                $kind,
                "/",
                $name,
                ".json"
            ))
        };
    }

    macro_rules! pair {
        ($pack:literal, $name:literal) => {
            (
                concat!($pack, "/", $name),
                pack_file!($pack, "schemas", $name),
                pack_file!($pack, "examples", $name),
            )
        };
    }

    /// Every type of every pack: (name, schema, example).
    const PACKS: &[(&str, &str, &str)] = &[
        pair!("client-onboarding", "go_live_checklist"),
        pair!("client-onboarding", "integration_spec"),
        pair!("client-onboarding", "onboarding_plan"),
        pair!("client-onboarding", "pilot_plan"),
        pair!("client-onboarding", "rollout_plan"),
        pair!("client-onboarding", "success_criteria"),
        pair!("data-flow", "insights_report"),
        pair!("data-flow", "parsed_document"),
        pair!("data-flow", "semantic_model"),
        pair!("data-flow", "source_file"),
        pair!("insurance-migration", "coexistence_blueprint"),
        pair!("insurance-migration", "migration_plan"),
        pair!("insurance-migration", "poc_proposal"),
        pair!("insurance-migration", "roadmap"),
        pair!("insurance-migration", "sop"),
        pair!("insurance-migration", "wave_definition"),
        pair!("insurance-migration", "workflow"),
        pair!("marketing-engagement", "creatives"),
        pair!("marketing-engagement", "delivery"),
        pair!("marketing-engagement", "execution"),
        pair!("marketing-engagement", "intake"),
        pair!("marketing-engagement", "monitoring"),
        pair!("marketing-engagement", "strategy"),
        pair!("renewal", "assessment"),
        pair!("renewal", "contract_analysis"),
        pair!("renewal", "email_draft"),
        pair!("renewal", "pricing_table"),
        pair!("renewal", "recommendation"),
        pair!("renewal", "stakeholder_map"),
    ];

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("a pack's JSON")
    }

    fn intake() -> Value {
        parse(pack_file!("marketing-engagement", "schemas", "intake"))
    }

    fn intake_example() -> Value {
        parse(pack_file!("marketing-engagement", "examples", "intake"))
    }

    fn render(schema: &Value, value: &Value) -> String {
        fields_html(schema, value, &[], &HashMap::new())
    }

    fn unescape(s: &str) -> String {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }

    /// A start tag: its name, its attributes (unescaped; `""` for a bare
    /// one) and where its text starts in the page.
    struct Tag {
        name: String,
        attrs: HashMap<String, String>,
        after: usize,
    }

    impl Tag {
        fn attr(&self, name: &str) -> Option<&str> {
            self.attrs.get(name).map(String::as_str)
        }
    }

    fn tags(html: &str) -> Vec<Tag> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(start) = html[at..].find('<').map(|i| at + i) {
            let end = start + html[start..].find('>').expect("a tag ends");
            at = end + 1;
            let inner = &html[start + 1..end];
            if inner.starts_with('/') {
                continue;
            }
            let (name, mut rest) = inner.split_once(' ').unwrap_or((inner, ""));
            let mut attrs = HashMap::new();
            loop {
                rest = rest.trim_start();
                if rest.is_empty() {
                    break;
                }
                let stop = rest.find(['=', ' ']).unwrap_or(rest.len());
                let key = rest[..stop].to_owned();
                if rest[stop..].starts_with("=\"") {
                    let v = &rest[stop + 2..];
                    let close = v.find('"').expect("a quoted value ends");
                    attrs.insert(key, unescape(&v[..close]));
                    rest = &v[close + 1..];
                } else {
                    attrs.insert(key, String::new());
                    rest = &rest[stop..];
                }
            }
            out.push(Tag {
                name: name.to_owned(),
                attrs,
                after: at,
            });
        }
        out
    }

    /// What a browser posts for the rendered fields (no button pressed):
    /// inputs, ticked checkboxes, the selected (else first) option, textareas
    /// without the newline after the start tag.
    fn posted(html: &str) -> Vec<(String, String)> {
        let all = tags(html);
        let mut out = Vec::new();
        for (i, t) in all.iter().enumerate() {
            let name = t.attr("name").unwrap_or_default().to_owned();
            match t.name.as_str() {
                "input" => {
                    if t.attr("type") == Some("checkbox") && t.attr("checked").is_none() {
                        continue;
                    }
                    out.push((name, t.attr("value").unwrap_or_default().to_owned()));
                }
                "select" => {
                    let options: Vec<&Tag> = all[i + 1..]
                        .iter()
                        .take_while(|o| o.name == "option")
                        .collect();
                    let chosen = options
                        .iter()
                        .find(|o| o.attr("selected").is_some())
                        .or(options.first())
                        .and_then(|o| o.attr("value"))
                        .unwrap_or_default();
                    out.push((name, chosen.to_owned()));
                }
                "textarea" => {
                    let text = &html[t.after..];
                    let text = &text[..text.find("</textarea>").expect("textarea ends")];
                    let text = text.strip_prefix('\n').unwrap_or(text);
                    out.push((name, unescape(text)));
                }
                _ => {}
            }
        }
        out
    }

    /// The content without empty strings, arrays and objects, as the form
    /// gives it back.
    fn normalised(v: &Value) -> Option<Value> {
        match v {
            Value::String(s) if s.trim().is_empty() => None,
            Value::Array(items) => {
                let items: Vec<Value> = items.iter().filter_map(normalised).collect();
                (!items.is_empty()).then_some(Value::Array(items))
            }
            Value::Object(map) => {
                let map: Map<String, Value> = map
                    .iter()
                    .filter_map(|(k, v)| normalised(v).map(|v| (k.clone(), v)))
                    .collect();
                (!map.is_empty()).then_some(Value::Object(map))
            }
            other => Some(other.clone()),
        }
    }

    fn round_trip(schema: &Value, value: &Value) -> Value {
        value_from_form(schema, &posted(&render(schema, value)))
    }

    /// The pointers of every scalar of a schema (arrays by their first item).
    fn leaf_pointers(schema: &Value, pointer: &str, out: &mut Vec<String>) {
        if let Some(props) = properties(schema) {
            for (k, sub) in props {
                leaf_pointers(sub, &format!("{pointer}/{}", pointer_token(k)), out);
            }
        } else if kind(schema) == Kind::Array {
            let empty = json!({});
            leaf_pointers(
                items(schema).unwrap_or(&empty),
                &format!("{pointer}/0"),
                out,
            );
        } else {
            out.push(pointer.to_owned());
        }
    }

    /// Every visible control has one label pointing at it, ids are unique,
    /// fieldsets are closed.
    fn assert_well_labelled(html: &str, what: &str) {
        let all = tags(html);
        let controls: Vec<&Tag> = all
            .iter()
            .filter(|t| match t.name.as_str() {
                "input" => t.attr("type") != Some("hidden"),
                "select" | "textarea" => true,
                _ => false,
            })
            .collect();
        let labels: Vec<&str> = all
            .iter()
            .filter(|t| t.name == "label")
            .filter_map(|t| t.attr("for"))
            .collect();
        assert_eq!(labels.len(), controls.len(), "{what}: labels vs controls");
        let mut ids = HashSet::new();
        for t in all.iter().filter_map(|t| t.attr("id")) {
            assert!(ids.insert(t.to_owned()), "{what}: duplicate id {t}");
        }
        for c in &controls {
            let id = c.attr("id").expect("a control has an id");
            assert!(labels.contains(&id), "{what}: no label for {id}");
            assert!(
                c.attr("name").is_some_and(|n| n.starts_with(PREFIX)),
                "{what}: {id} has no f: name"
            );
            for d in c
                .attr("aria-describedby")
                .unwrap_or_default()
                .split_whitespace()
            {
                assert!(
                    ids.contains(d) || html.contains(&format!("id=\"{d}\"")),
                    "{what}: {d}"
                );
            }
        }
        assert_eq!(
            html.matches("<fieldset").count(),
            html.matches("</fieldset>").count(),
            "{what}: fieldsets"
        );
        assert_eq!(
            html.matches("<div").count(),
            html.matches("</div>").count(),
            "{what}: divs"
        );
        assert!(!html.contains("style="), "{what}: inline style");
        assert!(!html.contains("<script"), "{what}: script");
    }

    fn find_tag<'t>(all: &'t [Tag], name: &str, field: &str) -> &'t Tag {
        all.iter()
            .find(|t| t.name == name && t.attr("name") == Some(field))
            .unwrap_or_else(|| panic!("no {name} named {field}"))
    }

    #[test]
    fn every_intake_property_is_a_labelled_input() {
        let schema = intake();
        for value in [json!({}), intake_example()] {
            let html = render(&schema, &value);
            assert_well_labelled(&html, "intake");
            let mut leaves = Vec::new();
            leaf_pointers(&schema, "", &mut leaves);
            assert!(leaves.len() > 50, "{}", leaves.len());
            for p in &leaves {
                assert!(
                    html.contains(&format!("name=\"f:{p}\"")),
                    "no input for {p}"
                );
            }
        }
        let html = render(&schema, &json!({}));
        let all = tags(&html);
        let website = find_tag(&all, "input", "f:/client_identity/website");
        assert_eq!(website.attr("id"), Some("f-client-identity-website"));
        let described = website.attr("aria-describedby").unwrap_or_default();
        assert!(
            described.contains("help-client-identity-website"),
            "{described}"
        );
        assert!(html.contains(
            "<p class=\"help\" id=\"help-client-identity-website\">The client&#39;s public website"
        ));
        assert!(html.contains("<label for=\"f-client-identity-website\">Website <span class=\"req\">(required)</span></label>"));
        // Types of input.
        let by_name = |n: &str| find_tag(&all, "input", n).attr("type").map(str::to_owned);
        assert_eq!(
            by_name("f:/client_identity/contact_email").as_deref(),
            Some("email")
        );
        assert_eq!(
            by_name("f:/assets_access/brand_kit_link").as_deref(),
            Some("url")
        );
        assert_eq!(
            by_name("f:/goals_constraints/start_date").as_deref(),
            Some("date")
        );
        assert_eq!(
            by_name("f:/client_identity/client_name").as_deref(),
            Some("text")
        );
        assert_eq!(
            by_name("f:/offer_economics/pricing/currency").as_deref(),
            Some("text")
        );
        assert_eq!(
            by_name("f:/client_identity/timezone").as_deref(),
            Some("text")
        );
        let weeks = find_tag(&all, "input", "f:/goals_constraints/duration_weeks");
        assert_eq!(weeks.attr("type"), Some("number"));
        assert_eq!(weeks.attr("step"), Some("1"));
        assert_eq!(weeks.attr("min"), Some("1"));
        assert_eq!(weeks.attr("max"), Some("520"));
        find_tag(&all, "textarea", "f:/audience_market/pain_points");
        find_tag(&all, "textarea", "f:/offer_economics/primary_offer");
        // A boolean: hidden false, then the checkbox.
        assert!(html.contains(
            "<input type=\"hidden\" name=\"f:/client_identity/no_website_yet\" value=\"false\"><input type=\"checkbox\" id=\"f-client-identity-no-website-yet\" name=\"f:/client_identity/no_website_yet\""
        ));
        // Sections and nested groups.
        assert!(html.contains("<fieldset class=\"form-section\" id=\"sec-client-identity\""));
        assert!(
            html.contains(
                "<legend>A) Client identity <span class=\"req\">(required)</span></legend>"
            )
        );
        assert!(html.contains("<fieldset class=\"group\" aria-describedby=\"help-offer-economics-pricing\"><legend>Pricing / price range</legend>"));
    }

    #[test]
    fn enums_are_selects_with_a_choose_option() {
        let html = render(&intake(), &intake_example());
        let all = tags(&html);
        for name in [
            "f:/client_identity/industry",
            "f:/offer_economics/pricing/tier",
            "f:/goals_constraints/objective",
            "f:/assets_access/tracking_status",
            "f:/offer_economics/proof_assets/0/kind",
        ] {
            find_tag(&all, "select", name);
            assert!(
                !all.iter()
                    .any(|t| t.name == "input" && t.attr("name") == Some(name))
            );
        }
        assert!(html.contains(
            "<option value=\"\">— choose —</option><option value=\"budget\">Budget</option><option value=\"mid_market\" selected>Mid market</option>"
        ));
        // A value outside the enum is kept, selected.
        let odd = render(
            &intake(),
            &json!({"client_identity": {"industry": "space"}}),
        );
        assert!(odd.contains("<option value=\"space\" selected>space</option>"));
        assert_eq!(
            value_from_form(&intake(), &posted(&odd))["client_identity"]["industry"],
            json!("space")
        );
    }

    #[test]
    fn arrays_have_rows_and_an_add_button() {
        let schema = intake();
        let example = intake_example();
        let html = render(&schema, &example);
        // Three competitors and one empty row.
        for i in 0..4 {
            assert!(html.contains(&format!("name=\"f:/offer_economics/competitors/{i}\"")));
        }
        assert!(!html.contains("name=\"f:/offer_economics/competitors/4\""));
        assert!(
            html.contains("<label for=\"f-offer-economics-competitors-3\">Competitor 4</label>")
        );
        assert!(html.contains("<fieldset class=\"group rows\" aria-describedby=\"help-offer-economics-competitors\"><legend>Competitors</legend>"));
        assert!(html.contains(
            "<button type=\"submit\" name=\"_add\" value=\"/offer_economics/competitors\" formnovalidate aria-label=\"Add a row to Competitors\">Add a row</button>"
        ));
        // Objects: one small fieldset per item, plus an empty one.
        assert!(html.contains("<legend>Proof asset 3</legend>"));
        assert!(html.contains("name=\"f:/offer_economics/proof_assets/2/summary\""));
        assert!(!html.contains("name=\"f:/offer_economics/proof_assets/3/summary\""));
        assert!(html.contains("name=\"_add\" value=\"/offer_economics/proof_assets\""));
        assert!(html.contains("name=\"_add\" value=\"/assets_access/social_handles\""));
        // More rows when asked.
        let extra = HashMap::from([
            ("/offer_economics/competitors".to_owned(), 3),
            ("/assets_access/social_handles".to_owned(), 0),
        ]);
        let more = fields_html(&schema, &example, &[], &extra);
        assert!(more.contains("name=\"f:/offer_economics/competitors/5\""));
        assert!(!more.contains("name=\"f:/offer_economics/competitors/6\""));
        assert!(more.contains("name=\"f:/assets_access/social_handles/1/handle\""));
        assert!(!more.contains("name=\"f:/assets_access/social_handles/2/handle\""));
        // Distinct enum values: a checkbox group, no rows.
        assert!(html.contains("<fieldset class=\"form-section checks\" id=\"sec-deliverables\""));
        assert!(html.contains(
            "<input type=\"checkbox\" id=\"f-deliverables-0\" name=\"f:/deliverables/0\" value=\"icp_definition\" checked"
        ));
        assert!(
            html.contains("name=\"f:/deliverables/9\" value=\"content_pillars\" aria-describedby")
        );
        assert!(!html.contains("value=\"/deliverables\""));
        assert!(
            html.contains("name=\"f:/delivery_requirements/required_outputs/2\" value=\"zip\"")
        );
        // Empty rows and unticked boxes post nothing.
        let back = value_from_form(&schema, &posted(&more));
        assert_eq!(
            back["offer_economics"]["competitors"]
                .as_array()
                .map(Vec::len),
            Some(3)
        );
        assert_eq!(back["deliverables"], example["deliverables"]);
    }

    #[test]
    fn conditional_sections_carry_data_when_and_a_note() {
        let schema = intake();
        let html = render(&schema, &intake_example());
        assert!(html.contains(
            "<fieldset class=\"form-section conditional hidden-when-js\" id=\"sec-hiring\" data-when-pointer=\"/goals_constraints/objective\" data-when-value=\"hiring\""
        ));
        assert!(html.contains("<p class=\"note\" id=\"note-hiring\">Fill this section when Primary objective is Hiring.</p>"));
        assert!(html.contains(
            "id=\"sec-ecommerce\" data-when-pointer=\"/client_identity/industry\" data-when-value=\"ecommerce\""
        ));
        assert!(html.contains("Fill this section when Industry is Ecommerce."));
        assert!(html.contains("Fill this section when Industry is Services."));
        // No `required` inside a conditional section, even where it is
        // required once the section applies.
        let all = tags(&html);
        for t in &all {
            let name = t.attr("name").unwrap_or_default();
            if ["f:/hiring", "f:/ecommerce", "f:/services"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                assert!(t.attr("required").is_none(), "{name}");
            }
        }
        let mut hiring = intake_example();
        hiring["goals_constraints"]["objective"] = json!("hiring");
        hiring["client_identity"]["industry"] = json!("services");
        let html = render(&schema, &hiring);
        assert!(
            html.contains("<fieldset class=\"form-section conditional applies\" id=\"sec-hiring\"")
        );
        assert!(html.contains("This section applies: Primary objective is Hiring."));
        assert!(
            html.contains(
                "<fieldset class=\"form-section conditional applies\" id=\"sec-services\""
            )
        );
        assert!(html.contains(
            "<fieldset class=\"form-section conditional hidden-when-js\" id=\"sec-ecommerce\""
        ));
    }

    #[test]
    fn conditions_and_applies_follow_objective_and_industry() {
        let cs = conditions(&intake());
        let summary: Vec<(&str, &str, &Value)> = cs
            .iter()
            .map(|c| (c.section.as_str(), c.pointer.as_str(), &c.value))
            .collect();
        assert_eq!(
            summary,
            [
                ("hiring", "/goals_constraints/objective", &json!("hiring")),
                (
                    "ecommerce",
                    "/client_identity/industry",
                    &json!("ecommerce")
                ),
                ("services", "/client_identity/industry", &json!("services")),
            ]
        );
        assert_eq!(cs[0].label, "Primary objective is Hiring");
        let holding = |v: Value| -> Vec<String> {
            cs.iter()
                .filter(|c| applies(c, &v))
                .map(|c| c.section.clone())
                .collect()
        };
        assert_eq!(
            holding(json!({"goals_constraints": {"objective": "hiring"}})),
            ["hiring"]
        );
        assert_eq!(
            holding(json!({"client_identity": {"industry": "ecommerce"}})),
            ["ecommerce"]
        );
        assert_eq!(
            holding(json!({"client_identity": {"industry": "services"}})),
            ["services"]
        );
        assert!(holding(intake_example()).is_empty());
        assert!(holding(json!({})).is_empty());
        // No conditions where the schema has none at its top.
        let renewal = parse(pack_file!("renewal", "schemas", "recommendation"));
        assert!(conditions(&renewal).is_empty());
        // An enum in the `if`: one condition per value.
        let either = json!({
            "properties": {"kind": {"type": "string", "enum": ["a", "b"]}, "extra": {"type": "object", "properties": {"x": {"type": "string"}}}},
            "if": {"properties": {"kind": {"enum": ["a", "b"]}}, "required": ["kind"]},
            "then": {"required": ["extra"]}
        });
        let cs = conditions(&either);
        assert_eq!(cs.len(), 2);
        assert!(cs.iter().any(|c| applies(c, &json!({"kind": "b"}))));
    }

    #[test]
    fn required_fields_are_marked_and_required_where_the_parent_must_be_there() {
        let html = render(&intake(), &json!({}));
        let all = tags(&html);
        let input = |n: &str| {
            all.iter()
                .find(|t| t.attr("name") == Some(n) && t.attr("type") != Some("hidden"))
                .unwrap_or_else(|| panic!("{n}"))
        };
        for n in [
            "f:/client_identity/client_name",
            "f:/client_identity/website",
            "f:/client_identity/industry",
            "f:/offer_economics/primary_offer",
            "f:/goals_constraints/objective",
        ] {
            assert!(input(n).attr("required").is_some(), "{n}");
        }
        for n in [
            "f:/client_identity/timezone",
            "f:/offer_economics/pricing/tier",
            // Required in its item, but an empty row must not block the post.
            "f:/offer_economics/proof_assets/0/summary",
            "f:/assets_access/social_handles/0/handle",
            "f:/client_identity/no_website_yet",
        ] {
            assert!(input(n).attr("required").is_none(), "{n}");
        }
        assert!(html.contains("<label for=\"f-offer-economics-proof-assets-0-summary\">Summary <span class=\"req\">(required)</span></label>"));
        assert!(html.contains("<label for=\"f-client-identity-timezone\">Timezone</label>"));
    }

    #[test]
    fn errors_are_placed_at_their_fields() {
        let errors = [
            FieldMessage {
                pointer: "/content/client_identity/website".into(),
                message: "must be a <URL>".into(),
            },
            FieldMessage {
                pointer: "/content/goals_constraints/duration_weeks".into(),
                message: "\"abc\" is not of type \"integer\"".into(),
            },
            FieldMessage {
                pointer: "/content/client_identity".into(),
                message: "\"geography\" is a required property".into(),
            },
            FieldMessage {
                pointer: "/content/hiring".into(),
                message: "is required".into(),
            },
            FieldMessage {
                pointer: "/offer_economics/competitors/1".into(),
                message: "is too short".into(),
            },
            FieldMessage {
                pointer: "/content/deliverables/2".into(),
                message: "is not unique".into(),
            },
            FieldMessage {
                pointer: "/content/nowhere".into(),
                message: "is not a field of this type".into(),
            },
            FieldMessage {
                pointer: "/content".into(),
                message: "is wrong as a whole".into(),
            },
        ];
        let mut value = intake_example();
        value["goals_constraints"]["duration_weeks"] = json!("abc");
        let html = fields_html(&intake(), &value, &errors, &HashMap::new());
        assert_well_labelled(&html, "intake with errors");
        let all = tags(&html);
        let website = find_tag(&all, "input", "f:/client_identity/website");
        assert_eq!(website.attr("aria-invalid"), Some("true"));
        assert_eq!(
            website.attr("aria-describedby"),
            Some("help-client-identity-website err-client-identity-website")
        );
        // Right after the input.
        assert!(html[website.after..].starts_with(
            "<p class=\"field-error\" id=\"err-client-identity-website\">must be a &lt;URL&gt;</p>"
        ));
        // A value that is not a number stays visible as typed.
        let weeks = find_tag(&all, "input", "f:/goals_constraints/duration_weeks");
        assert_eq!(weeks.attr("type"), Some("text"));
        assert_eq!(weeks.attr("value"), Some("abc"));
        assert_eq!(weeks.attr("aria-invalid"), Some("true"));
        // The validator's "required property" wording moves to the child.
        let geography = find_tag(&all, "textarea", "f:/client_identity/geography");
        assert_eq!(geography.attr("aria-invalid"), Some("true"));
        assert!(html.contains(
            "id=\"err-client-identity-geography\">&quot;geography&quot; is a required property</p>"
        ));
        // A section's error in its fieldset.
        assert!(html.contains("<p class=\"field-error\" id=\"err-hiring\">is required</p>"));
        assert!(html.contains("id=\"sec-hiring\" data-when-pointer=\"/goals_constraints/objective\" data-when-value=\"hiring\" aria-describedby=\"help-hiring note-hiring err-hiring\""));
        // A row's error at the row.
        let row = find_tag(&all, "input", "f:/offer_economics/competitors/1");
        assert_eq!(row.attr("aria-invalid"), Some("true"));
        // A checkbox group's error at the box of that value (the third
        // deliverable is messaging_framework, option 2).
        let boxed = find_tag(&all, "input", "f:/deliverables/2");
        assert_eq!(boxed.attr("value"), Some("messaging_framework"));
        assert_eq!(boxed.attr("aria-invalid"), Some("true"));
        // The rest at the top.
        assert!(html.starts_with("<div class=\"form-errors\" role=\"alert\">"));
        let top = &html[..html.find("</div>").unwrap_or(0)];
        assert!(top.contains("<li><strong>The content</strong>: is wrong as a whole</li>"));
        assert!(top.contains("<li><strong>Nowhere</strong>: is not a field of this type</li>"));
        assert!(!top.contains("must be a"));
        assert_eq!(html.matches("class=\"field-error\"").count(), 6);
        // No errors, no list.
        assert!(!render(&intake(), &value).contains("form-errors"));
    }

    #[test]
    fn markup_in_values_and_schemas_is_escaped() {
        let evil = "<script>alert(\"x\")</script>&'";
        let mut value = intake_example();
        value["client_identity"]["client_name"] = json!(evil);
        value["audience_market"]["pain_points"] = json!(evil);
        value["offer_economics"]["competitors"][0] = json!(evil);
        value["client_identity"]["industry"] = json!(evil);
        let html = render(&intake(), &value);
        assert!(!html.contains("<script"));
        assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"));
        let back = value_from_form(&intake(), &posted(&html));
        assert_eq!(back["client_identity"]["client_name"], json!(evil));
        assert_eq!(back["audience_market"]["pain_points"], json!(evil));
        assert_eq!(back["offer_economics"]["competitors"][0], json!(evil));
        assert_eq!(back["client_identity"]["industry"], json!(evil));

        let schema = json!({
            "type": "object",
            "properties": {
                "a/b": {"type": "string", "title": "<b>Bold</b>", "description": "\"quoted\" <i>"},
                "a~b": {"type": "string", "enum": ["<x>"]},
                "a_b": {"type": "integer"},
                "a-b": {"type": "string"},
                "a b": {"type": "string"}
            }
        });
        let value = json!({"a/b": "1", "a~b": "<x>", "a_b": 3, "a-b": "4", "a b": "5"});
        let html = render(&schema, &value);
        assert_well_labelled(&html, "odd keys");
        assert!(!html.contains("<b>") && !html.contains("<i>") && !html.contains("<x>"));
        assert!(html.contains("&lt;b&gt;Bold&lt;/b&gt;"));
        assert!(html.contains("name=\"f:/a~1b\""));
        assert!(html.contains("name=\"f:/a~0b\""));
        assert!(html.contains("<option value=\"&lt;x&gt;\" selected>&lt;x&gt;</option>"));
        // Keys that sanitise alike get distinct ids.
        for id in ["f-a-b", "f-a-1b", "f-a-0b", "f-a-b-2", "f-a-b-3"] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert_eq!(round_trip(&schema, &value), value);
    }

    #[test]
    fn intake_example_round_trips() {
        let schema = intake();
        let example = intake_example();
        let back = round_trip(&schema, &example);
        assert_eq!(back, normalised(&example).unwrap_or_else(|| json!({})));
        assert_eq!(back["goals_constraints"]["duration_weeks"], json!(12));
        assert!(back["goals_constraints"]["duration_weeks"].is_u64());
        assert_eq!(back["client_identity"]["no_website_yet"], json!(false));
        // Twice the same.
        assert_eq!(round_trip(&schema, &back), back);
        // An empty form is `{}` (unticked boxes alone make no section).
        assert_eq!(round_trip(&schema, &json!({})), json!({}));
        // A ticked box.
        let mut ticked = example.clone();
        ticked["client_identity"]["no_website_yet"] = json!(true);
        assert_eq!(
            round_trip(&schema, &ticked)["client_identity"]["no_website_yet"],
            json!(true)
        );
    }

    #[test]
    fn every_pack_example_round_trips_and_renders_every_property() {
        for (name, schema, example) in PACKS {
            let schema = parse(schema);
            let example = parse(example);
            let html = render(&schema, &example);
            assert_well_labelled(&html, name);
            assert_well_labelled(&render(&schema, &json!({})), name);
            let mut leaves = Vec::new();
            leaf_pointers(&schema, "", &mut leaves);
            let empty = render(&schema, &json!({}));
            for p in &leaves {
                assert!(
                    empty.contains(&format!("name=\"f:{p}\"")),
                    "{name}: no input for {p}"
                );
            }
            let back = value_from_form(&schema, &posted(&html));
            assert_eq!(
                back,
                normalised(&example).unwrap_or_else(|| json!({})),
                "{name}"
            );
        }
    }

    #[test]
    fn nested_conditions_give_notes_not_required_attributes() {
        let schema = parse(pack_file!("insurance-migration", "schemas", "poc_proposal"));
        let html = render(&schema, &json!({}));
        let all = tags(&html);
        let metric = find_tag(&all, "input", "f:/success_criteria/0/metric");
        assert!(metric.attr("required").is_none());
        assert!(html.contains("Required when Kind is Metric.</p>"));
        assert!(html.contains("Required when Kind is Expression.</p>"));
        assert!(conditions(&schema).is_empty());
        // Top-level required scalars are required.
        assert!(
            find_tag(&all, "textarea", "f:/summary")
                .attr("required")
                .is_some()
        );
        // Arrays of arrays: rows of rows.
        let parsed = parse(pack_file!("data-flow", "schemas", "parsed_document"));
        let html = render(
            &parsed,
            &parse(pack_file!("data-flow", "examples", "parsed_document")),
        );
        assert!(html.contains("name=\"_add\" value=\"/tables/0/sample_rows\""));
        assert!(html.contains("name=\"_add\" value=\"/tables/0/sample_rows/0\""));
    }

    #[test]
    fn value_from_form_types_compacts_and_keeps_what_does_not_parse() {
        let schema = intake();
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        assert_eq!(value_from_form(&schema, &[]), json!({}));
        let v = value_from_form(
            &schema,
            &pairs(&[
                ("csrf", "token"),
                ("_add", "/offer_economics/competitors"),
                ("f:/goals_constraints/duration_weeks", "abc"),
                ("f:/goals_constraints/objective", "leads"),
                ("f:/client_identity/client_name", ""),
                ("f:/client_identity/geography", "  "),
                ("f:/client_identity/no_website_yet", "false"),
                ("f:/client_identity/no_website_yet", "true"),
                ("f:/offer_economics/competitors/0", "A"),
                ("f:/offer_economics/competitors/1", ""),
                ("f:/offer_economics/competitors/5", "B"),
                ("f:/offer_economics/competitors/10", "C"),
                ("f:/offer_economics/proof_assets/0/summary", ""),
                ("f:/offer_economics/proof_assets/1/summary", "Good"),
                ("f:/offer_economics/proof_assets/1/kind", "review"),
                ("f:/audience_market/pain_points", "line one\r\nline two"),
                ("f:/delivery_requirements/required_outputs/2", "zip"),
                ("f:/unknown/thing", "{\"a\": 1}"),
                ("f:/unknown/text", "plain"),
            ]),
        );
        assert_eq!(
            v,
            json!({
                "goals_constraints": {"duration_weeks": "abc", "objective": "leads"},
                "client_identity": {"no_website_yet": true},
                "offer_economics": {
                    "competitors": ["A", "B", "C"],
                    "proof_assets": [{"summary": "Good", "kind": "review"}]
                },
                "audience_market": {"pain_points": "line one\nline two"},
                "delivery_requirements": {"required_outputs": ["zip"]},
                "unknown": {"thing": {"a": 1}, "text": "plain"}
            })
        );
        let integer = value_from_form(
            &schema,
            &pairs(&[("f:/goals_constraints/duration_weeks", " 8 ")]),
        );
        assert_eq!(integer, json!({"goals_constraints": {"duration_weeks": 8}}));
        assert!(integer["goals_constraints"]["duration_weeks"].is_u64());
        // Numbers: integral text stays an integer, the rest a float; nonsense stays text.
        let numbers = json!({"type": "object", "properties": {
            "n": {"type": "number"}, "m": {"type": "number"}, "o": {"type": "number"},
            "b": {"type": "boolean"}, "k": {"const": 3}, "any": {}
        }});
        assert_eq!(
            value_from_form(
                &numbers,
                &pairs(&[
                    ("f:/n", "100"),
                    ("f:/m", "0.85"),
                    ("f:/o", "NaN"),
                    ("f:/b", "maybe"),
                    ("f:/k", "3"),
                    ("f:/any", "[1, 2]"),
                ])
            ),
            json!({"n": 100, "m": 0.85, "o": "NaN", "b": "maybe", "k": 3, "any": [1, 2]})
        );
        // An empty extra item whose only input is an unticked box is no item.
        let flags = json!({"type": "object", "properties": {"envs": {"type": "array", "items": {
            "type": "object", "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}
        }}}});
        assert_eq!(
            value_from_form(
                &flags,
                &pairs(&[
                    ("f:/envs/0/name", "prod"),
                    ("f:/envs/0/ready", "false"),
                    ("f:/envs/1/name", ""),
                    ("f:/envs/1/ready", "false"),
                ])
            ),
            json!({"envs": [{"name": "prod", "ready": false}]})
        );
        // Unknown types are JSON text in the form.
        let html = render(&numbers, &json!({"any": {"x": [1]}, "k": 3}));
        assert!(html.contains("readonly"));
        assert_eq!(
            round_trip(&numbers, &json!({"any": {"x": [1]}, "k": 3})),
            // The unticked box is posted as false.
            json!({"any": {"x": [1]}, "k": 3, "b": false})
        );
    }

    #[test]
    fn lettered_sections_come_first_in_title_order() {
        let html = render(&intake(), &json!({}));
        let all = tags(&html);
        let order: Vec<&str> = all
            .iter()
            .filter_map(|t| t.attr("id"))
            .filter(|id| id.starts_with("sec-"))
            .collect();
        let expected_first = [
            "sec-client-identity",
            "sec-offer-economics",
            "sec-audience-market",
            "sec-goals-constraints",
            "sec-brand-voice",
            "sec-assets-access",
            "sec-delivery-requirements",
        ];
        assert_eq!(&order[..7], expected_first);
        assert_eq!(order.len(), 11);
        for rest in [
            "sec-hiring",
            "sec-ecommerce",
            "sec-services",
            "sec-deliverables",
        ] {
            assert!(order[7..].contains(&rest), "{rest}");
        }
    }
}
