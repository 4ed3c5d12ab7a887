"""A real kube-apiserver + etcd on 127.0.0.1 for the API tests, the way controller-runtime's envtest
runs them: no kubelet, no controllers, real API machinery (schemas, defaulting, CRDs, patches,
status subresources, conflicts, RBAC).

Binaries: $KUBEBUILDER_ASSETS when it holds kube-apiserver and etcd (as envtest does), else the
cache filled by hack/kube-apiserver/build.sh (built from the Kubernetes release pinned in
versions.mk the first time, reused after).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from kubernetes import client

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "kube-apiserver" / "build.sh"
ADMIN_USER = "mlops-test-admin"


class ControlPlaneError(RuntimeError):
    """The test control plane could not be provided or started."""


def pinned_version(name: str) -> str:
    """A `NAME ?= value` from versions.mk, the one place for upstream versions."""
    for line in (REPO_ROOT / "versions.mk").read_text().splitlines():
        key, sep, value = line.partition("?=")
        if sep and key.strip() == name:
            return value.split("#")[0].strip()
    raise ControlPlaneError(f"{name} is not set in versions.mk")


def _assets_from_env() -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets:
        return None
    path = Path(assets)
    missing = [b for b in ("kube-apiserver", "etcd") if not (path / b).is_file()]
    if missing:
        raise ControlPlaneError(f"KUBEBUILDER_ASSETS={assets} lacks {', '.join(missing)}")
    return path


def go_binary() -> str | None:
    """`go` on PATH, or in Go's own install location."""
    found = shutil.which("go")
    if found is None and Path("/usr/local/go/bin/go").is_file():
        found = "/usr/local/go/bin/go"
    return found


def assets_dir() -> Path:
    """The directory holding kube-apiserver and etcd, building them if they are not cached."""
    from_env = _assets_from_env()
    if from_env is not None:
        return from_env
    go = go_binary()
    if go is None:
        raise ControlPlaneError(
            "neither KUBEBUILDER_ASSETS nor Go (to build kube-apiserver and etcd) is available; "
            "install Go >= 1.26 or point KUBEBUILDER_ASSETS at envtest binaries"
        )
    env = dict(os.environ)
    env["PATH"] = f"{Path(go).parent}:{env.get('PATH', '')}"
    # The script's log goes to stderr (pytest shows it on failure); stdout is the directory.
    done = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        check=False,
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        raise ControlPlaneError(f"{BUILD_SCRIPT} failed with exit status {done.returncode}")
    return Path(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pem_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_pki(directory: Path) -> dict[str, Path]:
    """A CA, a serving certificate for 127.0.0.1/localhost signed by it, and the service-account
    token signing key pair."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlops-test-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files = {
        "ca.crt": ca_cert.public_bytes(serialization.Encoding.PEM),
        "serving.crt": serving_cert.public_bytes(serialization.Encoding.PEM),
        "serving.key": _pem_key(serving_key),
        "sa.key": _pem_key(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }
    paths = {}
    for name, data in files.items():
        path = directory / name
        path.write_bytes(data)
        path.chmod(0o600)
        paths[name] = path
    return paths


@dataclass
class ControlPlane:
    """etcd + kube-apiserver processes and a kubeconfig for an admin (system:masters) user."""

    assets: Path
    workdir: Path
    startup_timeout_s: float = 120.0
    server: str = ""
    kubeconfig: Path = field(default=Path())
    ca_file: Path = field(default=Path())
    admin_token: str = ""
    startup_s: float = 0.0
    _procs: list[subprocess.Popen] = field(default_factory=list)
    _logs: dict[str, Path] = field(default_factory=dict)

    def start(self) -> None:
        started = time.monotonic()
        pki = write_pki(self.workdir)
        self.ca_file = pki["ca.crt"]
        self.admin_token = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
        tokens = self.workdir / "tokens.csv"
        # token,user,uid,"group1,group2": the admin is in system:masters, which RBAC always allows.
        tokens.write_text(f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        tokens.chmod(0o600)

        etcd_port, etcd_peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{etcd_peer_port}"
        self._spawn(
            "etcd",
            [
                str(self.assets / "etcd"),
                f"--data-dir={self.workdir / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                # Throwaway data: skip fsync so the tests do not wait on the disk.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self.server = f"https://127.0.0.1:{api_port}"
        self._spawn(
            "kube-apiserver",
            [
                str(self.assets / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # No kube-proxy or Service routing here: do not publish the loopback address as
                # the `kubernetes` Service's endpoint (the API server refuses to).
                "--endpoint-reconciler-type=none",
                f"--secure-port={api_port}",
                f"--cert-dir={self.workdir / 'certs'}",
                f"--tls-cert-file={pki['serving.crt']}",
                f"--tls-private-key-file={pki['serving.key']}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki['sa.pub']}",
                f"--service-account-signing-key-file={pki['sa.key']}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--anonymous-auth=false",
                "--v=0",
            ],
        )
        self._write_kubeconfig()
        self._wait_ready()
        self.startup_s = time.monotonic() - started

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = self.workdir / f"{name}.log"
        self._logs[name] = log
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self._procs.append(proc)

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": base64.b64encode(
                            self.ca_file.read_bytes()
                        ).decode(),
                    },
                }
            ],
            "users": [{"name": ADMIN_USER, "user": {"token": self.admin_token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": ADMIN_USER}}],
            "current-context": "test",
        }
        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def log_tail(self, name: str, lines: int = 40) -> str:
        log = self._logs.get(name)
        if log is None or not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        last = "no answer yet"
        with httpx.Client(verify=str(self.ca_file), headers=headers, timeout=5.0) as client:
            while time.monotonic() < deadline:
                for proc, name in zip(self._procs, self._logs, strict=True):
                    if proc.poll() is not None:
                        raise ControlPlaneError(
                            f"{name} exited with status {proc.returncode}:\n{self.log_tail(name)}"
                        )
                try:
                    response = client.get(f"{self.server}/readyz")
                    if response.status_code == 200:
                        return
                    last = f"/readyz answered {response.status_code}: {response.text[-500:]}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.25)
        raise ControlPlaneError(
            f"kube-apiserver not ready after {self.startup_timeout_s:.0f} s ({last}):\n"
            f"{self.log_tail('kube-apiserver')}"
        )

    def peak_rss_mib(self) -> dict[str, float]:
        """Each live process's peak resident memory so far (VmHWM), in MiB."""
        peaks = {}
        for proc, name in zip(self._procs, self._logs, strict=True):
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks[name] = int(line.split()[1]) / 1024
        return peaks

    def stop(self) -> None:
        # apiserver first, so it does not log a storm of etcd connection errors.
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()


def start_control_plane(assets: Path) -> ControlPlane:
    workdir = Path(tempfile.mkdtemp(prefix="mlops-apiserver-"))
    plane = ControlPlane(assets=assets, workdir=workdir)
    try:
        plane.start()
    except BaseException:
        plane.stop()
        raise
    return plane


def service_account_api(
    plane: ControlPlane, admin_api: client.ApiClient, namespace: str, name: str
) -> client.ApiClient:
    """An API client authenticated as a ServiceAccount with a real token from the TokenRequest
    API (what a pod of that account gets): every call it makes goes through RBAC."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=["https://kubernetes.default.svc"], expiration_seconds=3600
        )
    )
    token = (
        client.CoreV1Api(admin_api)
        .create_namespaced_service_account_token(name, namespace, request)
        .status.token
    )
    configuration = client.Configuration()
    configuration.host = plane.server
    configuration.ssl_ca_cert = str(plane.ca_file)
    configuration.api_key = {"authorization": token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(configuration)
