//! HBONE.
