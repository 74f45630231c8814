//! The Kubernetes deployment (deploy/): the manifests are valid against Kubernetes' schemas
//! (deploy/validate.sh, when its tool is installed), and, with no tool at all, they agree with
//! the binaries they run and with each other: the plan in the ConfigMap is a valid plan, every
//! command line in the manifests is accepted by the real binary's argument parser, the agent and
//! the simulator start with them, the controller finds the agents where the headless Service
//! publishes them, and the token, results and TLS files are where the volumes put them.
//!
//! The manifests are read with yaml-rust2 into JSON values whose scalars are all text; a
//! manifest it cannot read fails the tests.
// std's Instant on purpose: it waits on real processes, which paused time cannot stand in for.
#![allow(clippy::disallowed_types)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

const NAMESPACE: &str = "stampede";

/// Files in deploy/k8s/base that kustomization.yaml leaves out on purpose.
const NOT_IN_KUSTOMIZATION: [&str; 2] = ["secret.yaml", "results-reader.yaml"];

/// The flags the manifests rely on, per binary: each must be accepted by that binary.
const AGENT_FLAGS: [&str; 7] = [
    "--listen",
    "--token-file",
    "--allow-target",
    "--id",
    "--tls-cert",
    "--tls-key",
    "--tls-client-ca",
];
const CONTROLLER_FLAGS: [&str; 9] = [
    "--plain",
    "--out",
    "--agent",
    "--token-file",
    "--tls-ca",
    "--tls-cert",
    "--tls-key",
    "--tls-domain",
    // Not a flag, but the subcommand every controller command line here starts with.
    "run",
];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn base() -> PathBuf {
    deploy().join("k8s/base")
}

fn mtls() -> PathBuf {
    deploy().join("k8s/overlays/mtls")
}

fn bin(name: &str) -> &'static str {
    match name {
        "agent" => env!("CARGO_BIN_EXE_agent"),
        "controller" => env!("CARGO_BIN_EXE_controller"),
        "sim" => env!("CARGO_BIN_EXE_sim"),
        other => panic!("no Stampede binary is called {other:?}"),
    }
}

// ---- reading the manifests ---------------------------------------------------------------------

/// The documents of a YAML stream, read by yaml-rust2 (YAML 1.2), as JSON values; empty
/// documents are left out. Every scalar reads as text, so the tests compare what the manifests
/// write whatever type YAML gives it: `replicas: 2` reads "2", `false` "false", `None` "None",
/// a float as written, an integer in decimal (`defaultMode: 0440`, octal to Kubernetes, reads
/// "440"). `~`, `null` and a missing value read `Null`. A file yaml-rust2 cannot read, or with a
/// key twice in a mapping, fails.
fn yaml_documents(text: &str, file: &str) -> Vec<Value> {
    YamlLoader::load_from_str(text)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .iter()
        .filter(|doc| !doc.is_null())
        .map(|doc| yaml_to_json(doc, file))
        .collect()
}

fn yaml_to_json(node: &Yaml, file: &str) -> Value {
    match node {
        Yaml::String(text) | Yaml::Real(text) => Value::String(text.clone()),
        Yaml::Integer(i) => Value::String(i.to_string()),
        Yaml::Boolean(b) => Value::String(b.to_string()),
        Yaml::Null => Value::Null,
        Yaml::Array(items) => Value::Array(items.iter().map(|i| yaml_to_json(i, file)).collect()),
        Yaml::Hash(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| match yaml_to_json(k, file) {
                    Value::String(key) => (key, yaml_to_json(v, file)),
                    other => panic!("{file}: a mapping key that is not a scalar: {other}"),
                })
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::BadValue => panic!("{file}: cannot read {node:?}"),
    }
}

/// Every document of every `.yaml` file in `dir` (not recursive), by file name.
fn read_dir_docs(dir: &Path) -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).expect("read a manifest");
        for doc in yaml_documents(&text, &path.display().to_string()) {
            docs.push((name.clone(), doc));
        }
    }
    docs
}

/// `v` at a dotted path (`spec.template.spec.containers.0.args`); `Null` when absent.
/// A key holding a dot writes it `\\.` (`data.plan\\.toml`).
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut keys = vec![String::new()];
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => keys.last_mut().unwrap().extend(chars.next()),
            '.' => keys.push(String::new()),
            c => keys.last_mut().unwrap().push(c),
        }
    }
    keys.iter().fold(v, |v, key| match key.parse::<usize>() {
        Ok(i) if v.is_array() => &v[i],
        _ => &v[key.as_str()],
    })
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string in {v:#}"))
}

fn strings(v: &Value, path: &str) -> Vec<String> {
    at(v, path)
        .as_array()
        .unwrap_or_else(|| panic!("{path} is not a list in {v:#}"))
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap_or_else(|| panic!("{path} holds a non-string {x}"))
                .to_string()
        })
        .collect()
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the manifests"))
}

fn container<'a>(pod_spec: &'a Value, name: &str) -> &'a Value {
    pod_spec["containers"]
        .as_array()
        .into_iter()
        .chain(pod_spec["initContainers"].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {pod_spec:#}"))
}

/// The value after `flag` in `args`, which must hold it exactly once.
fn flag<'a>(args: &'a [String], name: &str) -> &'a str {
    let all = flag_all(args, name);
    assert_eq!(all.len(), 1, "{name} given {} times in {args:?}", all.len());
    all[0]
}

fn flag_all<'a>(args: &'a [String], name: &str) -> Vec<&'a str> {
    args.iter()
        .enumerate()
        .filter(|(_, a)| *a == name)
        .map(|(i, _)| {
            args.get(i + 1)
                .unwrap_or_else(|| panic!("{name} has no value in {args:?}"))
                .as_str()
        })
        .collect()
}

/// The command line as Kubernetes runs it: `$(VAR)` is replaced by the container's variable of
/// that name (a `valueFrom` one by `sample`), `$$` by `$`.
fn expand(args: &[String], container: &Value, sample: &str) -> Vec<String> {
    let mut vars = Vec::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let value = e["value"].as_str().unwrap_or(sample).to_string();
        vars.push((s(e, "name").to_string(), value));
    }
    args.iter()
        .map(|a| {
            let mut out = a.replace("$$", "\u{0}");
            for (name, value) in &vars {
                out = out.replace(&format!("$({name})"), value);
            }
            assert!(
                !out.contains("$("),
                "{a:?} names a variable the container lacks"
            );
            out.replace('\u{0}', "$")
        })
        .collect()
}

/// The binary a container runs (its command's first word) and its whole argument list.
fn command_line(container: &Value) -> (String, Vec<String>) {
    let command = strings(container, "command");
    let binary = Path::new(&command[0])
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let mut args = command[1..].to_vec();
    if !at(container, "args").is_null() {
        args.extend(strings(container, "args"));
    }
    (binary, args)
}

/// Where in the container the file `key` of the Secret or ConfigMap `source` appears.
fn mounted_path(pod_spec: &Value, container: &Value, source: &str, key: &str) -> String {
    let volume = pod_spec["volumes"]
        .as_array()
        .expect("the pod has volumes")
        .iter()
        .find(|v| v["secret"]["secretName"] == source || v["configMap"]["name"] == source)
        .unwrap_or_else(|| panic!("no volume holds {source}"));
    let from = if volume["secret"].is_null() {
        &volume["configMap"]
    } else {
        &volume["secret"]
    };
    let file = match from["items"].as_array() {
        Some(items) => items
            .iter()
            .find(|i| i["key"] == key)
            .map(|i| s(i, "path").to_string())
            .unwrap_or_else(|| panic!("{source}'s volume does not project {key}")),
        None => key.to_string(),
    };
    let mount = container["volumeMounts"]
        .as_array()
        .expect("the container mounts volumes")
        .iter()
        .find(|m| m["name"] == volume["name"])
        .unwrap_or_else(|| panic!("the container does not mount {}", volume["name"]));
    format!("{}/{file}", s(mount, "mountPath"))
}

// ---- running the binaries, bounded -------------------------------------------------------------

/// Waits for `child` at most `limit`, killing it past that.
fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("poll a child").is_some() {
            return child.wait_with_output().expect("collect a child's output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect a child's output");
            panic!(
                "{what} did not finish within {limit:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_bounded(cmd: &mut Command, limit: Duration, what: &str) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    wait_bounded(child, limit, what)
}

/// Whether `binary`'s argument parser takes `args`: they are given with `--help` after them,
/// which the parser reaches (and answers with exit 0) only when every argument before it is a
/// known flag with a well-formed value.
fn assert_parser_accepts(binary: &str, args: &[String], file: &str) {
    let out = run_bounded(
        Command::new(bin(binary)).args(args).arg("--help"),
        Duration::from_secs(20),
        binary,
    );
    assert!(
        out.status.success(),
        "{file}: `{binary} {}` is refused by {binary}'s argument parser ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A started binary, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `binary` with `args` and returns it with the port of its `listening on ADDR` line.
fn start(binary: &str, args: &[String]) -> (Running, u16) {
    let mut child = Command::new(bin(binary))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(addr) = stampede_common::handshake::parse_listening_line(&line) {
                    // Keep stderr drained so the child never blocks on it.
                    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
                    return (running, addr.port());
                }
            }
            Err(_) => break,
        }
    }
    drop(running);
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err);
    panic!(
        "`{binary} {}` did not print `listening on ADDR`:\n{err}",
        args.join(" ")
    );
}

/// Sends SIGTERM, as Kubernetes does to stop a pod, and expects the process to exit soon.
fn assert_stops_on_sigterm(mut running: Running, what: &str) {
    let pid = running.0.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if running.0.try_wait().expect("poll").is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not exit within 10 s of SIGTERM (the pods' grace period is 30 s)");
}

/// `host:port` of an http(s) URL, the port defaulting to the scheme's.
fn host_port(url: &str) -> (String, u16) {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let authority = rest.split('/').next().unwrap();
    match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_ascii_lowercase(), p.parse().expect("a numeric port")),
        None => (
            authority.to_ascii_lowercase(),
            if scheme == "https" { 443 } else { 80 },
        ),
    }
}

fn plan_text(docs: &[(String, Value)]) -> String {
    s(find(docs, "ConfigMap", "stampede-plan"), "data.plan\\.toml").to_string()
}

// ---- the tests ---------------------------------------------------------------------------------

#[test]
fn the_yaml_reader_reads_what_the_manifests_use() {
    let text = "# c\na: 1\nb:\n  - x\n  - \"y: z\" # c\n  - k: v\n    l: w\n  -\n    m: n\nc:\n- p\nd: |\n  one\n\n  # two\n    three\ne: |-\n  last\nf: {}\ng: [\"a\", b]\nh: 'it''s'\ni: false\nj: 0.50\nk:\nl: None\n---\nz: 0\n---\n";
    let docs = yaml_documents(text, "inline");
    assert_eq!(docs.len(), 2);
    let expected = serde_json::json!({
        "a": "1",
        "b": ["x", "y: z", {"k": "v", "l": "w"}, {"m": "n"}],
        "c": ["p"],
        "d": "one\n\n# two\n  three\n",
        "e": "last",
        "f": {},
        "g": ["a", "b"],
        "h": "it's",
        "i": "false",
        "j": "0.50",
        "k": null,
        "l": "None",
    });
    assert_eq!(docs[0], expected);
    assert_eq!(docs[1], serde_json::json!({"z": "0"}));
}

/// Runs deploy/validate.sh, which checks every manifest and the kustomize output against
/// Kubernetes' OpenAPI schemas (strict). Skipped when its tool is not installed, unless
/// STAMPEDE_REQUIRE_K8S_VALIDATE is set (CI sets it).
#[test]
fn the_manifests_are_valid_against_the_kubernetes_schemas() {
    let out = run_bounded(
        Command::new("bash")
            .arg(deploy().join("validate.sh"))
            .arg("--no-install"),
        Duration::from_secs(60),
        "deploy/validate.sh",
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.code() == Some(77) {
        assert!(
            std::env::var_os("STAMPEDE_REQUIRE_K8S_VALIDATE").is_none(),
            "STAMPEDE_REQUIRE_K8S_VALIDATE is set but the validator is missing: run deploy/validate.sh to install it\n{text}"
        );
        eprintln!(
            "skipped: the Kubernetes schema validation (kubernetes-validate is not installed; install with deploy/validate.sh)"
        );
        return;
    }
    assert!(out.status.success(), "deploy/validate.sh failed:\n{text}");
    println!("{text}");
}

#[test]
fn every_manifest_is_in_the_namespace_and_in_the_kustomization() {
    let docs = read_dir_docs(&base());
    let mut files = BTreeSet::new();
    for (file, doc) in &docs {
        if file == "kustomization.yaml" {
            continue;
        }
        files.insert(file.clone());
        for field in ["apiVersion", "kind", "metadata.name"] {
            assert!(at(doc, field).is_string(), "{file}: no {field}");
        }
        if doc["kind"] == "Namespace" {
            assert_eq!(s(doc, "metadata.name"), NAMESPACE, "{file}");
        } else {
            assert_eq!(
                s(doc, "metadata.namespace"),
                NAMESPACE,
                "{file}: {} is not in the {NAMESPACE} namespace",
                s(doc, "metadata.name")
            );
        }
        assert_eq!(
            s(doc, "metadata.labels.app\\.kubernetes\\.io/part-of"),
            "stampede",
            "{file}: {} lacks the part-of label",
            s(doc, "metadata.name")
        );
    }
    let kustomization = &docs
        .iter()
        .find(|(f, _)| f == "kustomization.yaml")
        .expect("deploy/k8s/base/kustomization.yaml")
        .1;
    assert_eq!(s(kustomization, "namespace"), NAMESPACE);
    let listed: BTreeSet<String> = strings(kustomization, "resources").into_iter().collect();
    let expected: BTreeSet<String> = files
        .iter()
        .filter(|f| !NOT_IN_KUSTOMIZATION.contains(&f.as_str()))
        .cloned()
        .collect();
    assert_eq!(
        listed, expected,
        "kustomization.yaml must list every manifest but {NOT_IN_KUSTOMIZATION:?}"
    );
    // Every container runs the image kustomization.yaml retags.
    let image = s(kustomization, "images.0.name");
    for (file, doc) in &docs {
        let pod = if doc["kind"] == "Pod" {
            &doc["spec"]
        } else {
            at(doc, "spec.template.spec")
        };
        for c in pod["containers"]
            .as_array()
            .into_iter()
            .chain(pod["initContainers"].as_array())
            .flatten()
        {
            let name = s(c, "image").split(':').next().unwrap();
            assert_eq!(
                name, image,
                "{file}: container {} runs another image",
                c["name"]
            );
        }
    }
}

/// The flags (and the `run` subcommand) that containers running `binary` are given in `docs`.
fn used_flags(docs: &[(String, Value)], binary: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for (_, doc) in docs {
        let pod = at(doc, "spec.template.spec");
        for c in pod["containers"].as_array().into_iter().flatten() {
            if at(c, "command").is_null() {
                continue;
            }
            let (b, args) = command_line(c);
            if b == binary {
                used.extend(
                    args.into_iter()
                        .filter(|a| a.starts_with("--") || a == "run"),
                );
            }
        }
    }
    used
}

#[test]
fn the_plan_in_the_configmap_is_a_valid_plan_for_a_remote_target() {
    let docs = read_dir_docs(&base());
    let text = plan_text(&docs);
    let plan = stampede_common::plan::Plan::parse(&text, Path::new("plan-configmap.yaml"))
        .unwrap_or_else(|e| panic!("the plan in plan-configmap.yaml is not valid:\n{e}"));
    assert!(!plan.programs().is_empty(), "the plan has stages to run");
    let url = plan
        .target
        .base_url
        .as_deref()
        .expect("the plan names its target (a cluster has no built-in simulator to start)");
    assert!(url.starts_with("http://") || url.starts_with("https://"));

    // The controller reads it where the ConfigMap is mounted.
    let job = find(&docs, "Job", "stampede-run");
    let pod = at(job, "spec.template.spec");
    let controller = container(pod, "controller");
    let (_, args) = command_line(controller);
    let path = mounted_path(pod, controller, "stampede-plan", "plan.toml");
    assert_eq!(args[0], "run");
    assert_eq!(
        args[1], path,
        "the controller's plan is not the mounted one"
    );
}

#[test]
fn the_agent_command_lines_are_accepted_by_the_agent() {
    let base_docs = read_dir_docs(&base());
    let mtls_docs = read_dir_docs(&mtls());
    // The overlay's patch sets the args only: its variables are the base container's.
    let sts = find(&base_docs, "StatefulSet", "stampede-agent");
    let base_agent = container(at(sts, "spec.template.spec"), "agent");
    for (file, doc) in base_docs.iter().chain(&mtls_docs) {
        if doc["kind"] != "StatefulSet" {
            continue;
        }
        let c = container(at(doc, "spec.template.spec"), "agent");
        let args = expand(&strings(c, "args"), base_agent, "stampede-agent-0");
        assert_parser_accepts("agent", &args, file);
    }
    let mut used = used_flags(&base_docs, "agent");
    for (_, doc) in &mtls_docs {
        if doc["kind"] == "StatefulSet" {
            let c = container(at(doc, "spec.template.spec"), "agent");
            used.extend(
                strings(c, "args")
                    .into_iter()
                    .filter(|a| a.starts_with("--")),
            );
        }
    }
    let expected: BTreeSet<String> = AGENT_FLAGS.iter().map(|f| f.to_string()).collect();
    assert_eq!(used, expected, "the agent flags the manifests use");
}

#[test]
fn the_controller_command_lines_are_accepted_by_the_controller() {
    let base_docs = read_dir_docs(&base());
    let mtls_docs = read_dir_docs(&mtls());
    let mut used = used_flags(&base_docs, "controller");
    for (file, doc) in base_docs.iter().chain(&mtls_docs) {
        if doc["kind"] != "Job" {
            continue;
        }
        let c = container(at(doc, "spec.template.spec"), "controller");
        let args = expand(&strings(c, "args"), c, "unused");
        assert_parser_accepts("controller", &args, file);
        used.extend(
            args.into_iter()
                .filter(|a| a.starts_with("--") || a == "run"),
        );
    }
    let expected: BTreeSet<String> = CONTROLLER_FLAGS.iter().map(|f| f.to_string()).collect();
    assert_eq!(used, expected, "the controller flags the manifests use");
}

#[test]
fn the_overlay_adds_tls_flags_to_the_base_command_lines() {
    // A patch replaces a list whole, so the overlay repeats the base's arguments: they must not
    // drift apart.
    let base_docs = read_dir_docs(&base());
    let mtls_docs = read_dir_docs(&mtls());
    for (kind, name, container_name) in [
        ("StatefulSet", "stampede-agent", "agent"),
        ("Job", "stampede-run", "controller"),
    ] {
        let base_args = strings(
            container(
                at(find(&base_docs, kind, name), "spec.template.spec"),
                container_name,
            ),
            "args",
        );
        let patch = find(&mtls_docs, kind, name);
        let tls_args = strings(
            container(at(patch, "spec.template.spec"), container_name),
            "args",
        );
        assert_eq!(
            &tls_args[..base_args.len()],
            &base_args[..],
            "overlays/mtls: the {container_name}'s args must start with the base's"
        );
        let extra = &tls_args[base_args.len()..];
        assert!(
            extra.iter().any(|a| a.starts_with("--tls-")),
            "overlays/mtls adds no TLS flag to the {container_name}"
        );
        // Every file the TLS flags name is in the Secret the overlay mounts, and cert-manager.yaml
        // makes that Secret.
        let pod = at(patch, "spec.template.spec");
        let c = container(pod, container_name);
        let volume = &pod["volumes"][0];
        let secret = s(volume, "secret.secretName");
        let mount = s(c, "volumeMounts.0.mountPath");
        for pair in extra.chunks(2) {
            if pair[0] != "--tls-domain" {
                let file = pair[1]
                    .strip_prefix(&format!("{mount}/"))
                    .unwrap_or_else(|| {
                        panic!("{} {} is not in the mounted {secret}", pair[0], pair[1])
                    });
                assert!(
                    ["tls.crt", "tls.key", "ca.crt"].contains(&file),
                    "{} {}: cert-manager's Secrets hold tls.crt, tls.key and ca.crt",
                    pair[0],
                    pair[1]
                );
            }
        }
        assert!(
            mtls_docs
                .iter()
                .any(|(_, d)| d["kind"] == "Certificate" && at(d, "spec.secretName") == secret),
            "cert-manager.yaml makes no Secret {secret}"
        );
    }
    // The controller checks the agents' certificate under the name the agent certificate holds.
    let job = find(&mtls_docs, "Job", "stampede-run");
    let args = strings(
        container(at(job, "spec.template.spec"), "controller"),
        "args",
    );
    let domain = flag(&args, "--tls-domain");
    let cert = find(&mtls_docs, "Certificate", "stampede-agent-tls");
    assert!(
        strings(cert, "spec.dnsNames").iter().any(|n| n == domain),
        "--tls-domain {domain} is not among the agent certificate's dnsNames"
    );
}

#[test]
fn the_controller_finds_the_agents_where_the_headless_service_publishes_them() {
    let docs = read_dir_docs(&base());
    let service = find(&docs, "Service", "stampede-agent");
    let sts = find(&docs, "StatefulSet", "stampede-agent");
    let job = find(&docs, "Job", "stampede-run");

    // The Service is headless and publishes ready agents only.
    assert_eq!(s(service, "spec.clusterIP"), "None");
    assert_eq!(s(service, "spec.publishNotReadyAddresses"), "false");
    assert_eq!(
        at(service, "spec.selector"),
        at(sts, "spec.selector.matchLabels")
    );
    assert_eq!(s(sts, "spec.serviceName"), s(service, "metadata.name"));
    let port: u16 = s(service, "spec.ports.0.port").parse().unwrap();

    // The agents listen on every interface at that port, and are ready once it accepts.
    let pod = at(sts, "spec.template.spec");
    let agent = container(pod, "agent");
    let agent_args = strings(agent, "args");
    assert_eq!(flag(&agent_args, "--listen"), format!("0.0.0.0:{port}"));
    assert_eq!(s(agent, "ports.0.containerPort"), port.to_string());
    let target_port = s(service, "spec.ports.0.targetPort");
    assert_eq!(s(agent, "ports.0.name"), target_port);
    assert_eq!(s(agent, "readinessProbe.tcpSocket.port"), target_port);

    // The controller asks DNS for that Service's name in its namespace.
    let dns_name = format!(
        "{}.{NAMESPACE}.svc.cluster.local",
        s(service, "metadata.name")
    );
    let jpod = at(job, "spec.template.spec");
    let controller = container(jpod, "controller");
    let args = strings(controller, "args");
    assert_eq!(flag(&args, "--agent"), format!("dns:{dns_name}:{port}"));
    assert!(
        args.iter().any(|a| a == "--plain"),
        "the Job's log needs --plain"
    );

    // The init container waits for as many agents as the StatefulSet runs.
    let wait = container(jpod, "wait-for-agents");
    let env = |name: &str| {
        wait["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| s(e, "value").to_string())
            .unwrap_or_else(|| panic!("wait-for-agents has no {name}"))
    };
    assert_eq!(env("AGENT_SERVICE"), dns_name);
    assert_eq!(env("EXPECTED_AGENTS"), s(sts, "spec.replicas"));
    let script = strings(wait, "command");
    assert_eq!(
        script[1],
        mounted_path(jpod, wait, "stampede-wait-for-agents", "wait-for-agents.sh")
    );

    // One run, never retried, bounded in time.
    assert_eq!(s(job, "spec.backoffLimit"), "0");
    assert_eq!(s(jpod, "restartPolicy"), "Never");
    assert!(s(job, "spec.activeDeadlineSeconds").parse::<u64>().unwrap() > 0);

    // The only NetworkPolicy lets the controller's pods in on that port.
    let policy = find(&docs, "NetworkPolicy", "stampede-agent");
    assert_eq!(
        at(policy, "spec.podSelector.matchLabels"),
        at(sts, "spec.selector.matchLabels")
    );
    let from = at(policy, "spec.ingress.0.from.0.podSelector.matchLabels");
    for (k, v) in from.as_object().unwrap() {
        assert_eq!(&at(job, "spec.template.metadata.labels")[k.as_str()], v);
    }
    assert_eq!(s(policy, "spec.ingress.0.ports.0.port"), port.to_string());

    // Agents prefer distinct nodes.
    let term = at(
        pod,
        "affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution.0.podAffinityTerm",
    );
    assert_eq!(s(term, "topologyKey"), "kubernetes.io/hostname");
    assert_eq!(
        at(term, "labelSelector.matchLabels"),
        at(sts, "spec.selector.matchLabels")
    );
}

#[test]
fn the_token_results_and_target_are_where_the_command_lines_say() {
    let docs = read_dir_docs(&base());
    let secret = find(&docs, "Secret", "stampede-token");
    assert!(at(secret, "stringData.token").is_string());
    let sts = find(&docs, "StatefulSet", "stampede-agent");
    let job = find(&docs, "Job", "stampede-run");
    for (doc, name) in [(sts, "agent"), (job, "controller")] {
        let pod = at(doc, "spec.template.spec");
        let c = container(pod, name);
        let args = strings(c, "args");
        assert_eq!(
            flag(&args, "--token-file"),
            mounted_path(pod, c, "stampede-token", "token"),
            "the {name}'s --token-file is not the mounted token"
        );
    }

    // Results go to the claim.
    let pvc = find(&docs, "PersistentVolumeClaim", "stampede-results");
    let pod = at(job, "spec.template.spec");
    let controller = container(pod, "controller");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| at(v, "persistentVolumeClaim.claimName") == &pvc["metadata"]["name"])
        .expect("the Job mounts the results claim");
    let mount = controller["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the controller mounts the results volume");
    let args = strings(controller, "args");
    assert_eq!(flag(&args, "--out"), s(mount, "mountPath"));
    let reader = find(&docs, "Pod", "stampede-results-reader");
    assert_eq!(
        at(reader, "spec.volumes.0.persistentVolumeClaim.claimName"),
        &pvc["metadata"]["name"]
    );

    // The plan's target is one the agents may send to, and the demo simulator serves it.
    let plan = stampede_common::plan::Plan::parse(&plan_text(&docs), Path::new("plan.toml"))
        .expect("a valid plan");
    let (host, port) = host_port(plan.target.base_url.as_deref().unwrap());
    let agent_args = strings(container(at(sts, "spec.template.spec"), "agent"), "args");
    let allowed = flag_all(&agent_args, "--allow-target");
    assert!(
        allowed.iter().any(|a| match a.rsplit_once(':') {
            Some((h, p)) => h.eq_ignore_ascii_case(&host) && p == port.to_string(),
            None => a.eq_ignore_ascii_case(&host),
        }),
        "the plan's target {host}:{port} is not among the agents' --allow-target {allowed:?}"
    );
    let sim_service = find(&docs, "Service", "stampede-sim");
    assert_eq!(
        host,
        format!(
            "{}.{NAMESPACE}.svc.cluster.local",
            s(sim_service, "metadata.name")
        )
    );
    assert_eq!(s(sim_service, "spec.ports.0.port"), port.to_string());
    let sim = container(
        at(
            find(&docs, "Deployment", "stampede-sim"),
            "spec.template.spec",
        ),
        "sim",
    );
    let model = plan
        .target
        .model
        .as_deref()
        .expect("the plan names its model");
    let preset = flag(&strings(sim, "args"), "--preset").to_string();
    let presets = run_bounded(
        Command::new(bin("sim")).arg("--list-presets"),
        Duration::from_secs(20),
        "sim --list-presets",
    );
    let listing = String::from_utf8_lossy(&presets.stdout);
    let block = listing
        .split('\n')
        .skip_while(|l| !l.starts_with(&format!("{preset} ")))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        block.contains(&format!("model {model},")),
        "the simulator preset {preset} does not serve the plan's model {model}:\n{listing}"
    );
}

#[test]
fn every_pod_runs_as_non_root_on_a_read_only_root_filesystem() {
    let docs = read_dir_docs(&base());
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the Dockerfile sets USER")
        .split(':')
        .next()
        .unwrap()
        .trim()
        .to_string();
    for (file, doc) in &docs {
        let pod = match s(doc, "kind") {
            "Pod" => &doc["spec"],
            "StatefulSet" | "Deployment" | "Job" => at(doc, "spec.template.spec"),
            _ => continue,
        };
        assert_eq!(s(pod, "securityContext.runAsNonRoot"), "true", "{file}");
        assert_eq!(
            s(pod, "securityContext.runAsUser"),
            user,
            "{file}: not the image's user"
        );
        assert_eq!(
            s(pod, "securityContext.seccompProfile.type"),
            "RuntimeDefault",
            "{file}"
        );
        assert_eq!(s(pod, "automountServiceAccountToken"), "false", "{file}");
        for c in pod["containers"]
            .as_array()
            .into_iter()
            .chain(pod["initContainers"].as_array())
            .flatten()
        {
            let name = s(c, "name");
            let sc = &c["securityContext"];
            assert_eq!(s(sc, "readOnlyRootFilesystem"), "true", "{file}: {name}");
            assert_eq!(s(sc, "allowPrivilegeEscalation"), "false", "{file}: {name}");
            assert_eq!(strings(sc, "capabilities.drop"), ["ALL"], "{file}: {name}");
            for bound in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(
                        at(c, &format!("resources.{bound}.{resource}")).is_string(),
                        "{file}: {name} has no {bound}.{resource}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_dockerfile_builds_the_binaries_the_manifests_run() {
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("cargo build --release --locked"));
    for binary in ["controller", "agent", "sim"] {
        assert!(
            dockerfile.contains(&format!("--bin {binary}")),
            "the Dockerfile does not build {binary}"
        );
        assert!(
            dockerfile.contains(&format!("/out/{binary}")),
            "the Dockerfile does not copy {binary}"
        );
    }
    let ignore =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore"))
            .expect(".dockerignore at the repository root");
    for path in ["target/", ".git/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == path),
            ".dockerignore does not leave out {path}"
        );
    }
}

/// The agent starts with the StatefulSet's command line (only the port, for a free one, and the
/// token file's location changed), is reachable the way the readiness probe checks it, and
/// exits on SIGTERM.
#[test]
fn the_agent_starts_with_the_manifest_command_line() {
    let docs = read_dir_docs(&base());
    let sts = find(&docs, "StatefulSet", "stampede-agent");
    let pod = at(sts, "spec.template.spec");
    let c = container(pod, "agent");
    let token_path = mounted_path(pod, c, "stampede-token", "token");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    let args: Vec<String> = expand(&strings(c, "args"), c, "stampede-agent-0")
        .into_iter()
        .map(|a| {
            if a == token_path {
                token.display().to_string()
            } else if let Some(port) = a.strip_prefix("0.0.0.0:") {
                assert!(port.parse::<u16>().is_ok());
                "0.0.0.0:0".to_string()
            } else {
                a
            }
        })
        .collect();
    let (agent, port) = start("agent", &args);
    TcpStream::connect(("127.0.0.1", port)).expect("the readiness probe's TCP connect");
    assert_stops_on_sigterm(agent, "the agent");
}

/// The simulator starts with the Deployment's command line (a free port instead of its own) and
/// answers its readiness probe's HTTP GET with 200.
#[test]
fn the_demo_simulator_starts_with_the_manifest_command_line() {
    let docs = read_dir_docs(&base());
    let deployment = find(&docs, "Deployment", "stampede-sim");
    let c = container(at(deployment, "spec.template.spec"), "sim");
    let (binary, args) = command_line(c);
    assert_eq!(binary, "sim");
    assert_parser_accepts("sim", &args, "sim.yaml");
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            if a.starts_with("0.0.0.0:") {
                "0.0.0.0:0".to_string()
            } else {
                a
            }
        })
        .collect();
    let (sim, port) = start("sim", &args);
    let path = s(c, "readinessProbe.httpGet.path");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the simulator");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut status = String::new();
    BufReader::new(stream).read_line(&mut status).unwrap();
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "GET {path} answered {status:?}"
    );
    assert_stops_on_sigterm(sim, "the simulator");
}

/// The init container's script, run here against `localhost`: it succeeds once enough distinct
/// addresses resolve, and fails with a message when they do not by the deadline.
#[test]
fn the_wait_for_agents_script_counts_resolved_addresses() {
    let resolves = Command::new("getent")
        .args(["ahostsv4", "localhost"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !resolves {
        eprintln!("skipped: getent (glibc) is not available to resolve names here");
        return;
    }
    let docs = read_dir_docs(&base());
    let script = s(
        find(&docs, "ConfigMap", "stampede-wait-for-agents"),
        "data.wait-for-agents\\.sh",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wait-for-agents.sh");
    std::fs::write(&path, script).unwrap();
    let run = |expected: &str, wait: &str| {
        run_bounded(
            Command::new("sh")
                .arg(&path)
                .env("AGENT_SERVICE", "localhost")
                .env("EXPECTED_AGENTS", expected)
                .env("WAIT_SECONDS", wait),
            Duration::from_secs(20),
            "wait-for-agents.sh",
        )
    };
    let ok = run("1", "5");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("1 agents ready at localhost"));
    let short = run("1000", "0");
    assert_eq!(short.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("only 1 of 1000 agents ready"),
        "{}",
        String::from_utf8_lossy(&short.stderr)
    );
}
