//! TLS termination from PEM files, with rustls (aws-lc-rs, the provider
//! already in the tree for the upstream client; no OpenSSL).
//!
//! For a gateway that no ingress fronts: client keys and Entra tokens should
//! not cross a network in clear text. ALPN offers `h2` then `http/1.1`;
//! TLS 1.2 and 1.3 with rustls' default cipher suites.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// The certificate or key cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file cannot be read or holds nothing usable.
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        problem: String,
    },
    /// rustls refused the pair (for example a key that does not match).
    Rustls(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Pem { path, problem } => write!(f, "{}: {problem}", path.display()),
            TlsError::Rustls(err) => write!(f, "the certificate and key do not work: {err}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Rustls(err) => Some(err),
            TlsError::Pem { .. } => None,
        }
    }
}

fn pem_error(path: &Path, what: &str) -> impl Fn(rustls_pki_types::pem::Error) -> TlsError {
    move |err| TlsError::Pem {
        path: path.to_owned(),
        problem: match err {
            rustls_pki_types::pem::Error::NoItemsFound => format!("no {what} in this PEM file"),
            other => format!("cannot read the {what}: {other}"),
        },
    }
}

/// The rustls server configuration for `files`: ALPN h2 and http/1.1.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(pem_error(&files.cert, "certificate"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(&files.cert, "certificate"))?;
    if certs.is_empty() {
        return Err(pem_error(&files.cert, "certificate")(
            rustls_pki_types::pem::Error::NoItemsFound,
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(pem_error(&files.key, "private key"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Rustls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The acceptor for `files`.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    server_config(files).map(|c| TlsAcceptor::from(Arc::new(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_and_empty_files_name_the_file() {
        let dir = std::env::temp_dir().join(format!("ctg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        let files = TlsFiles {
            cert: empty.clone(),
            key: dir.join("missing.pem"),
        };
        let err = server_config(&files).unwrap_err().to_string();
        assert!(
            err.contains("empty.pem") && err.contains("no certificate"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
