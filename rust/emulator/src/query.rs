//! The SOQL subset a sink connector needs to resolve Ids by external ID:
//!
//! ```text
//! SELECT f1, f2 FROM T [WHERE cond [AND cond]*] [LIMIT n]
//! cond := Field = literal | Field != literal | Field IN (literal, ...)
//! literal := 'string' | number | true | false | null
//! ```
//!
//! Keywords and names are case-insensitive; string literals use SOQL's backslash escapes
//! (`\'`, `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, `\uXXXX`). Anything else is a
//! MALFORMED_QUERY, worded the way Salesforce words it (query, caret, row and column).

use serde_json::{json, Map, Value};

use crate::state::{format_datetime, match_key, normalize_id, FieldType, ObjectDef, Record, Store};
use crate::validate::SfError;

#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Str(String),
    Num(String),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq(Lit),
    Ne(Lit),
    In(Vec<Lit>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub field: String,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub fields: Vec<String>,
    pub object: String,
    pub conds: Vec<Cond>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Punct(&'static str),
    Eof,
}

struct Lexer<'a> {
    src: &'a str,
    chars: Vec<(usize, char)>,
    pos: usize,
}

fn malformed(src: &str, at: usize, msg: &str) -> SfError {
    let col = src[..at.min(src.len())].chars().count() + 1;
    let caret = format!("{}^", " ".repeat(col - 1));
    SfError::new(400, "MALFORMED_QUERY", format!("\n{src}\n{caret}\nERROR at Row:1:Column:{col}\n{msg}"))
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer { src, chars: src.char_indices().collect(), pos: 0 }
    }

    fn byte_pos(&self) -> usize {
        self.chars.get(self.pos).map(|c| c.0).unwrap_or(self.src.len())
    }

    /// All tokens with their byte offsets.
    fn run(mut self) -> Result<Vec<(usize, Tok)>, SfError> {
        let mut out = vec![];
        loop {
            while self.pos < self.chars.len() && self.chars[self.pos].1.is_whitespace() {
                self.pos += 1;
            }
            let start = self.byte_pos();
            let Some(&(_, c)) = self.chars.get(self.pos) else {
                out.push((start, Tok::Eof));
                return Ok(out);
            };
            let tok = if c.is_ascii_alphabetic() || c == '_' {
                let mut s = String::new();
                while let Some(&(_, c)) = self.chars.get(self.pos) {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                        s.push(c);
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                Tok::Ident(s)
            } else if c.is_ascii_digit() || (c == '-' && self.peek_digit()) {
                let mut s = String::from(c);
                self.pos += 1;
                while let Some(&(_, c)) = self.chars.get(self.pos) {
                    if c.is_ascii_digit() || c == '.' {
                        s.push(c);
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                Tok::Num(s)
            } else if c == '\'' {
                self.pos += 1;
                Tok::Str(self.string(start)?)
            } else {
                self.pos += 1;
                let next = self.chars.get(self.pos).map(|c| c.1);
                match (c, next) {
                    ('!', Some('=')) | ('<', Some('>')) => {
                        self.pos += 1;
                        Tok::Punct("!=")
                    }
                    ('=', _) => Tok::Punct("="),
                    ('(', _) => Tok::Punct("("),
                    (')', _) => Tok::Punct(")"),
                    (',', _) => Tok::Punct(","),
                    _ => return Err(malformed(self.src, start, &format!("unexpected token: '{c}'"))),
                }
            };
            out.push((start, tok));
        }
    }

    fn peek_digit(&self) -> bool {
        self.chars.get(self.pos + 1).is_some_and(|c| c.1.is_ascii_digit())
    }

    /// The body of a quoted literal (the opening quote is consumed).
    fn string(&mut self, start: usize) -> Result<String, SfError> {
        let mut s = String::new();
        loop {
            let Some(&(at, c)) = self.chars.get(self.pos) else {
                return Err(malformed(self.src, start, "line 1:0 mismatched character '<EOF>' expecting '''"));
            };
            self.pos += 1;
            match c {
                '\'' => return Ok(s),
                '\\' => {
                    let Some(&(_, e)) = self.chars.get(self.pos) else {
                        return Err(malformed(self.src, at, "Invalid string literal: unterminated escape sequence"));
                    };
                    self.pos += 1;
                    match e {
                        '\'' | '"' | '\\' => s.push(e),
                        'n' => s.push('\n'),
                        'r' => s.push('\r'),
                        't' => s.push('\t'),
                        'b' => s.push('\u{8}'),
                        'f' => s.push('\u{c}'),
                        'u' => {
                            let hex: String = self.chars.iter().skip(self.pos).take(4).map(|c| c.1).collect();
                            let cp = (hex.len() == 4)
                                .then(|| u32::from_str_radix(&hex, 16).ok())
                                .flatten()
                                .and_then(char::from_u32)
                                .ok_or_else(|| malformed(self.src, at, "Invalid unicode escape sequence"))?;
                            self.pos += 4;
                            s.push(cp);
                        }
                        other => {
                            return Err(malformed(
                                self.src,
                                at,
                                &format!("Invalid string literal '\\{other}'. Illegal character sequence '\\{other}' in string literal."),
                            ))
                        }
                    }
                }
                c => s.push(c),
            }
        }
    }
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(usize, Tok)>,
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].1
    }
    fn at(&self) -> usize {
        self.toks[self.i].0
    }
    fn next(&mut self) -> Tok {
        let t = self.toks[self.i].1.clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }
    fn unexpected(&self) -> SfError {
        let what = match self.peek() {
            Tok::Eof => "<EOF>".to_string(),
            Tok::Ident(s) | Tok::Num(s) => s.clone(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Punct(p) => p.to_string(),
        };
        malformed(self.src, self.at(), &format!("unexpected token: {what}"))
    }
    fn keyword(&mut self, kw: &str) -> Result<(), SfError> {
        match self.peek() {
            Tok::Ident(s) if s.eq_ignore_ascii_case(kw) => {
                self.next();
                Ok(())
            }
            _ => Err(self.unexpected()),
        }
    }
    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }
    fn ident(&mut self) -> Result<String, SfError> {
        match self.peek() {
            Tok::Ident(s) if !is_reserved(s) => {
                let s = s.clone();
                self.next();
                Ok(s)
            }
            _ => Err(self.unexpected()),
        }
    }
    fn punct(&mut self, p: &str) -> Result<(), SfError> {
        match self.peek() {
            Tok::Punct(q) if *q == p => {
                self.next();
                Ok(())
            }
            _ => Err(self.unexpected()),
        }
    }
    fn literal(&mut self) -> Result<Lit, SfError> {
        let lit = match self.peek() {
            Tok::Str(s) => Lit::Str(s.clone()),
            Tok::Num(n) => Lit::Num(n.clone()),
            Tok::Ident(s) if s.eq_ignore_ascii_case("true") => Lit::Bool(true),
            Tok::Ident(s) if s.eq_ignore_ascii_case("false") => Lit::Bool(false),
            Tok::Ident(s) if s.eq_ignore_ascii_case("null") => Lit::Null,
            _ => return Err(self.unexpected()),
        };
        self.next();
        Ok(lit)
    }
}

fn is_reserved(s: &str) -> bool {
    ["select", "from", "where", "and", "or", "not", "in", "limit", "order", "by", "group", "having"]
        .iter()
        .any(|k| s.eq_ignore_ascii_case(k))
}

pub fn parse(src: &str) -> Result<Query, SfError> {
    let toks = Lexer::new(src).run()?;
    let mut p = Parser { src, toks, i: 0 };
    p.keyword("select")?;
    let mut fields = vec![p.ident()?];
    while matches!(p.peek(), Tok::Punct(",")) {
        p.next();
        fields.push(p.ident()?);
    }
    p.keyword("from")?;
    let object = p.ident()?;
    let mut conds = vec![];
    if p.is_keyword("where") {
        p.next();
        loop {
            let field = p.ident()?;
            let op = match p.peek().clone() {
                Tok::Punct("=") => {
                    p.next();
                    Op::Eq(p.literal()?)
                }
                Tok::Punct("!=") => {
                    p.next();
                    Op::Ne(p.literal()?)
                }
                Tok::Ident(s) if s.eq_ignore_ascii_case("in") => {
                    p.next();
                    p.punct("(")?;
                    let mut items = vec![p.literal()?];
                    while matches!(p.peek(), Tok::Punct(",")) {
                        p.next();
                        items.push(p.literal()?);
                    }
                    p.punct(")")?;
                    Op::In(items)
                }
                _ => return Err(p.unexpected()),
            };
            conds.push(Cond { field, op });
            if p.is_keyword("and") {
                p.next();
                continue;
            }
            break;
        }
    }
    let mut limit = None;
    if p.is_keyword("limit") {
        p.next();
        match p.next() {
            Tok::Num(n) if n.parse::<usize>().is_ok() => limit = n.parse().ok(),
            _ => {
                p.i = p.i.saturating_sub(1);
                return Err(p.unexpected());
            }
        }
    }
    if *p.peek() != Tok::Eof {
        return Err(p.unexpected());
    }
    Ok(Query { fields, object, conds, limit })
}

fn lit_key(l: &Lit, ftype: FieldType) -> Option<String> {
    match l {
        Lit::Str(s) if matches!(ftype, FieldType::Id | FieldType::Reference) => {
            Some(normalize_id(s).unwrap_or_else(|| s.clone()).to_lowercase())
        }
        Lit::Str(s) => Some(s.to_lowercase()),
        Lit::Num(n) => Some(n.clone()),
        Lit::Bool(b) => Some(b.to_string()),
        Lit::Null => None,
    }
}

/// A field's value as reads show it: system fields computed, unset checkboxes false.
pub fn read_value(def: &ObjectDef, rec: &Record, name: &str) -> Value {
    match name {
        "Id" => Value::String(rec.id.clone()),
        "IsDeleted" => Value::Bool(rec.deleted),
        "CreatedDate" => Value::String(format_datetime(rec.created_ms)),
        "LastModifiedDate" | "SystemModstamp" => Value::String(format_datetime(rec.modified_ms)),
        _ => match rec.fields.get(name) {
            Some(v) => v.clone(),
            None if def.field(name).is_some_and(|f| f.ftype == FieldType::Boolean) => Value::Bool(false),
            None => Value::Null,
        },
    }
}

fn record_key(def: &ObjectDef, rec: &Record, field: &str) -> Option<String> {
    let v = read_value(def, rec, field);
    match (&v, def.field(field).map(|f| f.ftype)) {
        (Value::String(s), Some(FieldType::Id | FieldType::Reference)) => Some(s.to_lowercase()),
        _ => match_key(&v),
    }
}

/// Runs a parsed query: `{"totalSize","done","records"}`. `version` is the API version in the URL
/// (used for the records' attribute URLs).
pub fn execute(store: &Store, q: &Query, version: &str) -> Result<Value, SfError> {
    let def = store.object(&q.object).ok_or_else(|| {
        SfError::new(
            400,
            "INVALID_TYPE",
            format!(
                "\nSELECT {} FROM {}\n{}^\nERROR at Row:1:Column:{}\nsObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
                q.fields.join(","),
                q.object,
                " ".repeat(q.fields.join(",").len() + 13),
                q.fields.join(",").len() + 14,
                q.object
            ),
        )
    })?;
    let no_column = |name: &str| {
        SfError::new(
            400,
            "INVALID_FIELD",
            format!(
                "No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                def.name
            ),
        )
    };
    let mut fields = vec![];
    for f in &q.fields {
        fields.push(def.field(f).ok_or_else(|| no_column(f))?.name.clone());
    }
    let mut conds = vec![];
    for c in &q.conds {
        let fd = def.field(&c.field).ok_or_else(|| no_column(&c.field))?;
        conds.push((fd, &c.op));
    }
    let table = store.table(&def.name);

    // Candidate ids: from an index when the first condition allows it, else every record.
    let candidates: Vec<&String> = match conds.first() {
        Some((fd, Op::Eq(l))) if fd.ftype == FieldType::Id || table.index.contains_key(&fd.name) => {
            let ids: Vec<String> = lit_key(l, fd.ftype).map(|k| lookup(table, &fd.name, fd.ftype, &k)).unwrap_or_default();
            return finish(store, &def, &fields, &conds, ids.iter(), q.limit, version);
        }
        Some((fd, Op::In(ls))) if fd.ftype == FieldType::Id || table.index.contains_key(&fd.name) => {
            let mut ids: Vec<String> = vec![];
            for l in ls {
                if let Some(k) = lit_key(l, fd.ftype) {
                    for id in lookup(table, &fd.name, fd.ftype, &k) {
                        if !ids.contains(&id) {
                            ids.push(id);
                        }
                    }
                }
            }
            // Salesforce returns rows in no guaranteed order; creation order is a fair stand-in.
            ids.sort_by_key(|id| table.records.get(id).map(|r| r.created_ms).unwrap_or(0));
            return finish(store, &def, &fields, &conds, ids.iter(), q.limit, version);
        }
        _ => table.order.iter().collect(),
    };
    finish(store, &def, &fields, &conds, candidates.into_iter(), q.limit, version)
}

fn lookup(table: &crate::state::Table, field: &str, ftype: FieldType, key: &str) -> Vec<String> {
    if ftype == FieldType::Id {
        // Keys are lower-cased 18-character Ids; the suffix restores the case.
        return normalize_id(key)
            .into_iter()
            .filter(|id| table.records.get(id).is_some_and(|r| !r.deleted))
            .collect();
    }
    table.find_by(field, key)
}

fn finish<'a>(
    store: &Store,
    def: &ObjectDef,
    fields: &[String],
    conds: &[(&crate::state::FieldDef, &Op)],
    ids: impl Iterator<Item = &'a String>,
    limit: Option<usize>,
    version: &str,
) -> Result<Value, SfError> {
    let table = store.table(&def.name);
    let mut records = vec![];
    for id in ids {
        let Some(rec) = table.records.get(id) else { continue };
        if rec.deleted {
            continue;
        }
        let ok = conds.iter().all(|(fd, op)| {
            let k = record_key(def, rec, &fd.name);
            match op {
                Op::Eq(l) => k == lit_key(l, fd.ftype),
                Op::Ne(l) => k != lit_key(l, fd.ftype),
                Op::In(ls) => ls.iter().any(|l| k.is_some() && k == lit_key(l, fd.ftype)),
            }
        });
        if !ok {
            continue;
        }
        if limit.is_some_and(|n| records.len() >= n) {
            break;
        }
        let mut m = Map::new();
        m.insert(
            "attributes".into(),
            json!({"type": def.name, "url": format!("/services/data/{version}/sobjects/{}/{}", def.name, rec.id)}),
        );
        for f in fields {
            m.insert(f.clone(), read_value(def, rec, f));
        }
        records.push(Value::Object(m));
    }
    Ok(json!({"totalSize": records.len(), "done": true, "records": records}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(q: &Query) -> Vec<String> {
        match &q.conds[0].op {
            Op::In(ls) => ls_to(ls),
            Op::Eq(l) | Op::Ne(l) => ls_to(std::slice::from_ref(l)),
        }
    }
    fn ls_to(ls: &[Lit]) -> Vec<String> {
        ls.iter()
            .map(|l| match l {
                Lit::Str(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn parses_in_query_case_insensitively() {
        let q = parse("select Id, ExternalId__c from contact where externalid__c in ('a','b' , 'c') LIMIT 5").unwrap();
        assert_eq!(q.fields, ["Id", "ExternalId__c"]);
        assert_eq!(q.object, "contact");
        assert_eq!(q.conds[0].field, "externalid__c");
        assert_eq!(strs(&q), ["a", "b", "c"]);
        assert_eq!(q.limit, Some(5));
    }

    #[test]
    fn escapes() {
        let q = parse(r#"SELECT Id FROM Contact WHERE Name = 'O\'Brien \"x\" \\ \n\r\t\b\f \u00e9'"#).unwrap();
        assert_eq!(strs(&q), ["O'Brien \"x\" \\ \n\r\t\u{8}\u{c} é"]);
    }

    #[test]
    fn injection_attempt_stays_a_literal() {
        // The value `x' OR Name != '` escaped properly is one literal, not an OR clause.
        let q = parse(r"SELECT Id FROM Contact WHERE Email = 'x\' OR Name != \''").unwrap();
        assert_eq!(q.conds.len(), 1);
        assert_eq!(strs(&q), ["x' OR Name != '"]);
        // Unescaped, the same value breaks out of the literal: not in the subset -> MALFORMED_QUERY.
        let e = parse("SELECT Id FROM Contact WHERE Email = 'x' OR Name != ''").unwrap_err();
        assert_eq!(e.code, "MALFORMED_QUERY");
        assert!(e.message.contains("unexpected token: OR"), "{}", e.message);
    }

    #[test]
    fn malformed_queries() {
        for q in [
            "",
            "SELECT FROM Contact",
            "SELECT Id Contact",
            "SELECT Id FROM Contact WHERE",
            "SELECT Id FROM Contact WHERE Email IN ('a',)",
            "SELECT Id FROM Contact WHERE Email = 'unterminated",
            r"SELECT Id FROM Contact WHERE Email = 'bad \q escape'",
            "SELECT Id FROM Contact WHERE Email = 'a' extra",
            "SELECT Id FROM Contact LIMIT x",
        ] {
            let e = parse(q).unwrap_err();
            assert_eq!(e.code, "MALFORMED_QUERY", "{q}");
            assert_eq!(e.status, 400);
        }
    }

    #[test]
    fn error_message_points_at_the_token() {
        let e = parse("SELECT Id FROM Contact WHERE").unwrap_err();
        assert_eq!(
            e.message,
            "\nSELECT Id FROM Contact WHERE\n                            ^\nERROR at Row:1:Column:29\nunexpected token: <EOF>"
        );
    }
}
