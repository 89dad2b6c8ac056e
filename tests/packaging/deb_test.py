"""The Debian package: built with CPack from this build tree, unpacked into a scratch root
(dpkg-deb -x), and its installed binaries run from there: versions, man pages, completions,
the Python module, and the installed daemon serving the installed site. lintian's findings
fail the test unless packaging/deb/lintian-overrides lists them with a reason.

Environment: WORKERD_BUILD_DIR (the CMake build tree), WORKERD_SOURCE_DIR, WORKERD_CPACK
(cpack), WORKERD_VERSION (the project's version)."""
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

BUILD = os.environ.get("WORKERD_BUILD_DIR", "")
SOURCE = os.environ.get("WORKERD_SOURCE_DIR", "")
CPACK = os.environ.get("WORKERD_CPACK", "cpack")
VERSION = os.environ.get("WORKERD_VERSION", "")


def run(argv, **kw):
    kw.setdefault("timeout", 300)
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@unittest.skipUnless(BUILD and SOURCE, "WORKERD_BUILD_DIR and WORKERD_SOURCE_DIR are not set")
class DebPackage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="workerd-deb-")
        r = run([CPACK, "-G", "DEB", "--config", os.path.join(BUILD, "CPackConfig.cmake"),
                 "-B", os.path.join(cls.tmp, "out")], cwd=BUILD)
        if r.returncode != 0:
            raise AssertionError(f"cpack failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        debs = glob.glob(os.path.join(cls.tmp, "out", "*.deb"))
        if len(debs) != 1:
            raise AssertionError(f"expected one .deb, found {debs}")
        cls.deb = debs[0]
        cls.root = os.path.join(cls.tmp, "root")
        r = run(["dpkg-deb", "-x", cls.deb, cls.root])
        if r.returncode != 0:
            raise AssertionError(f"dpkg-deb -x failed: {r.stderr}")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def installed(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def control(self, field):
        r = run(["dpkg-deb", "-f", self.deb, field])
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def test_name_and_version(self):
        self.assertRegex(os.path.basename(self.deb), rf"^workerd_{re.escape(VERSION)}-1_[a-z0-9]+\.deb$")
        self.assertEqual(self.control("Package"), "workerd")
        self.assertEqual(self.control("Version"), f"{VERSION}-1")

    def test_depends_on_the_shared_libraries_it_links(self):
        depends = self.control("Depends")
        for lib in ("libc6", "libstdc++6", "libyaml-cpp", "libspdlog", "libfmt", 
                    "libprometheus-cpp-core", "adduser"):
            self.assertIn(lib, depends)

    def test_the_spec_is_a_conffile_and_scripts_are_there(self):
        out = os.path.join(self.tmp, "control")
        self.assertEqual(run(["dpkg-deb", "-e", self.deb, out]).returncode, 0)
        with open(os.path.join(out, "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/workerd/workerd.yaml"])
        for script in ("postinst", "prerm", "postrm"):
            path = os.path.join(out, script)
            self.assertTrue(os.access(path, os.X_OK), script)
            self.assertEqual(run(["sh", "-n", path]).returncode, 0, script)

    def test_installed_binaries_run(self):
        r = run([self.installed("/usr/bin/workerd"), "--version"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), f"workerd {VERSION}")
        r = run([self.installed("/usr/bin/workerctl"), "--help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("scale", r.stdout)
        # Stripped, as Debian ships binaries.
        self.assertNotIn("not stripped", run(["file", self.installed("/usr/bin/workerd")]).stdout)

    def test_files_are_where_debian_looks_for_them(self):
        for path in ("/usr/bin/workerd", "/usr/bin/workerctl", "/etc/workerd/workerd.yaml",
                     "/lib/systemd/system/workerd.service", "/lib/systemd/system/workerd@.service",
                     "/lib/systemd/system/workerd.socket",
                     "/usr/share/man/man1/workerd.1.gz", "/usr/share/man/man1/workerctl.1.gz",
                     "/usr/share/man/man5/workerd.yaml.5.gz",
                     "/usr/share/bash-completion/completions/workerd",
                     "/usr/share/bash-completion/completions/workerctl",
                     "/usr/share/doc/workerd/copyright", "/usr/share/doc/workerd/changelog.Debian.gz",
                     "/usr/share/doc/workerd/spec.md.gz", "/usr/share/workerd/public/index.html",
                     "/usr/lib/python3/dist-packages/workerd_uvicorn/__main__.py"):
            self.assertTrue(os.path.isfile(self.installed(path)), path)
        self.assertEqual(glob.glob(self.installed("/usr/lib/python3/dist-packages/**/*.pyc"), recursive=True), [])

    def test_the_copyright_file_states_the_license(self):
        with open(self.installed("/usr/share/doc/workerd/copyright"), encoding="utf-8") as f:
            text = f.read()
        self.assertTrue(text.startswith("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"))
        self.assertIn("\nLicense: Apache-2.0\n", text)  # the SPDX identifier
        self.assertIn("/usr/share/common-licenses/Apache-2.0", text)

    def test_man_pages_render_without_warnings(self):
        for page in ("man1/workerd.1.gz", "man1/workerctl.1.gz", "man5/workerd.yaml.5.gz"):
            path = self.installed("/usr/share/man/" + page)
            env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80", MANROFFSEQ="")
            r = run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", path], env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stderr, "", page)
            text = run(["man", "-l", path], env=env).stdout
            self.assertIn("SYNOPSIS", text, page)

    def test_completions_complete(self):
        completions = self.installed("/usr/share/bash-completion/completions")
        script = f"""
            source /usr/share/bash-completion/bash_completion
            source {completions}/workerctl
            fn=$(complete -p workerctl | sed -E 's/.*-F ([^ ]+).*/\\1/')
            COMP_WORDS=(workerctl sc); COMP_CWORD=1; COMP_LINE="workerctl sc"; COMP_POINT=${{#COMP_LINE}}
            "$fn" workerctl sc workerctl
            printf '%s\\n' "${{COMPREPLY[@]}}"
        """
        r = run(["bash", "-c", script])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("scale", r.stdout.split())
        r = run(["bash", "-c", f"source {completions}/workerd && complete -p workerd"])
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_python_module_imports_from_the_install(self):
        env = dict(os.environ, PYTHONPATH=self.installed("/usr/lib/python3/dist-packages"),
                   PYTHONDONTWRITEBYTECODE="1")
        r = run(["/usr/bin/python3", "-c", "import workerd_uvicorn.protocol as p; print(p.__file__)"], env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.strip().startswith(self.root), r.stdout)

    def test_installed_daemon_serves_the_installed_site(self):
        # The installed spec, moved into the scratch root: its paths under the root, a free
        # port, and no `user: workerd` (the postinst would create that user; dpkg-deb -x
        # does not run it), so workers run as this test's user.
        with open(self.installed("/etc/workerd/workerd.yaml")) as f:
            spec = f.read()
        self.assertIn("user: workerd", spec)
        port, metrics_port = free_port(), free_port()
        spec = spec.replace("/usr/share/workerd", self.installed("/usr/share/workerd"))
        spec = spec.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace("127.0.0.1:9100", f"127.0.0.1:{metrics_port}")
        spec = re.sub(r"^user: workerd.*$", "", spec, flags=re.M)
        sock = os.path.join(self.tmp, "workerd.sock")
        spec += f"control: {{socket: {sock}}}\n"
        path = os.path.join(self.tmp, "installed.yaml")
        with open(path, "w") as f:
            f.write(spec)
        workerd = self.installed("/usr/bin/workerd")
        r = run([workerd, "check", path])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

        argv = [workerd, "start"] + (["--allow-root"] if os.geteuid() == 0 else []) + [path]
        daemon = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            body = None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and body is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=2) as resp:
                        if resp.status == 200:
                            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page:
                                body = page.read().decode()
                except OSError:
                    time.sleep(0.05)
                self.assertIsNone(daemon.poll(), "the installed daemon exited")
            self.assertIsNotNone(body, "the installed daemon did not serve within 20 s")
            with open(self.installed("/usr/share/workerd/public/index.html")) as f:
                self.assertEqual(body, f.read())
            r = run([self.installed("/usr/bin/workerctl"), "-s", sock, "status", "--json"], timeout=10)
            self.assertEqual(r.returncode, 0, r.stderr)
            status = json.loads(r.stdout)
            self.assertEqual(status["pid"], daemon.pid)
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
            try:
                _, err = daemon.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                _, err = daemon.communicate()
        self.assertEqual(daemon.returncode, 0, err)

    def test_lintian_finds_nothing_unexplained(self):
        if shutil.which("lintian") is None:
            self.fail("lintian is not installed (make test-deps installs it)")
        r = run(["lintian", "--fail-on", "error,warning", "--display-info",
                 "--tag-display-limit", "0", self.deb], timeout=600)
        print(r.stdout, r.stderr)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # Every finding, down to the informational ones, is fixed or overridden with a reason.
        unexplained = [line for line in r.stdout.splitlines() if re.match(r"^[EWIP]: ", line)]
        self.assertEqual(unexplained, [], "\n".join(unexplained))


if __name__ == "__main__":
    unittest.main()
