//! Process sandbox.
