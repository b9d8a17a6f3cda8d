//! Property tests: no input makes the parser or the evaluator panic, and accepted policies
//! obey the evaluation rules (an added blanket Deny always wins; evaluation is a function of
//! the request).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_policy::{combine, Context, Decision, Policy, PolicyKind, Request};
use proptest::prelude::*;

const KINDS: [PolicyKind; 2] = [PolicyKind::Identity, PolicyKind::Resource];

fn element() -> impl Strategy<Value = String> {
    let effect = prop_oneof![
        Just(r#""Effect": "Allow""#),
        Just(r#""Effect": "Deny""#),
        Just(r#""Effect": "allow""#),
        Just(r#""Effect": 1"#),
    ];
    let action = prop_oneof![
        Just(r#""Action": "s3:GetObject""#),
        Just(r#""Action": "s3:Get*""#),
        Just(r#""Action": ["kms:Decrypt", "kms:?ncrypt"]"#),
        Just(r#""Action": "*""#),
        Just(r#""Action": """#),
        Just(r#""NotAction": "s3:Delete*""#),
        Just(r#""Action": {}"#),
    ];
    let resource = prop_oneof![
        Just(r#""Resource": "*""#),
        Just(r#""Resource": "arn:aws:s3:::photos/*""#),
        Just(r#""Resource": ["arn:aws:s3:::photos", "arn:aws:kms:*:key/?*"]"#),
        Just(r#""NotResource": "arn:aws:s3:::secret/*""#),
        Just(r#""Resource": "arn:aws:s3:::${x}""#),
        Just(r#""Resource": []"#),
    ];
    let principal = prop_oneof![
        Just(r#""Principal": "*""#),
        Just(r#""Principal": {"AWS": "arn:aws:iam::000000000000:user/alice"}"#),
        Just(r#""Principal": {"AWS": ["000000000000", "*"]}"#),
        Just(r#""Principal": {"Service": "x"}"#),
        Just(r#""NotPrincipal": "*""#),
    ];
    let other = prop_oneof![
        Just(r#""Sid": "S""#),
        Just(r#""Sid": 2"#),
        Just(r#""Unknown": 1"#),
        Just(r#""Condition": 5"#),
    ];
    prop_oneof![
        effect.prop_map(str::to_owned),
        action.prop_map(str::to_owned),
        resource.prop_map(str::to_owned),
        principal.prop_map(str::to_owned),
        other.prop_map(str::to_owned),
        condition(),
    ]
}

fn condition() -> impl Strategy<Value = String> {
    let operator = prop_oneof![
        Just("StringEquals"),
        Just("StringNotEquals"),
        Just("StringEqualsIgnoreCase"),
        Just("StringNotEqualsIgnoreCaseIfExists"),
        Just("StringLike"),
        Just("StringNotLike"),
        Just("ForAnyValue:StringLike"),
        Just("ForAllValues:StringEquals"),
        Just("ForAllValues:StringNotEqualsIfExists"),
        Just("Null"),
        Just("Bool"),
        Just("BoolIfExists"),
        Just("NullIfExists"),
        Just("NumericEquals"),
    ];
    let key = prop_oneof![
        Just("aws:username"),
        Just("AWS:SecureTransport"),
        Just("s3:prefix"),
        Just("kms:EncryptionContextKeys"),
        Just("nokey"),
    ];
    let value = prop_oneof![
        Just(r#""true""#.to_owned()),
        Just("false".to_owned()),
        Just("12".to_owned()),
        Just("null".to_owned()),
        Just("[]".to_owned()),
        "[a-zA-Z*?/]{0,6}".prop_map(|s| format!("\"{s}\"")),
        prop::collection::vec("[a-z*?]{0,3}", 1..3).prop_map(|v| {
            format!(
                "[{}]",
                v.iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }),
    ];
    prop::collection::vec(
        (
            operator,
            prop::collection::vec((key, value), 0..3).prop_map(|kv| {
                kv.iter()
                    .map(|(k, v)| format!("\"{k}\": {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
        ),
        0..3,
    )
    .prop_map(|ops| {
        let body = ops
            .iter()
            .map(|(op, keys)| format!("\"{op}\": {{{keys}}}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(r#""Condition": {{{body}}}"#)
    })
}

/// A statement: mostly-valid required elements (so that many documents are accepted),
/// sometimes a principal and a condition, plus 0-2 random (often invalid or repeated)
/// elements.
fn statement() -> impl Strategy<Value = String> {
    let effect = prop_oneof![
        5 => Just(r#""Effect": "Allow""#.to_owned()),
        4 => Just(r#""Effect": "Deny""#.to_owned()),
        1 => element(),
    ];
    let action = prop_oneof![
        3 => Just(r#""Action": "s3:Get*""#.to_owned()),
        3 => Just(r#""Action": ["kms:Decrypt", "kms:?ncrypt"]"#.to_owned()),
        3 => Just(r#""NotAction": "s3:Delete*""#.to_owned()),
        1 => element(),
    ];
    let resource = prop_oneof![
        3 => Just(r#""Resource": "*""#.to_owned()),
        3 => Just(r#""Resource": ["arn:aws:s3:::photos/*", "arn:aws:kms:*:key/?*"]"#.to_owned()),
        3 => Just(r#""NotResource": "arn:aws:s3:::secret/*""#.to_owned()),
        1 => element(),
    ];
    let principal = prop_oneof![
        Just(String::new()),
        Just(r#""Principal": "*""#.to_owned()),
        Just(
            r#""Principal": {"AWS": ["arn:aws:iam::000000000000:user/alice", "000000000000"]}"#
                .to_owned()
        ),
    ];
    let condition = prop_oneof![Just(String::new()), condition()];
    (
        effect,
        action,
        resource,
        principal,
        condition,
        prop::collection::vec(element(), 0..2),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(e, a, r, p, c, extra, plain)| {
            let mut parts = vec![e, a, r, p, c];
            if !plain {
                parts.extend(extra);
            }
            let parts: Vec<String> = parts.into_iter().filter(|s| !s.is_empty()).collect();
            format!("{{{}}}", parts.join(", "))
        })
}

/// Policy-shaped documents.
fn document() -> impl Strategy<Value = String> {
    prop::collection::vec(statement(), 0..4).prop_map(|statements| {
        format!(
            r#"{{"Version": "2012-10-17", "Statement": [{}]}}"#,
            statements.join(", ")
        )
    })
}

fn context() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop_oneof![
                Just("aws:username".to_owned()),
                Just("aws:securetransport".to_owned()),
                Just("S3:Prefix".to_owned()),
                Just("kms:EncryptionContextKeys".to_owned()),
            ],
            prop_oneof![
                Just("true".to_owned()),
                Just("alice".to_owned()),
                "[a-z/]{0,4}"
            ],
        ),
        0..5,
    )
}

fn request_parts() -> impl Strategy<Value = (String, String, String)> {
    (
        prop_oneof![
            Just("arn:aws:iam::000000000000:user/alice".to_owned()),
            Just("arn:aws:iam::000000000000:root".to_owned()),
            ".{0,10}"
        ],
        prop_oneof![
            Just("s3:GetObject".to_owned()),
            Just("kms:Decrypt".to_owned()),
            Just("kms:Encrypt".to_owned()),
            ".{0,10}"
        ],
        prop_oneof![
            Just("arn:aws:s3:::photos/cat".to_owned()),
            Just("arn:aws:s3:::photos".to_owned()),
            Just("arn:aws:kms:r:000000000000:key/k".to_owned()),
            ".{0,20}"
        ],
    )
}

/// Checks the evaluation rules on an accepted policy.
fn check_accepted(json: &str, kind: PolicyKind, parts: &(String, String, String), ctx: &Context) {
    let policy = Policy::parse(json, kind).unwrap();
    assert_eq!(policy.source(), json);
    let request = Request {
        principal: &parts.0,
        action: &parts.1,
        resource: &parts.2,
        context: ctx,
    };
    let decision = policy.evaluate(&request);
    assert_eq!(policy.clone().evaluate(&request), decision);
    assert_eq!(combine([decision]), decision);
    // Appending a blanket Deny statement makes every request denied.
    let principal = if kind == PolicyKind::Resource {
        r#""Principal": "*", "#
    } else {
        ""
    };
    let blanket = format!(r#"{{{principal}"Effect": "Deny", "Action": "*", "Resource": "*"}}"#);
    if let Some(prefix) = json.strip_suffix("]}") {
        let separator = if prefix.ends_with('[') { "" } else { ", " };
        let denied = format!("{prefix}{separator}{blanket}]}}");
        if let Ok(p) = Policy::parse(&denied, kind) {
            assert_eq!(p.evaluate(&request), Decision::Deny, "{denied}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        for kind in KINDS {
            if let Ok(p) = Policy::parse(&text, kind) {
                let ctx = Context::new();
                let _ = p.evaluate(&Request { principal: "", action: "", resource: "", context: &ctx });
            }
        }
    }

    #[test]
    fn arbitrary_json_text_never_panics(text in r#"[\[\]{}",:a-zA-Z0-9*?$ \\-]{0,200}"#) {
        for kind in KINDS {
            let _ = Policy::parse(&text, kind);
        }
    }

    #[test]
    fn policy_shaped_documents(json in document(), pairs in context(), parts in request_parts()) {
        let mut ctx = Context::new();
        for (k, v) in &pairs {
            ctx.insert(k, v.clone());
        }
        for kind in KINDS {
            if Policy::parse(&json, kind).is_ok() {
                check_accepted(&json, kind, &parts, &ctx);
            }
        }
    }

    /// Byte-level mutations of a valid policy.
    #[test]
    fn mutated_valid_policy(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
                            parts in request_parts()) {
        let base = r#"{"Version":"2012-10-17","Statement":[{"Sid":"a","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::000000000000:user/alice","000000000000"]},"Action":["kms:Decrypt","s3:Get*"],"Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:Dept":"Fin"},"ForAllValues:StringLike":{"kms:EncryptionContextKeys":["D*"]},"Null":{"aws:username":false}}}]}"#;
        let mut bytes = base.as_bytes().to_vec();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let ctx = Context::new();
        for kind in KINDS {
            if Policy::parse(&text, kind).is_ok() {
                check_accepted(&text, kind, &parts, &ctx);
            }
        }
    }
}

/// The generator reaches accepted documents of both kinds with every decision, so the
/// property above checks something.
#[test]
fn generator_reaches_accepted_policies() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = document();
    let mut accepted = [0usize; 2];
    let mut decisions = std::collections::HashSet::new();
    let ctx = Context::new();
    for _ in 0..3000 {
        let json = strategy.new_tree(&mut runner).unwrap().current();
        for (i, kind) in KINDS.iter().enumerate() {
            if let Ok(p) = Policy::parse(&json, *kind) {
                accepted[i] += 1;
                for (action, resource) in [
                    ("s3:GetObject", "arn:aws:s3:::photos/a"),
                    ("kms:Decrypt", "arn:aws:s3:::secret/a"),
                ] {
                    decisions.insert(format!(
                        "{:?}",
                        p.evaluate(&Request {
                            principal: "arn:aws:iam::000000000000:user/alice",
                            action,
                            resource,
                            context: &ctx,
                        })
                    ));
                }
            }
        }
    }
    assert!(accepted[0] > 100 && accepted[1] > 100, "{accepted:?}");
    assert_eq!(decisions.len(), 3, "{decisions:?}");
}
