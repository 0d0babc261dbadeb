//! Running many emuBinaryV2 searches (§9.3) against an engine with few
//! round trips.
//!
//! Each search is crypto's [`EmuBinary`] state machine; the answers come from
//! a per-operation cache filled by [`QeState::esc_get_many`]. Every round
//! (1) advances every search as far as the cache allows, then (2) collects
//! the ids the searches will probably ask next and fetches them all in one
//! batch. How much it prefetches depends on what a round trip costs
//! ([`QeState::cheap_round_trips`]):
//!
//! - **Expensive** (a network, or a thread hand-off per call): the first
//!   round fetches a fixed seed set per search (the null anchor, anchors
//!   1–2 and non-anchors 1–2; when there are at most
//!   `DEEP_SEED_SEARCHES` searches also non-anchors 3, 4, 8 and 16:
//!   enough to finish a never-compacted value with up to three inserts,
//!   and the doubling phase up to 16);
//!   later rounds explore each search's next few steps speculatively on a
//!   clone of its state, under both possible answers, up to a small depth.
//! - **Cheap** (in place, in process): the first round fetches the ids
//!   every search asks first (null anchor, anchors 1–2, non-anchors 1–2,
//!   which finish a value with at most one insert per contention factor,
//!   the common case at contention 8), and later rounds fetch exactly the
//!   id each search is blocked on. No HMAC is computed and no lookup made
//!   for an id that is not needed.
//!
//! Speculation only chooses what to prefetch: the state machines are always
//! fed real answers, so the result is exactly emuBinaryV2's.
//!
//! When the engine knows the ESC holds no anchors at all
//! ([`QeState::esc_has_anchors`]: a collection never compacted or cleaned
//! up), every search's anchor phase is answered "absent" without probes
//! ([`EmuBinary::assume_no_anchors`]) — the answers the probes would give —
//! which saves three of the five probes a rarely repeated value needs.
//!
//! The non-anchor search starts from `rho = 2` instead of the ESC's size
//! (§9.3 says `max(2, |ESC|)`): ESC positions of one value are contiguous
//! above the anchor's cpos, so the doubling-then-bisecting search finds the
//! same last position from any start, and starting small costs
//! `O(log count)` probes instead of `O(log |ESC|)` — and no count of the
//! ESC, which SQLite cannot answer without a scan.

use std::collections::{HashMap, HashSet, VecDeque};

use cipherdoc_crypto::server::{EmuBinary, EmuBinaryResult, EscTokens, ProbeAt, ProbeResult};

use super::QeError;
use crate::engine::Transaction;
use crate::qe_state::EscId;
use crate::{EngineError, Result};

/// Speculation depth of rounds after the first (answers assumed per path).
const EXPLORE_DEPTH: usize = 6;
/// At most this many new ids per search per round.
const EXPLORE_BUDGET: usize = 32;
/// Safety bound on states visited per exploration.
const EXPLORE_STEPS: usize = 256;
/// Up to this many searches in one run, expensive round trips also
/// prefetch non-anchors 3, 4, 8 and 16 in the first round. Those ids cost
/// a lookup each and save at most one round trip per run: worth it for a
/// query or a single document, not for a batch writing many counters (a
/// batch of 100 new values at contention 8 would fetch ~400 ids for them).
const DEEP_SEED_SEARCHES: usize = 16;
/// Safety bound on rounds (a search needs about `2·log2(count) + 8`).
const MAX_ROUNDS: usize = 300;

/// One search and the ids to fetch in its first round.
pub(crate) struct Search {
    emu: EmuBinary,
    /// A value's search (anchors, then non-anchors), not a padding one.
    value: bool,
    /// The anchor phase was answered without probes (no anchors exist).
    no_anchors: bool,
    /// Every id of this search computed so far: each is an HMAC, and the
    /// rounds and the speculative exploration ask for the same positions
    /// again and again (a profile of encrypted bulk inserts on PostgreSQL
    /// had a tenth of the client's time in these HMACs).
    ids: Ids,
}

/// A search's ids by position, each computed once.
#[derive(Default)]
struct Ids(HashMap<ProbeAt, EscId>);

impl Ids {
    fn get(&mut self, emu: &EmuBinary, at: ProbeAt) -> EscId {
        *self.0.entry(at).or_insert_with(|| eid(emu.probe_id(at)))
    }

    /// The id `emu` asks for next, if any.
    fn next(
        &mut self,
        emu: &EmuBinary,
    ) -> std::result::Result<Option<EscId>, cipherdoc_crypto::Error> {
        Ok(emu.next_probe_at()?.map(|at| self.get(emu, at)))
    }
}

impl Search {
    /// emuBinaryV2 over the ESC entries of one (value, contention factor).
    pub(crate) fn new(tokens: &EscTokens) -> Self {
        Self {
            emu: EmuBinary::new(tokens, 0),
            value: true,
            no_anchors: false,
            ids: Ids::default(),
        }
    }

    /// anchorBinaryHops over a range field's padding anchors.
    pub(crate) fn padding(root: &cipherdoc_crypto::tokens::AnchorPaddingTokenRoot) -> Self {
        Self {
            emu: EmuBinary::anchor_padding(root),
            value: false,
            no_anchors: false,
            ids: Ids::default(),
        }
    }

    /// The first round's ids: those every search of its kind asks first
    /// (the null anchor and anchors 1–2 unless the anchor phase was
    /// skipped; for a value, non-anchors 1–2, which finish a value with at
    /// most one insert). `deep` adds non-anchors 3, 4, 8 and 16: enough to
    /// finish a never-compacted value with up to three inserts in one
    /// round, and the doubling phase up to 16.
    fn first_round(&mut self, deep: bool) -> Vec<EscId> {
        let mut at = Vec::new();
        if !self.no_anchors {
            at.extend([0, 1, 2].map(ProbeAt::Anchor));
        }
        if self.value {
            at.extend([1, 2].map(ProbeAt::NonAnchor));
            if deep {
                at.extend([3, 4, 8, 16].map(ProbeAt::NonAnchor));
            }
        }
        at.into_iter().map(|a| self.ids.get(&self.emu, a)).collect()
    }
}

/// A cached answer: `None` absent, `Some(value)` present.
type Answer = Option<Option<Vec<u8>>>;

fn probe_of(a: &Answer) -> ProbeResult<'_> {
    match a {
        None => ProbeResult::Absent,
        Some(v) => ProbeResult::Present {
            value: v.as_deref(),
        },
    }
}

fn eid(id: cipherdoc_crypto::server::EscId) -> EscId {
    id
}

fn state_err(collection: &str) -> impl Fn(cipherdoc_crypto::Error) -> EngineError + '_ {
    move |source| {
        QeError::State {
            collection: collection.to_owned(),
            source,
        }
        .into()
    }
}

/// Ids `start` will probably ask next, assuming either answer for unknown
/// ids (consistently along each path), to `EXPLORE_DEPTH` assumptions.
fn explore(
    start: &EmuBinary,
    ids: &mut Ids,
    cache: &HashMap<EscId, Answer>,
    want: &mut HashSet<EscId>,
    budget: usize,
) {
    let mut queue: VecDeque<(EmuBinary, Vec<(EscId, bool)>)> = VecDeque::new();
    queue.push_back((start.clone(), Vec::new()));
    let (mut added, mut steps) = (0, 0);
    while let Some((st, assumed)) = queue.pop_front() {
        steps += 1;
        if steps > EXPLORE_STEPS {
            break;
        }
        let Ok(Some(id)) = ids.next(&st) else {
            continue;
        };
        if let Some(a) = cache.get(&id) {
            let mut next = st;
            if next.feed(probe_of(a)).is_ok() {
                queue.push_back((next, assumed));
            }
            continue;
        }
        if let Some(&(_, exists)) = assumed.iter().find(|(i, _)| *i == id) {
            let mut next = st;
            let r = if exists {
                ProbeResult::Present { value: None }
            } else {
                ProbeResult::Absent
            };
            if next.feed(r).is_ok() {
                queue.push_back((next, assumed));
            }
            continue;
        }
        if want.insert(id) {
            added += 1;
        }
        if assumed.len() + 1 >= EXPLORE_DEPTH || added >= budget {
            continue;
        }
        // A present anchor needs its real value, so "present" assumptions
        // only survive where the machine accepts a value-less document
        // (non-anchors and the anchor bisection).
        for exists in [false, true] {
            let mut next = st.clone();
            let r = if exists {
                ProbeResult::Present { value: None }
            } else {
                ProbeResult::Absent
            };
            if next.feed(r).is_ok() {
                let mut a = assumed.clone();
                a.push((id, exists));
                queue.push_back((next, a));
            }
        }
    }
}

/// Run every search to the end; results in input order.
pub(crate) async fn run(
    tx: &mut dyn Transaction,
    collection: &str,
    mut searches: Vec<Search>,
) -> Result<Vec<EmuBinaryResult>> {
    let err = state_err(collection);
    let tx = super::state(tx)?;
    let speculate = !tx.cheap_round_trips();
    let deep = speculate && searches.len() <= DEEP_SEED_SEARCHES;
    if !searches.is_empty() && !tx.esc_has_anchors(collection).await? {
        for s in &mut searches {
            s.emu.assume_no_anchors().map_err(&err)?;
            s.no_anchors = true;
        }
    }
    let mut cache: HashMap<EscId, Answer> = HashMap::new();
    for round in 0..MAX_ROUNDS {
        let mut pending = Vec::new();
        for (i, s) in searches.iter_mut().enumerate() {
            while let Some(id) = s.ids.next(&s.emu).map_err(&err)? {
                let Some(a) = cache.get(&id) else {
                    pending.push(i);
                    break;
                };
                s.emu.feed(probe_of(a)).map_err(&err)?;
            }
        }
        if pending.is_empty() {
            return searches
                .iter()
                .map(|s| {
                    s.emu.result().ok_or_else(|| {
                        err(cipherdoc_crypto::Error::EscState(
                            "search ended without a result".into(),
                        ))
                    })
                })
                .collect();
        }
        let mut want: HashSet<EscId> = HashSet::new();
        for &i in &pending {
            let Some(s) = searches.get_mut(i) else {
                continue;
            };
            if round == 0 {
                want.extend(s.first_round(deep));
            } else if speculate {
                explore(&s.emu, &mut s.ids, &cache, &mut want, EXPLORE_BUDGET);
            }
            // The id the search is blocked on is always fetched.
            if let Some(id) = s.ids.next(&s.emu).map_err(&err)? {
                want.insert(id);
            }
        }
        want.retain(|id| !cache.contains_key(id));
        let ids: Vec<EscId> = want.into_iter().collect();
        let found = tx.esc_get_many(collection, &ids).await?;
        for (id, f) in ids.into_iter().zip(found) {
            cache.insert(id, f.map(|e| e.value.map(|v| v.0)));
        }
    }
    Err(err(cipherdoc_crypto::Error::EscState(format!(
        "emuBinary did not finish within {MAX_ROUNDS} rounds"
    ))))
}
