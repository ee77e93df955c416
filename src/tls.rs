//! rustls configurations, built once at start-up: the server side for `https_wss_port`
//! and the client side for backends with `server_ssl`.
//!
//! Exactly one crypto provider is compiled in (ring) and it is named explicitly in every
//! builder, so no process-wide default is needed and none can be picked by accident.
//! TLS 1.2 and 1.3 only; the server offers ALPN `h2` then `http/1.1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A TLS file that could not be used, with the `ase.conf` key that named it.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {}: {reason}", file.display())]
pub struct TlsError {
    pub key: &'static str,
    pub file: PathBuf,
    pub reason: String,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 and 1.2; rustls implements nothing older.
static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn versions() -> &'static [&'static rustls::SupportedProtocolVersion] {
    VERSIONS
}

fn load_certs(key: &'static str, file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError {
        key,
        file: file.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| err(format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("invalid PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate found".to_string()));
    }
    Ok(certs)
}

/// The data-port TLS config from a PEM certificate chain and private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs("tls_cert_path", cert)?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError {
        key: "tls_key_path",
        file: key.to_path_buf(),
        reason: format!("cannot read a PEM private key: {e}"),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions())
        .map_err(|e| TlsError {
            key: "tls_cert_path",
            file: cert.to_path_buf(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| TlsError {
            key: "tls_key_path",
            file: key.to_path_buf(),
            reason: format!("does not match the certificate: {e}"),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The backend TLS config: the CA file from `server_ca_cert_path` when set, otherwise the
/// Mozilla roots compiled into the binary.
pub fn upstream_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(file) => {
            for cert in load_certs("server_ca_cert_path", file)? {
                roots.add(cert).map_err(|e| TlsError {
                    key: "server_ca_cert_path",
                    file: file.to_path_buf(),
                    reason: format!("not a usable CA certificate: {e}"),
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // No ALPN here: the HTTPS connector sets it (HTTP/1.1 only) and refuses a preset one.
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions())
        .map_err(|e| TlsError {
            key: "server_ca_cert_path",
            file: ca.map(Path::to_path_buf).unwrap_or_default(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
