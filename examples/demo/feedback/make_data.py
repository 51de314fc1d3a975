"""Regenerate this directory's demo annotation set (seeded, so the files come out the same):
python make_data.py. The ratings of batches b1–b3 are in the plain JSONL schema; batch b4 is a
Label Studio export; model-v40-outputs.jsonl are the completions model-v40 produced."""

import json
from pathlib import Path

from rowtrail.feedback import synth

here = Path(__file__).parent
S = synth.generate(seed=7, model="model-v40")
plain = [r for r in S.records if r["batch"] != "b4"]
synth.write_plain(plain, here / "ratings-b1-b3.jsonl")
(here / "label-studio-b4.json").write_text(json.dumps(synth.to_label_studio([r for r in S.records if r["batch"] == "b4"]), indent=1) + "\n")
synth.write_outputs(S.model_outputs, here / "model-v40-outputs.jsonl")
(here / "truth.json").write_text(json.dumps(S.truth, indent=1, sort_keys=True) + "\n")
