//! The `swarmlabel-bootstrap` binary as an operator runs it.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Command, Stdio};

/// The key file keeps the peer id across restarts, and is created owner-only.
#[test]
fn the_key_file_keeps_the_peer_id_across_runs() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("bootstrap.key");
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_swarmlabel-bootstrap"))
            .args(["--key-file", key.to_str().unwrap(), "--print-peer-id"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert!(first.starts_with("12D3KooW"), "{first}");
    assert_eq!(run(), first);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::write(&key, "not a key").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_swarmlabel-bootstrap"))
        .args(["--key-file", key.to_str().unwrap(), "--print-peer-id"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a key file"));
}

/// `GET path` on `addr` over plain HTTP/1.1: the status code, the content type and the body.
fn http_get(addr: &str, path: &str) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// What a monitoring system scrapes: `/metrics` as OpenMetrics (its content type, the build-info
/// series) and `/healthz`. Issue 16: the node sent the Prometheus 0.0.4 content type and had no
/// `/healthz`; neither program had a build-info series.
#[test]
fn metrics_are_openmetrics_with_build_info_and_healthz_answers() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("bootstrap.key");
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarmlabel-bootstrap"))
        .args([
            "--key-file",
            key.to_str().unwrap(),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut addr = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("metrics on http://") {
            addr = rest.strip_suffix("/metrics").map(str::to_owned);
            break;
        }
    }
    let addr = addr.expect("the bootstrap peer prints where its metrics are");
    let (status, content_type, body) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    assert!(
        body.contains(&format!(
            "swarmlabel_build_info{{component=\"bootstrap\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{body}"
    );
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    assert_eq!(
        http_get(&addr, "/healthz"),
        (200, "text/plain; charset=utf-8".into(), "ok\n".into())
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
