//! The Debian `docker-registry` (distribution 2.8) delegating its auth to Berth, and small
//! OCI images built on the spot (nothing is pulled from outside).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_shared::platform::digest::sha256_hex;

use crate::{ChildGuard, free_port, wait_for_port};

/// A running registry.
pub struct Registry {
    /// `127.0.0.1:PORT`, as clients name it.
    pub host: String,
    /// Its log file.
    pub log: PathBuf,
    _child: ChildGuard,
}

/// The registry's `service` in tests (Berth's `BERTH_REGISTRY_SERVICE`).
pub const SERVICE: &str = "berth-registry";

impl Registry {
    /// Starts `docker-registry serve` on `port` with token auth: `realm` is Berth's token
    /// endpoint, `certificate` Berth's signing certificate.
    pub fn start(dir: &Path, port: u16, realm: &str, certificate: &Path) -> Self {
        Self::try_start(dir, port, realm, certificate).unwrap_or_else(|| {
            panic!("docker-registry did not answer on port {port}: another process took the port it was picked for")
        })
    }

    /// [`Registry::start`], or none when what answers on `port` is not this registry: a port
    /// picked free before the registry starts can be taken meanwhile by a server of another
    /// test binding port 0 (seen in CI as a 404 from the registry's `/v2/`).
    pub fn try_start(dir: &Path, port: u16, realm: &str, certificate: &Path) -> Option<Self> {
        let binary = Path::new("/usr/bin/docker-registry");
        assert!(binary.exists(), "docker-registry is missing: run `make deps`");
        let config = dir.join("registry.yml");
        let storage = dir.join("registry-data");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: info}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
                 http: {{addr: 127.0.0.1:{port}}}\nauth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: berth\n    rootcertbundle: {}\n",
                storage.display(),
                certificate.display()
            ),
        )
        .expect("write registry config");
        let log = dir.join("registry.log");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("registry log"))
            .spawn()
            .expect("start docker-registry");
        let mut child = ChildGuard(child);
        wait_for_port(port, Duration::from_secs(10), "docker-registry");
        // This registry asks for a token at `/v2/` (401); anything else, or the registry
        // gone (its port taken), is another process.
        let started = std::time::Instant::now();
        loop {
            if child.0.try_wait().ok().flatten().is_some() {
                return None;
            }
            match status_of_v2(port) {
                Some(401) => break,
                Some(_) => return None,
                None if started.elapsed() > Duration::from_secs(10) => return None,
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        Some(Self { host: format!("127.0.0.1:{port}"), log, _child: child })
    }

    /// A free port for a registry started later (Berth needs to know it first).
    pub fn pick_port() -> u16 {
        free_port()
    }
}

/// The status of `GET /v2/` on `port`, if something answers HTTP there.
fn status_of_v2(port: u16) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()
}

/// Writes an OCI image layout at `dir` with one tag: a single uncompressed layer holding
/// `hello.txt` with `content`. Returns the manifest digest.
pub fn oci_image(dir: &Path, tag: &str, content: &str) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("layout dirs");
    let put = |bytes: &[u8]| {
        let digest = sha256_hex(bytes);
        std::fs::write(blobs.join(&digest), bytes).expect("write blob");
        (format!("sha256:{digest}"), bytes.len())
    };
    let layer = tar_with_one_file("hello.txt", content.as_bytes());
    let (layer_digest, layer_size) = put(&layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] }, "config": {}
    });
    let (config_digest, config_size) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size }]
    });
    let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size,
            "annotations": { "org.opencontainers.image.ref.name": tag }
        }]
    });
    std::fs::write(dir.join("index.json"), index.to_string()).expect("index");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    manifest_digest
}

/// A ustar archive with one regular file.
fn tar_with_one_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{:011o}\0", content.len()).as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Runs `skopeo` with `args`; returns (success, stderr).
pub fn skopeo(args: &[&str]) -> (bool, String) {
    let output = Command::new("skopeo").args(args).output().expect("skopeo is missing: run `make deps`");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Blobs of an OCI layout being written.
struct Blobs(std::path::PathBuf);

impl Blobs {
    fn new(dir: &Path) -> Self {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).expect("layout dirs");
        Self(blobs)
    }

    /// Writes a blob; returns its descriptor with `media_type`.
    fn put(&self, media_type: &str, bytes: &[u8]) -> serde_json::Value {
        let digest = sha256_hex(bytes);
        std::fs::write(self.0.join(&digest), bytes).expect("write blob");
        serde_json::json!({ "mediaType": media_type, "digest": format!("sha256:{digest}"), "size": bytes.len() })
    }
}

fn write_index(dir: &Path, tag: &str, mut top: serde_json::Value) {
    top["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": tag });
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [top] });
    std::fs::write(dir.join("index.json"), index.to_string()).expect("index");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
}

/// Writes an OCI layout whose tag is an image index of one image per `platforms` entry
/// (`(os, architecture)`), for `skopeo copy --all`.
pub fn oci_multi_platform(dir: &Path, tag: &str, platforms: &[(&str, &str)]) {
    let blobs = Blobs::new(dir);
    let mut manifests = Vec::new();
    for (os, architecture) in platforms {
        let layer = blobs
            .put("application/vnd.oci.image.layer.v1.tar", &tar_with_one_file("hello.txt", architecture.as_bytes()));
        let config = serde_json::json!({ "architecture": architecture, "os": os, "rootfs": { "type": "layers", "diff_ids": [layer["digest"]] }, "config": {} });
        let config = blobs.put("application/vnd.oci.image.config.v1+json", config.to_string().as_bytes());
        let manifest = serde_json::json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": [layer] });
        let mut descriptor = blobs.put("application/vnd.oci.image.manifest.v1+json", manifest.to_string().as_bytes());
        descriptor["platform"] = serde_json::json!({ "os": os, "architecture": architecture });
        manifests.push(descriptor);
    }
    let index = serde_json::json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests });
    write_index(dir, tag, blobs.put("application/vnd.oci.image.index.v1+json", index.to_string().as_bytes()));
}

/// Writes an OCI layout whose tag is a Helm chart as `helm push` stores it (Helm config and
/// chart content media types).
pub fn oci_helm_chart(dir: &Path, tag: &str, name: &str) {
    let blobs = Blobs::new(dir);
    let config = serde_json::json!({ "name": name, "version": tag, "apiVersion": "v2" });
    let config = blobs.put("application/vnd.cncf.helm.config.v1+json", config.to_string().as_bytes());
    let chart = tar_with_one_file(&format!("{name}/Chart.yaml"), format!("name: {name}\nversion: {tag}\n").as_bytes());
    let layer = blobs.put("application/vnd.cncf.helm.chart.content.v1.tar+gzip", &chart);
    let manifest = serde_json::json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": [layer] });
    write_index(dir, tag, blobs.put("application/vnd.oci.image.manifest.v1+json", manifest.to_string().as_bytes()));
}
