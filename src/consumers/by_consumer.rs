//! Runtime keys in order of consumer (then creation and id), for the admin API:
//! one consumer's keys are a range, and so are the consumers after a cursor.
//! A key costs one pointer in a B-tree here; the consumer's name is the record's.

use super::keys::RuntimeKey;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

struct Entry(Arc<RuntimeKey>);

impl Entry {
    /// Before any key of `consumer`: its name and the least of the rest.
    fn first_of(consumer: &str) -> Entry {
        Entry(Arc::new(RuntimeKey::new(
            String::new(),
            Arc::from(consumer),
            [0; 32],
            None,
            0,
            None,
        )))
    }

    fn order(&self) -> (&str, u64, &str, &[u8; 32]) {
        let k = &self.0;
        (&k.consumer, k.created_at_s, &k.key_id, &k.digest)
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.order() == other.order()
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order().cmp(&other.order())
    }
}

#[derive(Default)]
pub struct ByConsumer {
    keys: BTreeSet<Entry>,
    /// Consumers with at least one key.
    consumers: usize,
}

impl ByConsumer {
    /// Whether a neighbour of `entry` in the order has its consumer.
    fn shared(&self, entry: &Entry) -> bool {
        let same = |e: &Entry| e.0.consumer == entry.0.consumer;
        let before = self.keys.range(..entry).next_back();
        let after = self.keys.range((Bound::Excluded(entry), Bound::Unbounded)).next();
        before.is_some_and(same) || after.is_some_and(same)
    }

    pub fn insert(&mut self, key: Arc<RuntimeKey>) {
        let entry = Entry(key);
        if !self.shared(&entry) {
            self.consumers += 1;
        }
        self.keys.insert(entry);
    }

    /// Adds many keys at once: sorted together with those held and built in one
    /// pass, rather than a walk of the tree for each.
    pub fn extend(&mut self, keys: Vec<Arc<RuntimeKey>>) {
        // Into the keys' own buffer: at a first load nothing else is held.
        let mut all: Vec<Entry> = keys.into_iter().map(Entry).collect();
        all.extend(std::mem::take(&mut self.keys));
        all.sort_unstable();
        all.dedup();
        self.consumers = all
            .iter()
            .enumerate()
            .filter(|(i, e)| *i == 0 || all[i - 1].0.consumer != e.0.consumer)
            .count();
        self.keys = all.into_iter().collect();
    }

    pub fn remove(&mut self, key: &Arc<RuntimeKey>) {
        let entry = Entry(key.clone());
        if self.keys.contains(&entry) {
            if !self.shared(&entry) {
                self.consumers -= 1;
            }
            self.keys.remove(&entry);
        }
    }

    /// `consumer`'s keys, oldest first.
    pub fn of<'a>(&'a self, consumer: &'a str) -> impl Iterator<Item = &'a Arc<RuntimeKey>> + 'a {
        self.keys
            .range(Entry::first_of(consumer)..)
            .take_while(move |e| &*e.0.consumer == consumer)
            .map(|e| &e.0)
    }

    /// Consumers with keys, in order, each with its count of keys.
    pub fn consumers(&self) -> impl Iterator<Item = (&Arc<str>, usize)> {
        counted(self.keys.iter())
    }

    /// As `consumers`, from the first consumer after `after`: a range of the tree,
    /// not a walk from its start.
    pub fn consumers_after(&self, after: &str) -> impl Iterator<Item = (&Arc<str>, usize)> {
        // The least name after `after` is `after` and a NUL.
        counted(self.keys.range(Entry::first_of(&format!("{after}\0"))..))
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers
    }

    pub fn keys(&self) -> impl Iterator<Item = &Arc<RuntimeKey>> {
        self.keys.iter().map(|e| &e.0)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The consumers of `entries` (in order), each with its count of keys.
fn counted<'a>(entries: impl Iterator<Item = &'a Entry>) -> impl Iterator<Item = (&'a Arc<str>, usize)> {
    let mut keys = entries.map(|e| &e.0.consumer).peekable();
    std::iter::from_fn(move || {
        let name = keys.next()?;
        let mut count = 1;
        while keys.next_if(|next| *next == name).is_some() {
            count += 1;
        }
        Some((name, count))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(consumer: &str, id: &str, created: u64) -> Arc<RuntimeKey> {
        let digest = sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), id)).into();
        Arc::new(RuntimeKey::new(
            id.into(),
            Arc::from(consumer),
            digest,
            None,
            created,
            None,
        ))
    }

    #[test]
    fn a_consumers_keys_are_a_range_and_consumers_are_counted_once() {
        let mut index = ByConsumer::default();
        let (a2, a1, b1, c1) = (
            key("a", "a2", 5),
            key("a", "a1", 7),
            key("b", "b1", 1),
            key("c", "c1", 1),
        );
        for k in [&c1, &a1, &b1, &a2] {
            index.insert(k.clone());
        }
        let ids = |index: &ByConsumer, c| index.of(c).map(|k| k.key_id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(&index, "a"), vec!["a2", "a1"], "oldest first");
        assert_eq!(ids(&index, "b"), vec!["b1"]);
        assert!(ids(&index, "").is_empty() && ids(&index, "bb").is_empty());
        assert_eq!(index.consumer_count(), 3);
        index.remove(&b1);
        index.remove(&b1);
        index.remove(&a2);
        assert_eq!(index.consumer_count(), 2);
        let names: Vec<(&str, usize)> = index.consumers().map(|(c, n)| (&**c, n)).collect();
        assert_eq!(names, vec![("a", 1), ("c", 1)]);
        assert_eq!(index.len(), 2);
        index.insert(key("a\u{1}", "a-1", 1));
        index.insert(key("b", "b2", 1));
        let after = |name| {
            index
                .consumers_after(name)
                .map(|(c, n)| (c.to_string(), n))
                .collect::<Vec<_>>()
        };
        let rest = |names: &[&str]| names.iter().map(|c| (c.to_string(), 1)).collect::<Vec<_>>();
        assert_eq!(after("a"), rest(&["a\u{1}", "b", "c"]), "strictly after");
        assert_eq!(after(""), rest(&["a", "a\u{1}", "b", "c"]));
        assert_eq!(after("ab"), rest(&["b", "c"]), "a name not held");
        assert_eq!(after("c"), rest(&[]));
    }

    #[test]
    fn extending_adds_a_batch_and_a_key_already_held_once() {
        let mut index = ByConsumer::default();
        let a1 = key("a", "a1", 7);
        index.insert(a1.clone());
        index.insert(key("c", "c1", 1));
        index.extend(vec![key("b", "b2", 1), key("a", "a3", 9), a1]);
        let ids = index.of("a").map(|k| k.key_id.to_string()).collect::<Vec<_>>();
        assert_eq!(index.consumer_count(), 3);
        assert_eq!(ids, vec!["a1", "a3"]);
        assert_eq!(index.len(), 4);
    }
}
