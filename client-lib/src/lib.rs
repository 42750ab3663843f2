//! confide-client
