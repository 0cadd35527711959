//! The certificate the server presents, loaded from PEM files into a rustls `ServerConfig`
//! and swapped whole on reload.
//!
//! `Certs` is shared by every worker and read at accept time only (never per message): each
//! worker's `Acceptor` keeps its own `Arc` of the current configuration and looks at the
//! shared one only when the generation number, one relaxed atomic load per accept, says a
//! reload happened. A reload builds and checks a complete new configuration before it
//! publishes it, so a bad certificate (unreadable, unparsable, not matching its key) leaves
//! the old one in place; connections keep the configuration they were accepted with.

use std::fs;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::config::TlsFiles;

/// Why a certificate could not be loaded. One line, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: String },
    #[error("{path}: not a PEM certificate chain: {reason}")]
    BadCertificate { path: String, reason: String },
    #[error("{path}: no PEM private key in it ({reason})")]
    BadKey { path: String, reason: String },
    #[error("{cert} and {key} do not go together: {reason}")]
    Mismatch {
        cert: String,
        key: String,
        reason: String,
    },
}

/// The current TLS configuration, shared by the workers and replaced on reload.
#[derive(Debug)]
pub struct Certs {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// Bumped after each successful reload; workers compare it with the one they cached.
    generation: AtomicU64,
    /// Modification stamp of the files as last loaded (or tried), for `reload_if_changed`.
    stamp: Mutex<Option<Stamp>>,
}

/// What tells a file apart from its earlier version without reading it.
type Stamp = [(Option<SystemTime>, u64); 2];

impl Certs {
    /// Loads the certificate and key, or says in one line why not.
    pub fn load(files: &TlsFiles) -> Result<Certs, CertError> {
        let stamp = stamp(files);
        let config = build(files)?;
        Ok(Certs {
            files: files.clone(),
            current: RwLock::new(config),
            generation: AtomicU64::new(0),
            stamp: Mutex::new(Some(stamp)),
        })
    }

    /// Reads the files again and, if they make a valid configuration, serves it to new
    /// connections from now on. On error the previous configuration stays.
    pub fn reload(&self) -> Result<(), CertError> {
        *self.stamp.lock().unwrap_or_else(PoisonError::into_inner) = Some(stamp(&self.files));
        let config = build(&self.files)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Reloads when either file's modification time or size changed since the last load (or
    /// attempt); `None` when they did not.
    pub fn reload_if_changed(&self) -> Option<Result<(), CertError>> {
        let now = stamp(&self.files);
        let last = *self.stamp.lock().unwrap_or_else(PoisonError::into_inner);
        (last != Some(now)).then(|| self.reload())
    }

    /// The configuration new connections get.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Successful reloads so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    [&files.cert, &files.key].map(|path| match fs::metadata(path) {
        Ok(meta) => (meta.modified().ok(), meta.len()),
        Err(_) => (None, 0),
    })
}

/// A complete server configuration: TLS 1.3 and 1.2 with the ring provider, ALPN
/// `http/1.1`, no client certificates.
fn build(files: &TlsFiles) -> Result<Arc<ServerConfig>, CertError> {
    let cert_name = files.cert.display().to_string();
    let key_name = files.key.display().to_string();
    let read = |path: &std::path::Path, name: &str| {
        fs::read(path).map_err(|source| CertError::Read {
            path: name.to_string(),
            source,
        })
    };
    let cert_pem = read(&files.cert, &cert_name)?;
    let key_pem = read(&files.key, &key_name)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::BadCertificate {
            path: cert_name.clone(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate { path: cert_name });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| CertError::BadKey {
        path: key_name.clone(),
        reason: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        // Fails only if the provider lacks a cipher suite for a version: ring has both.
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        // Checks that the key parses and that its public half is the leaf certificate's.
        .with_single_cert(chain, key)
        .map_err(|e| CertError::Mismatch {
            cert: cert_name,
            key: key_name,
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
