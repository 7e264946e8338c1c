//! [`text_newtype!`]: the impls every checked-text newtype shares (a model
//! id, an alias, a metric name). The type's own `parse` is the one place its
//! text is checked; these impls only read it.

/// Display, FromStr (through the type's `parse`), read-only `Deref<str>`,
/// `AsRef<str>` and comparison with text, for a tuple struct over `String`
/// whose `parse` returns `Result<Self, $err>`.
macro_rules! text_newtype {
    ($t:ty, $err:ty) => {
        impl ::std::fmt::Display for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::str::FromStr for $t {
            type Err = $err;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        /// Read-only access to the checked text.
        impl ::std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl ::std::borrow::Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

pub(crate) use text_newtype;
