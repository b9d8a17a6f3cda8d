//! Bucket CORS: Put/Get/DeleteBucketCors, the preflight `OPTIONS` answer and the CORS
//! headers of actual requests, evaluated as S3 does (the first rule whose origin, method and
//! requested headers all match).

use serde::{Deserialize, Serialize};

use super::*;

const MAX_RULES: usize = 100;
const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];

/// One CORS rule as stored ([`BucketConfig::Cors`], a JSON list of these).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CorsRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i32>,
}

/// `pattern` with at most one `*` matching any run of characters; case-insensitive when
/// `fold` (header names), exact otherwise (origins are compared as S3 does, byte for byte).
fn wildcard(pattern: &str, value: &str, fold: bool) -> bool {
    let (p, v) = if fold {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (pattern.to_owned(), value.to_owned())
    };
    match p.split_once('*') {
        None => p == v,
        Some((pre, post)) => {
            v.len() >= pre.len() + post.len() && v.starts_with(pre) && v.ends_with(post)
        }
    }
}

impl CorsRule {
    fn allows(&self, origin: &str, method: &str, headers: &[String]) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| wildcard(o, origin, false))
            && self.allowed_methods.iter().any(|m| m == method)
            && headers
                .iter()
                .all(|h| self.allowed_headers.iter().any(|a| wildcard(a, h, true)))
    }
}

/// The rule that allows this (origin, method, requested headers), if any.
pub fn find_rule<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    headers: &[String],
) -> Option<&'a CorsRule> {
    rules.iter().find(|r| r.allows(origin, method, headers))
}

/// The CORS response headers a matching rule gives (preflight adds the allowed methods,
/// headers and max age).
pub fn allow_headers(
    rule: &CorsRule,
    origin: &str,
    requested_headers: &[String],
    preflight: bool,
    out: &mut http::HeaderMap,
) {
    let any = rule.allowed_origins.iter().any(|o| o == "*");
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            out.insert(name, v);
        }
    };
    put(
        "access-control-allow-origin",
        if any {
            "*".to_owned()
        } else {
            origin.to_owned()
        },
    );
    if !any {
        put("access-control-allow-credentials", "true".to_owned());
    }
    if !rule.expose_headers.is_empty() {
        put(
            "access-control-expose-headers",
            rule.expose_headers.join(", "),
        );
    }
    if preflight {
        put(
            "access-control-allow-methods",
            rule.allowed_methods.join(", "),
        );
        if !requested_headers.is_empty() {
            put("access-control-allow-headers", requested_headers.join(", "));
        }
        if let Some(age) = rule.max_age_seconds {
            put("access-control-max-age", age.to_string());
        }
    }
    put(
        "vary",
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".to_owned(),
    );
}

/// A bucket's CORS rules (`None`: not configured).
pub async fn cors_rules(meta: &dyn MetaStore, bucket: &str) -> ServerResult<Option<Vec<CorsRule>>> {
    config_json(meta, bucket, BucketConfig::Cors).await
}

/// `Access-Control-Request-Headers`: a comma-separated list.
pub fn requested_headers(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all("access-control-request-headers")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

/// The answer to a preflight `OPTIONS` on `bucket` (path-style; the query, such as a
/// presigned URL's, plays no part: browsers send preflights without credentials).
pub async fn preflight(
    meta: &dyn MetaStore,
    bucket: &str,
    headers: &http::HeaderMap,
) -> http::Response<s3s::Body> {
    let origin = headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let method = headers
        .get("access-control-request-method")
        .and_then(|v| v.to_str().ok());
    let (Some(origin), Some(method)) = (origin, method) else {
        return coffer_outcome::error_response(
            http::StatusCode::BAD_REQUEST,
            "BadRequest",
            "Insufficient information. Origin request header needed.",
        );
    };
    let rules = match cors_rules(meta, bucket).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return coffer_outcome::error_response(
                http::StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: CORS is not enabled for this bucket.",
            )
        }
        Err(ServerError::NoSuchBucket) => {
            return coffer_outcome::error_response(
                http::StatusCode::NOT_FOUND,
                "NoSuchBucket",
                "The specified bucket does not exist",
            )
        }
        Err(e) => {
            tracing::error!("CORS preflight: {e}");
            return coffer_outcome::error_response(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "We encountered an internal error. Please try again.",
            );
        }
    };
    let wanted = requested_headers(headers);
    let Some(rule) = find_rule(&rules, origin, method, &wanted) else {
        return coffer_outcome::error_response(
            http::StatusCode::FORBIDDEN,
            "AccessForbidden",
            "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        );
    };
    let mut resp = http::Response::new(s3s::Body::empty());
    allow_headers(rule, origin, &wanted, true, resp.headers_mut());
    resp
}

fn malformed() -> ServerError {
    ServerError::s3(
        S3ErrorCode::MalformedXML,
        "The XML you provided was not well-formed or did not validate against our published schema",
    )
}

pub(super) async fn put_bucket_cors(
    h: &S3Handlers,
    req: S3Request<PutBucketCorsInput>,
) -> S3Result<S3Response<PutBucketCorsOutput>> {
    let input = req.input;
    let rules = input.cors_configuration.cors_rules;
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(malformed().into());
    }
    let mut stored = Vec::new();
    for r in rules {
        if r.allowed_origins.is_empty() || r.allowed_methods.is_empty() {
            return Err(malformed().into());
        }
        for m in &r.allowed_methods {
            if !METHODS.contains(&m.as_str()) {
                return Err(ServerError::invalid_request(format!(
                    "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
                ))
                .into());
            }
        }
        for o in &r.allowed_origins {
            if o.matches('*').count() > 1 {
                return Err(ServerError::invalid_request(format!(
                    "AllowedOrigin \"{o}\" can not have more than one wildcard."
                ))
                .into());
            }
        }
        for a in r.allowed_headers.iter().flatten() {
            if a.matches('*').count() > 1 {
                return Err(ServerError::invalid_request(format!(
                    "AllowedHeader \"{a}\" can not have more than one wildcard."
                ))
                .into());
            }
        }
        stored.push(CorsRule {
            id: r.id,
            allowed_origins: r.allowed_origins,
            allowed_methods: r.allowed_methods,
            allowed_headers: r.allowed_headers.unwrap_or_default(),
            expose_headers: r.expose_headers.unwrap_or_default(),
            max_age_seconds: r.max_age_seconds,
        });
    }
    s3(set_config_json(&*h.meta, &input.bucket, BucketConfig::Cors, &stored).await)?;
    Ok(S3Response::new(PutBucketCorsOutput::default()))
}

pub(super) async fn get_bucket_cors(
    h: &S3Handlers,
    req: S3Request<GetBucketCorsInput>,
) -> S3Result<S3Response<GetBucketCorsOutput>> {
    let Some(rules) = s3(cors_rules(&*h.meta, &req.input.bucket).await)? else {
        return Err(ServerError::s3(
            S3ErrorCode::NoSuchCORSConfiguration,
            "The CORS configuration does not exist",
        )
        .into());
    };
    let mut out = GetBucketCorsOutput::default();
    out.cors_rules = Some(
        rules
            .into_iter()
            .map(|r| {
                let mut c = CORSRule::default();
                c.id = r.id;
                c.allowed_origins = r.allowed_origins;
                c.allowed_methods = r.allowed_methods;
                c.allowed_headers = (!r.allowed_headers.is_empty()).then_some(r.allowed_headers);
                c.expose_headers = (!r.expose_headers.is_empty()).then_some(r.expose_headers);
                c.max_age_seconds = r.max_age_seconds;
                c
            })
            .collect(),
    );
    Ok(S3Response::new(out))
}

pub(super) async fn delete_bucket_cors(
    h: &S3Handlers,
    req: S3Request<DeleteBucketCorsInput>,
) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
    s3(h.meta
        .set_bucket_config(&req.input.bucket, BucketConfig::Cors, None)
        .await)?;
    Ok(S3Response::new(DeleteBucketCorsOutput::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> CorsRule {
        CorsRule {
            allowed_origins: vec!["https://*.example.com".into()],
            allowed_methods: vec!["GET".into(), "PUT".into()],
            allowed_headers: vec!["x-amz-*".into(), "Content-Type".into()],
            ..CorsRule::default()
        }
    }

    #[test]
    fn rules_match_origin_method_and_headers() {
        let rules = [rule()];
        let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(find_rule(
            &rules,
            "https://app.example.com",
            "PUT",
            &h(&["content-type", "x-amz-date"])
        )
        .is_some());
        assert!(
            find_rule(&rules, "https://example.com", "GET", &[]).is_none(),
            "the wildcard needs its dot"
        );
        assert!(
            find_rule(&rules, "http://app.example.com", "GET", &[]).is_none(),
            "scheme differs"
        );
        assert!(find_rule(&rules, "https://app.example.com", "DELETE", &[]).is_none());
        assert!(find_rule(
            &rules,
            "https://app.example.com",
            "GET",
            &h(&["authorization"])
        )
        .is_none());
        let any = [CorsRule {
            allowed_origins: vec!["*".into()],
            allowed_methods: vec!["GET".into()],
            allowed_headers: vec!["*".into()],
            ..CorsRule::default()
        }];
        let mut out = http::HeaderMap::new();
        let r = find_rule(&any, "https://x.test", "GET", &h(&["anything"])).unwrap();
        allow_headers(r, "https://x.test", &h(&["anything"]), true, &mut out);
        assert_eq!(out["access-control-allow-origin"], "*");
        assert!(!out.contains_key("access-control-allow-credentials"));
        assert_eq!(out["access-control-allow-headers"], "anything");
    }
}
