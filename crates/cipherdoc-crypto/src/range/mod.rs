//! Range index mathematics (qe-protocol.md §8): value encodings, edges, mincover.
