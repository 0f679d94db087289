//! `wss://` targets and `--max-…` thresholds, against the all-in-one `chat` started in
//! this process. TLS is terminated by a rustls front in this process too, with a CA and
//! a server certificate made by `openssl` for the test. The thresholds are set where
//! the outcome does not depend on timing: a latency limit of 0 is always crossed (every
//! latency is recorded as at least 1 µs), one of ten minutes never is.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chat_testkit::topology::{API_KEY, Topology};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

async fn spawn_chat() -> SocketAddr {
    Topology::builder().chat(None).await.addr
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl) makes the test certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a certificate for 127.0.0.1 and localhost signed by it
/// (`server.pem`, `server.key`).
fn certificates(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chat-loadtest-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=chat-loadtest test CA",
                "-days",
                "2",
            ],
        ]
        .concat(),
    );
    openssl(
        &dir,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    dir
}

/// A TLS front for `backend`: each TLS connection is relayed to it over TCP.
async fn tls_front(backend: SocketAddr, dir: &Path) -> SocketAddr {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

fn fanout<'a>(target: &'a str, http: &'a str) -> Vec<&'a str> {
    vec![
        "fanout",
        "--target",
        target,
        "--http",
        http,
        "--api-key",
        API_KEY,
        "--members",
        "10",
        "--rate",
        "100",
        "--duration",
        "1s",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_targets_are_checked_against_the_given_ca_or_taken_with_insecure() {
    let chat = spawn_chat().await;
    let dir = certificates("wss");
    let front = tls_front(chat, &dir).await;
    let target = format!("wss://{front}/ws");
    let http = format!("http://{chat}");
    let ca = dir.join("ca.pem");

    for extra in [vec!["--ca-cert", ca.to_str().unwrap()], vec!["--insecure"]] {
        let args = [fanout(&target, &http), extra.clone()].concat();
        let (code, report, stderr) = common::report(&args).await;
        let r = report.unwrap_or_else(|| panic!("{extra:?}: no report; exit {code}: {stderr}"));
        assert_eq!(code, 0, "{extra:?}: {r:#}");
        assert_eq!(r["messages"]["delivered"], 1000, "{extra:?}: {r:#}");
        assert_eq!(r["messages"]["lost"], 0);
        assert_eq!(r["settings"]["targets"][0], target.as_str());
    }

    // Without the CA, the self-made certificate is refused: no connection, exit 1 (or
    // 64 on a machine without system roots).
    let (code, _, stderr) = common::report(&fanout(&target, &http)).await;
    assert!(code == 1 || code == 64, "exit {code}: {stderr}");
    assert!(
        stderr.contains("certificate") || stderr.contains("no system root"),
        "{stderr}"
    );

    // A wss:// target has no default HTTP base to publish to.
    let (code, _, stderr) = common::report(&[
        "fanout",
        "--target",
        &target,
        "--insecure",
        "--api-key",
        API_KEY,
    ])
    .await;
    assert_eq!(code, 64, "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crossed_threshold_exits_99_and_is_listed() {
    let chat = spawn_chat().await;
    let target = format!("ws://{chat}/ws");
    let http = format!("http://{chat}");

    let args = [
        fanout(&target, &http),
        vec!["--max-p99", "0ms", "--max-lost", "0"],
    ]
    .concat();
    let (code, report, stderr) = common::report(&args).await;
    let r = report.unwrap_or_else(|| panic!("no report; exit {code}: {stderr}"));
    assert_eq!(code, 99, "{r:#}");
    assert_eq!(r["exit_status"], 99);
    assert_eq!(r["ok"], true, "the run itself was clean: {r:#}");
    let t = r["thresholds"].as_array().unwrap();
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(
        (t[0]["name"].as_str(), t[0]["ok"].as_bool()),
        (Some("p99"), Some(false))
    );
    assert_eq!(t[0]["limit"], 0);
    assert_eq!(
        (t[1]["name"].as_str(), t[1]["ok"].as_bool()),
        (Some("lost"), Some(true))
    );

    // Limits that hold: exit 0.
    let args = [
        fanout(&target, &http),
        vec![
            "--max-p50",
            "10m",
            "--max-p99",
            "10m",
            "--max-p999",
            "10m",
            "--max-lost",
            "0",
        ],
    ]
    .concat();
    let (code, report, stderr) = common::report(&args).await;
    let r = report.unwrap_or_else(|| panic!("no report; exit {code}: {stderr}"));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["thresholds"].as_array().unwrap().len(), 4);
    assert!(
        r["thresholds"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["ok"] == true)
    );

    // The human summary names the crossed threshold.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-loadtest"))
        .args([fanout(&target, &http), vec!["--max-p50", "0ms"]].concat())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(99));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("THRESHOLD CROSSED"), "{summary}");
    assert!(summary.contains("threshold    p50"), "{summary}");
}
