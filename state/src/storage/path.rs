//! Paths inside checkpoint storage.

use std::fmt;

use super::StorageError;

/// A relative, `/`-separated path below the storage root, such as
/// `job-1/chk-7/_metadata`. It cannot be absolute or contain `..`, so a path
/// read from metadata can never reach outside the storage root.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StoragePath(String);

impl StoragePath {
    /// Checks and wraps a relative path.
    pub fn new(path: impl Into<String>) -> Result<Self, StorageError> {
        let path = path.into();
        let invalid = |reason| Err(StorageError::InvalidPath { path: path.clone(), reason });
        if path.is_empty() {
            return invalid("it is empty");
        }
        if path.starts_with('/') || path.contains('\\') {
            return invalid("it must be relative and use '/' as separator");
        }
        for segment in path.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return invalid("segments must be non-empty names, not '.' or '..'");
            }
        }
        Ok(Self(path))
    }

    /// The path with `name` appended as a further segment.
    pub fn join(&self, name: &str) -> Result<Self, StorageError> {
        Self::new(format!("{}/{name}", self.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for StoragePath {
    type Error = StorageError;

    fn try_from(path: String) -> Result<Self, Self::Error> {
        Self::new(path)
    }
}

impl From<StoragePath> for String {
    fn from(path: StoragePath) -> Self {
        path.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_accepted() {
        assert!(StoragePath::new("job/chk-1/_metadata").is_ok());
        for bad in ["", "/etc/passwd", "a/../b", "a//b", "./a", "a\\b", "a/"] {
            assert!(StoragePath::new(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn join_checks_the_new_segment() {
        let base = StoragePath::new("job").expect("valid");
        assert_eq!(base.join("shared").expect("valid").as_str(), "job/shared");
        assert!(base.join("..").is_err());
    }
}
