//! wss:// runs against an in-process corecast serving TLS: every echo comes back exactly once
//! when loadgen trusts the server's certificate (`--ca`) or any (`--insecure`), and a run
//! that trusts another certificate fails its connections instead of sending in the clear.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{loadgen, LIMIT};
use corecast::{Config, Server, TlsFiles};

/// A self-signed certificate for localhost in a directory of its own.
struct Cert {
    dir: PathBuf,
    files: TlsFiles,
}

impl Cert {
    fn new(tag: &str) -> Cert {
        let dir = std::env::temp_dir().join(format!("loadgen-wss-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, made.cert.pem()).unwrap();
        std::fs::write(&files.key, made.signing_key.serialize_pem()).unwrap();
        Cert { dir, files }
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tls_corecast(cert: &Cert) -> Server {
    Server::bind(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: Some(2),
        pin: false,
        stats_interval: Duration::ZERO,
        tls: Some(cert.files.clone()),
        ..Config::default()
    })
    .expect("corecast starts")
}

#[test]
fn wss_echo_with_the_servers_certificate_or_insecure_loses_nothing() {
    let cert = Cert::new("ok");
    let server = tls_corecast(&cert);
    let target = format!("wss://localhost:{}/echo", server.local_addr().port());
    let ca = cert.files.cert.display().to_string();
    for trust in [format!("--ca {ca}"), "--insecure".to_string()] {
        let run = loadgen(
            &format!(
                "--url {target} {trust} --conns 20 --threads 1 --rate 400 --duration 1s --size 600"
            ),
            LIMIT,
        );
        assert_eq!(run.code, Some(0), "{}", run.dump());
        run.expect("/connections/established", 20);
        run.expect("/messages/sent", 400);
        run.expect("/messages/received", 400);
        for field in ["lost", "unsent", "duplicates", "out_of_order", "corrupt"] {
            run.expect(&format!("/messages/{field}"), 0);
        }
    }
    let handshakes: u64 = server.stats().iter().map(|c| c.tls_handshakes).sum();
    assert!(handshakes >= 40, "{handshakes} TLS handshakes");
    server.shutdown();
}

#[test]
fn wss_with_an_untrusted_certificate_fails_every_connection() {
    let cert = Cert::new("served");
    let other = Cert::new("other");
    let server = tls_corecast(&cert);
    let target = format!("wss://localhost:{}/echo", server.local_addr().port());
    let run = loadgen(
        &format!(
            "--url {target} --ca {} --conns 3 --threads 1 --rate 10 --duration 1s",
            other.files.cert.display()
        ),
        LIMIT,
    );
    assert_ne!(run.code, Some(0), "{}", run.dump());
    assert_eq!(run.num("/connections/established"), 0, "{}", run.dump());
    assert!(run.stdout.contains("TLS error"), "{}", run.dump());
    server.shutdown();
}
