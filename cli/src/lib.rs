//! confide-cli
