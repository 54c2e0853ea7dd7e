//! Typed text columns: statuses and sources are stored as snake_case text (so the API and the
//! database agree, SPEC §5) and read back as their enums, so a row never carries a status as a
//! plain `String`. The enums live in `core` (or next to their repository) and know nothing of
//! the database; these impls are what sea-orm's `DeriveValueType` with `value_type = "String"`
//! would write, kept here so the vocabulary stays free of the ORM.

use crate::core::status::{RunStatus, StepStatus};
use crate::store::flows::FlowSource;

macro_rules! text_value {
    ($name:ty) => {
        impl From<$name> for sea_orm::Value {
            fn from(source: $name) -> sea_orm::Value {
                source.as_str().into()
            }
        }

        impl sea_orm::TryGetable for $name {
            fn try_get_by<I: sea_orm::ColIdx>(
                res: &sea_orm::QueryResult,
                idx: I,
            ) -> Result<Self, sea_orm::TryGetError> {
                let text = String::try_get_by(res, idx)?;
                text.parse::<$name>().map_err(|err| {
                    sea_orm::TryGetError::DbErr(sea_orm::DbErr::TryIntoErr {
                        from: "String",
                        into: stringify!($name),
                        source: std::sync::Arc::new(err),
                    })
                })
            }
        }

        impl sea_orm::sea_query::ValueType for $name {
            fn try_from(value: sea_orm::Value) -> Result<Self, sea_orm::sea_query::ValueTypeErr> {
                let text = <String as sea_orm::sea_query::ValueType>::try_from(value)?;
                text.parse::<$name>()
                    .map_err(|_| sea_orm::sea_query::ValueTypeErr)
            }

            fn type_name() -> String {
                stringify!($name).to_owned()
            }

            fn array_type() -> sea_orm::sea_query::ArrayType {
                sea_orm::sea_query::ArrayType::String
            }

            fn column_type() -> sea_orm::sea_query::ColumnType {
                sea_orm::sea_query::ColumnType::String(sea_orm::sea_query::StringLen::None)
            }
        }

        impl sea_orm::sea_query::Nullable for $name {
            fn null() -> sea_orm::Value {
                sea_orm::Value::String(None)
            }
        }

        impl sea_orm::IntoActiveValue<$name> for $name {
            fn into_active_value(self) -> sea_orm::ActiveValue<$name> {
                sea_orm::ActiveValue::Set(self)
            }
        }
    };
}

text_value!(RunStatus);
text_value!(StepStatus);
text_value!(FlowSource);
