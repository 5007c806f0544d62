#!/usr/bin/env python3
"""Writes the JSON Schemas under this directory from upstream Kubernetes API types.

Not run by the tests: the schemas it writes are checked in, reviewed like code, and the
tests validate every rendered document against them. Run it again when a Kubernetes
minor is added (see README.md in this directory).

Two sources:

* kubelet and kube-proxy configuration types (and the component-base types they embed)
  are read from the Go files themselves: `--kubelet-dir`, `--kube-proxy-dir` and
  `--component-base-dir` name checkouts of the published staging repositories
  (k8s.io/kubelet, k8s.io/kube-proxy, k8s.io/component-base) at a release tag, and
  `--tag` says which (`v0.36.0` for Kubernetes 1.36.0).
* kubeadm's v1beta4 types live in the main kubernetes repository only; they are
  transcribed below (KUBEADM_V1BETA4) field by field from
  cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go and
  cmd/kubeadm/app/apis/bootstraptoken/v1/types.go.

Every object gets `additionalProperties: false`, so an unknown or misspelt field fails
validation; every field upstream declares is present with its JSON type, so a field
upstream removes fails too once the schema is regenerated. Go pointers are optional, not
nullable: the renderer never writes `null`.
"""

import argparse
import json
import os
import re
import subprocess
import sys

DURATION = {
    "type": "string",
    "pattern": r"^(0|-?([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h))+$",
    "description": "metav1.Duration: a Go duration string such as 10s or 1h30m",
}
TIME = {"type": "string", "format": "date-time", "description": "metav1.Time (RFC 3339)"}
QUANTITY = {
    "description": "resource.Quantity: a string such as 100Mi or 250m, or a number",
    "oneOf": [
        {"type": "string", "pattern": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$"},
        {"type": "number"},
    ],
}
TAINT = {
    "type": "object",
    "description": "core/v1 Taint (k8s.io/api/core/v1/types.go)",
    "additionalProperties": False,
    "required": ["key", "effect"],
    "properties": {
        "key": {"type": "string"},
        "value": {"type": "string"},
        "effect": {"type": "string", "enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
        "timeAdded": TIME,
    },
}

# Types from other packages, as their JSON encoding looks.
EXTERNAL = {
    "metav1.Duration": DURATION,
    "metav1.Time": TIME,
    "v1.Taint": TAINT,
    "corev1.Taint": TAINT,
    "v1.ResourceList": {"type": "object", "additionalProperties": QUANTITY},
    "resource.Quantity": QUANTITY,
    "resource.QuantityValue": QUANTITY,
    "v1.NodeConfigSource": {"type": "object"},
}

SCALARS = {
    "string": {"type": "string"},
    "bool": {"type": "boolean"},
    "int": {"type": "integer"},
    "int32": {"type": "integer", "minimum": -2147483648, "maximum": 2147483647},
    "int64": {"type": "integer"},
    "uint32": {"type": "integer", "minimum": 0, "maximum": 4294967295},
    "float32": {"type": "number"},
    "float64": {"type": "number"},
}


def strip_comments(source):
    # Line comments first: a `/*` inside a `//` comment (a glob in prose) opens nothing.
    source = "\n".join(re.sub(r"//.*$", "", line) for line in source.splitlines())
    return re.sub(r"/\*.*?\*/", "", source, flags=re.S)


class Package:
    """The named types of one Go package: structs (field lists) and aliases."""

    def __init__(self, alias, source):
        self.alias = alias
        self.structs = {}
        self.aliases = {}
        source = strip_comments(source)
        for match in re.finditer(r"^type\s+(\w+)\s+struct\s*{(.*?)^}", source, re.S | re.M):
            self.structs[match.group(1)] = parse_fields(match.group(2))
        for match in re.finditer(r"^type\s+(\w+)\s+([^\s{][^\n]*)$", source, re.M):
            if not match.group(2).startswith("struct"):
                self.aliases[match.group(1)] = match.group(2).strip()


def parse_fields(body):
    fields = []
    for line in body.splitlines():
        line = line.strip()
        if not line:
            continue
        match = re.match(r"^(?:(\w+)\s+)?([\w.\[\]*]+)\s*(`[^`]*`)?\s*$", line)
        if not match:
            raise SystemExit(f"cannot parse field line: {line!r}")
        name, go_type, tag = match.groups()
        json_name = None
        if tag:
            found = re.search(r'json:"([^"]*)"', tag)
            if found:
                json_name = found.group(1).split(",")[0]
                if found.group(1).startswith(",inline"):
                    json_name = ""
        if json_name == "-":
            continue
        embedded = name is None
        if json_name is None:
            json_name = "" if embedded else name
        fields.append({"name": json_name, "type": go_type, "inline": json_name == ""})
    return fields


class Resolver:
    def __init__(self, packages, overrides=None):
        self.packages = packages
        self.overrides = overrides or {}

    def schema(self, go_type, package):
        if go_type in self.overrides:
            return self.overrides[go_type]
        if go_type.startswith("*"):
            return self.schema(go_type[1:], package)
        if go_type.startswith("[]"):
            return {"type": "array", "items": self.schema(go_type[2:], package)}
        if go_type.startswith("map[string]"):
            return {"type": "object", "additionalProperties": self.schema(go_type[len("map[string]"):], package)}
        if go_type in SCALARS:
            return dict(SCALARS[go_type])
        if go_type in EXTERNAL:
            return EXTERNAL[go_type]
        alias, _, name = go_type.rpartition(".")
        target = self.packages[alias] if alias else package
        if name in target.structs:
            return self.struct(name, target)
        if name in target.aliases:
            return self.schema(target.aliases[name], target)
        raise SystemExit(f"unknown type {go_type} in package {package.alias}")

    def properties(self, name, package):
        properties = {}
        for field in package.structs[name]:
            if field["inline"]:
                go_type = field["type"].lstrip("*")
                if go_type == "metav1.TypeMeta":
                    properties["apiVersion"] = {"type": "string"}
                    properties["kind"] = {"type": "string"}
                    continue
                alias, _, inner = go_type.rpartition(".")
                properties.update(self.properties(inner, self.packages[alias] if alias else package))
            else:
                properties[field["name"]] = self.schema(field["type"], package)
        return properties

    def struct(self, name, package):
        # TimeOrMetaDuration marshals as a duration string or an integer of nanoseconds.
        if name == "TimeOrMetaDuration":
            return {"oneOf": [DURATION, {"type": "integer"}]}
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": self.properties(name, package),
        }


def document(resolver, root, package, api_version, comment):
    schema = resolver.struct(root, package)
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": root}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": comment,
        "title": f"{api_version} {root}",
        **schema,
        "required": ["apiVersion", "kind"],
    }


def git_show(directory, tag, path):
    return subprocess.run(
        ["git", "--git-dir", directory, "show", f"{tag}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


# --- kubeadm.k8s.io/v1beta4, transcribed ------------------------------------------------
# (struct name -> list of (json name, Go type); "" as the name embeds the type inline)

KUBEADM_V1BETA4 = {
    "InitConfiguration": [
        ("", "metav1.TypeMeta"),
        ("bootstrapTokens", "[]BootstrapToken"),
        ("dryRun", "bool"),
        ("nodeRegistration", "NodeRegistrationOptions"),
        ("localAPIEndpoint", "APIEndpoint"),
        ("certificateKey", "string"),
        ("skipPhases", "[]string"),
        ("patches", "*Patches"),
        ("timeouts", "*Timeouts"),
    ],
    "ClusterConfiguration": [
        ("", "metav1.TypeMeta"),
        ("etcd", "Etcd"),
        ("networking", "Networking"),
        ("kubernetesVersion", "string"),
        ("controlPlaneEndpoint", "string"),
        ("apiServer", "APIServer"),
        ("controllerManager", "ControlPlaneComponent"),
        ("scheduler", "ControlPlaneComponent"),
        ("dns", "DNS"),
        ("proxy", "Proxy"),
        ("certificatesDir", "string"),
        ("imageRepository", "string"),
        ("featureGates", "map[string]bool"),
        ("clusterName", "string"),
        ("encryptionAlgorithm", "EncryptionAlgorithmType"),
        ("certificateValidityPeriod", "*metav1.Duration"),
        ("caCertificateValidityPeriod", "*metav1.Duration"),
    ],
    "ControlPlaneComponent": [
        ("extraArgs", "[]Arg"),
        ("extraVolumes", "[]HostPathMount"),
        ("extraEnvs", "[]EnvVar"),
    ],
    "APIServer": [("", "ControlPlaneComponent"), ("certSANs", "[]string")],
    "DNS": [("", "ImageMeta"), ("disabled", "bool")],
    "Proxy": [("disabled", "bool")],
    "ImageMeta": [("imageRepository", "string"), ("imageTag", "string")],
    "APIEndpoint": [("advertiseAddress", "string"), ("bindPort", "int32")],
    "NodeRegistrationOptions": [
        ("name", "string"),
        ("criSocket", "string"),
        ("taints", "[]corev1.Taint"),
        ("kubeletExtraArgs", "[]Arg"),
        ("ignorePreflightErrors", "[]string"),
        ("imagePullPolicy", "PullPolicy"),
        ("imagePullSerial", "*bool"),
    ],
    "Networking": [("serviceSubnet", "string"), ("podSubnet", "string"), ("dnsDomain", "string")],
    "Etcd": [("local", "*LocalEtcd"), ("external", "*ExternalEtcd")],
    "LocalEtcd": [
        ("", "ImageMeta"),
        ("dataDir", "string"),
        ("extraArgs", "[]Arg"),
        ("extraEnvs", "[]EnvVar"),
        ("serverCertSANs", "[]string"),
        ("peerCertSANs", "[]string"),
    ],
    "ExternalEtcd": [
        ("endpoints", "[]string"),
        ("httpEndpoints", "[]string"),
        ("caFile", "string"),
        ("certFile", "string"),
        ("keyFile", "string"),
    ],
    "JoinConfiguration": [
        ("", "metav1.TypeMeta"),
        ("dryRun", "bool"),
        ("nodeRegistration", "NodeRegistrationOptions"),
        ("caCertPath", "string"),
        ("discovery", "Discovery"),
        ("controlPlane", "*JoinControlPlane"),
        ("skipPhases", "[]string"),
        ("patches", "*Patches"),
        ("timeouts", "*Timeouts"),
    ],
    "JoinControlPlane": [("localAPIEndpoint", "APIEndpoint"), ("certificateKey", "string")],
    "Discovery": [
        ("bootstrapToken", "*BootstrapTokenDiscovery"),
        ("file", "*FileDiscovery"),
        ("tlsBootstrapToken", "string"),
    ],
    "BootstrapTokenDiscovery": [
        ("token", "string"),
        ("apiServerEndpoint", "string"),
        ("caCertHashes", "[]string"),
        ("unsafeSkipCAVerification", "bool"),
    ],
    "FileDiscovery": [("kubeConfigPath", "string")],
    "HostPathMount": [
        ("name", "string"),
        ("hostPath", "string"),
        ("mountPath", "string"),
        ("readOnly", "bool"),
        ("pathType", "HostPathType"),
    ],
    "Patches": [("directory", "string")],
    "Arg": [("name", "string"), ("value", "string")],
    # EnvVar embeds core/v1 EnvVar inline (k8s.io/api/core/v1/types.go).
    "EnvVar": [("name", "string"), ("value", "string"), ("valueFrom", "*EnvVarSource")],
    "Timeouts": [
        ("controlPlaneComponentHealthCheck", "*metav1.Duration"),
        ("kubeletHealthCheck", "*metav1.Duration"),
        ("kubernetesAPICall", "*metav1.Duration"),
        ("etcdAPICall", "*metav1.Duration"),
        ("tlsBootstrap", "*metav1.Duration"),
        ("discovery", "*metav1.Duration"),
        ("upgradeManifests", "*metav1.Duration"),
    ],
    # cmd/kubeadm/app/apis/bootstraptoken/v1/types.go
    "BootstrapToken": [
        ("token", "BootstrapTokenString"),
        ("description", "string"),
        ("ttl", "*metav1.Duration"),
        ("expires", "*metav1.Time"),
        ("usages", "[]string"),
        ("groups", "[]string"),
    ],
}
KUBEADM_ALIASES = {
    "EncryptionAlgorithmType": {
        "type": "string",
        "enum": ["ECDSA-P256", "ECDSA-P384", "RSA-2048", "RSA-3072", "RSA-4096"],
    },
    "BootstrapTokenString": {"type": "string", "pattern": r"^[a-z0-9]{6}\.[a-z0-9]{16}$"},
    "PullPolicy": {"type": "string", "enum": ["Always", "Never", "IfNotPresent"]},
    "HostPathType": {
        "type": "string",
        "enum": ["", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"],
    },
}
# k8s.io/api/core/v1 EnvVar and the sources it may name.
CORE_ENV = {
    "EnvVarSource": [
        ("fieldRef", "*ObjectFieldSelector"),
        ("resourceFieldRef", "*ResourceFieldSelector"),
        ("configMapKeyRef", "*KeySelector"),
        ("secretKeyRef", "*KeySelector"),
        ("fileKeyRef", "*FileKeySelector"),
    ],
    "ObjectFieldSelector": [("apiVersion", "string"), ("fieldPath", "string")],
    "ResourceFieldSelector": [("containerName", "string"), ("resource", "string"), ("divisor", "resource.Quantity")],
    "KeySelector": [("name", "string"), ("key", "string"), ("optional", "*bool")],
    "FileKeySelector": [("volumeName", "string"), ("path", "string"), ("key", "string"), ("optional", "*bool")],
}


def kubeadm_package():
    package = Package("kubeadm", "")
    for name, fields in {**KUBEADM_V1BETA4, **CORE_ENV}.items():
        package.structs[name] = [
            {"name": json_name, "type": go_type, "inline": json_name == ""} for json_name, go_type in fields
        ]
    return package


def kubeadm_schemas(out_dir):
    package = kubeadm_package()
    resolver = Resolver({"": package}, overrides=KUBEADM_ALIASES)
    comment = (
        "Written from kubernetes/kubernetes cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go and "
        "cmd/kubeadm/app/apis/bootstraptoken/v1/types.go as of v1.35.0, unchanged for these kinds "
        "through v1.36 and v1.37.0-beta.0 (v1.35 added etcd.external.httpEndpoints, v1.34 the "
        "ECDSA-P384 encryptionAlgorithm); EnvVar from k8s.io/api/core/v1/types.go. "
        "Regenerate with tests/schemas/generate.py."
    )
    for kind in ["InitConfiguration", "ClusterConfiguration", "JoinConfiguration"]:
        write(out_dir, f"kubeadm.k8s.io_v1beta4_{kind}.json",
              document(resolver, kind, package, "kubeadm.k8s.io/v1beta4", comment))


def write(out_dir, name, schema):
    with open(os.path.join(out_dir, name), "w") as out:
        json.dump(schema, out, indent=2, ensure_ascii=False)
        out.write("\n")
    print(f"wrote {name}", file=sys.stderr)


def component_schemas(args):
    minor = re.match(r"^v0\.(\d+)\.", args.tag).group(1)
    base = {
        "logsapi": Package("logsapi", git_show(args.component_base_dir, args.tag, "logs/api/v1/types.go")),
        "tracingapi": Package("tracingapi", git_show(args.component_base_dir, args.tag, "tracing/api/v1/types.go")),
        "componentbaseconfigv1alpha1": Package(
            "componentbaseconfigv1alpha1", git_show(args.component_base_dir, args.tag, "config/v1alpha1/types.go")
        ),
    }
    kubelet = Package("kubelet", git_show(args.kubelet_dir, args.tag, "config/v1beta1/types.go"))
    write(
        args.out,
        f"kubelet.config.k8s.io_v1beta1_KubeletConfiguration.1.{minor}.json",
        document(
            Resolver({"": kubelet, **base}),
            "KubeletConfiguration",
            kubelet,
            "kubelet.config.k8s.io/v1beta1",
            f"Generated from k8s.io/kubelet config/v1beta1/types.go at tag {args.tag} "
            f"(kubernetes/kubernetes staging/src/k8s.io/kubelet, Kubernetes 1.{minor}) with the "
            f"component-base logs and tracing types at the same tag, by tests/schemas/generate.py.",
        ),
    )
    proxy = Package("kubeproxy", git_show(args.kube_proxy_dir, args.tag, "config/v1alpha1/types.go"))
    write(
        args.out,
        f"kubeproxy.config.k8s.io_v1alpha1_KubeProxyConfiguration.1.{minor}.json",
        document(
            Resolver({"": proxy, **base}),
            "KubeProxyConfiguration",
            proxy,
            "kubeproxy.config.k8s.io/v1alpha1",
            f"Generated from k8s.io/kube-proxy config/v1alpha1/types.go at tag {args.tag} "
            f"(kubernetes/kubernetes staging/src/k8s.io/kube-proxy, Kubernetes 1.{minor}) with the "
            f"component-base config and logs types at the same tag, by tests/schemas/generate.py.",
        ),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--kubeadm", action="store_true", help="write the kubeadm v1beta4 schemas")
    parser.add_argument("--tag", help="staging repositories' tag, e.g. v0.36.0")
    parser.add_argument("--kubelet-dir", help="git directory of k8s.io/kubelet")
    parser.add_argument("--kube-proxy-dir", help="git directory of k8s.io/kube-proxy")
    parser.add_argument("--component-base-dir", help="git directory of k8s.io/component-base")
    args = parser.parse_args()
    if args.kubeadm:
        kubeadm_schemas(args.out)
    if args.tag:
        component_schemas(args)


if __name__ == "__main__":
    main()
