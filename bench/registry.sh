#!/usr/bin/env bash
# The bundle registry against Distribution (Debian's docker-registry) and nginx, side by
# side on loopback, all three over TLS (or all three over plain HTTP with TRANSPORT=http):
#   - blob download throughput: one BLOB_MIB MiB blob fetched with curl (HTTP/1.1), RUNS
#     times per server after a warm-up, the three servers interleaved;
#   - manifest requests per second: oha, CONNECTIONS keep-alive HTTP/1.1 connections,
#     DURATION seconds per server in ROUNDS interleaved slices, GET of a manifest by tag;
#   - the CPU time each server used for both (from /proc), which other load on the
#     machine disturbs far less than wall-clock figures.
# The same image is in all three: our server serves the bundle layout, Distribution gets it
# pushed by skopeo from our server, nginx serves the layout's blob files as static files.
# Usage: bash bench/registry.sh   (root; installs docker-registry, nginx, oha)
# Results: bench/results/registry-https.md (table; registry-http.md with TRANSPORT=http),
# raw measurements in bench/results/registry-*.data and registry-manifest-*.json.
set -euo pipefail
cd "$(dirname "$0")/.."

BLOB_MIB=${BLOB_MIB:-512}
RUNS=${RUNS:-7}
DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-16}
TRANSPORT=${TRANSPORT:-https}
OURS=5443 DISTRIBUTION=5444 NGINX=5445
work=$PWD/bench/.work/registry
results=$PWD/bench/results
mkdir -p "$work" "$results"

missing=()
for tool in docker-registry:docker-registry nginx:nginx skopeo:skopeo curl:curl openssl:openssl; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
if ((${#missing[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
fi
command -v oha >/dev/null || cargo install oha --locked >&2
# METALK8S=path/to/metalk8s skips the build (e.g. to bench a binary built earlier).
if [[ -z ${METALK8S:-} ]]; then
  cargo build --release --bin metalk8s >&2
fi
metalk8s=${METALK8S:-$PWD/target/release/metalk8s}

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ -f $work/nginx.pid ]]; then kill "$(cat "$work/nginx.pid")" 2>/dev/null || true; fi
}
trap cleanup EXIT

# --- TLS: a throw-away CA and a certificate for 127.0.0.1 (ECDSA P-256, like the cluster's).
if [[ ! -f $work/server.crt ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj /CN=bench-ca -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 \
    -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
  openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
    -CAcreateserial -days 30 -out "$work/server.crt" \
    -extfile <(printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n') 2>/dev/null
fi
mkdir -p "$work/certs.d" && cp "$work/ca.crt" "$work/certs.d/ca.crt"

# --- The bundle: one image, bench/blob:1, whose single layer is BLOB_MIB MiB of random data.
layout=$work/bundle/images/bench/blob
blobs=$layout/blobs/sha256
if [[ ! -f $layout/index.json || $(cat "$work/blob-mib" 2>/dev/null) != "$BLOB_MIB" ]]; then
  rm -rf "$work/bundle" "$work/distribution"
  mkdir -p "$blobs"
  # gzip of random data: a real compressed layer (skopeo keeps it as is when it pushes it to
  # Distribution; an uncompressed one would be recompressed under another digest).
  head -c "$((BLOB_MIB * 1024 * 1024))" /dev/urandom | gzip -1 >"$work/layer"
  python3 - "$work/layer" "$layout" "$work" <<'EOF'
import hashlib, json, os, sys
layer, layout, work = sys.argv[1], sys.argv[2], sys.argv[3]
blobs = os.path.join(layout, "blobs/sha256")
def put(data):
    digest = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, digest), "wb").write(data)
    return digest, len(data)
h = hashlib.sha256()
with open(layer, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
layer_digest, layer_size = h.hexdigest(), os.path.getsize(layer)
os.rename(layer, os.path.join(blobs, layer_digest))
config = json.dumps({"architecture": "amd64", "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + layer_digest]}}).encode()
config_digest, config_size = put(config)
manifest = json.dumps({"schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": "sha256:" + config_digest, "size": config_size},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + layer_digest, "size": layer_size}]}).encode()
manifest_digest, manifest_size = put(manifest)
open(os.path.join(layout, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
open(os.path.join(layout, "index.json"), "w").write(json.dumps({"schemaVersion": 2,
    "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "digest": "sha256:" + manifest_digest, "size": manifest_size,
                   "annotations": {"org.opencontainers.image.ref.name": "1"}}]}))
open(os.path.join(work, "layer-digest"), "w").write(layer_digest)
open(os.path.join(work, "layer-size"), "w").write(str(layer_size))
open(os.path.join(work, "manifest-digest"), "w").write(manifest_digest)
EOF
  echo "$BLOB_MIB" >"$work/blob-mib"
fi
layer=$(cat "$work/layer-digest")
manifest=$(cat "$work/manifest-digest")
[[ -f $work/apt.key ]] || $metalk8s repo apt-key --key "$work/apt.key" --out "$work/apt.gpg" >/dev/null

if [[ $TRANSPORT == https ]]; then
  tls_ours=(--cert "$work/server.crt" --key "$work/server.key")
  tls_distribution="tls: {certificate: $work/server.crt, key: $work/server.key}"
  tls_nginx="ssl; ssl_certificate $work/server.crt; ssl_certificate_key $work/server.key"
  curl_tls=(--cacert "$work/ca.crt")
  skopeo_tls=(--src-cert-dir "$work/certs.d" --dest-cert-dir "$work/certs.d")
  oha_tls=(--cacert "$work/ca.crt")
else
  tls_ours=(--insecure-http)
  tls_distribution=""
  tls_nginx=""
  curl_tls=()
  skopeo_tls=(--src-tls-verify=false --dest-tls-verify=false)
  oha_tls=()
fi

wait_for() {
  for _ in $(seq 100); do
    curl -fs "${curl_tls[@]}" -H "Accept: application/vnd.oci.image.manifest.v1+json" \
      -o /dev/null "$TRANSPORT://127.0.0.1:$1/v2/bench/blob/manifests/1" && return 0
    sleep 0.1
  done
  echo "server on port $1 did not come up" >&2
  exit 1
}

# --- Our server.
$metalk8s repo serve --bundle "$work/bundle" --listen "127.0.0.1:$OURS" "${tls_ours[@]}" \
  --apt-key "$work/apt.key" 2>"$work/ours.log" &
pids+=($!)

# --- Distribution, filled from our server.
cat >"$work/distribution.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $work/distribution}
  cache: {blobdescriptor: inmemory}
http:
  addr: 127.0.0.1:$DISTRIBUTION
  $tls_distribution
EOF
docker-registry serve "$work/distribution.yml" 2>"$work/distribution.log" &
pids+=($!)

# --- nginx, serving the layout's files at the registry's URLs.
mkdir -p "$work/nginx-tmp"
cat >"$work/nginx.conf" <<EOF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path $work/nginx-tmp;
  proxy_temp_path $work/nginx-tmp;
  fastcgi_temp_path $work/nginx-tmp;
  uwsgi_temp_path $work/nginx-tmp;
  scgi_temp_path $work/nginx-tmp;
  types {}
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$NGINX $tls_nginx;
    location ~ "^/v2/bench/blob/blobs/sha256:(?<hex>[0-9a-f]{64})\$" { alias $blobs/\$hex; }
    location = /v2/bench/blob/manifests/1 {
      default_type application/vnd.oci.image.manifest.v1+json;
      alias $blobs/$manifest;
    }
  }
}
EOF
nginx -c "$work/nginx.conf" -p "$work"

wait_for $OURS
for _ in $(seq 100); do
  curl -fs "${curl_tls[@]}" -o /dev/null "$TRANSPORT://127.0.0.1:$DISTRIBUTION/v2/" && break
  sleep 0.1
done
skopeo copy --quiet --policy <(echo '{"default":[{"type":"insecureAcceptAnything"}]}') \
  "${skopeo_tls[@]}" "docker://127.0.0.1:$OURS/bench/blob:1" \
  "docker://127.0.0.1:$DISTRIBUTION/bench/blob:1" >&2
wait_for $DISTRIBUTION
wait_for $NGINX

blob_url() { echo "$TRANSPORT://127.0.0.1:$1/v2/bench/blob/blobs/sha256:$layer"; }

# CPU time (clock ticks, all threads) used so far by a server's processes.
nginx_master=$(cat "$work/nginx.pid")
server_pids() {
  case $1 in
    metalk8s-repo) echo "${pids[0]}" ;;
    distribution) echo "${pids[1]}" ;;
    nginx) pgrep -P "$nginx_master" | tr '\n' ' ' ;;
  esac
}
cpu_ticks() {
  local total=0 pid
  for pid in $(server_pids "$1"); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
port_of() {
  case $1 in metalk8s-repo) echo $OURS ;; distribution) echo $DISTRIBUTION ;; nginx) echo $NGINX ;; esac
}
servers=(metalk8s-repo distribution nginx)
data=$results/registry-$TRANSPORT.data
: >"$data"

# Our server checks the blob's digest on its first request: time that one on its own.
first=$(curl -fsS --http1.1 "${curl_tls[@]}" -o /dev/null -w '%{time_total}' "$(blob_url $OURS)")
for name in distribution nginx; do  # warm-up
  curl -fsS --http1.1 "${curl_tls[@]}" -o /dev/null "$(blob_url "$(port_of $name)")"
done

# Blob downloads, interleaved (the starting server rotates each round) so that load from
# elsewhere on the machine spreads over the three alike.
for round in $(seq "$RUNS"); do
  for i in 0 1 2; do
    name=${servers[$(((round + i) % 3))]}
    before=$(cpu_ticks "$name")
    seconds=$(curl -fsS --http1.1 "${curl_tls[@]}" -o /dev/null -w '%{time_total}' \
      "$(blob_url "$(port_of "$name")")")
    echo "blob $name $seconds $(($(cpu_ticks "$name") - before))" >>"$data"
  done
done

# Manifest GETs by tag, DURATION seconds per server in ROUNDS slices, interleaved too.
slice=$(((DURATION + ROUNDS - 1) / ROUNDS))
for round in $(seq "$ROUNDS"); do
  for i in 0 1 2; do
    name=${servers[$(((round + i) % 3))]}
    out=$results/registry-manifest-$TRANSPORT-$name-$round.json
    before=$(cpu_ticks "$name")
    oha --no-tui --output-format json -z "${slice}s" -c "$CONNECTIONS" --http-version 1.1 \
      "${oha_tls[@]}" -H "Accept: application/vnd.oci.image.manifest.v1+json" \
      "$TRANSPORT://127.0.0.1:$(port_of "$name")/v2/bench/blob/manifests/1" >"$out"
    echo "manifest $name $out $(($(cpu_ticks "$name") - before))" >>"$data"
  done
done

python3 - "$data" "$TRANSPORT" "$(cat "$work/layer-size")" "$first" "$CONNECTIONS" \
  "$(getconf CLK_TCK)" <<'EOF' | tee "$results/registry-$TRANSPORT.md"
import json, statistics, sys
data, transport, size, first, connections, tick = sys.argv[1:]
mib, tick = int(size) / (1024 * 1024), 1 / int(tick)
rows = {}
for line in open(data):
    kind, name, value, ticks = line.split()
    row = rows.setdefault(name, {"blob": [], "blob_cpu": 0, "requests": 0, "seconds": 0,
                                 "manifest_cpu": 0, "p99": [], "errors": 0})
    if kind == "blob":
        row["blob"].append(float(value))
        row["blob_cpu"] += int(ticks) * tick
    else:
        summary = json.load(open(value))
        codes = summary["statusCodeDistribution"]
        count = sum(codes.values())
        row["requests"] += count
        row["errors"] += count - codes.get("200", 0)
        row["seconds"] += summary["summary"]["total"]
        row["manifest_cpu"] += int(ticks) * tick
        row["p99"].append(summary["latencyPercentiles"]["p99"])
runs = len(next(iter(rows.values()))["blob"])
print(f"TLS: {'yes' if transport == 'https' else 'no (plain HTTP)'}. Blob: {mib:.1f} MiB, curl "
      f"HTTP/1.1, {runs} interleaved downloads per server. Manifests: oha, {connections} "
      f"keep-alive HTTP/1.1 connections. First pull from metalk8s-repo (digest check "
      f"included): {float(first):.3f} s.\n")
print("| server | blob MiB/s, median | blob MiB/s, mean ± sd | server CPU s per GiB | "
      "manifests req/s | server CPU µs per request | manifest p99 | non-200 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for name in sorted(rows, key=["metalk8s-repo", "distribution", "nginx"].index):
    row = rows[name]
    speeds = [mib / seconds for seconds in row["blob"]]
    gib = mib * len(row["blob"]) / 1024
    print(f"| {name} | {statistics.median(speeds):.0f} | {statistics.mean(speeds):.0f} ± "
          f"{statistics.pstdev(speeds):.0f} | {row['blob_cpu'] / gib:.2f} | "
          f"{row['requests'] / row['seconds']:.0f} | "
          f"{row['manifest_cpu'] / row['requests'] * 1e6:.1f} | "
          f"{max(row['p99']) * 1000:.2f} ms | {row['errors']} |")
EOF
