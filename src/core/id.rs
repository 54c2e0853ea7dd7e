//! Ids flowd makes itself: runs, events without a sender's id, notifications.

/// A new time-ordered id (UUIDv7), so ids sort by creation.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_v7_and_sort_by_creation() {
        let (a, b) = (new_id(), new_id());
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert!(a < b, "{a} then {b}");
    }
}
