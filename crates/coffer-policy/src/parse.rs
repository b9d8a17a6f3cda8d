//! From a JSON document to checked statements (spec/policy.md, "Grammar" and "Rejections").

use crate::condition::{BaseOperator, Condition, Operator, OperatorError};
use crate::json::{self, Json};
use crate::{PolicyError, PolicyKind, MAX_POLICY_BYTES};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    Allow,
    Deny,
}

/// `Principal`.
#[derive(Clone, Debug)]
pub(crate) enum Principals {
    /// `"*"` or `{"AWS": "*"}`: any caller.
    Any,
    /// Exact caller ARNs.
    Arns(Vec<String>),
}

/// `Action`/`NotAction` or `Resource`/`NotResource`: patterns, and whether the element is
/// the `Not` form.
#[derive(Clone, Debug)]
pub(crate) struct Patterns {
    pub(crate) not: bool,
    pub(crate) patterns: Vec<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct Statement {
    pub(crate) sid: Option<String>,
    pub(crate) effect: Effect,
    /// Present exactly in resource policies.
    pub(crate) principal: Option<Principals>,
    /// Lowercased (actions match case-insensitively).
    pub(crate) action: Patterns,
    pub(crate) resource: Patterns,
    /// ANDed.
    pub(crate) conditions: Vec<Condition>,
}

pub(crate) fn parse(text: &str, kind: PolicyKind) -> Result<Vec<Statement>, PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge {
            size: text.len(),
            limit: MAX_POLICY_BYTES,
        });
    }
    let doc = json::parse(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
    let fields = object(&doc, "the policy document")?;
    let mut statements = None;
    for (key, value) in fields {
        match key.as_str() {
            "Version" => {
                let version = string(value, "Version")?;
                if version != "2012-10-17" && version != "2008-10-17" {
                    return Err(PolicyError::invalid(
                        "Version",
                        format!("\"{version}\" is not a policy language version (2012-10-17 or 2008-10-17)"),
                    ));
                }
            }
            "Id" => {
                string(value, "Id")?;
            }
            "Statement" => statements = Some(value),
            other => return Err(unknown_element("the policy document", other)),
        }
    }
    let items: Vec<&Json> = match statements {
        None => {
            return Err(PolicyError::invalid(
                "the policy document",
                "missing required element Statement",
            ))
        }
        Some(Json::Array(items)) => items.iter().collect(),
        Some(one @ Json::Object(_)) => vec![one],
        Some(other) => {
            return Err(PolicyError::invalid(
                "Statement",
                format!(
                    "must be an object or an array of objects, not {}",
                    other.kind()
                ),
            ))
        }
    };
    if items.is_empty() {
        return Err(PolicyError::invalid(
            "Statement",
            "must contain at least one statement",
        ));
    }
    let mut parsed: Vec<Statement> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let location = format!("Statement[{i}]");
        let statement = statement(item, &location, kind)?;
        if let Some(sid) = &statement.sid {
            if parsed.iter().any(|s| s.sid.as_ref() == Some(sid)) {
                return Err(PolicyError::invalid(
                    format!("{location}.Sid"),
                    format!("Sid \"{sid}\" is used by an earlier statement; Sids must be unique"),
                ));
            }
        }
        parsed.push(statement);
    }
    Ok(parsed)
}

fn statement(value: &Json, location: &str, kind: PolicyKind) -> Result<Statement, PolicyError> {
    let fields = object(value, location)?;
    let mut sid = None;
    let mut effect = None;
    let mut principal = None;
    let mut action = None;
    let mut not_action = None;
    let mut resource = None;
    let mut not_resource = None;
    let mut conditions = Vec::new();
    for (key, value) in fields {
        let at = format!("{location}.{key}");
        match key.as_str() {
            "Sid" => sid = Some(string(value, &at)?.to_owned()),
            "Effect" => {
                effect = Some(match string(value, &at)? {
                    "Allow" => Effect::Allow,
                    "Deny" => Effect::Deny,
                    other => {
                        return Err(PolicyError::invalid(
                            at,
                            format!("\"{other}\" is not an effect (Allow or Deny)"),
                        ))
                    }
                })
            }
            "Principal" => {
                if kind == PolicyKind::Identity {
                    return Err(PolicyError::invalid(
                        at,
                        "an identity policy must not name a Principal (the principal is the identity it is attached to)",
                    ));
                }
                principal = Some(principals(value, &at)?);
            }
            "NotPrincipal" => return Err(PolicyError::unsupported(at, "NotPrincipal")),
            "Action" => action = Some(patterns(value, &at, PatternKind::Action)?),
            "NotAction" => not_action = Some(patterns(value, &at, PatternKind::Action)?),
            "Resource" => resource = Some(patterns(value, &at, PatternKind::Resource)?),
            "NotResource" => not_resource = Some(patterns(value, &at, PatternKind::Resource)?),
            "Condition" => conditions = condition_block(value, &at)?,
            other => return Err(unknown_element(location, other)),
        }
    }
    let effect =
        effect.ok_or_else(|| PolicyError::invalid(location, "missing required element Effect"))?;
    let action = exactly_one(location, "Action", action, not_action)?;
    let resource = exactly_one(location, "Resource", resource, not_resource)?;
    if kind == PolicyKind::Resource && principal.is_none() {
        return Err(PolicyError::invalid(
            location,
            "missing required element Principal (every statement of a resource policy names who it applies to)",
        ));
    }
    Ok(Statement {
        sid,
        effect,
        principal,
        action,
        resource,
        conditions,
    })
}

fn exactly_one(
    location: &str,
    name: &str,
    positive: Option<Vec<String>>,
    negative: Option<Vec<String>>,
) -> Result<Patterns, PolicyError> {
    match (positive, negative) {
        (Some(patterns), None) => Ok(Patterns {
            not: false,
            patterns,
        }),
        (None, Some(patterns)) => Ok(Patterns {
            not: true,
            patterns,
        }),
        (Some(_), Some(_)) => Err(PolicyError::invalid(
            location,
            format!("a statement has {name} or Not{name}, not both"),
        )),
        (None, None) => Err(PolicyError::invalid(
            location,
            format!("missing required element {name} (or Not{name})"),
        )),
    }
}

fn unknown_element(location: &str, name: &str) -> PolicyError {
    PolicyError::invalid(
        location,
        format!("unknown element \"{name}\" (element names are case-sensitive)"),
    )
}

/// The fields of an object, after checking that no key repeats.
fn object<'a>(value: &'a Json, location: &str) -> Result<&'a [(String, Json)], PolicyError> {
    let Json::Object(fields) = value else {
        return Err(PolicyError::invalid(
            location,
            format!("must be an object, not {}", value.kind()),
        ));
    };
    for (i, (key, _)) in fields.iter().enumerate() {
        if fields[..i].iter().any(|(k, _)| k == key) {
            return Err(PolicyError::DuplicateKey {
                location: location.to_owned(),
                key: key.clone(),
            });
        }
    }
    Ok(fields)
}

fn string<'a>(value: &'a Json, location: &str) -> Result<&'a str, PolicyError> {
    match value {
        Json::String(s) => Ok(s),
        other => Err(PolicyError::invalid(
            location,
            format!("must be a string, not {}", other.kind()),
        )),
    }
}

/// A string or a non-empty array of strings.
fn strings<'a>(value: &'a Json, location: &str) -> Result<Vec<(String, &'a str)>, PolicyError> {
    match value {
        Json::String(s) => Ok(vec![(location.to_owned(), s.as_str())]),
        Json::Array(items) if items.is_empty() => {
            Err(PolicyError::invalid(location, "must not be an empty array"))
        }
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = format!("{location}[{i}]");
                string(item, &at).map(|s| (at, s))
            })
            .collect(),
        other => Err(PolicyError::invalid(
            location,
            format!(
                "must be a string or an array of strings, not {}",
                other.kind()
            ),
        )),
    }
}

fn reject_variables(value: &str, location: &str) -> Result<(), PolicyError> {
    if value.contains("${") {
        return Err(PolicyError::unsupported(
            location,
            format!("policy variables (${{...}}), in \"{value}\""),
        ));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PatternKind {
    Action,
    Resource,
}

fn patterns(value: &Json, location: &str, kind: PatternKind) -> Result<Vec<String>, PolicyError> {
    strings(value, location)?
        .into_iter()
        .map(|(at, s)| {
            if s.is_empty() {
                return Err(PolicyError::invalid(at, "must not be an empty string"));
            }
            reject_variables(s, &at)?;
            match kind {
                PatternKind::Action => {
                    check_action(s, &at)?;
                    Ok(s.to_ascii_lowercase())
                }
                PatternKind::Resource => {
                    check_arn(s, &at, "a resource")?;
                    Ok(s.to_owned())
                }
            }
        })
        .collect()
}

/// `*`, or `service:Name` with a plain service prefix and a name of letters, digits and
/// wildcards.
fn check_action(action: &str, location: &str) -> Result<(), PolicyError> {
    if action == "*" {
        return Ok(());
    }
    let bad = || {
        PolicyError::invalid(
            location,
            format!("\"{action}\" is not an action: expected \"service:Name\" (wildcards * and ? allowed in the name) or \"*\""),
        )
    };
    let (service, name) = action.split_once(':').ok_or_else(bad)?;
    let service_ok = !service.is_empty()
        && service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '?' | '-' | '_'));
    if service_ok && name_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// `*`, or `arn:partition:service:region:account:resource`: at least six `:`-separated
/// parts, or fewer if a `*` (which spans `:`) may stand for the missing ones.
fn check_arn(arn: &str, location: &str, what: &str) -> Result<(), PolicyError> {
    if arn == "*"
        || (arn.starts_with("arn:") && (arn.split(':').count() >= 6 || arn[4..].contains('*')))
    {
        Ok(())
    } else {
        Err(PolicyError::invalid(
            location,
            format!("\"{arn}\" is not {what}: expected an ARN (arn:partition:service:region:account:resource) or \"*\""),
        ))
    }
}

fn principals(value: &Json, location: &str) -> Result<Principals, PolicyError> {
    let fields = match value {
        Json::String(s) if s == "*" => return Ok(Principals::Any),
        Json::Object(_) => object(value, location)?,
        other => {
            return Err(PolicyError::invalid(
                location,
                format!("must be \"*\" or an object such as {{\"AWS\": \"arn:aws:iam::<account>:user/<name>\"}}, not {}", match other {
                    Json::String(s) => format!("\"{s}\""),
                    other => other.kind().to_owned(),
                }),
            ))
        }
    };
    let mut arns = None;
    for (key, value) in fields {
        let at = format!("{location}.{key}");
        match key.as_str() {
            "AWS" => arns = Some(value),
            "Service" | "Federated" | "CanonicalUser" => {
                return Err(PolicyError::unsupported(
                    at,
                    format!("principal type \"{key}\" (only \"AWS\")"),
                ))
            }
            other => {
                return Err(PolicyError::invalid(
                    location,
                    format!("unknown principal type \"{other}\" (expected \"AWS\")"),
                ))
            }
        }
    }
    let Some(arns) = arns else {
        return Err(PolicyError::invalid(
            location,
            "must name at least one principal: {\"AWS\": ...}",
        ));
    };
    let mut out = Vec::new();
    for (at, arn) in strings(arns, &format!("{location}.AWS"))? {
        if arn == "*" {
            return Ok(Principals::Any);
        }
        reject_variables(arn, &at)?;
        if arn.len() == 12 && arn.bytes().all(|b| b.is_ascii_digit()) {
            // A bare account id is AWS shorthand for the account's root ARN.
            out.push(format!("arn:aws:iam::{arn}:root"));
            continue;
        }
        if arn.contains(['*', '?']) {
            return Err(PolicyError::invalid(
                at,
                format!("\"{arn}\": a principal is \"*\" or an exact ARN; wildcards inside an ARN are not allowed"),
            ));
        }
        check_arn(arn, &at, "a principal")?;
        out.push(arn.to_owned());
    }
    Ok(Principals::Arns(out))
}

fn condition_block(value: &Json, location: &str) -> Result<Vec<Condition>, PolicyError> {
    let mut conditions = Vec::new();
    for (name, keys) in object(value, location)? {
        let at = format!("{location}.{name}");
        let operator = Operator::parse(name).map_err(|e| match e {
            OperatorError::Unknown => PolicyError::invalid(
                &at,
                format!("unknown or unsupported condition operator \"{name}\" (supported: String[Not]Equals[IgnoreCase], String[Not]Like, Null, Bool, with IfExists and ForAnyValue:/ForAllValues:)"),
            ),
            OperatorError::NotAllowed(why) => PolicyError::invalid(&at, why),
        })?;
        let fields = object(keys, &at)?;
        if fields.is_empty() {
            return Err(PolicyError::invalid(
                at,
                "must name at least one condition key",
            ));
        }
        let mut seen: Vec<String> = Vec::new();
        for (key, values) in fields {
            let key_at = format!("{at}.\"{key}\"");
            check_condition_key(key, &key_at)?;
            let lower = key.to_lowercase();
            if seen.contains(&lower) {
                return Err(PolicyError::DuplicateKey {
                    location: at.clone(),
                    key: format!("{key} (condition keys are case-insensitive)"),
                });
            }
            seen.push(lower.clone());
            let values = condition_values(values, &key_at, operator.base)?;
            conditions.push(Condition {
                operator,
                key: lower,
                values,
            });
        }
    }
    Ok(conditions)
}

/// `prefix:name`, both parts non-empty.
fn check_condition_key(key: &str, location: &str) -> Result<(), PolicyError> {
    reject_variables(key, location)?;
    match key.split_once(':') {
        Some((prefix, name)) if !prefix.is_empty() && !name.is_empty() => Ok(()),
        _ => Err(PolicyError::invalid(
            location,
            format!("\"{key}\" is not a condition key: expected \"prefix:name\", e.g. \"aws:SecureTransport\""),
        )),
    }
}

fn condition_values(
    value: &Json,
    location: &str,
    base: BaseOperator,
) -> Result<Vec<String>, PolicyError> {
    let scalar = |value: &Json, at: &str| -> Result<String, PolicyError> {
        let text = match value {
            Json::String(s) => s.clone(),
            Json::Bool(b) => b.to_string(),
            Json::Number(n) => n.clone(),
            other => {
                return Err(PolicyError::invalid(
                    at,
                    format!(
                        "a condition value is a string, boolean or number, not {}",
                        other.kind()
                    ),
                ))
            }
        };
        reject_variables(&text, at)?;
        Ok(match base {
            BaseOperator::Null | BaseOperator::Bool => {
                let lower = text.to_ascii_lowercase();
                if lower != "true" && lower != "false" {
                    return Err(PolicyError::invalid(
                        at,
                        format!("\"{text}\": {base:?} takes \"true\" or \"false\""),
                    ));
                }
                lower
            }
            BaseOperator::StringEqualsIgnoreCase | BaseOperator::StringNotEqualsIgnoreCase => {
                text.to_lowercase()
            }
            _ => text,
        })
    };
    match value {
        Json::Array(items) if items.is_empty() => Err(PolicyError::invalid(
            location,
            "must have at least one value",
        )),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| scalar(item, &format!("{location}[{i}]")))
            .collect(),
        other => Ok(vec![scalar(other, location)?]),
    }
}
