"""The container image and the Kubernetes example (packaging/docker, packaging/kubernetes) stay
consistent with each other and with workerd itself.

Run with Debian's /usr/bin/python3 (python3-yaml):

    WORKERD_BIN=build/bin/workerd WORKERD_SOURCE_DIR=. /usr/bin/python3 -m unittest -v tests/packaging/kubernetes_test.py

WORKERD_BIN is the workerd binary under test (the tests are skipped without it);
WORKERD_SOURCE_DIR the repository root (default: two levels above this file).

The central check: a cgroup v2 tree is built from the Deployment's CPU and memory limits, the
way the kubelet and the container runtime write them (cpu.max, memory.max), and
`workerd check --explain --root TREE` must size the fleet as docs/spec.md says `workers: auto`
does for those limits and the spec's workload and memory budget.
"""

import json
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import unittest

try:
    import yaml
except ImportError as e:  # a missing dependency must fail loudly, not skip
    raise ImportError("these tests need PyYAML: apt-get install python3-yaml") from e

BIN = os.environ.get("WORKERD_BIN", "")
SOURCE = os.path.abspath(os.environ.get("WORKERD_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", ".."))
K8S_DIR = os.path.join(SOURCE, "packaging", "kubernetes")
DOCKER_DIR = os.path.join(SOURCE, "packaging", "docker")

# Paths the specs name that exist only once the package is installed (in the image). Where one is
# missing on this machine, `workerd check` runs on a copy pointing at a directory that exists here:
# the repository's example site. Nothing else in the specs is changed.
IMAGE_PATHS = {"/usr/share/workerd/public": os.path.join(SOURCE, "config", "public")}

# docs/spec.md, `workers: auto`: workers per usable CPU, by workload.
WORKLOAD_FACTORS = {"cpu": (1.0, 0), "mixed": (1.5, 0), "io": (2.0, 0), "gunicorn": (2.0, 1)}
# The kubelet's CFS period (cpu.max's second number).
CFS_PERIOD_US = 100000


# --- units ----------------------------------------------------------------------------------

def parse_duration(text):
    """A workerd duration (docs/spec.md, Types) in seconds: 500ms, 30s, 2m, 1h, 1m30s, 30."""
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def parse_size(text):
    """A workerd size (docs/spec.md, Types) in bytes: 4096, 64KiB, 512MiB, 1GiB, 10KB, 10MB."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", str(text).strip())
    units = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
             "KB": 10**3, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if not m or m.group(2) not in units:
        raise ValueError(f"not a size: {text!r}")
    return round(float(m.group(1)) * units[m.group(2)])


def parse_quantity(text):
    """A Kubernetes resource quantity as a number: "2" -> 2, "1500m" -> 1.5, "512Mi" -> 536870912."""
    m = re.fullmatch(r"([0-9.]+(?:[eE][-+]?\d+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?", str(text).strip())
    if not m:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    suffix = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
              "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
    return float(m.group(1)) * suffix[m.group(2)]


def parse_margin(text):
    m = re.fullmatch(r"(\d{1,2})%", str(text).strip())
    if not m:
        raise ValueError(f"not a margin: {text!r}")
    return int(m.group(1)) / 100.0


def port_of(address):
    """The port of a workerd TCP address: "0.0.0.0:9100", "[::]:9100", ":9100"."""
    m = re.fullmatch(r".*:(\d+)", str(address))
    if not m or str(address).startswith("unix:"):
        raise ValueError(f"not a TCP address: {address!r}")
    return int(m.group(1))


# --- docs/spec.md's `workers: auto`, written out ----------------------------------------------

def expected_auto_workers(spec, cpus, memory_limit):
    """The worker count docs/spec.md gives for `workers: auto` with `cpus` usable CPUs and a
    memory limit of `memory_limit` bytes (None: no limit)."""
    factor, plus = WORKLOAD_FACTORS[spec.get("workload", "mixed")]
    n = max(1, math.floor(cpus * factor) + plus)
    if memory_limit is not None and "memory_per_worker" in spec:
        margin = parse_margin(spec.get("memory_margin", "10%"))
        budget = max(1, int(memory_limit * (1.0 - margin) / parse_size(spec["memory_per_worker"])))
        n = min(n, budget)
    return n


# --- files ----------------------------------------------------------------------------------

def load_manifests():
    """Every object in packaging/kubernetes/*.yaml, by kind."""
    objects = {}
    for name in sorted(os.listdir(K8S_DIR)):
        if not name.endswith((".yaml", ".yml")):
            continue
        with open(os.path.join(K8S_DIR, name)) as f:
            for doc in yaml.safe_load_all(f):
                if doc is None:
                    continue
                for key in ("apiVersion", "kind", "metadata"):
                    if key not in doc:
                        raise AssertionError(f"{name}: an object without {key}")
                objects.setdefault(doc["kind"], []).append(doc)
    return objects


def dockerfile_instructions(path):
    """(INSTRUCTION, arguments) for each instruction: continuations joined, comments dropped."""
    out, current = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                current += line[:-1] + " "
                continue
            current += line
            if current.strip():
                word, _, rest = current.strip().partition(" ")
                out.append((word.upper(), rest.strip()))
            current = ""
    return out


def dockerignore_patterns(path):
    with open(path) as f:
        return [p.strip().rstrip("/") for p in f if p.strip() and not p.lstrip().startswith("#")]


def ignored(relpath, patterns):
    """Whether BuildKit would leave relpath (or a parent of it) out of the context."""
    parts = relpath.split("/")
    for i in range(1, len(parts) + 1):
        candidate = "/".join(parts[:i])
        for p in patterns:
            if p.startswith("!"):
                continue
            regex = re.escape(p).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
            if re.fullmatch(regex, candidate):
                return True
    return False


def checkable_copy(spec_text, directory, name="workerd.yaml"):
    """The spec written to `directory`, with image-only paths mapped to ones that exist here."""
    for image_path, here in IMAGE_PATHS.items():
        if not os.path.exists(image_path):
            spec_text = spec_text.replace(image_path, here)
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(spec_text)
    return path


def run_workerd(*args, timeout=30):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)


def write_file(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def build_cgroup_tree(root, cgroup_path, levels, node_cpus):
    """A cgroup v2 fixture under `root`, shaped like tests/data/cgroup/v2-limited:
    /proc/self/cgroup says `0::cgroup_path`, mountinfo mounts cgroup2 at /sys/fs/cgroup, and
    `levels` maps each cgroup directory (relative to /sys/fs/cgroup) to its files."""
    write_file(os.path.join(root, "proc/self/cgroup"), f"0::{cgroup_path}\n")
    write_file(os.path.join(root, "proc/self/mountinfo"),
               "24 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
               "36 25 0:31 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n")
    for directory, files in levels.items():
        for name, content in files.items():
            write_file(os.path.join(root, "sys/fs/cgroup", directory, name), content + "\n")
        write_file(os.path.join(root, "sys/fs/cgroup", directory, "cpuset.cpus.effective"), f"0-{node_cpus - 1}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@unittest.skipUnless(BIN, "WORKERD_BIN is not set: it names the workerd binary under test "
                          "(e.g. WORKERD_BIN=build/bin/workerd)")
class KubernetesExample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.objects = load_manifests()
        for kind in ("ConfigMap", "Deployment", "Service"):
            if len(cls.objects.get(kind, [])) != 1:
                raise AssertionError(f"packaging/kubernetes/ should hold exactly one {kind}")
        cls.deployment = cls.objects["Deployment"][0]
        cls.pod = cls.deployment["spec"]["template"]["spec"]
        cls.container = cls.pod["containers"][0]
        # The spec: the ConfigMap key the container's argument names, in the ConfigMap's mount.
        cls.spec_path = cls.container["args"][0]
        volumes = {v["name"]: v for v in cls.pod["volumes"]}
        mount = next(m for m in cls.container["volumeMounts"]
                     if cls.spec_path.startswith(m["mountPath"].rstrip("/") + "/"))
        cls.configmap = cls.objects["ConfigMap"][0]
        if volumes[mount["name"]].get("configMap", {}).get("name") != cls.configmap["metadata"]["name"]:
            raise AssertionError(f"{cls.spec_path} is not in the ConfigMap's volume")
        cls.spec_key = os.path.relpath(cls.spec_path, mount["mountPath"])
        cls.spec_text = cls.configmap["data"][cls.spec_key]
        cls.spec = yaml.safe_load(cls.spec_text)

    def ports(self):
        return {p["name"]: p["containerPort"] for p in self.container["ports"]}

    def resolve_port(self, port):
        return self.ports()[port] if isinstance(port, str) else int(port)

    def limits(self):
        limits = self.container["resources"]["limits"]
        return parse_quantity(limits["cpu"]), int(parse_quantity(limits["memory"]))

    def test_the_spec_is_valid(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = checkable_copy(self.spec_text, tmp)
            r = run_workerd("check", path)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn(": ok (", r.stdout)

    def test_the_spec_sizes_itself_and_runs_as_the_pods_user(self):
        self.assertEqual(self.spec.get("workers"), "auto")
        self.assertIn("memory_per_worker", self.spec)
        self.assertIn(self.spec.get("workload", "mixed"), WORKLOAD_FACTORS)
        self.assertNotIn("user", self.spec, "a non-root pod: the workers run as the daemon's user")
        self.assertNotIn("group", self.spec)

    def test_limits_and_requests_for_cpu_and_memory(self):
        resources = self.container["resources"]
        for kind in ("limits", "requests"):
            for resource in ("cpu", "memory"):
                self.assertIn(resource, resources.get(kind, {}), f"resources.{kind}.{resource}")
                self.assertGreater(parse_quantity(resources[kind][resource]), 0)
        for resource in ("cpu", "memory"):
            self.assertLessEqual(parse_quantity(resources["requests"][resource]), parse_quantity(resources["limits"][resource]))

    def test_workers_auto_under_the_deployments_limits(self):
        cpu_limit, memory_limit = self.limits()
        # The kubelet: quota = milliCPU x period / 1000, never below 1000 us.
        quota = max(1000, math.ceil(cpu_limit * 1000) * CFS_PERIOD_US // 1000)
        limits = {"cpu.max": f"{quota} {CFS_PERIOD_US}", "memory.max": str(memory_limit), "memory.high": "max"}
        node_cpus = 64
        # What workerd will see in the pod, on a node with enough CPUs; on this machine the
        # affinity (inherited by `workerd check`) can be smaller, and counts as well.
        affinity = len(os.sched_getaffinity(0))
        usable = min(affinity, node_cpus, quota / CFS_PERIOD_US)
        expected = expected_auto_workers(self.spec, usable, memory_limit)
        in_the_pod = expected_auto_workers(self.spec, min(node_cpus, quota / CFS_PERIOD_US), memory_limit)
        trees = {
            # A private cgroup namespace (containerd and CRI-O on cgroup v2): the container's
            # cgroup is the root of what it sees.
            "cgroupns": ("/", {"": limits}),
            # The host's view (systemd driver; a Guaranteed pod sits directly under kubepods).
            "host": ("/kubepods.slice/kubepods-pod1234.slice/cri-containerd-abcd.scope", {
                "kubepods.slice": {"cpu.max": f"max {CFS_PERIOD_US}", "memory.max": "max"},
                "kubepods.slice/kubepods-pod1234.slice": limits,
                "kubepods.slice/kubepods-pod1234.slice/cri-containerd-abcd.scope": limits,
            }),
        }
        with tempfile.TemporaryDirectory() as tmp:
            spec = checkable_copy(self.spec_text, tmp)
            for name, (cgroup_path, levels) in trees.items():
                with self.subTest(tree=name):
                    root = os.path.join(tmp, name)
                    build_cgroup_tree(root, cgroup_path, levels, node_cpus)
                    r = run_workerd("check", "--explain", "--root", root, spec)
                    self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                    self.assertIn(f"quota: {quota} {CFS_PERIOD_US} = {quota / CFS_PERIOD_US:.2f} CPUs", r.stdout)
                    self.assertIn(f"memory: {memory_limit} bytes", r.stdout)
                    self.assertIn("cgroup v2", r.stdout)
                    explained = re.findall(r"^workers: (\d+)$", r.stdout, re.M)
                    self.assertEqual(explained, [str(expected)], r.stdout)
                    self.assertRegex(r.stdout, rf": ok \({expected} workers?, ")
        # /readyz needs min_ready ready workers: the pod must be able to have them.
        self.assertLessEqual(self.spec.get("metrics", {}).get("min_ready", 1), in_the_pod,
                             "metrics.min_ready is above the worker count the limits give")

    def test_probes_use_the_metrics_port(self):
        metrics_port = port_of(self.spec["metrics"]["listen"])
        self.assertTrue(self.spec["metrics"]["listen"].startswith(("0.0.0.0:", "[::]:", ":")),
                        "the kubelet probes the pod's IP: metrics.listen must not be loopback")
        expected_paths = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
        for probe, path in expected_paths.items():
            with self.subTest(probe=probe):
                get = self.container[probe]["httpGet"]
                self.assertEqual(get["path"], path)
                self.assertEqual(self.resolve_port(get["port"]), metrics_port)
                self.assertEqual(get.get("scheme", "HTTP"), "HTTP")
        if "startupProbe" in self.container:
            get = self.container["startupProbe"]["httpGet"]
            self.assertIn(get["path"], ("/healthz", "/readyz"))
            self.assertEqual(self.resolve_port(get["port"]), metrics_port)
        # Liveness gives a stuck daemon several chances; readiness reacts faster.
        live, ready = self.container["livenessProbe"], self.container["readinessProbe"]
        live_window = live.get("periodSeconds", 10) * live.get("failureThreshold", 3)
        ready_window = ready.get("periodSeconds", 10) * ready.get("failureThreshold", 3)
        self.assertGreaterEqual(live_window, 20)
        self.assertLess(ready_window, live_window)
        for probe in (live, ready):
            self.assertLess(probe.get("timeoutSeconds", 1), probe.get("periodSeconds", 10))

    def test_scrape_annotations_match_metrics_listen(self):
        annotations = self.deployment["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(annotations["prometheus.io/scrape"], "true")
        self.assertEqual(int(annotations["prometheus.io/port"]), port_of(self.spec["metrics"]["listen"]))
        self.assertEqual(annotations["prometheus.io/path"], "/metrics")
        self.assertIn(port_of(self.spec["metrics"]["listen"]), self.ports().values())

    def test_the_service_reaches_the_listen_port(self):
        service = self.objects["Service"][0]
        listen = self.spec["listen"]
        listen_ports = {port_of(a if isinstance(a, str) else a["address"]) for a in (listen if isinstance(listen, list) else [listen])}
        for port in service["spec"]["ports"]:
            self.assertIn(self.resolve_port(port.get("targetPort", port["port"])), listen_ports)
        labels = self.deployment["spec"]["template"]["metadata"]["labels"]
        for selector in [service["spec"]["selector"], self.deployment["spec"]["selector"]["matchLabels"],
                         *[pdb["spec"]["selector"]["matchLabels"] for pdb in self.objects.get("PodDisruptionBudget", [])]]:
            self.assertTrue(selector.items() <= labels.items(), f"{selector} does not select {labels}")

    def prestop_seconds(self):
        pre_stop = self.container["lifecycle"]["preStop"]
        if "sleep" in pre_stop:  # the kubelet's own sleep action
            return float(pre_stop["sleep"]["seconds"])
        command = pre_stop["exec"]["command"]
        if len(command) == 3 and command[0] in ("/bin/sh", "sh") and command[1] == "-c":
            command = shlex.split(command[2])
        self.assertIn(os.path.basename(command[0]), ("sleep",), f"preStop should wait: {command}")
        self.assertEqual(len(command), 2, command)
        return parse_duration(command[1])

    def test_termination_grace_covers_prestop_and_graceful_timeout(self):
        pre_stop = self.prestop_seconds()
        self.assertGreaterEqual(pre_stop, 1, "preStop should wait for the endpoints to go")
        graceful = parse_duration(self.spec.get("graceful_timeout", "30s"))
        grace = self.pod.get("terminationGracePeriodSeconds", 30)
        self.assertGreater(grace, graceful + pre_stop,
                           f"terminationGracePeriodSeconds {grace} <= graceful_timeout {graceful} + preStop {pre_stop}")

    def test_non_root_with_a_read_only_root_filesystem(self):
        pod_security = self.pod.get("securityContext", {})
        security = self.container.get("securityContext", {})
        self.assertTrue(security.get("runAsNonRoot", pod_security.get("runAsNonRoot")))
        uid = security.get("runAsUser", pod_security.get("runAsUser"))
        self.assertEqual(uid, int(dockerfile_arg("WORKERD_UID")), "runAsUser is not the image's workerd uid")
        self.assertTrue(security.get("readOnlyRootFilesystem"))
        self.assertFalse(security.get("allowPrivilegeEscalation", True))
        # Where workerd writes (the control socket) is a writable volume.
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        socket_dir = os.path.dirname(self.spec["control"]["socket"])
        mount = next((m for m in self.container["volumeMounts"] if m["mountPath"].rstrip("/") == socket_dir), None)
        self.assertIsNotNone(mount, f"no volume at {socket_dir} for the control socket")
        self.assertIn("emptyDir", volumes[mount["name"]])
        self.assertFalse(mount.get("readOnly", False))
        # The spec is not written there: the ConfigMap mount is read-only.
        spec_mount = next(m for m in self.container["volumeMounts"] if self.spec_path.startswith(m["mountPath"]))
        self.assertTrue(spec_mount.get("readOnly"))


def dockerfile_arg(name):
    for word, rest in dockerfile_instructions(os.path.join(DOCKER_DIR, "Dockerfile")):
        if word == "ARG" and rest.startswith(name + "="):
            return rest.split("=", 1)[1]
    raise AssertionError(f"the Dockerfile has no ARG {name}=DEFAULT")


@unittest.skipUnless(BIN, "WORKERD_BIN is not set: it names the workerd binary under test "
                          "(e.g. WORKERD_BIN=build/bin/workerd)")
class DockerImage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dockerfile = dockerfile_instructions(os.path.join(DOCKER_DIR, "Dockerfile"))
        cls.ignore = dockerignore_patterns(os.path.join(DOCKER_DIR, "Dockerfile.dockerignore"))
        with open(os.path.join(DOCKER_DIR, "workerd.yaml")) as f:
            cls.spec_text = f.read()
        cls.spec = yaml.safe_load(cls.spec_text)

    def instructions(self, word):
        return [rest for w, rest in self.dockerfile if w == word]

    def copies(self):
        """(sources, destination) of each COPY from the build context (not --from=STAGE)."""
        out = []
        for rest in self.instructions("COPY"):
            args = shlex.split(rest)
            if any(a.startswith("--from") for a in args):
                continue
            args = [a for a in args if not a.startswith("--")]
            out.append((args[:-1], args[-1]))
        return out

    def healthcheck_argv(self):
        (rest,) = self.instructions("HEALTHCHECK")
        command = rest[rest.index("CMD") + 3:].strip()
        return json.loads(command)  # the exec form

    def test_the_spec_is_valid(self):
        if all(os.path.exists(p) for p in IMAGE_PATHS):
            r = run_workerd("check", os.path.join(DOCKER_DIR, "workerd.yaml"))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                r = run_workerd("check", checkable_copy(self.spec_text, tmp))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_the_spec_fits_a_container(self):
        listen = self.spec["listen"]
        for address in listen if isinstance(listen, list) else [listen]:
            self.assertTrue(str(address).startswith(("0.0.0.0:", "[::]:", ":")), f"{address} is not reachable from outside")
        self.assertTrue(self.spec["metrics"]["listen"].startswith(("0.0.0.0:", "[::]:", ":")))
        self.assertEqual(self.spec.get("workers"), "auto")
        self.assertNotIn("user", self.spec, "the image runs as workerd: a spec with `user:` would be refused")
        # docker stop waits 10 s before SIGKILL.
        self.assertLess(parse_duration(self.spec.get("graceful_timeout", "30s")), 10)

    def test_copy_sources_exist_and_are_not_ignored(self):
        copies = self.copies()
        self.assertTrue(copies)
        for sources, _ in copies:
            for source in sources:
                with self.subTest(source=source):
                    self.assertTrue(os.path.exists(os.path.join(SOURCE, source)), f"COPY {source}: no such file in the context")
                    if source not in (".", "./"):
                        self.assertFalse(ignored(os.path.normpath(source), self.ignore), f"{source} is in Dockerfile.dockerignore")
        for pattern in ("build*", ".git"):
            self.assertIn(pattern, self.ignore)
        self.assertTrue(ignored("build/bin/workerd", self.ignore) and ignored("build-asan", self.ignore))
        self.assertFalse(ignored("daemon/main.cpp", self.ignore))

    def test_the_image_runs_the_copied_spec_as_workerd(self):
        destination = dict((tuple(s), d) for s, d in self.copies())[("packaging/docker/workerd.yaml",)]
        self.assertEqual(json.loads(self.instructions("ENTRYPOINT")[-1]), ["workerd", "start"])
        self.assertEqual(json.loads(self.instructions("CMD")[-1]), [destination])
        self.assertEqual(self.instructions("STOPSIGNAL"), ["SIGTERM"])
        user = self.instructions("USER")[-1]
        self.assertEqual(user, "${WORKERD_UID}:${WORKERD_UID}")
        self.assertTrue(dockerfile_arg("WORKERD_UID").isdigit())
        self.assertNotEqual(int(dockerfile_arg("WORKERD_UID")), 0)
        # The control socket's directory is made for that user, and workerctl is told where it is.
        socket_path = self.spec["control"]["socket"]
        self.assertTrue(any(re.search(rf"install -d -o workerd -g workerd\b.* {re.escape(os.path.dirname(socket_path))}\b", r)
                            for r in self.instructions("RUN")))
        self.assertIn(f"WORKERD_SOCKET={socket_path}", self.instructions("ENV"))

    def test_exposed_ports_and_the_healthcheck_match_the_spec(self):
        ports = {port_of(a) for a in self.spec["listen"]} | {port_of(self.spec["metrics"]["listen"])}
        exposed = {int(p.split("/")[0]) for rest in self.instructions("EXPOSE") for p in rest.split()}
        self.assertEqual(exposed, ports)
        script = self.healthcheck_argv()[-1]
        self.assertIn(f"/dev/tcp/127.0.0.1/{port_of(self.spec['metrics']['listen'])}", script)
        self.assertIn("GET /healthz ", script)

    def test_the_healthcheck_command_against_a_running_daemon(self):
        # The image's spec and HEALTHCHECK, on free loopback ports of this machine.
        http_port, metrics_port = free_port(), free_port()
        original_metrics = port_of(self.spec["metrics"]["listen"])
        argv = self.healthcheck_argv()
        argv[-1] = argv[-1].replace(f"/dev/tcp/127.0.0.1/{original_metrics}", f"/dev/tcp/127.0.0.1/{metrics_port}")
        with tempfile.TemporaryDirectory() as tmp:
            text = self.spec_text
            text = text.replace(f'"0.0.0.0:{port_of(self.spec["listen"][0])}"', f'"127.0.0.1:{http_port}"')
            text = text.replace(f'"0.0.0.0:{original_metrics}"', f'"127.0.0.1:{metrics_port}"')
            text = text.replace(self.spec["control"]["socket"], os.path.join(tmp, "workerd.sock"))
            spec = checkable_copy(text, tmp)
            start = [BIN, "start"] + (["--allow-root"] if os.geteuid() == 0 else []) + [spec]
            with open(os.path.join(tmp, "log"), "w+") as log:
                daemon = subprocess.Popen(start, stdout=log, stderr=subprocess.STDOUT)
                try:
                    deadline = time.monotonic() + 15
                    while True:
                        r = subprocess.run(argv, capture_output=True, timeout=5)
                        if r.returncode == 0 or time.monotonic() > deadline or daemon.poll() is not None:
                            break
                        time.sleep(0.1)
                    log.seek(0)
                    self.assertEqual(r.returncode, 0, f"healthcheck failed: {r.stderr!r}\n{log.read()}")
                    daemon.send_signal(signal.SIGTERM)
                    self.assertEqual(daemon.wait(timeout=20), 0)
                    r = subprocess.run(argv, capture_output=True, timeout=5)
                    self.assertNotEqual(r.returncode, 0, "healthcheck passed with the daemon gone")
                finally:
                    if daemon.poll() is None:
                        daemon.kill()
                        daemon.wait()


@unittest.skipUnless(BIN, "WORKERD_BIN is not set: it names the workerd binary under test "
                          "(e.g. WORKERD_BIN=build/bin/workerd)")
class ContainersGuide(unittest.TestCase):
    def test_the_specs_in_docs_containers_md_are_valid(self):
        with open(os.path.join(SOURCE, "docs", "containers.md")) as f:
            blocks = re.findall(r"^```yaml\n(.*?)^```", f.read(), re.M | re.S)
        specs = [b for b in blocks if re.search(r"^listen:", b, re.M)]
        self.assertTrue(specs, "docs/containers.md shows no spec")
        for text in specs:
            with self.subTest(spec=text.splitlines()[0]), tempfile.TemporaryDirectory() as tmp:
                # The app's directory of the guide's image: any existing directory will do.
                text = text.replace("/srv/app", tmp)
                r = run_workerd("check", checkable_copy(text, tmp))
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                spec = yaml.safe_load(text)
                self.assertNotIn("user", spec)
                self.assertEqual(spec.get("workers"), "auto")


if __name__ == "__main__":
    unittest.main()
