//! The parser: sqlparser (the version DataFusion re-exports, so there is one
//! AST) wrapped the way DataFusion's own `DFParser` is. It reads Brooklet's
//! statements itself and hands everything else to sqlparser:
//!
//! - `CREATE SOURCE | TABLE | STREAM [IF NOT EXISTS] name [(columns)] WITH (key = value, …)`;
//! - `CREATE SINK [IF NOT EXISTS] name WITH (…)`;
//! - `CREATE EXTERNAL TABLE …`: a static table, read by DataFusion's own
//!   parser (its syntax and options, unchanged);
//! - `DROP SOURCE | TABLE | STREAM | SINK [IF EXISTS] name`;
//! - `SET key = value` / `SET key TO value` with dotted keys (`batch.interval`);
//! - a query, optionally followed by `EMIT CHANGES | COMPLETE | ON WINDOW CLOSE`;
//! - `INSERT INTO sink <query> [EMIT …]`.
//!
//! Option keys may be bare (`port`), dotted or hyphenated (`rows.per.second`,
//! `on-error`) or quoted (`'csv.header'`); values are strings, numbers,
//! booleans or words. Every statement keeps its text and where it starts, so
//! errors point at a line and column of the whole input.

use std::fmt;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::parser::{CreateExternalTable, DFParser, DFParserBuilder};
use datafusion::sql::sqlparser::ast::{self, ColumnDef, Ident};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::dialect::BrookletDialect;
use crate::error::{Error, Location, Result};
use crate::limits::MAX_NESTING;

/// Where the nesting of parentheses, `CASE … END` and runs of prefix
/// `NOT`s in `tokens` first goes past [`MAX_NESTING`], counted before
/// parsing: sqlparser's recursion limit can be swallowed by its
/// backtracking, which then reports a confusing "Expected: …" instead.
fn too_deep_at(tokens: &[TokenWithSpan]) -> Option<Location> {
    let (mut depth, mut nots) = (0usize, 0usize);
    for token in tokens {
        match &token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w) if w.keyword == Keyword::CASE => depth += 1,
            Token::Word(w) if w.keyword == Keyword::END => depth = depth.saturating_sub(1),
            Token::Word(w) if w.keyword == Keyword::NOT => nots += 1,
            Token::Whitespace(_) => {}
            _ => nots = 0,
        }
        if depth + nots > MAX_NESTING {
            return Some(Location {
                line: token.span.start.line,
                column: token.span.start.column,
            });
        }
    }
    None
}

/// The depth of the deepest expression in a query (an operator chain
/// counts each term), counted up to just past [`MAX_NESTING`].
fn expression_depth(query: &ast::Query) -> usize {
    use std::ops::ControlFlow;

    use datafusion::sql::sqlparser::ast::{Visit, Visitor};

    struct Depth {
        current: usize,
        deepest: usize,
    }
    impl Visitor for Depth {
        type Break = ();
        fn pre_visit_expr(&mut self, _: &ast::Expr) -> ControlFlow<()> {
            self.current += 1;
            self.deepest = self.deepest.max(self.current);
            if self.deepest > MAX_NESTING {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        fn post_visit_expr(&mut self, _: &ast::Expr) -> ControlFlow<()> {
            self.current -= 1;
            ControlFlow::Continue(())
        }
    }
    let mut depth = Depth {
        current: 0,
        deepest: 0,
    };
    let _ = query.visit(&mut depth);
    depth.deepest
}

/// A name as SQL means it: unquoted names are lower-cased.
pub fn normalize(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

/// The `EMIT` clause of a continuous query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Every batch, the rows that changed.
    Changes,
    /// Every batch, every key's current value.
    Complete,
    /// Each window once, when it closes.
    OnWindowClose,
}

impl fmt::Display for Emit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Emit::Changes => write!(f, "EMIT CHANGES"),
            Emit::Complete => write!(f, "EMIT COMPLETE"),
            Emit::OnWindowClose => write!(f, "EMIT ON WINDOW CLOSE"),
        }
    }
}

/// What kind of object a `CREATE` or `DROP` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// An input stream.
    Source,
    /// An output.
    Sink,
}

/// One option of a `WITH (…)` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlOption {
    /// The key, lower-cased.
    pub key: String,
    /// The value, as text.
    pub value: String,
}

/// A statement Brooklet runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `CREATE SOURCE name (columns) WITH (options)`.
    CreateSource {
        /// The source's name.
        name: Ident,
        /// The declared columns (empty: the connector's default).
        columns: Vec<ColumnDef>,
        /// `WATERMARK FOR column [AS column - INTERVAL …]` in the column list.
        watermark: Option<Box<WatermarkClause>>,
        /// The columns declared `METADATA [FROM 'key']`: filled from the
        /// record's metadata (Kafka's key, partition, offset, timestamp).
        metadata: Vec<MetadataColumn>,
        /// The options.
        options: Vec<SqlOption>,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
    },
    /// `CREATE SINK name WITH (options)`.
    CreateSink {
        /// The sink's name.
        name: Ident,
        /// The options.
        options: Vec<SqlOption>,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
    },
    /// `CREATE EXTERNAL TABLE …` (DataFusion's statement): a static table
    /// that queries join with.
    CreateTable(Box<CreateExternalTable>),
    /// `DROP SOURCE name` or `DROP SINK name`.
    Drop {
        /// Source or sink.
        kind: ObjectKind,
        /// The name.
        name: Ident,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SET key = value`.
    Set {
        /// The key, lower-cased.
        key: String,
        /// The value, as text.
        value: String,
    },
    /// A continuous query whose batches go to the console.
    Query {
        /// The query.
        query: Box<ast::Query>,
        /// Its `EMIT` clause.
        emit: Option<Emit>,
    },
    /// `EXPLAIN <query>` (or `EXPLAIN INSERT INTO …`): the DStream operator
    /// graph the query would run.
    Explain(Box<Statement>),
    /// `SHOW QUERIES`: every query with its state and figures.
    ShowQueries,
    /// `STOP QUERY name`: stops a running query after its current batch.
    StopQuery {
        /// The query's name (`q1`; a bare number `1` means `q1`).
        name: Ident,
    },
    /// `INSERT INTO sink <query>`.
    Insert {
        /// The sink's name.
        sink: Ident,
        /// The query.
        query: Box<ast::Query>,
        /// Its `EMIT` clause.
        emit: Option<Emit>,
    },
}

fn write_options(f: &mut fmt::Formatter<'_>, options: &[SqlOption]) -> fmt::Result {
    let list: Vec<String> = options
        .iter()
        .map(|o| format!("'{}' = '{}'", o.key, o.value.replace('\'', "''")))
        .collect();
    write!(f, " WITH ({})", list.join(", "))
}

/// A column declared `name TYPE METADATA [FROM 'key'] [VIRTUAL]` (Flink's
/// syntax): filled from the record's metadata `key` (the column's name
/// when there is no `FROM`). `VIRTUAL` is accepted and means nothing more:
/// sources are never written to.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataColumn {
    /// The column.
    pub column: Ident,
    /// The metadata it holds.
    pub key: String,
}

/// `WATERMARK FOR column [AS expression]` (Flink's and Arroyo's syntax).
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkClause {
    /// The event-time column.
    pub column: Ident,
    /// The watermark expression: `column - INTERVAL …`, or `column` itself.
    /// `None` (no `AS`): no disorder allowed.
    pub expression: Option<ast::Expr>,
}

impl fmt::Display for WatermarkClause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WATERMARK FOR {}", self.column)?;
        if let Some(e) = &self.expression {
            write!(f, " AS {e}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statement::CreateSource {
                name,
                columns,
                watermark,
                metadata,
                options,
                if_not_exists,
            } => {
                write!(
                    f,
                    "CREATE SOURCE {}{name}",
                    if *if_not_exists { "IF NOT EXISTS " } else { "" }
                )?;
                if !columns.is_empty() {
                    let mut cols: Vec<String> = columns
                        .iter()
                        .map(|c| match metadata.iter().find(|m| m.column == c.name) {
                            Some(m) => format!("{c} METADATA FROM '{}'", m.key),
                            None => c.to_string(),
                        })
                        .collect();
                    cols.extend(watermark.iter().map(ToString::to_string));
                    write!(f, " ({})", cols.join(", "))?;
                }
                write_options(f, options)
            }
            Statement::CreateSink {
                name,
                options,
                if_not_exists,
            } => {
                write!(
                    f,
                    "CREATE SINK {}{name}",
                    if *if_not_exists { "IF NOT EXISTS " } else { "" }
                )?;
                write_options(f, options)
            }
            Statement::CreateTable(table) => write!(f, "{table}"),
            Statement::Drop {
                kind,
                name,
                if_exists,
            } => {
                let kind = match kind {
                    ObjectKind::Source => "SOURCE",
                    ObjectKind::Sink => "SINK",
                };
                write!(
                    f,
                    "DROP {kind} {}{name}",
                    if *if_exists { "IF EXISTS " } else { "" }
                )
            }
            Statement::Set { key, value } => {
                write!(f, "SET {key} = '{}'", value.replace('\'', "''"))
            }
            Statement::Query { query, emit } => {
                write!(f, "{query}")?;
                emit.map_or(Ok(()), |e| write!(f, " {e}"))
            }
            Statement::Insert { sink, query, emit } => {
                write!(f, "INSERT INTO {sink} {query}")?;
                emit.map_or(Ok(()), |e| write!(f, " {e}"))
            }
            Statement::Explain(statement) => write!(f, "EXPLAIN {statement}"),
            Statement::ShowQueries => write!(f, "SHOW QUERIES"),
            Statement::StopQuery { name } => write!(f, "STOP QUERY {name}"),
        }
    }
}

/// A statement with its text and where it starts in the input.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedStatement {
    /// The statement.
    pub statement: Statement,
    /// Its text as written (without the `;`).
    pub text: String,
    /// Where it starts.
    pub location: Location,
}

/// Parses every statement of `sql` (separated by `;`), on a deep stack; a
/// statement nesting deeper than [`MAX_NESTING`] is an error (and is
/// dropped on that stack too, as deep trees drop recursively).
pub fn parse_statements(sql: &str) -> Result<Vec<ParsedStatement>> {
    brooklet_engine::stack::deep(|| parse_deep(sql))
}

fn parse_deep(sql: &str) -> Result<Vec<ParsedStatement>> {
    let dialect = BrookletDialect::default();
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| Error::Syntax {
            message: e.message.clone(),
            location: Some(Location {
                line: e.location.line,
                column: e.location.column,
            }),
        })?;
    let tokens = partition_by_as_argument(drop_table_keyword_in_window_functions(tokens));
    if let Some(location) = too_deep_at(&tokens) {
        return Err(Error::too_deep().at(location));
    }
    let mut df = DFParserBuilder::new(tokens)
        .with_dialect(&dialect)
        .with_recursion_limit(MAX_NESTING)
        .build()?;
    let lines = LineIndex::new(sql);
    let mut statements = Vec::new();
    loop {
        while df.parser.consume_token(&Token::SemiColon) {}
        let first = df.parser.peek_token();
        if first.token == Token::EOF {
            break;
        }
        let statement = parse_statement(&mut df).map_err(|e| e.at(end_of(sql)))?;
        let parser = &mut df.parser;
        if let Statement::Query { query, .. } | Statement::Insert { query, .. } = &statement
            && expression_depth(query) > MAX_NESTING
        {
            return Err(Error::too_deep().at(Location {
                line: first.span.start.line,
                column: first.span.start.column,
            }));
        }
        let last = parser.get_current_token().span.end;
        let next = parser.peek_token();
        if next.token != Token::SemiColon && next.token != Token::EOF {
            return Err(Error::from(ParserError::ParserError(format!(
                "Expected: end of statement (;), found: {}{}",
                next.token, next.span.start
            ))));
        }
        let start = first.span.start;
        let text = sql
            [lines.offset(start.line, start.column)..lines.offset(last.line, last.column)]
            .to_string();
        statements.push(ParsedStatement {
            statement,
            text,
            location: Location {
                line: start.line,
                column: start.column,
            },
        });
    }
    Ok(statements)
}

/// Flink's window table functions take `TABLE t` as their first argument
/// (`TUMBLE(TABLE bids, DESCRIPTOR(ts), …)`), which no sqlparser dialect
/// reads as a function argument; the `TABLE` keyword right after
/// `TUMBLE(`, `HOP(`, `SESSION(` or `CUMULATE(` is dropped (spans stay).
fn drop_table_keyword_in_window_functions(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    for token in tokens {
        if let Token::Word(w) = &token.token
            && w.keyword == Keyword::TABLE
        {
            let mut before = out
                .iter()
                .rev()
                .filter(|t| !matches!(t.token, Token::Whitespace(_)));
            if let (Some(paren), Some(Token::Word(function))) =
                (before.next(), before.next().map(|t| &t.token))
                && paren.token == Token::LParen
                && ["tumble", "hop", "session", "cumulate"]
                    .contains(&function.value.to_ascii_lowercase().as_str())
            {
                continue;
            }
        }
        out.push(token);
    }
    out
}

/// The function Flink's `PARTITION BY` keys of a `SESSION` table function
/// become (see [`partition_by_as_argument`]).
pub(crate) const PARTITION_BY_ARGUMENT: &str = "__partition_by";

/// Flink's `SESSION(TABLE t PARTITION BY k1, k2, DESCRIPTOR(ts), gap)`: no
/// sqlparser dialect reads `PARTITION BY` among a function's arguments, so
/// the keys become one argument of their own, `__partition_by(k1, k2)`,
/// ending before `DESCRIPTOR` or a named argument (`TIMECOL =>`). The
/// tokens added take the span of `PARTITION`.
fn partition_by_as_argument(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant = |from: usize| {
        (from..tokens.len()).find(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
    };
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut depth = 0usize;
    // The depths of the open parentheses of SESSION calls.
    let mut sessions: Vec<usize> = Vec::new();
    // The depth of the SESSION call whose keys are being listed.
    let mut listing: Option<usize> = None;
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        let added = |t: Token| TokenWithSpan::new(t, token.span);
        match &token.token {
            Token::LParen => {
                depth += 1;
                let callee = out
                    .iter()
                    .rev()
                    .find(|t| !matches!(t.token, Token::Whitespace(_)));
                if matches!(callee.map(|t| &t.token),
                    Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("session"))
                {
                    sessions.push(depth);
                }
            }
            Token::RParen => {
                if listing == Some(depth) {
                    out.push(added(Token::RParen));
                    listing = None;
                }
                if sessions.last() == Some(&depth) {
                    sessions.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Token::Word(w)
                if w.keyword == Keyword::PARTITION
                    && listing.is_none()
                    && sessions.last() == Some(&depth) =>
            {
                if let Some(by) = significant(i + 1)
                    && matches!(&tokens[by].token, Token::Word(b) if b.keyword == Keyword::BY)
                {
                    out.push(added(Token::Comma));
                    out.push(added(Token::make_word(PARTITION_BY_ARGUMENT, None)));
                    out.push(added(Token::LParen));
                    listing = Some(depth);
                    i = by + 1;
                    continue;
                }
            }
            Token::Comma if listing == Some(depth) => {
                let ends = significant(i + 1).is_some_and(|next| match &tokens[next].token {
                    Token::Word(w) if w.value.eq_ignore_ascii_case("descriptor") => true,
                    Token::Word(_) => {
                        significant(next + 1).is_some_and(|k| tokens[k].token == Token::RArrow)
                    }
                    _ => false,
                });
                if ends {
                    out.push(added(Token::RParen));
                    listing = None;
                }
            }
            _ => {}
        }
        out.push(token.clone());
        i += 1;
    }
    out
}

/// The position just after the last character: where `found: EOF` points.
fn end_of(sql: &str) -> Location {
    let line = sql.split('\n').count() as u64;
    let column = sql.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
    Location { line, column }
}

/// Parses exactly one statement.
pub fn parse_statement_text(sql: &str) -> Result<ParsedStatement> {
    let mut statements = parse_statements(sql)?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => Err(Error::Syntax {
            message: "Expected: a statement, found: nothing".into(),
            location: None,
        }),
        _ => Err(Error::Syntax {
            message: format!("Expected: one statement, found {}", statements.len()),
            location: Some(statements[1].location),
        }),
    }
}

/// Turns 1-based line/column positions into byte offsets.
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    fn offset(&self, line: u64, column: u64) -> usize {
        let Some(&start) = self.starts.get((line.max(1) - 1) as usize) else {
            return self.text.len();
        };
        self.text[start..]
            .char_indices()
            .nth((column.max(1) - 1) as usize)
            .map_or(self.text.len(), |(i, _)| start + i)
    }
}

fn word_is(token: &TokenWithSpan, word: &str) -> bool {
    matches!(&token.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn parse_statement(df: &mut DFParser) -> Result<Statement> {
    let first = df.parser.peek_token();
    if first.token == Token::make_keyword("CREATE") {
        let next = df.parser.peek_nth_token(1);
        if [Keyword::EXTERNAL, Keyword::UNBOUNDED, Keyword::OR]
            .iter()
            .any(|k| matches!(&next.token, Token::Word(w) if w.keyword == *k))
        {
            df.parser.next_token();
            return match df.parse_create()? {
                DFStatement::CreateExternalTable(table) => {
                    Ok(Statement::CreateTable(Box::new(table)))
                }
                other => Err(Error::Syntax {
                    message: format!("Expected: CREATE EXTERNAL TABLE, found: {other}"),
                    location: None,
                }),
            };
        }
    }
    let parser = &mut df.parser;
    match &first.token {
        Token::Word(w) if w.keyword == Keyword::CREATE => parse_create(parser),
        Token::Word(w) if w.keyword == Keyword::DROP => parse_drop(parser),
        Token::Word(w) if w.keyword == Keyword::SET => parse_set(parser),
        Token::Word(w) if w.keyword == Keyword::INSERT => parse_insert(parser),
        Token::Word(w) if w.keyword == Keyword::EXPLAIN => {
            parser.next_token();
            let explained = parse_statement(df)?;
            match explained {
                Statement::Query { .. } | Statement::Insert { .. } => {
                    Ok(Statement::Explain(Box::new(explained)))
                }
                other => Err(Error::Syntax {
                    message: format!(
                        "EXPLAIN shows the operators of a query (SELECT or INSERT INTO), not of {other}"
                    ),
                    location: Some(Location {
                        line: first.span.start.line,
                        column: first.span.start.column,
                    }),
                }),
            }
        }
        Token::Word(w) if w.keyword == Keyword::SHOW => {
            parser.next_token();
            let what = parser.next_token();
            if word_is(&what, "QUERIES") {
                Ok(Statement::ShowQueries)
            } else {
                parser
                    .expected("QUERIES after SHOW (SHOW QUERIES)", what)
                    .map_err(Error::from)
            }
        }
        Token::Word(_) if word_is(&first, "STOP") => {
            parser.next_token();
            let what = parser.next_token();
            if !word_is(&what, "QUERY") {
                return parser
                    .expected("QUERY after STOP (STOP QUERY name)", what)
                    .map_err(Error::from);
            }
            let name = match parser.next_token() {
                TokenWithSpan {
                    token: Token::Number(n, _),
                    ..
                } => Ident::new(format!("q{n}")),
                TokenWithSpan {
                    token: Token::Word(w),
                    span,
                } => w.into_ident(span),
                other => {
                    return parser
                        .expected("the name of a query (SHOW QUERIES lists them)", other)
                        .map_err(Error::from);
                }
            };
            Ok(Statement::StopQuery { name })
        }
        Token::Word(w)
            if matches!(w.keyword, Keyword::SELECT | Keyword::WITH | Keyword::VALUES) =>
        {
            let query = parser.parse_query()?;
            let emit = parse_emit(parser)?;
            Ok(Statement::Query { query, emit })
        }
        Token::LParen => {
            let query = parser.parse_query()?;
            let emit = parse_emit(parser)?;
            Ok(Statement::Query { query, emit })
        }
        _ => Err(Error::from(ParserError::ParserError(format!(
            "Expected: CREATE SOURCE, CREATE SINK, DROP, SET, SELECT, INSERT INTO, EXPLAIN, SHOW QUERIES or STOP QUERY, found: {}{}",
            first.token, first.span.start
        )))),
    }
}

/// `SOURCE` (or its synonyms `TABLE` and `STREAM`) or `SINK`, after `keyword`.
fn parse_object_kind(parser: &mut Parser, keyword: &str) -> Result<ObjectKind> {
    let what = parser.next_token();
    if word_is(&what, "source") || word_is(&what, "table") || word_is(&what, "stream") {
        Ok(ObjectKind::Source)
    } else if word_is(&what, "sink") {
        Ok(ObjectKind::Sink)
    } else {
        let expected = format!("SOURCE, TABLE, STREAM or SINK after {keyword}");
        parser.expected(&expected, what).map_err(Error::from)
    }
}

fn parse_create(parser: &mut Parser) -> Result<Statement> {
    parser.expect_keyword(Keyword::CREATE)?;
    let kind = parse_object_kind(parser, "CREATE")?;
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_identifier()?;
    let mut columns = Vec::new();
    let mut metadata = Vec::new();
    let mut watermark = None;
    if parser.consume_token(&Token::LParen) {
        if kind == ObjectKind::Sink {
            return Err(Error::from(ParserError::ParserError(format!(
                "Expected: WITH after the sink's name (a sink takes its columns from the query), found: ({}",
                parser.get_current_token().span.start
            ))));
        }
        loop {
            let next = parser.peek_token();
            if word_is(&next, "watermark") {
                if watermark.is_some() {
                    return parser
                        .expected("one WATERMARK per source", next)
                        .map_err(Error::from);
                }
                parser.next_token();
                parser.expect_keyword(Keyword::FOR)?;
                let column = parser.parse_identifier()?;
                let expression = if parser.parse_keyword(Keyword::AS) {
                    Some(parser.parse_expr()?)
                } else {
                    None
                };
                watermark = Some(Box::new(WatermarkClause { column, expression }));
            } else {
                let column = parser.parse_column_def()?;
                if word_is(&parser.peek_token(), "metadata") {
                    parser.next_token();
                    let key = if parser.parse_keyword(Keyword::FROM) {
                        parser.parse_literal_string()?
                    } else {
                        column.name.value.clone()
                    };
                    if word_is(&parser.peek_token(), "virtual") {
                        parser.next_token();
                    }
                    metadata.push(MetadataColumn {
                        column: column.name.clone(),
                        key,
                    });
                }
                columns.push(column);
            }
            if !parser.consume_token(&Token::Comma) {
                parser.expect_token(&Token::RParen)?;
                break;
            }
        }
    }
    let with = parser.peek_token();
    if !parser.parse_keyword(Keyword::WITH) {
        return parser
            .expected("WITH (connector = '…', …) after the column list", with)
            .map_err(Error::from);
    }
    let options = parse_options(parser)?;
    Ok(match kind {
        ObjectKind::Source => Statement::CreateSource {
            name,
            columns,
            watermark,
            metadata,
            options,
            if_not_exists,
        },
        ObjectKind::Sink => Statement::CreateSink {
            name,
            options,
            if_not_exists,
        },
    })
}

fn parse_options(parser: &mut Parser) -> Result<Vec<SqlOption>> {
    parser.expect_token(&Token::LParen)?;
    let mut options = Vec::new();
    if parser.consume_token(&Token::RParen) {
        return Ok(options);
    }
    loop {
        let key = parse_key(parser)?;
        parser.expect_token(&Token::Eq)?;
        let value = parse_value(parser)?;
        options.push(SqlOption { key, value });
        if !parser.consume_token(&Token::Comma) {
            parser.expect_token(&Token::RParen)?;
            return Ok(options);
        }
    }
}

/// A key: a quoted string, or words joined by `.` or `-`.
fn parse_key(parser: &mut Parser) -> Result<String> {
    let first = parser.next_token();
    let mut key = match &first.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => {
            return Ok(s.to_ascii_lowercase());
        }
        Token::Word(w) => w.value.to_ascii_lowercase(),
        _ => {
            return parser
                .expected("an option name", first)
                .map_err(Error::from);
        }
    };
    loop {
        let joiner = match parser.peek_token().token {
            Token::Period => ".",
            Token::Minus => "-",
            _ => return Ok(key),
        };
        parser.next_token();
        let part = parser.next_token();
        match &part.token {
            Token::Word(w) => {
                key.push_str(joiner);
                key.push_str(&w.value.to_ascii_lowercase());
            }
            _ => {
                return parser
                    .expected("the rest of the option name", part)
                    .map_err(Error::from);
            }
        }
    }
}

/// A value: a string, a (signed) number, or a word such as `true`.
fn parse_value(parser: &mut Parser) -> Result<String> {
    let token = parser.next_token();
    match &token.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s.clone()),
        Token::Number(n, _) => Ok(n.clone()),
        Token::Minus => match parser.next_token().token {
            Token::Number(n, _) => Ok(format!("-{n}")),
            _ => parser
                .expected("a number after -", token)
                .map_err(Error::from),
        },
        Token::Word(w) => Ok(w.value.clone()),
        _ => parser
            .expected("an option value (a string, number or word)", token)
            .map_err(Error::from),
    }
}

fn parse_drop(parser: &mut Parser) -> Result<Statement> {
    parser.expect_keyword(Keyword::DROP)?;
    let kind = parse_object_kind(parser, "DROP")?;
    let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = parser.parse_identifier()?;
    Ok(Statement::Drop {
        kind,
        name,
        if_exists,
    })
}

fn parse_set(parser: &mut Parser) -> Result<Statement> {
    parser.expect_keyword(Keyword::SET)?;
    let key = parse_key(parser)?;
    if !parser.consume_token(&Token::Eq) && !parser.parse_keyword(Keyword::TO) {
        let found = parser.peek_token();
        return parser
            .expected("= or TO after the setting's name", found)
            .map_err(Error::from);
    }
    let value = parse_value(parser)?;
    Ok(Statement::Set { key, value })
}

fn parse_insert(parser: &mut Parser) -> Result<Statement> {
    parser.expect_keyword(Keyword::INSERT)?;
    parser.expect_keyword(Keyword::INTO)?;
    let sink = parser.parse_identifier()?;
    let query = parser.parse_query()?;
    let emit = parse_emit(parser)?;
    Ok(Statement::Insert { sink, query, emit })
}

fn parse_emit(parser: &mut Parser) -> Result<Option<Emit>> {
    if !word_is(&parser.peek_token(), "emit") {
        return Ok(None);
    }
    parser.next_token();
    let next = parser.next_token();
    if word_is(&next, "changes") {
        Ok(Some(Emit::Changes))
    } else if word_is(&next, "complete") {
        Ok(Some(Emit::Complete))
    } else if word_is(&next, "on") {
        parser.expect_keyword(Keyword::WINDOW)?;
        parser.expect_keyword(Keyword::CLOSE)?;
        Ok(Some(Emit::OnWindowClose))
    } else {
        parser
            .expected("CHANGES, COMPLETE or ON WINDOW CLOSE after EMIT", next)
            .map_err(Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses one statement, prints it, and parses the print again: the
    /// same statement must come back.
    fn verified(sql: &str) -> Statement {
        let parsed = parse_statement_text(sql).unwrap().statement;
        let printed = parsed.to_string();
        let reparsed = parse_statement_text(&printed)
            .unwrap_or_else(|e| panic!("{printed}: {e}"))
            .statement;
        assert_eq!(parsed, reparsed, "{printed}");
        parsed
    }

    #[test]
    fn create_source_with_columns_and_options() {
        let s = verified(
            "CREATE SOURCE lines (line TEXT) WITH (connector = 'socket', hostname = '127.0.0.1', port = 7777, format = 'lines', on-error = skip, 'csv.header' = true, rows.per.second = 5)",
        );
        let Statement::CreateSource {
            name,
            columns,
            options,
            ..
        } = s
        else {
            panic!()
        };
        assert_eq!(name.value, "lines");
        assert_eq!(columns.len(), 1);
        let keys: Vec<&str> = options.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "connector",
                "hostname",
                "port",
                "format",
                "on-error",
                "csv.header",
                "rows.per.second"
            ]
        );
        assert_eq!(options[2].value, "7777");
        verified("CREATE TABLE IF NOT EXISTS seq WITH (connector = 'sequence')");
        verified("CREATE SINK out WITH (connector = 'console', format = 'csv')");
    }

    #[test]
    fn session_partition_by_becomes_one_argument() {
        for (sql, args) in [
            (
                "SELECT * FROM TABLE(SESSION(TABLE bids PARTITION BY auction, bidder, \
                 DESCRIPTOR(ts), INTERVAL '5' SECOND))",
                "bids, __partition_by(auction, bidder), DESCRIPTOR(ts), INTERVAL '5' SECOND",
            ),
            (
                "SELECT * FROM TABLE(SESSION(TABLE bids PARTITION BY auction, \
                 TIMECOL => DESCRIPTOR(ts), GAP => INTERVAL '5' SECOND))",
                "bids, __partition_by(auction), TIMECOL => DESCRIPTOR(ts), GAP => INTERVAL '5' SECOND",
            ),
            (
                "SELECT * FROM TABLE(SESSION(TABLE bids, DESCRIPTOR(ts), '5 s'))",
                "bids, DESCRIPTOR(ts), '5 s'",
            ),
        ] {
            let printed = parse_statement_text(sql).unwrap().statement.to_string();
            assert!(printed.contains(&format!("SESSION({args})")), "{printed}");
        }
        // Elsewhere PARTITION BY is left to the parser.
        let printed = parse_statement_text(
            "SELECT k, row_number() OVER (PARTITION BY k ORDER BY ts) AS n FROM t",
        )
        .unwrap()
        .statement
        .to_string();
        assert!(
            printed.contains("OVER (PARTITION BY k ORDER BY ts)"),
            "{printed}"
        );
    }

    #[test]
    fn queries_sets_inserts_and_emit() {
        assert_eq!(
            verified("SET batch.interval = '1 second'"),
            Statement::Set {
                key: "batch.interval".into(),
                value: "1 second".into()
            }
        );
        verified("SET batch.interval TO '200 ms'");
        verified("SELECT line FROM lines WHERE line LIKE '%error%'");
        let Statement::Query { emit, .. } =
            verified("SELECT k, count(*) FROM s GROUP BY k EMIT CHANGES")
        else {
            panic!()
        };
        assert_eq!(emit, Some(Emit::Changes));
        let Statement::Query { emit, .. } = verified("SELECT * FROM s EMIT ON WINDOW CLOSE") else {
            panic!()
        };
        assert_eq!(emit, Some(Emit::OnWindowClose));
        verified("INSERT INTO out SELECT upper(line) AS l FROM lines");
        verified("DROP SOURCE IF EXISTS lines");
    }

    #[test]
    fn statements_keep_their_text_and_start() {
        let sql = "SET batch.interval = '1 second';\nCREATE SOURCE lines (line TEXT)\n  WITH (connector = 'memory');\n\nSELECT line -- the lines\nFROM lines;";
        let parsed = parse_statements(sql).unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(
            parsed[1].text,
            "CREATE SOURCE lines (line TEXT)\n  WITH (connector = 'memory')"
        );
        assert_eq!(parsed[2].location, Location { line: 5, column: 1 });
        assert_eq!(parsed[2].text, "SELECT line -- the lines\nFROM lines");
    }

    #[test]
    fn errors_point_at_the_token_and_say_what_was_expected() {
        let err = parse_statements("SELECT line\nFROM lines WHERE").unwrap_err();
        assert_eq!(
            err.location(),
            Some(Location {
                line: 2,
                column: 17
            }),
            "{err}"
        );
        assert!(err.to_string().contains("Expected: an expression"), "{err}");
        let err = parse_statements("SELECT * FROM s EMIT SOMETHING").unwrap_err();
        assert!(
            err.to_string().contains(
                "Expected: CHANGES, COMPLETE or ON WINDOW CLOSE after EMIT, found: SOMETHING"
            ),
            "{err}"
        );
        assert_eq!(
            err.location(),
            Some(Location {
                line: 1,
                column: 22
            })
        );
        let err = parse_statements("CREATE SOURCE s (a INT) (connector = 'x')").unwrap_err();
        assert!(err.to_string().contains("Expected: WITH"), "{err}");
        let err = parse_statements("SELEC 1").unwrap_err();
        assert!(err.to_string().contains("found: SELEC"), "{err}");
        let err = parse_statements("SELECT 'unterminated").unwrap_err();
        assert!(err.location().is_some(), "{err}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let sql = format!("SELECT {}1{} FROM s", "(".repeat(5000), ")".repeat(5000));
        let err = parse_statements(&sql).unwrap_err();
        assert!(
            err.to_string()
                .contains("nests more than 1000 levels deep, the limit"),
            "{err}"
        );
        // The caret goes where the nesting passes the limit.
        assert_eq!(err.location().map(|l| l.column), Some(1_008));
        let chain = format!("SELECT {} FROM s", vec!["a"; 1_001].join(" OR "));
        let err = parse_statements(&chain).unwrap_err();
        assert!(err.to_string().contains("the limit"), "{err}");
        let chain = format!("SELECT {} FROM s", vec!["a"; 1_000].join(" OR "));
        assert!(parse_statements(&chain).is_ok());
    }

    #[test]
    fn explain_show_queries_and_stop_query_parse_and_print_back() {
        let Statement::Explain(inner) = verified("EXPLAIN SELECT a FROM s EMIT CHANGES") else {
            panic!("not an EXPLAIN");
        };
        assert!(matches!(*inner, Statement::Query { emit: Some(_), .. }));
        assert!(matches!(
            verified("EXPLAIN INSERT INTO out SELECT a FROM s"),
            Statement::Explain(_)
        ));
        assert_eq!(verified("SHOW QUERIES"), Statement::ShowQueries);
        assert_eq!(
            verified("stop query counts"),
            Statement::StopQuery {
                name: Ident::new("counts")
            }
        );
        assert_eq!(
            verified("STOP QUERY 2"),
            Statement::StopQuery {
                name: Ident::new("q2")
            }
        );
        let err = parse_statement_text("EXPLAIN SET a = 1").unwrap_err();
        assert!(
            err.to_string()
                .contains("EXPLAIN shows the operators of a query"),
            "{err}"
        );
        let err = parse_statement_text("SHOW SOURCES").unwrap_err();
        assert!(err.to_string().contains("QUERIES after SHOW"), "{err}");
        let err = parse_statement_text("STOP QUERY").unwrap_err();
        assert!(err.to_string().contains("the name of a query"), "{err}");
    }
}
