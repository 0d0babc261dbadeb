//! QE property suite (filled below).
