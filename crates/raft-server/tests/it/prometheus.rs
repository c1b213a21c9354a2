//! The monitoring files under deploy/ against a real Prometheus server: Debian's
//! `prometheus` scrapes a 3-member cluster with the shipped alerting rules loaded;
//! every rule must evaluate without error, every series an alert compares must have
//! data, and so must every expression of the Grafana dashboard. Without `prometheus`
//! on PATH the test is skipped with a notice, unless `RAFT_REQUIRE_PROMTOOL=1`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raft_server::client::Consistency;
use serde_json::Value;

use crate::cluster::{PATIENCE, TestCluster, free_tcp_port};

/// The scrape and rule evaluation interval of the test server.
const INTERVAL: &str = "1s";
/// The range of `rate()` windows in dashboard expressions (Grafana's
/// `$__rate_interval`): a few scrapes.
const RATE_WINDOW: &str = "10s";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_cluster_and_every_rule_and_panel_has_data() {
    if !prometheus_on_path() {
        return;
    }
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    cluster.wait_leader().await;
    for i in 0..3 {
        let key = format!("prometheus-{i}");
        cluster.client(i).put(&key, "v").await.expect("put");
        cluster
            .client(i)
            .get(&key, Consistency::Linearizable)
            .await
            .expect("get");
    }
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let targets: Vec<String> = cluster
        .members
        .iter()
        .map(|member| format!("\"{}\"", member.client_addr))
        .collect();
    let config = cluster.dir().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: {INTERVAL}\n  evaluation_interval: {INTERVAL}\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: raftd\n    static_configs:\n      \
             - targets: [{}]\n        labels:\n          cluster: test\n",
            deploy.join("prometheus/alerts.yml").display(),
            targets.join(", ")
        ),
    )
    .expect("write prometheus.yml");
    let server = PrometheusServer::start(&config, &cluster.dir().join("prometheus-data"));

    // Every member scraped at least a few times, so that rates have samples.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let up = server
            .query("count_over_time(up{job=\"raftd\"}[1m]) >= 4 and up == 1")
            .await;
        if up.as_array().map_or(0, Vec::len) == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape all 3 members: {up}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // One more write so that the latest rate windows see traffic.
    cluster
        .client(0)
        .put("prometheus-last", "v")
        .await
        .expect("put");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The rules: loaded, evaluated without error, and each side of an alert's
    // comparison has data.
    let deadline = Instant::now() + PATIENCE;
    let rules = loop {
        let rules = server.rules().await;
        if rules.iter().all(|rule| rule["health"] == "ok") {
            break rules;
        }
        assert!(
            Instant::now() < deadline,
            "rules not evaluated cleanly: {rules:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let alerts = std::fs::read_to_string(deploy.join("prometheus/alerts.yml")).expect("read");
    let defined = alerts
        .lines()
        .filter(|line| line.trim_start().starts_with("- alert:"))
        .count();
    assert_eq!(rules.len(), defined, "not every rule was loaded: {rules:?}");
    for rule in &rules {
        let query = rule["query"].as_str().expect("query");
        for side in comparison_sides(query) {
            let result = server.query(&side).await;
            assert!(
                result.as_array().is_some_and(|r| !r.is_empty()),
                "{}: `{side}` has no data (from `{query}`)",
                rule["name"]
            );
        }
    }

    // The dashboard: every panel query has data.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy.join("grafana/raftd-dashboard.json"))
            .expect("read the dashboard"),
    )
    .expect("dashboard JSON");
    let mut expressions = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default();
            expressions.push((title.to_owned(), target["expr"].as_str().expect("expr")));
        }
    }
    assert!(expressions.len() > 20, "too few panel queries");
    for (title, expr) in expressions {
        let query = expr
            .replace("$cluster", ".*")
            .replace("$instance", ".*")
            .replace("$__rate_interval", RATE_WINDOW);
        let result = server.query(&query).await;
        assert!(
            result.as_array().is_some_and(|r| !r.is_empty()),
            "panel {title:?}: `{query}` has no data"
        );
    }
}

/// The operands of the top-level comparison of an alert expression (the threshold
/// literal left out), or the whole expression when it compares nothing.
fn comparison_sides(query: &str) -> Vec<String> {
    let bytes = query.as_bytes();
    let (mut depth, mut quoted) = (0_i32, false);
    for (i, &byte) in bytes.iter().enumerate() {
        match byte {
            b'"' => quoted = !quoted,
            b'(' | b'{' | b'[' if !quoted => depth += 1,
            b')' | b'}' | b']' if !quoted => depth -= 1,
            b'<' | b'>' | b'=' | b'!' if !quoted && depth == 0 => {
                let width = if bytes.get(i + 1) == Some(&b'=') {
                    2
                } else {
                    1
                };
                let left = query[..i].trim().to_owned();
                let right = query[i + width..].trim();
                // `on (...)`, `ignoring (...)` and `bool` modify the operator.
                let right = right.strip_prefix("bool").unwrap_or(right).trim();
                let right = match right.split_once(')') {
                    Some((modifier, rest))
                        if modifier.starts_with("on") || modifier.starts_with("ignoring") =>
                    {
                        rest.trim()
                    }
                    _ => right,
                };
                let mut sides = vec![left];
                if right.parse::<f64>().is_err() {
                    sides.push(right.to_owned());
                }
                return sides;
            }
            _ => {}
        }
    }
    vec![query.to_owned()]
}

/// Whether `prometheus` can be run. Without it, fails if `RAFT_REQUIRE_PROMTOOL=1`,
/// else says on stderr that the test is skipped.
fn prometheus_on_path() -> bool {
    match Command::new("prometheus").arg("--version").output() {
        Ok(_) => true,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("RAFT_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
                "RAFT_REQUIRE_PROMTOOL=1 but prometheus is not on PATH \
                 (Debian: apt-get install prometheus)"
            );
            eprintln!(
                "NOTICE: prometheus is not on PATH, so the alerting rules and the \
                 dashboard are not checked against a real server (Debian: apt-get \
                 install prometheus)"
            );
            false
        }
        Err(error) => panic!("cannot run prometheus: {error}"),
    }
}

/// A `prometheus` process, killed when dropped.
struct PrometheusServer {
    child: Child,
    address: SocketAddr,
    log: PathBuf,
}

impl PrometheusServer {
    fn start(config: &Path, data: &Path) -> PrometheusServer {
        let address = free_tcp_port();
        let log = data.with_extension("log");
        let log_file = std::fs::File::create(&log).expect("create the prometheus log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start prometheus");
        PrometheusServer {
            child,
            address,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET` of an API path; `data` of a successful answer. Retries while the server
    /// starts.
    async fn get(&self, path_and_query: &str) -> Value {
        use http_body_util::{BodyExt, Empty};
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Empty<bytes::Bytes>>();
        let uri: http::Uri = format!("http://{}{path_and_query}", self.address)
            .parse()
            .expect("uri");
        let deadline = Instant::now() + PATIENCE;
        let response = loop {
            match client.get(uri.clone()).await {
                Ok(response) => break response,
                Err(error) => assert!(
                    Instant::now() < deadline,
                    "Prometheus does not answer: {error}\n{}",
                    self.log()
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let answer: Value = serde_json::from_slice(&body).expect("Prometheus answers JSON");
        assert_eq!(answer["status"], "success", "{path_and_query}: {answer}");
        answer["data"].clone()
    }

    /// The result of an instant query.
    async fn query(&self, query: &str) -> Value {
        let encoded = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", query)
            .finish();
        self.get(&format!("/api/v1/query?{encoded}")).await["result"].clone()
    }

    /// Every alerting rule, with its name, query, health and last error.
    async fn rules(&self) -> Vec<Value> {
        let data = self.get("/api/v1/rules?type=alert").await;
        data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
