//! Hosts on their own network: five `berth-agent`s, each in a network namespace of its own
//! joined to the test's bridge by a veth pair, reach `berth serve` at the bridge's address
//! only (it listens nowhere else) and run the seed's start and stop scripts against the
//! real Docker engine, one container per host on its own port. Mid-release one host's link
//! is cut: it fails with `step: report` once its phase deadline passes, the others finish
//! within the release's failure budget, and after the link is restored the host converges
//! to the release it missed by itself, without anyone starting one. Then another host is
//! removed from the group while its agent runs: it is refused and is not in the next plan.
//!
//! The registry stays on 127.0.0.1. Only the Docker engine talks to it, never the agent
//! (the agent runs `docker pull`, a request over the engine's unix socket, which reaches the
//! engine from any namespace), and the engine runs in the root namespace, so a registry at
//! the bridge address would still be reached from there and would prove nothing about the
//! hosts' links. It would also need TLS: the engine takes only 127.0.0.0/8 registries
//! without it, and a CA under /etc/docker/certs.d is machine-wide state that other tests
//! and users of the engine share. The engine does fetch its registry tokens from Berth at
//! the bridge address (the registry's token realm).

#[path = "netns_run/mod.rs"]
mod netns_run;

use std::time::{Duration, Instant};

use netns_run::{HOSTS, Run};
use serde_json::{Value, json};

impl Run {
    /// Phase 3: with its link restored, the cut host converges by itself (nobody starts a
    /// release) to the revision of the group's last release, which succeeded without it:
    /// it polls again behind that release and gets it as a one-host release of its own.
    async fn the_restored_host_converges(&self, victim: usize) {
        let host = &self.hosts[victim];
        let start = Instant::now();
        while self.runs(host).await.as_deref() != Some("web-v2") {
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "{host} never converged to web-v2 (the group shows {:?})\n{}",
                self.instance(host).await,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for i in 0..HOSTS {
            self.serves(i, "Alibaba Spring Sample! v2\n").await;
        }
        let instance = self.instance(host).await.unwrap();
        assert!(instance["convergence"].is_string(), "its convergence is on the group: {instance}");
        assert_eq!(
            (instance["runs"]["deployment"].as_str(), instance["ran_before"]["deployment"].as_str()),
            (Some("web-v2"), Some("web-v1")),
            "the group shows what the host runs and ran before: {instance}"
        );
        let group = self.get("/v1/applications/shop/groups/prod").await;
        assert_eq!(group["active_release"], Value::Null, "a convergence is the host's own, not the group's: {group}");
    }

    /// Phase 4: another host is removed from the group while its agent still runs: its host
    /// token is refused, its agent cannot register its way back with the join token it
    /// holds, the group no longer lists it, and the next plan does not include it.
    async fn a_removed_host_is_not_in_the_next_plan(&self, victim: usize) {
        let removed = (0..HOSTS).find(|i| *i != victim).unwrap();
        let host = &self.hosts[removed];
        let saved = self.dir.path().join(format!("agent-state-{host}/host-token.json"));
        let saved: Value = serde_json::from_slice(&std::fs::read(saved).unwrap()).unwrap();
        let host_token = saved["host_token"].as_str().unwrap().to_owned();

        let path = format!("/v1/applications/shop/groups/prod/instances/{host}");
        let (status, answer) = self.call(reqwest::Method::DELETE, &path, None).await;
        assert_eq!(status, 204, "DELETE {path}: {answer}");
        let url = format!("{}/v1/agent/jobs?wait_seconds=1", self.berth.url);
        let refused = self.api.http.get(url).bearer_auth(&host_token).send().await.unwrap();
        assert_eq!(refused.status(), 401, "a removed host's token stops working");
        // Refused at its next poll, the agent may not register again with the join token it
        // holds (only a rotated one lets a removed host back), so it gives up.
        let start = Instant::now();
        while !self.network.exited(self.agents[removed]) {
            assert!(start.elapsed() < Duration::from_secs(60), "{host}'s agent kept going\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let log = std::fs::read_to_string(self.agent_log(removed)).unwrap();
        assert!(log.contains("host token refused") && log.contains("host_removed"), "{log}");
        assert_eq!(self.instance(host).await, None, "the group no longer lists {host}");

        let body = json!({ "application": "shop", "deployment": "web-v2", "group": "prod", "batches": 2 });
        let plan = self.post("/v1/releases?dry_run=true", body).await;
        let mut planned: Vec<String> =
            serde_json::from_value::<Vec<Vec<String>>>(plan["batches"].clone()).unwrap().concat();
        planned.sort();
        let others: Vec<String> = self.hosts.iter().filter(|h| *h != host).cloned().collect();
        assert_eq!(planned, others, "{host} is not in the next plan, every other host is: {plan}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_in_their_own_network_namespaces_release_through_a_cut_link() {
    let started = Instant::now();
    let Some(run) = Run::start("hosts_in_their_own_network_namespaces_release_through_a_cut_link").await else {
        return;
    };
    run.everyone_gets_v1().await;
    let victim = run.v2_with_a_cut_link().await;
    run.the_restored_host_converges(victim).await;
    run.a_removed_host_is_not_in_the_next_plan(victim).await;
    eprintln!("netns test took {:?}", started.elapsed());
}
