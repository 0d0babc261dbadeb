//! Models, embedded models and their schema metadata.
