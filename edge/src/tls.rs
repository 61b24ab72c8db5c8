//! TLS on the edge's own port (HTTPS and WSS), with rustls and the ring provider.
//!
//! The certificate and key are PEM files (`TIDINGS_TLS_CERT`, `TIDINGS_TLS_KEY`). They are
//! read at start, where anything wrong with them stops the edge with the file named, and
//! again whenever either file changes (checked every [`RELOAD_EVERY`]): a renewed
//! certificate is served to new connections without a restart. A change that does not load
//! (a key written before its certificate, say) keeps the previous pair until it does.

use crate::errors::EdgeError;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How often the files are checked for a change.
pub const RELOAD_EVERY: Duration = Duration::from_secs(10);
/// A PEM file larger than this is not a certificate chain or a key: refused before reading.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Where the edge's certificate chain and private key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The certificate served to new connections, swapped when the files change.
#[derive(Debug)]
pub struct Certificates {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times when `current` was loaded.
    loaded: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl Certificates {
    /// Loads the pair, or says which file is wrong and why.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, EdgeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamps = stamps(&files);
        let key = certified_key(&files, &provider)?;
        Ok(Arc::new(Self {
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
            loaded: Mutex::new(stamps),
        }))
    }

    /// Loads the pair again if either file changed since it was last loaded. True if the
    /// certificate served changed.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamps(&self.files);
        let mut loaded = match self.loaded.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if *loaded == now {
            return false;
        }
        match certified_key(&self.files, &self.provider) {
            Ok(key) => {
                *loaded = now;
                let mut current = match self.current.write() {
                    Ok(guard) => guard,
                    Err(poisoned) => poisoned.into_inner(),
                };
                *current = Arc::new(key);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                // Not marked as loaded: tried again at the next check, and the old pair
                // stays in use until the new one is complete.
                tracing::warn!(error = %e, "TLS certificate changed but does not load; keeping the previous one");
                false
            }
        }
    }

    /// A TLS acceptor serving the current certificate, HTTP/1.1 only (what the edge speaks).
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, EdgeError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| EdgeError::Config(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Checks the files every [`RELOAD_EVERY`] until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let this = self.clone();
            // File reads: off the async workers.
            let _ = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
        }
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = match self.current.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        Some(current.clone())
    }
}

fn stamps(files: &TlsFiles) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    (modified(&files.cert), modified(&files.key))
}

fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>, EdgeError> {
    let fail = |why: String| EdgeError::Config(format!("TLS {what} {}: {why}", path.display()));
    let size = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if size > MAX_PEM_BYTES {
        return Err(fail(format!(
            "{size} bytes; a PEM file here is at most {MAX_PEM_BYTES}"
        )));
    }
    std::fs::read(path).map_err(|e| fail(e.to_string()))
}

fn certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, EdgeError> {
    let cert_path = files.cert.display();
    let key_path = files.key.display();
    let pem = read_pem("certificate", &files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| EdgeError::Config(format!("TLS certificate {cert_path}: {e}")))?;
    if chain.is_empty() {
        return Err(EdgeError::Config(format!(
            "TLS certificate {cert_path}: no CERTIFICATE in it"
        )));
    }
    let pem = read_pem("key", &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        EdgeError::Config(format!(
            "TLS key {key_path}: {e} (a PKCS#8, PKCS#1 or SEC1 private key in PEM)"
        ))
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        EdgeError::Config(format!(
            "TLS key {key_path} with certificate {cert_path}: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

    fn fixture(name: &str) -> PathBuf {
        Path::new(FIXTURES).join(name)
    }

    fn served(certs: &Certificates) -> Vec<u8> {
        certs.current.read().unwrap().cert[0].to_vec()
    }

    #[test]
    fn a_good_pair_loads_and_bad_ones_are_refused_with_the_file_named() {
        let good = TlsFiles {
            cert: fixture("a.crt"),
            key: fixture("a.key"),
        };
        let certs = Certificates::load(good.clone()).unwrap();
        certs.acceptor().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a pem file\n").unwrap();
        let cases = [
            (
                TlsFiles {
                    cert: dir.path().join("missing.crt"),
                    ..good.clone()
                },
                "missing.crt",
            ),
            (
                TlsFiles {
                    cert: garbage.clone(),
                    ..good.clone()
                },
                "no CERTIFICATE",
            ),
            (
                TlsFiles {
                    key: garbage.clone(),
                    ..good.clone()
                },
                "garbage.pem",
            ),
            (
                TlsFiles {
                    cert: fixture("a.crt"),
                    key: fixture("b.key"),
                },
                "b.key with certificate",
            ),
            // The key where the certificate belongs.
            (
                TlsFiles {
                    cert: fixture("a.key"),
                    key: fixture("a.key"),
                },
                "no CERTIFICATE",
            ),
        ];
        for (files, expected) in cases {
            let err = Certificates::load(files).unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
        }
    }

    #[test]
    fn a_changed_pair_is_served_once_it_loads() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        std::fs::copy(fixture("a.crt"), &files.cert).unwrap();
        std::fs::copy(fixture("a.key"), &files.key).unwrap();
        let certs = Certificates::load(files.clone()).unwrap();
        let first = served(&certs);
        assert!(!certs.reload_if_changed(), "nothing changed");

        // The certificate is replaced first: b.crt with a.key does not load, a is kept.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::copy(fixture("b.crt"), &files.cert).unwrap();
        assert!(!certs.reload_if_changed());
        assert_eq!(served(&certs), first);

        std::fs::copy(fixture("b.key"), &files.key).unwrap();
        assert!(certs.reload_if_changed());
        assert_ne!(served(&certs), first);
        assert!(!certs.reload_if_changed());
    }
}
