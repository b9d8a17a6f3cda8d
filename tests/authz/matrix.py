#!/usr/bin/env python3
"""Authorization matrix against the running `coffer server` (issue 5, "It must show").

Identities × S3, admin and KMS actions × resources: every row states the expected outcome
(allow or the exact error code) and is checked against the real server with boto3 and the
`coffer admin` CLI. Identities are created through the admin API at the start.

Identities
  root   the root identity (administers; owns root-data)
  alice  user; policy: s3:* on alice-* buckets, kms:CreateKey; creates alice-data, alice-secure, her KMS key
  bob    user; policy: s3:* on bob-* buckets, kms:CreateKey; alice's bucket policy lets him read shared/*
  svc    service account; policy: s3:GetObject on alice-data/reports/* only
  carol  user without any policy (default deny)
  dave   user, disabled after creation

Usage: python3 tests/authz/matrix.py --coffer path/to/coffer   (tests/authz/run.sh wraps it)
The last line is `authz: N rows, A allowed, D denied, M mismatches`; exit status 1 on any
mismatch.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "s3"))
from compat import ACCESS_KEY, SECRET_KEY, Server  # noqa: E402

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

ALLOW = "allow"
# Distinctive values that must never appear in the audit trail.
BODY_MARK = b"object-body-4d2e8a61"
PLAINTEXT_MARK = b"kms-plaintext-7f3a9c05"
CONTEXT_MARK = "context-value-93b1e77d"


class Matrix:
    def __init__(self):
        self.rows = []  # (who, action, resource, expected, got)

    def row(self, who, action, resource, expected, fn):
        try:
            fn()
            got = ALLOW
        except ClientError as e:
            got = e.response.get("Error", {}).get("Code", "?")
        except AdminError as e:
            got = e.code
        except Exception as e:  # noqa: BLE001 - any other failure is a mismatch, shown
            got = f"exception {type(e).__name__}: {e}"
        self.rows.append((who, action, resource, expected, got))
        mark = "ok " if got == expected else "MISMATCH"
        print(f"{mark} {who:6} {action:34} {resource:44} expected {expected:22} got {got}")

    def summary(self):
        bad = [r for r in self.rows if r[3] != r[4]]
        allowed = sum(1 for r in self.rows if r[3] == ALLOW)
        print(
            f"authz: {len(self.rows)} rows, {allowed} allowed, {len(self.rows) - allowed} denied, "
            f"{len(bad)} mismatches"
        )
        return not bad


class AdminError(Exception):
    def __init__(self, code, msg):
        super().__init__(f"{code}: {msg}")
        self.code = code


class Env:
    def __init__(self, coffer, server):
        self.coffer = coffer
        self.server = server
        self.keys = {"root": (ACCESS_KEY, SECRET_KEY)}
        self.old_secrets = []

    def admin(self, *args, who="root", stdin=None):
        ak, sk = self.keys[who]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COFFER_"))}
        env.update(
            AWS_ACCESS_KEY_ID=ak,
            AWS_SECRET_ACCESS_KEY=sk,
            AWS_ENDPOINT_URL=self.server.endpoint,
            AWS_CA_BUNDLE=self.server.ca,
        )
        p = subprocess.run(
            [self.coffer, "admin", *args], env=env, input=stdin, capture_output=True, text=True
        )
        if p.returncode != 0:
            # "coffer: error: Code (HTTP n): message"
            err = p.stderr.strip()
            code = err.split("error: ", 1)[-1].split(" ", 1)[0]
            raise AdminError(code, err)
        return json.loads(p.stdout) if p.stdout.strip() else {}

    def s3(self, who):
        ak, sk = self.keys[who]
        return self.server.client(ak, sk)

    def kms(self, who):
        ak, sk = self.keys[who]
        return boto3.client(
            "kms",
            endpoint_url=self.server.endpoint,
            aws_access_key_id=ak,
            aws_secret_access_key=sk,
            region_name="us-east-1",
            verify=self.server.ca,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )

    def new_user(self, name, policy=None, service=False):
        self.admin("user", "create", name, *(["--service"] if service else []))
        k = self.admin("key", "create", name)["AccessKey"]
        self.keys[name] = (k["AccessKeyId"], k["SecretAccessKey"])
        if policy is not None:
            self.admin("policy", "put", name, "main", "-", stdin=json.dumps(policy))


def allow_s3(prefix):
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{prefix}", f"arn:aws:s3:::{prefix}/*"],
            },
            {
                "Effect": "Allow",
                "Action": ["kms:CreateKey", "kms:ListKeys", "kms:ListAliases"],
                "Resource": "*",
            },
        ],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coffer", required=True)
    args = ap.parse_args()
    m = Matrix()
    root = tempfile.mkdtemp(prefix="coffer-authz-")
    server = Server(args.coffer, root)
    env = Env(args.coffer, server)
    try:
        run(m, env)
        version_rows(m, env)
    except Exception:  # noqa: BLE001 - setup failure: report and fail
        traceback.print_exc()
        m.rows.append(("setup", "-", "-", "complete", "failed"))
    finally:
        server.check_stop()
    audit_rows(m, env, Path(root) / "data")
    ok = m.summary()
    if ok:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"data directory kept for inspection: {root}")
    sys.exit(0 if ok else 1)


def audit_rows(m, env, data):
    """The trail of the whole run: intact, and free of secrets, plaintext and context values."""
    files = sorted((data / "audit").glob("*"))

    def clean():
        blob = b"".join(f.read_bytes() for f in files if f.is_file())
        assert blob.count(b'"phase":"response"') > 50, "too few response records"
        needles = [secret.encode() for _, secret in env.keys.values()] + list(env.old_secrets)
        needles += [BODY_MARK, PLAINTEXT_MARK, CONTEXT_MARK.encode()]
        for n in needles:
            assert n not in blob, f"audit trail contains {n[:6]!r}…"

    m.row("-", "audit: no secret/plaintext/context value", "data/audit", ALLOW, clean)

    def verify():
        p = subprocess.run(
            [env.coffer, "audit", "verify", "--data-dir", str(data)],
            capture_output=True, text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COFFER_"))},
        )
        assert p.returncode == 0, p.stderr

    m.row("-", "audit: coffer audit verify", "data/audit", ALLOW, verify)

    def denials_recorded():
        p = subprocess.run(
            [env.coffer, "audit", "query", "--data-dir", str(data), "--identity", "arn:aws:iam::000000000000:user/bob"],
            capture_output=True, text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COFFER_"))},
        )
        assert p.returncode == 0, p.stderr
        recs = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
        denied = [r for r in recs if r["phase"] == "response" and r["error_code"] in ("AccessDenied", "AccessDeniedException")]
        # every bob row expected to be denied above is in the trail
        expected = sum(1 for r in m.rows if r[0] == "bob" and r[3] in ("AccessDenied", "AccessDeniedException"))
        assert len(denied) >= expected, (len(denied), expected)

    m.row("-", "audit: every denial of bob recorded", "data/audit", ALLOW, denials_recorded)


def run(m, env):
    env.new_user("alice", allow_s3("alice-*"))
    env.new_user("bob", allow_s3("bob-*"))
    env.new_user(
        "svc",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::alice-data/reports/*",
                }
            ],
        },
        service=True,
    )
    env.new_user("carol")
    env.new_user("dave", allow_s3("*"))
    env.admin("user", "disable", "dave")

    root, alice, bob, svc, carol, dave = (env.s3(w) for w in ["root", "alice", "bob", "svc", "carol", "dave"])
    root.create_bucket(Bucket="root-data")
    root.put_object(Bucket="root-data", Key="r", Body=b"root")
    alice.create_bucket(Bucket="alice-data")
    for k in ["shared/a", "private/b", "reports/q1"]:
        alice.put_object(Bucket="alice-data", Key=k, Body=k.encode())
    alice.put_bucket_policy(
        Bucket="alice-data",
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::000000000000:user/bob"},
                        "Action": "s3:GetObject",
                        "Resource": "arn:aws:s3:::alice-data/shared/*",
                    }
                ],
            }
        ),
    )
    alice.create_bucket(Bucket="alice-secure")
    alice.put_bucket_policy(
        Bucket="alice-secure",
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "RequireSseKms",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:PutObject",
                        "Resource": "arn:aws:s3:::alice-secure/*",
                        "Condition": {
                            "StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}
                        },
                    }
                ],
            }
        ),
    )
    bob.create_bucket(Bucket="bob-data")
    bob.put_object(Bucket="bob-data", Key="b", Body=b"bob")

    # ---- S3: own resources ----
    m.row("alice", "s3:PutObject", "alice-data/new", ALLOW, lambda: alice.put_object(Bucket="alice-data", Key="new", Body=BODY_MARK))
    m.row("alice", "s3:GetObject", "alice-data/private/b", ALLOW, lambda: alice.get_object(Bucket="alice-data", Key="private/b"))
    m.row("alice", "s3:ListBucket", "alice-data", ALLOW, lambda: alice.list_objects_v2(Bucket="alice-data"))
    m.row("alice", "s3:DeleteObject", "alice-data/new", ALLOW, lambda: alice.delete_object(Bucket="alice-data", Key="new"))
    m.row("alice", "s3:CreateBucket", "alice-more", ALLOW, lambda: alice.create_bucket(Bucket="alice-more"))
    m.row("bob", "s3:GetObject", "bob-data/b", ALLOW, lambda: bob.get_object(Bucket="bob-data", Key="b"))
    m.row("root", "s3:GetObject", "alice-data/private/b", ALLOW, lambda: root.get_object(Bucket="alice-data", Key="private/b"))
    m.row("root", "s3:ListBucket", "bob-data", ALLOW, lambda: root.list_objects_v2(Bucket="bob-data"))

    # ---- S3: another identity's bucket ----
    m.row("alice", "s3:GetObject", "bob-data/b", "AccessDenied", lambda: alice.get_object(Bucket="bob-data", Key="b"))
    m.row("alice", "s3:PutObject", "bob-data/x", "AccessDenied", lambda: alice.put_object(Bucket="bob-data", Key="x", Body=b"x"))
    m.row("alice", "s3:ListBucket", "bob-data", "AccessDenied", lambda: alice.list_objects_v2(Bucket="bob-data"))
    m.row("alice", "s3:DeleteObject", "bob-data/b", "AccessDenied", lambda: alice.delete_object(Bucket="bob-data", Key="b"))
    m.row("alice", "s3:GetObject", "root-data/r", "AccessDenied", lambda: alice.get_object(Bucket="root-data", Key="r"))
    m.row("alice", "s3:CreateBucket", "other-new", "AccessDenied", lambda: alice.create_bucket(Bucket="other-new"))
    m.row("alice", "s3:CreateBucket", "bob-data (exists)", "AccessDenied", lambda: alice.create_bucket(Bucket="bob-data"))
    m.row("bob", "s3:CreateBucket", "bob-data (own)", "BucketAlreadyOwnedByYou", lambda: bob.create_bucket(Bucket="bob-data"))
    m.row("bob", "s3:DeleteBucket", "alice-data", "AccessDenied", lambda: bob.delete_bucket(Bucket="alice-data"))
    m.row("bob", "s3:PutBucketPolicy", "alice-data", "AccessDenied", lambda: bob.put_bucket_policy(Bucket="alice-data", Policy="{}"))
    m.row("bob", "s3:GetBucketPolicy", "alice-data", "AccessDenied", lambda: bob.get_bucket_policy(Bucket="alice-data"))

    def copy_from_bob():
        alice.copy_object(Bucket="alice-data", Key="stolen", CopySource={"Bucket": "bob-data", "Key": "b"})

    m.row("alice", "s3:CopyObject (source)", "bob-data/b -> alice-data", "AccessDenied", copy_from_bob)

    def delete_many():
        r = alice.delete_objects(Bucket="bob-data", Delete={"Objects": [{"Key": "b"}]})
        errs = [e["Code"] for e in r.get("Errors", [])]
        if errs:
            raise ClientError({"Error": {"Code": errs[0]}}, "DeleteObjects")

    m.row("alice", "s3:DeleteObject (DeleteObjects)", "bob-data/b", "AccessDenied", delete_many)

    # ---- S3: bucket policy grants and conditions ----
    m.row("bob", "s3:GetObject", "alice-data/shared/a", ALLOW, lambda: bob.get_object(Bucket="alice-data", Key="shared/a"))
    m.row("bob", "s3:GetObject", "alice-data/private/b", "AccessDenied", lambda: bob.get_object(Bucket="alice-data", Key="private/b"))
    m.row("bob", "s3:PutObject", "alice-data/shared/z", "AccessDenied", lambda: bob.put_object(Bucket="alice-data", Key="shared/z", Body=b"z"))
    m.row("alice", "s3:PutObject (no SSE header)", "alice-secure/x", "AccessDenied", lambda: alice.put_object(Bucket="alice-secure", Key="x", Body=b"x"))
    m.row("alice", "s3:PutObject (SSE-S3)", "alice-secure/x", "AccessDenied", lambda: alice.put_object(Bucket="alice-secure", Key="x", Body=b"x", ServerSideEncryption="AES256"))
    m.row("root", "s3:PutObject (no SSE header)", "alice-secure/x", "AccessDenied", lambda: root.put_object(Bucket="alice-secure", Key="x", Body=b"x"))
    m.row("alice", "s3:PutObject (SSE-KMS, aws/s3)", "alice-secure/x", ALLOW, lambda: alice.put_object(Bucket="alice-secure", Key="x", Body=b"x", ServerSideEncryption="aws:kms"))

    # ---- service account ----
    m.row("svc", "s3:GetObject", "alice-data/reports/q1", ALLOW, lambda: svc.get_object(Bucket="alice-data", Key="reports/q1"))
    m.row("svc", "s3:GetObject", "alice-data/shared/a", "AccessDenied", lambda: svc.get_object(Bucket="alice-data", Key="shared/a"))
    m.row("svc", "s3:ListBucket", "alice-data", "AccessDenied", lambda: svc.list_objects_v2(Bucket="alice-data"))
    m.row("svc", "s3:PutObject", "alice-data/reports/q2", "AccessDenied", lambda: svc.put_object(Bucket="alice-data", Key="reports/q2", Body=b"q"))

    # ---- no policy, disabled ----
    m.row("carol", "s3:GetObject", "alice-data/shared/a", "AccessDenied", lambda: carol.get_object(Bucket="alice-data", Key="shared/a"))
    m.row("carol", "s3:CreateBucket", "carol-data", "AccessDenied", lambda: carol.create_bucket(Bucket="carol-data"))

    def carol_lists_nothing():
        names = [b["Name"] for b in carol.list_buckets().get("Buckets", [])]
        assert names == [], names

    m.row("carol", "s3:ListAllMyBuckets (empty)", "*", ALLOW, carol_lists_nothing)

    def alice_lists_hers():
        names = sorted(b["Name"] for b in alice.list_buckets().get("Buckets", []))
        assert names == ["alice-data", "alice-more", "alice-secure"], names

    m.row("alice", "s3:ListAllMyBuckets (own only)", "*", ALLOW, alice_lists_hers)
    m.row("dave", "s3:ListBucket (disabled)", "alice-data", "InvalidAccessKeyId", lambda: dave.list_objects_v2(Bucket="alice-data"))

    # ---- admin API ----
    m.row("alice", "admin:ListUsers", "*", "AccessDenied", lambda: env.admin("user", "list", who="alice"))
    m.row("alice", "admin:CreateAccessKey", "user/bob", "AccessDenied", lambda: env.admin("key", "create", "bob", who="alice"))
    m.row("bob", "admin:PutUserPolicy", "user/bob", "AccessDenied", lambda: env.admin("policy", "put", "bob", "x", "-", who="bob", stdin=json.dumps(allow_s3("*"))))
    m.row("root", "admin:ListUsers", "*", ALLOW, lambda: env.admin("user", "list"))
    m.row("root", "admin:PutUserPolicy (malformed)", "user/carol", "MalformedPolicyDocument", lambda: env.admin("policy", "put", "carol", "x", "-", stdin='{"Statement": [{"Effect": "Allow"}]}'))

    # ---- credential rotation ----
    old = env.keys["bob"]
    env.old_secrets.append(old[1].encode())
    new = env.admin("key", "rotate", "bob", old[0])["AccessKey"]
    env.keys["bob"] = (new["AccessKeyId"], new["SecretAccessKey"])
    m.row("bob", "s3:GetObject (old key)", "bob-data/b", "InvalidAccessKeyId", lambda: bob.get_object(Bucket="bob-data", Key="b"))
    m.row("bob", "s3:GetObject (rotated key)", "bob-data/b", ALLOW, lambda: env.s3("bob").get_object(Bucket="bob-data", Key="b"))

    kms_rows(m, env)


def version_rows(m, env):
    """Issue 14: version permissions and the GOVERNANCE bypass, which needs its own
    permission (s3:BypassGovernanceRetention) besides the header; root cannot remove a
    COMPLIANCE version at all."""
    import datetime
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    actions = ["s3:CreateBucket", "s3:PutObject", "s3:GetObject", "s3:GetObjectVersion",
               "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention",
               "s3:GetObjectRetention", "s3:ListBucketVersions"]
    env.new_user("gina", {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions,
                       "Resource": ["arn:aws:s3:::gina-*", "arn:aws:s3:::gina-*/*"]}],
    })
    root, alice, gina, svc = (env.s3(w) for w in ["root", "alice", "gina", "svc"])
    gina.create_bucket(Bucket="gina-worm", ObjectLockEnabledForBucket=True)
    alice.create_bucket(Bucket="alice-worm", ObjectLockEnabledForBucket=True)

    def governed(c, bucket):
        return c.put_object(Bucket=bucket, Key="g", Body=b"g", ObjectLockMode="GOVERNANCE",
                            ObjectLockRetainUntilDate=soon)["VersionId"]

    gv, av = governed(gina, "gina-worm"), governed(alice, "alice-worm")
    cv = root.put_object(Bucket="gina-worm", Key="c", Body=b"c", ObjectLockMode="COMPLIANCE",
                         ObjectLockRetainUntilDate=soon)["VersionId"]
    plain = gina.put_object(Bucket="gina-worm", Key="p", Body=b"p")["VersionId"]
    m.row("gina", "s3:DeleteObjectVersion (bypass, no perm)", "gina-worm/g GOVERNANCE", "AccessDenied",
          lambda: gina.delete_object(Bucket="gina-worm", Key="g", VersionId=gv, BypassGovernanceRetention=True))
    m.row("gina", "s3:PutObjectRetention (shorten, no perm)", "gina-worm/g GOVERNANCE", "AccessDenied",
          lambda: gina.put_object_retention(Bucket="gina-worm", Key="g", VersionId=gv,
                                            BypassGovernanceRetention=True, Retention={}))
    m.row("alice", "s3:DeleteObjectVersion (bypass, s3:*)", "alice-worm/g GOVERNANCE", ALLOW,
          lambda: alice.delete_object(Bucket="alice-worm", Key="g", VersionId=av, BypassGovernanceRetention=True))
    m.row("root", "s3:DeleteObjectVersion (bypass)", "gina-worm/g GOVERNANCE", ALLOW,
          lambda: root.delete_object(Bucket="gina-worm", Key="g", VersionId=gv, BypassGovernanceRetention=True))
    m.row("root", "s3:DeleteObjectVersion (bypass)", "gina-worm/c COMPLIANCE", "AccessDenied",
          lambda: root.delete_object(Bucket="gina-worm", Key="c", VersionId=cv, BypassGovernanceRetention=True))
    m.row("gina", "s3:DeleteObjectVersion", "gina-worm/p (unlocked)", ALLOW,
          lambda: gina.delete_object(Bucket="gina-worm", Key="p", VersionId=plain))
    m.row("gina", "s3:GetObjectVersion", "gina-worm/c", ALLOW,
          lambda: gina.get_object(Bucket="gina-worm", Key="c", VersionId=cv))
    m.row("alice", "s3:GetObjectVersion", "gina-worm/c", "AccessDenied",
          lambda: alice.get_object(Bucket="gina-worm", Key="c", VersionId=cv))
    # svc may s3:GetObject alice-data/reports/*, not s3:GetObjectVersion.
    m.row("svc", "s3:GetObjectVersion (has GetObject only)", "alice-data/reports/q1", "AccessDenied",
          lambda: svc.get_object(Bucket="alice-data", Key="reports/q1", VersionId="null"))
    m.row("svc", "s3:GetObject", "alice-data/reports/q1", ALLOW,
          lambda: svc.get_object(Bucket="alice-data", Key="reports/q1"))

    def owners_are_distinct():
        mine, roots = alice.list_buckets()["Owner"], root.list_buckets()["Owner"]
        assert mine["ID"] != roots["ID"] and mine["DisplayName"] == "alice", (mine, roots)
        acl = alice.get_bucket_acl(Bucket="alice-data")
        assert acl["Owner"]["ID"] == mine["ID"], acl
        assert root.get_bucket_acl(Bucket="root-data")["Owner"]["ID"] == roots["ID"]
    m.row("alice", "s3:GetBucketAcl (owner is alice, not root)", "alice-data", ALLOW, owners_are_distinct)
    m.row("bob", "s3:GetBucketAcl", "alice-data", "AccessDenied",
          lambda: env.s3("bob").get_bucket_acl(Bucket="alice-data"))

    # Condition keys: s3:ExistingObjectTag, s3:RequestObjectTag, s3:x-amz-copy-source.
    root.create_bucket(Bucket="tagged-data")
    root.put_object(Bucket="tagged-data", Key="pub", Body=b"p", Tagging="class=public")
    root.put_object(Bucket="tagged-data", Key="priv", Body=b"s", Tagging="class=secret")
    root.put_object(Bucket="tagged-data", Key="quarantine/x", Body=b"q")
    root.put_bucket_policy(Bucket="tagged-data", Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
                       "Resource": "arn:aws:s3:::tagged-data/*",
                       "Condition": {"StringLike": {"s3:x-amz-copy-source": "tagged-data/quarantine/*"}}}]}))
    env.new_user("hank", {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::tagged-data/*",
             "Condition": {"StringEquals": {"s3:ExistingObjectTag/class": "public"}}},
            {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::tagged-data/*",
             "Condition": {"StringEquals": {"s3:RequestObjectTag/team": "hank"}}},
        ],
    })
    hank = env.s3("hank")
    m.row("hank", "s3:GetObject (ExistingObjectTag matches)", "tagged-data/pub", ALLOW,
          lambda: hank.get_object(Bucket="tagged-data", Key="pub"))
    m.row("hank", "s3:GetObject (ExistingObjectTag differs)", "tagged-data/priv", "AccessDenied",
          lambda: hank.get_object(Bucket="tagged-data", Key="priv"))
    m.row("hank", "s3:PutObject (RequestObjectTag matches)", "tagged-data/h1", ALLOW,
          lambda: hank.put_object(Bucket="tagged-data", Key="h1", Body=b"h", Tagging="team=hank"))
    m.row("hank", "s3:PutObject (RequestObjectTag differs)", "tagged-data/h2", "AccessDenied",
          lambda: hank.put_object(Bucket="tagged-data", Key="h2", Body=b"h", Tagging="team=other"))
    m.row("hank", "s3:PutObject (no tags)", "tagged-data/h3", "AccessDenied",
          lambda: hank.put_object(Bucket="tagged-data", Key="h3", Body=b"h"))
    m.row("root", "s3:PutObject (copy-source denied)", "tagged-data/quarantine/x", "AccessDenied",
          lambda: root.copy_object(Bucket="tagged-data", Key="copy1",
                                   CopySource={"Bucket": "tagged-data", "Key": "quarantine/x"}))
    m.row("root", "s3:PutObject (copy-source allowed)", "tagged-data/pub", ALLOW,
          lambda: root.copy_object(Bucket="tagged-data", Key="copy2",
                                   CopySource={"Bucket": "tagged-data", "Key": "pub"}))


def kms_rows(m, env):
    """Key ownership through the KMS API and through SSE-KMS (needs the KMS API)."""
    ka = env.kms("alice")
    key = ka.create_key(Description="alice's key")["KeyMetadata"]["Arn"]
    alice, bob = env.s3("alice"), env.s3("bob")
    kb, kr = env.kms("bob"), env.kms("root")
    m.row("alice", "kms:Encrypt", "alice's key", ALLOW, lambda: ka.encrypt(KeyId=key, Plaintext=PLAINTEXT_MARK, EncryptionContext={"case": CONTEXT_MARK}))
    m.row("bob", "kms:Encrypt", "alice's key", "AccessDeniedException", lambda: kb.encrypt(KeyId=key, Plaintext=b"x"))
    m.row("root", "kms:Encrypt", "alice's key", "AccessDeniedException", lambda: kr.encrypt(KeyId=key, Plaintext=b"x"))
    m.row("root", "kms:DescribeKey", "alice's key", "AccessDeniedException", lambda: kr.describe_key(KeyId=key))
    m.row("bob", "kms:DisableKey", "alice's key", "AccessDeniedException", lambda: kb.disable_key(KeyId=key))
    blob = ka.encrypt(KeyId=key, Plaintext=b"secret", EncryptionContext={"dept": "x"})["CiphertextBlob"]
    m.row("bob", "kms:Decrypt", "alice's ciphertext", "AccessDeniedException", lambda: kb.decrypt(CiphertextBlob=blob, EncryptionContext={"dept": "x"}))
    m.row("alice", "s3:PutObject SSE-KMS", "alice-data, alice's key", ALLOW, lambda: alice.put_object(Bucket="alice-data", Key="kms", Body=b"k", ServerSideEncryption="aws:kms", SSEKMSKeyId=key))
    m.row("bob", "s3:PutObject SSE-KMS", "bob-data, alice's key", "AccessDenied", lambda: bob.put_object(Bucket="bob-data", Key="kms", Body=b"k", ServerSideEncryption="aws:kms", SSEKMSKeyId=key))
    # bob may read alice-data/shared/*, but not an SSE-KMS object there under alice's key
    alice.put_object(Bucket="alice-data", Key="shared/kms", Body=b"k", ServerSideEncryption="aws:kms", SSEKMSKeyId=key)
    m.row("bob", "s3:GetObject SSE-KMS", "alice-data/shared/kms", "AccessDenied", lambda: bob.get_object(Bucket="alice-data", Key="shared/kms"))
    m.row("root", "s3:GetObject SSE-KMS", "alice-data/shared/kms", "AccessDenied", lambda: env.s3("root").get_object(Bucket="alice-data", Key="shared/kms"))

    # grants
    g = ka.create_grant(
        KeyId=key,
        GranteePrincipal="arn:aws:iam::000000000000:user/bob",
        Operations=["Encrypt", "Decrypt", "GenerateDataKey"],
        Constraints={"EncryptionContextSubset": {"dept": "x"}},
    )
    m.row("bob", "kms:Decrypt (grant, ctx matches)", "alice's key", ALLOW, lambda: kb.decrypt(CiphertextBlob=blob, EncryptionContext={"dept": "x"}))
    m.row("bob", "kms:Encrypt (grant, ctx differs)", "alice's key", "AccessDeniedException", lambda: kb.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"dept": "y"}))
    m.row("bob", "kms:Encrypt (grant, no ctx)", "alice's key", "AccessDeniedException", lambda: kb.encrypt(KeyId=key, Plaintext=b"x"))
    m.row("bob", "kms:ScheduleKeyDeletion (grant lacks op)", "alice's key", "AccessDeniedException", lambda: kb.schedule_key_deletion(KeyId=key, PendingWindowInDays=7))
    ka.revoke_grant(KeyId=key, GrantId=g["GrantId"])
    m.row("bob", "kms:Decrypt (revoked grant)", "alice's key", "AccessDeniedException", lambda: kb.decrypt(CiphertextBlob=blob, EncryptionContext={"dept": "x"}))

    # key policy naming bob
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/alice"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/bob"}, "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*"},
        ],
    }
    ka.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(policy))
    m.row("bob", "kms:Decrypt (key policy)", "alice's key", ALLOW, lambda: kb.decrypt(CiphertextBlob=blob, EncryptionContext={"dept": "x"}))
    m.row("bob", "kms:Encrypt (not in key policy)", "alice's key", "AccessDeniedException", lambda: kb.encrypt(KeyId=key, Plaintext=b"x"))
    m.row("bob", "s3:GetObject SSE-KMS (key policy)", "alice-data/shared/kms", ALLOW, lambda: bob.get_object(Bucket="alice-data", Key="shared/kms"))
    m.row("carol", "kms:CreateKey (no policy)", "*", "AccessDeniedException", lambda: env.kms("carol").create_key())


if __name__ == "__main__":
    main()
