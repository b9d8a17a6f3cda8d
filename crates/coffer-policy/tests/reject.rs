//! Every malformed or unsupported document is rejected, with an error that says what and
//! where (spec/policy.md, "Rejections").
#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_policy::{Policy, PolicyError, PolicyKind, MAX_POLICY_BYTES};
use PolicyKind::{Identity as I, Resource as R};

/// Statements in a policy document.
fn doc(statements: &str) -> String {
    format!(r#"{{"Version": "2012-10-17", "Statement": [{statements}]}}"#)
}

/// A valid identity statement with `extra` elements appended (e.g. `, "Foo": 1`).
fn stmt(extra: &str) -> String {
    doc(&format!(
        r#"{{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"{extra}}}"#
    ))
}

fn cond(condition: &str) -> String {
    stmt(&format!(r#", "Condition": {condition}"#))
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    TooLarge,
    Syntax,
    Duplicate,
    Invalid,
    Unsupported,
}

fn kind_of(e: &PolicyError) -> Kind {
    match e {
        PolicyError::TooLarge { .. } => Kind::TooLarge,
        PolicyError::Syntax(_) => Kind::Syntax,
        PolicyError::DuplicateKey { .. } => Kind::Duplicate,
        PolicyError::Invalid { .. } => Kind::Invalid,
        PolicyError::Unsupported { .. } => Kind::Unsupported,
    }
}

/// (name, policy kind, document, error kind, substrings the message must contain)
fn cases() -> Vec<(&'static str, PolicyKind, String, Kind, Vec<&'static str>)> {
    let resource_stmt = |extra: &str| {
        doc(&format!(
            r#"{{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"{extra}}}"#
        ))
    };
    vec![
        // Document level.
        ("not JSON", I, "{".to_owned(), Kind::Syntax, vec!["not valid JSON", "line 1"]),
        ("trailing data", I, stmt("") + "x", Kind::Syntax, vec!["not valid JSON"]),
        ("empty", I, String::new(), Kind::Syntax, vec!["not valid JSON"]),
        ("not an object", I, "[]".to_owned(), Kind::Invalid, vec!["the policy document", "must be an object, not an array"]),
        ("no Statement", I, r#"{"Version": "2012-10-17"}"#.to_owned(), Kind::Invalid, vec!["missing required element Statement"]),
        ("empty Statement", I, doc(""), Kind::Invalid, vec!["Statement", "at least one statement"]),
        ("Statement a string", I, r#"{"Statement": "x"}"#.to_owned(), Kind::Invalid, vec!["Statement", "not a string"]),
        ("Statement item not object", I, doc("1"), Kind::Invalid, vec!["Statement[0]", "must be an object, not a number"]),
        ("bad Version", I, r#"{"Version": "2020-01-01", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#.to_owned(), Kind::Invalid, vec!["Version", "2020-01-01"]),
        ("Version a number", I, r#"{"Version": 2012, "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#.to_owned(), Kind::Invalid, vec!["Version", "must be a string, not a number"]),
        ("Id an object", I, r#"{"Id": {}, "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#.to_owned(), Kind::Invalid, vec!["Id", "must be a string"]),
        ("unknown top-level element", I, r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}, "Comment": "x"}"#.to_owned(), Kind::Invalid, vec!["unknown element \"Comment\""]),
        ("duplicate top-level key", I, r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}, "Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}}"#.to_owned(), Kind::Duplicate, vec!["duplicate key \"Statement\""]),
        ("too big", I, stmt(&format!(r#", "Sid": "{}""#, "a".repeat(MAX_POLICY_BYTES))), Kind::TooLarge, vec!["32768"]),
        // Statement level.
        ("missing Effect", I, doc(r#"{"Action": "*", "Resource": "*"}"#), Kind::Invalid, vec!["Statement[0]", "missing required element Effect"]),
        ("bad Effect", I, doc(r#"{"Effect": "allow", "Action": "*", "Resource": "*"}"#), Kind::Invalid, vec!["Statement[0].Effect", "\"allow\" is not an effect"]),
        ("Effect not a string", I, doc(r#"{"Effect": true, "Action": "*", "Resource": "*"}"#), Kind::Invalid, vec!["Statement[0].Effect", "must be a string, not a boolean"]),
        ("missing Action", I, doc(r#"{"Effect": "Allow", "Resource": "*"}"#), Kind::Invalid, vec!["missing required element Action (or NotAction)"]),
        ("both Action and NotAction", I, stmt(r#", "NotAction": "s3:PutObject""#), Kind::Invalid, vec!["Statement[0]", "Action or NotAction, not both"]),
        ("missing Resource", I, doc(r#"{"Effect": "Allow", "Action": "*"}"#), Kind::Invalid, vec!["missing required element Resource (or NotResource)"]),
        ("both Resource and NotResource", I, stmt(r#", "NotResource": "*""#), Kind::Invalid, vec!["Resource or NotResource, not both"]),
        ("unknown statement element", I, stmt(r#", "Effects": "Allow""#), Kind::Invalid, vec!["Statement[0]", "unknown element \"Effects\""]),
        ("element names case-sensitive", I, doc(r#"{"effect": "Allow", "Action": "*", "Resource": "*"}"#), Kind::Invalid, vec!["unknown element \"effect\""]),
        ("duplicate statement key", I, doc(r#"{"Effect": "Allow", "Effect": "Deny", "Action": "*", "Resource": "*"}"#), Kind::Duplicate, vec!["Statement[0]", "duplicate key \"Effect\""]),
        ("duplicate key via escape", I, doc(r#"{"Effect": "Allow", "Action": "*", "Resource": "*", "Resourc\u0065": "*"}"#), Kind::Duplicate, vec!["duplicate key \"Resource\""]),
        ("duplicate Sid", I, doc(r#"{"Sid": "A", "Effect": "Allow", "Action": "*", "Resource": "*"}, {"Sid": "A", "Effect": "Deny", "Action": "*", "Resource": "*"}"#), Kind::Invalid, vec!["Statement[1].Sid", "unique"]),
        ("Sid a number", I, stmt(r#", "Sid": 1"#), Kind::Invalid, vec!["Statement[0].Sid", "must be a string"]),
        // Action / Resource values.
        ("empty Action", I, doc(r#"{"Effect": "Allow", "Action": "", "Resource": "*"}"#), Kind::Invalid, vec!["Statement[0].Action", "empty string"]),
        ("empty Action in array", I, doc(r#"{"Effect": "Allow", "Action": ["s3:GetObject", ""], "Resource": "*"}"#), Kind::Invalid, vec!["Statement[0].Action[1]", "empty string"]),
        ("empty Action array", I, doc(r#"{"Effect": "Allow", "Action": [], "Resource": "*"}"#), Kind::Invalid, vec!["Statement[0].Action", "empty array"]),
        ("Action without service", I, doc(r#"{"Effect": "Allow", "Action": "GetObject", "Resource": "*"}"#), Kind::Invalid, vec!["\"GetObject\" is not an action"]),
        ("Action empty name", I, doc(r#"{"Effect": "Allow", "Action": "s3:", "Resource": "*"}"#), Kind::Invalid, vec!["is not an action"]),
        ("Action wildcard service", I, doc(r#"{"Effect": "Allow", "Action": "*:GetObject", "Resource": "*"}"#), Kind::Invalid, vec!["is not an action"]),
        ("Action an object", I, doc(r#"{"Effect": "Allow", "Action": {"s3": "GetObject"}, "Resource": "*"}"#), Kind::Invalid, vec!["Statement[0].Action", "string or an array of strings, not an object"]),
        ("Action array of numbers", I, doc(r#"{"Effect": "Allow", "Action": [1], "Resource": "*"}"#), Kind::Invalid, vec!["Statement[0].Action[0]", "not a number"]),
        ("empty Resource", I, doc(r#"{"Effect": "Allow", "Action": "*", "Resource": ""}"#), Kind::Invalid, vec!["Statement[0].Resource", "empty string"]),
        ("Resource not an ARN", I, doc(r#"{"Effect": "Allow", "Action": "*", "Resource": "photos/*"}"#), Kind::Invalid, vec!["Statement[0].Resource", "is not a resource"]),
        ("Resource too few ARN parts", I, doc(r#"{"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:bucket"}"#), Kind::Invalid, vec!["is not a resource"]),
        ("Resource null", I, doc(r#"{"Effect": "Allow", "Action": "*", "Resource": null}"#), Kind::Invalid, vec!["not null"]),
        ("policy variable in Resource", I, doc(r#"{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::home/${aws:username}/*"}"#), Kind::Unsupported, vec!["Statement[0].Resource", "not supported by Coffer: policy variables"]),
        ("policy variable in NotResource", I, doc(r#"{"Effect": "Allow", "Action": "s3:*", "NotResource": ["*", "arn:aws:s3:::${x}"]}"#), Kind::Unsupported, vec!["Statement[0].NotResource[1]", "policy variables"]),
        // Principal.
        ("Principal in identity policy", I, stmt(r#", "Principal": "*""#), Kind::Invalid, vec!["Statement[0].Principal", "identity policy must not"]),
        ("missing Principal in resource policy", R, stmt(""), Kind::Invalid, vec!["Statement[0]", "missing required element Principal"]),
        ("missing Principal in second statement", R, doc(r#"{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}, {"Effect": "Deny", "Action": "*", "Resource": "*"}"#), Kind::Invalid, vec!["Statement[1]", "missing required element Principal"]),
        ("NotPrincipal", R, doc(r#"{"Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::000000000000:root"}, "Action": "*", "Resource": "*"}"#), Kind::Unsupported, vec!["Statement[0].NotPrincipal", "not supported by Coffer: NotPrincipal"]),
        ("NotPrincipal in identity policy", I, stmt(r#", "NotPrincipal": "*""#), Kind::Unsupported, vec!["NotPrincipal"]),
        ("Principal a bare ARN string", R, doc(r#"{"Effect": "Allow", "Principal": "arn:aws:iam::000000000000:user/a", "Action": "*", "Resource": "*"}"#), Kind::Invalid, vec!["Statement[0].Principal", "must be \"*\" or an object"]),
        ("Principal Service", R, doc(r#"{"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "*", "Resource": "*"}"#), Kind::Unsupported, vec!["Statement[0].Principal.Service", "principal type \"Service\""]),
        ("Principal unknown type", R, doc(r#"{"Effect": "Allow", "Principal": {"aws": "*"}, "Action": "*", "Resource": "*"}"#), Kind::Invalid, vec!["unknown principal type \"aws\""]),
        ("Principal empty object", R, doc(r#"{"Effect": "Allow", "Principal": {}, "Action": "*", "Resource": "*"}"#), Kind::Invalid, vec!["at least one principal"]),
        ("Principal wildcard inside ARN", R, doc(r#"{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/*"}, "Action": "*", "Resource": "*"}"#), Kind::Invalid, vec!["Statement[0].Principal.AWS", "wildcards inside an ARN"]),
        ("Principal not an ARN", R, doc(r#"{"Effect": "Allow", "Principal": {"AWS": ["alice"]}, "Action": "*", "Resource": "*"}"#), Kind::Invalid, vec!["Statement[0].Principal.AWS[0]", "is not a principal"]),
        ("Principal duplicate AWS", R, doc(r#"{"Effect": "Allow", "Principal": {"AWS": "*", "AWS": "*"}, "Action": "*", "Resource": "*"}"#), Kind::Duplicate, vec!["Statement[0].Principal", "duplicate key \"AWS\""]),
        ("Principal variable", R, doc(r#"{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/${x}"}, "Action": "*", "Resource": "*"}"#), Kind::Unsupported, vec!["policy variables"]),
        // Conditions.
        ("unknown operator", I, cond(r#"{"StringEqualsAny": {"aws:username": "a"}}"#), Kind::Invalid, vec!["Statement[0].Condition.StringEqualsAny", "unknown or unsupported condition operator"]),
        ("numeric operator unsupported", I, cond(r#"{"NumericLessThan": {"s3:max-keys": "10"}}"#), Kind::Invalid, vec!["unknown or unsupported condition operator \"NumericLessThan\""]),
        ("operator case-sensitive", I, cond(r#"{"stringequals": {"aws:username": "a"}}"#), Kind::Invalid, vec!["unknown or unsupported condition operator"]),
        ("unknown set qualifier", I, cond(r#"{"ForEveryValue:StringEquals": {"aws:username": "a"}}"#), Kind::Invalid, vec!["unknown or unsupported condition operator"]),
        ("NullIfExists", I, cond(r#"{"NullIfExists": {"aws:username": "true"}}"#), Kind::Invalid, vec!["Condition.NullIfExists", "no IfExists form"]),
        ("ForAllValues:Null", I, cond(r#"{"ForAllValues:Null": {"aws:username": "true"}}"#), Kind::Invalid, vec!["Null cannot take"]),
        ("Null not a boolean", I, cond(r#"{"Null": {"aws:username": "yes"}}"#), Kind::Invalid, vec!["\"yes\"", "true\" or \"false"]),
        ("Bool not a boolean", I, cond(r#"{"Bool": {"aws:SecureTransport": 1}}"#), Kind::Invalid, vec!["Condition.Bool.\"aws:SecureTransport\"", "Bool takes"]),
        ("Condition not an object", I, cond(r#"["StringEquals"]"#), Kind::Invalid, vec!["Statement[0].Condition", "must be an object, not an array"]),
        ("operator block not an object", I, cond(r#"{"StringEquals": "aws:username"}"#), Kind::Invalid, vec!["Condition.StringEquals", "must be an object, not a string"]),
        ("operator block empty", I, cond(r#"{"StringEquals": {}}"#), Kind::Invalid, vec!["at least one condition key"]),
        ("condition value null", I, cond(r#"{"StringEquals": {"aws:username": null}}"#), Kind::Invalid, vec!["Condition.StringEquals.\"aws:username\"", "not null"]),
        ("condition value object", I, cond(r#"{"StringEquals": {"aws:username": {"a": "b"}}}"#), Kind::Invalid, vec!["not an object"]),
        ("condition nested array", I, cond(r#"{"StringEquals": {"aws:username": [["a"]]}}"#), Kind::Invalid, vec!["\"aws:username\"[0]", "not an array"]),
        ("condition empty array", I, cond(r#"{"StringEquals": {"aws:username": []}}"#), Kind::Invalid, vec!["at least one value"]),
        ("condition key without prefix", I, cond(r#"{"StringEquals": {"username": "a"}}"#), Kind::Invalid, vec!["\"username\" is not a condition key"]),
        ("duplicate operator", I, cond(r#"{"StringEquals": {"aws:username": "a"}, "StringEquals": {"aws:username": "b"}}"#), Kind::Duplicate, vec!["Statement[0].Condition", "duplicate key \"StringEquals\""]),
        ("duplicate condition key", I, cond(r#"{"StringEquals": {"aws:username": "a", "aws:username": "b"}}"#), Kind::Duplicate, vec!["Condition.StringEquals", "duplicate key \"aws:username\""]),
        ("duplicate condition key by case", I, cond(r#"{"StringEquals": {"aws:username": "a", "AWS:UserName": "b"}}"#), Kind::Duplicate, vec!["case-insensitive"]),
        ("policy variable in condition value", I, cond(r#"{"StringLike": {"s3:prefix": ["home/${aws:username}/*"]}}"#), Kind::Unsupported, vec!["Condition.StringLike.\"s3:prefix\"[0]", "policy variables"]),
        ("policy variable in condition key", I, cond(r#"{"StringEquals": {"kms:EncryptionContext:${aws:username}": "x"}}"#), Kind::Unsupported, vec!["policy variables"]),
        ("resource policy condition errors too", R, resource_stmt(r#", "Condition": {"Bool": {"aws:SecureTransport": "maybe"}}"#), Kind::Invalid, vec!["Bool takes"]),
        ("too deep", I, "[".repeat(200) + &"]".repeat(200), Kind::Syntax, vec!["recursion limit"]),
    ]
}

#[test]
fn malformed_documents_are_rejected_with_location() {
    let mut failures = Vec::new();
    let cases = cases();
    for (name, kind, json, want, needles) in &cases {
        match Policy::parse(json, *kind) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(e) => {
                let message = e.to_string();
                if std::mem::discriminant(&kind_of(&e)) != std::mem::discriminant(want) {
                    failures.push(format!(
                        "{name}: {:?}, want {want:?}: {message}",
                        kind_of(&e)
                    ));
                }
                for n in needles {
                    if !message.contains(n) {
                        failures.push(format!("{name}: message lacks {n:?}: {message}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases.len() >= 60);
}

/// The size limit is on bytes, inclusive; the base documents of the cases above are valid,
/// so each rejection is due to the one thing the case changes.
#[test]
fn limits_and_baselines() {
    let base = stmt("");
    let padding = MAX_POLICY_BYTES - base.len();
    let exactly = format!("{base}{}", " ".repeat(padding));
    assert_eq!(exactly.len(), MAX_POLICY_BYTES);
    Policy::parse(&exactly, I).unwrap();
    let over = format!("{exactly} ");
    assert!(matches!(
        Policy::parse(&over, I),
        Err(PolicyError::TooLarge { size, limit }) if size == MAX_POLICY_BYTES + 1 && limit == MAX_POLICY_BYTES
    ));
    Policy::parse(&cond(r#"{"StringEquals": {"aws:username": "a"}}"#), I).unwrap();
    Policy::parse(
        &doc(r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}"#),
        R,
    )
    .unwrap();
    // A `$` that is not a variable is an ordinary character.
    Policy::parse(
        &doc(r#"{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/$x{y}"}"#),
        I,
    )
    .unwrap();
}
