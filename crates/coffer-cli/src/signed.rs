//! A small SigV4-signing HTTPS client for Coffer's JSON APIs (admin, and later the KMS API):
//! `POST /` with `X-Amz-Target` and a JSON 1.1 body, over rustls, trusting a given CA bundle.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context as _, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;
use zeroize::Zeroizing;

/// Where the server is and who is calling: flags, else the usual environment variables.
#[derive(clap::Args, Debug, Clone)]
pub struct EndpointArgs {
    /// The server's URL.
    #[arg(
        long,
        env = "AWS_ENDPOINT_URL",
        default_value = "https://127.0.0.1:9443"
    )]
    pub endpoint: String,
    /// PEM file of the CA that signed the server's certificate (the server prints it at
    /// start). Default: `<data-dir>/tls/ca.pem` when present, else the system's roots.
    #[arg(long, env = "AWS_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
    /// Data directory whose generated CA to trust when no --ca-bundle is given.
    #[arg(long, env = "COFFER_DATA_DIR", default_value = "./coffer-data")]
    pub data_dir: PathBuf,
}

pub struct SignedClient {
    endpoint: String,
    host: String,
    access_key: String,
    secret_key: Zeroizing<String>,
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
}

fn root_store(ca: Option<&Path>) -> Result<rustls::RootCertStore> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(path)
                .with_context(|| format!("read CA bundle {}", path.display()))?
            {
                roots
                    .add(cert.with_context(|| format!("parse CA bundle {}", path.display()))?)
                    .with_context(|| format!("CA bundle {}", path.display()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    Ok(roots)
}

impl SignedClient {
    pub fn new(args: &EndpointArgs) -> Result<SignedClient> {
        let access_key = std::env::var("AWS_ACCESS_KEY_ID").map_err(|_| {
            anyhow!(
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the credentials to sign with)"
            )
        })?;
        let secret_key =
            Zeroizing::new(std::env::var("AWS_SECRET_ACCESS_KEY").map_err(|_| {
                anyhow!("set AWS_SECRET_ACCESS_KEY (the secret of AWS_ACCESS_KEY_ID)")
            })?);
        let uri: hyper::Uri = args
            .endpoint
            .parse()
            .with_context(|| format!("--endpoint {}", args.endpoint))?;
        let host = uri
            .authority()
            .ok_or_else(|| anyhow!("--endpoint {} has no host", args.endpoint))?
            .to_string();
        let default_ca = args.data_dir.join("tls").join("ca.pem");
        let ca = match &args.ca_bundle {
            Some(p) => Some(p.clone()),
            None => default_ca.exists().then_some(default_ca),
        };
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS configuration")?
            .with_root_certificates(root_store(ca.as_deref())?)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Ok(SignedClient {
            endpoint: args.endpoint.trim_end_matches('/').to_owned(),
            host,
            access_key,
            secret_key,
            client,
        })
    }

    /// Sends `body` to `X-Amz-Target: target`, signed for `service`; returns the JSON
    /// response, or an error `Code: message` built from the `__type`/`message` error body.
    pub async fn post_json(&self, service: &str, target: &str, body: &Value) -> Result<Value> {
        use aws_sigv4::http_request::{
            sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
        };
        let payload = serde_json::to_vec(body)?;
        let url = format!("{}/", self.endpoint);
        let headers = [
            ("host", self.host.as_str()),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target),
        ];
        let identity = aws_credential_types::Credentials::new(
            &self.access_key,
            self.secret_key.as_str(),
            None,
            None,
            "coffer",
        )
        .into();
        let mut settings = SigningSettings::default();
        if service == "s3" {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name(service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| anyhow!("signing parameters: {e}"))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            &url,
            headers.iter().copied(),
            SignableBody::Bytes(&payload),
        )
        .map_err(|e| anyhow!("sign request: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| anyhow!("sign request: {e}"))?
            .into_parts();
        let mut req = hyper::Request::builder().method("POST").uri(&url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let mut req = req.body(Full::new(Bytes::from(payload)))?;
        instructions.apply_to_request_http1x(&mut req);
        let resp = self.client.request(req).await.map_err(|e| {
            let mut msg = format!("cannot reach {}: {e}", self.endpoint);
            let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            if msg.contains("UnknownIssuer") || msg.contains("certificate") {
                msg.push_str(
                    "\nhint: trust the server's CA with --ca-bundle <data-dir>/tls/ca.pem (the server prints its path at start)",
                );
            }
            anyhow!(msg)
        })?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let v: Option<Value> = if bytes.is_empty() {
            Some(Value::Object(Default::default()))
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        if !status.is_success() {
            let field = |name: &str| {
                v.as_ref()
                    .and_then(|v| v.get(name))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let code = field("__type")
                .or_else(|| xml_field(&bytes, "Code"))
                .unwrap_or_else(|| "Error".to_owned());
            let msg = field("message")
                .or_else(|| xml_field(&bytes, "Message"))
                .unwrap_or_default();
            let hint = match code.as_str() {
                "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "UnrecognizedClientException" => {
                    "\nhint: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (a disabled identity's keys are unknown)"
                }
                _ => "",
            };
            bail!("{code} (HTTP {}): {msg}{hint}", status.as_u16());
        }
        let v = v.ok_or_else(|| anyhow!("the server's response is not JSON"))?;
        Ok(v)
    }
}

/// A field of an S3 XML error (signature failures come from the S3 layer).
fn xml_field(b: &[u8], name: &str) -> Option<String> {
    let s = std::str::from_utf8(b).ok()?;
    let open = format!("<{name}>");
    let start = s.find(&open)? + open.len();
    let end = s[start..].find(&format!("</{name}>"))? + start;
    Some(s[start..end].to_owned())
}
