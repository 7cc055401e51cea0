//! JSON as kube-apiserver's Go decoders read it, and Go's ways of printing values.
//!
//! kube-apiserver decodes a JSON body with sigs.k8s.io/json (a fork of encoding/json,
//! internal/golang/encoding/json/decode.go): into a typed object for create and update, into
//! `map[string]interface{}` for merge and strategic merge patches, into `[]jsonPatchOp` for
//! JSON patches. A key given twice is not an error there: decoding into a struct field or a
//! map field decodes the later value into what the earlier one left (a struct keeps the
//! fields the later value does not set, a map keeps the keys, a slice reuses its elements),
//! a map key or an `interface{}` value is replaced whole, and a `null` clears a map, a slice
//! or a pointer but leaves a string, number, bool or struct as it was. With field validation
//! Strict or Warn (`UnmarshalStrict`), each repeated key is a `duplicate field "path"` strict
//! error and each key a struct does not have an `unknown field "path"` one, in document
//! order, each once (at most 100).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Number, Value};

use crate::resource::{Schema, Struct};

/// A JSON value as written: an object keeps every key, repeated ones too, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Node>),
    Object(Vec<Member>),
}

/// One key of an object, with the (1-based) line its value starts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Member {
    pub(crate) key: String,
    pub(crate) line: usize,
    pub(crate) value: Node,
}

/// Parses a JSON document, keeping repeated keys. What is not JSON fails as parsing it into
/// a `Value` fails.
pub(crate) fn parse(body: &[u8]) -> Result<Node, serde_json::Error> {
    // serde_json decides what is JSON (and words the error); the scanner below only splits
    // what it accepted.
    let value: Value = serde_json::from_slice(body)?;
    let mut scanner = Scanner {
        bytes: body,
        at: 0,
        line: 1,
    };
    // The scanner does not fail on a document serde_json accepted; were it to, serde_json's
    // reading (without the repeated keys) would stand.
    Ok(scanner.value().unwrap_or_else(|| Node::from(value)))
}

impl From<Value> for Node {
    fn from(v: Value) -> Self {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(b),
            Value::Number(n) => Node::Number(n),
            Value::String(s) => Node::String(s),
            Value::Array(items) => Node::Array(items.into_iter().map(Node::from).collect()),
            Value::Object(map) => Node::Object(
                map.into_iter()
                    .map(|(key, v)| Member {
                        key,
                        line: 1,
                        value: Node::from(v),
                    })
                    .collect(),
            ),
        }
    }
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
    line: usize,
}

impl Scanner<'_> {
    fn skip_space(&mut self) {
        while let Some(&b) = self.bytes.get(self.at) {
            match b {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => return,
            }
            self.at += 1;
        }
    }

    fn value(&mut self) -> Option<Node> {
        self.skip_space();
        match *self.bytes.get(self.at)? {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string().map(Node::String),
            b't' => self.literal("true", Node::Bool(true)),
            b'f' => self.literal("false", Node::Bool(false)),
            b'n' => self.literal("null", Node::Null),
            _ => {
                let start = self.at;
                while self
                    .bytes
                    .get(self.at)
                    .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    self.at += 1;
                }
                serde_json::from_slice::<Number>(&self.bytes[start..self.at])
                    .ok()
                    .map(Node::Number)
            }
        }
    }

    fn literal(&mut self, text: &str, node: Node) -> Option<Node> {
        self.at += text.len();
        Some(node)
    }

    fn string(&mut self) -> Option<String> {
        let start = self.at;
        self.at += 1;
        loop {
            match *self.bytes.get(self.at)? {
                b'"' => break,
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
        self.at += 1;
        serde_json::from_slice(&self.bytes[start..self.at]).ok()
    }

    fn array(&mut self) -> Option<Node> {
        self.at += 1;
        let mut items = Vec::new();
        loop {
            self.skip_space();
            match *self.bytes.get(self.at)? {
                b']' => break,
                b',' => self.at += 1,
                _ => items.push(self.value()?),
            }
        }
        self.at += 1;
        Some(Node::Array(items))
    }

    fn object(&mut self) -> Option<Node> {
        self.at += 1;
        let mut members = Vec::new();
        loop {
            self.skip_space();
            match *self.bytes.get(self.at)? {
                b'}' => break,
                b',' => self.at += 1,
                _ => {
                    let key = self.string()?;
                    self.skip_space();
                    // the ':'
                    self.at += 1;
                    self.skip_space();
                    let line = self.line;
                    let value = self.value()?;
                    members.push(Member { key, line, value });
                }
            }
        }
        self.at += 1;
        Some(Node::Object(members))
    }
}

impl Node {
    /// The value encoding/json decodes into an `interface{}` (and serde_json into a
    /// `Value`): a repeated key's later value replaces the earlier one.
    pub(crate) fn into_value(self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Number(n) => Value::Number(n),
            Node::String(s) => Value::String(s),
            Node::Array(items) => Value::Array(items.into_iter().map(Node::into_value).collect()),
            Node::Object(members) => Value::Object(
                members
                    .into_iter()
                    .map(|m| (m.key, m.value.into_value()))
                    .collect(),
            ),
        }
    }

    /// Whether an object anywhere in this document repeats a key.
    pub(crate) fn has_repeated_keys(&self) -> bool {
        match self {
            Node::Array(items) => items.iter().any(Node::has_repeated_keys),
            Node::Object(members) => {
                let mut seen = HashSet::new();
                members
                    .iter()
                    .any(|m| !seen.insert(m.key.as_str()) || m.value.has_repeated_keys())
            }
            _ => false,
        }
    }
}

/// The strict decoding errors of one document, in the order found, each once, at most 100
/// (`saveStrictError`).
#[derive(Debug, Default)]
struct StrictErrors {
    errors: Vec<String>,
    seen: HashSet<String>,
}

impl StrictErrors {
    fn push(&mut self, kind: &str, path: &str) {
        if self.errors.len() >= 100 {
            return;
        }
        let error = format!("{kind} {}", quote(path));
        if self.seen.insert(error.clone()) {
            self.errors.push(error);
        }
    }
}

/// The field path of `key` under `path` (`newFieldError`, `appendStrictFieldStackKey`).
fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A typed decode in progress: its strict errors and the elements each slice keeps beyond
/// its length (a shorter later value truncates a slice but keeps its backing array, whose
/// elements a longer value after it decodes into again).
#[derive(Default)]
struct Decoder {
    strict: StrictErrors,
    hidden: HashMap<String, Vec<Value>>,
}

/// Decodes `node` as `UnmarshalStrict` decodes it into a Go value of type `schema`: the
/// value, and the strict errors (`duplicate field "metadata.labels"`,
/// `unknown field "spec"`). Unknown fields are not in the value.
pub(crate) fn decode(node: Node, schema: Schema) -> (Value, Vec<String>) {
    let mut decoder = Decoder::default();
    let mut value = Value::Null;
    decoder.decode_into(&mut value, node, schema, "");
    (value, decoder.strict.errors)
}

impl Decoder {
    /// Decodes `node` into `slot`, which holds what earlier values of the same field left.
    fn decode_into(&mut self, slot: &mut Value, node: Node, schema: Schema, path: &str) {
        match (schema, node) {
            // null leaves a value type as it was, and clears a map, slice or pointer.
            (Schema::Scalar | Schema::Struct(_), Node::Null) => {}
            (_, Node::Null) => {
                self.forget(path);
                *slot = Value::Null;
            }
            (Schema::Any, node) => *slot = self.any(node, path),
            (Schema::Struct(s) | Schema::Ptr(s), Node::Object(members)) => {
                self.decode_struct(slot, s, members, path);
            }
            (Schema::Map, Node::Object(members)) => self.decode_map(slot, members, path),
            (Schema::List(item), Node::Array(nodes)) => {
                self.decode_list(slot, *item, nodes, path);
            }
            // A scalar, a value for a custom unmarshaler, or a value of the wrong type
            // (which fails later, as it would have without the earlier one).
            (_, node) => {
                self.forget(path);
                *slot = node.into_value();
            }
        }
    }

    /// Decodes an object into a struct: unknown and repeated fields are strict errors, each
    /// known field decodes into what the struct holds.
    fn decode_struct(&mut self, slot: &mut Value, s: &Struct, members: Vec<Member>, path: &str) {
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let mut seen = HashSet::new();
        for m in members {
            let sub = child(path, &m.key);
            let Some(field) = s.fields.iter().find(|f| f.name == m.key) else {
                self.strict.push("unknown field", &sub);
                continue;
            };
            if !seen.insert(field.name) {
                self.strict.push("duplicate field", &sub);
            }
            if let Value::Object(map) = slot {
                let entry = map.entry(field.name).or_insert(Value::Null);
                self.decode_into(entry, m.value, field.schema, &sub);
                // A nil or zero field is not encoded (omitempty).
                if entry.is_null() {
                    map.remove(field.name);
                }
            }
        }
    }

    /// Decodes an object into a `map[string]string`-like map: a repeated key is a strict
    /// error and the later value wins.
    fn decode_map(&mut self, slot: &mut Value, members: Vec<Member>, path: &str) {
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let mut seen = HashSet::new();
        for m in members {
            if !seen.insert(m.key.clone()) {
                self.strict.push("duplicate field", &child(path, &m.key));
            }
            if let Value::Object(map) = slot {
                map.insert(m.key, map_value(m.value.into_value()));
            }
        }
    }

    /// Decodes an array into a slice as Go does: element by element into what the slice
    /// held (its hidden tail too), truncating to the array's length.
    fn decode_list(&mut self, slot: &mut Value, item: Schema, nodes: Vec<Node>, path: &str) {
        if nodes.is_empty() {
            // decoding [] makes a new, empty slice
            self.forget(path);
            *slot = Value::Array(Vec::new());
            return;
        }
        if !slot.is_array() {
            self.forget(path);
            *slot = Value::Array(Vec::new());
        }
        let Value::Array(items) = slot else {
            return;
        };
        let len = nodes.len();
        for (i, node) in nodes.into_iter().enumerate() {
            if i >= items.len() {
                let hidden = self.hidden.get_mut(path).filter(|h| !h.is_empty());
                items.push(hidden.map_or(Value::Null, |h| h.remove(0)));
            }
            self.decode_into(&mut items[i], node, item, &format!("{path}[{i}]"));
        }
        if items.len() > len {
            let mut tail = items.split_off(len);
            tail.extend(self.hidden.remove(path).unwrap_or_default());
            self.hidden.insert(path.to_owned(), tail);
        }
    }

    /// Decodes into an `interface{}` (`objectInterface`): repeated keys are reported and
    /// the later value replaces the earlier one.
    fn any(&mut self, node: Node, path: &str) -> Value {
        match node {
            Node::Array(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, n)| self.any(n, &format!("{path}[{i}]")))
                    .collect(),
            ),
            Node::Object(members) => {
                let mut map = Map::new();
                for m in members {
                    let sub = child(path, &m.key);
                    if map.contains_key(&m.key) {
                        self.strict.push("duplicate field", &sub);
                    }
                    let value = self.any(m.value, &sub);
                    map.insert(m.key, value);
                }
                Value::Object(map)
            }
            other => other.into_value(),
        }
    }

    /// Drops the hidden slice elements under `path`, whose value is replaced.
    fn forget(&mut self, path: &str) {
        if self.hidden.is_empty() {
            return;
        }
        self.hidden.retain(|p, _| {
            !(p == path
                || p.strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with(['.', '['])))
        });
    }
}

/// A map value as Go decodes it into a string or bytes: `null` is the empty value.
fn map_value(v: Value) -> Value {
    if v.is_null() {
        Value::String(String::new())
    } else {
        v
    }
}

/// Makes `value` what decoding it into a Go value of type `schema` and encoding that gives,
/// as far as nulls go: a null field is left out (nil, or zero and `omitempty`) and a null
/// map value is the empty string. kube-apiserver stores and answers a patched object so
/// (`FromUnstructured` or `DecodeInto` of the patched JSON).
pub(crate) fn normalize_nulls(value: &mut Value, schema: Schema) {
    match (schema, value) {
        (Schema::Struct(s) | Schema::Ptr(s), Value::Object(map)) => {
            map.retain(|_, v| !v.is_null());
            for (key, v) in map.iter_mut() {
                if let Some(field) = s.fields.iter().find(|f| f.name == key) {
                    normalize_nulls(v, field.schema);
                }
            }
        }
        (Schema::Map, Value::Object(map)) => {
            for v in map.values_mut().filter(|v| v.is_null()) {
                *v = Value::String(String::new());
            }
        }
        (Schema::List(item), Value::Array(items)) => {
            for v in items {
                normalize_nulls(v, *item);
            }
        }
        _ => {}
    }
}

/// The repeated keys goyaml's strict decoder reports for a JSON document it reads as YAML
/// (`line 1: key "labels" already set in map`), in document order.
pub(crate) fn yaml_repeated_keys(node: &Node) -> Vec<String> {
    fn walk(node: &Node, out: &mut Vec<String>) {
        match node {
            Node::Array(items) => items.iter().for_each(|n| walk(n, out)),
            Node::Object(members) => {
                // goyaml decodes a value before it sets (and checks) its key
                // (`setMapIndex`), and names the value's line.
                let mut seen = HashSet::new();
                for m in members {
                    walk(&m.value, out);
                    if !seen.insert(m.key.as_str()) {
                        out.push(format!(
                            "line {}: key {} already set in map",
                            m.line,
                            quote(&m.key)
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(node, &mut out);
    out
}

/// `strconv.Quote`: a Go string literal.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            ' ' => out.push(' '),
            c if c.is_control() || c.is_whitespace() || is_format(c) => {
                let n = u32::from(c);
                if n < 0x80 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Format characters (Unicode category Cf), which Go does not print as they are.
fn is_format(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}'
        | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}')
}

/// The Go type of a value decoded into an `interface{}` with `PreserveInts`, as
/// `reflect.TypeOf` names it.
pub(crate) fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// `fmt.Sprintf("%v", v)` (and `%+v`) of a value decoded into an `interface{}`.
pub(crate) fn sprint(v: &Value) -> String {
    format_go(v, false, true)
}

/// `fmt.Sprintf("%s", v)`: what is not a string is printed as a bad verb.
pub(crate) fn sprint_s(v: &Value) -> String {
    format_go(v, true, true)
}

fn format_go(v: &Value, verb_s: bool, top: bool) -> String {
    let scalar = |ty: &str, text: String| {
        if verb_s {
            format!("%!s({ty}={text})")
        } else {
            text
        }
    };
    match v {
        // A nil interface is a bad verb for %s only as the argument itself.
        Value::Null if verb_s && top => "%!s(<nil>)".to_owned(),
        Value::Null => "<nil>".to_owned(),
        Value::Bool(b) => scalar("bool", b.to_string()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => scalar("int64", i.to_string()),
            None => scalar("float64", format_float(n.as_f64().unwrap_or_default())),
        },
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|i| format_go(i, verb_s, false)).collect();
            format!("[{}]", items.join(" "))
        }
        // fmt prints a map's entries sorted by key; a serde_json map iterates sorted.
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}:{}", format_go(v, verb_s, false)))
                .collect();
            format!("map[{}]", entries.join(" "))
        }
    }
}

/// `%v` of a float64: `strconv.FormatFloat(f, 'g', -1, 64)`, the shortest digits that
/// read back as `f`, with an exponent (`1e+06`, `1.5e-05`) below -4 or from 6 up.
fn format_float(f: f64) -> String {
    // Rust's `{:e}` is the shortest representation that round-trips, as Go's -1 precision.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or_default();
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// `json.Marshal` of a value: compact, with `<`, `>`, `&`, U+2028 and U+2029 escaped.
pub(crate) fn marshal(v: &Value) -> String {
    let text = v.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
