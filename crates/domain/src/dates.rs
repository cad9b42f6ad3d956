//! Calendar dates as `YYYY-MM-DD` in JSON (`#[serde(with = "iso_date::option")]`).

time::serde::format_description!(iso_date, Date, "[year]-[month]-[day]");

pub use iso_date::option;
pub use iso_date::{deserialize, serialize};

/// Parses a `YYYY-MM-DD` date.
pub fn parse(value: &str) -> Option<time::Date> {
    time::Date::parse(
        value,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}
