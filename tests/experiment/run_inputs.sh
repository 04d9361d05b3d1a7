#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# End-to-end checks of how the spo binary treats its inputs, on a one-round miniature of configs/spo.json:
#   - the models folder is read-only input: a stale rater.feature_stats is recomputed into the run's output dir,
#     nothing under models/ changes (content, file list, modification times)
#   - bad input before any work: a config that is a directory, a range error (file, key, value; no source path),
#     a corrupt preference model; none leaves an output directory behind
#   - --resume refuses a changed recipe (each key with both values) and a longer run without the flag, and writes
#     nothing when it refuses; temporaries of dead processes are removed when the run starts
# usage: run_inputs.sh <bin dir> <source dir> <scratch dir>
set -euo pipefail
bin=$1 src=$2 work=$3
rm -rf "$work"
mkdir -p "$work/models" "$work/configs"
cd "$work"
for m in base judge_train judge_heldout spm; do cp -r "$src/models/$m" models/; done
cp "$src"/configs/{spo,pretrain_base,judge_train,judge_heldout}.json configs/
chmod -R a-w models

fail() { echo "FAIL: $*" >&2; exit 1; }
expect_error() {  # expect_error <name> <expected substring> <command...>: exit code 1, message on stderr
  local name=$1 want=$2
  shift 2
  if "$@" > "$name.out" 2> "$name.err"; then fail "$name: succeeded"; fi
  grep -qF -- "$want" "$name.err" || { cat "$name.err" >&2; fail "$name: stderr lacks: $want"; }
  if grep -qE '\.hpp:[0-9]+|check failed|bad_alloc|std::' "$name.err"; then
    cat "$name.err" >&2
    fail "$name: message shows a source location or a C++ detail"
  fi
}
snapshot() { (cd models && find . -type f -printf '%p %s %T@\n' | sort && find . -type f -exec sha256sum {} + | sort); }

# The miniature: 4 sampling steps (a copy of the base model's config), one round of 2 prompts, 2 seeds per
# evaluation prompt, 50 real images, no progress evaluations, feature statistics of 20 images per class (the stored
# ones hold 1000: stale, so they are computed).
sed -i 's/"num_inference_steps": 20/"num_inference_steps": 4/' configs/pretrain_base.json
grep -q '"num_inference_steps": 4' configs/pretrain_base.json || fail "pretrain_base.json: the sed edit did not apply"
sed -e 's/"divert_start_step": 4/"divert_start_step": 1/' -e 's/"rounds": 12/"rounds": 1/' -e 's/"prompts_per_round": 10/"prompts_per_round": 2/' \
    -e 's/"seeds_per_prompt": 16/"seeds_per_prompt": 2/' -e 's/"real_images": 2000/"real_images": 50/' \
    -e 's/"progress_every_rounds": 4/"progress_every_rounds": 0/' -e 's/"images_per_class": 1000/"images_per_class": 20/' \
    -e 's|"output_dir": "runs/spo"|"output_dir": "out"|' configs/spo.json > mini.json
grep -q '"images_per_class": 20' mini.json || fail "mini.json: the sed edits did not apply"

before=$(snapshot)

# Bad input: nothing may be created.
mkdir cfgdir
expect_error config_is_directory "cfgdir: is a directory" "$bin/spo" cfgdir
sed 's/"rounds": 1,/"rounds": 0,/' mini.json > zero_rounds.json
expect_error range_error "zero_rounds.json: train.rounds: must be >= 1, got 0" "$bin/spo" zero_rounds.json
head -c 1000 models/spm/preference_model.safetensors > truncated_pm.safetensors
sed 's|"preference_model": "models/spm/preference_model.safetensors"|"preference_model": "truncated_pm.safetensors"|' \
    mini.json > corrupt_pm.json
expect_error corrupt_preference_model "truncated_pm.safetensors" "$bin/spo" corrupt_pm.json
[[ ! -e out ]] || fail "a failed run left the output directory behind"

# One round with the models folder read-only.
"$bin/spo" mini.json > run1.out 2> run1.err || { cat run1.err >&2; fail "the miniature run failed"; }
[[ "$before" == "$(snapshot)" ]] || fail "the run changed files under models/"
[[ -f out/feature_stats.safetensors ]] || fail "the computed statistics are not in the output directory"
grep -qF "was computed with images_per_class 1000" run1.err || fail "no note that the stored statistics were stale"

# --resume with another recipe: refused, every key named, nothing written.
outputs=$(find out -type f -exec sha256sum {} + | sort)
sed -e 's/"lr": 0.0001/"lr": 0.001/' -e 's/"seed": 42/"seed": 7/' -e 's/"beta": 10.0/"beta": 5.0/' \
    -e 's/"k": 4/"k": 8/' mini.json > changed.json
expect_error resume_changed "train.lr: 0.0001 in the checkpoint, 0.001 now" "$bin/spo" changed.json --resume
for key in "seed: 42 in the checkpoint, 7 now" "loss.beta: 10.0 in the checkpoint, 5.0 now" \
           "resampler.k: 4 in the checkpoint, 8 now"; do
  grep -qF "$key" resume_changed.err || fail "resume_changed: $key not named"
done
expect_error resume_longer "--allow-rounds-change allows changing train.rounds only" \
  "$bin/spo" mini.json --resume --rounds=2
[[ "$outputs" == "$(find out -type f -exec sha256sum {} + | sort)" ]] || fail "a refused resume changed the outputs"

# A temporary of a dead process is removed when the run starts; the same recipe resumes (nothing left to train).
sh -c 'exit 0' & dead=$!
wait "$dead"
kill -0 "$dead" 2> /dev/null && fail "pid $dead still runs"
touch "out/checkpoint.safetensors.tmp.$dead"
"$bin/spo" mini.json --resume > run2.out 2> run2.err || { cat run2.err >&2; fail "the resumed run failed"; }
[[ ! -e "out/checkpoint.safetensors.tmp.$dead" ]] || fail "the orphaned temporary was not removed"
grep -qF "resumed after round 1" run2.err || fail "the run did not resume"
[[ "$before" == "$(snapshot)" ]] || fail "the resumed run changed files under models/"
echo "run_inputs: all checks passed"
