//! Storage engines behind one async `Engine` trait, and the QE server role.
