//! `--runtime auto|docker|process` selection. One test in its own binary because it points
//! `DOCKER_HOST` at a dead socket, which must not leak into other tests' processes.

use std::time::{Duration, Instant};

use flotilla::runtime::{select, RuntimeChoice, RuntimeError, RuntimeKind};

#[tokio::test]
async fn auto_prefers_an_answering_docker_and_falls_back_to_process() {
    let state_dir = tempfile::tempdir().expect("temporary state dir");
    let node_id = format!("select-{}", std::process::id());

    let process = select(RuntimeChoice::Process, &node_id, state_dir.path())
        .await
        .expect("process always works");
    assert_eq!(process.kind(), RuntimeKind::Process);
    assert!(process
        .version()
        .await
        .expect("version")
        .starts_with("process"));

    let auto = select(RuntimeChoice::Auto, &node_id, state_dir.path())
        .await
        .expect("auto always works");
    let docker_answers = auto.kind() == RuntimeKind::Docker;
    if std::env::var("FLOTILLA_REQUIRE_DOCKER").as_deref() == Ok("1") {
        assert!(
            docker_answers,
            "FLOTILLA_REQUIRE_DOCKER=1 but auto chose {}",
            auto.kind()
        );
    } else if !docker_answers {
        eprintln!("note: Docker does not answer; auto chose process");
    }

    // An engine that does not answer: auto falls back quickly, docker fails with a reason.
    std::env::set_var(
        "DOCKER_HOST",
        "unix:///nonexistent/flotilla-test-docker.sock",
    );
    let choosing_at = Instant::now();
    let fallback = select(RuntimeChoice::Auto, &node_id, state_dir.path())
        .await
        .expect("auto falls back");
    assert_eq!(fallback.kind(), RuntimeKind::Process);
    let refused = select(RuntimeChoice::Docker, &node_id, state_dir.path()).await;
    assert!(
        matches!(refused, Err(RuntimeError::DockerUnavailable { .. })),
        "docker without an engine must fail"
    );
    let elapsed = choosing_at.elapsed();
    println!(
        "auto fallback and refused docker: {} ms",
        elapsed.as_millis()
    );
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    std::env::remove_var("DOCKER_HOST");

    assert_eq!(
        "auto".parse::<RuntimeChoice>().ok(),
        Some(RuntimeChoice::Auto)
    );
    assert!("podman".parse::<RuntimeChoice>().is_err());
}
