//! The registry's names, checked once when made: [`ModelId`] and [`Alias`].
//! A value of either type has the right shape, so it cannot carry SQL or a
//! path; code that holds one does not check it again.

use std::borrow::Cow;

use serde::Serialize;

use super::RegistryError;
use crate::event::sha256_hex;
use crate::newtype::text_newtype;

/// A model id: the SHA-256 of the model's artifact, 64 lowercase hex
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ModelId(String);

impl ModelId {
    /// `id` as a model id, if it has the shape of one.
    pub fn parse(id: &str) -> Result<Self, RegistryError> {
        if is_model_id(id) {
            Ok(Self(id.to_string()))
        } else {
            Err(RegistryError::BadModelId(id.to_string()))
        }
    }

    /// The id of an artifact of these bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(sha256_hex(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 characters, as people write an id.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

/// Whether `id` has the form of a model id: 64 lowercase hex characters.
pub fn is_model_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// An alias (`production`, `shadow`, ...): 1-64 characters of
/// `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Alias(String);

impl Alias {
    pub fn parse(alias: &str) -> Result<Self, RegistryError> {
        let ok = (1..=64).contains(&alias.len())
            && alias
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(alias.to_string()))
        } else {
            Err(RegistryError::BadAlias(alias.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the models' status follows this alias (`production`,
    /// `shadow`).
    pub fn sets_status(&self) -> bool {
        matches!(self.0.as_str(), "production" | "shadow")
    }
}

text_newtype!(ModelId, RegistryError);
text_newtype!(Alias, RegistryError);

/// What the registry's methods take for a model id: a [`ModelId`], passed
/// as it is, or text, checked at the door.
pub trait AsModelId {
    fn as_model_id(&self) -> Result<Cow<'_, ModelId>, RegistryError>;
}

impl AsModelId for ModelId {
    fn as_model_id(&self) -> Result<Cow<'_, ModelId>, RegistryError> {
        Ok(Cow::Borrowed(self))
    }
}

impl AsModelId for str {
    fn as_model_id(&self) -> Result<Cow<'_, ModelId>, RegistryError> {
        ModelId::parse(self).map(Cow::Owned)
    }
}

impl AsModelId for String {
    fn as_model_id(&self) -> Result<Cow<'_, ModelId>, RegistryError> {
        self.as_str().as_model_id()
    }
}

/// What the registry's methods take for an alias: an [`Alias`], or text,
/// checked at the door.
pub trait AsAlias {
    fn as_alias(&self) -> Result<Cow<'_, Alias>, RegistryError>;
}

impl AsAlias for Alias {
    fn as_alias(&self) -> Result<Cow<'_, Alias>, RegistryError> {
        Ok(Cow::Borrowed(self))
    }
}

impl AsAlias for str {
    fn as_alias(&self) -> Result<Cow<'_, Alias>, RegistryError> {
        Alias::parse(self).map(Cow::Owned)
    }
}

impl AsAlias for String {
    fn as_alias(&self) -> Result<Cow<'_, Alias>, RegistryError> {
        self.as_str().as_alias()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_names_are_made() {
        let id = ModelId::of_bytes(b"model");
        assert_eq!(ModelId::parse(id.as_str()).unwrap(), id);
        assert_eq!(id.short().len(), 12);
        for bad in [
            "",
            "abc",
            &"A".repeat(64),
            &format!("{}/..", &id.as_str()[..61]),
        ] {
            assert!(ModelId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Alias::parse("production").unwrap().sets_status());
        assert!(!Alias::parse("canary-2").unwrap().sets_status());
        for bad in [
            "",
            "a b",
            "x'; DROP TABLE models; --",
            &"a".repeat(65),
            "../x",
        ] {
            assert!(Alias::parse(bad).is_err(), "{bad:?}");
        }
    }
}
