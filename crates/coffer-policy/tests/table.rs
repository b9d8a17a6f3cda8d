//! The decision table: (policy, request, expected decision) rows covering every element,
//! operator and wildcard rule of spec/policy.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_policy::{combine, Context, Decision, Policy, PolicyKind, Request};
use Decision::{Allow as A, Deny as D, NotApplicable as N};
use PolicyKind::{Identity as I, Resource as R};

const ALICE: &str = "arn:aws:iam::000000000000:user/alice";
const BOB: &str = "arn:aws:iam::000000000000:user/bob";
const ROOT: &str = "arn:aws:iam::000000000000:root";
const BUCKET: &str = "arn:aws:s3:::photos";
const OBJECT: &str = "arn:aws:s3:::photos/cat.jpg";
const KEY: &str = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const OTHER_KEY: &str =
    "arn:aws:kms:us-east-1:000000000000:key/ffffffff-12ab-34cd-56ef-1234567890ab";

struct Row {
    name: &'static str,
    kind: PolicyKind,
    policy: String,
    principal: &'static str,
    action: &'static str,
    resource: &'static str,
    context: Vec<(&'static str, &'static str)>,
    want: Decision,
}

/// A policy document from statements (JSON objects, comma-separated).
fn doc(statements: &str) -> String {
    format!(r#"{{"Version": "2012-10-17", "Statement": [{statements}]}}"#)
}

/// One identity statement.
fn allow(action: &str, resource: &str) -> String {
    doc(&format!(
        r#"{{"Effect": "Allow", "Action": {action}, "Resource": {resource}}}"#
    ))
}

/// An identity policy allowing s3:* on everything when `condition` holds.
fn when(condition: &str) -> String {
    doc(&format!(
        r#"{{"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {condition}}}"#
    ))
}

fn row(
    name: &'static str,
    kind: PolicyKind,
    policy: String,
    (principal, action, resource): (&'static str, &'static str, &'static str),
    context: &[(&'static str, &'static str)],
    want: Decision,
) -> Row {
    Row {
        name,
        kind,
        policy,
        principal,
        action,
        resource,
        context: context.to_vec(),
        want,
    }
}

const GET: (&str, &str, &str) = (ALICE, "s3:GetObject", OBJECT);
const PUT: (&str, &str, &str) = (ALICE, "s3:PutObject", OBJECT);

fn rows() -> Vec<Row> {
    let q = |s: &str| format!("\"{s}\"");
    let mut v = vec![
        // --- Action matching: case-insensitive, `*` and `?` wildcards.
        row("action exact", I, allow(r#""s3:GetObject""#, r#""*""#), GET, &[], A),
        row("action other", I, allow(r#""s3:GetObject""#, r#""*""#), PUT, &[], N),
        row("action s3:Get* matches GetObject", I, allow(r#""s3:Get*""#, r#""*""#), GET, &[], A),
        row("action s3:Get* matches GetObjectAcl", I, allow(r#""s3:Get*""#, r#""*""#), (ALICE, "s3:GetObjectAcl", OBJECT), &[], A),
        row("action s3:Get* matches s3:Get (empty star)", I, allow(r#""s3:Get*""#, r#""*""#), (ALICE, "s3:Get", OBJECT), &[], A),
        row("action s3:Get* not PutObject", I, allow(r#""s3:Get*""#, r#""*""#), PUT, &[], N),
        row("action s3:* not kms", I, allow(r#""s3:*""#, r#""*""#), (ALICE, "kms:Decrypt", KEY), &[], N),
        row("action * matches kms", I, allow(r#""*""#, r#""*""#), (ALICE, "kms:Decrypt", KEY), &[], A),
        row("action policy case-insensitive", I, allow(r#""S3:getobject""#, r#""*""#), GET, &[], A),
        row("action request case-insensitive", I, allow(r#""s3:GetObject""#, r#""*""#), (ALICE, "S3:GETOBJECT", OBJECT), &[], A),
        row("action ? one char", I, allow(r#""s3:?etObject""#, r#""*""#), GET, &[], A),
        row("action ? not two chars", I, allow(r#""s3:?etObject""#, r#""*""#), (ALICE, "s3:GeetObject", OBJECT), &[], N),
        row("action ? not zero chars", I, allow(r#""s3:G?etObject""#, r#""*""#), GET, &[], N),
        row("action array ORs", I, allow(r#"["kms:Encrypt", "kms:Decrypt"]"#, r#""*""#), (ALICE, "kms:Decrypt", KEY), &[], A),
        row("action array none", I, allow(r#"["kms:Encrypt", "kms:Decrypt"]"#, r#""*""#), (ALICE, "kms:ReEncryptFrom", KEY), &[], N),
        row("action prefix is not a match", I, allow(r#""s3:Get""#, r#""*""#), GET, &[], N),
        // --- Resource matching: case-sensitive, `*` spans `/` and `:`.
        row("resource bucket/* not the bucket", I, allow(r#""s3:*""#, &q("arn:aws:s3:::photos/*")), (ALICE, "s3:ListBucket", BUCKET), &[], N),
        row("resource bucket/* the object", I, allow(r#""s3:*""#, &q("arn:aws:s3:::photos/*")), GET, &[], A),
        row("resource bucket/* spans /", I, allow(r#""s3:*""#, &q("arn:aws:s3:::photos/*")), (ALICE, "s3:GetObject", "arn:aws:s3:::photos/a/b/c.jpg"), &[], A),
        row("resource bucket not the object", I, allow(r#""s3:*""#, &q(BUCKET)), GET, &[], N),
        row("resource bucket* also other buckets", I, allow(r#""s3:*""#, &q("arn:aws:s3:::photos*")), (ALICE, "s3:GetObject", "arn:aws:s3:::photos-backup/x"), &[], A),
        row("resource case-sensitive", I, allow(r#""s3:*""#, &q("arn:aws:s3:::Photos/*")), GET, &[], N),
        row("resource ?", I, allow(r#""s3:*""#, &q("arn:aws:s3:::photo?/*")), GET, &[], A),
        row("resource ? needs a char", I, allow(r#""s3:*""#, &q("arn:aws:s3:::photo?/*")), (ALICE, "s3:GetObject", "arn:aws:s3:::photo/x"), &[], N),
        row("resource * spans :", I, allow(r#""kms:*""#, &q("arn:aws:kms:*:key/*")), (ALICE, "kms:Decrypt", KEY), &[], A),
        row("resource key exact", I, allow(r#""kms:*""#, &q(KEY)), (ALICE, "kms:Decrypt", OTHER_KEY), &[], N),
        row("resource array ORs", I, allow(r#""s3:*""#, &format!("[{}, {}]", q(BUCKET), q("arn:aws:s3:::photos/*"))), (ALICE, "s3:ListBucket", BUCKET), &[], A),
        // --- NotAction / NotResource.
        row("NotAction allows the rest", I, doc(r#"{"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"}"#), GET, &[], A),
        row("NotAction excludes", I, doc(r#"{"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"}"#), (ALICE, "s3:DeleteObject", OBJECT), &[], N),
        row("NotAction deny everything but Decrypt", I, doc(r#"{"Effect": "Allow", "Action": "*", "Resource": "*"}, {"Effect": "Deny", "NotAction": ["kms:Decrypt"], "Resource": "*"}"#), (ALICE, "kms:Encrypt", KEY), &[], D),
        row("NotAction deny spares Decrypt", I, doc(r#"{"Effect": "Allow", "Action": "*", "Resource": "*"}, {"Effect": "Deny", "NotAction": ["kms:Decrypt"], "Resource": "*"}"#), (ALICE, "kms:Decrypt", KEY), &[], A),
        row("NotResource deny outside the bucket", I, doc(r#"{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, {"Effect": "Deny", "Action": "s3:*", "NotResource": "arn:aws:s3:::photos/*"}"#), (ALICE, "s3:GetObject", "arn:aws:s3:::other/x"), &[], D),
        row("NotResource deny spares the bucket", I, doc(r#"{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, {"Effect": "Deny", "Action": "s3:*", "NotResource": "arn:aws:s3:::photos/*"}"#), GET, &[], A),
        row("NotResource allow", I, doc(r#"{"Effect": "Allow", "Action": "s3:*", "NotResource": ["arn:aws:s3:::secret", "arn:aws:s3:::secret/*"]}"#), (ALICE, "s3:GetObject", "arn:aws:s3:::secret/x"), &[], N),
        // --- Explicit deny beats allow, in either order.
        row("deny after allow", I, doc(r#"{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}"#), (ALICE, "s3:DeleteObject", OBJECT), &[], D),
        row("deny before allow", I, doc(r#"{"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}, {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}"#), (ALICE, "s3:DeleteObject", OBJECT), &[], D),
        row("deny not matching leaves allow", I, doc(r#"{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}"#), GET, &[], A),
        row("deny only, not matching", I, doc(r#"{"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}"#), GET, &[], N),
        row("single statement object form", I, r#"{"Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}}"#.to_owned(), GET, &[], A),
        row("2008-10-17 version", I, r#"{"Version": "2008-10-17", "Id": "x", "Statement": {"Sid": "1", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}}"#.to_owned(), GET, &[], A),
        // --- Principal (resource policies).
        row("principal * any caller", R, doc(r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}"#), (BOB, "s3:GetObject", OBJECT), &[], A),
        row("principal AWS * any caller", R, doc(r#"{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:GetObject", "Resource": "*"}"#), (BOB, "s3:GetObject", OBJECT), &[], A),
        row("principal ARN matches", R, doc(&format!(r#"{{"Effect": "Allow", "Principal": {{"AWS": "{ALICE}"}}, "Action": "s3:GetObject", "Resource": "*"}}"#)), GET, &[], A),
        row("principal ARN other caller", R, doc(&format!(r#"{{"Effect": "Allow", "Principal": {{"AWS": "{ALICE}"}}, "Action": "s3:GetObject", "Resource": "*"}}"#)), (BOB, "s3:GetObject", OBJECT), &[], N),
        row("principal ARN case-sensitive", R, doc(r#"{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/Alice"}, "Action": "s3:GetObject", "Resource": "*"}"#), GET, &[], N),
        row("principal array ORs", R, doc(&format!(r#"{{"Effect": "Allow", "Principal": {{"AWS": ["{ALICE}", "{BOB}"]}}, "Action": "s3:GetObject", "Resource": "*"}}"#)), (BOB, "s3:GetObject", OBJECT), &[], A),
        row("principal root form matches root", R, doc(&format!(r#"{{"Effect": "Allow", "Principal": {{"AWS": "{ROOT}"}}, "Action": "kms:*", "Resource": "*"}}"#)), (ROOT, "kms:PutKeyPolicy", KEY), &[], A),
        row("principal root form is NOT the whole account", R, doc(&format!(r#"{{"Effect": "Allow", "Principal": {{"AWS": "{ROOT}"}}, "Action": "kms:*", "Resource": "*"}}"#)), (ALICE, "kms:Decrypt", KEY), &[], N),
        row("principal bare account id = root", R, doc(r#"{"Effect": "Allow", "Principal": {"AWS": "000000000000"}, "Action": "kms:*", "Resource": "*"}"#), (ROOT, "kms:Decrypt", KEY), &[], A),
        row("principal bare account id not a user", R, doc(r#"{"Effect": "Allow", "Principal": {"AWS": "000000000000"}, "Action": "kms:*", "Resource": "*"}"#), (ALICE, "kms:Decrypt", KEY), &[], N),
        row("principal deny one caller", R, doc(&format!(r#"{{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}}, {{"Effect": "Deny", "Principal": {{"AWS": "{BOB}"}}, "Action": "s3:*", "Resource": "*"}}"#)), (BOB, "s3:GetObject", OBJECT), &[], D),
        row("principal deny spares others", R, doc(&format!(r#"{{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}}, {{"Effect": "Deny", "Principal": {{"AWS": "{BOB}"}}, "Action": "s3:*", "Resource": "*"}}"#)), GET, &[], A),
        // --- StringEquals (and the AND/OR rules).
        row("StringEquals match", I, when(r#"{"StringEquals": {"aws:username": "alice"}}"#), GET, &[("aws:username", "alice")], A),
        row("StringEquals other value", I, when(r#"{"StringEquals": {"aws:username": "alice"}}"#), GET, &[("aws:username", "bob")], N),
        row("StringEquals missing key", I, when(r#"{"StringEquals": {"aws:username": "alice"}}"#), GET, &[], N),
        row("StringEquals key name case-insensitive", I, when(r#"{"StringEquals": {"AWS:UserName": "alice"}}"#), GET, &[("aws:username", "alice")], A),
        row("StringEquals value case-sensitive", I, when(r#"{"StringEquals": {"aws:username": "alice"}}"#), GET, &[("aws:username", "Alice")], N),
        row("values OR", I, when(r#"{"StringEquals": {"aws:username": ["alice", "bob"]}}"#), GET, &[("aws:username", "bob")], A),
        row("keys AND (one missing)", I, when(r#"{"StringEquals": {"aws:username": "alice", "kms:CallerAccount": "000000000000"}}"#), GET, &[("aws:username", "alice")], N),
        row("keys AND (both)", I, when(r#"{"StringEquals": {"aws:username": "alice", "kms:CallerAccount": "000000000000"}}"#), GET, &[("aws:username", "alice"), ("kms:calleraccount", "000000000000")], A),
        row("operators AND", I, when(r#"{"StringEquals": {"aws:username": "alice"}, "Bool": {"aws:SecureTransport": "true"}}"#), GET, &[("aws:username", "alice"), ("aws:SecureTransport", "false")], N),
        row("number value as string", I, when(r#"{"StringEquals": {"kms:CallerAccount": 12}}"#), GET, &[("kms:CallerAccount", "12")], A),
        row("multi-valued key, single operator: any", I, when(r#"{"StringEquals": {"kms:EncryptionContextKeys": "Project"}}"#), GET, &[("kms:EncryptionContextKeys", "Other"), ("kms:EncryptionContextKeys", "Project")], A),
        row("encryption context key", I, when(r#"{"StringEquals": {"kms:EncryptionContext:Department": "Finance"}}"#), GET, &[("kms:encryptioncontext:department", "Finance")], A),
        // --- StringNotEquals (deny unless SSE-KMS).
        row("StringNotEquals different value", I, doc(r#"{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*", "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}}"#), PUT, &[("s3:x-amz-server-side-encryption", "AES256")], D),
        row("StringNotEquals same value", I, doc(r#"{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*", "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}}"#), PUT, &[("s3:x-amz-server-side-encryption", "aws:kms")], A),
        row("StringNotEquals missing key is true", I, doc(r#"{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*", "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}}"#), PUT, &[], D),
        row("StringNotEquals multi-valued: none may equal", I, when(r#"{"StringNotEquals": {"kms:EncryptionContextKeys": "Secret"}}"#), GET, &[("kms:EncryptionContextKeys", "A"), ("kms:EncryptionContextKeys", "Secret")], N),
        // --- IgnoreCase.
        row("StringEqualsIgnoreCase", I, when(r#"{"StringEqualsIgnoreCase": {"s3:x-amz-server-side-encryption": "AWS:KMS"}}"#), GET, &[("s3:x-amz-server-side-encryption", "aws:kms")], A),
        row("StringEqualsIgnoreCase other", I, when(r#"{"StringEqualsIgnoreCase": {"s3:x-amz-server-side-encryption": "AWS:KMS"}}"#), GET, &[("s3:x-amz-server-side-encryption", "AES256")], N),
        row("StringEqualsIgnoreCase missing", I, when(r#"{"StringEqualsIgnoreCase": {"s3:x-amz-server-side-encryption": "aws:kms"}}"#), GET, &[], N),
        row("StringNotEqualsIgnoreCase equal", I, when(r#"{"StringNotEqualsIgnoreCase": {"s3:x-amz-server-side-encryption": "aws:kms"}}"#), GET, &[("s3:x-amz-server-side-encryption", "AWS:KMS")], N),
        row("StringNotEqualsIgnoreCase different", I, when(r#"{"StringNotEqualsIgnoreCase": {"s3:x-amz-server-side-encryption": "aws:kms"}}"#), GET, &[("s3:x-amz-server-side-encryption", "AES256")], A),
        row("StringNotEqualsIgnoreCase missing", I, when(r#"{"StringNotEqualsIgnoreCase": {"s3:x-amz-server-side-encryption": "aws:kms"}}"#), GET, &[], A),
        // --- StringLike / StringNotLike.
        row("StringLike *", I, when(r#"{"StringLike": {"s3:prefix": "home/alice/*"}}"#), GET, &[("s3:prefix", "home/alice/docs/x")], A),
        row("StringLike no match", I, when(r#"{"StringLike": {"s3:prefix": "home/alice/*"}}"#), GET, &[("s3:prefix", "home/bob/")], N),
        row("StringLike missing", I, when(r#"{"StringLike": {"s3:prefix": "home/alice/*"}}"#), GET, &[], N),
        row("StringLike ?", I, when(r#"{"StringLike": {"s3:delimiter": "?"}}"#), GET, &[("s3:delimiter", "/")], A),
        row("StringLike ? one char only", I, when(r#"{"StringLike": {"s3:delimiter": "?"}}"#), GET, &[("s3:delimiter", "//")], N),
        row("StringLike case-sensitive", I, when(r#"{"StringLike": {"s3:prefix": "Home/*"}}"#), GET, &[("s3:prefix", "home/x")], N),
        row("StringNotLike no match", I, when(r#"{"StringNotLike": {"s3:prefix": "home/alice/*"}}"#), GET, &[("s3:prefix", "home/bob/x")], A),
        row("StringNotLike match", I, when(r#"{"StringNotLike": {"s3:prefix": "home/alice/*"}}"#), GET, &[("s3:prefix", "home/alice/x")], N),
        row("StringNotLike missing", I, when(r#"{"StringNotLike": {"s3:prefix": "home/alice/*"}}"#), GET, &[], A),
        // --- Null.
        row("Null true, key absent", I, when(r#"{"Null": {"s3:x-amz-server-side-encryption": "true"}}"#), GET, &[], A),
        row("Null true, key present", I, when(r#"{"Null": {"s3:x-amz-server-side-encryption": "true"}}"#), GET, &[("s3:x-amz-server-side-encryption", "aws:kms")], N),
        row("Null false, key present", I, when(r#"{"Null": {"s3:x-amz-server-side-encryption": "false"}}"#), GET, &[("s3:x-amz-server-side-encryption", "aws:kms")], A),
        row("Null false (JSON bool), key absent", I, when(r#"{"Null": {"s3:x-amz-server-side-encryption": false}}"#), GET, &[], N),
        // --- Bool.
        row("Bool true", I, when(r#"{"Bool": {"aws:SecureTransport": "true"}}"#), GET, &[("aws:SecureTransport", "true")], A),
        row("Bool compares case-insensitively", I, when(r#"{"Bool": {"aws:SecureTransport": "True"}}"#), GET, &[("aws:securetransport", "TRUE")], A),
        row("Bool false value", I, when(r#"{"Bool": {"aws:SecureTransport": true}}"#), GET, &[("aws:SecureTransport", "false")], N),
        row("Bool missing", I, when(r#"{"Bool": {"aws:SecureTransport": "true"}}"#), GET, &[], N),
        row("Bool non-boolean context value", I, when(r#"{"Bool": {"aws:SecureTransport": "true"}}"#), GET, &[("aws:SecureTransport", "yes")], N),
        row("Bool deny plain HTTP", R, doc(r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}, {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": false}}}"#), GET, &[("aws:SecureTransport", "false")], D),
        // --- IfExists.
        row("StringEqualsIfExists missing", I, when(r#"{"StringEqualsIfExists": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "k"}}"#), GET, &[], A),
        row("StringEqualsIfExists present equal", I, when(r#"{"StringEqualsIfExists": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "k"}}"#), GET, &[("s3:x-amz-server-side-encryption-aws-kms-key-id", "k")], A),
        row("StringEqualsIfExists present different", I, when(r#"{"StringEqualsIfExists": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "k"}}"#), GET, &[("s3:x-amz-server-side-encryption-aws-kms-key-id", "j")], N),
        row("StringNotEqualsIfExists missing", I, when(r#"{"StringNotEqualsIfExists": {"aws:username": "bob"}}"#), GET, &[], A),
        row("StringNotEqualsIfExists present equal", I, when(r#"{"StringNotEqualsIfExists": {"aws:username": "bob"}}"#), GET, &[("aws:username", "bob")], N),
        row("StringEqualsIgnoreCaseIfExists missing", I, when(r#"{"StringEqualsIgnoreCaseIfExists": {"aws:username": "bob"}}"#), GET, &[], A),
        row("StringNotEqualsIgnoreCaseIfExists present", I, when(r#"{"StringNotEqualsIgnoreCaseIfExists": {"aws:username": "bob"}}"#), GET, &[("aws:username", "BOB")], N),
        row("StringLikeIfExists missing", I, when(r#"{"StringLikeIfExists": {"s3:prefix": "a/*"}}"#), GET, &[], A),
        row("StringLikeIfExists present no match", I, when(r#"{"StringLikeIfExists": {"s3:prefix": "a/*"}}"#), GET, &[("s3:prefix", "b/")], N),
        row("StringNotLikeIfExists present match", I, when(r#"{"StringNotLikeIfExists": {"s3:prefix": "a/*"}}"#), GET, &[("s3:prefix", "a/x")], N),
        row("BoolIfExists missing", I, when(r#"{"BoolIfExists": {"aws:SecureTransport": "true"}}"#), GET, &[], A),
        row("BoolIfExists present false", I, when(r#"{"BoolIfExists": {"aws:SecureTransport": "true"}}"#), GET, &[("aws:SecureTransport", "false")], N),
        // --- ForAnyValue.
        row("ForAnyValue one matches", I, when(r#"{"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": ["Department", "Project"]}}"#), GET, &[("kms:EncryptionContextKeys", "Project"), ("kms:EncryptionContextKeys", "Other")], A),
        row("ForAnyValue none matches", I, when(r#"{"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": ["Department", "Project"]}}"#), GET, &[("kms:EncryptionContextKeys", "Other")], N),
        row("ForAnyValue missing key is false", I, when(r#"{"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "Project"}}"#), GET, &[], N),
        row("ForAnyValue IfExists missing key", I, when(r#"{"ForAnyValue:StringEqualsIfExists": {"kms:EncryptionContextKeys": "Project"}}"#), GET, &[], A),
        row("ForAnyValue:StringNotEquals one differs", I, when(r#"{"ForAnyValue:StringNotEquals": {"kms:EncryptionContextKeys": "A"}}"#), GET, &[("kms:EncryptionContextKeys", "A"), ("kms:EncryptionContextKeys", "B")], A),
        row("ForAnyValue:StringNotEquals all equal", I, when(r#"{"ForAnyValue:StringNotEquals": {"kms:EncryptionContextKeys": "A"}}"#), GET, &[("kms:EncryptionContextKeys", "A")], N),
        row("ForAnyValue:StringLike", I, when(r#"{"ForAnyValue:StringLike": {"kms:EncryptionContextKeys": "Dep*"}}"#), GET, &[("kms:EncryptionContextKeys", "x"), ("kms:EncryptionContextKeys", "Department")], A),
        row("ForAnyValue:StringEqualsIgnoreCase", I, when(r#"{"ForAnyValue:StringEqualsIgnoreCase": {"kms:GrantOperations": "decrypt"}}"#), GET, &[("kms:GrantOperations", "Encrypt"), ("kms:GrantOperations", "Decrypt")], A),
        // --- ForAllValues.
        row("ForAllValues subset", I, when(r#"{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Department", "Project"]}}"#), GET, &[("kms:EncryptionContextKeys", "Department")], A),
        row("ForAllValues one outside", I, when(r#"{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Department", "Project"]}}"#), GET, &[("kms:EncryptionContextKeys", "Department"), ("kms:EncryptionContextKeys", "Other")], N),
        row("ForAllValues missing key is true", I, when(r#"{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": "Department"}}"#), GET, &[], A),
        row("ForAllValues:StringNotEquals none forbidden", I, when(r#"{"ForAllValues:StringNotEquals": {"kms:GrantOperations": "CreateGrant"}}"#), GET, &[("kms:GrantOperations", "Decrypt"), ("kms:GrantOperations", "Encrypt")], A),
        row("ForAllValues:StringNotEquals one forbidden", I, when(r#"{"ForAllValues:StringNotEquals": {"kms:GrantOperations": "CreateGrant"}}"#), GET, &[("kms:GrantOperations", "Decrypt"), ("kms:GrantOperations", "CreateGrant")], N),
        row("ForAllValues:StringLike", I, when(r#"{"ForAllValues:StringLike": {"kms:EncryptionContextKeys": ["Dep*", "Proj*"]}}"#), GET, &[("kms:EncryptionContextKeys", "Department"), ("kms:EncryptionContextKeys", "Project7")], A),
        row("ForAllValues:StringNotLike", I, when(r#"{"ForAllValues:StringNotLike": {"kms:EncryptionContextKeys": "tmp*"}}"#), GET, &[("kms:EncryptionContextKeys", "Department"), ("kms:EncryptionContextKeys", "tmp1")], N),
        row("ForAllValues:Bool", I, when(r#"{"ForAllValues:Bool": {"aws:SecureTransport": "true"}}"#), GET, &[("aws:SecureTransport", "true"), ("aws:SecureTransport", "false")], N),
        // --- The examples of spec/policy.md.
        row("spec: SSE-KMS required, SSE-S3 put", R, spec_require_sse_kms(), PUT, &[("s3:x-amz-server-side-encryption", "AES256")], D),
        row("spec: SSE-KMS required, no header", R, spec_require_sse_kms(), PUT, &[], D),
        row("spec: SSE-KMS required, SSE-KMS put", R, spec_require_sse_kms(), PUT, &[("s3:x-amz-server-side-encryption", "aws:kms")], N),
        row("spec: SSE-KMS required, GET untouched", R, spec_require_sse_kms(), GET, &[], N),
        row("spec: one key only, that key", R, spec_one_key(), PUT, &[("s3:x-amz-server-side-encryption", "aws:kms"), ("s3:x-amz-server-side-encryption-aws-kms-key-id", KEY)], N),
        row("spec: one key only, another key", R, spec_one_key(), PUT, &[("s3:x-amz-server-side-encryption", "aws:kms"), ("s3:x-amz-server-side-encryption-aws-kms-key-id", OTHER_KEY)], D),
        row("spec: one key only, no key id is denied", R, spec_one_key(), PUT, &[("s3:x-amz-server-side-encryption", "aws:kms")], D),
        row("spec: key policy, right context", R, spec_key_policy(), (ALICE, "kms:Decrypt", KEY), &[("kms:EncryptionContext:Department", "Finance")], A),
        row("spec: key policy, wrong context", R, spec_key_policy(), (ALICE, "kms:Decrypt", KEY), &[("kms:EncryptionContext:Department", "Sales")], N),
        row("spec: key policy, no context", R, spec_key_policy(), (ALICE, "kms:Decrypt", KEY), &[], N),
        row("spec: key policy, Encrypt not granted", R, spec_key_policy(), (ALICE, "kms:Encrypt", KEY), &[("kms:EncryptionContext:Department", "Finance")], N),
        row("spec: key policy, admin is root", R, spec_key_policy(), (ROOT, "kms:PutKeyPolicy", KEY), &[], A),
        row("spec: key policy, root cannot decrypt", R, spec_key_policy(), (ROOT, "kms:Decrypt", KEY), &[("kms:EncryptionContext:Department", "Finance")], N),
    ];
    // The identity kind ignores the request's principal entirely.
    v.push(row(
        "identity ignores caller",
        I,
        allow(r#""s3:GetObject""#, r#""*""#),
        (BOB, "s3:GetObject", OBJECT),
        &[],
        A,
    ));
    v
}

// The three examples of spec/policy.md, "Examples" (kept identical to the spec).
fn spec_require_sse_kms() -> String {
    r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "DenyUnlessSseKms",
      "Effect": "Deny",
      "Principal": "*",
      "Action": "s3:PutObject",
      "Resource": "arn:aws:s3:::photos/*",
      "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}
    }
  ]
}"#
    .to_owned()
}

fn spec_one_key() -> String {
    r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "DenyOtherKeys",
      "Effect": "Deny",
      "Principal": "*",
      "Action": "s3:PutObject",
      "Resource": "arn:aws:s3:::photos/*",
      "Condition": {
        "StringNotEquals": {
          "s3:x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        }
      }
    }
  ]
}"#
    .to_owned()
}

fn spec_key_policy() -> String {
    r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "KeyAdministration",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
      "Action": ["kms:Describe*", "kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:EnableKeyRotation"],
      "Resource": "*"
    },
    {
      "Sid": "FinanceDecryptOnly",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::000000000000:user/alice"},
      "Action": "kms:Decrypt",
      "Resource": "*",
      "Condition": {"StringEquals": {"kms:EncryptionContext:Department": "Finance"}}
    }
  ]
}"#
    .to_owned()
}

#[test]
fn decision_table() {
    let rows = rows();
    assert!(rows.len() >= 60, "only {} rows", rows.len());
    let mut failures = Vec::new();
    for r in &rows {
        let policy = match Policy::parse(&r.policy, r.kind) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{}: does not parse: {e}\n  {}", r.name, r.policy));
                continue;
            }
        };
        assert_eq!(policy.source(), r.policy);
        let mut context = Context::new();
        for (k, v) in &r.context {
            context.insert(k, *v);
        }
        let request = Request {
            principal: r.principal,
            action: r.action,
            resource: r.resource,
            context: &context,
        };
        let got = policy.evaluate(&request);
        if got != r.want {
            failures.push(format!(
                "{}: got {got:?}, want {:?}\n  policy {}",
                r.name, r.want, r.policy
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// Every decision is reachable in the table (a table of only Allow rows would prove little).
#[test]
fn table_covers_every_decision() {
    let rows = rows();
    for d in [A, D, N] {
        assert!(rows.iter().filter(|r| r.want == d).count() >= 5, "{d:?}");
    }
}

#[test]
fn combine_table() {
    let cases: &[(&[Decision], Decision)] = &[
        (&[], N),
        (&[N], N),
        (&[N, N], N),
        (&[A], A),
        (&[N, A], A),
        (&[A, N, A], A),
        (&[D], D),
        (&[A, D], D),
        (&[D, A], D),
        (&[N, D, N], D),
        (&[A, A, N, D], D),
    ];
    for (input, want) in cases {
        assert_eq!(combine(input.iter().copied()), *want, "combine({input:?})");
    }
}

/// Identity policy allows, bucket policy denies: the combination denies; neither says
/// anything: not applicable.
#[test]
fn combine_identity_and_resource_policies() {
    let identity = Policy::parse(&allow(r#""s3:*""#, r#""*""#), I).unwrap();
    let bucket = Policy::parse(&spec_require_sse_kms(), R).unwrap();
    let context = Context::new();
    let put = Request {
        principal: ALICE,
        action: "s3:PutObject",
        resource: OBJECT,
        context: &context,
    };
    assert_eq!(combine([identity.evaluate(&put), bucket.evaluate(&put)]), D);
    let get = Request {
        action: "s3:GetObject",
        ..put
    };
    assert_eq!(combine([identity.evaluate(&get), bucket.evaluate(&get)]), A);
    let delete_elsewhere = Request {
        action: "kms:Decrypt",
        resource: KEY,
        ..put
    };
    assert_eq!(bucket.evaluate(&delete_elsewhere), N);
}

#[test]
fn context_keys_case_insensitive_and_multi_valued() {
    let mut c = Context::new();
    assert_eq!(c.get("kms:EncryptionContextKeys"), None);
    c.insert("kms:EncryptionContextKeys", "a");
    c.insert("KMS:encryptioncontextkeys", String::from("B"));
    assert_eq!(
        c.get("kms:encryptionCONTEXTkeys"),
        Some(&["a".to_owned(), "B".to_owned()][..])
    );
    assert_eq!(c.get("kms:EncryptionContext"), None);
}

/// The JSON examples of spec/policy.md §9 are exactly the policies tested above.
#[test]
fn spec_examples_are_the_tested_policies() {
    let spec = include_str!("../../../spec/policy.md");
    let blocks: Vec<&str> = spec
        .split("```json\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap().trim())
        .collect();
    assert_eq!(
        blocks,
        [spec_require_sse_kms(), spec_one_key(), spec_key_policy()]
    );
}
