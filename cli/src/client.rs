//! Talking to a running node's API (`swarmlabel run`) from the CLI.

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::de::DeserializeOwned;
use swarmlabel_node::daemon::ApiInfo;
use swarmlabel_store::Home;

/// A client of the node running for a home.
pub(crate) struct Client {
    info: ApiInfo,
    agent: ureq::Agent,
    home: String,
}

impl Client {
    pub(crate) fn connect(home: &Home) -> anyhow::Result<Client> {
        let home_text = home.root().display().to_string();
        let Some(info) = ApiInfo::read(home) else {
            bail!("no swarmlabel node is running for {home_text}; start one with `swarmlabel run`");
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .into();
        Ok(Client {
            info,
            agent,
            home: home_text,
        })
    }

    /// The labeling page's address (with this run's token in its fragment).
    pub(crate) fn page(&self) -> &str {
        &self.info.page
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        anyhow::anyhow!(
            "the node for {} does not answer at {} ({e}); if it stopped, start it again with `swarmlabel run`",
            self.home,
            self.info.url
        )
    }

    fn finish<T: DeserializeOwned>(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<T> {
        let mut response = response.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body: serde_json::Value = response
            .body_mut()
            .read_json()
            .context("the node sent an invalid answer")?;
        if !status.is_success() {
            let message = body["error"].as_str().unwrap_or("unknown error");
            bail!("{message}");
        }
        serde_json::from_value(body).context("the node sent an unexpected answer")
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self
            .agent
            .get(format!("{}{path}", self.info.url))
            .header("Authorization", format!("Bearer {}", self.info.token))
            .call();
        self.finish(response)
    }

    /// A text answer (a text sample's content).
    pub(crate) fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.info.url))
            .header("Authorization", format!("Bearer {}", self.info.token))
            .call()
            .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            let body: serde_json::Value = response
                .body_mut()
                .read_json()
                .context("the node sent an invalid answer")?;
            bail!("{}", body["error"].as_str().unwrap_or("unknown error"));
        }
        response
            .body_mut()
            .read_to_string()
            .context("the node sent a text that is not UTF-8")
    }

    pub(crate) fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<T> {
        let response = self
            .agent
            .post(format!("{}{path}", self.info.url))
            .header("Authorization", format!("Bearer {}", self.info.token))
            .header("X-Request-Id", request_id())
            .send_json(body);
        self.finish(response)
    }
}

/// A request id for a change: the daemon accepts each id once per run. The process id, the
/// time and a counter make it unique on this machine.
fn request_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("cli-{}-{nanos:x}-{n}", std::process::id())
}
