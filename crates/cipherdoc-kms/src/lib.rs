//! Wrapping and unwrapping data keys with a master key held by a KMS provider.
