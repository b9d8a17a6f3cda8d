//! `coffer_policy::Policy::parse`, the parser of identity, bucket and key policies: the input
//! (lossy UTF-8) is parsed as both kinds. No panic; an accepted policy keeps its source,
//! evaluates the same twice, and is evaluated against fixed requests (caller, action and
//! resource that the seeds' patterns can match, a context with single- and multi-valued
//! keys); a rejection's message is never empty. Resource policies need `Principal` in every
//! statement and identity policies forbid it, so no statement list is accepted as both kinds.
#![no_main]

use coffer_policy::{combine, Context, Decision, Policy, PolicyKind, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut context = Context::new();
    context.insert("aws:SecureTransport", "true");
    context.insert("aws:username", "alice");
    context.insert("s3:x-amz-server-side-encryption", "aws:kms");
    context.insert("kms:EncryptionContext:Department", "Finance");
    context.insert("kms:EncryptionContextKeys", "Department");
    context.insert("kms:EncryptionContextKeys", "Project");
    let requests = [
        Request {
            principal: "arn:aws:iam::000000000000:user/alice",
            action: "s3:GetObject",
            resource: "arn:aws:s3:::photos/cat.jpg",
            context: &context,
        },
        Request {
            principal: "arn:aws:iam::000000000000:root",
            action: "kms:Decrypt",
            resource: "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            context: &context,
        },
    ];
    let mut accepted = 0;
    for kind in [PolicyKind::Identity, PolicyKind::Resource] {
        match Policy::parse(&text, kind) {
            Ok(policy) => {
                accepted += 1;
                assert_eq!(policy.source(), text);
                assert_eq!(policy.kind(), kind);
                assert!(policy.statement_count() >= 1);
                let decisions: Vec<Decision> =
                    requests.iter().map(|r| policy.evaluate(r)).collect();
                for (request, decision) in requests.iter().zip(&decisions) {
                    assert_eq!(policy.evaluate(request), *decision);
                }
                let combined = combine(decisions.iter().copied());
                if decisions.contains(&Decision::Deny) {
                    assert_eq!(combined, Decision::Deny);
                }
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    assert!(
        accepted < 2,
        "accepted as both an identity and a resource policy"
    );
});
