//! SCIM filters (RFC 7644 §3.4.2.2): `userName eq "a@example.com" and active eq true`, `not (title co "x")`,
//! `externalId pr`. Parsed once into a [`Filter`], which becomes SQL over the stored columns for list queries
//! (values are always bound parameters, column expressions come only from the adapter's fixed table), or is
//! evaluated against JSON for PATCH paths such as `members[value eq "12"]`.

use serde_json::Value;

use super::ScimError;

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare { attr: String, op: Op, value: Value },
    Present(String),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// Longest filter accepted, and deepest nesting: enough for any real client, bounded for a hostile one.
const MAX_LEN: usize = 2048;
const MAX_DEPTH: usize = 16;

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad("invalidFilter", detail)
}

pub fn parse(text: &str) -> Result<Filter, ScimError> {
    if text.len() > MAX_LEN {
        return Err(invalid("The filter is too long."));
    }
    let mut parser = Parser { text, pos: 0, depth: 0 };
    let filter = parser.or()?;
    parser.skip_spaces();
    if parser.pos != text.len() {
        return Err(invalid(format!("Unexpected text at position {} of the filter.", parser.pos + 1)));
    }
    Ok(filter)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.' | b'$')
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_spaces(&mut self) {
        let trimmed = self.rest().trim_start_matches(' ');
        self.pos = self.text.len() - trimmed.len();
    }

    /// The next run of name characters, without consuming it.
    fn peek_word(&self) -> &str {
        let rest = self.rest();
        let end = rest.bytes().position(|b| !is_name_byte(b)).unwrap_or(rest.len());
        &rest[..end]
    }

    /// Consumes `keyword` (case-insensitive) if it is the next whole word.
    fn keyword(&mut self, keyword: &str) -> bool {
        self.skip_spaces();
        let word = self.peek_word();
        if word.eq_ignore_ascii_case(keyword) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn group(&mut self) -> Result<Filter, ScimError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(invalid("The filter is nested too deeply."));
        }
        let inner = self.or()?;
        self.skip_spaces();
        if !self.rest().starts_with(')') {
            return Err(invalid("A parenthesis of the filter is not closed."));
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(inner)
    }

    fn unary(&mut self) -> Result<Filter, ScimError> {
        self.skip_spaces();
        if self.rest().starts_with('(') {
            self.pos += 1;
            return self.group();
        }
        let word = self.peek_word();
        if word.eq_ignore_ascii_case("not") && self.rest()[word.len()..].trim_start_matches(' ').starts_with('(') {
            self.pos += word.len();
            self.skip_spaces();
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.group()?)));
        }
        let attr = word.to_owned();
        if attr.is_empty() {
            return Err(invalid(format!("Expected an attribute at position {} of the filter.", self.pos + 1)));
        }
        self.pos += attr.len();
        if self.rest().starts_with('[') {
            return Err(invalid("Complex attribute filters (attr[...]) are not supported in list filters."));
        }
        self.skip_spaces();
        let op_word = self.peek_word().to_ascii_lowercase();
        let op = match op_word.as_str() {
            "pr" => {
                self.pos += 2;
                return Ok(Filter::Present(attr));
            }
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return Err(invalid(format!("Expected an operator after {attr}."))),
        };
        self.pos += 2;
        self.skip_spaces();
        let value = self.value()?;
        Ok(Filter::Compare { attr, op, value })
    }

    /// A JSON string, number, `true`, `false` or `null`.
    fn value(&mut self) -> Result<Value, ScimError> {
        let rest = self.rest();
        let len = if rest.starts_with('"') {
            let mut escaped = false;
            let close = rest.bytes().enumerate().skip(1).find(|&(_, b)| {
                let end = b == b'"' && !escaped;
                escaped = b == b'\\' && !escaped;
                end
            });
            close.map(|(i, _)| i + 1).ok_or_else(|| invalid("A string in the filter is not closed."))?
        } else {
            rest.bytes().position(|b| b == b' ' || b == b')' || b == b']').unwrap_or(rest.len())
        };
        let value: Value =
            serde_json::from_str(&rest[..len]).map_err(|_| invalid("A value in the filter is not a JSON value."))?;
        if value.is_array() || value.is_object() {
            return Err(invalid("A value in the filter is not a JSON value."));
        }
        self.pos += len;
        Ok(value)
    }
}

/// The text of a compared value: strings as they are, numbers and booleans as JSON writes them.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Looks up `attr` (case-insensitive, dotted for sub-attributes) in a JSON object.
pub fn lookup<'v>(object: &'v Value, attr: &str) -> Option<&'v Value> {
    attr.split('.').try_fold(object, |value, name| {
        value.as_object()?.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    })
}

impl Filter {
    /// Whether a JSON value (an element of a multi-valued attribute) matches; strings compare case-insensitively.
    pub fn matches(&self, item: &Value) -> bool {
        match self {
            Filter::And(a, b) => a.matches(item) && b.matches(item),
            Filter::Or(a, b) => a.matches(item) || b.matches(item),
            Filter::Not(inner) => !inner.matches(item),
            Filter::Present(attr) => lookup(item, attr).is_some_and(|v| !v.is_null() && v != ""),
            Filter::Compare { attr, op, value } => {
                let (Some(have), Some(want)) = (lookup(item, attr).and_then(as_text), as_text(value)) else {
                    return *op == Op::Ne;
                };
                let (have, want) = (have.to_ascii_lowercase(), want.to_ascii_lowercase());
                match op {
                    Op::Eq => have == want,
                    Op::Ne => have != want,
                    Op::Co => have.contains(&want),
                    Op::Sw => have.starts_with(&want),
                    Op::Ew => have.ends_with(&want),
                    Op::Gt => have > want,
                    Op::Ge => have >= want,
                    Op::Lt => have < want,
                    Op::Le => have <= want,
                }
            }
        }
    }

    /// The attribute values this filter requires by equality (`type eq "mobile" and primary eq true`), to build a
    /// new element when a PATCH `add` names one that does not exist yet.
    pub fn equalities(&self) -> Vec<(String, Value)> {
        match self {
            Filter::Compare { attr, op: Op::Eq, value } => vec![(attr.clone(), value.clone())],
            Filter::And(a, b) => [a.equalities(), b.equalities()].concat(),
            _ => Vec::new(),
        }
    }

    /// SQL for this filter. `column` maps a lower-cased attribute path to a stored column (`None`: not
    /// filterable); compared values are appended to `params` in order, one per `?`.
    pub fn to_sql(
        &self,
        column: &dyn Fn(&str) -> Option<Column>,
        params: &mut Vec<Value>,
    ) -> Result<String, ScimError> {
        Ok(match self {
            Filter::And(a, b) => format!("({} AND {})", a.to_sql(column, params)?, b.to_sql(column, params)?),
            Filter::Or(a, b) => format!("({} OR {})", a.to_sql(column, params)?, b.to_sql(column, params)?),
            Filter::Not(inner) => format!("(NOT {})", inner.to_sql(column, params)?),
            Filter::Present(attr) => {
                let col = find(column, attr)?;
                format!("({e} IS NOT NULL AND {e} <> '')", e = col.expr)
            }
            Filter::Compare { attr, op, value } => compare(find(column, attr)?, *op, value, params)?,
        })
    }
}

/// How a stored column compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text compared case-insensitively (`caseExact: false`).
    Text,
    /// Text stored lower-cased (the email): the value is lower-cased instead, so the index serves the look-up.
    Lower,
    /// Text compared exactly (`externalId`, `id`).
    Exact,
    /// 0 or 1.
    Boolean,
    /// Unix seconds, compared with an RFC 3339 value.
    Time,
    /// A group's members: only `eq` a user id, as `EXISTS` over the memberships.
    Member,
}

/// A filterable attribute: its SQL expression (from the adapter's fixed table, never from the request) and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub expr: &'static str,
    pub kind: Kind,
}

fn find(column: &dyn Fn(&str) -> Option<Column>, attr: &str) -> Result<Column, ScimError> {
    column(&attr.to_ascii_lowercase()).ok_or_else(|| invalid(format!("Filtering on {attr} is not supported.")))
}

fn compare(col: Column, op: Op, value: &Value, params: &mut Vec<Value>) -> Result<String, ScimError> {
    let e = col.expr;
    if col.kind == Kind::Boolean {
        let Value::Bool(b) = value else { return Err(invalid("A boolean attribute compares with true or false.")) };
        params.push(Value::from(i64::from(*b)));
        return match op {
            Op::Eq => Ok(format!("{e} = ?")),
            Op::Ne => Ok(format!("{e} <> ?")),
            _ => Err(invalid("A boolean attribute supports only eq and ne.")),
        };
    }
    let text = as_text(value).ok_or_else(|| invalid("Compare with a string, a number or a boolean."))?;
    if col.kind == Kind::Member {
        if op != Op::Eq {
            return Err(invalid("members supports only eq."));
        }
        params.push(Value::from(text));
        return Ok(format!("EXISTS (SELECT 1 FROM user_groups WHERE group_id = {e} AND user_id = CAST(? AS INTEGER))"));
    }
    let (lhs, rhs) = match col.kind {
        Kind::Text => (format!("lower({e})"), "lower(?)"),
        Kind::Lower => (e.to_owned(), "lower(?)"),
        Kind::Time => (e.to_owned(), "unixepoch(?)"),
        _ => (e.to_owned(), "?"),
    };
    let sql = match op {
        Op::Eq => format!("{lhs} = {rhs}"),
        Op::Ne => format!("({e} IS NULL OR {lhs} <> {rhs})"),
        Op::Gt => format!("{lhs} > {rhs}"),
        Op::Ge => format!("{lhs} >= {rhs}"),
        Op::Lt => format!("{lhs} < {rhs}"),
        Op::Le => format!("{lhs} <= {rhs}"),
        Op::Co | Op::Sw | Op::Ew if col.kind == Kind::Time => {
            return Err(invalid("A date compares with eq, ne, gt, ge, lt or le."))
        }
        Op::Co => format!("instr({lhs}, {rhs}) > 0"),
        Op::Sw => {
            params.push(Value::from(text.clone()));
            format!("substr({lhs}, 1, length(?)) = {rhs}")
        }
        Op::Ew => {
            params.push(Value::from(text.clone()));
            format!("substr({lhs}, -length(?)) = {rhs}")
        }
    };
    params.push(Value::from(text));
    Ok(sql)
}

#[cfg(test)]
mod tests;
