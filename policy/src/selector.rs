//! Kubernetes label selectors with the semantics of `k8s.io/apimachinery/pkg/labels`.
//!
//! Two forms are read: the string syntax (`a=b`, `a==b`, `a!=b`, `a in (x,y)`,
//! `a notin (x)`, `a`, `!a`, `a>1`, `a<1`, comma for AND, free whitespace) and
//! `LabelSelector` objects (matchLabels plus matchExpressions with In, NotIn,
//! Exists and DoesNotExist; like `metav1.LabelSelectorAsSelector`, objects
//! have no Gt or Lt). Keys and values are validated like Kubernetes label keys
//! and values. An empty selector matches everything; `notin` and `!=` match a
//! missing key.
//!
//! `tests/selector_oracle.rs` holds `Selector::parse` and `Selector::matches`
//! to `labels.Parse` and `Selector.Matches` on a corpus judged by Go.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A parsed label selector: the AND of its requirements.
///
/// `Display` prints the canonical string form (requirements sorted by key,
/// set values sorted), which parses back to an equal selector. `Default` is
/// the empty selector, which matches every label set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// One requirement of a selector: a key, an operator and its values.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: BTreeSet<String>,
}

/// The operator of a [`Requirement`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// `key=value` or `key==value`: the label is present with that value.
    Equals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`: the label is present with one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key`: the label is present.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>N`: the label is present and its value, read as a base-10 `i64`
    /// (an optional sign, then digits), is greater than `N`. `N` is written
    /// as digits only (it must also be a label value) and fits an `i64`.
    GreaterThan,
    /// `key<N`: like [`Operator::GreaterThan`], but less than `N`.
    LessThan,
}

/// A selector that does not parse or whose keys or values are invalid.
///
/// `position` is the byte offset in the input (0 for selector objects) and
/// `token` the text found there (empty at the end of the input).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("failed to parse selector at position {position} near '{token}': {message}")]
pub struct SelectorParseError {
    /// Byte offset of the offending token in the input.
    pub position: usize,
    /// The offending token as written (empty at the end of input).
    pub token: String,
    /// What was wrong and what was expected.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Identifier(String),
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Bang,
    OpenPar,
    ClosedPar,
    Comma,
    GreaterThan,
    LessThan,
    End,
}

/// Whether a token is read where a value may appear (keywords are identifiers
/// there) or where an operator is expected.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Values,
    KeyAndOperator,
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

struct Parser<'a> {
    tokens: Vec<(Token, usize, &'a str)>,
    next: usize,
}

impl Selector {
    /// Parses the string form of a label selector, as `kubectl -l` and
    /// Kubernetes' `labels.Parse` read it.
    pub fn parse(s: &str) -> Result<Selector, SelectorParseError> {
        let tokens = Lexer { input: s, pos: 0 }.tokens()?;
        let mut parser = Parser { tokens, next: 0 };
        let mut requirements = parser.parse()?;
        requirements.sort();
        Ok(Selector { requirements })
    }

    /// Converts a `LabelSelector` object (matchLabels and matchExpressions).
    pub fn from_label_selector(ls: &LabelSelector) -> Result<Selector, SelectorParseError> {
        let mut requirements = Vec::new();
        for (key, value) in ls.match_labels.iter().flatten() {
            requirements.push(Requirement::new(
                key,
                Operator::Equals,
                [value.clone()].into_iter().collect(),
            )?);
        }
        for expr in ls.match_expressions.iter().flatten() {
            let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorParseError {
                        position: 0,
                        token: other.to_owned(),
                        message: "operator must be one of In, NotIn, Exists, DoesNotExist"
                            .to_owned(),
                    });
                }
            };
            requirements.push(Requirement::new(&expr.key, operator, values)?);
        }
        requirements.sort();
        Ok(Selector { requirements })
    }

    /// Builds a selector that requires every label of `labels` (like matchLabels).
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<Selector, SelectorParseError> {
        let mut requirements = Vec::with_capacity(labels.len());
        for (key, value) in labels {
            requirements.push(Requirement::new(
                key,
                Operator::Equals,
                [value.clone()].into_iter().collect(),
            )?);
        }
        requirements.sort();
        Ok(Selector { requirements })
    }

    /// Whether every requirement holds for `labels`. The empty selector matches all.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the selector has no requirements (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl Requirement {
    /// Builds a requirement, validating the key, the values and their count
    /// for the operator, like Kubernetes' `labels.NewRequirement`.
    pub fn new(
        key: &str,
        operator: Operator,
        values: BTreeSet<String>,
    ) -> Result<Requirement, SelectorParseError> {
        let invalid = |token: &str, message: String| SelectorParseError {
            position: 0,
            token: token.to_owned(),
            message,
        };
        validate_label_key(key).map_err(|m| invalid(key, m))?;
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(invalid(
                    key,
                    "for 'in' and 'notin' operators, the values set can't be empty".to_owned(),
                ));
            }
            Operator::Equals | Operator::NotEquals if values.len() != 1 => {
                return Err(invalid(
                    key,
                    "exact-match operators need exactly one value".to_owned(),
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(invalid(
                    key,
                    "values set must be empty for Exists and DoesNotExist".to_owned(),
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    return Err(invalid(
                        key,
                        "'>' and '<' need exactly one value".to_owned(),
                    ));
                }
                for v in &values {
                    validate_integer(v).map_err(|m| invalid(v, m))?;
                }
            }
            _ => {}
        }
        for v in &values {
            validate_label_value(v).map_err(|m| invalid(v, m))?;
        }
        Ok(Requirement {
            key: key.to_owned(),
            operator,
            values,
        })
    }

    /// The label key this requirement is about.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values (one for `=`/`!=`/`>`/`<`, one or more for `in`/`notin`,
    /// none otherwise).
    pub fn values(&self) -> &BTreeSet<String> {
        &self.values
    }

    /// Whether the requirement holds for `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                // Like Go's strconv.ParseInt(v, 10, 64), which `str::parse`
                // matches: an optional sign, ASCII digits, in range. A label
                // value that does not parse matches neither operator.
                let bound = self
                    .values
                    .iter()
                    .next()
                    .and_then(|v| v.parse::<i64>().ok());
                let (Some(have), Some(bound)) = (value.and_then(|v| v.parse::<i64>().ok()), bound)
                else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > bound
                } else {
                    have < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.iter().next().map_or("", String::as_str);
        match self.operator {
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::Equals => write!(f, "{}={first}", self.key),
            Operator::NotEquals => write!(f, "{}!={first}", self.key),
            Operator::GreaterThan => write!(f, "{}>{first}", self.key),
            Operator::LessThan => write!(f, "{}<{first}", self.key),
            Operator::In | Operator::NotIn => {
                let op = if self.operator == Operator::In {
                    "in"
                } else {
                    "notin"
                };
                let values: Vec<&str> = self.values.iter().map(String::as_str).collect();
                write!(f, "{} {op} ({})", self.key, values.join(","))
            }
        }
    }
}

impl<'a> Lexer<'a> {
    fn tokens(mut self) -> Result<Vec<(Token, usize, &'a str)>, SelectorParseError> {
        let mut out = Vec::new();
        loop {
            let (token, start, end) = self.lex();
            let text = &self.input[start..end];
            let last = token == Token::End;
            out.push((token, start, text));
            if last {
                return Ok(out);
            }
        }
    }

    /// The next token and its byte range.
    ///
    /// A NUL byte does what it does in `labels.Lexer`, whose `read` returns 0
    /// both for NUL and past the end: where a token would start it ends the
    /// input (the rest is never read), and right after a token it ends that
    /// token and is skipped.
    fn lex(&mut self) -> (Token, usize, usize) {
        let bytes = self.input.as_bytes();
        while self.pos < bytes.len() && is_whitespace(bytes[self.pos]) {
            self.pos += 1;
        }
        let start = self.pos;
        let token = self.token(start);
        let end = self.pos;
        if token != Token::End && bytes.get(self.pos) == Some(&0) {
            self.pos += 1;
        }
        (token, start, end)
    }

    fn token(&mut self, start: usize) -> Token {
        let bytes = self.input.as_bytes();
        let c = match bytes.get(start) {
            None | Some(0) => return Token::End,
            Some(&c) => c,
        };
        if is_special(c) {
            let two = bytes.get(self.pos + 1).copied();
            let (token, len) = match (c, two) {
                (b'!', Some(b'=')) => (Token::NotEquals, 2),
                (b'=', Some(b'=')) => (Token::DoubleEquals, 2),
                (b'!', _) => (Token::Bang, 1),
                (b'=', _) => (Token::Equals, 1),
                (b'(', _) => (Token::OpenPar, 1),
                (b')', _) => (Token::ClosedPar, 1),
                (b',', _) => (Token::Comma, 1),
                (b'>', _) => (Token::GreaterThan, 1),
                _ => (Token::LessThan, 1),
            };
            self.pos += len;
            return token;
        }
        while self.pos < bytes.len()
            && bytes[self.pos] != 0
            && !is_whitespace(bytes[self.pos])
            && !is_special(bytes[self.pos])
        {
            self.pos += 1;
        }
        match &self.input[start..self.pos] {
            "in" => Token::In,
            "notin" => Token::NotIn,
            word => Token::Identifier(word.to_owned()),
        }
    }
}

impl Parser<'_> {
    fn peek(&self, ctx: Context) -> (Token, usize, String) {
        // The lexer always ends with `End`, and `next` never passes it.
        let idx = self.next.min(self.tokens.len() - 1);
        let (token, pos, text) = &self.tokens[idx];
        let token = match (ctx, token) {
            (Context::Values, Token::In) => Token::Identifier("in".to_owned()),
            (Context::Values, Token::NotIn) => Token::Identifier("notin".to_owned()),
            _ => token.clone(),
        };
        (token, *pos, (*text).to_owned())
    }

    fn consume(&mut self, ctx: Context) -> (Token, usize, String) {
        let out = self.peek(ctx);
        if out.0 != Token::End {
            self.next += 1;
        }
        out
    }

    fn error(pos: usize, token: &str, message: impl Into<String>) -> SelectorParseError {
        SelectorParseError {
            position: pos,
            token: token.to_owned(),
            message: message.into(),
        }
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorParseError> {
        let mut requirements = Vec::new();
        loop {
            let (token, pos, text) = self.peek(Context::Values);
            match token {
                Token::Identifier(_) | Token::Bang => {
                    requirements.push(self.requirement()?);
                    let (token, pos, text) = self.consume(Context::Values);
                    match token {
                        Token::End => return Ok(requirements),
                        Token::Comma => {
                            let (next, pos, text) = self.peek(Context::Values);
                            if !matches!(next, Token::Identifier(_) | Token::Bang) {
                                return Err(Self::error(
                                    pos,
                                    &text,
                                    "expected an identifier or '!' after ','",
                                ));
                            }
                        }
                        _ => return Err(Self::error(pos, &text, "expected ',' or end of input")),
                    }
                }
                Token::End => return Ok(requirements),
                _ => {
                    return Err(Self::error(
                        pos,
                        &text,
                        "expected '!', an identifier, or end of input",
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorParseError> {
        let (mut token, mut pos, mut text) = self.consume(Context::Values);
        let mut operator = None;
        if token == Token::Bang {
            operator = Some(Operator::DoesNotExist);
            (token, pos, text) = self.consume(Context::Values);
        }
        let Token::Identifier(key) = token else {
            return Err(Self::error(pos, &text, "expected a label key"));
        };
        validate_label_key(&key).map_err(|m| Self::error(pos, &key, m))?;
        let (next, _, _) = self.peek(Context::Values);
        if matches!(next, Token::End | Token::Comma) {
            let op = operator.unwrap_or(Operator::Exists);
            return Ok(Requirement {
                key,
                operator: op,
                values: BTreeSet::new(),
            });
        }
        if operator.is_some() {
            // `!key` takes no operator or values.
            let (_, pos, text) = self.peek(Context::Values);
            return Err(Self::error(
                pos,
                &text,
                "expected ',' or end of input after '!key'",
            ));
        }
        let (token, pos, text) = self.consume(Context::KeyAndOperator);
        let (operator, values) = match token {
            Token::In => (Operator::In, self.set_values()?),
            Token::NotIn => (Operator::NotIn, self.set_values()?),
            Token::Equals | Token::DoubleEquals => (Operator::Equals, self.exact_value()?),
            Token::NotEquals => (Operator::NotEquals, self.exact_value()?),
            Token::GreaterThan => (Operator::GreaterThan, self.integer_value()?),
            Token::LessThan => (Operator::LessThan, self.integer_value()?),
            _ => {
                return Err(Self::error(
                    pos,
                    &text,
                    "expected an operator: =, ==, !=, in, notin, >, <",
                ));
            }
        };
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    fn value(&self, pos: usize, text: &str) -> Result<String, SelectorParseError> {
        validate_label_value(text).map_err(|m| Self::error(pos, text, m))?;
        Ok(text.to_owned())
    }

    fn exact_value(&mut self) -> Result<BTreeSet<String>, SelectorParseError> {
        let (token, _, _) = self.peek(Context::Values);
        if matches!(token, Token::End | Token::Comma) {
            return Ok([String::new()].into_iter().collect());
        }
        let (token, pos, text) = self.consume(Context::Values);
        match token {
            Token::Identifier(v) => Ok([self.value(pos, &v)?].into_iter().collect()),
            _ => Err(Self::error(pos, &text, "expected a value")),
        }
    }

    /// The value of `>` or `<`: an exact value that is also an integer.
    fn integer_value(&mut self) -> Result<BTreeSet<String>, SelectorParseError> {
        let (_, pos, text) = self.peek(Context::Values);
        let values = self.exact_value()?;
        // `text` is the value, or the ',' or end that stands for an empty one.
        for v in &values {
            validate_integer(v).map_err(|m| Self::error(pos, &text, m))?;
        }
        Ok(values)
    }

    fn set_values(&mut self) -> Result<BTreeSet<String>, SelectorParseError> {
        let (token, pos, text) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(Self::error(pos, &text, "expected '('"));
        }
        let mut set = BTreeSet::new();
        let (token, pos, text) = self.peek(Context::Values);
        match token {
            Token::ClosedPar => {
                self.consume(Context::Values);
                set.insert(String::new());
                return Ok(set);
            }
            Token::Identifier(_) | Token::Comma => {}
            _ => return Err(Self::error(pos, &text, "expected ',', ')' or a value")),
        }
        loop {
            let (token, pos, text) = self.consume(Context::Values);
            match token {
                Token::Identifier(v) => {
                    set.insert(self.value(pos, &v)?);
                    let (next, pos, text) = self.consume(Context::Values);
                    match next {
                        Token::Comma => {}
                        Token::ClosedPar => return Ok(set),
                        _ => return Err(Self::error(pos, &text, "expected ',' or ')'")),
                    }
                    // After a comma: a value, ',' (an empty value) or ')' (an empty value).
                    let (next, _, _) = self.peek(Context::Values);
                    if next == Token::ClosedPar {
                        self.consume(Context::Values);
                        set.insert(String::new());
                        return Ok(set);
                    }
                }
                Token::Comma => {
                    // A leading or doubled comma stands for an empty value.
                    set.insert(String::new());
                    let (next, _, _) = self.peek(Context::Values);
                    if next == Token::ClosedPar {
                        self.consume(Context::Values);
                        return Ok(set);
                    }
                }
                _ => return Err(Self::error(pos, &text, "expected ',' or a value")),
            }
        }
    }
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Checks a label key: an optional DNS-subdomain prefix and `/`, then a name
/// of at most 63 characters (alphanumerics, `-`, `_`, `.`, starting and
/// ending alphanumeric).
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err(format!(
                "invalid label key '{key}': the prefix before '/' is empty"
            ));
        }
        if prefix.len() > 253 {
            return Err(format!(
                "invalid label key '{key}': the prefix must be at most 253 characters"
            ));
        }
        // Kubernetes' IsDNS1123Subdomain: unlike `validate_dns_subdomain`,
        // no limit of 63 on each dot-separated part.
        if !prefix.split('.').all(is_dns1123_label_unbounded) {
            return Err(format!(
                "invalid label key '{key}': the prefix must be a DNS subdomain: lowercase alphanumerics, '-' and '.', each part starting and ending alphanumeric"
            ));
        }
    }
    if name.is_empty() {
        return Err(format!("invalid label key '{key}': the name part is empty"));
    }
    if name.len() > 63 {
        return Err(format!(
            "invalid label key '{key}': the name part must be at most 63 characters"
        ));
    }
    if !is_qualified_name_part(name) {
        return Err(format!(
            "invalid label key '{key}': the name part must consist of alphanumerics, '-', '_' or '.', and start and end with an alphanumeric"
        ));
    }
    Ok(())
}

/// Checks a label value: empty, or at most 63 characters of alphanumerics,
/// `-`, `_`, `.`, starting and ending alphanumeric.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 {
        return Err(format!(
            "invalid label value '{value}': must be at most 63 characters"
        ));
    }
    if !is_qualified_name_part(value) {
        return Err(format!(
            "invalid label value '{value}': must consist of alphanumerics, '-', '_' or '.', and start and end with an alphanumeric"
        ));
    }
    Ok(())
}

/// Checks a DNS-1123 subdomain (lowercase alphanumerics, `-` and `.`, at most 253).
pub fn validate_dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err(format!("'{s}' must be 1 to 253 characters"));
    }
    if s.split('.').all(is_dns_label) {
        Ok(())
    } else {
        Err(format!(
            "'{s}' must be a DNS subdomain: lowercase alphanumerics, '-' and '.', each part starting and ending alphanumeric"
        ))
    }
}

/// Whether `s` is a DNS-1123 label: 1 to 63 lowercase alphanumerics or `-`,
/// starting and ending alphanumeric.
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_dns1123_label_unbounded(s)
}

/// A DNS-1123 label without the length limit: lowercase alphanumerics or
/// `-`, starting and ending alphanumeric.
fn is_dns1123_label_unbounded(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The value of `>` and `<`: Go's `strconv.ParseInt(v, 10, 64)` must read it
/// (label value validation already leaves only digits).
fn validate_integer(v: &str) -> Result<(), String> {
    match v.parse::<i64>() {
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "invalid value '{v}' for '>' or '<': must be a decimal integer that fits in 64 bits"
        )),
    }
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests;
