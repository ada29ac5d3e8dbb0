//! Whether a text ends a statement: what a line editor asks before it
//! runs the buffered input or keeps reading (the REPL's validator). Read
//! with the same tokenizer and dialect as the parser, so a `;` inside a
//! string, a quoted name or a comment does not end anything.

use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

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

#[cfg(test)]
mod tests {
    use super::is_complete;

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
