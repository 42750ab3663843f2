//! TLS for the relay: loading a PEM certificate and key, or creating (once) and reusing a
//! self-signed development certificate, the SHA-256 fingerprint clients pin, and the
//! SubjectPublicKeyInfo hash a browser pins in development ([`spki_pin`]).
//!
//! Only TLS 1.3 is offered: every client we ship speaks it, and it removes the legacy
//! negotiation surface of 1.2.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File name of the development certificate inside the data directory.
pub const DEV_CERT_FILE: &str = "dev-cert.pem";
/// File name of the development key inside the data directory.
pub const DEV_KEY_FILE: &str = "dev-key.pem";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file could not be read or parsed.
    #[error("cannot read {path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The certificate and key do not form a usable rustls configuration.
    #[error("invalid certificate or key: {0}")]
    Config(#[from] rustls::Error),
    /// The development certificate could not be generated or written.
    #[error("cannot create the development certificate: {0}")]
    DevCert(String),
    /// The certificate is not a valid X.509 certificate.
    #[error("cannot parse the certificate: {0}")]
    Certificate(String),
}

/// A loaded certificate chain and key, with the leaf's fingerprint.
pub struct TlsIdentity {
    /// Certificate chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

impl TlsIdentity {
    /// Loads a PEM certificate chain and PEM private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let pem_err = |path: &Path, e: &dyn std::fmt::Display| TlsError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let certs = CertificateDer::pem_file_iter(cert)
            .map_err(|e| pem_err(cert, &e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err(cert, &e))?;
        if certs.is_empty() {
            return Err(pem_err(cert, &"no certificate found"));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, &e))?;
        Ok(TlsIdentity { certs, key })
    }

    /// Loads the development certificate from `data_dir`, creating it on first use, so that its
    /// fingerprint stays the same across restarts and clients can keep their pin.
    pub fn dev(data_dir: &Path) -> Result<Self, TlsError> {
        let cert_path = data_dir.join(DEV_CERT_FILE);
        let key_path = data_dir.join(DEV_KEY_FILE);
        if !cert_path.exists() || !key_path.exists() {
            std::fs::create_dir_all(data_dir).map_err(|e| TlsError::DevCert(e.to_string()))?;
            let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            let generated = rcgen::generate_simple_self_signed(names)
                .map_err(|e| TlsError::DevCert(e.to_string()))?;
            write_private(&key_path, generated.signing_key.serialize_pem().as_bytes())?;
            std::fs::write(&cert_path, generated.cert.pem())
                .map_err(|e| TlsError::DevCert(e.to_string()))?;
        }
        Self::from_pem_files(&cert_path, &key_path)
    }

    /// SHA-256 of the leaf certificate (DER), lowercase hex: what clients pin.
    pub fn fingerprint(&self) -> String {
        self.certs
            .first()
            .map(|c| cert_fingerprint(c))
            .unwrap_or_default()
    }

    /// The browser pin of the leaf certificate: see [`spki_pin`].
    pub fn spki_pin(&self) -> Result<String, TlsError> {
        match self.certs.first() {
            Some(cert) => spki_pin(cert),
            None => Err(TlsError::Certificate("no certificate".into())),
        }
    }

    /// A rustls server configuration offering TLS 1.3 only.
    pub fn server_config(self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.certs, self.key)?;
        Ok(Arc::new(config))
    }
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn cert_fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}

/// The base64 SHA-256 of the certificate's SubjectPublicKeyInfo (DER): what Chromium's
/// `--ignore-certificate-errors-spki-list` takes, so that a browser accepts the development
/// certificate, and only it, without a CA (`confide-server --dev` prints the flag). It names the
/// key, not the certificate: it stays the same as long as the key does.
pub fn spki_pin(cert: &CertificateDer<'_>) -> Result<String, TlsError> {
    use base64::Engine as _;
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| TlsError::Certificate(format!("{e:?}")))?;
    let spki = parsed.subject_public_key_info();
    Ok(base64::engine::general_purpose::STANDARD.encode(Sha256::digest(spki.as_ref())))
}

/// Writes a secret file readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| TlsError::DevCert(e.to_string()))?;
    file.write_all(bytes)
        .map_err(|e| TlsError::DevCert(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificate_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = TlsIdentity::dev(dir.path()).unwrap().fingerprint();
        let second = TlsIdentity::dev(dir.path()).unwrap().fingerprint();
        assert_eq!(first, second);
        assert_eq!(first.len(), 64);
        TlsIdentity::dev(dir.path())
            .unwrap()
            .server_config()
            .unwrap();
    }

    #[test]
    fn the_browser_pin_is_the_hash_of_the_keys_subject_public_key_info() {
        use base64::Engine as _;
        use rcgen::PublicKeyData as _;
        let dir = tempfile::tempdir().unwrap();
        let identity = TlsIdentity::dev(dir.path()).unwrap();
        // Computed independently: rcgen encodes the SubjectPublicKeyInfo from the key file.
        let key = std::fs::read_to_string(dir.path().join(DEV_KEY_FILE)).unwrap();
        let spki = rcgen::KeyPair::from_pem(&key)
            .unwrap()
            .subject_public_key_info();
        let expected = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&spki));
        assert_eq!(identity.spki_pin().unwrap(), expected);
        assert_eq!(expected.len(), 44);
        assert!(spki_pin(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_err());
    }

    #[test]
    fn missing_files_give_a_clear_error() {
        let err = TlsIdentity::from_pem_files(
            Path::new("/nonexistent/c.pem"),
            Path::new("/nonexistent/k.pem"),
        );
        assert!(
            err.err()
                .unwrap()
                .to_string()
                .contains("/nonexistent/c.pem")
        );
    }
}
