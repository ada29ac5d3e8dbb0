//! Limits of the SQL front end (the errors that name them are in
//! [`crate::error`]).

/// How deep a statement may nest: parentheses, `CASE`, function calls,
/// prefix `NOT`s, and the length of an operator chain (`a + b + …` is a
/// tree as deep as it has terms). Deeper statements are refused with an
/// error that names this limit, before they are planned; everything up to
/// it is parsed, planned and run on a deep stack
/// ([`brooklet_engine::stack`]).
///
/// Why 1 000: DataFusion names every node of an expression tree by printing
/// its subtree (`Expr::to_field` → `qualified_name`), so planning costs the
/// square of the depth — measured on a debug build, 1 000 terms of `+`
/// take 36 s to plan and 2 000 take 152 s; the 700 000-term `OR` of
/// issue 14 would never end.
pub const MAX_NESTING: usize = 1_000;
