#!/usr/bin/env bash
# Regenerates deploy/manifests/pingora-waypoint.yaml from the Helm chart.
# Needs Helm's SDK for Python (no helm binary): pip install helm-python-sdk==0.2.2
set -euo pipefail
cd "$(dirname "$0")"
python3 render.py --output manifests/pingora-waypoint.yaml "$@"
echo "rendered manifests/pingora-waypoint.yaml"
