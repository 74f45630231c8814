#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/k8s against Kubernetes' own OpenAPI schemas,
# strictly (an unknown or misspelled field is an error, as is a kind or apiVersion that has no
# schema), with no cluster and no network: kubernetes-validate (PyPI) ships the schemas of
# Kubernetes 1.25 to 1.37 inside its package.
#
# What is checked:
#   - every manifest in deploy/k8s/base (kustomization.yaml aside), including the ones that
#     kustomization.yaml leaves out on purpose (the placeholder Secret, the results reader);
#   - when kubectl is installed, what `kubectl kustomize` renders for deploy/k8s/base and for
#     each overlay (deploy/k8s/overlays/*), i.e. exactly what `kubectl apply -k` would send.
# Not checked: overlays/mtls/cert-manager.yaml (cert-manager's kinds have no schema here), and
# whatever only an API server checks (value ranges, name formats, immutable fields, quotas).
#
# Usage: deploy/validate.sh [--no-install]
#   Installs kubernetes-validate into a virtual environment under the user's cache folder when
#   it is missing (about 10 s, from PyPI), unless --no-install is given.
# Environment:
#   STAMPEDE_K8S_VALIDATE_HOME     where the virtual environment lives
#                                  [default: ${XDG_CACHE_HOME:-~/.cache}/stampede/kubernetes-validate-VERSION]
#   STAMPEDE_K8S_VERSIONS          Kubernetes versions to validate against [default: "1.25.0 1.37.0",
#                                  the oldest and the newest the tool ships]
#   STAMPEDE_REQUIRE_K8S_VALIDATE  when set (CI), a missing kubectl is an error rather than a
#                                  skipped kustomize check
# Exit status: 0 valid; 1 invalid; 2 could not run (install failed, kubectl failed);
#              77 kubernetes-validate is missing and --no-install was given.
set -euo pipefail

VALIDATOR_VERSION=1.37.0
here="$(cd "$(dirname "$0")" && pwd)"
k8s="$here/k8s"

install=1
for arg in "$@"; do
  case "$arg" in
    --no-install) install=0 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "validate.sh: unknown argument $arg (see --help)" >&2
      exit 2
      ;;
  esac
done

venv="${STAMPEDE_K8S_VALIDATE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/stampede/kubernetes-validate-$VALIDATOR_VERSION}"
# A tool that is there but does not run (a virtual environment whose Python was removed, say)
# counts as missing.
runs() { [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }
tool=""
if runs "$venv/bin/kubernetes-validate"; then
  tool="$venv/bin/kubernetes-validate"
elif command -v kubernetes-validate >/dev/null 2>&1 && runs "$(command -v kubernetes-validate)"; then
  tool="$(command -v kubernetes-validate)"
elif [ "$install" = 1 ]; then
  echo "== installing kubernetes-validate $VALIDATOR_VERSION into $venv"
  if ! command -v python3 >/dev/null 2>&1; then
    echo "validate.sh: python3 is needed to install kubernetes-validate" >&2
    exit 2
  fi
  started=$(date +%s)
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  if ! python3 -m venv "$venv" ||
    ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "kubernetes-validate==$VALIDATOR_VERSION"; then
    rm -rf "$venv"
    echo "validate.sh: could not install kubernetes-validate==$VALIDATOR_VERSION from PyPI" >&2
    exit 2
  fi
  echo "   installed in $(($(date +%s) - started)) s"
  tool="$venv/bin/kubernetes-validate"
else
  echo "kubernetes-validate is not installed (run deploy/validate.sh once to install it)" >&2
  exit 77
fi

versions="${STAMPEDE_K8S_VERSIONS:-1.25.0 1.37.0}"
version_args=()
for v in $versions; do
  version_args+=(-k "$v")
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The manifests as written.
files=()
for f in "$k8s"/base/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] && continue
  files+=("$f")
done

# What kustomize renders: the base and each overlay.
if command -v kubectl >/dev/null 2>&1; then
  for dir in "$k8s/base" "$k8s"/overlays/*/; do
    dir="${dir%/}"
    [ -f "$dir/kustomization.yaml" ] || continue
    name="kustomize-$(basename "$dir").yaml"
    if ! kubectl kustomize "$dir" >"$tmp/$name" 2>"$tmp/kustomize.err"; then
      echo "FAILED: kubectl kustomize ${dir#"$here"/}:" >&2
      cat "$tmp/kustomize.err" >&2
      exit 1
    fi
    files+=("$tmp/$name")
  done
elif [ -n "${STAMPEDE_REQUIRE_K8S_VALIDATE:-}" ]; then
  echo "validate.sh: kubectl is not installed, so the kustomize output cannot be checked" >&2
  exit 2
else
  echo "note: kubectl is not installed: the kustomize output (and so the overlays) is not checked"
fi

echo "== $("$tool" --version 2>/dev/null | sed 's/^/kubernetes-validate /') --strict, Kubernetes $versions"
set +e
"$tool" --strict --quiet "${version_args[@]}" "${files[@]}" >"$tmp/out" 2>&1
rc=$?
set -e
sed -e "s#$tmp/##g" -e "s#$here/##g" "$tmp/out"
# kubernetes-validate only warns, and exits 0, for a kind or apiVersion it has no schema for:
# here that is a mistake (a misspelled kind), so any warning fails too.
if [ "$rc" -ne 0 ] || grep -qE '^(WARN|ERROR|FATAL)' "$tmp/out"; then
  echo "FAILED: the manifests are not valid (exit $rc)" >&2
  exit 1
fi
echo "ok: every resource of these ${#files[@]} files is valid:"
for f in "${files[@]}"; do
  echo "   ${f#"$here"/}" | sed "s#$tmp/##"
done
