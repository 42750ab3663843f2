//! How the client trusts the server's TLS certificate: pinned by its SHA-256 fingerprint (for
//! self-hosted and development servers) or verified against CA roots (the system's, or a given
//! PEM bundle). TLS 1.3 only.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// How to trust the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerTrust {
    /// Accept exactly the certificate whose DER has this SHA-256 (64 hex digits, as the server
    /// prints with `--dev`); the host name is not checked, the key's signature is.
    Pinned(String),
    /// Verify the certificate chain and host name against the operating system's roots.
    SystemRoots,
    /// Verify against the CA certificates in this PEM bundle.
    CaPem(Vec<u8>),
}

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The pin is not 64 hex digits.
    #[error("a certificate pin is 64 hex digits (SHA-256), got {0:?}")]
    BadPin(String),
    /// The CA bundle or system roots could not be loaded.
    #[error("cannot load CA roots: {0}")]
    Roots(String),
    /// rustls refused the configuration.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

/// Normalizes a fingerprint: lowercase hex without separators.
pub fn normalize_pin(pin: &str) -> Result<String, TrustError> {
    let clean: String = pin
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_lowercase();
    if clean.len() != 64 || !clean.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(TrustError::BadPin(pin.to_string()));
    }
    Ok(clean)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServerTrust {
    /// The rustls client configuration for this trust choice.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TrustError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?;
        let config = match self {
            ServerTrust::Pinned(pin) => {
                let verifier = PinnedVerifier {
                    pin: normalize_pin(pin)?,
                    provider: provider(),
                };
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth()
            }
            ServerTrust::SystemRoots => {
                let mut roots = rustls::RootCertStore::empty();
                let loaded = rustls_native_certs::load_native_certs();
                for cert in loaded.certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(TrustError::Roots("no system CA certificates found".into()));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            ServerTrust::CaPem(pem) => {
                use rustls::pki_types::pem::PemObject as _;
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| TrustError::Roots(e.to_string()))?;
                    roots.add(cert)?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        Ok(Arc::new(config))
    }
}

/// Accepts only the pinned certificate, and still checks that the server holds its key.
#[derive(Debug)]
struct PinnedVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = hex::encode(Sha256::digest(end_entity.as_ref()));
        if subtle_eq(actual.as_bytes(), self.pin.as_bytes()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate fingerprint {actual} does not match the pinned {}",
                self.pin
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_normalized_and_validated() {
        let pin = "AB:".repeat(31) + "AB";
        assert_eq!(normalize_pin(&pin).unwrap(), "ab".repeat(32));
        assert!(normalize_pin("abc").is_err());
        assert!(ServerTrust::Pinned("zz".into()).client_config().is_err());
        ServerTrust::Pinned("00".repeat(32))
            .client_config()
            .unwrap();
    }
}
