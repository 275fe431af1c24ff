#!/usr/bin/env bash
# Builds the images the real node runs, without a registry: the pause image (Kubernetes' pause.c,
# static), a Debian bookworm base (mmdebstrap + base.Dockerfile), the project's own Dockerfile on that
# base (BASE_IMAGE), and the Pushgateway from Debian's package on the same base. Each lands as a
# docker-archive under the image cache, named by a hash of everything it is built from, so an
# unchanged input is never rebuilt; buildah's own storage (layers, reused across builds) lives in the
# same cache. Root only (buildah, mmdebstrap).
#
# Usage: tools/k8s/images/build.sh     (after tools/k8s/install.sh: pause.c comes from its module)
#   RAYSCALE_IMAGE_CACHE   the cache folder (default ~/.cache/rayscale/images)
#   RAYSCALE_K8S_BIN       where install.sh put the binaries; images.txt is written there
# Writes $RAYSCALE_K8S_BIN/images.txt: one "<name> <archive>" line per image for containerd to import.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
BIN="${RAYSCALE_K8S_BIN:-$ROOT/.tools/k8s/bin}"
CACHE="${RAYSCALE_IMAGE_CACHE:-$HOME/.cache/rayscale/images}"
NICE=(nice -n 19)
SUITE=bookworm
# What the production base (rayproject/ray) gives Ray's pods that minbase lacks: Python with venv,
# wget and bash for KubeRay's probes, libgomp1 for LightGBM/XGBoost's OpenMP, ca-certificates.
PACKAGES=python3,python3-venv,wget,ca-certificates,libgomp1,libstdc++6,procps
PUSHGATEWAY_VERSION=1.5.1-2+b5  # Debian bookworm's prometheus-pushgateway (the version pins the tag)

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || die "building the node's images needs root (buildah, mmdebstrap)"
for tool in buildah mmdebstrap gcc; do
  command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install buildah mmdebstrap gcc)"
done
[ -x "$BIN/kubelet" ] || die "$BIN/kubelet is missing: run tools/k8s/install.sh first"

mkdir -p "$CACHE/archives" "$CACHE/storage" "$CACHE/run"
BUILDAH=("${NICE[@]}" buildah --root "$CACHE/storage" --runroot "$CACHE/run" --storage-driver overlay)
# The host trusts an extra CA for its package access; pip in the build needs it. It is mounted
# read-only for the build only, over the base's own CA bundle (Debian's pip reads that file; it
# exists there, so the mount leaves no mount point behind), never copied into an image.
CA=/etc/ssl/certs/ca-certificates.crt
MOUNTS=()
[ -f "$CA" ] && MOUNTS+=(--volume "$CA:$CA:ro")

# stdin: everything an image is built from; this script (how it is built) is part of every hash.
hash_of() { { cat; cat "$HERE/build.sh"; } | sha256sum | cut -c1-16; }
archive() { printf '%s/archives/%s-%s.tar' "$CACHE" "$1" "$2"; }
images=()

build_image() {  # short-name ref hash dockerfile context [build args...]
  local short="$1" ref="$2" hash="$3" dockerfile="$4" context="$5"
  shift 5
  local out start=$SECONDS
  out="$(archive "$short" "$hash")"
  if [ -s "$out" ]; then
    log "$ref up to date ($short-$hash)"
  else
    log "building $ref"
    "${BUILDAH[@]}" bud --quiet --layers --isolation chroot --network host "${MOUNTS[@]}" \
      -f "$dockerfile" -t "$ref" "$@" "$context" >/dev/null
    rm -f "$CACHE/archives/$short"-*.tar
    "${BUILDAH[@]}" push --quiet "$ref" "docker-archive:$out.partial:$ref"
    mv -f "$out.partial" "$out"
    log "$ref built in $((SECONDS - start)) s ($(du -m "$out" | cut -f1) MiB archive)"
  fi
  images+=("$ref $out")
}

total=$SECONDS

# --- pause: Kubernetes' own pause.c from the module install.sh built kubelet from ---------------------
kdir="$(cd "$ROOT/tools/k8s/kubernetes" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)"
pause_tag="$(sed -n 's/^TAG ?= *//p' "$kdir/build/pause/Makefile")"
pause_ref="registry.k8s.io/pause:$pause_tag"
pause_hash="$({ cat "$kdir/build/pause/linux/pause.c" "$HERE/pause.Dockerfile"; gcc --version | head -1; } | hash_of)"
if [ ! -s "$(archive pause "$pause_hash")" ]; then
  ctx="$(mktemp -d)"
  gcc -Os -static -DVERSION="\"$pause_tag\"" -o "$ctx/pause" "$kdir/build/pause/linux/pause.c"
  strip "$ctx/pause"
  build_image pause "$pause_ref" "$pause_hash" "$HERE/pause.Dockerfile" "$ctx"
  rm -rf "$ctx"
else
  build_image pause "$pause_ref" "$pause_hash" "$HERE/pause.Dockerfile" /nonexistent
fi
printf '%s\n' "$pause_ref" >"$BIN/pause-image"

# --- base: Debian bookworm minbase + base.Dockerfile -------------------------------------------------
base_hash="$(printf '%s\n' "$SUITE" "$PACKAGES" "$(cat "$HERE/base.Dockerfile")" | hash_of)"
base_ref="localhost/rayscale-base:$SUITE-$base_hash"
if ! "${BUILDAH[@]}" inspect --type image "$base_ref" >/dev/null 2>&1; then
  start=$SECONDS
  ctx="$(mktemp -d)"
  log "mmdebstrap $SUITE minbase + $PACKAGES"
  "${NICE[@]}" mmdebstrap --quiet --variant=minbase --include="$PACKAGES" "$SUITE" "$ctx/rootfs.tar"
  "${BUILDAH[@]}" bud --quiet --layers --isolation chroot --network host -f "$HERE/base.Dockerfile" \
    -t "$base_ref" "$ctx" >/dev/null
  rm -rf "$ctx"
  log "$base_ref built in $((SECONDS - start)) s"
else
  log "$base_ref up to date"
fi

# --- rayscale: the project's own Dockerfile, on the base ---------------------------------------------
app_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/deploy/helm/rayscale/Chart.yaml")"
rayscale_ref="docker.io/library/rayscale:$app_version"
rayscale_hash="$(
  cd "$ROOT"
  { echo "$base_hash"; cat Dockerfile pyproject.toml constraints.txt README.md
    find src -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' ! -name '*.pyc' -print0 | sort -z \
      | xargs -0 sha256sum; } | hash_of
)"
# The build context holds only what the Dockerfile copies.
ctx="$(mktemp -d)"
cp -r "$ROOT/Dockerfile" "$ROOT/pyproject.toml" "$ROOT/constraints.txt" "$ROOT/README.md" "$ROOT/src" "$ctx/"
# What a checkout builds, not what an editable install or Python left beside it.
find "$ctx/src" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
build_image rayscale "$rayscale_ref" "$rayscale_hash" "$ctx/Dockerfile" "$ctx" --build-arg "BASE_IMAGE=$base_ref"
rm -rf "$ctx"

# --- pushgateway: Debian's package on the base -------------------------------------------------------
pg_tag="${PUSHGATEWAY_VERSION%%-*}-debian"
pg_ref="docker.io/library/rayscale-pushgateway:$pg_tag"
pg_hash="$({ echo "$base_hash $PUSHGATEWAY_VERSION"; cat "$HERE/pushgateway.Dockerfile"; } | hash_of)"
build_image pushgateway "$pg_ref" "$pg_hash" "$HERE/pushgateway.Dockerfile" "$HERE" \
  --build-arg "BASE_IMAGE=$base_ref" --build-arg "PUSHGATEWAY_VERSION=$PUSHGATEWAY_VERSION"

printf '%s\n' "${images[@]}" >"$BIN/images.txt"
log "images ready in $((SECONDS - total)) s (cache $CACHE)"
