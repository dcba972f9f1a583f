# What the end-to-end tests of the compose files share (sourced, not run):
# finding Docker and Compose, a copy of the project to work in, steps
# bounded in time, checks that print and count, and a cleanup that removes
# everything the test made.
#
#   E2E_NAME=e2e-cluster E2E_DEFAULT_TIMEOUT=900 E2E_COMPOSE_FILE=docker-compose.cluster.yml
#   source "$ROOT/scripts/lib/e2e.sh"
#
# Afterwards: $project, $work (the copy), compose (the command), bounded,
# ok, fail, check, phase, wait_for, cid, and the cleanup trap.
#
# Environment the tests share:
#   E2E_TIMEOUT=SECS      limit for the whole run (default: the test's own)
#   E2E_LOCAL_BASE=0      don't make missing base images locally; let Docker pull
#   E2E_KEEP=1            leave the containers and the copy behind for a look
#   E2E_REQUIRE_DOCKER=1  fail instead of skipping when Docker does not answer

say() { echo "$E2E_NAME: $*"; }

if ! docker info >/dev/null 2>&1; then
    say "=================================================================="
    say "SKIPPED: \`docker info\` does not answer, so $E2E_COMPOSE_FILE was not tested."
    say "=================================================================="
    [[ "${E2E_REQUIRE_DOCKER:-}" == 1 ]] && exit 1
    exit 0
fi

# Compose v2 (`docker compose`) when present, else Debian's docker-compose 1.29.
if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose_cmd=(docker-compose)
elif [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing docker-compose from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
    compose_cmd=(docker-compose)
else
    say "ERROR: neither \`docker compose\` nor \`docker-compose\` is installed"
    exit 1
fi
command -v python3 >/dev/null || { say "ERROR: python3 is needed to read JSON"; exit 1; }

# --- our own names, so that nothing of the user's is touched ----------------
project="${E2E_NAME//[^a-z0-9]/}-$$"
work="$(mktemp -d "${TMPDIR:-/tmp}/$E2E_NAME.XXXXXX")"
export COMPOSE_PROJECT_NAME="$project"
# `-f` also keeps a docker-compose.override.yml from being read.
compose_cmd+=(-f "$work/$E2E_COMPOSE_FILE")
compose() { "${compose_cmd[@]}" "$@"; }

# Bounded in time: every slow step runs through `bounded SECS COMMAND...`,
# which gives it at most SECS and never more than what is left of
# E2E_TIMEOUT. The step runs in the background and we `wait` for it, so that
# Ctrl-C or the timeout stops the script at once; cleanup then stops it too.
timeout_total="${E2E_TIMEOUT:-$E2E_DEFAULT_TIMEOUT}"
deadline=$((SECONDS + timeout_total))
step_pid=""
bounded() {
    local secs="$1" left=$((deadline - SECONDS)) status=0
    shift
    if ((left <= 0)); then
        say "out of time: E2E_TIMEOUT ($timeout_total s) ran out"
        exit 124
    fi
    ((secs < left)) || secs=$left
    timeout --kill-after=10 "$secs" "$@" &
    step_pid=$!
    wait "$step_pid" || status=$?
    step_pid=""
    ((status != 124)) || say "timed out after $secs s: $*"
    return "$status"
}

cleanup() {
    local status=$?
    # `timeout` runs in a process group of its own: stop it and its children.
    if [[ -n "$step_pid" ]]; then
        kill -TERM -- "-$step_pid" 2>/dev/null || true
    fi
    if [[ "${E2E_KEEP:-}" == 1 ]]; then
        say "E2E_KEEP=1: left project $project running from $work"
        say "  clean up with: (cd $work && ${compose_cmd[*]} down -v) && rm -rf $work"
    else
        timeout 120 "${compose_cmd[@]}" down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# --- checks --------------------------------------------------------------------
passed=0
failed=0
ok() {
    passed=$((passed + 1))
    echo "  ok    $*"
}
# A failed check ends the run, after showing what the containers said.
fail() {
    failed=$((failed + 1))
    echo "  FAIL  $*"
    echo "--- compose ps ---"
    compose ps -a || true
    echo "--- last logs ---"
    compose logs --no-color --tail=40 || true
    say "$passed passed, $failed failed"
    exit 1
}
# check DESCRIPTION COMMAND...: the command's success is the check.
check() {
    local what="$1"
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
phase() {
    echo
    say "--- $* ($SECONDS s since start)"
}
# wait_for SECS DESCRIPTION COMMAND...: polls COMMAND every 0.25 s; a failed
# check if it never succeeds.
wait_for() {
    local secs="$1" what="$2" until=$((SECONDS + $1))
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < until && SECONDS < deadline)) || fail "$what (waited $secs s)"
        sleep 0.25
    done
}

# Container ids, looked up once each (docker-compose 1.29 takes a second a call).
declare -A e2e_ids=()
cid() {
    [[ -n "${e2e_ids[$1]:-}" ]] || e2e_ids[$1]="$(compose ps -a -q "$1")"
    echo "${e2e_ids[$1]}"
}

# copy_project: everything but build output, git data, the user's data and
# .env (whose settings would change what we test), into $work.
copy_project() {
    phase "project copy in $work"
    tar -C "$ROOT" --exclude=./target --exclude=./.git --exclude=./tasks.json \
        --exclude='./*.torn-*' --exclude=./.env --exclude='./cluster/node*/*' --exclude=./race/tasks.json \
        -cf - . | tar -C "$work" -xf -
    echo "        compose: ${compose_cmd[*]}; project $project"
}

# base_images [ARGS...]: makes the Dockerfile's base images locally when no
# registry can be reached (scripts/docker-base-images.sh needs root).
base_images() {
    if [[ "${E2E_LOCAL_BASE:-1}" != 0 ]]; then
        phase "base images"
        bounded 900 "$ROOT/scripts/docker-base-images.sh" "$work/Dockerfile" "$@" || fail "making the base images"
    fi
}
