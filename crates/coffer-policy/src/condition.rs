//! The `Condition` element: operators, and their evaluation against a request's
//! [`Context`] (spec/policy.md, "Conditions").

use crate::pattern::glob;
use crate::Context;

/// The operators Coffer implements, without prefix or suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BaseOperator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    Null,
    Bool,
}

impl BaseOperator {
    const ALL: [(&'static str, BaseOperator); 8] = [
        ("StringEquals", BaseOperator::StringEquals),
        ("StringNotEquals", BaseOperator::StringNotEquals),
        (
            "StringEqualsIgnoreCase",
            BaseOperator::StringEqualsIgnoreCase,
        ),
        (
            "StringNotEqualsIgnoreCase",
            BaseOperator::StringNotEqualsIgnoreCase,
        ),
        ("StringLike", BaseOperator::StringLike),
        ("StringNotLike", BaseOperator::StringNotLike),
        ("Null", BaseOperator::Null),
        ("Bool", BaseOperator::Bool),
    ];

    /// The negated operators (`StringNot*`): true when a key is missing, and true for a
    /// value when it matches none of the policy values.
    fn negated(self) -> bool {
        matches!(
            self,
            BaseOperator::StringNotEquals
                | BaseOperator::StringNotEqualsIgnoreCase
                | BaseOperator::StringNotLike
        )
    }

    /// Whether one request value matches one policy value, in the operator's positive sense
    /// (`StringNotEquals` compares like `StringEquals`).
    fn compare(self, policy: &str, request: &str) -> bool {
        match self {
            BaseOperator::StringEquals | BaseOperator::StringNotEquals => policy == request,
            BaseOperator::StringEqualsIgnoreCase | BaseOperator::StringNotEqualsIgnoreCase => {
                // Policy values are lowercased at parse time.
                policy == request.to_lowercase()
            }
            BaseOperator::StringLike | BaseOperator::StringNotLike => glob(policy, request),
            // Policy values are checked to be "true"/"false" (lowercased) at parse time.
            BaseOperator::Bool => request.eq_ignore_ascii_case(policy),
            // Null looks at presence only, see `Condition::evaluate`.
            BaseOperator::Null => false,
        }
    }
}

/// `ForAnyValue:` / `ForAllValues:`, for multi-valued keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetQualifier {
    None,
    ForAnyValue,
    ForAllValues,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Operator {
    pub(crate) set: SetQualifier,
    pub(crate) base: BaseOperator,
    pub(crate) if_exists: bool,
}

/// Why an operator name was rejected.
pub(crate) enum OperatorError {
    Unknown,
    /// Known in AWS (or a known operator used in a way AWS does not allow), not here.
    NotAllowed(&'static str),
}

impl Operator {
    /// Parses `[ForAnyValue:|ForAllValues:]Base[IfExists]` (case-sensitive, as AWS writes
    /// them).
    pub(crate) fn parse(name: &str) -> Result<Operator, OperatorError> {
        let (set, rest) = if let Some(rest) = name.strip_prefix("ForAnyValue:") {
            (SetQualifier::ForAnyValue, rest)
        } else if let Some(rest) = name.strip_prefix("ForAllValues:") {
            (SetQualifier::ForAllValues, rest)
        } else {
            (SetQualifier::None, name)
        };
        let (base_name, if_exists) = match rest.strip_suffix("IfExists") {
            Some(base) => (base, true),
            None => (rest, false),
        };
        let base = BaseOperator::ALL
            .iter()
            .find(|(n, _)| *n == base_name)
            .map(|(_, op)| *op)
            .ok_or(OperatorError::Unknown)?;
        if base == BaseOperator::Null && if_exists {
            return Err(OperatorError::NotAllowed(
                "Null has no IfExists form (it already tests whether the key exists)",
            ));
        }
        if base == BaseOperator::Null && set != SetQualifier::None {
            return Err(OperatorError::NotAllowed(
                "Null cannot take ForAnyValue:/ForAllValues:",
            ));
        }
        Ok(Operator {
            set,
            base,
            if_exists,
        })
    }
}

/// One operator applied to one key, with its values (ORed).
#[derive(Clone, Debug)]
pub(crate) struct Condition {
    pub(crate) operator: Operator,
    /// Lowercased: condition key names are case-insensitive.
    pub(crate) key: String,
    /// As written, except lowercased for the IgnoreCase operators, `Bool` and `Null`.
    pub(crate) values: Vec<String>,
}

impl Condition {
    pub(crate) fn evaluate(&self, context: &Context) -> bool {
        let present = context.get(&self.key).filter(|v| !v.is_empty());
        let op = self.operator;
        if op.base == BaseOperator::Null {
            // {"k": "true"} holds iff k is absent; {"k": "false"} iff present.
            return self
                .values
                .iter()
                .any(|v| (v == "true") == present.is_none());
        }
        let hit = |request: &String| self.values.iter().any(|p| op.base.compare(p, request));
        let negated = op.base.negated();
        match (op.set, present) {
            (SetQualifier::None, None) => op.if_exists || negated,
            (SetQualifier::None, Some(values)) => values.iter().any(hit) != negated,
            // AWS: ForAnyValue over a missing or empty key is false, ForAllValues is true.
            (SetQualifier::ForAnyValue, None) => op.if_exists,
            (SetQualifier::ForAllValues, None) => true,
            (SetQualifier::ForAnyValue, Some(values)) => values.iter().any(|v| hit(v) != negated),
            (SetQualifier::ForAllValues, Some(values)) => values.iter().all(|v| hit(v) != negated),
        }
    }
}
