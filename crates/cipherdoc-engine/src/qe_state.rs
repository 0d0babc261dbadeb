//! The narrow storage interface the QE server role (`qe_server`) needs: ESC
//! probes and inserts, ECOC appends and the compaction hand-off, with opaque
//! byte types. qe-protocol.md §9.1–9.8 say what the bytes mean; this module
//! never interprets them.
//!
//! The tag index (`__safeContent__` tag → document) is not written through
//! this trait: the engine maintains it itself from each stored document's
//! `__safeContent__` array on every insert, replace and delete, so the index
//! can never disagree with the documents. Queries reach it through
//! [`crate::Filter::TagIn`].

use async_trait::async_trait;

use crate::Result;

/// An ESC document id and a `__safeContent__` tag: the protocol crate's
/// types (§9.2, §9.4), public values stored in the clear.
pub use cipherdoc_crypto::server::{EscId, Tag};

/// An ESC document's `value` (an `EncryptCTR` ciphertext of two LE64
/// numbers, §9.2). Anchors and null anchors have one; non-anchors do not.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EscValue(pub Vec<u8>);

impl std::fmt::Debug for EscValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EscValue({} bytes)", self.0.len())
    }
}

/// What an ESC probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscEntry {
    /// `None` for a non-anchor; the encrypted positions for (null) anchors.
    pub value: Option<EscValue>,
}

/// Which ECOC [`QeState::ecoc_read`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcocGeneration {
    /// The live ECOC, which every encrypted write appends to (what the
    /// leakage report reads).
    Live,
    /// `<ecoc>.compact`, the generation a compaction is turning into
    /// anchors.
    Compacting,
}

/// One ECOC document: `{fieldName, value}` (§9.1); `value` is the client's `p`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcocEntry {
    /// The encrypted field's dotted path.
    pub field_name: String,
    /// The encrypted compaction value (opaque here).
    pub value: Vec<u8>,
}

/// ESC/ECOC state of encrypted collections, available inside a transaction so
/// that a document and its state rows commit together (ARCHITECTURE.md
/// invariant 3). Every method that reads or writes storage fails with
/// [`crate::EngineError::NotEncrypted`] on a collection created without
/// `encryptedFields`; the two hints — [`QeState::cheap_round_trips`] and
/// the default [`QeState::esc_has_anchors`], which answers `true` without
/// reading anything — do not check.
#[async_trait]
pub trait QeState: Send {
    /// Probe one ESC id: [`QeState::esc_get_many`] of one.
    async fn esc_get(&mut self, collection: &str, id: &EscId) -> Result<Option<EscEntry>> {
        let mut v = self
            .esc_get_many(collection, std::slice::from_ref(id))
            .await?;
        Ok(v.pop().flatten())
    }

    /// Whether a call to [`QeState::esc_get_many`] costs about as little as
    /// probing one more id in it: true for an in-process engine running a
    /// transaction in place (SQLite inside [`crate::Engine::transact`]).
    /// The QE server role then fetches only the ids its searches ask for;
    /// otherwise (a network or a thread hand-off per call) it prefetches
    /// ids speculatively to save round trips. Only speed depends on it.
    fn cheap_round_trips(&self) -> bool {
        false
    }

    /// Probe many ESC ids in one round trip; the answer is in input order.
    /// emuBinary's doubling and bisection rounds should batch through this.
    async fn esc_get_many(
        &mut self,
        collection: &str,
        ids: &[EscId],
    ) -> Result<Vec<Option<EscEntry>>>;

    /// Whether the ESC may hold anchors (documents with a `value`: anchors
    /// and null anchors, written by compaction and cleanup). `false` lets
    /// the QE server role skip every search's anchor phase
    /// ([`cipherdoc_crypto::server::EmuBinary::assume_no_anchors`]); it
    /// must only be returned when it is certain. The default, `true`, is
    /// always correct.
    async fn esc_has_anchors(&mut self, collection: &str) -> Result<bool> {
        let _ = collection;
        Ok(true)
    }

    /// Keep every writer of `collection` out until the transaction ends,
    /// after waiting for those in flight: called first by compaction and
    /// cleanup. Under READ COMMITTED a writer's ESC probes are several
    /// statements; a compaction committing between two of them deletes
    /// non-anchors the writer has not looked at yet, and the writer could
    /// then take a position below the new anchor that another document
    /// already holds (its tag would repeat another document's). Engines
    /// whose writers are serialized anyway (SQLite's single writer) keep
    /// this default no-op.
    async fn lock_for_maintenance(&mut self, collection: &str) -> Result<()> {
        let _ = collection;
        Ok(())
    }

    /// Serialize writers of the same ESC counters until the transaction
    /// ends. `counters` are the counters' `ESCTwiceDerivedTagToken` bytes,
    /// sorted, so that two transactions always lock in the same order.
    /// Engines whose writers are already serialized (SQLite's single writer)
    /// keep this default no-op; engines with concurrent writers take a lock
    /// per counter, so that writers of one hot value queue instead of
    /// colliding on its next ESC position and retrying in a herd.
    async fn esc_lock_counters(&mut self, collection: &str, counters: &[[u8; 32]]) -> Result<()> {
        let _ = (collection, counters);
        Ok(())
    }

    /// Insert an ESC document. An existing id is reported as
    /// [`crate::EngineError::EscIdConflict`] (a concurrent writer won the
    /// position) and leaves the transaction usable.
    async fn esc_insert(
        &mut self,
        collection: &str,
        id: &EscId,
        value: Option<EscValue>,
    ) -> Result<()>;

    /// Insert several ESC documents in one round trip: all of them, or, when
    /// an id already exists, none ([`crate::EngineError::EscIdConflict`]).
    /// The default inserts one by one (a conflict may then leave the
    /// earlier ones behind; the QE server role rolls the whole transaction
    /// back on a conflict, so that is harmless for it).
    async fn esc_insert_many(
        &mut self,
        collection: &str,
        docs: &[(EscId, Option<EscValue>)],
    ) -> Result<()> {
        for (id, value) in docs {
            self.esc_insert(collection, id, value.clone()).await?;
        }
        Ok(())
    }

    /// Insert or overwrite an ESC document (null anchor updates in cleanup).
    async fn esc_upsert(
        &mut self,
        collection: &str,
        id: &EscId,
        value: Option<EscValue>,
    ) -> Result<()>;

    /// Delete ESC documents by id; returns how many existed.
    async fn esc_delete_many(&mut self, collection: &str, ids: &[EscId]) -> Result<u64>;

    /// Number of ESC documents (emuBinary's `rho` starts from it).
    async fn esc_count(&mut self, collection: &str) -> Result<u64>;

    /// Ids of all non-anchors (documents without `value`), for compaction
    /// step 1.
    async fn esc_non_anchor_ids(&mut self, collection: &str) -> Result<Vec<EscId>>;

    /// Append one ECOC document.
    async fn ecoc_append(&mut self, collection: &str, field_name: &str, value: &[u8])
    -> Result<()>;

    /// Append several ECOC documents `(fieldName, value)` in one round trip.
    /// The default appends one by one.
    async fn ecoc_append_many(&mut self, collection: &str, entries: &[EcocEntry]) -> Result<()> {
        for e in entries {
            self.ecoc_append(collection, &e.field_name, &e.value)
                .await?;
        }
        Ok(())
    }

    /// Number of documents in the live ECOC.
    async fn ecoc_count(&mut self, collection: &str) -> Result<u64>;

    /// Compaction step 1: rename the ECOC to `<ecoc>.compact` and create a
    /// fresh empty ECOC. Returns `false` (and changes nothing) when
    /// `<ecoc>.compact` already exists, i.e. an interrupted compaction is
    /// being resumed.
    async fn ecoc_begin_compaction(&mut self, collection: &str) -> Result<bool>;

    /// All documents of one ECOC generation, in insertion order (empty
    /// when `<ecoc>.compact` does not exist).
    async fn ecoc_read(
        &mut self,
        collection: &str,
        generation: EcocGeneration,
    ) -> Result<Vec<EcocEntry>>;

    /// All documents of `<ecoc>.compact` (empty when it does not exist).
    async fn ecoc_read_compact(&mut self, collection: &str) -> Result<Vec<EcocEntry>> {
        self.ecoc_read(collection, EcocGeneration::Compacting).await
    }

    /// Drop `<ecoc>.compact` (no-op when absent).
    async fn ecoc_drop_compact(&mut self, collection: &str) -> Result<()>;
}
