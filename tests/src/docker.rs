//! The Docker engine as tests use it: the CLI, images built on the spot (FROM scratch with
//! Debian's static busybox serving `/hello`, nothing pulled from outside), the seed's start
//! and stop scripts, and guards that remove what a test made.

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs the docker CLI (with `config` as `DOCKER_CONFIG` if given); panics with its output
/// unless it succeeds. Returns stdout.
pub fn docker(args: &[&str], config: Option<&Path>) -> String {
    let mut command = Command::new("docker");
    if let Some(config) = config {
        command.env("DOCKER_CONFIG", config);
    }
    let output = command.args(args).env("DOCKER_BUILDKIT", "0").output().expect("docker CLI");
    assert!(
        output.status.success(),
        "docker {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `docker login` into `config` with the password on stdin (never in argv).
pub fn docker_login(config: &Path, host: &str, username: &str, password: &str) {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args(["login", "--username", username, "--password-stdin", host])
        .env("DOCKER_CONFIG", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker CLI");
    child.stdin.take().expect("stdin").write_all(password.as_bytes()).expect("write the password");
    let output = child.wait_with_output().expect("docker login");
    assert!(output.status.success(), "docker login: {}", String::from_utf8_lossy(&output.stderr));
}

/// Builds a FROM-scratch busybox image serving `page` at `/hello` on port 8080 as `address`
/// (in `dir`), pushes it with `username`/`push_key`, and removes it locally so that an agent
/// really pulls it.
pub fn build_and_push(dir: &Path, address: &str, page: &str, username: &str, push_key: &str) {
    let context = build_image(dir, address, page);
    let config = context.join("docker-config");
    std::fs::create_dir_all(&config).expect("docker config dir");
    let registry = address.split('/').next().expect("registry host");
    docker_login(&config, registry, username, push_key);
    docker(&["push", address], Some(&config));
    docker(&["rmi", address], None);
}

/// Builds the FROM-scratch busybox image serving `page` at `/hello` as `address`, in a new
/// folder under `dir`, which it answers.
pub fn build_image(dir: &Path, address: &str, page: &str) -> std::path::PathBuf {
    let context = dir.join(format!("image-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(context.join("www")).expect("image context");
    std::fs::copy("/bin/busybox", context.join("busybox")).expect("busybox-static is missing: run `make deps`");
    std::fs::write(context.join("www/hello"), page).expect("page");
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\nEXPOSE 8080\n\
         ENTRYPOINT [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    )
    .expect("Dockerfile");
    // No cache: tests build alike images in parallel and `docker rmi` theirs, which with the
    // legacy builder can delete a cached step another build is using.
    docker(&["build", "--no-cache", "-q", "-t", address, context.to_str().expect("UTF-8 path")], None);
    context
}

/// The seed's start script for every host of a group: the agent has pulled `image`; each
/// host runs its own container, `{container_prefix}-$BERTH_HOST`, published on its own port
/// (`ports`: host id and port), as hosts that share one Docker engine must.
pub fn seed_start_script(image: &str, container_prefix: &str, ports: &[(String, u16)]) -> String {
    let ports: Vec<String> = ports.iter().map(|(host, port)| format!("[{host}]={port}")).collect();
    format!(
        "### The Docker image is pulled by the agent before this runs.\n\
         declare -A ports=({})\n\
         function start_application() {{\n  image_name=\"{image}\"\n  container_name=\"{container_prefix}-$BERTH_HOST\"\n  \
         port=\"${{ports[$BERTH_HOST]}}\"\n  \
         docker run -d -p ${{port}}:8080 --name ${{container_name}} ${{image_name}}\n}}\n\nstart_application\n",
        ports.join(" ")
    )
}

/// The seed's stop script: removes the host's container if present, succeeds if not.
pub fn seed_stop_script(container_prefix: &str) -> String {
    format!(
        "function stop_application() {{\n  container_name=\"{container_prefix}-$BERTH_HOST\"\n  \
         container_id=$(docker ps -aq -f name=^${{container_name}}$)\n  if [ -n \"$container_id\" ]; then\n    \
         docker rm -f $container_id\n  fi\n}}\n\nstop_application\n"
    )
}

/// Removes containers and then images when dropped, whatever the test's outcome.
#[derive(Default)]
pub struct DockerLeftovers {
    /// Container names.
    pub containers: Vec<String>,
    /// Image references (what agents pulled into the engine).
    pub images: Vec<String>,
}

impl Drop for DockerLeftovers {
    fn drop(&mut self) {
        for container in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", container]).output();
        }
        for image in &self.images {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}
