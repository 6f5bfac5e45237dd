//! Fixed names for small setting enums (config values and command-line flags): one macro
//! writes `ALL`, `as_str`, `Display` and `FromStr` from the list of variants and names, so
//! the names, the parser and its error message cannot disagree. Owns no state.

/// `named_enum!(Type, "what", { Variant => "name", ... })`: `Type::ALL` (in the listed order),
/// `Type::as_str`, `Display` (the name) and `FromStr` (the name, or the error
/// `unknown what "x": expected a, b or c`).
macro_rules! named_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in the order error messages list them.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The name in config files and flags.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        let names: Vec<&str> = $ty::ALL.iter().map(|v| v.as_str()).collect();
                        let expected = match names.split_last() {
                            Some((last, rest)) if !rest.is_empty() => {
                                format!("{} or {last}", rest.join(", "))
                            }
                            _ => names.join(""),
                        };
                        format!("unknown {} {s:?}: expected {expected}", $what)
                    })
            }
        }
    };
}

pub(crate) use named_enum;
