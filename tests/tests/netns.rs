//! Hosts on their own network: five `berth-agent`s, each in a network namespace of its own
//! joined to the test's bridge by a veth pair, reach `berth serve` at the bridge's address
//! only (it listens nowhere else) and run the seed's start and stop scripts against the
//! real Docker engine, one container per host on its own port. Mid-release one host's link
//! is cut: it fails with `step: report` once its phase deadline passes, the others finish
//! within the release's failure budget, and after the link is restored the host takes part
//! again.
//!
//! The registry stays on 127.0.0.1. Only the Docker engine talks to it, never the agent
//! (the agent runs `docker pull`, a request over the engine's unix socket, which reaches the
//! engine from any namespace), and the engine runs in the root namespace, so a registry at
//! the bridge address would still be reached from there and would prove nothing about the
//! hosts' links. It would also need TLS: the engine takes only 127.0.0.0/8 registries
//! without it, and a CA under /etc/docker/certs.d is machine-wide state that other tests
//! and users of the engine share. The engine does fetch its registry tokens from Berth at
//! the bridge address (the registry's token realm).

mod netns_run;

use std::time::Instant;

use netns_run::{HOSTS, Run};
use serde_json::json;

impl Run {
    /// Phase 3: with its link restored, the cut host takes the next release like the others.
    async fn the_restored_host_takes_the_next_release(&self, victim: usize) {
        let body = json!({ "application": "shop", "deployment": "web-v2", "group": "prod" });
        let id = self.release(body).await;
        let done = self.finished(&id).await;
        assert_eq!(done["status"], "succeeded", "{done:#}\n{}", self.logs());
        assert_eq!(Self::host(&done, &self.hosts[victim])["state"], "succeeded", "{done:#}");
        for i in 0..HOSTS {
            self.serves(i, "Alibaba Spring Sample! v2\n").await;
        }
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
    run.the_restored_host_takes_the_next_release(victim).await;
    eprintln!("netns test took {:?}", started.elapsed());
}
