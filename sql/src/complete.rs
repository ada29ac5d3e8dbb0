//! What a line editor asks of the SQL it is given: whether a text ends a
//! statement (the REPL's validator), which words complete the one under
//! the cursor ([`complete`]), and how to colour it ([`highlight`]). All
//! read with the same tokenizer and dialect as the parser, so a `;` inside
//! a string, a quoted name or a comment does not end anything.
//!
//! Completion looks at where the cursor is: inside `WITH (…)` it offers
//! the connectors' options (and after `connector =`, the connectors);
//! after `FROM` or `JOIN`, sources and tables; after `INSERT INTO`, sinks;
//! after `SET`, the settings; after `STOP QUERY`, running queries;
//! elsewhere keywords, sources, tables, sinks and every column. Keywords
//! come back in the case the word was started in.

use std::ops::Range;

use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use crate::dialect::BrookletDialect;

/// True when `text` ends a statement: its last token, after whitespace and
/// comments, is `;`. Text that is empty, has no `;` at its end, or stops
/// inside a string, quoted name or block comment is not complete; whether
/// the statements parse is left to the parser.
pub fn is_complete(text: &str) -> bool {
    match Tokenizer::new(&BrookletDialect::default(), text).tokenize() {
        Ok(tokens) => tokens
            .iter()
            .rev()
            .find(|t| !matches!(t, Token::Whitespace(_)))
            .is_some_and(|t| *t == Token::SemiColon),
        // An unterminated string or comment: the statement goes on.
        Err(_) => false,
    }
}

/// The SQL keywords offered and coloured.
pub const KEYWORDS: &[&str] = &[
    "ALL",
    "AND",
    "AS",
    "ASC",
    "AVG",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "CHANGES",
    "CLOSE",
    "COMPLETE",
    "COUNT",
    "CREATE",
    "DESC",
    "DESCRIPTOR",
    "DISTINCT",
    "DROP",
    "ELSE",
    "EMIT",
    "END",
    "EXISTS",
    "EXPLAIN",
    "EXTERNAL",
    "FALSE",
    "FOR",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "HOP",
    "IF",
    "IN",
    "INNER",
    "INSERT",
    "INTERVAL",
    "INTO",
    "IS",
    "JOIN",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOCATION",
    "MAX",
    "METADATA",
    "MIN",
    "NOT",
    "NULL",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "PARTITION",
    "QUERIES",
    "QUERY",
    "RIGHT",
    "SELECT",
    "SESSION",
    "SET",
    "SHOW",
    "SINK",
    "SOURCE",
    "STOP",
    "STORED",
    "SUM",
    "TABLE",
    "THEN",
    "TRUE",
    "TUMBLE",
    "UNION",
    "VALUES",
    "WATERMARK",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
];

/// What completion can offer besides keywords: the names the engine
/// knows now.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Sources and tables, each with its columns.
    pub relations: Vec<(String, Vec<String>)>,
    /// Sinks.
    pub sinks: Vec<String>,
    /// Running queries.
    pub queries: Vec<String>,
    /// Connector names (sources' and sinks').
    pub connectors: Vec<String>,
    /// Options connectors take (`hostname`, `bootstrap.servers`, `s3.`).
    pub options: Vec<String>,
    /// What `SET` knows.
    pub settings: Vec<String>,
}

/// The option names of a connector's description (`"hostname, port,
/// format = 'csv' | 'json', s3.*"` gives hostname, port, format, s3.).
pub fn option_names(description: &str) -> Vec<String> {
    description
        .split(',')
        .filter_map(|piece| {
            let name: String = piece
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '*'))
                .collect();
            let name = name.trim_end_matches('*').to_string();
            (!name.is_empty() && name.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
                .then_some(name)
        })
        .collect()
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

/// Where the word under the cursor starts, and the words before it
/// (lower-cased, outside strings), for context.
fn split_at_cursor(before: &str) -> (usize, Vec<String>) {
    let start = before
        .char_indices()
        .rev()
        .find(|(_, c)| !is_word_char(*c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let words = before[..start]
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    (start, words)
}

/// Whether the cursor is inside an open `WITH (` list.
fn in_with_list(before: &str) -> bool {
    let lower = before.to_lowercase();
    let Some(with) = lower.rfind("with") else {
        return false;
    };
    let rest = &lower[with + 4..];
    rest.trim_start().starts_with('(') && !rest.contains(')')
}

/// The completions of the word that ends at byte `pos` of `line`: where
/// the word starts, and the candidates, sorted.
pub fn complete(line: &str, pos: usize, catalog: &Catalog) -> (usize, Vec<String>) {
    let before = &line[..pos.min(line.len())];
    let (start, words) = split_at_cursor(before);
    let prefix = &before[start..];
    let last = words.last().map(String::as_str);
    let relations = || catalog.relations.iter().map(|(name, _)| name.clone());
    let mut candidates: Vec<String> = if in_with_list(before) {
        let key_before_equals = before[..start].trim_end().ends_with('=');
        if key_before_equals {
            if before[..start]
                .to_lowercase()
                .trim_end()
                .trim_end_matches('=')
                .trim_end()
                .ends_with("connector")
            {
                catalog.connectors.clone()
            } else {
                Vec::new()
            }
        } else {
            let mut options = catalog.options.clone();
            options.push("connector".into());
            options
        }
    } else if matches!(last, Some("from" | "join")) {
        relations().collect()
    } else if words.len() >= 2 && words[words.len() - 2] == "insert" && last == Some("into") {
        catalog.sinks.clone()
    } else if words.len() == 1 && last == Some("set") {
        catalog.settings.clone()
    } else if words.len() >= 2 && words[words.len() - 2] == "stop" && last == Some("query") {
        catalog.queries.clone()
    } else {
        let keyword_case = |k: &&str| {
            if !prefix.is_empty() && prefix.chars().all(|c| !c.is_uppercase()) {
                k.to_lowercase()
            } else {
                k.to_string()
            }
        };
        KEYWORDS
            .iter()
            .map(keyword_case)
            .chain(relations())
            .chain(catalog.sinks.iter().cloned())
            .chain(
                catalog
                    .relations
                    .iter()
                    .flat_map(|(_, columns)| columns.iter().cloned()),
            )
            .collect()
    };
    let lower = prefix.to_lowercase();
    candidates.retain(|c| c.to_lowercase().starts_with(&lower) && c != prefix);
    candidates.sort();
    candidates.dedup();
    (start, candidates)
}

/// What a stretch of SQL is, for colouring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Highlight {
    /// A keyword of [`KEYWORDS`].
    Keyword,
    /// A quoted string.
    String,
    /// A number.
    Number,
    /// A comment.
    Comment,
}

/// The stretches of `text` worth colouring, in order, as byte ranges.
/// Text the tokenizer cannot read (an open string) gets none.
pub fn highlight(text: &str) -> Vec<(Range<usize>, Highlight)> {
    let Ok(tokens) = Tokenizer::new(&BrookletDialect::default(), text).tokenize_with_location()
    else {
        return Vec::new();
    };
    let mut line_starts = vec![0];
    line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    let offset = |line: u64, column: u64| -> usize {
        let Some(&start) = line_starts.get((line.max(1) - 1) as usize) else {
            return text.len();
        };
        text[start..]
            .char_indices()
            .nth((column.max(1) - 1) as usize)
            .map_or(text.len(), |(i, _)| start + i)
    };
    tokens
        .iter()
        .filter_map(|t| {
            let class = match &t.token {
                Token::Word(w)
                    if w.quote_style.is_none()
                        && KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(&w.value)) =>
                {
                    Highlight::Keyword
                }
                Token::SingleQuotedString(_) => Highlight::String,
                Token::Number(..) => Highlight::Number,
                Token::Whitespace(
                    Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_),
                ) => Highlight::Comment,
                _ => return None,
            };
            let range = offset(t.span.start.line, t.span.start.column)
                ..offset(t.span.end.line, t.span.end.column);
            Some((range, class))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog {
            relations: vec![
                ("clicks".into(), vec!["page".into(), "user_id".into()]),
                ("pages".into(), vec!["title".into()]),
            ],
            sinks: vec!["out".into()],
            queries: vec!["q1".into(), "q2".into()],
            connectors: vec!["socket".into(), "kafka".into()],
            options: option_names(
                "hostname, port, format = 'csv' | 'json', s3.*, bootstrap.servers",
            ),
            settings: vec!["batch.interval".into(), "state.ttl".into()],
        }
    }

    #[test]
    fn connector_descriptions_give_option_names() {
        assert_eq!(
            option_names("path (a directory), format = 'csv' | 'json', s3.*, properties.*"),
            vec!["path", "format", "s3.", "properties."]
        );
    }

    #[test]
    fn after_from_come_sources_and_tables() {
        let (start, found) = complete("SELECT * FROM cl", 16, &catalog());
        assert_eq!((start, found), (14, vec!["clicks".to_string()]));
        let (_, found) = complete("select * from ", 14, &catalog());
        assert_eq!(found, vec!["clicks", "pages"]);
    }

    #[test]
    fn inside_with_come_options_and_after_connector_the_connectors() {
        let line = "CREATE SOURCE s (a INT) WITH (connector = 'socket', host";
        let (start, found) = complete(line, line.len(), &catalog());
        assert_eq!(found, vec!["hostname"]);
        assert_eq!(&line[start..], "host");
        let line = "CREATE SOURCE s (a INT) WITH (connector = ka";
        assert_eq!(complete(line, line.len(), &catalog()).1, vec!["kafka"]);
        let line = "CREATE SOURCE s (a INT) WITH (bootstrap.s";
        assert_eq!(
            complete(line, line.len(), &catalog()).1,
            vec!["bootstrap.servers"]
        );
    }

    #[test]
    fn keywords_keep_the_case_they_were_started_in_and_columns_come_too() {
        assert_eq!(complete("SEL", 3, &catalog()).1, vec!["SELECT"]);
        assert_eq!(complete("sel", 3, &catalog()).1, vec!["select"]);
        assert_eq!(complete("SELECT us", 9, &catalog()).1, vec!["user_id"]);
        assert_eq!(complete("INSERT INTO o", 13, &catalog()).1, vec!["out"]);
        assert_eq!(
            complete("SET batch", 9, &catalog()).1,
            vec!["batch.interval"]
        );
        assert_eq!(complete("STOP QUERY ", 11, &catalog()).1, vec!["q1", "q2"]);
    }

    #[test]
    fn keywords_strings_numbers_and_comments_are_coloured() {
        let text = "SELECT 'a;b', 42 FROM t -- done";
        let found: Vec<(&str, Highlight)> = highlight(text)
            .into_iter()
            .map(|(r, h)| (&text[r], h))
            .collect();
        assert_eq!(
            found,
            vec![
                ("SELECT", Highlight::Keyword),
                ("'a;b'", Highlight::String),
                ("42", Highlight::Number),
                ("FROM", Highlight::Keyword),
                ("-- done", Highlight::Comment),
            ]
        );
        assert!(highlight("SELECT 'open").is_empty());
    }

    #[test]
    fn a_semicolon_at_the_end_completes_a_statement() {
        assert!(is_complete("SELECT 1;"));
        assert!(is_complete("SELECT line\nFROM lines ;  "));
        assert!(is_complete("SELECT 1; SELECT 2;"));
        assert!(is_complete("SELECT 1; -- done\n"));
        assert!(is_complete("SELECT 1; /* done */"));
    }

    #[test]
    fn text_without_a_final_semicolon_is_not_complete() {
        assert!(!is_complete(""));
        assert!(!is_complete("   \n"));
        assert!(!is_complete("SELECT line\nFROM lines"));
        assert!(!is_complete("SELECT 1; SELECT 2"));
    }

    #[test]
    fn a_semicolon_in_a_string_or_comment_does_not_count() {
        assert!(!is_complete("SELECT ';"));
        assert!(!is_complete("SELECT ';'"));
        assert!(is_complete("SELECT ';' ;"));
        assert!(!is_complete("SELECT 1 -- ;"));
        assert!(!is_complete("SELECT 1 /* ; */"));
        assert!(!is_complete("SELECT 1 /* ;"));
        assert!(!is_complete("SELECT \"a;"));
    }
}
