//! Batch spec, variants, validation and batch ids (being written).
