//! The CSV of Bulk API 2.0 (RFC 4180, UTF-8, LF line endings, comma delimiter): the upload a job's
//! writes become, and the result files Salesforce hands back.

use serde_json::{Map, Value};
use std::collections::HashMap;

/// What Salesforce reads as "set this field to null" (an empty cell leaves the field unchanged).
pub const NULL_CELL: &str = "#N/A";

/// A job's columns: the union of its writes' fields, in the order first seen.
pub struct Columns {
    pub names: Vec<String>,
    /// Lower-cased column name → index: field names are case-insensitive in Salesforce, so
    /// `LastName` and `lastname` are one column.
    index: HashMap<String, usize>,
}

impl Columns {
    pub fn new() -> Columns {
        Columns { names: Vec::new(), index: HashMap::new() }
    }

    pub fn column(&mut self, name: &str) -> usize {
        let lower = name.to_lowercase();
        if let Some(&i) = self.index.get(&lower) {
            return i;
        }
        self.names.push(name.to_owned());
        self.index.insert(lower, self.names.len() - 1);
        self.names.len() - 1
    }

    pub fn header(&self) -> String {
        encode_line(self.names.iter().map(String::as_str))
    }

    /// A record's cells: `leading` cells (the Id or external ID) first, then its fields from its
    /// JSON fragment (`"A":1,"B":"x"`), with columns added as they are first seen. Parent lookups
    /// (`"Account":{"AccountNumber__c":"A-1"}`) become `Account.AccountNumber__c` columns.
    pub fn cells(&mut self, leading: &[(&str, &str)], fields: &[u8]) -> Result<Vec<(usize, String)>, String> {
        let mut row = Vec::with_capacity(leading.len() + 8);
        for (name, value) in leading {
            let i = self.column(name);
            row.push((i, (*value).to_owned()));
        }
        if !fields.is_empty() {
            let mut object = Vec::with_capacity(fields.len() + 2);
            object.push(b'{');
            object.extend_from_slice(fields);
            object.push(b'}');
            let map: Map<String, Value> =
                serde_json::from_slice(&object).map_err(|e| format!("the record's fields are not a JSON object: {e}"))?;
            for (name, value) in map {
                match value {
                    Value::Object(parent) => {
                        for (parent_field, value) in parent {
                            let i = self.column(&format!("{name}.{parent_field}"));
                            row.push((i, cell(&value)?));
                        }
                    }
                    value => {
                        let i = self.column(&name);
                        row.push((i, cell(&value)?));
                    }
                }
            }
        }
        // A repeated column (two spellings of one field) keeps its first value, as JSON readers do.
        let mut seen = std::collections::HashSet::new();
        row.retain(|(i, _)| seen.insert(*i));
        Ok(row)
    }

    /// Appends one row's CSV line (with its line end) to `out`, all columns.
    pub fn write_line(&self, cells: &[(usize, String)], out: &mut Vec<u8>) {
        let mut line = vec![""; self.names.len()];
        for (i, value) in cells {
            line[*i] = value;
        }
        out.extend_from_slice(encode_line(line.into_iter()).as_bytes());
        out.push(b'\n');
    }
}

/// Whether Bulk API cannot carry this write as it means it: a text value exactly `#N/A` (Bulk API
/// reads it as "clear the field"), or an INSERT without fields (its row would be blank, and
/// Salesforce skips blank lines). Such writes go through Collections.
pub fn unfit_for_bulk(op: crate::config::Operation, fields: &[u8]) -> bool {
    let text_null = format!("\"{NULL_CELL}\"");
    (op == crate::config::Operation::Insert && fields.iter().all(u8::is_ascii_whitespace))
        || fields.windows(text_null.len()).any(|w| w == text_null.as_bytes())
}

/// A JSON value (as `convert` wrote it) as a CSV cell. Nulls and empty strings clear the field,
/// as they do through the REST API (Salesforce keeps no empty text).
fn cell(value: &Value) -> Result<String, String> {
    Ok(match value {
        Value::Null => NULL_CELL.to_owned(),
        Value::String(s) if s.is_empty() => NULL_CELL.to_owned(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) | Value::Object(_) => return Err("a nested value deeper than a parent lookup has no CSV form".into()),
    })
}

pub fn encode_line<'a>(cells: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (n, c) in cells.enumerate() {
        if n > 0 {
            out.push(',');
        }
        encode_cell(&mut out, c);
    }
    out
}

/// Quotes a cell when it holds a delimiter, a quote, a line break or outer spaces; quotes inside
/// are doubled. Leading `=`, `+`, `-`, `@` are data to Salesforce and travel unchanged.
fn encode_cell(out: &mut String, cell: &str) {
    let needs_quotes = cell.contains([',', '"', '\n', '\r']) || cell.starts_with(' ') || cell.ends_with(' ');
    if !needs_quotes {
        out.push_str(cell);
        return;
    }
    out.push('"');
    for ch in cell.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
}

/// Parses a whole CSV document (RFC 4180; LF or CRLF line ends; quoted cells may hold both) into
/// rows of cells. A final line end is optional; blank lines are skipped.
#[cfg(any(test, feature = "test-support"))]
pub fn parse(text: &str) -> Result<Vec<Vec<String>>, String> {
    Rows::new(text).map(|r| r.map(|(row, _)| row)).collect()
}

/// The rows of a CSV document one at a time, each with whether its line end was there (a last
/// row without one may have been cut short). A UTF-8 byte order mark before the first row is
/// skipped. After an error the iterator ends.
pub struct Rows<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    failed: bool,
}

impl<'a> Rows<'a> {
    pub fn new(text: &'a str) -> Rows<'a> {
        Rows { chars: text.strip_prefix('\u{feff}').unwrap_or(text).chars().peekable(), line: 0, failed: false }
    }
}

impl Iterator for Rows<'_> {
    type Item = Result<(Vec<String>, bool), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let result = self.row();
        self.failed = matches!(result, Some(Err(_)));
        result
    }
}

impl Rows<'_> {
    fn row(&mut self) -> Option<Result<(Vec<String>, bool), String>> {
        let chars = &mut self.chars;
        let mut row: Vec<String> = Vec::new();
        let mut cell = String::new();
        let mut in_quotes = false;
        let mut quoted_cell = false;
        while let Some(ch) = chars.next() {
            if in_quotes {
                match ch {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        cell.push('"');
                    }
                    '"' => in_quotes = false,
                    _ => cell.push(ch),
                }
                continue;
            }
            match ch {
                '"' if cell.is_empty() && !quoted_cell => {
                    in_quotes = true;
                    quoted_cell = true;
                }
                '"' => return Some(Err(format!("a quote inside an unquoted cell on line {}", self.line + 1))),
                ',' => {
                    row.push(std::mem::take(&mut cell));
                    quoted_cell = false;
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    let blank = row.is_empty() && cell.is_empty() && !quoted_cell;
                    if blank {
                        continue;
                    }
                    row.push(cell);
                    self.line += 1;
                    return Some(Ok((row, true)));
                }
                _ if quoted_cell => return Some(Err(format!("text after a closing quote on line {}", self.line + 1))),
                _ => cell.push(ch),
            }
        }
        if in_quotes {
            return Some(Err("the last quoted cell is not closed".into()));
        }
        if !cell.is_empty() || quoted_cell || !row.is_empty() {
            row.push(cell);
            self.line += 1;
            return Some(Ok((row, false)));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_round_trip() {
        let hostile = ["plain", "a,b", "say \"hi\"", "two\nlines", "crlf\r\nline", " padded ", "=1+2", "+31", "", "ünï©ødé", "\"", ",,"];
        let line = encode_line(hostile.iter().copied());
        let parsed = parse(&format!("{line}\n")).unwrap();
        assert_eq!(parsed, vec![hostile.iter().map(|s| s.to_string()).collect::<Vec<_>>()]);
    }

    #[test]
    fn columns_are_the_union_of_fields_case_insensitively() {
        let mut t = Columns::new();
        let first = t.cells(&[("Ext__c", "k1")], br#""LastName":"A","Email":null"#).unwrap();
        let second = t.cells(&[("Ext__c", "k2")], br#""lastname":"B","Account":{"AccountNumber__c":"A-1"},"Flag__c":true,"N__c":1.50,"S":"""#).unwrap();
        assert_eq!(t.header(), "Ext__c,LastName,Email,Account.AccountNumber__c,Flag__c,N__c,S");
        let mut out = Vec::new();
        t.write_line(&first, &mut out);
        t.write_line(&second, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "k1,A,#N/A,,,,\nk2,B,,A-1,true,1.50,#N/A\n");
    }

    #[test]
    fn a_byte_order_mark_is_skipped_and_a_cut_last_row_is_flagged() {
        let rows: Vec<_> = Rows::new("\u{feff}a,b\n1,2\n3,").collect::<Result<_, _>>().unwrap();
        assert_eq!(rows[0], (vec!["a".to_string(), "b".to_string()], true));
        assert!(rows[1].1);
        assert_eq!(rows[2], (vec!["3".to_string(), String::new()], false));
        let mut cut = Rows::new("a,b\n1,2\n\"3");
        assert!(cut.next().unwrap().is_ok() && cut.next().unwrap().is_ok());
        assert!(cut.next().unwrap().is_err());
        assert!(cut.next().is_none(), "the rows before an error stand; nothing after it");
    }

    #[test]
    fn text_that_bulk_would_read_as_null_goes_elsewhere() {
        use crate::config::Operation;
        assert!(unfit_for_bulk(Operation::Upsert, br##""LastName":"#N/A""##));
        assert!(!unfit_for_bulk(Operation::Upsert, br##""LastName":"#N/A x""##));
        assert!(unfit_for_bulk(Operation::Insert, b""));
        assert!(!unfit_for_bulk(Operation::Upsert, b""));
        assert!(!unfit_for_bulk(Operation::Insert, br#""LastName":null"#));
    }

    #[test]
    fn malformed_csv_is_an_error() {
        assert!(parse("a,\"b").is_err());
        assert!(parse("a,b\"c\n").is_err());
        assert!(parse("\"a\"b\n").is_err());
        assert_eq!(parse("a,b\r\n\r\nc,d").unwrap(), vec![vec!["a", "b"], vec!["c", "d"]]);
        assert_eq!(parse("\"\"\n").unwrap(), vec![vec![""]]);
    }
}
