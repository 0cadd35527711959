//! TLS for `wss://` targets: the rustls client configuration (`--ca FILE` trusts that PEM
//! certificate or CA, `--insecure` trusts any certificate) and the non-blocking record I/O a
//! connection's socket runs through once it speaks TLS.
//!
//! The I/O follows the rules `connection::Sock` keeps for plain TCP: a read goes on until the
//! buffer is full or the socket says `WouldBlock`, so a short read still means the socket is
//! drained; records rustls wants to send are written at once and what the socket does not
//! take is written on the next flush (every readiness event flushes).

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};

/// Encrypted bytes rustls may hold per connection beyond what the socket took.
const SEND_LIMIT: usize = 64 * 1024;

/// The client configuration for `wss://` targets: trust the certificates in `ca` (a PEM
/// file: the server's self-signed certificate, or the CA that issued it), or with `insecure`
/// any certificate at all. ALPN `http/1.1`; TLS 1.3 and 1.2.
pub fn client_config(ca: Option<&Path>, insecure: bool) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| e.to_string())?;
    let mut config = match (ca, insecure) {
        (_, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        (Some(ca), false) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("--ca {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("--ca {}: no PEM certificate in it", ca.display()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("--ca {}: {e}", ca.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        (None, false) => {
            return Err("wss:// needs --ca FILE (the certificate to trust) or --insecure".into())
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS session for `server_name`, bounded like every connection's buffers.
pub fn session(config: &Arc<ClientConfig>, server_name: &str) -> io::Result<ClientConnection> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut session = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
    session.set_buffer_limit(Some(SEND_LIMIT));
    Ok(session)
}

/// Writes held records until none are left (true) or the socket is full (false).
pub fn send_records(tls: &mut ClientConnection, tcp: &mut TcpStream) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(tcp) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads plaintext until `buf` is full or the socket would block (then a short read, or
/// `WouldBlock` with nothing read); EOF, with or without `close_notify`, reads as 0.
pub fn read(tls: &mut ClientConnection, tcp: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    loop {
        match tls.reader().read(&mut buf[filled..]) {
            Ok(0) if filled < buf.len() => return Ok(filled),
            Ok(n) => {
                filled += n;
                if filled == buf.len() {
                    return Ok(filled);
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
            Err(_) if filled > 0 => return Ok(filled),
            Err(e) => return Err(e),
        }
        let received = loop {
            match tls.read_tls(tcp) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        match received {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && filled > 0 => return Ok(filled),
            Err(e) => return Err(e),
        }
        if let Err(e) = tls.process_new_packets() {
            let _ = send_records(tls, tcp);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        send_records(tls, tcp)?;
    }
}

/// Hands plaintext to rustls and writes records; `WouldBlock` only when the socket is full.
pub fn write(tls: &mut ClientConnection, tcp: &mut TcpStream, buf: &[u8]) -> io::Result<usize> {
    for _ in 0..2 {
        let taken = tls.writer().write(buf)?;
        if taken > 0 || buf.is_empty() {
            send_records(tls, tcp)?;
            return Ok(taken);
        }
        if !send_records(tls, tcp)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
    }
    Err(io::Error::other("TLS session accepts no data"))
}

/// `--insecure`: any certificate is accepted, signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
