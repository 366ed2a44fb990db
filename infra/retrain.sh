#!/usr/bin/env bash
# Retraining entrypoint for a cluster (RayJob, cluster launcher `ray submit`, or by hand):
# point DVC at the S3 remote, fetch the data, rerun what changed, publish the outputs.
# Needs: MLFLOW_TRACKING_URI, EULERNET_STORAGE, EULERNET_DVC_REMOTE (s3://bucket/prefix) and S3 credentials;
# AWS_ENDPOINT_URL for S3-compatible stores. RAY_ADDRESS is set by `ray job submit` (or by you).
set -euo pipefail
: "${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI to the MLflow server}"
: "${EULERNET_STORAGE:?set EULERNET_STORAGE to an s3:// prefix every node can reach}"
: "${EULERNET_DVC_REMOTE:?set EULERNET_DVC_REMOTE to the DVC S3 remote, e.g. s3://bucket/dvc}"

# A commit archive (Ray working_dir) has no .git; DVC then runs without an SCM.
[ -d .git ] || dvc config --local core.no_scm true
dvc config --local core.analytics false
# --local: the cluster remote lives in .dvc/config.local; no default remote is committed (data.dvc names the
# in-repo `sample` remote for the sample alone), so this one is the default only on this machine.
dvc remote add --local --force --default cluster "$EULERNET_DVC_REMOTE"
if [ -n "${AWS_ENDPOINT_URL:-}" ]; then
  dvc remote modify --local cluster endpointurl "$AWS_ENDPOINT_URL"
fi

# --allow-missing: a first run has pipeline outputs in dvc.lock that were never pushed; repro recreates them.
dvc pull --allow-missing
dvc repro
dvc push
