//! Identifiers that cross module boundaries, each its own type so one cannot be passed
//! where another is expected (a token id where a client id belongs, say).

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_string())
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A client of the token service: a policy's key or a credential (`client_id`).
    ClientId
);
id_type!(
    /// One token's own id (`jti`): what a revocation of that token names.
    Jti
);
id_type!(
    /// The grant a token belongs to (`gid`): every token of one grant and its refreshes.
    GrantId
);
id_type!(
    /// An API of the upstreams file, by its configured name.
    ApiName
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_compare_as_strings_and_are_found_by_str() {
        let a = ClientId::new("app");
        assert_eq!(a.as_str(), "app");
        assert_eq!(a.to_string(), "app");
        assert!(a == *"app");
        let set: HashSet<ClientId> = [a.clone()].into_iter().collect();
        assert!(set.contains("app"));
        assert_eq!(format!("{:?}", Jti::from("x")), "Jti(\"x\")");
    }
}
