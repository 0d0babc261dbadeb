//! The QE server role for engines without a native one (qe-protocol.md §9).
