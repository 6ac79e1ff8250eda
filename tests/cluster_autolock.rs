//! Autolock over real processes (SPEC §9): `swarm update --autolock=true` prints an unlock
//! key; a manager that restarts stays locked, answering every command with the locked error,
//! until `swarm unlock` brings the key on stdin; `swarm unlock-key --rotate` replaces it.

mod common;

use std::process::Output;
use std::time::Duration;

use common::Cluster;

const LOCKED: &str = "Error: Swarm is encrypted and needs to be unlocked before it can be used. Please use \"flotilla swarm unlock\" to unlock it.";
const DATA_KEY_FILE: &str = "data-key.json";
const KEK_FILE: &str = "key-encryption.key";

/// `flotilla swarm unlock` against `host` with `key` on stdin.
fn unlock(cluster: &Cluster, host: usize, key: &str) -> Output {
    cluster.cli_stdin(
        Some(host),
        &["swarm", "unlock"],
        format!("{key}\n").as_bytes(),
    )
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_string()
}

fn key_file(cluster: &Cluster, index: usize) -> Vec<u8> {
    std::fs::read(cluster.nodes[index].state_dir.join(DATA_KEY_FILE)).unwrap_or_default()
}

/// Waits until every manager's data-key file is wrapped by the unlock key (and not `before`).
fn wait_all_locked(cluster: &Cluster, before: &[Vec<u8>]) {
    cluster.wait_until(
        "every manager rewraps its data key by the unlock key",
        Duration::from_secs(10),
        || {
            (0..cluster.nodes.len()).all(|index| {
                let bytes = key_file(cluster, index);
                let text = String::from_utf8_lossy(&bytes);
                text.contains("\"by_unlock_key\": true")
                    && !cluster.nodes[index].state_dir.join(KEK_FILE).exists()
                    && before.get(index) != Some(&bytes)
            })
        },
    );
}

/// Kills manager `index`, starts it again and waits until it answers as a locked manager.
fn restart_locked(cluster: &mut Cluster, index: usize) {
    cluster.kill(index);
    cluster.restart(index);
    cluster.wait_until(
        "the restarted manager answers locked",
        Duration::from_secs(15),
        || stderr(&cluster.cli(Some(index), &["node", "ls"])) == LOCKED,
    );
}

fn printed_key(output: &str) -> String {
    output
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("FLTKEY-1-"))
        .unwrap_or_else(|| panic!("no unlock key in {output:?}"))
        .to_string()
}

#[test]
fn an_autolocked_manager_stays_locked_until_the_right_key_unlocks_it() {
    let mut cluster = Cluster::three_managers();
    let leader = cluster.leader().expect("a leader");
    let follower = (0..3).find(|index| *index != leader).expect("a follower");

    // Without autolock there is no key to show.
    let none = cluster.cli(Some(leader), &["swarm", "unlock-key"]);
    assert_eq!(stderr(&none), "Error: autolock is not enabled");

    let output = cluster.cli_ok(Some(leader), &["swarm", "update", "--autolock=true"]);
    assert!(
        output.starts_with(
            "Swarm updated.\nTo unlock a swarm manager after it restarts, run the `flotilla swarm unlock`\ncommand and provide the following key:\n\n    FLTKEY-1-"
        ),
        "{output}"
    );
    assert!(output.contains("Please remember to store this key in a password manager"));
    let first_key = printed_key(&output);
    // The key is printed once: turning autolock on again keeps it and prints none.
    let again = cluster.cli_ok(Some(follower), &["swarm", "update", "--autolock=true"]);
    assert_eq!(again.trim(), "Swarm updated.");
    assert_eq!(
        cluster
            .cli_ok(Some(follower), &["swarm", "unlock-key", "-q"])
            .trim(),
        first_key
    );
    wait_all_locked(&cluster, &[]);

    restart_locked(&mut cluster, follower);
    // Every command is refused alike, even one the leader would answer.
    let token = cluster.cli(Some(follower), &["swarm", "join-token", "worker"]);
    assert_eq!(stderr(&token), LOCKED);
    let wrong = unlock(
        &cluster,
        follower,
        "FLTKEY-1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    assert!(!wrong.status.success());
    assert_eq!(stderr(&wrong), "Error: invalid unlock key");
    assert_eq!(
        stderr(&cluster.cli(Some(follower), &["node", "ls"])),
        LOCKED
    );
    let right = unlock(&cluster, follower, &first_key);
    assert!(right.status.success(), "{}", stderr(&right));
    cluster.wait_until(
        "the unlocked manager serves again",
        Duration::from_secs(15),
        || cluster.nodes_json(Some(follower)).is_some(),
    );
    // A running manager is not locked: a second unlock is refused, never forwarded.
    assert_eq!(
        stderr(&unlock(&cluster, follower, &first_key)),
        "Error: this manager is not locked"
    );

    // A new key: every manager rewraps, and the old key no longer unlocks.
    let before: Vec<Vec<u8>> = (0..3).map(|index| key_file(&cluster, index)).collect();
    let rotated = cluster.cli_ok(Some(leader), &["swarm", "unlock-key", "--rotate"]);
    assert!(
        rotated.starts_with("Successfully rotated manager unlock key.\n"),
        "{rotated}"
    );
    let second_key = printed_key(&rotated);
    assert_ne!(second_key, first_key);
    wait_all_locked(&cluster, &before);
    restart_locked(&mut cluster, follower);
    assert_eq!(
        stderr(&unlock(&cluster, follower, &first_key)),
        "Error: invalid unlock key"
    );
    let right = unlock(&cluster, follower, &second_key);
    assert!(right.status.success(), "{}", stderr(&right));
    cluster.wait_until(
        "the manager unlocked with the new key serves again",
        Duration::from_secs(15),
        || cluster.nodes_json(Some(follower)).is_some(),
    );

    // Autolock off: every manager has a key file again, and restarts unlocked.
    let output = cluster.cli_ok(Some(leader), &["swarm", "update", "--autolock=false"]);
    assert_eq!(output.trim(), "Swarm updated.");
    cluster.wait_until(
        "every manager wraps its data key by a key file again",
        Duration::from_secs(10),
        || {
            (0..3).all(|index| {
                cluster.nodes[index].state_dir.join(KEK_FILE).exists()
                    && String::from_utf8_lossy(&key_file(&cluster, index))
                        .contains("\"by_unlock_key\": false")
            })
        },
    );
    cluster.kill(follower);
    cluster.restart(follower);
    cluster.wait_until(
        "the manager restarts unlocked",
        Duration::from_secs(15),
        || cluster.nodes_json(Some(follower)).is_some(),
    );
}

#[test]
fn a_promoted_worker_fetches_the_data_key_and_a_demoted_one_drops_it() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    let worker = cluster.join("worker");
    let worker_id = cluster.node_id(worker);
    let worker_dir = cluster.nodes[worker].state_dir.clone();
    assert!(
        !worker_dir.join(DATA_KEY_FILE).exists() && !worker_dir.join(KEK_FILE).exists(),
        "a worker never holds the data key"
    );
    let output = cluster.cli_ok(None, &["swarm", "update", "--autolock=true"]);
    let unlock_key = printed_key(&output);

    cluster.cli_ok(None, &["node", "promote", &worker_id]);
    // It restarts as a manager without the key, fetches it from the leader and, autolock
    // being on, wraps it by the unlock key.
    cluster.wait_until(
        "the promoted manager holds the data key, wrapped by the unlock key",
        Duration::from_secs(30),
        || {
            String::from_utf8_lossy(&key_file(&cluster, worker)).contains("\"by_unlock_key\": true")
                && !worker_dir.join(KEK_FILE).exists()
        },
    );
    restart_locked(&mut cluster, worker);
    let right = unlock(&cluster, worker, &unlock_key);
    assert!(right.status.success(), "{}", stderr(&right));
    cluster.wait_until(
        "the unlocked manager serves again",
        Duration::from_secs(15),
        || cluster.nodes_json(Some(worker)).is_some(),
    );

    cluster.cli_ok(None, &["node", "demote", &worker_id]);
    cluster.wait_until(
        "the demoted node deletes its key files",
        Duration::from_secs(30),
        || !worker_dir.join(DATA_KEY_FILE).exists() && !worker_dir.join(KEK_FILE).exists(),
    );
}
