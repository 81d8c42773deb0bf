#!/usr/bin/env bash
# Validate the deploy files with the tools the dev install brings (pyproject.toml, extra "dev"):
# yamllint, check-jsonschema (compose), kubernetes-validate (manifests), PromQL rules, hadolint
# (Dockerfile) and shellcheck (scripts). Usage: deploy/lint/lint.sh [VENV_BIN]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${1:-$ROOT/.venv/bin}"
cd "$ROOT"

for tool in yamllint check-jsonschema kubernetes-validate hadolint shellcheck python; do
  [ -x "$BIN/$tool" ] || { echo "deploy lint: $BIN/$tool missing: run make install" >&2; exit 1; }
done

mapfile -t yaml_files < <(find deploy -name '*.yml' -o -name '*.yaml' | sort)
mapfile -t manifests < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
mapfile -t scripts < <(find deploy -name '*.sh' | sort)

echo "yamllint: ${#yaml_files[@]} files"
"$BIN/yamllint" --strict -c deploy/lint/yamllint.yml "${yaml_files[@]}"
echo "check-jsonschema: deploy/docker-compose.yml against the compose specification"
"$BIN/check-jsonschema" --builtin-schema vendor.compose-spec deploy/docker-compose.yml
echo "kubernetes-validate: ${#manifests[@]} manifests (custom resources: their kinds are checked by tests/unit/test_deploy.py)"
"$BIN/kubernetes-validate" --strict --quiet "${manifests[@]}"
echo "promql: alert rules"
"$BIN/python" deploy/lint/check_rules.py deploy/prometheus/alerts.yml deploy/k8s/prometheusrule.yaml
echo "hadolint: deploy/Dockerfile"
"$BIN/hadolint" deploy/Dockerfile
echo "shellcheck: ${#scripts[@]} scripts"
"$BIN/shellcheck" -x -P SCRIPTDIR "${scripts[@]}"
