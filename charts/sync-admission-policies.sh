#!/usr/bin/env bash
# Copies the admission policies (canonical copy: policies/admission/*.yaml)
# into the chart (charts/synco/files/admission/), which ships them unchanged
# apart from names, labels, validationActions and the namespace selector (see
# templates/admission-policies.yaml). e2e/tests/chart_files.rs fails when the
# two copies differ; run this after editing a policy.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/policies/admission"
dst="$root/charts/synco/files/admission"
mkdir -p "$dst"
rm -f "$dst"/*.yaml
cp "$src"/*.yaml "$dst"/
echo "copied $(ls "$src"/*.yaml | wc -l) policy files to ${dst#"$root"/}"
