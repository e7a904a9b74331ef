//! Enumerations of the wire format: one macro gives each its exact wire values (which mix
//! `kebab-case`, `snake_case` and dotted forms), serde, the OpenAPI schema and parsing with a
//! `VALIDATION_ERROR` that names the field and lists the allowed values.

use crate::error::ApiError;

/// Declares a wire enumeration: `wire_enum!(pub Name { Variant = "wire-value", … })`.
#[macro_export]
macro_rules! wire_enum {
    ($(#[$meta:meta])* $vis:vis $name:ident { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, utoipa::ToSchema,
        )]
        $vis enum $name {
            $(#[serde(rename = $wire)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire value.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// Parses a wire value; exact match only.
            pub fn parse(value: &str) -> Option<$name> {
                match value { $($wire => Some($name::$variant),)+ _ => None }
            }

            /// `a | b | c`, for error messages.
            pub fn allowed() -> String {
                [$($wire),+].join(" | ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Anything `wire_enum!` declares.
pub trait WireEnum: Sized + Copy {
    fn parse_wire(value: &str) -> Option<Self>;
    fn allowed_values() -> String;
}

#[macro_export]
macro_rules! impl_wire_enum {
    ($($name:ty),+ $(,)?) => {
        $(impl $crate::wire::WireEnum for $name {
            fn parse_wire(value: &str) -> Option<Self> { <$name>::parse(value) }
            fn allowed_values() -> String { <$name>::allowed() }
        })+
    };
}

/// Parses the value of `field` as a `T`, else `VALIDATION_ERROR` listing the allowed values.
pub fn parse_field<T: WireEnum>(field: &str, value: &str) -> Result<T, ApiError> {
    T::parse_wire(value).ok_or_else(|| {
        let allowed = T::allowed_values();
        ApiError::validation(field, &allowed, format!("{field} must be one of {allowed}"))
    })
}
