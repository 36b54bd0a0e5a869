//! Hierarchical hashed timer wheel (being written).
