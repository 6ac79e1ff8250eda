//! The writes of `secret` and `config` commands (SPEC §9), planned on the leader: a secret's
//! data is sealed here, with the cluster's data key, before anything is proposed, so the Raft
//! log, snapshots and store only ever hold its ciphertext.
//!
//! Like [`control_plan`](crate::core::control_plan), nothing is proposed here and every plan
//! is checked against the store with the rules apply uses, so a bad request is refused before
//! anything changes.

use std::collections::BTreeMap;

use rand::Rng;

use crate::core::control_plan::WritePlan;
use crate::core::ids;
use crate::core::model::Meta;
use crate::core::secrets::{
    seal_context, validate_data, validate_name, DataKey, SecretData, SecretKind, SecretObject,
    SecretVersion,
};
use crate::core::store::{Command, Store};
use crate::core::CoreError;

/// What a `create` or `rotate` gives: the data, and the key that seals a secret's.
#[derive(Clone, Copy)]
pub struct NewData<'a> {
    /// The plaintext, as the admin sent it.
    pub bytes: &'a [u8],
    /// The cluster's data key, if this manager holds it (a config needs none).
    pub key: Option<&'a DataKey>,
    /// The leader's clock, Unix ms.
    pub now_ms: u64,
}

/// `secret create` / `config create`: a new object under a new ID, its version 1 sealed (a
/// secret) or plain (a config).
pub fn plan_secret_create<R: Rng + ?Sized>(
    store: &Store,
    kind: SecretKind,
    name: &str,
    labels: &BTreeMap<String, String>,
    data: NewData<'_>,
    rng: &mut R,
) -> Result<WritePlan, CoreError> {
    validate_name(kind.as_str(), name)?;
    let id = ids::new_id(rng);
    let object = SecretObject {
        id: id.clone(),
        kind,
        name: name.to_string(),
        labels: labels.clone(),
        versions: vec![new_version(kind, &id, 1, data)?],
        meta: Meta::default(),
    };
    let command = Command::CreateSecret(object);
    store.check(&command)?;
    Ok(WritePlan {
        commands: vec![command],
        ids: vec![id],
    })
}

/// `secret rm` / `config rm`: every object named, each refused while a service uses it.
pub fn plan_secret_remove(
    store: &Store,
    kind: SecretKind,
    names: &[String],
) -> Result<WritePlan, CoreError> {
    let mut plan = WritePlan::default();
    for query in names {
        let object = store.resolve_secret(kind, query)?;
        let command = Command::RemoveSecret {
            kind,
            id: object.id.clone(),
        };
        store.check(&command)?;
        plan.commands.push(command);
        plan.ids.push(object.id.clone());
    }
    Ok(plan)
}

/// `secret rotate`: the next version of the object; applying it moves every service that
/// uses the object to that version, a rolling update under each one's update config.
pub fn plan_secret_rotate(
    store: &Store,
    kind: SecretKind,
    query: &str,
    data: NewData<'_>,
) -> Result<WritePlan, CoreError> {
    let object = store.resolve_secret(kind, query)?;
    let next = object.latest().map_or(1, |latest| latest.version + 1);
    let command = Command::RotateSecret {
        kind,
        id: object.id.clone(),
        version: new_version(kind, &object.id, next, data)?,
    };
    store.check(&command)?;
    Ok(WritePlan {
        commands: vec![command],
        ids: vec![object.id.clone()],
    })
}

fn new_version(
    kind: SecretKind,
    id: &str,
    version: u64,
    data: NewData<'_>,
) -> Result<SecretVersion, CoreError> {
    validate_data(kind.as_str(), data.bytes)?;
    let stored = match kind {
        SecretKind::Config => SecretData::Plain(data.bytes.to_vec()),
        SecretKind::Secret => {
            let key = data.key.ok_or_else(|| {
                CoreError::Conflict(
                    "this manager holds no data key, so it cannot seal a secret (its state directory was made before secrets existed)"
                        .into(),
                )
            })?;
            let sealed = key
                .seal(data.bytes, &seal_context(id, version))
                .map_err(|error| CoreError::Conflict(format!("cannot seal the secret: {error}")))?;
            SecretData::Sealed(sealed)
        }
    };
    Ok(SecretVersion {
        version,
        data: stored,
        size: data.bytes.len() as u64,
        created_at_ms: data.now_ms,
    })
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::core::mounts::{SecretReference, MOUNT_MODE_DEFAULT};
    use crate::core::testkit::{node, service, Harness};

    const PASSWORD: &[u8] = b"correct horse battery staple";

    fn data<'a>(bytes: &'a [u8], key: &'a DataKey) -> NewData<'a> {
        NewData {
            bytes,
            key: Some(key),
            now_ms: 1_000,
        }
    }

    fn create(h: &mut Harness, kind: SecretKind, name: &str, key: &DataKey) -> String {
        let plan = plan_secret_create(
            &h.store,
            kind,
            name,
            &BTreeMap::new(),
            data(PASSWORD, key),
            &mut StdRng::seed_from_u64(name.len() as u64),
        )
        .expect("planned");
        for command in plan.commands {
            h.apply(command);
        }
        plan.ids[0].clone()
    }

    #[test]
    fn a_secret_is_stored_sealed_and_opens_with_its_id_and_version() {
        let key = DataKey::generate().expect("key");
        let mut h = Harness::with_nodes(vec![node("n1")]);
        let id = create(&mut h, SecretKind::Secret, "db_password", &key);
        let object = h.store.secret(SecretKind::Secret, &id).expect("stored");
        let version = object.latest().expect("version 1");
        assert_eq!((version.version, version.size), (1, PASSWORD.len() as u64));
        let SecretData::Sealed(sealed) = &version.data else {
            panic!("a secret must be sealed, got {:?}", version.data);
        };
        assert!(!sealed
            .ciphertext
            .windows(PASSWORD.len())
            .any(|w| w == PASSWORD));
        assert_eq!(
            key.open(sealed, &seal_context(&id, 1)).expect("opens"),
            PASSWORD
        );
        assert!(key.open(sealed, &seal_context(&id, 2)).is_err());
    }

    #[test]
    fn a_config_is_stored_plain() {
        let key = DataKey::generate().expect("key");
        let mut h = Harness::with_nodes(vec![node("n1")]);
        let id = create(&mut h, SecretKind::Config, "site.conf", &key);
        let object = h.store.secret(SecretKind::Config, &id).expect("stored");
        assert_eq!(
            object.latest().map(|v| &v.data),
            Some(&SecretData::Plain(PASSWORD.to_vec()))
        );
    }

    #[test]
    fn bad_names_data_duplicates_and_a_missing_key_are_refused_before_proposing() {
        let key = DataKey::generate().expect("key");
        let mut h = Harness::with_nodes(vec![node("n1")]);
        create(&mut h, SecretKind::Secret, "db", &key);
        let rng = &mut StdRng::seed_from_u64(1);
        let labels = BTreeMap::new();
        let plan = |name: &str, data: NewData<'_>, rng: &mut StdRng| {
            plan_secret_create(&h.store, SecretKind::Secret, name, &labels, data, rng)
        };
        let too_big = vec![7u8; 500 * 1024 + 1];
        for (name, bytes, needle) in [
            ("-db", PASSWORD, "start and end"),
            ("db", PASSWORD, "already exists"),
            ("empty", &b""[..], "empty"),
            ("big", too_big.as_slice(), "500 KiB"),
        ] {
            let error = plan(name, data(bytes, &key), rng).expect_err(needle);
            assert!(error.to_string().contains(needle), "{error} lacks {needle}");
        }
        let keyless = NewData {
            bytes: PASSWORD,
            key: None,
            now_ms: 0,
        };
        let error = plan("other", keyless, rng).expect_err("no key");
        assert!(error.to_string().contains("no data key"), "{error}");
        // The same name is free among configs: the kinds have separate name spaces.
        let config = plan_secret_create(&h.store, SecretKind::Config, "db", &labels, keyless, rng);
        assert!(config.is_ok(), "{config:?}");
    }

    #[test]
    fn rm_of_a_secret_in_use_is_refused_with_the_services_named() {
        let key = DataKey::generate().expect("key");
        let mut h = Harness::with_nodes(vec![node("n1")]);
        let id = create(&mut h, SecretKind::Secret, "db", &key);
        let mut web = service("s1", "web", 1);
        web.spec.secrets.push(SecretReference {
            name: "db".into(),
            secret_id: id.clone(),
            version: 1,
            target: "db".into(),
            uid: String::new(),
            gid: String::new(),
            mode: MOUNT_MODE_DEFAULT,
        });
        h.apply(Command::CreateService(web));
        let error =
            plan_secret_remove(&h.store, SecretKind::Secret, &["db".into()]).expect_err("in use");
        assert_eq!(
            error.to_string(),
            "secret db is in use by the following service: web"
        );
        h.apply(Command::RemoveService {
            service_id: "s1".into(),
        });
        let plan = plan_secret_remove(&h.store, SecretKind::Secret, &[id[..6].to_string()])
            .expect("free now, found by ID prefix");
        assert_eq!(plan.ids, vec![id]);
    }

    #[test]
    fn rotate_adds_the_next_version_and_moves_the_services_using_it() {
        let key = DataKey::generate().expect("key");
        let mut h = Harness::with_nodes(vec![node("n1")]);
        let id = create(&mut h, SecretKind::Secret, "db", &key);
        let mut spec = service("s1", "web", 1).spec;
        spec.secrets.push(SecretReference {
            name: "db".into(),
            secret_id: String::new(),
            version: 0,
            target: "db".into(),
            uid: String::new(),
            gid: String::new(),
            mode: 0o400,
        });
        let plan = crate::core::control_plan::plan_service_create(
            &h.store,
            &spec,
            &mut StdRng::seed_from_u64(3),
        )
        .expect("the name resolves");
        let service_id = plan.ids[0].clone();
        for command in plan.commands {
            h.apply(command);
        }
        let secrets = |h: &Harness| {
            h.store
                .service(&service_id)
                .expect("service")
                .spec
                .secrets
                .clone()
        };
        assert_eq!(
            (secrets(&h)[0].secret_id.as_str(), secrets(&h)[0].version),
            (id.as_str(), 1)
        );

        let plan = plan_secret_rotate(&h.store, SecretKind::Secret, "db", data(b"new", &key))
            .expect("rotated");
        for command in plan.commands {
            h.apply(command);
        }
        let object = h.store.secret(SecretKind::Secret, &id).expect("stored");
        assert_eq!(object.versions.len(), 2);
        let Some(SecretData::Sealed(sealed)) = object.version(2).map(|v| &v.data) else {
            panic!("version 2 sealed");
        };
        assert_eq!(
            key.open(sealed, &seal_context(&id, 2)).expect("opens"),
            b"new"
        );
        assert_eq!(secrets(&h)[0].version, 2, "the service moved to version 2");
    }

    #[test]
    fn a_reference_to_a_missing_secret_is_refused() {
        let h = Harness::with_nodes(vec![node("n1")]);
        let mut spec = service("s1", "web", 1).spec;
        spec.secrets.push(SecretReference {
            name: "nope".into(),
            secret_id: String::new(),
            version: 0,
            target: "nope".into(),
            uid: String::new(),
            gid: String::new(),
            mode: MOUNT_MODE_DEFAULT,
        });
        let error = crate::core::control_plan::plan_service_create(
            &h.store,
            &spec,
            &mut StdRng::seed_from_u64(3),
        )
        .expect_err("missing");
        assert_eq!(error.to_string(), "no such secret: nope");
    }
}
