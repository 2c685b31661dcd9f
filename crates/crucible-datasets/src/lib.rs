//! Dataset adapters.
