//! One parser each for the parts of a request Coffer reads itself before s3s does: the query
//! string and the SigV4 `Authorization` header. The audit layer (who is asking, which
//! operation), the front's SigV4 scope checks and the KMS API's verifier all read requests
//! through these, so they cannot disagree about what a request says.

/// A query string, split into `name=value` pairs and percent-decoded. A name or value that
/// is not valid percent-encoded UTF-8 is kept as written, not dropped: a policy condition on
/// `s3:prefix` must see *some* prefix, never none (s3s then refuses the request itself).
#[derive(Clone, Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// The pairs of `query` (the part of the URI after `?`; `None`: no query).
    pub fn parse(query: Option<&str>) -> Query {
        let pairs = query
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (decode_or_keep(k), decode_or_keep(v))
            })
            .collect();
        Query { pairs }
    }

    /// The value of the first pair named exactly `name` (`Some("")` for a bare `name`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// As [`Query::get`], with the name compared ASCII case-insensitively (S3 treats the
    /// `X-Amz-*` presigning parameters so).
    pub fn get_ignore_case(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A pair named exactly `name` is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Percent-decoding as in a form-encoded query (`+` is a space); `None` if an escape is not
/// two hex digits or the result is not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// [`decode`], or `s` as written when it does not decode (a name must never vanish because
/// it is badly encoded: see [`Query`]).
pub fn decode_or_keep(s: &str) -> String {
    decode(s).unwrap_or_else(|| s.to_owned())
}

/// The parts of an `Authorization` header, as written (`<algorithm> <component>, …`);
/// validation is the caller's: the front checks the scope of S3 requests and leaves
/// malformed headers to s3s, the KMS API's verifier ([`crate::sigv4`]) refuses anything
/// incomplete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    /// `AWS4-HMAC-SHA256`, or `AWS` for SigV2.
    pub algorithm: &'a str,
    pub credential: Option<&'a str>,
    pub signed_headers: Option<&'a str>,
    pub signature: Option<&'a str>,
    /// A component other than the three above (or a SigV2 `AKID:signature`).
    pub unknown_component: bool,
}

impl<'a> Authorization<'a> {
    /// `None` when the header has no `<algorithm> <components>` shape at all.
    pub fn parse(value: &'a str) -> Option<Authorization<'a>> {
        let (algorithm, rest) = value.trim().split_once(' ')?;
        let mut auth = Authorization {
            algorithm,
            credential: None,
            signed_headers: None,
            signature: None,
            unknown_component: false,
        };
        for part in rest.split(',') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("Credential=") {
                auth.credential = Some(v);
            } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
                auth.signed_headers = Some(v);
            } else if let Some(v) = part.strip_prefix("Signature=") {
                auth.signature = Some(v);
            } else if !part.is_empty() {
                auth.unknown_component = true;
            }
        }
        Some(auth)
    }
}

/// A SigV4 credential scope, `<access key>/<date>/<region>/<service>/aws4_request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CredentialScope<'a> {
    pub access_key: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub terminator: &'a str,
}

impl<'a> CredentialScope<'a> {
    /// `None` unless `credential` has exactly five `/`-separated parts.
    pub fn parse(credential: &'a str) -> Option<CredentialScope<'a>> {
        let mut it = credential.split('/');
        let scope = CredentialScope {
            access_key: it.next()?,
            date: it.next()?,
            region: it.next()?,
            service: it.next()?,
            terminator: it.next()?,
        };
        it.next().is_none().then_some(scope)
    }
}

/// The access key id a request names (`Authorization: … Credential=AK/…`, or a presigned
/// URL's `X-Amz-Credential=AK/…`), unverified.
pub fn access_key<B>(req: &http::Request<B>, query: &Query) -> Option<String> {
    let credential = match req.headers().get(http::header::AUTHORIZATION) {
        Some(h) => Authorization::parse(h.to_str().ok()?)?.credential?,
        None => query.get("X-Amz-Credential")?,
    };
    credential.split('/').next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let q = Query::parse(Some(
            "list-type=2&prefix=a%2Fb&uploads&X-Amz-Expires=60&bad=%zz",
        ));
        assert_eq!(q.get("list-type"), Some("2"));
        assert_eq!(q.get("prefix"), Some("a/b"));
        assert!(q.has("uploads"));
        assert_eq!(q.get("uploads"), Some(""));
        assert!(!q.has("upload"));
        assert_eq!(q.get("x-amz-expires"), None);
        assert_eq!(q.get_ignore_case("x-amz-expires"), Some("60"));
        assert_eq!(
            q.get("bad"),
            Some("%zz"),
            "an undecodable value is kept as written"
        );
        assert!(!Query::parse(None).has(""));
        assert_eq!(decode("a+b%20c%2B").as_deref(), Some("a b c+"));
        assert_eq!(decode("%"), None);
        assert_eq!(decode("%+f"), None);
        assert_eq!(decode("%ff"), None, "not UTF-8");
    }

    #[test]
    fn authorization_headers() {
        let a = Authorization::parse(
            " AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date,Signature=ab ",
        )
        .unwrap();
        assert_eq!(a.algorithm, "AWS4-HMAC-SHA256");
        assert_eq!(a.credential, Some("AK/20260101/us-east-1/s3/aws4_request"));
        assert_eq!(a.signed_headers, Some("host;x-amz-date"));
        assert_eq!(a.signature, Some("ab"));
        assert!(!a.unknown_component);
        let v2 = Authorization::parse("AWS AKID:c2ln").unwrap();
        assert_eq!((v2.algorithm, v2.credential), ("AWS", None));
        assert!(v2.unknown_component);
        assert_eq!(Authorization::parse("garbage"), None);

        let s = CredentialScope::parse("AK/20260101/us-east-1/s3/aws4_request").unwrap();
        assert_eq!(
            (s.access_key, s.date, s.region, s.service, s.terminator),
            ("AK", "20260101", "us-east-1", "s3", "aws4_request")
        );
        assert_eq!(CredentialScope::parse("AK/20260101/s3/aws4_request"), None);
        assert_eq!(CredentialScope::parse("AK/a/b/c/d/e"), None);
    }

    #[test]
    fn access_keys() {
        let r = http::Request::builder()
            .uri("/b/k")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab",
            )
            .body(())
            .unwrap();
        let q = Query::parse(r.uri().query());
        assert_eq!(access_key(&r, &q).as_deref(), Some("AKID"));
        let r = http::Request::builder()
            .uri("/b/k?X-Amz-Credential=AK2%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=x")
            .body(())
            .unwrap();
        let q = Query::parse(r.uri().query());
        assert_eq!(access_key(&r, &q).as_deref(), Some("AK2"));
        let r = http::Request::builder().uri("/b/k").body(()).unwrap();
        assert_eq!(access_key(&r, &Query::default()), None);
    }
}
