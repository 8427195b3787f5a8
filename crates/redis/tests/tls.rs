//! `rediss://` against a `redis-server` this test starts with `tls-port` and certificates it
//! makes: a private CA given as the CA file is trusted; another CA, or the system's roots, are
//! refused with an error that says the certificate is the problem.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use esr_redis::{RedisConfig, RedisStore, Topology};
use esr_schema::{EntityId, StreamId};
use esr_store::{AppendRequest, EventStore, ExpectedVersion, NewEvent};
use esr_testkit::RedisServer;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn authority(name: &str) -> Authority {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Authority { cert, key }
}

/// The CA's PEM, and a TLS server on a free port with a certificate it signed for 127.0.0.1.
fn tls_server(ca: &Authority, dir: &Path) -> (RedisServer, u16) {
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let file = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let (cert_file, key_file, ca_file) = (
        file("server.crt", cert.pem()),
        file("server.key", key.serialize_pem()),
        file("ca.crt", ca.cert.pem()),
    );
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &cert_file,
        "--tls-key-file",
        &key_file,
        "--tls-ca-cert-file",
        &ca_file,
        "--tls-auth-clients",
        "no",
    ]);
    (server, tls_port)
}

fn config(tls_port: u16, ca_pem: Option<String>) -> RedisConfig {
    let mut config = RedisConfig::new(Topology::Single(format!("rediss://127.0.0.1:{tls_port}/")));
    config.tls_ca_pem = ca_pem.map(String::into_bytes);
    config
}

fn kick() -> NewEvent {
    esr_store::contract::kick("Bugs")
}

#[tokio::test]
async fn rediss_with_the_private_ca_appends_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let ca = authority("esr test CA");
    let (_server, tls_port) = tls_server(&ca, dir.path());
    let store = RedisStore::connect(config(tls_port, Some(ca.cert.pem())))
        .await
        .unwrap();
    let user = StreamId::new(esr_schema::user::USER, EntityId::parse("tls1").unwrap());
    let appended = store
        .append(AppendRequest {
            stream: user.clone(),
            expected: ExpectedVersion::NoStream,
            events: vec![kick()],
            idempotency: None,
        })
        .await
        .unwrap();
    assert_eq!(appended.version, 1);
    assert_eq!(store.read_stream(&user, 1, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn rediss_with_a_wrong_ca_or_none_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = authority("esr test CA");
    let (_server, tls_port) = tls_server(&ca, dir.path());
    let stranger = authority("some other CA");
    for ca_pem in [Some(stranger.cert.pem()), None] {
        let refused = RedisStore::connect(config(tls_port, ca_pem.clone()))
            .await
            .err()
            .expect("connected although the server's certificate is not trusted");
        let message = refused.to_string();
        assert!(
            message.to_lowercase().contains("certificate"),
            "with {}: {message}",
            if ca_pem.is_some() {
                "another CA"
            } else {
                "the system's roots"
            }
        );
    }
}
