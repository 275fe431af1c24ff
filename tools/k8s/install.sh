#!/usr/bin/env bash
# Installs the offline Kubernetes the `controlplane` and `node` tests run into .tools/k8s/bin/
# (git-ignored): etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and
# kubectl (k8s.io/kubernetes), kwok, the KubeRay operator, containerd and CoreDNS; it locates the CRDs
# the tests apply (KubeRay's and the Prometheus operator's, in the Go module cache), and, as root,
# builds the real node's images (images/build.sh).
#
# Every version is pinned by a go.mod/go.sum next to this script (etcd/, kubernetes/, kwok/, kuberay/,
# crds/); nothing is fetched but Go modules, from the Go module proxy. Idempotent and cached: a
# component whose inputs (its go.mod, go.sum, build flags, Go version) are unchanged since its last
# build is skipped (a stamp in the bin directory); otherwise Go rebuilds from its default module and
# build caches in $HOME, so a fresh clone on the same machine only relinks (times:
# docs/local-kubernetes.md).
#
# Usage: tools/k8s/install.sh            (RAYSCALE_K8S_BIN overrides the destination)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${RAYSCALE_K8S_BIN:-$ROOT/.tools/k8s/bin}"
# Builds run at the lowest priority so that they never starve whatever else shares the machine.
NICE=(nice -n 19)

# Go: from PATH, else the toolchain's usual home.
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "[k8s-install] no Go toolchain (go) on PATH" >&2; exit 1; }

mkdir -p "$BIN"
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"  # go.sum is the pin: never let a build rewrite it

log() { printf '[k8s-install] %s\n' "$*" >&2; }

stamp_of() {  # component [build flags]: a hash of everything that decides its binaries
  # (a wrapper's own Go files too: coredns/main.go picks CoreDNS' plugins)
  { cat "$HERE/$1/go.mod" "$HERE/$1/go.sum"; find "$HERE/$1" -maxdepth 1 -name '*.go' -exec cat {} +
    printf '%s\n' "${2:-}" "$(go env GOVERSION)"; } | sha256sum | cut -d' ' -f1
}

up_to_date() {  # component flags binary...
  local comp="$1" flags="$2"
  shift 2
  [ -f "$BIN/.stamp-$comp" ] && [ "$(cat "$BIN/.stamp-$comp")" = "$(stamp_of "$comp" "$flags")" ] || return 1
  local b
  for b in "$@"; do [ -x "$BIN/$b" ] || return 1; done
}

mod_version() {  # module-dir module-path
  (cd "$HERE/$1" && go list -m -f '{{.Version}}' "$2")
}

build() {  # component ldflags package...
  local comp="$1" ldflags="$2"
  shift 2
  local start=$SECONDS tmp
  tmp="$(mktemp -d "$BIN/.build-$comp.XXXXXX")"
  log "building $comp: $*"
  (cd "$HERE/$comp" && "${NICE[@]}" go build -ldflags "$ldflags" -o "$tmp/" "$@")
  mv -f "$tmp"/* "$BIN/"
  rmdir "$tmp"
  stamp_of "$comp" "$ldflags" >"$BIN/.stamp-$comp"
  log "$comp built in $((SECONDS - start)) s"
}

total=$SECONDS

# --- Kubernetes: apiserver, controller-manager, scheduler -----------------------------------------
kv="$(mod_version kubernetes k8s.io/kubernetes)"  # e.g. v1.36.3
major="${kv#v}" && major="${major%%.*}"
minor="${kv#v*.}" && minor="${minor%%.*}"
k8s_flags="-s -w"
# Both version packages: component-base's is what the servers report on /version (helm's and kwok's
# checks read it), client-go's is what the binaries' own clients send.
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_flags+=" -X $pkg.gitVersion=$kv -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  k8s_flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
if up_to_date kubernetes "$k8s_flags" kube-apiserver kube-controller-manager kube-scheduler \
  kubelet kube-proxy kubectl; then
  log "kubernetes $kv up to date"
else
  build kubernetes "$k8s_flags" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kubectl
fi

# --- KubeRay operator -----------------------------------------------------------------------------
if up_to_date kuberay "-s -w" kuberay-operator; then
  log "kuberay up to date"
else
  build kuberay "-s -w" github.com/ray-project/kuberay/ray-operator
  mv -f "$BIN/ray-operator" "$BIN/kuberay-operator"
fi
# The CRDs matching the operator that was built, for the tests to apply.
krv="$(mod_version kuberay github.com/ray-project/kuberay/ray-operator)"
kdir="$(cd "$HERE/kuberay" && go list -m -f '{{.Dir}}' github.com/ray-project/kuberay/ray-operator)"
printf '%s\n' "$krv" >"$BIN/kuberay-operator.version"
printf '%s\n' "$kdir/config/crd/bases" >"$BIN/kuberay-operator.crds"

# --- Prometheus operator CRDs (PodMonitor, ServiceMonitor, PrometheusRule): downloaded, not built --
(cd "$HERE/crds" && go mod download github.com/prometheus-operator/prometheus-operator)
pdir="$(cd "$HERE/crds" && go list -m -f '{{.Dir}}' github.com/prometheus-operator/prometheus-operator)"
printf '%s\n' "$pdir/example/prometheus-operator-crd" >"$BIN/prometheus-operator.crds"

# --- kwok -----------------------------------------------------------------------------------------
if up_to_date kwok "-s -w" kwok; then
  log "kwok up to date"
else
  build kwok "-s -w" sigs.k8s.io/kwok/cmd/kwok
fi
# kwok's stage definitions (its default "fast" node and pod lifecycles), for the tests' kwok config.
(cd "$HERE/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok) >"$BIN/kwok.module"

# --- etcd (go.etcd.io/etcd/server/v3: its main package builds the etcd server) ----------------------
if up_to_date etcd "-s -w" etcd; then
  log "etcd up to date"
else
  build etcd "-s -w" go.etcd.io/etcd/server/v3
  mv -f "$BIN/server" "$BIN/etcd"
fi

# --- containerd (the real node's container runtime), CGO-free: no btrfs, overlayfs is what it uses ----
cv="$(mod_version containerd github.com/containerd/containerd/v2)"
containerd_flags="-s -w -X github.com/containerd/containerd/v2/version.Version=$cv"
if up_to_date containerd "$containerd_flags" containerd containerd-shim-runc-v2 ctr; then
  log "containerd $cv up to date"
else
  (export CGO_ENABLED=0 && build containerd "$containerd_flags" \
    github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr)
fi

# --- CoreDNS (the real node's cluster DNS), with only the plugins main.go names --------------------
if up_to_date coredns "-s -w" coredns; then
  log "coredns up to date"
else
  build coredns "-s -w" .
fi

# --- the real node's images (tools/k8s/images/build.sh: buildah and mmdebstrap need root) ----------
if [ "$(id -u)" -eq 0 ]; then
  bash "$HERE/images/build.sh"
else
  log "not root: the real node's images are not built (the node tests skip; make cluster needs root)"
fi

log "control plane in $BIN ($((SECONDS - total)) s)"
"$BIN/kube-apiserver" --version >&2
"$BIN/etcd" --version | sed -n 1p >&2  # sed reads it all: no SIGPIPE under pipefail
printf 'KubeRay operator %s\n' "$(cat "$BIN/kuberay-operator.version")" >&2
"$BIN/kwok" --version >&2
"$BIN/kubelet" --version >&2
"$BIN/containerd" --version >&2
"$BIN/coredns" -version | sed -n 1p >&2
