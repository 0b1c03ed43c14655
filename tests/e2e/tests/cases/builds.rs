//! Images described in code, built on the server: steps in build containers, each cached.

use std::io::BufRead;
use std::time::{Duration, Instant};

use berth_api::ContainerStatus;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::client::created_id;
use crate::common::harness::Env;
use crate::common::images;
use crate::common::{indent, random_hex, timeouts, Res};
use crate::ensure;

const BASE_BUILD_LINE: &str = "=> Building the default base image";

fn show(log: &[String]) -> String {
    indent(&log.join("\n"))
}

/// The example through the CLI: packages and a command, then a pod that uses both;
/// the same spec again is a full cache hit with no step run.
pub fn python_packages_and_commands(env: &Env) -> Res<()> {
    let api = &env.api;
    let mark = format!("MARK={}", random_hex(4));
    let args = [
        "run",
        "--python-packages",
        "six",
        "--command",
        "echo hi > /hello",
        "--build-env",
        &mark,
        "--keep-warm-seconds",
        "-1",
        "--entrypoint",
        "python",
        "-c",
        "import six; print('six', six.__version__, open('/hello').read().strip(), flush=True)",
    ];
    let first = api.cli(&args)?;
    let id = created_id(&first.stdout);
    let _pod = id.as_deref().map(|id| api.adopt(id)).transpose()?;
    ensure!(
        first.status.success(),
        "berth run with a build failed:\n{}",
        first.show()
    );
    for expected in [
        "=> Building image",
        "PIP INSTALL six",
        "RUN echo hi > /hello",
        "Successfully installed six",
    ] {
        ensure!(
            first.stdout.contains(expected),
            "the build log lacks {expected:?}:\n{}",
            first.show()
        );
    }
    let id = id.ok_or_else(|| format!("no container id printed:\n{}", first.show()))?;
    let done = api.wait_terminal(&id, timeouts::STOP)?;
    ensure!(
        done.status == ContainerStatus::Exited && done.exit_code == Some(0),
        "the pod importing six ended {} ({:?})\n{}",
        done.status,
        done.exit_code,
        api.describe(&id)
    );
    let logs = api.logs(&id)?;
    ensure!(
        logs.contains("six 1.") && logs.contains(" hi"),
        "the pod did not see six and /hello:\n{}",
        indent(&logs)
    );

    let again = api.cli(&args)?;
    let again_id = created_id(&again.stdout);
    let _again_pod = again_id.as_deref().map(|id| api.adopt(id)).transpose()?;
    ensure!(
        again.status.success(),
        "the second berth run failed:\n{}",
        again.show()
    );
    ensure!(
        again.stdout.contains("=> Using cached image"),
        "the same spec again was no cache hit:\n{}",
        again.show()
    );
    ensure!(
        !again.stdout.contains("=> Step") && !again.stdout.contains("=> Building image"),
        "a full cache hit still ran steps:\n{}",
        again.show()
    );
    Ok(())
}

/// Changing only the last command reruns only that step.
pub fn only_the_changed_step_reruns(env: &Env) -> Res<()> {
    let first_cmd = format!("echo first-{}", random_hex(4));
    let spec = |last: &str| json!({"commands": [first_cmd, last]});
    let (log, result) = env.api.build(&spec("echo last-one"))?;
    result.map_err(|e| format!("first build failed: {e}\n{}", show(&log)))?;
    let (log, result) = env.api.build(&spec("echo last-two"))?;
    result.map_err(|e| format!("second build failed: {e}\n{}", show(&log)))?;
    ensure!(
        log.iter()
            .any(|l| l.contains(&format!("RUN {first_cmd} (cached)"))),
        "the unchanged first step was not reused:\n{}",
        show(&log)
    );
    ensure!(
        !log.iter()
            .any(|l| l.trim() == first_cmd.trim_start_matches("echo ")),
        "the unchanged first step ran again:\n{}",
        show(&log)
    );
    ensure!(
        log.iter().any(|l| l.trim() == "last-two"),
        "the changed last step did not run:\n{}",
        show(&log)
    );
    Ok(())
}

/// A failing command names its step, exit code and output, and caches nothing.
pub fn failing_command_is_reported(env: &Env) -> Res<()> {
    let tag = random_hex(4);
    let spec = json!({"commands": [format!("echo before-fail-{tag}; ls /no-such-{tag}; exit 7")]});
    for attempt in 1..=2 {
        let (log, result) = env.api.build(&spec)?;
        let error = match result {
            Err(e) => e,
            Ok(image) => return Err(format!("a failing command built {image}:\n{}", show(&log))),
        };
        for expected in [
            "exit code 7",
            &format!("before-fail-{tag}"),
            &format!("no-such-{tag}"),
            "step 1/1",
        ] {
            ensure!(
                error.contains(expected),
                "attempt {attempt}: the error lacks {expected:?}: {error}"
            );
        }
        ensure!(
            !log.iter().any(|l| l.contains("(cached)")),
            "attempt {attempt}: the failed step was cached:\n{}",
            show(&log)
        );
    }
    Ok(())
}

/// An unknown python_version says which are available.
pub fn unknown_python_version(env: &Env) -> Res<()> {
    let (log, result) = env
        .api
        .build(&json!({"python_version": "python3.4", "python_packages": ["six"]}))?;
    match result {
        Err(e) => {
            ensure!(
                e.contains("python3.4") && e.contains("available: python3.11"),
                "the error does not list the available versions: {e}"
            );
            Ok(())
        }
        Ok(image) => Err(format!("python3.4 built {image}:\n{}", show(&log))),
    }
}

/// Two creates that need the same new image build it once and share it: both pods see the
/// same random stamp written by the build step.
pub fn concurrent_creates_build_once(env: &Env) -> Res<()> {
    let api = &env.api;
    let image = json!({"commands": [format!("echo {} >/dev/null; od -An -N8 -tx8 /dev/urandom > /stamp", random_hex(4))]});
    let spec = json!({"image": image, "entrypoint": ["cat", "/stamp"], "keep_warm_seconds": -1});
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| api.launch(spec.clone()));
        let b = s.spawn(|| api.launch(spec.clone()));
        (a.join(), b.join())
    });
    let a = a.map_err(|_| "create thread panicked".to_string())??;
    let b = b.map_err(|_| "create thread panicked".to_string())??;
    let mut stamps = Vec::new();
    for pod in [&a, &b] {
        let done = api.wait_terminal(&pod.id, timeouts::BUILD)?;
        ensure!(
            done.status == ContainerStatus::Exited && done.exit_code == Some(0),
            "a pod of the shared image ended {} ({:?}): {}",
            done.status,
            done.exit_code,
            pod.describe()
        );
        stamps.push(
            api.logs(&pod.id)?
                .split_once(' ')
                .map(|(_, rest)| rest.to_string())
                .unwrap_or_default(),
        );
    }
    ensure!(
        !stamps[0].trim().is_empty() && stamps[0] == stamps[1],
        "the two pods saw different builds: {stamps:?}"
    );
    Ok(())
}

/// The default base is made once and reused: a new spec after it builds no base.
pub fn default_base_built_once(env: &Env) -> Res<()> {
    let api = &env.api;
    let (first, result) =
        api.build(&json!({"commands": [format!("echo one-{}", random_hex(4))]}))?;
    result.map_err(|e| format!("build failed: {e}\n{}", show(&first)))?;
    let (second, result) =
        api.build(&json!({"commands": [format!("echo two-{}", random_hex(4))]}))?;
    result.map_err(|e| format!("build failed: {e}\n{}", show(&second)))?;
    ensure!(
        !second.iter().any(|l| l.starts_with(BASE_BUILD_LINE)),
        "the default base was built again:\n{}",
        show(&second)
    );
    let (status, body) = api.send(
        api.request(reqwest::Method::GET, "/v1/images"),
        "list images",
    )?;
    ensure!(
        status.is_success(),
        "GET /v1/images answered {status}: {body}"
    );
    let images: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    let bases = images["images"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|i| i["reference"] == "berth-default-base:bookworm-v1")
                .count()
        })
        .unwrap_or(0);
    ensure!(
        bases == 1,
        "the store lists {bases} default base images: {body}"
    );
    Ok(())
}

/// A client that goes away cancels its build: the step's container stops and its network
/// namespace goes.
pub fn cancelled_build_stops(env: &Env) -> Res<()> {
    let tag = random_hex(4);
    let spec = json!({"commands": [format!("echo started-{tag}; sleep 120; echo never-{tag}")]});
    let stream = env.api.build_stream(&spec)?;
    let deadline = Instant::now() + timeouts::BUILD;
    let mut lines = stream.lines();
    loop {
        ensure!(
            Instant::now() < deadline,
            "the step never printed its start"
        );
        match lines.next() {
            // The step's own output (`{"log":"   started-..."}`), not the `=> Step` line
            // that quotes the command.
            Some(Ok(line)) if line.contains(&format!("\"   started-{tag}\"")) => break,
            Some(Ok(_)) => {}
            other => return Err(format!("the build stream ended early: {other:?}")),
        }
    }
    let before = build_namespaces();
    ensure!(!before.is_empty(), "no build namespace while the step runs");
    drop(lines);
    let gone = crate::common::poll(Duration::from_secs(20), Duration::from_millis(250), || {
        let still: Vec<String> = build_namespaces()
            .into_iter()
            .filter(|n| before.contains(n))
            .collect();
        still.is_empty().then_some(())
    });
    ensure!(
        gone.is_some(),
        "the cancelled build's namespace is still there: {before:?}"
    );
    Ok(())
}

fn build_namespaces() -> Vec<String> {
    crate::common::command_output("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("berth-build-"))
        .map(str::to_string)
        .collect()
}

/// Image specs are validated at the edge, naming the field.
pub fn bad_image_specs_are_refused(env: &Env) -> Res<()> {
    for (spec, field) in [
        (
            json!({"python_packages": ["--index-url=http://evil"]}),
            "image.python_packages",
        ),
        (json!({"python_version": "ruby"}), "image.python_version"),
        (json!({"commands": [""]}), "image.commands"),
        (json!({"base_image": "Not A Ref"}), "image.base_image"),
        (json!({"workdir": "relative"}), "image.workdir"),
    ] {
        let body = json!({"image": spec, "entrypoint": ["true"]}).to_string();
        let (status, text) = env.api.create_raw(&body, Some(&env.api.token))?;
        ensure!(
            status == 400 && text.contains(field),
            "{spec} answered {status}: {text} (expected 400 naming {field})"
        );
    }
    Ok(())
}

/// `--push`: a built image goes to a registry as an OCI image, and a pod can run it from there.
pub fn built_image_pushes_and_runs(env: &Env) -> Res<()> {
    let api = &env.api;
    let tag = random_hex(4);
    let target = format!("{}/built-{tag}:v1", env.registry.addr);
    let out = api.cli(&[
        "image",
        "build",
        "--command",
        &format!("echo pushed-{tag} > /pushed"),
        "--push",
        &target,
    ])?;
    ensure!(
        out.status.success(),
        "berth image build --push failed:\n{}",
        out.show()
    );
    ensure!(
        out.stdout.contains("=> Pushed "),
        "no push in the build log:\n{}",
        out.show()
    );
    let pod = api.launch(
        json!({"image": target, "entrypoint": ["cat", "/pushed"], "keep_warm_seconds": -1}),
    )?;
    let done = api.wait_terminal(&pod.id, timeouts::START)?;
    ensure!(
        done.status == ContainerStatus::Exited && done.exit_code == Some(0),
        "the pod of the pushed image ended {} ({:?}): {}",
        done.status,
        done.exit_code,
        pod.describe()
    );
    let logs = api.logs(&pod.id)?;
    ensure!(
        logs.contains(&format!("pushed-{tag}")),
        "the pushed image lacks its file:\n{}",
        indent(&logs)
    );
    Ok(())
}

/// `berth image prune` keeps the build cache and every image a stub uses, in the store: after
/// the prune the registry loses the used image, so it can only run from what prune kept.
///
/// The image is this test's own (a layer no other image has) in the shared registry; deleting
/// its manifest makes it unpullable without stopping the registry other tests use.
pub fn prune_keeps_what_is_used(env: &Env) -> Res<()> {
    let api = &env.api;
    let tag = random_hex(4);
    let name = format!("prune-kept-{tag}");
    let page = format!("kept by prune {tag}");
    let image = images::busybox_with_page(&page)?;
    let digest = env.registry.push(&name, "used", &image)?;
    // The same manifest under a tag nothing pulls: the control below.
    env.registry.push(&name, "never-pulled", &image)?;
    let used = format!("{}/{name}:used", env.registry.host());
    let never_pulled = format!("{}/{name}:never-pulled", env.registry.host());

    // A stub uses the image: a pod ran it (and has stopped; the stub stays).
    {
        let pod = api.launch(json!({"image": used, "ports": [8080], "keep_warm_seconds": -1}))?;
        api.wait_running(&pod.id)?;
        let body = pod.wait_http_ok(8080, "/")?;
        ensure!(
            body.contains(&page),
            "{used} answered {body:?}, expected its page {page:?}"
        );
    }

    let spec = json!({"commands": [format!("echo keep-{}", random_hex(4))]});
    let (log, result) = api.build(&spec)?;
    result.map_err(|e| format!("build failed: {e}\n{}", show(&log)))?;
    let out = api.cli(&["image", "prune"])?;
    ensure!(
        out.status.success(),
        "berth image prune failed:\n{}",
        out.show()
    );
    ensure!(
        out.stdout.contains("freed"),
        "prune printed no summary:\n{}",
        out.show()
    );
    let (log, result) = api.build(&spec)?;
    result.map_err(|e| format!("build after prune failed: {e}\n{}", show(&log)))?;
    ensure!(
        log == ["=> Using cached image"],
        "prune dropped the build cache:\n{}",
        show(&log)
    );

    // From here on nothing can pull the image.
    env.registry.delete_manifest(&name, &digest)?;
    for reference in ["used", "never-pulled"] {
        let status = env.registry.manifest_status(&name, reference)?;
        ensure!(
            status == StatusCode::NOT_FOUND,
            "precondition: after deleting its manifest the registry still answers {status} for \
             {name}:{reference}"
        );
    }
    // Control: the same content under a reference the server never pulled cannot start, so
    // the server has no way to fetch this image again.
    let control = api.launch(json!({"image": never_pulled, "ports": [8080]}))?;
    let c = api.wait_for(&control.id, "RUNNING or ended", timeouts::START, |c| {
        c.status == ContainerStatus::Running || c.status.is_terminal()
    })?;
    ensure!(
        c.status == ContainerStatus::Failed,
        "precondition: {never_pulled} is gone from the registry, yet {} became {} instead of \
         FAILED, so the check below would prove nothing\n{}",
        control.id,
        c.status,
        control.describe()
    );

    let pod = api.launch(json!({"image": used, "ports": [8080], "keep_warm_seconds": -1}))?;
    api.wait_running(&pod.id).map_err(|e| {
        format!("prune did not keep {used}, which a stub uses (the registry has lost it): {e}")
    })?;
    let body = pod.wait_http_ok(8080, "/")?;
    ensure!(
        body.contains(&page),
        "{used} answered {body:?} after the prune, expected its own layer's page {page:?}"
    );
    Ok(())
}
