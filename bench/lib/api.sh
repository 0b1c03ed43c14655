# Shared by the benchmarks: talking to the berth server they started. Source it; the
# functions read $api (host:port) and $token (its admin token).

api_call() { # api_call METHOD PATH [JSON-BODY] -> response body on stdout
    local args=(-sS -X "$1" -H "Authorization: Bearer $token" "http://$api$2")
    [ $# -ge 3 ] && args+=(-H 'content-type: application/json' -d "$3")
    curl "${args[@]}"
}

json_field() { # json_field EXPR < JSON: prints EXPR evaluated on the parsed document `d`
    python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

stop_pod() { # stop_pod ID: stops it and waits until it has ended
    api_call POST "/v1/containers/$1/stop" '{}' >/dev/null || return 0
    for _ in $(seq 300); do
        case $(api_call GET "/v1/containers/$1" | json_field 'd["status"]' 2>/dev/null) in
            STOPPED|EXITED|FAILED|OOM_KILLED|"") return 0 ;;
        esac
        sleep 0.1
    done
    echo "warning: $1 did not stop within 30s" >&2
}

live_ids() { # the ids of containers that have not ended
    api_call GET /v1/containers 2>/dev/null | json_field '" ".join(c["id"] for c in d["containers"])' 2>/dev/null
}

now_us() { echo "${EPOCHREALTIME/./}"; }

first_200() { # first_200 URL [CURL-ARGS...]: polls until URL answers 200 (60 s at most)
    local url=$1 deadline=$(($(now_us) + 60000000))
    shift
    until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url")" = 200 ]; do
        [ "$(now_us)" -lt "$deadline" ] || { echo "no 200 from $url within 60s" >&2; return 1; }
    done
}

stats() { # stats < numbers -> "min median max"
    sort -n | awk '{a[NR] = $1} END {
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        printf "%d %.1f %d\n", a[1], m, a[NR]}'
}

phase_sums() { # "phase sum count" per start phase the server has timed so far (/metrics)
    curl -sS "http://$api/metrics" | awk '
        /^berth_start_phase_seconds_sum/ {split($1, a, "\""); sum[a[2]] = $2}
        /^berth_start_phase_seconds_count/ {split($1, a, "\""); n[a[2]] = $2}
        END {for (p in sum) print p, sum[p], n[p]}'
}

start_phases() { # start_phases BEFORE AFTER (phase_sums outputs): mean ms per phase between
    awk 'NR == FNR {s[$1] = $2; n[$1] = $3; next}
        $3 > n[$1] {printf "%s %.1f  ", $1, ($2 - s[$1]) * 1000 / ($3 - n[$1])}' \
        <(printf '%s\n' "$1") <(printf '%s\n' "$2")
}
