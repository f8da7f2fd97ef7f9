//! The zone store's node index: lowercase wire-form owner -> node, shared between
//! versions.
//!
//! The index is split into shards, each a hash table of reference-counted slots (owner and
//! node together). A new version clones the list of shards (one pointer each), and a
//! change copies only the shard it touches and the slot it changes; every other shard and
//! slot stays shared with the version it came from, which readers may still hold. A table
//! entry is one pointer, so the index costs about 10 bytes per name where a persistent
//! trie of the same names cost about 140.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use smallvec::SmallVec;

use super::store::Node;

/// Names per shard when an index is built: small enough that copying a shard for a change
/// costs microseconds, large enough that the shard list stays small beside the names.
const NAMES_PER_SHARD: usize = 256;
const MAX_SHARDS: usize = 1 << 14;

/// Owner names of up to this many wire bytes are kept inside the slot (an e164 owner
/// for an 11-digit number under `e164.mimi.arpa.` is 38); longer ones get an allocation.
type Owner = SmallVec<[u8; 40]>;

#[derive(Clone)]
struct Slot {
    owner: Owner,
    node: Node,
}

type Shard = HashTable<Arc<Slot>>;

#[derive(Clone)]
pub struct NodeIndex {
    /// Seeded per index (and kept by its versions): query names cannot be chosen to
    /// collide.
    hasher: RandomState,
    /// A power of two, fixed for the index's life.
    shards: Arc<Vec<Arc<Shard>>>,
    len: usize,
}

impl fmt::Debug for NodeIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIndex")
            .field("names", &self.len)
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl NodeIndex {
    /// An empty index sized for about `names` names.
    pub fn with_capacity(names: usize) -> NodeIndex {
        let count = (names / NAMES_PER_SHARD)
            .next_power_of_two()
            .min(MAX_SHARDS);
        let per = names / count + 1;
        NodeIndex {
            hasher: RandomState::default(),
            shards: Arc::new(
                (0..count)
                    .map(|_| Arc::new(HashTable::with_capacity(per)))
                    .collect(),
            ),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The hash and the shard it falls in. The shard comes from bits the table itself
    /// uses for neither its bucket index (low bits) nor its tag (top seven).
    fn place(&self, owner: &[u8]) -> (u64, usize) {
        let hash = self.hasher.hash_one(owner);
        let shard = (hash >> 32) as usize & (self.shards.len() - 1);
        (hash, shard)
    }

    fn slot(&self, owner: &[u8]) -> Option<&Slot> {
        let (hash, shard) = self.place(owner);
        self.shards[shard]
            .find(hash, |s| *s.owner == *owner)
            .map(|s| &**s)
    }

    pub fn get(&self, owner: &[u8]) -> Option<&Node> {
        self.slot(owner).map(|s| &s.node)
    }

    /// The node and the index's copy of its name.
    pub fn get_key_value(&self, owner: &[u8]) -> Option<(&[u8], &Node)> {
        self.slot(owner).map(|s| (&*s.owner, &s.node))
    }

    pub fn contains_key(&self, owner: &[u8]) -> bool {
        self.slot(owner).is_some()
    }

    /// The shard for writing: copied first when another version shares it.
    fn shard_mut(&mut self, shard: usize) -> &mut Shard {
        Arc::make_mut(&mut Arc::make_mut(&mut self.shards)[shard])
    }

    /// The node for changing: its shard and slot are copied first when another version
    /// shares them.
    pub fn get_mut(&mut self, owner: &[u8]) -> Option<&mut Node> {
        let (hash, shard) = self.place(owner);
        // Looked up before copying anything, so a miss copies nothing.
        self.shards[shard].find(hash, |s| *s.owner == *owner)?;
        let slot = self
            .shard_mut(shard)
            .find_mut(hash, |s| *s.owner == *owner)?;
        Some(&mut Arc::make_mut(slot).node)
    }

    /// Puts `node` at `owner`, replacing any node there.
    pub fn insert(&mut self, owner: &[u8], node: Node) {
        let (hash, shard) = self.place(owner);
        let hasher = self.hasher.clone();
        let table = self.shard_mut(shard);
        let slot = Arc::new(Slot {
            owner: Owner::from_slice(owner),
            node,
        });
        match table.find_mut(hash, |s| s.owner == slot.owner) {
            Some(old) => *old = slot,
            None => {
                table.insert_unique(hash, slot, |s| hasher.hash_one(&*s.owner));
                self.len += 1;
            }
        }
    }

    /// Takes the node at `owner` out; true when there was one.
    pub fn remove(&mut self, owner: &[u8]) -> bool {
        let (hash, shard) = self.place(owner);
        if self.shards[shard]
            .find(hash, |s| *s.owner == *owner)
            .is_none()
        {
            return false;
        }
        let removed = self
            .shard_mut(shard)
            .find_entry(hash, |s| *s.owner == *owner)
            .map(|e| e.remove())
            .is_ok();
        self.len -= usize::from(removed);
        removed
    }

    /// Every name and node, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Node)> + '_ {
        self.shards
            .iter()
            .flat_map(|t| t.iter())
            .map(|s| (&*s.owner, &s.node))
    }

    pub fn values(&self) -> impl Iterator<Item = &Node> + '_ {
        self.iter().map(|(_, n)| n)
    }

    /// A copy in fresh allocations, sharing no shard, slot or RRset with this one.
    pub fn deep_copy(&self) -> NodeIndex {
        let mut copy = NodeIndex::with_capacity(self.len());
        for (owner, node) in self.iter() {
            copy.insert(owner, node.clone());
        }
        copy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(children: u32) -> Node {
        Node {
            children,
            ..Node::default()
        }
    }

    fn name(i: usize) -> Box<[u8]> {
        format!("n{i}").into_bytes().into_boxed_slice()
    }

    #[test]
    fn a_version_changed_after_cloning_leaves_the_original_as_it_was() {
        let mut a = NodeIndex::with_capacity(5_000);
        assert!(a.shards.len() > 1);
        for i in 0..5_000 {
            a.insert(&name(i), node(i as u32));
        }
        assert_eq!(a.len(), 5_000);
        let mut b = a.clone();
        b.get_mut(&name(7)).unwrap().children = 70_000;
        assert!(b.remove(&name(8)));
        assert!(!b.remove(&name(8)));
        b.insert(&name(9_999), node(1));
        b.insert(&name(10), node(11));
        assert!(b.get_mut(b"absent").is_none());

        assert_eq!(a.get(&name(7)).unwrap().children, 7);
        assert_eq!(a.get(&name(8)).unwrap().children, 8);
        assert!(!a.contains_key(&name(9_999)));
        assert_eq!(a.get(&name(10)).unwrap().children, 10);
        assert_eq!(a.len(), 5_000);

        assert_eq!(b.get(&name(7)).unwrap().children, 70_000);
        assert!(b.get(&name(8)).is_none());
        assert_eq!(b.get_key_value(&name(9_999)).unwrap().0, &*name(9_999));
        assert_eq!(b.get(&name(10)).unwrap().children, 11);
        assert_eq!(b.len(), 5_000);
        assert_eq!(b.iter().count(), 5_000);

        // Untouched shards are shared, not copied.
        let shared = a
            .shards
            .iter()
            .zip(b.shards.iter())
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert!(
            shared >= a.shards.len() - 4,
            "{shared} of {}",
            a.shards.len()
        );
    }

    #[test]
    fn an_empty_index_answers_misses() {
        let mut e = NodeIndex::with_capacity(0);
        assert!(e.is_empty());
        assert!(e.get(b"x").is_none());
        assert!(!e.remove(b"x"));
        e.insert(&name(1), node(0));
        assert_eq!(e.iter().count(), 1);
    }
}
