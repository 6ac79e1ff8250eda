//! The store's secrets and configs (SPEC §9): lookups, the checks of their commands, the
//! rule that a spec names only objects (and versions) that exist, and what a rotation does
//! to the services that use the object.

use std::collections::BTreeMap;

use super::Store;
use crate::core::error::CoreError;
use crate::core::secrets::{validate_data, validate_name, SecretData, SecretKind, SecretObject};
use crate::core::spec::ServiceSpec;

/// Every `(kind, object ID, version, name)` a spec references.
pub fn references(spec: &ServiceSpec) -> impl Iterator<Item = (SecretKind, &str, u64, &str)> {
    let secrets = spec.secrets.iter().map(|r| {
        (
            SecretKind::Secret,
            r.secret_id.as_str(),
            r.version,
            r.name.as_str(),
        )
    });
    let configs = spec.configs.iter().map(|r| {
        (
            SecretKind::Config,
            r.config_id.as_str(),
            r.version,
            r.name.as_str(),
        )
    });
    secrets.chain(configs)
}

impl Store {
    fn objects(&self, kind: SecretKind) -> &BTreeMap<String, SecretObject> {
        match kind {
            SecretKind::Secret => &self.secrets,
            SecretKind::Config => &self.configs,
        }
    }

    pub(super) fn objects_mut(&mut self, kind: SecretKind) -> &mut BTreeMap<String, SecretObject> {
        match kind {
            SecretKind::Secret => &mut self.secrets,
            SecretKind::Config => &mut self.configs,
        }
    }

    /// Every secret (or config), by ID.
    pub fn secrets(&self, kind: SecretKind) -> &BTreeMap<String, SecretObject> {
        self.objects(kind)
    }

    /// One secret (or config) by ID.
    pub fn secret(&self, kind: SecretKind, id: &str) -> Option<&SecretObject> {
        self.objects(kind).get(id)
    }

    /// One secret (or config) by name.
    pub fn secret_by_name(&self, kind: SecretKind, name: &str) -> Option<&SecretObject> {
        self.objects(kind)
            .values()
            .find(|object| object.name == name)
    }

    /// A secret (or config) by full ID, exact name or unique ID prefix, as Docker's CLI finds
    /// one.
    pub fn resolve_secret(
        &self,
        kind: SecretKind,
        query: &str,
    ) -> Result<&SecretObject, CoreError> {
        let items = self
            .objects(kind)
            .values()
            .map(|object| (object.id.as_str(), object.name.as_str(), object));
        crate::core::ids::resolve(kind.as_str(), query, items)
    }

    /// Fills in the references the CLI sent by name (an empty ID): the object's ID and its
    /// newest version, which is what a new task sees. References that already name an ID
    /// (kept from the spec a `service update` started from) stay as they are.
    pub fn resolve_references(&self, spec: &mut ServiceSpec) -> Result<(), CoreError> {
        for reference in spec.secrets.iter_mut().filter(|r| r.secret_id.is_empty()) {
            let (id, name, version) = self.newest(SecretKind::Secret, &reference.name)?;
            (reference.secret_id, reference.name, reference.version) = (id, name, version);
        }
        for reference in spec.configs.iter_mut().filter(|r| r.config_id.is_empty()) {
            let (id, name, version) = self.newest(SecretKind::Config, &reference.name)?;
            (reference.config_id, reference.name, reference.version) = (id, name, version);
        }
        Ok(())
    }

    fn newest(&self, kind: SecretKind, query: &str) -> Result<(String, String, u64), CoreError> {
        let object = self.resolve_secret(kind, query)?;
        let version = object.latest().map_or(1, |latest| latest.version);
        Ok((object.id.clone(), object.name.clone(), version))
    }

    /// Names of the services whose spec uses the object, sorted.
    pub fn services_using(&self, kind: SecretKind, id: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .services
            .values()
            .filter(|service| {
                references(&service.spec).any(|(k, object, _, _)| k == kind && object == id)
            })
            .map(|service| service.spec.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Under autolock, the unlock key sealed with the data key.
    pub fn autolock(&self) -> Option<&crate::core::secrets::Sealed> {
        self.autolock.as_ref()
    }

    /// Refuses a spec that names a secret or config (or a version of one) the store lacks.
    pub(super) fn check_references(&self, spec: &ServiceSpec) -> Result<(), CoreError> {
        for (kind, id, version, name) in references(spec) {
            let object = self.secret(kind, id).ok_or_else(|| CoreError::NotFound {
                kind: kind.as_str(),
                query: name.to_string(),
            })?;
            if object.version(version).is_none() {
                return Err(CoreError::BadRequest(format!(
                    "{kind} {name} has no version {version}"
                )));
            }
        }
        Ok(())
    }

    pub(super) fn check_create_secret(&self, object: &SecretObject) -> Result<(), CoreError> {
        let kind = object.kind;
        validate_name(kind.as_str(), &object.name)?;
        if self.secret(kind, &object.id).is_some() {
            return Err(CoreError::AlreadyExists {
                kind: kind.as_str(),
                id: object.id.clone(),
            });
        }
        if self.secret_by_name(kind, &object.name).is_some() {
            return Err(CoreError::Conflict(format!(
                "{kind} {} already exists",
                object.name
            )));
        }
        match object.versions.as_slice() {
            [first] if first.version == 1 => self.check_data(kind, &first.data, first.size),
            _ => Err(CoreError::InvalidCommand(format!(
                "a new {kind} has exactly its version 1"
            ))),
        }
    }

    /// A secret's data is sealed and a config's plain, never the other way round: a plain
    /// secret in the log would be the leak the sealing exists to prevent.
    fn check_data(&self, kind: SecretKind, data: &SecretData, size: u64) -> Result<(), CoreError> {
        match (kind, data) {
            (SecretKind::Secret, SecretData::Sealed(_)) => {
                if size == 0 || size > crate::core::secrets::DATA_BYTES_MAX as u64 {
                    return Err(CoreError::InvalidCommand(format!(
                        "secret data of {size} bytes"
                    )));
                }
                Ok(())
            }
            (SecretKind::Config, SecretData::Plain(bytes)) => validate_data("config", bytes),
            _ => Err(CoreError::InvalidCommand(format!(
                "{kind} data must be {}",
                match kind {
                    SecretKind::Secret => "sealed",
                    SecretKind::Config => "plain",
                }
            ))),
        }
    }

    pub(super) fn check_remove_secret(&self, kind: SecretKind, id: &str) -> Result<(), CoreError> {
        let object = self.secret(kind, id).ok_or_else(|| CoreError::NotFound {
            kind: kind.as_str(),
            query: id.to_string(),
        })?;
        match self.services_using(kind, id).as_slice() {
            [] => Ok(()),
            [one] => Err(CoreError::Conflict(format!(
                "{kind} {} is in use by the following service: {one}",
                object.name
            ))),
            many => Err(CoreError::Conflict(format!(
                "{kind} {} is in use by the following services: {}",
                object.name,
                many.join(", ")
            ))),
        }
    }

    pub(super) fn check_rotate_secret(
        &self,
        kind: SecretKind,
        id: &str,
        version: &crate::core::secrets::SecretVersion,
    ) -> Result<(), CoreError> {
        let object = self.secret(kind, id).ok_or_else(|| CoreError::NotFound {
            kind: kind.as_str(),
            query: id.to_string(),
        })?;
        let next = object.latest().map_or(1, |latest| latest.version + 1);
        if version.version != next {
            return Err(CoreError::VersionMismatch {
                kind: kind.as_str(),
                id: id.to_string(),
                expected: version.version.saturating_sub(1),
                found: next - 1,
            });
        }
        self.check_data(kind, &version.data, version.size)
    }

    /// The spec of each service that uses the object, moved to its `version`.
    pub(super) fn specs_moved_to(
        &self,
        kind: SecretKind,
        id: &str,
        version: u64,
    ) -> Vec<(String, ServiceSpec)> {
        self.services
            .values()
            .filter_map(|service| {
                let mut spec = service.spec.clone();
                let mut moved = false;
                match kind {
                    SecretKind::Secret => {
                        for reference in spec.secrets.iter_mut().filter(|r| r.secret_id == id) {
                            moved |= reference.version != version;
                            reference.version = version;
                        }
                    }
                    SecretKind::Config => {
                        for reference in spec.configs.iter_mut().filter(|r| r.config_id == id) {
                            moved |= reference.version != version;
                            reference.version = version;
                        }
                    }
                }
                moved.then(|| (service.id.clone(), spec))
            })
            .collect()
    }
}
