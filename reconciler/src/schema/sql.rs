//! Small lexical helpers shared by the desired-file parser and the canonical parser.

use sqlparser::dialect::MySqlDialect;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, TokenizerError};

/// Quotes an identifier the way the server prints it.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quotes a string literal the way `SHOW CREATE TABLE` does.
pub fn quote_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Makes MySQL's executable comments (`/*!50100 … */`, MariaDB's `/*M!100100 … */`) plain SQL
/// by blanking their markers with spaces, so every byte, line and column keeps its position.
/// sqlparser treats them as comments, which would hide e.g. a `PARTITION BY` clause.
pub fn unwrap_executable_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    let mut open_versioned = 0usize;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = quote {
            if b == b'\\' && q != b'`' {
                i += 2;
                continue;
            }
            if b == q {
                if bytes.get(i + 1) == Some(&q) {
                    i += 2;
                    continue;
                }
                quote = None;
            }
            i += 1;
            continue;
        }
        match b {
            b'\'' | b'"' | b'`' => {
                quote = Some(b);
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let marker = if bytes.get(i + 2) == Some(&b'!') {
                    Some(3)
                } else if bytes.get(i + 2) == Some(&b'M') && bytes.get(i + 3) == Some(&b'!') {
                    Some(4)
                } else {
                    None
                };
                let digits = |start: usize| {
                    let mut end = start;
                    while end < bytes.len() && bytes[end].is_ascii_digit() {
                        end += 1;
                    }
                    end
                };
                // Version 999999 means "no server runs this" (mariadb-dump's sandbox marker).
                let marker = marker.filter(|&len| &text[i + len..digits(i + len)] != "999999");
                match marker {
                    Some(len) => {
                        let end = digits(i + len);
                        out[i..end].fill(b' ');
                        open_versioned += 1;
                        i = end;
                    }
                    None => {
                        // An ordinary comment: skip to its end untouched.
                        i += 2;
                        while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                            i += 1;
                        }
                        i += 2;
                    }
                }
            }
            b'*' if open_versioned > 0 && bytes.get(i + 1) == Some(&b'/') => {
                out[i] = b' ';
                out[i + 1] = b' ';
                open_versioned -= 1;
                i += 2;
            }
            _ => i += 1,
        }
    }
    // Only ASCII bytes were replaced by ASCII spaces, so the text is still UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

pub fn tokenize(text: &str) -> Result<Vec<TokenWithSpan>, TokenizerError> {
    Tokenizer::new(&MySqlDialect {}, text).tokenize_with_location()
}

/// True when the token carries meaning (not whitespace or a comment).
pub fn significant(token: &Token) -> bool {
    !matches!(token, Token::Whitespace(_) | Token::EOF)
}

/// Upper-cased keyword text of a word token, None for anything else (quoted names included).
pub fn keyword(token: &Token) -> Option<String> {
    match token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// Maps sqlparser line/column locations (1-based, columns in characters) to byte offsets.
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    pub fn offset(&self, loc: Location) -> usize {
        let Some(&start) = self.starts.get(loc.line.saturating_sub(1) as usize) else {
            return self.text.len();
        };
        let column = loc.column.saturating_sub(1) as usize;
        self.text[start..]
            .char_indices()
            .nth(column)
            .map(|(i, _)| start + i)
            .unwrap_or(self.text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_comments_keep_positions() {
        let text = "CREATE TABLE t (a int) /*!50100 PARTITION BY HASH (a) */ -- /*!1 x */\n'/*!1'";
        let out = unwrap_executable_comments(text);
        assert_eq!(out.len(), text.len());
        assert!(out.contains("         PARTITION BY HASH (a)    "));
        assert!(out.ends_with("-- /*!1 x */\n'/*!1'"));
        let maria = unwrap_executable_comments("/*M!100301 COMPRESSED*/");
        assert_eq!(maria.trim(), "COMPRESSED");
        let sandbox = "/*M!999999\\- enable the sandbox mode */";
        assert_eq!(unwrap_executable_comments(sandbox), sandbox);
    }

    #[test]
    fn quoting_matches_the_server() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_string("it's\n"), "'it''s\\n'");
    }

    #[test]
    fn line_index_maps_columns() {
        let text = "ab\ncdé f";
        let index = LineIndex::new(text);
        assert_eq!(&text[index.offset(Location::new(2, 5))..], "f");
        assert_eq!(index.offset(Location::new(9, 1)), text.len());
    }
}
