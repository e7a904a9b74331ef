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
            serde::Serialize, serde::Deserialize,
        )]
        $vis enum $name {
            $(#[serde(rename = $wire)] $variant),+
        }

        // Written out rather than derived: the derive does not see the `serde(rename)` of a
        // macro-built variant and would document the Rust names.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($wire),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

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

/// A JSON value kept as its compact text: checked as a `T` when decoded, written back verbatim,
/// decoded again only where it is read. For the bulky, rarely read parts of catalogue entries
/// (service metadata and operation contracts), which would otherwise cost several kilobytes of
/// maps and strings per service in memory.
pub struct Raw<T> {
    json: Box<serde_json::value::RawValue>,
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: serde::Serialize> Raw<T> {
    pub fn new(value: &T) -> Raw<T> {
        Raw {
            json: serde_json::value::to_raw_value(value).expect("wire values serialise"),
            _type: std::marker::PhantomData,
        }
    }
}

impl<T: serde::de::DeserializeOwned> Raw<T> {
    /// The value (decoded from text checked when it was read).
    pub fn get(&self) -> T {
        serde_json::from_str(self.json.get()).expect("checked when decoded")
    }
}

impl<T> Clone for Raw<T> {
    fn clone(&self) -> Self {
        Raw {
            json: self.json.clone(),
            _type: std::marker::PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Raw<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.json.get())
    }
}

impl<T: Default + serde::Serialize> Default for Raw<T> {
    fn default() -> Self {
        Raw::new(&T::default())
    }
}

impl<T> PartialEq for Raw<T> {
    fn eq(&self, other: &Self) -> bool {
        self.json.get() == other.json.get()
    }
}

impl<T> serde::Serialize for Raw<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(serializer)
    }
}

impl<'de, T: serde::Deserialize<'de> + serde::Serialize> serde::Deserialize<'de> for Raw<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(|value| Raw::new(&value))
    }
}
