//! confide-server
