//! TLS for end-to-end tests: certificates made in the test (rcgen), written where the server
//! reads them, and rustls clients (tungstenite over a `rustls::StreamOwned`, or raw HTTPS)
//! that trust exactly the certificates a test names.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use corecast::{Config, TlsFiles};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::WebSocket;

use super::TIMEOUT;

/// A TLS client stream: blocking, with the read timeout of every test socket.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;
/// A WebSocket client over TLS.
pub type TlsClient = WebSocket<TlsStream>;

/// A self-signed certificate for `localhost` and 127.0.0.1, and its key, as PEM files in a
/// directory of its own (removed when dropped).
pub struct TestCert {
    pub files: TlsFiles,
    /// The certificate, for clients to trust.
    pub der: CertificateDer<'static>,
    /// Its SubjectPublicKeyInfo (DER), what Chromium's `--ignore-certificate-errors-spki-list`
    /// names by hash.
    pub spki: Vec<u8>,
    dir: PathBuf,
}

impl TestCert {
    /// A fresh certificate and key in a new directory named after `tag`.
    pub fn new(tag: &str) -> TestCert {
        let dir = std::env::temp_dir().join(format!(
            "corecast-tls-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        let (der, spki) = write_new_cert(&files);
        TestCert {
            files,
            der,
            spki,
            dir,
        }
    }

    /// Replaces the files with a new certificate and key (what a renewal does); returns the
    /// new certificate, which `der` then names.
    pub fn renew(&mut self) -> CertificateDer<'static> {
        (self.der, self.spki) = write_new_cert(&self.files);
        self.der.clone()
    }

    /// A test configuration serving TLS with this certificate.
    pub fn config(&self) -> Config {
        Config {
            tls: Some(self.files.clone()),
            ..super::config()
        }
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes a new self-signed certificate and its key to `files`; returns the certificate and
/// its public key info.
pub fn write_new_cert(files: &TlsFiles) -> (CertificateDer<'static>, Vec<u8>) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("rcgen makes a certificate");
    // Key first, then certificate, each replaced whole (write a temporary file, rename), so
    // the server never reads a half-written file.
    for (path, pem) in [
        (&files.key, made.signing_key.serialize_pem()),
        (&files.cert, made.cert.pem()),
    ] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    let spki = rcgen::PublicKeyData::subject_public_key_info(&made.signing_key);
    (made.cert.der().clone(), spki)
}

/// A client configuration trusting only `trusted`, offering ALPN `http/1.1`; TLS 1.3 and 1.2
/// unless `versions` narrows them.
pub fn client_config(
    trusted: &[&CertificateDer<'static>],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add((*cert).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = if versions.is_empty() {
        rustls::DEFAULT_VERSIONS
    } else {
        versions
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A TLS connection to `addr` for `localhost`, handshake completed (or its error).
pub fn tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<TlsStream> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").unwrap();
    let session = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut stream = StreamOwned::new(session, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// A wss:// client on `path` trusting `cert`, offering `protocols`.
pub fn wss_connect_with(
    addr: SocketAddr,
    path: &str,
    protocols: &[&str],
    config: Arc<ClientConfig>,
) -> Result<(TlsClient, tungstenite::handshake::client::Response), String> {
    let mut request = format!("wss://localhost:{}{path}", addr.port())
        .into_client_request()
        .unwrap();
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(&protocols.join(", ")).unwrap(),
        );
    }
    let stream = tls_connect(addr, config).map_err(|e| format!("TLS: {e}"))?;
    tungstenite::client::client(request, stream).map_err(|e| format!("handshake: {e}"))
}

/// A wss:// client on `path` that trusts `cert`.
pub fn wss_connect(addr: SocketAddr, path: &str, cert: &CertificateDer<'static>) -> TlsClient {
    wss_connect_with(addr, path, &[], client_config(&[cert], &[]))
        .expect("wss connection")
        .0
}

/// GET `path` over https://; the whole answer, read until the server closes.
pub fn https_get(addr: SocketAddr, path: &str, cert: &CertificateDer<'static>) -> String {
    let mut stream = tls_connect(addr, client_config(&[cert], &[])).expect("TLS connection");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = Vec::new();
    // The server ends with close_notify (a clean EOF) or a plain FIN.
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The first flight of a real TLS client (its ClientHello records), to send by hand.
pub fn client_hello() -> Vec<u8> {
    // Any certificate will do: the handshake never gets past the hello.
    let config = client_config(&[], &[]);
    let mut session =
        ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    while session.wants_write() {
        session.write_tls(&mut hello).unwrap();
    }
    hello
}
