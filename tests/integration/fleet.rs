//! The fleet's files in `docker/`, checked offline since neither Docker nor Kubernetes runs
//! here: the Kubernetes manifests against the schemas `kubernetes-validate` carries, the
//! compose file against the compose spec, HAProxy's config with `haproxy -c`, the alert rules
//! with `promtool` (checked and unit-tested), the Grafana provisioning parsed, the
//! OpenTelemetry Collector's config parsed and checked against floodgate's `tracing:`, and
//! every floodgate config among them through `floodgate -t`. The Python tools are installed into
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

/// Every document of a multi-document YAML file (`---` between them).
fn yaml_documents(path: &str) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(docker(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

/// The port of `host:port` or `scheme://host:port/path`.
fn port_of(address: &str) -> u16 {
    let authority = address.split_once("://").map_or(address, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or(authority);
    authority
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {address}"))
}

fn names(list: &Value) -> Vec<&str> {
    list.as_sequence()
        .map(|s| s.iter().map(|n| n.as_str().expect("a component id")).collect())
        .unwrap_or_default()
}

/// floodgate's `tracing.otlp`: (the host it exports to, the port, the port its protocol needs).
fn otlp_target(config: &Value) -> (String, u16, u16) {
    let otlp = &config["tracing"]["otlp"];
    let endpoint = otlp["endpoint"].as_str().expect("tracing.otlp.endpoint");
    let host = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .split([':', '/'])
        .next()
        .expect("host")
        .to_string();
    // The collector's well-known OTLP ports, one per protocol.
    let wanted = match otlp["protocol"].as_str().unwrap_or("http/protobuf") {
        "http/protobuf" => 4318,
        "grpc" => 4317,
        other => panic!("tracing.otlp.protocol {other}"),
    };
    (host, port_of(endpoint), wanted)
}

#[test]
fn the_otel_collector_receives_floodgate_spans_in_compose_and_on_kubernetes() {
    // One collector config: compose mounts the file, Kubernetes carries a copy in a ConfigMap
    // (kustomize will not load a file outside its directory).
    let collector = yaml("otel-collector/config.yaml");
    let manifests = yaml_documents("kubernetes/otel-collector.yaml");
    let manifest = |kind: &str| {
        manifests
            .iter()
            .find(|m| m["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in otel-collector.yaml"))
    };
    let copy: Value = serde_yaml::from_str(
        manifest("ConfigMap")["data"]["config.yaml"]
            .as_str()
            .expect("config.yaml in the collector's ConfigMap"),
    )
    .expect("the ConfigMap's collector config");
    assert_eq!(
        copy, collector,
        "kubernetes/otel-collector.yaml's ConfigMap differs from otel-collector/config.yaml"
    );

    // OTLP on its well-known ports, on every interface (other containers and pods send to it).
    let protocols = &collector["receivers"]["otlp"]["protocols"];
    for (protocol, port) in [("grpc", 4317), ("http", 4318)] {
        let endpoint = protocols[protocol]["endpoint"]
            .as_str()
            .unwrap_or_else(|| panic!("otlp {protocol} endpoint"));
        assert_eq!(endpoint, format!("0.0.0.0:{port}"), "otlp {protocol}");
    }

    // What the collector would refuse to start on: a pipeline or extension naming a
    // component its section does not define.
    let service = &collector["service"];
    let pipelines = service["pipelines"].as_mapping().expect("service.pipelines");
    for (name, pipeline) in pipelines {
        for kind in ["receivers", "processors", "exporters"] {
            for id in names(&pipeline[kind]) {
                assert!(
                    collector[kind].get(id).is_some(),
                    "pipeline {name:?} uses {kind} {id} which is not defined"
                );
            }
        }
        for kind in ["receivers", "exporters"] {
            assert!(
                !names(&pipeline[kind]).is_empty(),
                "pipeline {name:?} has no {kind}"
            );
        }
    }
    assert!(
        names(&service["pipelines"]["traces"]["receivers"]).contains(&"otlp"),
        "a traces pipeline fed by the otlp receiver"
    );
    let extensions = names(&service["extensions"]);
    for id in &extensions {
        assert!(
            collector["extensions"].get(id).is_some(),
            "extension {id} is not defined"
        );
    }
    assert!(extensions.contains(&"health_check"), "{extensions:?}");
    let health_port = port_of(
        collector["extensions"]["health_check"]["endpoint"]
            .as_str()
            .expect("health_check endpoint"),
    );

    // Compose: floodgate exports to the service by name, on the port of its protocol, and
    // waits for it; the service reads the mounted config.
    let mut compose = yaml("docker-compose.yml");
    // The instances' settings come from the `x-floodgate` anchor through `<<:`.
    compose.apply_merge().expect("merge keys");
    let config_text = std::fs::read_to_string(docker("floodgate.compose.yaml")).expect("compose config");
    let config: Value = serde_yaml::from_str(&config_text).expect("config");
    let (host, port, wanted) = otlp_target(&config);
    assert_eq!(
        port, wanted,
        "floodgate.compose.yaml: the port of tracing.otlp.protocol"
    );
    let compose_collector = &compose["services"][host.as_str()];
    assert!(
        compose_collector.is_mapping(),
        "floodgate.compose.yaml exports to {host}, not a compose service"
    );
    let exposed: Vec<u16> = names(&compose_collector["expose"])
        .into_iter()
        .map(|p| p.parse().expect("a port"))
        .collect();
    assert!(exposed.contains(&port), "{host} exposes {exposed:?}, not {port}");
    let mount = names(&compose_collector["volumes"])
        .into_iter()
        .find(|v| v.starts_with("./otel-collector/config.yaml:"))
        .expect("otel-collector/config.yaml mounted");
    let in_container = mount.split(':').nth(1).expect("mount target");
    assert!(mount.ends_with(":ro"), "{mount}");
    assert!(
        names(&compose_collector["command"]).contains(&format!("--config={in_container}").as_str()),
        "the collector reads {in_container}"
    );
    for (name, service) in compose["services"].as_mapping().expect("services") {
        if name.as_str().is_some_and(|n| n.starts_with("floodgate-")) {
            assert!(
                names(&service["depends_on"]).contains(&host.as_str()),
                "{name:?} depends on {host}"
            );
        }
    }

    // Kubernetes: floodgate exports to the Service by name, which forwards the port of its
    // protocol to the container port the collector listens on.
    let floodgate_config: Value = serde_yaml::from_str(
        yaml("kubernetes/configmap.yaml")["data"]["floodgate.yaml"]
            .as_str()
            .expect("floodgate.yaml in the ConfigMap"),
    )
    .expect("the ConfigMap's config");
    let (host, port, wanted) = otlp_target(&floodgate_config);
    assert_eq!(port, wanted, "the ConfigMap: the port of tracing.otlp.protocol");
    let k8s_service = manifest("Service");
    assert_eq!(
        k8s_service["metadata"]["name"],
        host.as_str(),
        "the ConfigMap exports to {host}, not the collector's Service"
    );
    let service_port = k8s_service["spec"]["ports"]
        .as_sequence()
        .expect("Service ports")
        .iter()
        .find(|p| p["port"] == port)
        .unwrap_or_else(|| panic!("the Service {host} does not expose {port}"));
    let deployment = manifest("Deployment");
    let pod = at(deployment, "spec.template.spec");
    let container = at(pod, "containers.0");
    let container_port = |name: &Value| {
        container["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .find(|p| &p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port {name:?}"))
    };
    assert_eq!(container_port(&service_port["targetPort"]), u64::from(port));
    assert_eq!(
        &k8s_service["spec"]["selector"],
        at(deployment, "spec.template.metadata.labels")
    );
    assert_eq!(
        container_port(at(container, "readinessProbe.httpGet.port")),
        u64::from(health_port),
        "readiness on the health_check extension"
    );
    let mount_path = container["volumeMounts"][0]["mountPath"]
        .as_str()
        .expect("mountPath");
    assert!(
        names(&container["args"]).contains(&format!("--config={mount_path}/config.yaml").as_str()),
        "the collector reads its ConfigMap"
    );
    assert_eq!(at(pod, "securityContext.runAsNonRoot").as_bool(), Some(true));
    assert_eq!(
        at(container, "securityContext.readOnlyRootFilesystem").as_bool(),
        Some(true)
    );

    // One pinned release in both: the collector's config keys change between releases.
    let image = container["image"].as_str().expect("image");
    assert_eq!(compose_collector["image"].as_str(), Some(image));
    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
    assert!(
        tag.split('.').count() == 3 && tag.split('.').all(|n| n.parse::<u32>().is_ok()),
        "{image}: pin a release"
    );
}
