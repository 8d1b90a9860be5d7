//! Hosts on their own network: one network namespace per host, each joined to a bridge of the
//! test's in the root namespace by a veth pair, with addresses in a private /24 that no other
//! interface of the machine uses. The bridge's own address is where the hosts reach what runs
//! in the root namespace (Berth). Cutting a host's link is `ip link set VETH down` on the
//! bridge side: the host keeps its address and routes but nothing gets through, as when a
//! cable or a switch port goes.
//!
//! Traffic from a namespace to the bridge address is local delivery in the root namespace
//! (iptables INPUT), not forwarding, so Docker's FORWARD policy DROP does not apply, even
//! with `bridge-nf-call-iptables` on, and no iptables rule is added (so none is left behind).
//!
//! Everything made (namespaces, links, the processes started in them) is removed when the
//! [`Network`] is dropped, including when the test panics. This is the one component a test
//! may skip: outside CI, where `ip netns add` is refused (not root), see [`Network::create`].

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::ChildGuard;

/// Networks made by this process so far (names and subnets include it).
static MADE: AtomicU32 = AtomicU32::new(0);

/// One host's end of the network.
pub struct NetHost {
    /// Its network namespace (`ip netns` name).
    pub netns: String,
    /// The bridge side of its veth pair, in the root namespace.
    pub veth: String,
    /// Its address (on `eth0` inside its namespace).
    pub address: Ipv4Addr,
}

/// A bridge and one namespace per host; removed with everything in it when dropped.
pub struct Network {
    /// The bridge (root namespace).
    pub bridge: String,
    /// The bridge's address: what the hosts reach the root namespace at.
    pub gateway: Ipv4Addr,
    /// The hosts, in the order asked for.
    pub hosts: Vec<NetHost>,
    /// Processes started in the namespaces (killed before the namespaces are deleted).
    processes: Vec<ChildGuard>,
    /// Whether the bridge was made (and so must be deleted).
    bridge_made: bool,
}

/// Why there is no network.
#[derive(Debug)]
pub enum Unavailable {
    /// `ip netns add` was refused (not root, or no CAP_SYS_ADMIN): the message `ip` printed.
    Refused(String),
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).stdin(Stdio::null()).output().expect("the `ip` command (iproute2)")
}

/// Runs `ip args`, panicking with its stderr unless it succeeds.
fn ip_ok(args: &[&str]) {
    let output = ip(args);
    assert!(output.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

/// A /24 in 10.0.0.0/8 that no address or route of the machine touches.
fn free_subnet(seed: u32) -> (u8, u8) {
    let used = format!(
        "{}{}",
        String::from_utf8_lossy(&ip(&["-4", "addr"]).stdout),
        String::from_utf8_lossy(&ip(&["-4", "route", "show", "table", "all"]).stdout)
    );
    (0..2000u32)
        .map(|n| seed.wrapping_add(n))
        .map(|n| ((200 + (n >> 8) % 50) as u8, (n & 0xff) as u8))
        .find(|(a, b)| !used.contains(&format!("10.{a}.{b}.")))
        .expect("a free 10.x.y.0/24")
}

impl Network {
    /// Makes a bridge and `count` (at most 9) namespaces, each with `eth0` on the bridge and
    /// `lo` up. `Err` only when the very first `ip netns add` is refused; any later failure
    /// panics (after removing what was made).
    pub fn create(count: usize) -> Result<Self, Unavailable> {
        assert!((1..=9).contains(&count), "1 to 9 hosts");
        let made = MADE.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Short: interface names are at most 15 bytes. The pid and the count make them unique
        // on the machine, between parallel test processes and within one.
        let tag = format!("{pid}{}", made % 10);
        let (a, b) = free_subnet(pid.wrapping_mul(7).wrapping_add(made));
        let mut network = Self {
            bridge: format!("bb{tag}"),
            gateway: Ipv4Addr::new(10, a, b, 1),
            hosts: Vec::new(),
            processes: Vec::new(),
            bridge_made: false,
        };
        for i in 1..=count {
            let host = NetHost {
                netns: format!("bn{tag}h{i}"),
                veth: format!("bv{tag}h{i}"),
                address: Ipv4Addr::new(10, a, b, 10 + i as u8),
            };
            let added = ip(&["netns", "add", &host.netns]);
            if !added.status.success() {
                let message = String::from_utf8_lossy(&added.stderr).trim().to_owned();
                assert!(i == 1, "ip netns add {}: {message}", host.netns);
                return Err(Unavailable::Refused(message));
            }
            network.hosts.push(host);
            if i == 1 {
                network.bridge_made = ip(&["link", "add", &network.bridge, "type", "bridge"]).status.success();
                assert!(network.bridge_made, "ip link add {} type bridge", network.bridge);
                ip_ok(&["addr", "add", &format!("{}/24", network.gateway), "dev", &network.bridge]);
                ip_ok(&["link", "set", &network.bridge, "up"]);
            }
            let host = network.hosts.last().expect("just pushed");
            ip_ok(&["link", "add", &host.veth, "type", "veth", "peer", "name", "eth0", "netns", &host.netns]);
            ip_ok(&["link", "set", &host.veth, "master", &network.bridge, "up"]);
            ip_ok(&["-n", &host.netns, "addr", "add", &format!("{}/24", host.address), "dev", "eth0"]);
            ip_ok(&["-n", &host.netns, "link", "set", "eth0", "up"]);
            ip_ok(&["-n", &host.netns, "link", "set", "lo", "up"]);
        }
        Ok(network)
    }

    /// [`Network::create`], or `None` with a printed reason when namespaces are refused
    /// outside CI. Under CI (`CI` set) a refusal fails the test: there it must run.
    pub fn create_or_skip(count: usize, test: &str) -> Option<Self> {
        match Self::create(count) {
            Ok(network) => Some(network),
            Err(Unavailable::Refused(message)) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "{test}: `ip netns add` was refused under CI ({message}); this test needs root"
                );
                // Straight to stderr: the test harness captures `eprintln!` of a passing test,
                // and a skip must be seen.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: `ip netns add` was refused ({message}); it needs root (it never skips under CI)"
                );
                None
            }
        }
    }

    /// `program` to be run in host `i`'s namespace (`ip netns exec` execs it, so the child
    /// is the program itself).
    pub fn command_in(&self, i: usize, program: &std::path::Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.hosts[i].netns]).arg(program);
        command
    }

    /// Starts `command` (from [`Network::command_in`]) and keeps it until the network is
    /// dropped. Returns its pid.
    pub fn spawn(&mut self, mut command: Command) -> u32 {
        let child = command.spawn().expect("start a process in a namespace");
        let pid = child.id();
        self.processes.push(ChildGuard(child));
        pid
    }

    /// Kills the process `pid` started with [`Network::spawn`] (an agent that must stop).
    pub fn kill(&mut self, pid: u32) {
        self.processes.retain(|child| child.0.id() != pid);
    }

    /// Whether process `pid` (started with [`Network::spawn`]) has exited: gone, or a zombie
    /// waiting to be reaped when the network is dropped.
    pub fn exited(&self, pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the command name, which is in parentheses and may hold spaces.
            Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        }
    }

    /// Whether process `pid` runs in host `i`'s namespace (and so not in ours).
    pub fn runs_in(&self, pid: u32, i: usize) -> bool {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        let inode = std::fs::metadata(format!("/run/netns/{}", self.hosts[i].netns)).map(|m| m.ino()).ok();
        matches!((theirs, inode), (Some(link), Some(ino)) if link.to_string_lossy() == format!("net:[{ino}]"))
    }

    /// Cuts host `i`'s link (the bridge side goes down).
    pub fn cut(&self, i: usize) {
        ip_ok(&["link", "set", &self.hosts[i].veth, "down"]);
    }

    /// Restores host `i`'s link.
    pub fn restore(&self, i: usize) {
        ip_ok(&["link", "set", &self.hosts[i].veth, "up"]);
    }

    /// Whether host `i` has an established TCP connection to `to` (seen from its namespace).
    pub fn connected(&self, i: usize, to: std::net::SocketAddr) -> bool {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].netns, "ss", "-Htn", "state", "established", "dst", &to.to_string()])
            .output()
            .expect("ss (iproute2)");
        output.status.success() && !String::from_utf8_lossy(&output.stdout).trim().is_empty()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Processes first: a namespace with a process in it outlives `ip netns del`, and
        // with it the veth pair. Then whatever else runs there (a script's children).
        self.processes.clear();
        for host in &self.hosts {
            let pids = ip(&["netns", "pids", &host.netns]);
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).output();
            }
            let _ = ip(&["netns", "del", &host.netns]);
            // Gone with its peer when the namespace went; deleted here in case it did not.
            let _ = ip(&["link", "del", &host.veth]);
        }
        if self.bridge_made {
            let _ = ip(&["link", "del", &self.bridge]);
        }
    }
}
