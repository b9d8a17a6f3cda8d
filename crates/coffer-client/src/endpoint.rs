//! Where the object store and the KMS are, and who is calling: builds `aws-sdk-s3` and
//! `aws-sdk-kms` clients that trust a given CA bundle (Coffer's generated CA) besides the
//! system's roots.

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Connection settings shared by the S3 and KMS clients.
pub struct Endpoint {
    /// `https://host:port` of the service; `None` uses AWS's regional endpoints.
    pub url: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    /// PEM bundle of extra CAs to trust (Coffer's `<data-dir>/tls/ca.pem`).
    pub ca_bundle: Option<PathBuf>,
    /// Path-style addressing (`endpoint/bucket/key`): right for Coffer and most self-hosted
    /// stores; virtual-host style is used only when this is false.
    pub path_style: bool,
}

impl Endpoint {
    fn http_client(&self) -> Result<aws_sdk_s3::config::SharedHttpClient> {
        let mut trust = TrustStore::empty().with_native_roots(true);
        if let Some(path) = &self.ca_bundle {
            let pem = std::fs::read(path)
                .map_err(|e| Error::io(format!("cannot read CA bundle {}", path.display()), e))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(Error::Invalid(format!(
                    "CA bundle {} holds no PEM certificate",
                    path.display()
                )));
            }
            trust = trust.with_pem_certificate(pem);
        }
        let context = TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| Error::Invalid(format!("TLS configuration: {e}")))?;
        Ok(aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context)
            .build_https())
    }

    fn credentials(&self) -> Credentials {
        Credentials::new(
            &self.access_key_id,
            self.secret_access_key.as_str(),
            None,
            None,
            "coffer",
        )
    }

    /// An S3 client for this endpoint.
    pub fn s3_client(&self) -> Result<aws_sdk_s3::Client> {
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .force_path_style(self.path_style)
            .credentials_provider(self.credentials())
            .http_client(self.http_client()?)
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .build(),
            );
        if let Some(url) = &self.url {
            config = config.endpoint_url(url);
        }
        Ok(aws_sdk_s3::Client::from_conf(config.build()))
    }

    /// A KMS client for this endpoint (Coffer serves the KMS API on the S3 port).
    pub fn kms_client(&self) -> Result<aws_sdk_kms::Client> {
        let mut config = aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .region(aws_sdk_kms::config::Region::new(self.region.clone()))
            .credentials_provider(self.credentials())
            .http_client(self.http_client()?)
            .timeout_config(
                aws_sdk_kms::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .build(),
            );
        if let Some(url) = &self.url {
            config = config.endpoint_url(url);
        }
        Ok(aws_sdk_kms::Client::from_conf(config.build()))
    }
}
