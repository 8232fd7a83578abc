//! The fleet's files in `docker/`, checked offline since neither Docker nor Kubernetes runs
//! here: the Kubernetes manifests against the schemas `kubernetes-validate` carries, the
//! compose file against the compose spec, HAProxy's config with `haproxy -c`, the alert rules
//! with `promtool` (checked and unit-tested), the Grafana provisioning parsed, and every
//! floodgate config among them through `floodgate -t`. The Python tools are installed into
//! `target/tools` by `make test-deps`.

use crate::common::*;
use serde_yaml::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn docker(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docker").join(path)
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(docker(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A tool `make test-deps` installed: into `target/tools` (Python ones) or from Debian.
fn tool(name: &str) -> Command {
    let venv = std::env::var_os("FLOODGATE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin"));
    let path = [
        venv.join(name),
        PathBuf::from("/usr/bin").join(name),
        PathBuf::from("/usr/sbin").join(name),
    ]
    .into_iter()
    .find(|p| p.exists())
    .unwrap_or_else(|| panic!("{name} is not installed: run `make test-deps`"));
    Command::new(path)
}

/// Runs it: (success, stdout + stderr).
fn run(mut command: Command) -> (bool, String) {
    let out = command.output().expect("run tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn kubernetes_validate(files: &[PathBuf]) -> (bool, String) {
    let mut command = tool("kubernetes-validate");
    command.args(["--strict", "--quiet"]).args(files);
    run(command)
}

fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(value, |v, key| match key.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[key],
    })
}

#[test]
fn kubernetes_manifests_validate_and_the_kustomization_names_only_files_that_exist() {
    let kustomization = yaml("kubernetes/kustomization.yaml");
    let resources: Vec<PathBuf> = kustomization["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| docker("kubernetes").join(r.as_str().expect("a file name")))
        .collect();
    for r in &resources {
        assert!(
            r.exists(),
            "kustomization.yaml names {} which does not exist",
            r.display()
        );
    }
    let on_disk: BTreeSet<PathBuf> = std::fs::read_dir(docker("kubernetes"))
        .expect("docker/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    assert_eq!(
        on_disk,
        resources.iter().cloned().collect(),
        "every manifest is in the kustomization"
    );
    let (ok, out) = kubernetes_validate(&resources);
    assert!(ok, "{out}");

    // The validator has schemas and reads them: a misspelt field fails it.
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("deployment.yaml");
    let text = std::fs::read_to_string(docker("kubernetes/deployment.yaml")).expect("deployment");
    std::fs::write(
        &broken,
        text.replace("readOnlyRootFilesystem", "readOnlyRootFilesytem"),
    )
    .expect("write");
    let (ok, out) = kubernetes_validate(&[broken]);
    assert!(!ok && out.contains("readOnlyRootFilesytem"), "{out}");
}

#[test]
fn the_deployment_drains_inside_its_grace_period_and_probes_the_admin_listener() {
    let config_text = yaml("kubernetes/configmap.yaml")["data"]["floodgate.yaml"]
        .as_str()
        .expect("floodgate.yaml in the ConfigMap")
        .to_string();
    let env = [
        ("FG_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ("FG_ADMIN_TOKEN", "0123456789abcdef0123"),
        ("FG_REDIS_URL", "redis://127.0.0.1:6379/0"),
    ];
    let (ok, out) = check_config(&config_text, &env);
    assert!(ok, "the ConfigMap's config: {out}");
    let config: Value = serde_yaml::from_str(&config_text).expect("config");

    let deployment = yaml("kubernetes/deployment.yaml");
    let pod = at(&deployment, "spec.template.spec");
    let container = at(pod, "containers.0");
    let seconds = |v: &Value| v.as_u64().expect("seconds");
    let drain = seconds(at(container, "lifecycle.preStop.sleep.seconds"))
        + seconds(&config["grace_period_seconds"])
        + seconds(&config["graceful_shutdown_timeout_seconds"]);
    let budget = seconds(&pod["terminationGracePeriodSeconds"]);
    assert!(
        budget > drain,
        "terminationGracePeriodSeconds {budget} <= preStop + drain {drain}"
    );

    let admin_port = config["admin"]["listen"]
        .as_str()
        .and_then(|l| l.rsplit(':').next())
        .expect("admin port");
    let port_named = |name: &str| {
        container["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["containerPort"].as_u64().expect("port").to_string())
    };
    assert_eq!(port_named("admin").as_deref(), Some(admin_port));
    assert_eq!(at(container, "readinessProbe.httpGet.path"), "/ready");
    assert_eq!(at(container, "livenessProbe.httpGet.path"), "/health");
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(at(container, &format!("{probe}.httpGet.port")), "admin");
    }
    assert_eq!(
        at(container, "securityContext.readOnlyRootFilesystem").as_bool(),
        Some(true)
    );
    assert_eq!(at(pod, "securityContext.runAsNonRoot").as_bool(), Some(true));
    assert_eq!(at(&yaml("kubernetes/pdb.yaml"), "spec.minAvailable"), 2);
    let hpa = yaml("kubernetes/hpa.yaml");
    assert_eq!(
        (&hpa["spec"]["minReplicas"], &hpa["spec"]["maxReplicas"]),
        (&3.into(), &10.into())
    );
}

#[test]
fn the_compose_fleet_matches_the_compose_spec_and_its_front_is_trusted() {
    let mut command = tool("check-jsonschema");
    command
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(docker("docker-compose.yml"));
    let (ok, out) = run(command);
    assert!(ok, "{out}");

    let mut command = tool("haproxy");
    command.arg("-c").arg("-f").arg(docker("haproxy/haproxy.cfg"));
    let (ok, out) = run(command);
    assert!(ok, "{out}");

    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    let instances: Vec<&str> = services
        .keys()
        .filter_map(Value::as_str)
        .filter(|s| s.starts_with("floodgate-"))
        .collect();
    assert_eq!(instances.len(), 3, "{instances:?}");
    let haproxy = std::fs::read_to_string(docker("haproxy/haproxy.cfg")).expect("haproxy.cfg");
    for instance in &instances {
        assert!(
            haproxy.contains(&format!("server {instance} {instance}:8080")),
            "{instance} behind the front"
        );
    }
    let front = compose["services"]["front"]["networks"]["fleet"]["ipv4_address"]
        .as_str()
        .expect("the front's fixed address");

    let config_text = std::fs::read_to_string(docker("floodgate.compose.yaml")).expect("compose config");
    let env = [
        ("FG_JWT_SECRET", "compose-dev-secret-change-me-0123456789"),
        ("FG_ADMIN_TOKEN", "compose-dev-admin-token"),
    ];
    let (ok, out) = check_config(&config_text, &env);
    assert!(ok, "floodgate.compose.yaml: {out}");
    let config: Value = serde_yaml::from_str(&config_text).expect("config");
    assert!(
        config["trusted_proxies"]
            .as_sequence()
            .is_some_and(|t| t.iter().any(|c| c.as_str() == Some(&format!("{front}/32")))),
        "floodgate trusts the front's X-Forwarded-For"
    );
}

/// The documents of a multi-document YAML file.
fn yaml_docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(docker(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn names(section: &Value) -> BTreeSet<String> {
    section
        .as_mapping()
        .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn the_collector_is_whole_and_is_where_both_fleets_export_their_spans() {
    let config = yaml("otel-collector/config.yaml");
    let manifests = yaml_docs("kubernetes/otel-collector.yaml");
    let config_map = manifests
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("ConfigMap");
    let in_cluster: Value =
        serde_yaml::from_str(config_map["data"]["config.yaml"].as_str().expect("config.yaml"))
            .expect("collector config");
    assert_eq!(
        in_cluster, config,
        "the compose and Kubernetes collectors run one config"
    );

    // OTLP in on both protocols, at the ports the instances are given.
    let protocols = at(&config, "receivers.otlp.protocols");
    assert!(at(protocols, "grpc.endpoint")
        .as_str()
        .is_some_and(|e| e.ends_with(":4317")));
    assert!(at(protocols, "http.endpoint")
        .as_str()
        .is_some_and(|e| e.ends_with(":4318")));
    // Every component a pipeline or the service names is defined.
    let pipelines = at(&config, "service.pipelines").as_mapping().expect("pipelines");
    assert!(pipelines.contains_key("traces"), "a traces pipeline");
    for (name, pipeline) in pipelines {
        for kind in ["receivers", "processors", "exporters"] {
            let defined = names(&config[kind]);
            for used in pipeline[kind].as_sequence().into_iter().flatten() {
                let used = used.as_str().expect("a component name");
                assert!(defined.contains(used), "{name:?} uses {kind} {used}, not defined");
            }
        }
    }
    assert!(at(&config, "service.pipelines.traces.receivers")
        .as_sequence()
        .is_some_and(|r| r.iter().any(|r| r == "otlp")));
    for extension in at(&config, "service.extensions")
        .as_sequence()
        .into_iter()
        .flatten()
    {
        assert!(names(&config["extensions"]).contains(extension.as_str().expect("name")));
    }

    // Both fleets' floodgate configs export to that collector, on the port of their protocol.
    let service = manifests
        .iter()
        .find(|d| d["kind"] == "Service")
        .expect("Service");
    let service_ports: BTreeSet<u64> = service["spec"]["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .filter_map(|p| p["port"].as_u64())
        .collect();
    let compose = yaml("docker-compose.yml");
    let exposed: BTreeSet<u64> = compose["services"]["otel-collector"]["expose"]
        .as_sequence()
        .expect("the collector's ports")
        .iter()
        .filter_map(|p| p.as_str()?.parse().ok())
        .collect();
    let k8s_config = yaml("kubernetes/configmap.yaml")["data"]["floodgate.yaml"]
        .as_str()
        .expect("floodgate.yaml")
        .to_string();
    let compose_config = std::fs::read_to_string(docker("floodgate.compose.yaml")).expect("compose config");
    for (fleet, text, ports) in [
        ("compose", compose_config, &exposed),
        ("kubernetes", k8s_config, &service_ports),
    ] {
        let config: Value = serde_yaml::from_str(&text).expect("config");
        let otlp = &config["tracing"]["otlp"];
        let port = match otlp["protocol"].as_str().unwrap_or("http/protobuf") {
            "grpc" => 4317,
            _ => 4318,
        };
        assert_eq!(
            otlp["endpoint"].as_str(),
            Some(format!("http://otel-collector:{port}").as_str()),
            "{fleet}"
        );
        assert!(
            ports.contains(&port),
            "{fleet}: the collector does not offer {port}: {ports:?}"
        );
    }
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["check", "config", "prometheus.yml"],
        vec!["test", "rules", "alerts.test.yml"],
    ] {
        let mut command = tool("promtool");
        command.args(&args).current_dir(docker("prometheus"));
        let (ok, out) = run(command);
        assert!(ok, "promtool {args:?}: {out}");
    }
    let alerts: BTreeSet<String> = yaml("prometheus/alerts.yml")["groups"][0]["rules"]
        .as_sequence()
        .expect("rules")
        .iter()
        .map(|r| r["alert"].as_str().expect("alert").to_string())
        .collect();
    let tested = std::fs::read_to_string(docker("prometheus/alerts.test.yml")).expect("tests");
    for alert in &alerts {
        assert!(
            tested.contains(&format!("alertname: {alert}")),
            "{alert} has no unit test"
        );
    }
}

#[test]
fn grafana_is_provisioned_with_the_datasource_and_the_dashboard() {
    let datasource = &yaml("grafana/provisioning/datasources/prometheus.yaml")["datasources"][0];
    assert_eq!(datasource["type"], "prometheus");
    assert_eq!(datasource["url"], "http://prometheus:9090");
    assert_eq!(datasource["isDefault"], true);
    let provider = &yaml("grafana/provisioning/dashboards/floodgate.yaml")["providers"][0];
    let dashboards_in = provider["options"]["path"].as_str().expect("provider path");

    let compose = yaml("docker-compose.yml");
    let mounts: Vec<&str> = compose["services"]["grafana"]["volumes"]
        .as_sequence()
        .expect("grafana volumes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        mounts.contains(&"./grafana/provisioning:/etc/grafana/provisioning:ro"),
        "{mounts:?}"
    );
    assert!(
        mounts.contains(&format!("./grafana/dashboards:{dashboards_in}:ro").as_str()),
        "the provider reads where the dashboards are mounted: {mounts:?}"
    );

    let text = std::fs::read_to_string(docker("grafana/dashboards/floodgate.json")).expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    assert_eq!(dashboard["templating"]["list"][0]["query"], "prometheus");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.iter().all(|p| p["targets"]
        .as_array()
        .is_some_and(|t| !t.is_empty() && t.iter().all(|t| t["expr"].is_string()))));
}

/// `floodgate_*` names in a text (rules, dashboard), histogram suffixes kept.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("floodgate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_use_is_one_floodgate_exports() {
    let upstream = Upstream::start("u");
    // Two regions' Redis: the region sync's series exist once it has reached its peer.
    let (here, peer) = (Redis::start(), Redis::start());
    let gw = Gateway::start(&format!(
        "upstreams:\n  b:\n    targets: [\"{}\"]\n    health_check: {{ kind: tcp, interval_ms: 200 }}\n    \
         breaker: {{ failures: 5 }}\n\
         auth: {{ api_keys: {{ header: X-API-Key, keys: [] }}, default_tier: free }}\n\
         tiers: {{ free: {{ rate: 1, burst: 1 }} }}\nanonymous: {{ rate: 1, burst: 1 }}\n\
         routes:\n  - {{ name: open, path_prefix: /open, upstream: b, auth: none }}\n  \
         - {{ name: r, path_prefix: /, upstream: b, auth: required }}\n\
         redis: {{ url: \"{}\", region: {{ name: a, peers: {{ b: \"{}\" }}, sync_interval_ms: 100 }} }}\n",
        upstream.addr,
        here.url(),
        peer.url()
    ));
    assert!(eventually(Duration::from_secs(10), || get(gw.admin, "/metrics")
        .text()
        .contains("floodgate_region_peer_up{")));
    // A request through, a 429 and a 401: every family has a series.
    assert_eq!(get(gw.addr, "/open").status, 200);
    assert_eq!(get(gw.addr, "/open").status, 429);
    assert_eq!(get(gw.addr, "/x").status, 401);
    let exported = get(gw.admin, "/metrics").text();
    let exported: BTreeSet<&str> = exported
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let used: BTreeSet<String> = [
        "prometheus/alerts.yml",
        "prometheus/alerts.test.yml",
        "grafana/dashboards/floodgate.json",
    ]
    .iter()
    .flat_map(|f| metric_names(&std::fs::read_to_string(docker(f)).expect("read")))
    .collect();
    assert!(used.len() > 10, "{used:?}");
    let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains(n.as_str())).collect();
    assert!(unknown.is_empty(), "not exported by floodgate: {unknown:?}");
}
