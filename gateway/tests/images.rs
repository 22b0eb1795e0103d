//! The chart's images, built here as a user without a registry or a Docker engine
//! builds them (`charts/images/build.sh`: a Debian base from mmdebstrap, then buildah
//! over the same Dockerfiles as `docker build`), then run by containerd and runc as the
//! chart runs them: as user 65532 on a read-only root filesystem, with /tmp and the data
//! folder as volumes.
//!
//! Needs root, mmdebstrap, buildah, containerd and runc (`.ci/run` installs them).
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test: a failure here should fail the test loudly"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An OCI archive unpacked: its image config and its layers, unpacked in order.
struct Unpacked {
    config: Value,
    rootfs: PathBuf,
}

fn unpack(archive: &Path, into: &Path) -> Unpacked {
    let oci = into.join("oci");
    std::fs::create_dir_all(&oci).unwrap();
    run(Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(&oci));
    let blob = |digest: &str| {
        oci.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let read =
        |digest: &str| -> Value { serde_json::from_slice(&std::fs::read(blob(digest)).unwrap()).unwrap() };
    let index: Value = serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    let manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    let config = read(manifest["config"]["digest"].as_str().unwrap());
    let rootfs = into.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        // Layers are gzip-compressed tars; whiteouts do not occur in these images.
        run(Command::new("tar")
            .arg("-xzf")
            .arg(blob(layer["digest"].as_str().unwrap()))
            .arg("-C")
            .arg(&rootfs)
            .arg("--no-same-owner"));
    }
    Unpacked { config, rootfs }
}

/// A containerd of the test's own (root, state and socket in a temporary folder).
struct Containerd {
    child: Child,
    socket: PathBuf,
}

impl Containerd {
    fn start(dir: &Path) -> Self {
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{socket}\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                socket = socket.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !socket.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "containerd did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, socket }
    }

    fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "synco-images-test"]);
        cmd
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_charts_images_build_here_and_run_as_the_chart_runs_them() {
    let gateway_bin = PathBuf::from(common::binary());
    let bin_dir = gateway_bin.parent().unwrap().to_owned();
    assert!(
        bin_dir.join("synco-operator").exists(),
        "no synco-operator binary beside {} (cargo test --workspace builds it)",
        gateway_bin.display()
    );
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let tag = format!("test-{}", std::process::id());
    let started = Instant::now();
    let built = run(Command::new(common::repo_root().join("charts/images/build.sh"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .args(["--tag", &tag, "--out"])
        .arg(&out)
        .args(["operator", "gateway"]));
    println!(
        "images built in {:.1} s:\n{built}",
        started.elapsed().as_secs_f64()
    );

    // What the Dockerfiles say, in the images' configs; the binaries are the ones given.
    for (image, port) in [("operator", "9090/tcp"), ("gateway", "8080/tcp")] {
        let archive = out.join(format!("synco-{image}.tar"));
        assert!(
            built.contains(&format!("localhost/synco/synco-{image}:{tag}")),
            "{built}"
        );
        let unpacked = unpack(&archive, &work.path().join(image));
        let config = &unpacked.config["config"];
        assert_eq!(config["User"], "65532:65532", "{config}");
        assert_eq!(
            config["Entrypoint"],
            serde_json::json!([format!("/usr/local/bin/synco-{image}")]),
            "{config}"
        );
        assert!(config["ExposedPorts"].get(port).is_some(), "{config}");
        let inside = std::fs::read(unpacked.rootfs.join(format!("usr/local/bin/synco-{image}"))).unwrap();
        assert!(inside == std::fs::read(bin_dir.join(format!("synco-{image}"))).unwrap());
        // A slim Debian: the C library the binaries link, certificate roots, no docs.
        assert!(unpacked.rootfs.join("etc/debian_version").exists());
        assert!(unpacked.rootfs.join("etc/ssl/certs/ca-certificates.crt").exists());
        assert!(!unpacked.rootfs.join("usr/share/doc/bash").exists());
    }

    // Loaded into containerd, as a node's would be, and run as the chart runs them.
    let containerd = Containerd::start(work.path());
    for image in ["operator", "gateway"] {
        run(containerd
            .ctr()
            .args(["images", "import"])
            .arg(out.join(format!("synco-{image}.tar"))));
    }
    let operator = format!("localhost/synco/synco-operator:{tag}");
    let help = run(containerd.ctr().args([
        "run",
        "--rm",
        "--read-only",
        &operator,
        "operator-help",
        "/usr/local/bin/synco-operator",
        "--help",
    ]));
    assert!(help.contains("--metrics-reuse-port"), "{help}");

    // The main job in the image: standalone, the example co-op's manifests on a read-only
    // volume, its data (SQLite, the tiny model) on a writable one, /tmp a tmpfs, on the
    // host's network and loopback only. A key is made with the image's own binary on the
    // same volume, as the README says to make keys in a gateway pod.
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    run(Command::new("chown").arg("65532:65532").arg(&data));
    let port = common::free_port();
    let gateway = format!("localhost/synco/synco-gateway:{tag}");
    let volumes = |cmd: &mut Command| {
        let mount = |src: &Path, dst: &str, mode: &str| {
            format!("type=bind,src={},dst={dst},options=rbind:{mode}", src.display())
        };
        cmd.args(["run", "--rm", "--read-only", "--net-host"])
            .args(["--env", "SYNCO_DATA_DIR=/var/lib/synco"])
            .args(["--mount", &mount(&data, "/var/lib/synco", "rw")])
            .args([
                "--mount",
                &mount(
                    &common::repo_root().join("crds/examples"),
                    "/etc/synco/coop",
                    "ro",
                ),
            ])
            .args(["--mount", "type=tmpfs,src=tmpfs,dst=/tmp,options=nosuid:nodev"]);
    };
    let mut cmd = containerd.ctr();
    volumes(&mut cmd);
    let mut serving = cmd
        .args(["--env", &format!("SYNCO_LISTEN=127.0.0.1:{port}")])
        .args([&gateway, "gateway-serves", "/usr/local/bin/synco-gateway"])
        .args(["standalone", "--manifests", "/etc/synco/coop", "--tiny-model"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            break;
        }
        if let Some(status) = serving.try_wait().unwrap() {
            let mut log = String::new();
            std::io::Read::read_to_string(serving.stderr.as_mut().unwrap(), &mut log).unwrap();
            panic!("the gateway container exited ({status}):\n{log}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the gateway container never became ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "gateway container ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut cmd = containerd.ctr();
    volumes(&mut cmd);
    let key = run(cmd
        .args([&gateway, "gateway-keys", "/usr/local/bin/synco-gateway"])
        .args(["keys", "create", "--member", "bakery-coop"]));
    let answer = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key.trim())
        .json(&serde_json::json!({"model": "tiny-chat", "max_tokens": 4,
            "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion", "{answer}");
    // Everything it wrote is on the data volume, as user 65532.
    let written: Vec<_> = std::fs::read_dir(&data).unwrap().flatten().collect();
    assert!(
        written.iter().any(|e| e.file_name() == "tiny-model"),
        "{written:?}"
    );
    for entry in written {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            entry.metadata().unwrap().uid(),
            65532,
            "{}",
            entry.path().display()
        );
    }
    run(containerd
        .ctr()
        .args(["tasks", "kill", "--signal", "SIGTERM", "gateway-serves"]));
    let status = serving.wait().unwrap();
    assert!(
        status.success(),
        "the gateway did not stop cleanly on SIGTERM: {status}"
    );
}
