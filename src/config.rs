//! The mesh configuration file, `peers.ron` (being written).
