//! Swarm-like object IDs and name / ID / unique-prefix resolution.

use rand::Rng;

use super::error::CoreError;

/// Length of every generated ID, as in Docker Swarm.
pub const ID_LEN: usize = 25;

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A fresh ID: [`ID_LEN`] lowercase base36 characters drawn from `rng`.
///
/// The generator is passed in so that simulations replay from their seed.
pub fn new_id<R: Rng + ?Sized>(rng: &mut R) -> String {
    (0..ID_LEN)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Finds the one object that `query` names, the way the Docker CLI does: a full ID first,
/// then an exact name, then a unique ID prefix. A prefix that matches several IDs is an error.
///
/// `items` yields `(id, name, object)`; `kind` only feeds error messages.
pub fn resolve<'a, T: ?Sized>(
    kind: &'static str,
    query: &str,
    items: impl IntoIterator<Item = (&'a str, &'a str, &'a T)>,
) -> Result<&'a T, CoreError> {
    let not_found = || CoreError::NotFound {
        kind,
        query: query.to_string(),
    };
    if query.is_empty() {
        return Err(not_found());
    }
    let mut by_name = None;
    let mut by_prefix = Vec::new();
    for (id, name, object) in items {
        if id == query {
            return Ok(object);
        }
        if name == query && by_name.is_none() {
            by_name = Some(object);
        }
        if id.starts_with(query) {
            by_prefix.push(object);
        }
    }
    if let Some(object) = by_name {
        return Ok(object);
    }
    match by_prefix.len() {
        0 => Err(not_found()),
        1 => Ok(by_prefix[0]),
        count => Err(CoreError::Ambiguous {
            kind,
            query: query.to_string(),
            count,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn ids_are_25_lowercase_base36_and_seeded() {
        let mut a = StdRng::seed_from_u64(7);
        let mut b = StdRng::seed_from_u64(7);
        let id = new_id(&mut a);
        assert_eq!(id.len(), ID_LEN);
        assert!(id
            .bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        assert_eq!(id, new_id(&mut b));
        assert_ne!(id, new_id(&mut a));
    }

    #[test]
    fn resolve_by_id_name_and_unique_prefix() {
        let items = [("abc123", "web", 1), ("abd456", "db", 2), ("x9", "abc", 3)];
        let find = |q: &str| resolve("service", q, items.iter().map(|(i, n, o)| (*i, *n, o)));
        assert_eq!(find("abc123"), Ok(&1));
        assert_eq!(find("db"), Ok(&2));
        assert_eq!(find("abd"), Ok(&2));
        // An exact name wins over an ID prefix.
        assert_eq!(find("abc"), Ok(&3));
        assert!(matches!(
            find("ab"),
            Err(CoreError::Ambiguous { count: 2, .. })
        ));
        assert!(matches!(find("zz"), Err(CoreError::NotFound { .. })));
        assert!(matches!(find(""), Err(CoreError::NotFound { .. })));
    }
}
