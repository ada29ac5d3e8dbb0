//! Brooklet's SQL dialect: sqlparser's generic dialect, with two fixes for
//! streaming clauses. It impersonates the generic dialect (so the parser's
//! generic-only rules keep applying), refuses empty projections (so
//! `SELECT window(…)` is a function call, not an empty list before a WINDOW
//! clause), and never takes `EMIT` as an alias (so `… FROM s EMIT CHANGES`
//! ends the query).

use std::any::TypeId;

use datafusion::sql::sqlparser::dialect::{Dialect, GenericDialect};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// The dialect Brooklet parses.
#[derive(Debug, Default, Clone, Copy)]
pub struct BrookletDialect {
    generic: GenericDialect,
}

fn is_emit(parser: &Parser) -> bool {
    matches!(&parser.get_current_token().token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("emit"))
}

impl Dialect for BrookletDialect {
    fn dialect(&self) -> TypeId {
        TypeId::of::<GenericDialect>()
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        self.generic.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.generic.is_identifier_part(ch)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.generic.is_delimited_identifier_start(ch)
    }

    fn supports_empty_projections(&self) -> bool {
        false
    }

    fn supports_group_by_expr(&self) -> bool {
        true
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }

    fn is_select_item_alias(&self, explicit: bool, kw: &Keyword, parser: &mut Parser) -> bool {
        explicit || (!is_emit(parser) && self.is_column_alias(kw, parser))
    }

    fn is_table_factor_alias(&self, explicit: bool, kw: &Keyword, parser: &mut Parser) -> bool {
        explicit || (!is_emit(parser) && self.is_table_alias(kw, parser))
    }
}
