#!/bin/sh
# reconciler in any CI system: plan on a pull request, apply the reviewed plan after merge.
#
#   RECONCILER_STAGE=plan  ./pipeline.sh   # save the plan and write its Markdown summary
#   RECONCILER_STAGE=apply ./pipeline.sh   # apply exactly the saved plan (refused if stale)
#
# Keep the plan file (and the summary, for the pull-request comment) between the two
# stages, e.g. as a build artifact. Applying runs only what the saved plan shows; if the
# state changed since the plan was made (another change was applied first), it is refused
# and nothing happens: plan again.
#
# Settings (environment):
#   RECONCILER_STAGE         plan | apply (required)
#   RECONCILER_CONFIG        config file or directory (default: infra/ beside this script)
#   RECONCILER_PLAN_FILE     the saved plan (default: plan.bin)
#   RECONCILER_SUMMARY_FILE  Markdown summary of the plan (default: plan-summary.md)
#   RECONCILER_STATE_URL     postgresql://user@host:5432/db keeps the state in PostgreSQL
#                            (locked, with history); put the password in PGPASSWORD, not
#                            in the URL. Without it the state is the local file under the
#                            config's state/ directory, which the CI job must then keep
#                            between runs itself.
#   RECONCILER_STATE_STACK   stack name in PostgreSQL (default: the config's `name:`)
#   RECONCILER_STATE_SCHEMA  schema in PostgreSQL (default: reconciler)
#   RECONCILER_LOCK_TIMEOUT  how long to wait for another run's state lock (default: 10m)
#   RECONCILER               the reconciler command (default: reconciler)
# API keys (SHADEFORM_API_KEY, FORWARD_API_KEY) and variables (RECONCILER_VAR_<name>) are
# read by reconciler itself.
#
# Exit status: 0 on success (whether or not the plan has changes), 1 on any error.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
stage=${RECONCILER_STAGE:-}
config=${RECONCILER_CONFIG:-$here/infra}
plan_file=${RECONCILER_PLAN_FILE:-plan.bin}
summary_file=${RECONCILER_SUMMARY_FILE:-plan-summary.md}
reconciler=${RECONCILER:-reconciler}

# Flags every command that touches state shares.
set -- -f "$config" --no-color --lock-timeout "${RECONCILER_LOCK_TIMEOUT:-10m}"
if [ -n "${RECONCILER_STATE_URL:-}" ]; then
    set -- "$@" --backend-config type=postgres --backend-config "url=$RECONCILER_STATE_URL"
    if [ -n "${RECONCILER_STATE_STACK:-}" ]; then
        set -- "$@" --backend-config "stack=$RECONCILER_STATE_STACK"
    fi
    if [ -n "${RECONCILER_STATE_SCHEMA:-}" ]; then
        set -- "$@" --backend-config "schema=$RECONCILER_STATE_SCHEMA"
    fi
fi

case "$stage" in
plan)
    status=0
    "$reconciler" plan "$@" -out "$plan_file" --detailed-exitcode || status=$?
    case "$status" in
    0) echo "pipeline: no changes; $plan_file applies nothing" ;;
    2) echo "pipeline: changes planned; review them, then apply $plan_file" ;;
    *) exit "$status" ;;
    esac
    "$reconciler" show -summary "$plan_file" >"$summary_file"
    echo "pipeline: plan summary written to $summary_file"
    ;;
apply)
    if [ ! -f "$plan_file" ]; then
        echo "pipeline: no saved plan at $plan_file; run the plan stage first" >&2
        exit 1
    fi
    "$reconciler" apply "$@" "$plan_file"
    ;;
*)
    echo "pipeline: set RECONCILER_STAGE to plan or apply (got '$stage')" >&2
    exit 1
    ;;
esac
