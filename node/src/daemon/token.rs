//! The API's per-run token and the checks every `/api` request passes: the `Host` header (no DNS
//! rebinding), the `Origin` header (no cross-site requests) and the token.
//!
//! A token is `RUN.SECRET`: `RUN` is the start time of the daemon's run (milliseconds, hex) and
//! `SECRET` 32 random bytes (hex). A new run makes a new token, so a token copied or captured
//! during an earlier run is refused, and the refusal says that the node restarted (the run part
//! tells an old token from a wrong one). Everything here is free of I/O: the daemon passes the
//! header values in.

use axum::http::StatusCode;

use super::ApiError;

/// The token of one run and the hosts it is served under.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    run: String,
    token: String,
    hosts: Vec<String>,
}

impl Gate {
    /// A gate for a run started at `run_ms` with `secret`, served on loopback `port`.
    pub(crate) fn new(run_ms: u64, secret: &[u8; 32], port: u16) -> Gate {
        let run = format!("{run_ms:x}");
        Gate {
            token: format!("{run}.{}", hex::encode(secret)),
            run,
            hosts: vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ],
        }
    }

    /// The token the page and the CLI send.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Checks the `Host` and `Origin` headers: a page served from another site, or a DNS name
    /// rebound to 127.0.0.1, gets a 403 that names the header.
    pub(crate) fn check_origin(
        &self,
        host: Option<&str>,
        origin: Option<&str>,
    ) -> Result<(), ApiError> {
        let host = host.unwrap_or_default();
        if !self.hosts.iter().any(|h| h == host) {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "the Host header '{host}' is not this node's loopback address; use http://{}",
                    self.hosts[0]
                ),
            ));
        }
        if let Some(origin) = origin {
            let same = self.hosts.iter().any(|h| origin == format!("http://{h}"));
            if !same {
                return Err(ApiError(
                    StatusCode::FORBIDDEN,
                    format!(
                        "requests from the web page at '{origin}' are refused; open the labeling page at http://{}",
                        self.hosts[0]
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks the `Authorization` header value: `Bearer TOKEN` of this run.
    pub(crate) fn check_token(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        let Some(given) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
            return Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "the request has no token; send 'Authorization: Bearer TOKEN' with the token from api.json in the node's home".into(),
            ));
        };
        if constant_time_eq(given.trim().as_bytes(), self.token.as_bytes()) {
            return Ok(());
        }
        let stale = given
            .split_once('.')
            .is_some_and(|(run, secret)| run != self.run && secret.len() == 64);
        if stale {
            return Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "the token is from an earlier run of this node (it restarted); reopen the labeling page with the URL `swarmlabel run` printed, or read the new token from api.json".into(),
            ));
        }
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "the token is wrong; send 'Authorization: Bearer TOKEN' with the token from api.json in the node's home".into(),
        ))
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_runs_token_passes_and_an_old_one_is_named_stale() {
        let now = Gate::new(2_000, &[7; 32], 4242);
        let before = Gate::new(1_000, &[9; 32], 4242);
        let ok = format!("Bearer {}", now.token());
        assert!(now.check_token(Some(&ok)).is_ok());
        let old = format!("Bearer {}", before.token());
        let e = now.check_token(Some(&old)).unwrap_err();
        assert_eq!(e.0, StatusCode::UNAUTHORIZED);
        assert!(e.1.contains("earlier run"), "{}", e.1);
        let e = now.check_token(Some("Bearer nonsense")).unwrap_err();
        assert!(e.1.contains("wrong"), "{}", e.1);
        let e = now.check_token(None).unwrap_err();
        assert!(e.1.contains("no token"), "{}", e.1);
        // Same run, other secret: wrong, not stale.
        let forged = format!("Bearer {:x}.{}", 2_000, hex::encode([1u8; 32]));
        assert!(
            now.check_token(Some(&forged))
                .unwrap_err()
                .1
                .contains("wrong")
        );
    }

    #[test]
    fn foreign_hosts_and_origins_are_refused() {
        let gate = Gate::new(1, &[0; 32], 4242);
        assert!(gate.check_origin(Some("127.0.0.1:4242"), None).is_ok());
        assert!(gate.check_origin(Some("[::1]:4242"), None).is_ok());
        assert!(
            gate.check_origin(Some("localhost:4242"), Some("http://localhost:4242"))
                .is_ok()
        );
        for host in ["evil.example:4242", "127.0.0.1:80", "127.0.0.1", ""] {
            let e = gate.check_origin(Some(host), None).unwrap_err();
            assert_eq!(e.0, StatusCode::FORBIDDEN);
            assert!(e.1.contains("Host header"), "{}", e.1);
        }
        assert!(gate.check_origin(None, None).is_err());
        let e = gate
            .check_origin(Some("127.0.0.1:4242"), Some("http://evil.example"))
            .unwrap_err();
        assert!(e.1.contains("evil.example"), "{}", e.1);
    }
}
