#!/usr/bin/env bash
# End-to-end check of the console in a real terminal: tmux at 80x24, the real engine.
# Not run by pytest (it takes a couple of minutes on 2 CPU cores).
#
#   scripts/tmux_e2e.sh            # uses .venv/bin/lmconsole; KEEP=1 keeps the temp folder
#
# The manifest is a temp copy of experiments.toml plus "e2e-pretrain": demo-pretrain cut to
# 60 steps (the real MLM + NSP job on the embedded corpus, about a minute on 2 cores).
# Part 1: open the console, run e2e-pretrain, pause, resume and cancel it (checkpoint),
#         run demo-params, export one of its tables, quit; check the screen, the run
#         directories, the exported files and that the terminal is restored.
# Part 2: resume the cancelled run from the Runs tab, then kill the tmux session (SIGHUP,
#         as when SSH drops): the job runs in its own process and finishes the run.
# Part 3: run it again and quit: the console exits at once with a note, the job goes on;
#         `lmconsole control ... cancel` from another shell stops it.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
LMCONSOLE=${LMCONSOLE:-$REPO/.venv/bin/lmconsole}
WORK=$(mktemp -d /tmp/lmconsole-e2e.XXXXXX)
SESSION=lmc-e2e-$$
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export LMCONSOLE_CACHE=${LMCONSOLE_CACHE:-/tmp/lmconsole-test-cache-$(id -u)}

command -v tmux >/dev/null || { echo "tmux is not installed (apt-get install -y tmux)"; exit 2; }
[ -x "$LMCONSOLE" ] || { echo "no console at $LMCONSOLE (pip install -e .)"; exit 2; }

cleanup() {
    tmux kill-session -t "$SESSION" 2>/dev/null || true
    if [ -f "$WORK/pid" ] && kill -0 "$(cat "$WORK/pid")" 2>/dev/null; then kill "$(cat "$WORK/pid")" || true; fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*"; echo "--- screen ---"; screen || true; exit 1; }
screen() { tmux capture-pane -p -J -t "$SESSION"; }
keys() { tmux send-keys -t "$SESSION" "$@"; sleep 0.3; }
# wait_for TEXT [SECONDS]: until the screen shows TEXT (a grep -E pattern)
wait_for() {
    local deadline=$((SECONDS + ${2:-30}))
    until screen | grep -Eq -- "$1"; do
        [ $SECONDS -lt $deadline ] || fail "waited ${2:-30}s for: $1"
        sleep 0.2
    done
}
# wait_file FILE JSON-STATUS [SECONDS]
wait_status() {
    local deadline=$((SECONDS + ${3:-60}))
    until grep -q "\"status\": \"$2\"" "$1" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || fail "waited ${3:-60}s for $1 to say $2 (it says: $(cat "$1" 2>/dev/null))"
        sleep 0.3
    done
}
start_console() {
    # The console execs in the inner sh, so $$ there is the console's pid; the pane stays open after it exits.
    cat > "$WORK/launch.sh" <<EOF
cd '$WORK'
sh -c 'echo \$\$ > pid; exec "\$0" --manifest "\$1"' '$LMCONSOLE' '$WORK/experiments.toml'
echo "CONSOLE-EXIT=\$?" > exit
echo console exited
sleep 600
EOF
    tmux new-session -d -s "$SESSION" -x 80 -y 24 "sh '$WORK/launch.sh'"
}

sed -e "s|^runs_dir = .*|runs_dir = \"$WORK/runs\"|" "$REPO/experiments.toml" > "$WORK/experiments.toml"
cat >> "$WORK/experiments.toml" <<'EOF'

[[experiment]]
name = "e2e-pretrain"
task = "pretrain"
description = "demo-pretrain cut to 60 steps (tmux end-to-end check)"
model = "bert-tiny"
tokenizer = "train"
vocab_size = 4000
dataset = "embedded:wikitext"
dataset_config = "wikitext-2-raw-v1"
eval_split = "test"
epochs = 2
max_steps = 60
learning_rate = 1e-3
batch_size = 32
max_seq_length = 128
warmup = 0.1
logging_steps = 5
max_eval_samples = 64
EOF

# -- part 1 -------------------------------------------------------------------------------
step "start the console at 80x24"
t0=$(date +%s.%N)
start_console
wait_for "e2e-pretrain" 10
echo "first frame after $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s (includes tmux start)"
screen | grep -q "1 Experiments" || fail "no tabs"

step "filter, run e2e-pretrain"
keys "/" ; keys "e2e-pre" ; keys Enter
wait_for "e2e-pretrain +- +pretrain" 5
keys r
keys 2
wait_for "step [0-9]+/[0-9]+" 90
RUN=$(ls -d "$WORK"/runs/e2e-pretrain/*/ | head -1)
echo "run dir: $RUN"

step "pause, resume"
keys p
wait_for "paused" 20
wait_status "$RUN/status.json" paused 5
keys p
wait_for "▶ running" 20
wait_status "$RUN/status.json" running 5

step "cancel (confirm), checkpoint saved"
keys c
wait_for "Cancel e2e-pretrain\?" 5
keys y
wait_for "cancelled" 60
wait_status "$RUN/status.json" cancelled 5
ls "$RUN/checkpoints" | grep -q step- || fail "no checkpoint after cancel"

step "run demo-params, open it, export a table"
keys 1 ; keys Escape
keys "/" ; keys "demo-params" ; keys Enter
keys r
keys 2
wait_for "demo-params +✓ finished" 60
keys Down ; keys Enter
wait_for "params_base" 10
keys e
wait_for "Export table" 5
keys Enter
sleep 1.5
ls "$WORK"/exports/*params_base*.csv "$WORK"/exports/*params_base*.md "$WORK"/exports/*params_base*.tex "$WORK"/exports/*params_base*.json >/dev/null \
    || fail "export files missing: $(ls "$WORK/exports" 2>&1)"
grep -q "embeddings.word_embeddings.weight" "$WORK"/exports/*params_base.csv || fail "bad CSV"
echo "exported: $(ls "$WORK/exports" | tr '\n' ' ')"

step "quit (no job running: no question) and check the terminal"
keys Escape
keys q
deadline=$((SECONDS + 10))
until [ -f "$WORK/exit" ]; do [ $SECONDS -lt $deadline ] || fail "console did not exit"; sleep 0.2; done
grep -q "CONSOLE-EXIT=0" "$WORK/exit" || fail "exit code: $(cat "$WORK/exit")"
sleep 0.3
screen | grep -q "console exited" || fail "terminal not restored"
screen | grep -q "Traceback" && fail "traceback on the terminal"
[ "$(tmux display -p -t "$SESSION" '#{alternate_on}')" = 0 ] || fail "still in the alternate screen"
[ "$(tmux display -p -t "$SESSION" '#{mouse_any_flag}')" = 0 ] || fail "mouse mode left on"
tmux kill-session -t "$SESSION"

# -- part 2 -------------------------------------------------------------------------------
step "resume the cancelled run, then SIGHUP (kill the tmux session)"
rm -f "$WORK/exit" "$WORK/pid"
start_console
wait_for "e2e-pretrain" 10
keys 3
wait_for "■ cancelled" 10
keys "/" ; keys "e2e-pretrain" ; keys Enter
keys R
wait_for "resuming (#[0-9]+ )?e2e-pretrain" 5
wait_status "$RUN/status.json" running 60
PID=$(cat "$WORK/pid")
tmux kill-session -t "$SESSION"   # the pane's terminal goes away: SIGHUP
sleep 2
wait_status "$RUN/status.json" running 1   # the job is not the console's: it trains on
echo "job still training after SIGHUP (console pid $PID gone: $(kill -0 "$PID" 2>/dev/null && echo no || echo yes))"
deadline=$((SECONDS + 400))
until grep -q '"finished"' "$RUN/status.json"; do
    [ $SECONDS -lt $deadline ] || fail "run not finished after 400s"
    sleep 1
done
wait_status "$RUN/status.json" finished 1
grep -q 'resumed from step-' "$RUN/events.jsonl" || fail "not resumed from its checkpoint"
echo "run finished after the hangup: $(tr -d '\n ' < "$RUN/status.json")"

# -- part 3 -------------------------------------------------------------------------------
step "quit while a job runs: at once, the job goes on in its own process"
rm -f "$WORK/exit" "$WORK/pid"
start_console
wait_for "e2e-pretrain" 10
keys "/" ; keys "e2e-pre" ; keys Enter
keys r
keys 2
wait_for "step [0-9]+/[0-9]+" 90
RUN3=$(ls -dt "$WORK"/runs/e2e-pretrain/*/ | head -1)
keys q
deadline=$((SECONDS + 10))
until [ -f "$WORK/exit" ]; do [ $SECONDS -lt $deadline ] || fail "console did not exit"; sleep 0.2; done
grep -q "CONSOLE-EXIT=0" "$WORK/exit" || fail "exit code: $(cat "$WORK/exit")"
wait_for "1 job\(s\) running" 5
[ "$(tmux display -p -t "$SESSION" '#{alternate_on}')" = 0 ] || fail "still in the alternate screen"
wait_status "$RUN3/status.json" running 1
"$LMCONSOLE" --manifest "$WORK/experiments.toml" control "e2e-pretrain/$(basename "$RUN3")" cancel
wait_status "$RUN3/status.json" cancelled 120
echo "job cancelled from another shell after the console quit"

step "PASS"
