//! confide-tests
