//! The OCI image archive built by scripts/build-image.sh: its config is what
//! the Dockerfile declares, its root filesystem holds only the static binary
//! and the CA bundle, and that binary serves the shipped example from it.
//!
//! scripts/test.sh builds the archive and sets LIFEBOAT_IMAGE_ARCHIVE; a plain
//! `cargo test` without it says so loudly and checks nothing else.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::metrics;
use support::process::{free_port, Process};

const ARCHIVE_ENV: &str = "LIFEBOAT_IMAGE_ARCHIVE";

fn archive() -> Option<PathBuf> {
    let Some(path) = std::env::var_os(ARCHIVE_ENV) else {
        eprintln!("\n*** {ARCHIVE_ENV} is not set: the image test needs scripts/build-image.sh (scripts/test.sh runs it) ***\n");
        return None;
    };
    let path = PathBuf::from(path);
    assert!(path.is_file(), "{ARCHIVE_ENV}={} is not a file", path.display());
    Some(path)
}

fn run(command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
}

/// An OCI layout's blob by digest (`sha256:<hex>`), checked against its digest.
fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    use sha2::Digest as _;
    let hex = digest.strip_prefix("sha256:").unwrap_or_else(|| panic!("unsupported digest {digest}"));
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap_or_else(|e| panic!("blob {digest}: {e}"));
    assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), hex, "blob {digest} does not match its digest");
    bytes
}

fn json_blob(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&blob(layout, digest)).unwrap_or_else(|e| panic!("blob {digest} is not JSON: {e}"))
}

/// The ELF file asks for no program interpreter: it needs no library from the host.
fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(bytes[4], 2, "not a 64-bit ELF file");
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap()) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) != PT_INTERP
    })
}

fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn the_image_archive_serves_the_example_from_its_own_root_filesystem() {
    let Some(archive) = archive() else { return };
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    run(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&layout));

    let layout_marker: Value = serde_json::from_slice(&std::fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout_marker["imageLayoutVersion"], "1.0.0");
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().expect("index.json manifests");
    assert_eq!(manifests.len(), 1, "one image in the archive: {index}");
    assert!(manifests[0]["annotations"]["org.opencontainers.image.ref.name"].is_string(), "the image is tagged: {index}");
    // The descriptor carries the media type (the manifest's own field is optional, and umoci omits it).
    assert_eq!(manifests[0]["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let manifest = json_blob(&layout, manifests[0]["digest"].as_str().unwrap());
    assert_eq!(manifest["schemaVersion"], 2);

    let config = json_blob(&layout, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    let run_config = &config["config"];
    assert_eq!(run_config["User"], "65532:65532", "runs as a non-root numeric user");
    assert_eq!(run_config["Entrypoint"], serde_json::json!(["/usr/local/bin/lifeboat"]));
    assert_eq!(run_config["Cmd"], serde_json::json!(["serve"]));
    assert!(run_config["ExposedPorts"]["9847/tcp"].is_object(), "exposes 9847/tcp: {run_config}");
    let labels = &run_config["Labels"];
    for label in [
        "org.opencontainers.image.title",
        "org.opencontainers.image.source",
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.licenses",
    ] {
        assert!(labels[label].as_str().is_some_and(|v| !v.is_empty()), "label {label} missing: {labels}");
    }

    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let layers = manifest["layers"].as_array().expect("layers");
    assert!(!layers.is_empty());
    for layer in layers {
        assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
        let digest = layer["digest"].as_str().unwrap();
        blob(&layout, digest);
        let path = layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
        run(Command::new("tar").arg("-xzf").arg(&path).arg("-C").arg(&rootfs).arg("--no-same-owner"));
    }
    assert_eq!(files_under(&rootfs), ["etc/ssl/certs/ca-certificates.crt", "usr/local/bin/lifeboat"], "the image holds the binary and the CA bundle, nothing else (no shell)");
    let binary = rootfs.join("usr/local/bin/lifeboat");
    assert!(is_static_elf(&std::fs::read(&binary).unwrap()), "the image's binary must not need the host's dynamic loader");

    let port = free_port();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss");
    let mut serve = Command::new(&binary);
    serve.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--from-dump"]).arg(&example);
    let serve = Process::spawn("lifeboat (from the image)", serve, &dir.path().join("serve.log"));
    serve.wait_http_ok(&format!("http://127.0.0.1:{port}/readyz"), Duration::from_secs(30)).await;
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    let samples = metrics::parse(&body);
    assert_eq!(metrics::value(&samples, "lifeboat_node_lost", &[("node", "node-01-pve")]), Some(1.0), "{}", serve.log_tail(20));
    assert_eq!(metrics::value(&samples, "lifeboat_node_pinned_volumes", &[("node", "node-01-pve")]), Some(8.0));
}
