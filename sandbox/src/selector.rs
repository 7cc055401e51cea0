//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!`) and field selectors.

use serde_json::Value;

use crate::status::Status;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector {
    requirements: Vec<Requirement>,
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_error(msg: String) -> Status {
    Status::bad_request(format!("unable to parse requirement: {msg}"))
}

fn check_key(key: &str) -> Result<String, Status> {
    let errs = crate::validate::qualified_name(key);
    if let Some(e) = errs.first() {
        return Err(parse_error(format!("key: Invalid value: {key:?}: {e}")));
    }
    Ok(key.to_owned())
}

fn check_value(key: &str, value: &str) -> Result<String, Status> {
    let errs = crate::validate::label_value(value);
    if let Some(e) = errs.first() {
        return Err(parse_error(format!(
            "values[0][{key}]: Invalid value: {value:?}: {e}"
        )));
    }
    Ok(value.to_owned())
}

fn parse_set(key: &str, rest: &str) -> Result<Vec<String>, Status> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            Status::bad_request(format!(
                "unable to parse requirement: found '{rest}', expected: '('"
            ))
        })?;
    inner
        .split(',')
        .map(str::trim)
        .map(|v| check_value(key, v))
        .collect()
}

impl LabelSelector {
    /// Parses the string form (`a=b,c in (d,e),!f`); 400 BadRequest on a syntax error.
    pub(crate) fn parse(s: &str) -> Result<Self, Status> {
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self { requirements });
        }
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                return Err(Status::bad_request(format!(
                    "found '', expected: identifier in selector {s:?}"
                )));
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(check_key(key.trim())?)
            } else if let Some((k, v)) = part.split_once("!=") {
                let key = check_key(k.trim())?;
                let value = check_value(&key, v.trim())?;
                Requirement::NotEquals(key, value)
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                let key = check_key(k.trim())?;
                let value = check_value(&key, v.trim())?;
                Requirement::Equals(key, value)
            } else if let Some((k, rest)) = split_word(part, "notin") {
                let key = check_key(k)?;
                let values = parse_set(&key, rest)?;
                Requirement::NotIn(key, values)
            } else if let Some((k, rest)) = split_word(part, "in") {
                let key = check_key(k)?;
                let values = parse_set(&key, rest)?;
                Requirement::In(key, values)
            } else if part.contains(' ') || part.contains('(') {
                return Err(parse_error(format!(
                    "found '{part}', expected: in, notin, =, ==, !=, gt, lt"
                )));
            } else {
                Requirement::Exists(check_key(part)?)
            };
            requirements.push(req);
        }
        Ok(Self { requirements })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

fn split_word<'a>(part: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    let idx = part.find(&format!(" {word}"))?;
    let rest = &part[idx + 1 + word.len()..];
    if !(rest.starts_with(' ') || rest.starts_with('(')) {
        return None;
    }
    Some((part[..idx].trim(), rest))
}

/// A parsed field selector over `metadata.name`, `metadata.namespace` (and Secret `type`).
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldSelector {
    requirements: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses `metadata.name=x,metadata.namespace!=y`; `extra` are kind-specific fields.
    pub(crate) fn parse(s: &str, extra: &[&str]) -> Result<Self, Status> {
        let mut requirements = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(Status::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if !["metadata.name", "metadata.namespace"].contains(&field) && !extra.contains(&field)
            {
                return Err(Status::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            requirements.push((field.to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self { requirements })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|(field, equal, value)| {
            let actual = field
                .split('.')
                .fold(obj, |v, seg| &v[seg])
                .as_str()
                .unwrap_or_default();
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn equality_and_sets() {
        let s = LabelSelector::parse("app=web, tier in (a, b),!gone,env!=prod").unwrap();
        assert!(s.matches(&obj(json!({"app": "web", "tier": "b"}))));
        assert!(!s.matches(&obj(json!({"app": "web", "tier": "c"}))));
        assert!(!s.matches(&obj(json!({"app": "web", "tier": "a", "gone": "x"}))));
        assert!(!s.matches(&obj(json!({"app": "web", "tier": "a", "env": "prod"}))));
    }

    #[test]
    fn notin_and_exists() {
        let s = LabelSelector::parse("akuity.io/secret-sync,team notin (x)").unwrap();
        assert!(s.matches(&obj(json!({"akuity.io/secret-sync": "true"}))));
        assert!(!s.matches(&obj(json!({"akuity.io/secret-sync": "true", "team": "x"}))));
        assert!(!s.matches(&obj(json!({}))));
    }

    #[test]
    fn bad_selectors_are_400() {
        assert_eq!(LabelSelector::parse("a in b").unwrap_err().code, 400);
        assert_eq!(LabelSelector::parse("a b").unwrap_err().code, 400);
        assert_eq!(LabelSelector::parse("bad key!=x").unwrap_err().code, 400);
    }

    #[test]
    fn field_selectors() {
        let s = FieldSelector::parse("metadata.name=a,metadata.namespace!=other", &[]).unwrap();
        assert!(s.matches(&obj(json!({}))));
        assert!(FieldSelector::parse("spec.x=1", &[]).is_err());
        assert!(
            !FieldSelector::parse("metadata.name==b", &[])
                .unwrap()
                .matches(&obj(json!({})))
        );
    }
}
