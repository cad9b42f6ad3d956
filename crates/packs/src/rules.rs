//! Validation rules: CEL expressions over an artifact's content that give warnings.
//!
//! A rule is compiled and evaluated through [`waymark_domain::cel_guard`]: within
//! its limits of size and nesting, and within its evaluation budget.

use cel::Value as Cel;
use serde_json::Value;
use waymark_domain::cel_guard::{self, Compiled, ExprError};

/// A compiled rule.
pub struct Rule {
    /// The rule's name in the pack.
    pub name: String,
    /// The expression as written.
    pub when: String,
    /// The warning it gives when `when` is true.
    pub message: String,
    expr: Compiled,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("when", &self.when)
            .finish()
    }
}

/// Why a rule could not be compiled or run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    /// 1-based line and column inside the expression, when known.
    pub position: Option<(usize, usize)>,
    pub message: String,
    /// The expression is valid CEL but over one of the limits of
    /// [`cel_guard`] (its size, its nesting, or its evaluation budget).
    pub over_limit: bool,
}

impl From<ExprError> for RuleError {
    fn from(e: ExprError) -> Self {
        RuleError {
            position: e.position(),
            message: e.to_string(),
            over_limit: e.over_limit(),
        }
    }
}

impl Rule {
    /// Compiles `when`, refusing it beyond the limits of [`cel_guard`].
    pub fn compile(name: &str, when: &str, message: &str) -> Result<Self, RuleError> {
        let expr = cel_guard::compile(when)?;
        Ok(Self {
            name: name.to_owned(),
            when: when.to_owned(),
            message: message.to_owned(),
            expr,
        })
    }

    /// Whether the rule fires on `content`. An expression that fails at run time
    /// (a field read without `has()`, say), gives a non-boolean, or would take
    /// more than its budget on this content is an error.
    pub fn fires(&self, content: &Value) -> Result<bool, RuleError> {
        match cel_guard::evaluate(&self.expr, vec![("content", cel_guard::from_json(content))])? {
            Cel::Bool(b) => Ok(b),
            other => Err(RuleError {
                position: None,
                message: format!("gives {other:?}, not a boolean"),
                over_limit: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_fire_on_content() {
        let rule = Rule::compile(
            "leads_without_audience",
            r#"has(content.goals.objective) && content.goals.objective == "leads"
               && (!has(content.audience.target_audience) || size(content.audience.target_audience) == 0)"#,
            "Lead-generation objective but no target audience.",
        )
        .unwrap();
        assert!(
            rule.fires(&json!({"goals": {"objective": "leads"}, "audience": {}}))
                .unwrap()
        );
        assert!(!rule.fires(&json!({"goals": {"objective": "leads"}, "audience": {"target_audience": "CTOs"}})).unwrap());
        assert!(
            !rule
                .fires(&json!({"goals": {"objective": "sales"}, "audience": {}}))
                .unwrap()
        );
    }

    #[test]
    fn numbers_compare_as_numbers_and_regexes_match() {
        let rule = Rule::compile(
            "r",
            r#"content.price > 1000 && content.audience.matches("(?i)student") && content.ratio < 0.5"#,
            "m",
        )
        .unwrap();
        assert!(
            rule.fires(&json!({"price": 2500, "audience": "University Students", "ratio": 0.25}))
                .unwrap()
        );
    }

    #[test]
    fn over_long_chains_are_refused_with_a_position() {
        for op in ["+", "&&"] {
            let chain = vec!["content.a"; 5_000].join(&format!(" {op} "));
            let err = Rule::compile("r", &chain, "m").unwrap_err();
            assert!(err.over_limit, "{err:?}");
            assert_eq!(
                err.position,
                Some((1, 65 * 9 + 64 * (op.len() + 2) + 2)),
                "{err:?}"
            );
            assert!(err.message.contains("more than 64 operators"), "{err:?}");
        }
        let err = Rule::compile("r", "content.a ==", "m").unwrap_err();
        assert!(!err.over_limit);
    }

    #[test]
    fn bad_expressions_are_refused_with_a_position() {
        let err = Rule::compile("r", "content.a ==", "m").unwrap_err();
        assert!(err.position.is_some(), "{err:?}");
        let rule = Rule::compile("r", "content.missing == 1", "m").unwrap();
        assert!(rule.fires(&json!({})).is_err());
        let rule = Rule::compile("r", "1 + 1", "m").unwrap();
        assert!(
            rule.fires(&json!({}))
                .unwrap_err()
                .message
                .contains("not a boolean")
        );
    }
}
