//! The CSV of Bulk API 2.0 (RFC 4180, UTF-8, LF line endings, comma delimiter): the upload a job's
//! writes become, and the result files Salesforce hands back.

use serde_json::{Map, Value};
use std::collections::HashMap;

/// What Salesforce reads as "set this field to null" (an empty cell leaves the field unchanged).
pub const NULL_CELL: &str = "#N/A";

/// A job's upload: the union of its writes' columns, one row per write.
pub struct Table {
    pub columns: Vec<String>,
    /// Lower-cased column name → index: field names are case-insensitive in Salesforce, so
    /// `LastName` and `lastname` are one column.
    index: HashMap<String, usize>,
    /// Cells by column index; a missing cell is empty.
    pub rows: Vec<Vec<(usize, String)>>,
}

impl Table {
    pub fn new() -> Table {
        Table { columns: Vec::new(), index: HashMap::new(), rows: Vec::new() }
    }

    pub fn column(&mut self, name: &str) -> usize {
        let lower = name.to_lowercase();
        if let Some(&i) = self.index.get(&lower) {
            return i;
        }
        self.columns.push(name.to_owned());
        self.index.insert(lower, self.columns.len() - 1);
        self.columns.len() - 1
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.index.get(&name.to_lowercase()).copied()
    }

    /// Adds a row: `leading` cells (the Id or external ID) first, then the record's fields from its
    /// JSON fragment (`"A":1,"B":"x"`). Parent lookups (`"Account":{"AccountNumber__c":"A-1"}`)
    /// become `Account.AccountNumber__c` columns.
    pub fn push_row(&mut self, leading: &[(&str, &str)], fields: &[u8]) -> Result<(), String> {
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
        self.rows.push(row);
        Ok(())
    }

    /// One row as its CSV line (without the line end), all columns.
    pub fn line(&self, row: usize) -> String {
        let mut cells = vec![""; self.columns.len()];
        for (i, value) in &self.rows[row] {
            cells[*i] = value;
        }
        encode_line(cells.iter().copied())
    }

    pub fn header(&self) -> String {
        encode_line(self.columns.iter().map(String::as_str))
    }
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
pub fn parse(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut cell = String::new();
    let mut chars = text.chars().peekable();
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
            '"' => return Err(format!("a quote inside an unquoted cell on line {}", rows.len() + 1)),
            ',' => {
                row.push(std::mem::take(&mut cell));
                quoted_cell = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                let blank = row.is_empty() && cell.is_empty() && !quoted_cell;
                row.push(std::mem::take(&mut cell));
                quoted_cell = false;
                if blank {
                    row.clear();
                } else {
                    rows.push(std::mem::take(&mut row));
                }
            }
            _ if quoted_cell => return Err(format!("text after a closing quote on line {}", rows.len() + 1)),
            _ => cell.push(ch),
        }
    }
    if in_quotes {
        return Err("the last quoted cell is not closed".into());
    }
    if !cell.is_empty() || quoted_cell || !row.is_empty() {
        row.push(cell);
        rows.push(row);
    }
    Ok(rows)
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
    fn table_takes_the_union_of_columns_case_insensitively() {
        let mut t = Table::new();
        t.push_row(&[("Ext__c", "k1")], br#""LastName":"A","Email":null"#).unwrap();
        t.push_row(&[("Ext__c", "k2")], br#""lastname":"B","Account":{"AccountNumber__c":"A-1"},"Flag__c":true,"N__c":1.50,"S":"""#).unwrap();
        assert_eq!(t.header(), "Ext__c,LastName,Email,Account.AccountNumber__c,Flag__c,N__c,S");
        assert_eq!(t.line(0), "k1,A,#N/A,,,,");
        assert_eq!(t.line(1), "k2,B,,A-1,true,1.50,#N/A");
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
