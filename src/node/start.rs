//! `flotilla-node start`: a node that `init` or `join` created, again from its state directory.

use std::path::Path;

use crate::consensus::replay_committed;
use crate::consensus::store_machine::{EventQueue, SharedStore, StoreMachine};
use crate::core::model::{ClusterInfo, NodeRole};
use crate::core::secrets::Keyring;
use crate::net::tls::{ClusterCa, Credentials, Role};
use crate::node::compose::run;
use crate::node::daemon::{DaemonError, RunningNode};
use crate::node::keys::{self, StoredKey};
use crate::node::locked::{self, UnlockedEndpoint};
use crate::node::raft_start::{start_replica, RaftStart};
use crate::node::state::{
    self, ClientConfig, NodeSettings, CLIENT_FILE, CREDENTIALS_FILE, NODE_FILE,
};

/// Starts a node that `init` or `join` created, from its state directory. With
/// `force_new_cluster` (managers only) the node comes up as the only member of its Raft group
/// with all state kept (see `docs/operations.md`).
pub async fn start(
    state_dir: &Path,
    enable_chaos: bool,
    force_new_cluster: bool,
) -> Result<RunningNode, DaemonError> {
    if !state_dir.join(NODE_FILE).exists() {
        return Err(DaemonError::StateDir(format!(
            "{} holds no node; create one with `flotilla-node init` or `join`",
            state_dir.display()
        )));
    }
    let settings: NodeSettings = state::read_toml(&state_dir.join(NODE_FILE))?;
    crate::node::compose::configure_cert_validity();
    let mut credentials: Credentials = state::read_toml(&state_dir.join(CREDENTIALS_FILE))?;
    if force_new_cluster && settings.role != Role::Manager {
        return Err(DaemonError::StateDir(format!(
            "--force-new-cluster needs a manager; {} holds a {}",
            state_dir.display(),
            settings.role
        )));
    }
    if settings.role == Role::Worker {
        // Left over by a demotion that stopped half-way, or by the previous release (which
        // kept `raft.redb.demoted`): a worker holds no Raft state and no CA key.
        crate::node::role_restart::wipe_manager_state(state_dir)?;
        keys::wipe(state_dir)?;
    }
    // The data key first: an autolocked manager serves nothing, not even Raft, until unlocked.
    let (keyring, endpoint) = if settings.role == Role::Manager {
        manager_keyring(state_dir, &settings, &credentials).await?
    } else {
        (Keyring::new(), None)
    };
    let how = if force_new_cluster {
        RaftStart::ForceNewCluster
    } else {
        RaftStart::Restart
    };
    let manager_parts = if settings.role == Role::Manager {
        Some(start_replica(state_dir, &settings.node_id, how)?)
    } else {
        None
    };
    let wanted = manager_parts.is_some() && reissue_wanted(state_dir, &credentials)?;
    if let (Some((member, _, _)), true) = (&manager_parts, wanted) {
        // The member applies its log only once it runs; what this manager's record and the
        // cluster record say now comes from a replay of the committed log into a scratch store
        // (only when a certificate is to be re-issued: the start-up of every other manager
        // pays nothing).
        let view = SharedStore::default();
        let mut machine = StoreMachine::new(view.clone(), EventQueue::default());
        replay_committed(member.storage(), &mut machine)
            .map_err(|e| DaemonError::Raft(e.to_string()))?;
        let store = view.read();
        // Only a manager the store still counts as one: a demoted manager must not sign
        // itself a certificate that escapes its revocation.
        let still_manager = store
            .node(&settings.node_id)
            .is_some_and(|node| node.role == NodeRole::Manager);
        if let (Some(cluster), true) = (store.cluster(), still_manager) {
            credentials = reissue_if_needed(
                state_dir,
                &settings.node_id,
                credentials,
                cluster,
                store.applied_index(),
            )?;
        }
    }
    run(
        settings,
        state_dir,
        credentials,
        manager_parts,
        keyring,
        enable_chaos,
        endpoint,
    )
    .await
}

/// A manager's data key from its state directory: opened with the key file beside it, or,
/// under autolock, with the unlock key `swarm unlock` brings (the endpoint bound meanwhile is
/// returned for the node to keep). A state directory older than secrets holds none: the
/// manager runs with an empty keyring, and warns.
async fn manager_keyring(
    state_dir: &Path,
    settings: &NodeSettings,
    credentials: &Credentials,
) -> Result<(Keyring, Option<UnlockedEndpoint>), DaemonError> {
    match keys::load(state_dir)? {
        StoredKey::Open(key) => Ok((Keyring::with_key(key), None)),
        StoredKey::Missing => {
            tracing::warn!(
                "{} holds no data key (the state directory predates secrets): this manager cannot create or deliver secrets",
                state_dir.display()
            );
            Ok((Keyring::new(), None))
        }
        StoredKey::Locked(wrapped) => {
            let (key, endpoint) = locked::wait_for_unlock(settings, credentials, wrapped).await?;
            Ok((Keyring::with_key(key), Some(endpoint)))
        }
    }
}

/// Whether [`reissue_if_needed`] would re-issue anything (read before the log is replayed).
fn reissue_wanted(state_dir: &Path, credentials: &Credentials) -> Result<bool, DaemonError> {
    let (_, client) = read_client_config(state_dir)?;
    Ok(own_certificate_due(credentials) || is_legacy_admin(client.as_ref()))
}

/// A manager certificate that names no identity URI, another role, or is past two thirds of
/// its life.
fn own_certificate_due(credentials: &Credentials) -> bool {
    match credentials.identity() {
        Ok(identity) => {
            identity.role != Role::Manager || identity.renewal_due(std::time::SystemTime::now())
        }
        Err(_) => true,
    }
}

fn read_client_config(
    state_dir: &Path,
) -> Result<(std::path::PathBuf, Option<ClientConfig>), DaemonError> {
    let client_path = state_dir.join(CLIENT_FILE);
    let client = client_path
        .exists()
        .then(|| state::read_toml(&client_path))
        .transpose()?;
    Ok((client_path, client))
}

fn is_legacy_admin(client: Option<&ClientConfig>) -> bool {
    client.is_some_and(|client| client.credentials.identity().is_err())
}

/// A manager whose own certificate lacks the identity URI (written by the previous release)
/// or is past two thirds of its life signs itself a new one from the CA in its store before
/// its endpoint is bound, and writes it atomically; the admin certificate in `client.toml`
/// is re-issued too when it lacks the URI. Workers cannot (they hold no CA): see
/// `docs/pki.md`.
fn reissue_if_needed(
    state_dir: &Path,
    node_id: &str,
    credentials: Credentials,
    cluster: &ClusterInfo,
    applied_index: u64,
) -> Result<Credentials, DaemonError> {
    let needed = own_certificate_due(&credentials);
    let (client_path, client) = read_client_config(state_dir)?;
    let admin_legacy = is_legacy_admin(client.as_ref());
    if !needed && !admin_legacy {
        return Ok(credentials);
    }
    let ca = ClusterCa::load(&cluster.ca_cert_pem, &cluster.ca_key_pem)?;
    if admin_legacy {
        if let Some(mut client) = client {
            client.credentials = ca.issue("admin", Role::Admin, applied_index)?;
            state::write_toml(&client_path, &client)?;
            tracing::info!(
                "re-issued the admin certificate in client.toml (it named no identity URI)"
            );
        }
    }
    if !needed {
        return Ok(credentials);
    }
    let renewed = ca.issue(node_id, Role::Manager, applied_index)?;
    state::write_toml(&state_dir.join(CREDENTIALS_FILE), &renewed)?;
    tracing::info!(
        "re-issued this manager's certificate from the cluster CA (legacy or due for renewal)"
    );
    Ok(renewed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate as the previous release issued it: identity in the subject only.
    fn legacy(ca: &ClusterCa, node_id: &str, role: &str) -> Credentials {
        use rcgen::{CertificateParams, DistinguishedName, DnType, Issuer, KeyPair};
        let ca_key = KeyPair::from_pem(ca.key_pem()).expect("CA key");
        let issuer = Issuer::from_ca_cert_pem(ca.cert_pem(), ca_key).expect("issuer");
        let mut params = CertificateParams::new(vec!["flotilla.cluster".to_string()]).expect("p");
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, node_id);
        name.push(DnType::OrganizationalUnitName, role);
        params.distinguished_name = name;
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &issuer).expect("signed");
        Credentials {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: ca.cert_pem().to_string(),
        }
    }

    fn cluster(ca: &ClusterCa) -> ClusterInfo {
        ClusterInfo {
            id: ca.cluster_id().to_string(),
            ca_cert_pem: ca.cert_pem().to_string(),
            ca_key_pem: ca.key_pem().to_string(),
            worker_join_secret: "w".into(),
            manager_join_secret: "m".into(),
            created_at_ms: 0,
        }
    }

    #[test]
    fn a_manager_with_a_legacy_certificate_re_issues_its_own_and_the_admins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ClusterCa::create("c1").expect("ca");
        let old = legacy(&ca, "n1", "manager");
        assert!(
            old.identity().is_err(),
            "a legacy certificate has no identity"
        );
        state::write_toml(&dir.path().join(CREDENTIALS_FILE), &old).expect("write");
        let client = ClientConfig {
            managers: vec!["127.0.0.1:4240".into()],
            credentials: legacy(&ca, "admin", "admin"),
        };
        state::write_toml(&dir.path().join(CLIENT_FILE), &client).expect("write");

        let renewed = reissue_if_needed(dir.path(), "n1", old, &cluster(&ca), 5).expect("done");
        let identity = renewed.identity().expect("identity");
        assert_eq!(
            (
                identity.node_id.as_str(),
                identity.role,
                identity.cluster_id.as_str()
            ),
            ("n1", Role::Manager, "c1")
        );
        assert_eq!(identity.issued_index, 5);
        let on_disk: Credentials =
            state::read_toml(&dir.path().join(CREDENTIALS_FILE)).expect("read");
        assert_eq!(on_disk, renewed);
        let client: ClientConfig = state::read_toml(&dir.path().join(CLIENT_FILE)).expect("read");
        assert_eq!(
            client.credentials.identity().expect("admin").role,
            Role::Admin
        );

        // A current certificate, not due, is kept as it is.
        let kept =
            reissue_if_needed(dir.path(), "n1", renewed.clone(), &cluster(&ca), 9).expect("done");
        assert_eq!(kept, renewed);
    }
}
