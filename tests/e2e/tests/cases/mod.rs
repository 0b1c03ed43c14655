//! The end-to-end tests, grouped by topic. Each is a plain function over the shared `Env`.

mod api;
mod browser;
mod builds;
mod certs;
mod cli;
mod cluster;
mod conda;
mod deployments;
mod disk_full;
mod dockerfile;
mod docs;
mod files;
mod fuzz;
mod guide;
mod hostile;
mod images;
mod ingress;
mod isolation;
mod lifecycle;
mod logs;
mod nodes;
mod pid1;
mod pod_data;
mod process;
mod registry_faults;
mod restart;
mod scale_out;
mod soak;
mod startup;
mod terminal;
mod tls;
mod untrusted;
mod validation;

use serde_json::{json, Value};

use crate::common::harness::Env;
use crate::common::images::TESTAPP_PATH;
use crate::common::Res;

pub struct Case {
    pub name: &'static str,
    pub run: fn(&Env) -> Res<()>,
}

/// Every test, in the order they are dispatched (slow ones first, so a parallel run ends
/// sooner).
pub fn all() -> Vec<Case> {
    vec![
        Case {
            name: "browser::notebook_in_chromium",
            run: browser::notebook_in_chromium,
        },
        Case {
            name: "certs::operator_certificate_served_and_reloaded",
            run: certs::operator_certificate_served_and_reloaded,
        },
        Case {
            name: "certs::acme_certificate_from_pebble",
            run: certs::acme_certificate_from_pebble,
        },
        Case {
            name: "cluster::a_worker_joins_over_mutual_tls",
            run: cluster::a_worker_joins_over_mutual_tls,
        },
        Case {
            name: "scale_out::pods_spread_over_workers_and_outlive_one",
            run: scale_out::pods_spread_over_workers_and_outlive_one,
        },
        Case {
            name: "nodes::this_machine_is_a_node",
            run: nodes::this_machine_is_a_node,
        },
        Case {
            name: "tls::https_pod_urls",
            run: tls::https_pod_urls,
        },
        Case {
            name: "tls::authorized_pods_need_a_token",
            run: tls::authorized_pods_need_a_token,
        },
        Case {
            name: "dockerfile::multi_stage_build_runs_as_a_pod",
            run: dockerfile::multi_stage_build_runs_as_a_pod,
        },
        Case {
            name: "dockerfile::a_failing_run_gives_its_code_and_output",
            run: dockerfile::a_failing_run_gives_its_code_and_output,
        },
        Case {
            name: "dockerfile::hostile_contexts_are_refused",
            run: dockerfile::hostile_contexts_are_refused,
        },
        Case {
            name: "guide::notebook_pod",
            run: guide::notebook_pod,
        },
        Case {
            name: "docs::streamlit_page",
            run: docs::streamlit_page,
        },
        Case {
            name: "docs::notebook_page",
            run: docs::notebook_page,
        },
        Case {
            name: "docs::ci_page",
            run: docs::ci_page,
        },
        Case {
            name: "docs::llm_code_page",
            run: docs::llm_code_page,
        },
        Case {
            name: "guide::image_entrypoint_and_env_examples",
            run: guide::image_entrypoint_and_env_examples,
        },
        Case {
            name: "guide::cli_run_list_stop",
            run: guide::cli_run_list_stop,
        },
        Case {
            name: "guide::deploy_http_server",
            run: guide::deploy_http_server,
        },
        Case {
            name: "guide::module_runner_and_bad_input",
            run: guide::module_runner_and_bad_input,
        },
        Case {
            name: "guide::create_then_terminate",
            run: guide::create_then_terminate,
        },
        Case {
            name: "deployments::cold_start_wakes_one_container",
            run: deployments::cold_start_wakes_one_container,
        },
        Case {
            name: "deployments::version_switch_fails_no_request",
            run: deployments::version_switch_fails_no_request,
        },
        Case {
            name: "deployments::bad_deploys_leave_nothing",
            run: deployments::bad_deploys_leave_nothing,
        },
        Case {
            name: "pod_data::code_is_uploaded_checked_and_mounted",
            run: pod_data::code_is_uploaded_checked_and_mounted,
        },
        Case {
            name: "pod_data::volumes_outlive_pods",
            run: pod_data::volumes_outlive_pods,
        },
        Case {
            name: "pod_data::secrets_reach_env_and_nothing_else",
            run: pod_data::secrets_reach_env_and_nothing_else,
        },
        Case {
            name: "builds::python_packages_and_commands",
            run: builds::python_packages_and_commands,
        },
        Case {
            name: "builds::built_image_pushes_and_runs",
            run: builds::built_image_pushes_and_runs,
        },
        Case {
            name: "builds::concurrent_creates_build_once",
            run: builds::concurrent_creates_build_once,
        },
        Case {
            name: "builds::default_base_built_once",
            run: builds::default_base_built_once,
        },
        Case {
            name: "builds::only_the_changed_step_reruns",
            run: builds::only_the_changed_step_reruns,
        },
        Case {
            name: "builds::failing_command_is_reported",
            run: builds::failing_command_is_reported,
        },
        Case {
            name: "builds::unknown_python_version",
            run: builds::unknown_python_version,
        },
        Case {
            name: "builds::cancelled_build_stops",
            run: builds::cancelled_build_stops,
        },
        Case {
            name: "docs::images_page_examples",
            run: docs::images_page_examples,
        },
        Case {
            name: "builds::prune_keeps_what_is_used",
            run: builds::prune_keeps_what_is_used,
        },
        Case {
            name: "restart::killed_server_adopts_running_pod",
            run: restart::killed_server_adopts_running_pod,
        },
        Case {
            name: "restart::server_stops_its_pods_on_exit",
            run: restart::server_stops_its_pods_on_exit,
        },
        Case {
            name: "logs::logs_rotate_by_size",
            run: logs::logs_rotate_by_size,
        },
        Case {
            name: "cli::doctor_checks_the_host",
            run: cli::doctor_checks_the_host,
        },
        Case {
            name: "restart::hot_restart_drops_nothing",
            run: restart::hot_restart_drops_nothing,
        },
        Case {
            name: "disk_full::pull_and_create_on_a_full_disk_fail_cleanly",
            run: disk_full::pull_and_create_on_a_full_disk_fail_cleanly,
        },
        Case {
            name: "registry_faults::broken_and_corrupt_blobs_fail_clearly",
            run: registry_faults::broken_and_corrupt_blobs_fail_clearly,
        },
        Case {
            name: "isolation::pods_cannot_reach_each_other",
            run: isolation::pods_cannot_reach_each_other,
        },
        Case {
            name: "isolation::pods_cannot_reach_host_services",
            run: isolation::pods_cannot_reach_host_services,
        },
        Case {
            name: "isolation::metadata_addresses_are_unreachable_under_runc",
            run: isolation::metadata_addresses_are_unreachable_under_runc,
        },
        Case {
            name: "isolation::metadata_addresses_are_unreachable_under_gvisor",
            run: isolation::metadata_addresses_are_unreachable_under_gvisor,
        },
        Case {
            name: "isolation::egress_policies_under_runc",
            run: isolation::egress_policies_under_runc,
        },
        Case {
            name: "isolation::egress_policies_under_gvisor",
            run: isolation::egress_policies_under_gvisor,
        },
        Case {
            name: "untrusted::attacks_fail_under_runc",
            run: untrusted::attacks_fail_under_runc,
        },
        Case {
            name: "untrusted::attacks_fail_under_gvisor",
            run: untrusted::attacks_fail_under_gvisor,
        },
        Case {
            name: "untrusted::bad_isolation_requests_are_refused",
            run: untrusted::bad_isolation_requests_are_refused,
        },
        Case {
            name: "untrusted::exec_under_runc",
            run: untrusted::exec_under_runc,
        },
        Case {
            name: "untrusted::exec_under_gvisor",
            run: untrusted::exec_under_gvisor,
        },
        Case {
            name: "terminal::shell_under_runc",
            run: terminal::shell_under_runc,
        },
        Case {
            name: "terminal::shell_under_gvisor",
            run: terminal::shell_under_gvisor,
        },
        Case {
            name: "untrusted::user_namespace_by_default",
            run: untrusted::user_namespace_by_default,
        },
        Case {
            name: "untrusted::read_only_rootfs_under_runc",
            run: untrusted::read_only_rootfs_under_runc,
        },
        Case {
            name: "untrusted::read_only_rootfs_under_gvisor",
            run: untrusted::read_only_rootfs_under_gvisor,
        },
        Case {
            name: "untrusted::disk_fill_under_runc",
            run: untrusted::disk_fill_under_runc,
        },
        Case {
            name: "untrusted::disk_fill_under_gvisor",
            run: untrusted::disk_fill_under_gvisor,
        },
        Case {
            name: "files::files_under_runc",
            run: files::files_under_runc,
        },
        Case {
            name: "files::files_under_gvisor",
            run: files::files_under_gvisor,
        },
        Case {
            name: "fuzz::openapi_fuzzed_with_schemathesis",
            run: fuzz::openapi_fuzzed_with_schemathesis,
        },
        Case {
            name: "untrusted::fork_bomb_under_runc",
            run: untrusted::fork_bomb_under_runc,
        },
        Case {
            name: "untrusted::fork_bomb_under_gvisor",
            run: untrusted::fork_bomb_under_gvisor,
        },
        Case {
            name: "untrusted::oom_killed_under_gvisor",
            run: untrusted::oom_killed_under_gvisor,
        },
        Case {
            name: "builds::bad_image_specs_are_refused",
            run: builds::bad_image_specs_are_refused,
        },
        Case {
            name: "lifecycle::keep_warm_held_websocket",
            run: lifecycle::keep_warm_held_websocket,
        },
        Case {
            name: "lifecycle::keep_warm_held_http_keepalive",
            run: lifecycle::keep_warm_held_http_keepalive,
        },
        Case {
            name: "lifecycle::keep_warm_idle_stop",
            run: lifecycle::keep_warm_idle_stop,
        },
        Case {
            name: "cli::stop_many_at_once_under_runc",
            run: cli::stop_many_at_once_under_runc,
        },
        Case {
            name: "cli::stop_many_at_once_under_gvisor",
            run: cli::stop_many_at_once_under_gvisor,
        },
        Case {
            name: "conda::conda_packages_from_a_local_channel",
            run: conda::conda_packages_from_a_local_channel,
        },
        Case {
            name: "conda::a_package_that_escapes_the_prefix_is_refused",
            run: conda::a_package_that_escapes_the_prefix_is_refused,
        },
        Case {
            name: "pid1::httpd_stops_on_sigterm_under_runc",
            run: pid1::httpd_stops_on_sigterm_under_runc,
        },
        Case {
            name: "pid1::httpd_stops_on_sigterm_under_gvisor",
            run: pid1::httpd_stops_on_sigterm_under_gvisor,
        },
        Case {
            name: "pid1::orphans_reaped_under_runc",
            run: pid1::orphans_reaped_under_runc,
        },
        Case {
            name: "pid1::orphans_reaped_under_gvisor",
            run: pid1::orphans_reaped_under_gvisor,
        },
        Case {
            name: "pid1::stop_signal_under_runc",
            run: pid1::stop_signal_under_runc,
        },
        Case {
            name: "pid1::stop_signal_under_gvisor",
            run: pid1::stop_signal_under_gvisor,
        },
        Case {
            name: "cli::run_busybox",
            run: cli::run_busybox,
        },
        Case {
            name: "images::docker_hub_via_mirror",
            run: images::docker_hub_via_mirror,
        },
        Case {
            name: "startup::subnet_overlap_refused",
            run: startup::subnet_overlap_refused,
        },
        Case {
            name: "startup::port_in_use_leaves_nothing",
            run: startup::port_in_use_leaves_nothing,
        },
        Case {
            name: "lifecycle::oom_killed",
            run: lifecycle::oom_killed,
        },
        Case {
            name: "lifecycle::exit_code",
            run: lifecycle::exit_code,
        },
        Case {
            name: "lifecycle::stop_via_api",
            run: lifecycle::stop_via_api,
        },
        Case {
            name: "logs::stdout_stderr_and_follow",
            run: logs::stdout_stderr_and_follow,
        },
        Case {
            name: "ingress::websocket_echo",
            run: ingress::websocket_echo,
        },
        Case {
            name: "ingress::websocket_echo_under_gvisor",
            run: ingress::websocket_echo_under_gvisor,
        },
        Case {
            name: "ingress::two_pods_same_port",
            run: ingress::two_pods_same_port,
        },
        Case {
            name: "ingress::ipv6_only_and_ipv4_only",
            run: ingress::ipv6_only_and_ipv4_only,
        },
        Case {
            name: "ingress::env_and_identity",
            run: ingress::env_and_identity,
        },
        Case {
            name: "ingress::pod_not_listening",
            run: ingress::pod_not_listening,
        },
        Case {
            name: "ingress::unknown_host",
            run: ingress::unknown_host,
        },
        Case {
            name: "ingress::oversized_head_refused",
            run: ingress::oversized_head_refused,
        },
        Case {
            name: "images::multi_arch_index_runs_amd64",
            run: images::multi_arch_index_runs_amd64,
        },
        Case {
            name: "images::zstd_layer",
            run: images::zstd_layer,
        },
        Case {
            name: "process::image_user_and_workdir",
            run: process::image_user_and_workdir,
        },
        Case {
            name: "process::cpu_and_pids_limits",
            run: process::cpu_and_pids_limits,
        },
        Case {
            name: "hostile::dotdot_entry",
            run: hostile::dotdot_entry,
        },
        Case {
            name: "hostile::symlink_to_etc",
            run: hostile::symlink_to_etc,
        },
        Case {
            name: "hostile::symlink_climb_across_layers",
            run: hostile::symlink_climb_across_layers,
        },
        Case {
            name: "hostile::hardlink_to_host_file",
            run: hostile::hardlink_to_host_file,
        },
        Case {
            name: "validation::rejects_bad_fields",
            run: validation::rejects_bad_fields,
        },
        Case {
            name: "validation::requires_token",
            run: validation::requires_token,
        },
        Case {
            name: "validation::pull_failures",
            run: validation::pull_failures,
        },
        Case {
            name: "validation::image_without_command",
            run: validation::image_without_command,
        },
        Case {
            name: "cli::run_failure_reports_error",
            run: cli::run_failure_reports_error,
        },
        Case {
            name: "cli::profile_without_env",
            run: cli::profile_without_env,
        },
        Case {
            name: "api::health_openapi_metrics",
            run: api::health_openapi_metrics,
        },
        Case {
            name: "api::unknown_container",
            run: api::unknown_container,
        },
    ]
}

/// Tests that run alone, after all the others: they count host state and the server's memory,
/// which other tests' pods would disturb, and load both cores.
pub fn exclusive() -> Vec<Case> {
    vec![
        Case {
            name: "soak::pods_in_waves_leave_nothing",
            run: soak::pods_in_waves_leave_nothing,
        },
        Case {
            name: "soak::idle_connections_and_wrk",
            run: soak::idle_connections_and_wrk,
        },
    ]
}

/// A spec running the testapp with `args` (after the binary) on port 8080.
pub fn testapp_spec(env: &Env, args: &[&str]) -> Value {
    let mut entrypoint = vec![TESTAPP_PATH.to_string()];
    entrypoint.extend(args.iter().map(|a| a.to_string()));
    json!({
        "image": env.images.testapp,
        "ports": [8080],
        "entrypoint": entrypoint,
    })
}

/// A busybox pod that only sleeps, under `runtime`, for commands and files to act on.
pub fn sleeper_spec(env: &Env, runtime: &str) -> Value {
    json!({
        "image": env.images.busybox,
        "entrypoint": ["/bin/sleep", "3600"],
        "runtime": runtime,
    })
}

/// `spec` with `key` set to `value`.
pub fn with(mut spec: Value, key: &str, value: Value) -> Value {
    spec[key] = value;
    spec
}
