#!/usr/bin/env bash
# End-to-end demo on the small dataset in examples/demo/: sources, ingest with provenance, signed
# versions, a diff, a trace, a why, inclusion and exclusion proofs, SQL, a pipeline of pinned steps
# with row-level lineage and per-step monitoring, bisect, verify, a recorded training run and its
# attribution, a consent opt-out with its signed receipt (naming the run), the transparency table, and
# feedback provenance ending in a run card (examples/feedback.sh).
# Runs in a fresh temporary store and key home (set ROWTRAIL_DEMO_DIR to keep them somewhere).
set -euo pipefail
here="$(cd "$(dirname "$0")/demo" && pwd)"
work="${ROWTRAIL_DEMO_DIR:-$(mktemp -d)}"
export ROWTRAIL_HOME="$work/home" ROWTRAIL_STORE="$work/store"
cd "$here"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step rowtrail keygen
step rowtrail init
step rowtrail source import sources.csv
step rowtrail source list
step rowtrail ingest born-sft-v1.jsonl --source-field benchmark --key-field id --content-fields prompt,response \
  --attr teacher --attr lane --attr generated_at --attr score --hash-fields prompt
step rowtrail ingest opus-traces.jsonl --source opus-traces --key-field trace_id --content-fields prompt,response
step rowtrail commit -m "first mix: MBPP+, DS-1000, Opus traces" --tag v37
# v38: 20 MBPP+ responses rewritten and 10 tasks added, a crawl snapshot added, the Opus traces removed.
step rowtrail ingest born-sft-v2.jsonl --source-field benchmark --key-field id --content-fields prompt,response \
  --attr teacher --attr lane --attr generated_at --attr score --hash-fields prompt
step rowtrail ingest crawl-2024-09.csv --source crawl-2024-09 --key-field url --content-fields text --attr lang
step rowtrail rm --source opus-traces --reason "consent withdrawn by the dataset owner"
step rowtrail status
step rowtrail commit -m "refresh MBPP+ lane 9, add crawl 2024-09, drop Opus traces" --tag v38
step rowtrail log
step rowtrail diff v37 v38

row=$(rowtrail rows --version v37 --source opus-traces --limit 1 --json | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["row_id"])')
step rowtrail trace "$row"
step rowtrail why "$row" --version v38
step rowtrail prove "$row" v37 -o "$work/in-v37.json"
step rowtrail check-proof "$work/in-v37.json"
step rowtrail prove "$row" v38 --absent -o "$work/absent-v38.json"
step rowtrail check-proof "$work/absent-v38.json"
step rowtrail sql "SELECT v.tag, r.source_id, count(*) AS rows FROM version_rows vr JOIN versions v USING (version_id) JOIN rows r USING (row_id) GROUP BY ALL ORDER BY 1, 2"

# v39: the same inputs through a pipeline of pinned steps (examples/demo/pipeline.toml): drop short
# crawl pages, strip the crawler's boilerplate (a user function, cleaning.py), dedupe exactly, upsample lane 9.
step rowtrail apply pipeline.toml --dry-run
step rowtrail apply pipeline.toml
step rowtrail commit -m "v39: filter, strip boilerplate, dedupe, upsample lane 9" --tag v39
step rowtrail dropped --version v39
step rowtrail monitor v39
page=$(rowtrail sql "SELECT row_id FROM rows WHERE source_key = 'https://example.org/doc/42' AND parent_row_id IS NULL" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["row_id"])')
step rowtrail why "$page" --version v39
clean=$(rowtrail trace "$page" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["descendants"][0]["row_id"])')
step rowtrail why "$clean" --version v39
step rowtrail sql "SELECT step, kind, count(*) AS edges FROM lineage GROUP BY ALL ORDER BY 1"
# the training job's copy of v39: content, provenance columns and weights, with a digest sidecar
step rowtrail export parquet v39 -o "$work/v39-corpus"
# which change from v38 to v39 leaves fewer than 40 crawl pages? (a corpus test: exit 0 good, 1 bad)
step rowtrail bisect v38 v39 --test "python3 has_crawl.py {corpus}" --pipeline pipeline.toml
step rowtrail verify

# a training run on v39 under the recorder (train.py: a tiny code-block classifier): which rows went
# into each step, what each did to each parameter group, and which rows helped or hurt a test example
export ROWTRAIL_DEMO_MODEL="$work/model.pt"
step python3 train.py v39 "$work"
run=$(rowtrail runs --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["run_id"])')
step rowtrail run show "$run"
step rowtrail attribute "$run" --group 0 --by source
step rowtrail attribute "$run" --model train.py:load --test "$work/test.npz" --query 1 --top 3
step rowtrail runs --consumed-source crawl-2024-09

# v40: the crawl's site owner withdraws consent. The opt-out removes the pages and everything the
# pipeline derived from them, commits, registers the request and signs a removal receipt.
step rowtrail optout --source crawl-2024-09 --reason "site owner opt-out, ticket 17" --tag v40 \
  --pipeline pipeline.toml -o "$work/receipt.json"
step rowtrail check-receipt "$work/receipt.json"
step rowtrail prove "$page" v40 --absent -o "$work/page-absent-v40.json"
step rowtrail check-proof "$work/page-absent-v40.json"
# the release's transparency table (also: --format csv|json, and eu-ai-act, datacard, croissant, prov, openlineage, bundle)
step rowtrail export transparency v40

# feedback provenance on the same store: guidelines, annotations (one drifting annotator), v41 with
# ratings of model-v40's outputs, agreement, signal, contamination, and the run card of a run on v41
bash "$here/../feedback.sh" "$ROWTRAIL_STORE"
printf '\nDemo store: %s (ROWTRAIL_STORE=%s ROWTRAIL_HOME=%s)\n' "$work" "$ROWTRAIL_STORE" "$ROWTRAIL_HOME"
