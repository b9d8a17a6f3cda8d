//! TLS: a local CA and server certificate generated on first start, or the operator's own.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use coffer_outcome::{ServerError, ServerResult};

pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA clients should trust (generated certificates only).
    pub ca: Option<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |e| ServerError::Internal(format!("{}: {e}", path.display()))
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> ServerResult<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

/// Generates, once, a CA and a server certificate for localhost / 127.0.0.1 / ::1 (plus
/// `extra_names`) into `dir`. The CA's private key is discarded after signing: the CA can
/// vouch for this one certificate and nothing else.
pub fn ensure_generated(dir: &Path, extra_names: &[String]) -> ServerResult<TlsFiles> {
    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        ca: Some(dir.join("ca.pem")),
    };
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    fs::create_dir_all(dir).map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    let err = |e: rcgen::Error| ServerError::Internal(format!("certificate generation: {e}"));
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Coffer local CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(extra_names.iter().cloned());
    names.dedup();
    let mut params = rcgen::CertificateParams::new(names).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(err)?;
    drop(ca_key);

    if let Some(ca_path) = &files.ca {
        write_file(ca_path, ca.pem().as_bytes(), 0o644)?;
    }
    write_file(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
    // The chain: server certificate, then the CA.
    write_file(
        &files.cert,
        format!("{}{}", cert.pem(), ca.pem()).as_bytes(),
        0o644,
    )?;
    Ok(files)
}

/// A rustls server configuration (TLS 1.2 and 1.3, aws-lc-rs, ALPN h2 + http/1.1).
pub fn server_config(cert: &Path, key: &Path) -> ServerResult<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServerError::Internal(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Internal(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServerError::Internal(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Internal(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Internal(format!("TLS certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
