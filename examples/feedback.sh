#!/usr/bin/env bash
# Feedback provenance on the demo store: model-v40 (trained on v40) produced completions; annotators
# rated items (some of them those completions) under two guideline versions, one annotator's scale
# drifting. The ratings become rows of v41 through a pipeline; the run card of the run trained on
# v41 answers: which annotations under which guidelines, which pinned transformations, and expected
# vs actual training signal — plus how much of it derives from model-v40's own outputs.
# Usage: examples/feedback.sh STORE   (STORE: the store examples/demo.sh built; keep it with
# ROWTRAIL_DEMO_DIR=DIR bash examples/demo.sh, then: bash examples/feedback.sh DIR/store)
set -euo pipefail
store="${1:?usage: examples/feedback.sh STORE (the store examples/demo.sh built)}"
here="$(cd "$(dirname "$0")/demo/feedback" && pwd)"
export ROWTRAIL_STORE="$(cd "$store" && pwd)"
cd "$here"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
sign=()
if ! ls "${ROWTRAIL_HOME:-$HOME/.config/rowtrail}"/keys/*.pem >/dev/null 2>&1 && [ -z "${ROWTRAIL_SIGNING_KEY:-}" ]; then
  sign=(--no-sign)  # no signing key: commit unsigned (verify then needs --allow-unsigned)
fi
# The pseudonymization key lives outside the store; only its id is journaled.
keydir="$(mktemp -d)"
python3 -c 'import secrets; print(secrets.token_hex(32))' > "$keydir/pseudonym.key"

# model-v40: a run trained on v40 (registered from outside), and the completions it produced
run40=$(rowtrail run record --version v40 --config run-model-v40.json | awk '{print $2}' | tr -d ':')
echo "registered the training run of model-v40: $run40"
step rowtrail model add model-v40 --run "$run40" --outputs model-v40-outputs.jsonl
# the two guideline versions the ratings were made under, with the rating distribution each expects
step rowtrail guideline add guideline-v1.md --version 1 --expected '{"1": 0.10, "2": 0.20, "3": 0.30, "4": 0.25, "5": 0.15}'
step rowtrail guideline add guideline-v2.md --version 2 --expected '{"1": 0.10, "2": 0.15, "3": 0.30, "4": 0.30, "5": 0.15}'
step rowtrail source add acme-ratings --kind annotation-batch --uri https://label.acme.test/projects/7 \
  --license LicenseRef-acme-internal --legal-basis contract --collected 2026-03-02/2026-04-26 --owner annotation-team
# batches b1-b3 in the plain schema, b4 as a Label Studio export; annotator ids pseudonymized
step rowtrail annotations import ratings-b1-b3.jsonl --source acme-ratings --key-file "$keydir/pseudonym.key"
step rowtrail annotations import label-studio-b4.json --format label-studio --source acme-ratings --key-file "$keydir/pseudonym.key"
step rowtrail guideline diff 1 2
# v41: v39's steps plus "drop ratings below 2" and "upsample guideline v2"
step rowtrail apply pipeline.toml
step rowtrail commit -m "v41: helpfulness ratings b1-b4 (model-v40 completions among the rated items)" --tag v41 "${sign[@]}"
step rowtrail agreement v41 --by guideline
step rowtrail agreement v41 --by annotator
step rowtrail signal v41
step rowtrail contamination v41 --chains 5
# the next model trains on v41; its run card answers the three questions from the store alone
run41=$(rowtrail run record --version v41 --config run-model-v41.json | awk '{print $2}' | tr -d ':')
step rowtrail run-card "$run41"
rm -rf "$keydir"
